{{/*
Shared pieces of the chart. Object names are fixed, as in deploy/base: the roles'
config and the alerts name the Services.
*/}}

{{- define "svc.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "svc.labels" -}}
app.kubernetes.io/part-of: microservices-demo
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "svc.chart" . }}
{{- end }}

{{/* Labels on pod templates: no chart version, so a chart upgrade alone rolls no pod. */}}
{{- define "svc.podLabels" -}}
app.kubernetes.io/part-of: microservices-demo
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The one image every role runs. */}}
{{- define "svc.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* Where the roles find Redis. */}}
{{- define "svc.redisHost" -}}
{{ .Values.redis.host | default "redis-service" }}
{{- end }}

{{/*
The three roles: object name, Service, port and arguments. One image; only the
arguments differ. `key` is the role's section in values.yaml; `targets`: the role
reads the targets file (svc-targets); `credentials`: it sends the credentials the
file names (Secrets credentials.existingSecret and notify.existingSecret).
*/}}
{{- define "svc.roles" -}}
roles:
  - key: gateway
    name: api-gateway
    service: api-gateway-service
    port: 8080
    args: ["gateway"]
  - key: worker
    name: worker
    service: worker-service
    port: 8081
    args: ["worker", "--interval", {{ .Values.worker.interval | quote }}]
    targets: true
    credentials: true
  - key: dashboard
    name: dashboard
    service: dashboard-service
    port: 3000
    args: ["dashboard"]
    targets: true
{{- end }}

{{/*
The Deployments of a role (dict "role" ROLE "Values" .Values) as YAML {placements}: the
role's fields, with `app` the role's name. The worker with workers.locations gets one
per location, named worker-<location>, with its `location` and `zone`; any other role,
or the worker without locations, one named as the role.
*/}}
{{- define "svc.placements" -}}
{{- $role := .role }}
{{- $locations := list }}
{{- if eq $role.key "worker" }}{{ $locations = .Values.workers.locations | default list }}{{ end }}
placements:
{{- range $locations }}
{{- if not (regexMatch "^[a-z0-9-]{1,63}$" (toString .name)) }}
{{- fail (printf "workers.locations: %q is no location name: 1 to 63 of a-z, 0-9 and '-'" (toString .name)) }}
{{- end }}
{{- if not .zone }}
{{- fail (printf "workers.locations: %s needs a zone (topology.kubernetes.io/zone)" .name) }}
{{- end }}
  - {{ merge (dict "name" (printf "%s-%s" $role.name .name) "app" $role.name "location" .name "zone" .zone) (deepCopy $role) | toJson }}
{{- else }}
  - {{ merge (dict "app" $role.name) (deepCopy $role) | toJson }}
{{- end }}
{{- end }}

{{/*
The labels that select a placement's pods: its app, and its location when it has one.
*/}}
{{- define "svc.placementLabels" -}}
app: {{ .app }}
{{- with .location }}
location: {{ . }}
{{- end }}
{{- end }}

{{/*
Pod Security "restricted", fixed here rather than in values so no setting weakens it:
UID/GID 1000, non-root, seccomp RuntimeDefault; per container no privilege
escalation, read-only root filesystem, every capability dropped.
*/}}
{{- define "svc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "svc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The Redis password, from the hand-made Secret. */}}
{{- define "svc.redisPasswordEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
{{- end }}

{{/* The fewest pods a role runs: minReplicas under an HPA, else replicas. */}}
{{- define "svc.minPods" -}}
{{- if .v.autoscaling.enabled }}{{ .v.autoscaling.minReplicas }}{{ else }}{{ .v.replicas }}{{ end }}
{{- end }}

{{/*
Egress to Redis: the chart's own Redis pods, or, with redis.enabled false, any
address on Redis's port (a managed Redis has no pod label to select).
*/}}
{{- define "svc.redisEgress" -}}
{{- if .Values.redis.enabled -}}
- to:
    - podSelector:
        matchLabels:
          app: redis
  ports:
    - protocol: TCP
      port: 6379
{{- else -}}
- ports:
    - protocol: TCP
      port: {{ .Values.redis.port }}
{{- end }}
{{- end }}

{{/*
The objects of a file under files/ (a link into a kustomize component), each in the
release's namespace with the chart's labels added (and a Deployment's pods the
sidecar annotations of components/istio, with istio.enabled): both ways of deploying render the
same objects from one source. Argument: (list $ "files/NAME.yaml").
*/}}
{{- define "svc.componentObjects" -}}
{{- $root := index . 0 }}
{{- range $doc := regexSplit "(?m)^---$" ($root.Files.Get (index . 1)) -1 }}
{{- $obj := fromYaml $doc }}
{{- if $obj }}
{{- $_ := set $obj.metadata "namespace" $root.Release.Namespace }}
{{- $_ := set $obj.metadata "labels" (merge (include "svc.labels" $root | fromYaml) ($obj.metadata.labels | default dict)) }}
{{- if and (eq $obj.kind "Deployment") $root.Values.istio.enabled }}
{{- $_ := set $obj.spec.template.metadata "annotations" (include "svc.istioPod" (list $root false) | fromYaml) }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod annotations under components/istio: the sidecar's start, drain and probe rewrite,
from the component's own patches (files/istio-*sidecar.yaml). Argument: (list $ ROLE),
ROLE true for the svc roles (drain and merged metrics), false for the others.
*/}}
{{- define "svc.istioPod" -}}
{{- $file := ternary "files/istio-role-sidecar.yaml" "files/istio-sidecar.yaml" (index . 1) }}
{{- (index ((index . 0).Files.Get $file | fromYamlArray) 0).value | toYaml }}
{{- end }}

{{/*
The Ingress's annotations and tls as YAML {annotations, tls}: ingress.annotations and
ingress.tls, or with certManager.enabled (= components/cert-manager) the issuer
annotation, HTTP redirected to HTTPS, and tls for ingress.host.
*/}}
{{- define "svc.ingressTLS" -}}
{{- $annotations := deepCopy .Values.ingress.annotations }}
{{- $tls := .Values.ingress.tls }}
{{- if .Values.certManager.enabled }}
{{- $annotations = merge $annotations (dict
      "cert-manager.io/cluster-issuer" .Values.certManager.clusterIssuer
      "nginx.ingress.kubernetes.io/force-ssl-redirect" "true"
      "nginx.ingress.kubernetes.io/ssl-redirect" "true") }}
{{- $tls = list (dict "hosts" (list .Values.ingress.host) "secretName" .Values.certManager.secretName) }}
{{- end }}
{{- toYaml (dict "annotations" $annotations "tls" $tls) }}
{{- end }}
