#!/usr/bin/env python3
"""Policy checks on built manifests (the output of `kubectl kustomize DIR`).

Static checks, on each FILE: Pod Security "restricted" on every container, resources
and probes, Services/HPAs/PDBs/NetworkPolicies/Ingress pointing at real workloads
and ports, an Ingress with TLS redirecting plain HTTP, a ServiceAccount of its own
for every workload, with Redis TLS every role trusting its CA through a mounted
directory, with Istio the AuthorizationPolicies admitting what the NetworkPolicies
admit and the sidecars' drain and probes, only svc pods and sentinels reaching
Redis, REDIS_SENTINELS naming real sentinel pods, the targets file mounted so that
it reloads and holding a valid file with no credential written in it, the
credential Secrets (svc-credentials, svc-notify) reaching the workers only
(read-only, whole, unreadable by others), the Prometheus
Operator objects by structure (alert job names are scraped Services), and every
metric name in the alerts and the Grafana dashboard owned by a role (or listed as
external). Every run first tries the credential rules on known good and bad cases
(`self_test`).

With --svc-binary PATH it also starts `PATH all` and asks the running binary: every
probe path answers 200 on the role that serves it, every metric name appears in
that role's /metrics, and every request the dashboard page makes, routed through
the Ingress rules, lands on a role that answers it.

    python3 deploy/policy_check.py build/base.yaml build/prod.yaml
    python3 deploy/policy_check.py --svc-binary target/release/svc build/prod.yaml
"""

import argparse
import json
import os
import posixpath
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

NAMESPACE = "microservices-demo"
INGRESS_HOST = "microservices-demo.local"
ROLES = ("gateway", "worker", "dashboard")
DEFAULT_PORTS = {"gateway": 8080, "worker": 8081, "dashboard": 3000}
# Which role exports a metric, by name prefix.
METRIC_OWNERS = {"api_gateway_": "gateway", "worker_": "worker", "dashboard_": "dashboard",
                 "svc_target": "dashboard"}
# Metrics that come from elsewhere in the cluster, not from svc.
EXTERNAL_METRICS = {"kube_pod_container_status_restarts_total": "kube-state-metrics", "up": "Prometheus (scrape status)"}
# The Secrets whose keys the targets file names as ${KEY} or {file: DIR/KEY}: each
# optional, given whole (as environment and as the read-only directory DIR) to the
# roles that send them only (the dashboard shows them as ***).
CREDENTIAL_SECRETS = (
    {"secret": "svc-credentials", "dir": "/etc/svc/credentials", "roles": ("worker",)},
    {"secret": "svc-notify", "dir": "/etc/svc/notify", "roles": ("worker",)},
)
# Secrets created by hand (deploy/README.md), never committed.
EXTERNAL_SECRETS = {"redis-secret"} | {s["secret"] for s in CREDENTIAL_SECRETS}
# The targets file (README.md, "Monitoring your own services"): its ConfigMap, the
# roles that read it, and the names svc's own services already have on the page.
TARGETS_CONFIGMAP = "svc-targets"
TARGETS_ROLES = ("worker", "dashboard")
RESERVED_TARGET_NAMES = {"api-gateway", "worker-service", "redis", "dashboard"}
# The file's sections (README.md, "Monitoring your own services (targets)").
TARGETS_FILE_KEYS = {"targets", "notify", "groups", "maintenance"}
# Notification channels: each kind, the URL schemes it takes, and whether it has a
# default endpoint (so may name no url).
CHANNEL_KINDS = {
    "webhook": ("http", "https"), "slack": ("http", "https"), "discord": ("http", "https"),
    "teams": ("http", "https"), "pagerduty": ("http", "https"), "opsgenie": ("http", "https"),
    "ntfy": ("http", "https"), "email": ("smtp", "smtps"),
}
CHANNEL_DEFAULT_URL = {"pagerduty", "opsgenie"}
# Kinds whose URL is itself the credential (whoever has it may post).
CHANNEL_SECRET_URL = {"slack", "discord", "teams"}
# A channel's fields that hold a credential.
CHANNEL_CREDENTIALS = ("routing_key", "api_key", "token", "password")
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
# Ports of Istio's injected sidecar a Service may target though no container here
# declares them (components/istio, in a namespace labelled istio-injection=enabled).
SIDECAR_PORTS = {15020: "merged metrics (app and Envoy)"}
# Callers from other namespaces, as NetworkPolicies name them (the namespace) and as
# the mesh knows them (their sidecar's ServiceAccount).
MESH_NAMESPACE_PRINCIPALS = {"ingress-nginx": "cluster.local/ns/ingress-nginx/sa/ingress-nginx"}
RETRY_ON = {"connect-failure", "503"}
# Pods that other controllers start in the namespace, which a NetworkPolicy may select
# though no workload here makes them.
EXTERNAL_PODS = {"acme.cert-manager.io/http01-solver": "cert-manager's ACME HTTP-01 solver"}
SEVERITIES = {"critical", "warning", "info"}
# Requests a browser makes, and the role the Ingress must send each one to.
INGRESS_EXPECTATIONS = [
    ("/", "dashboard"),
    ("/static/app.css", "dashboard"),
    ("/partials/services", "dashboard"),
    ("/health/ready", "dashboard"),
    ("/badge/payments.svg", "dashboard"),
    ("/api", "gateway"),
    ("/api/status", "gateway"),
    ("/api/info", "gateway"),
    ("/api/jobs/42", "gateway"),
    ("/apiary", "dashboard"),
]
# Of those, the ones the running binary must also answer with 2xx.
INGRESS_FETCH = ["/", "/api/status", "/api/info"]
# What an Ingress for any other host than INGRESS_HOST may expose: the public status
# pages (with their stylesheet) and the badges, of the dashboard.
PUBLIC_PATHS = ("/status", "/badge")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "offset", "bool", "inf", "nan", "le",
}


class Report:
    """Counts checks and prints each failure with its context."""

    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            if not self.quiet:
                print(f"  FAIL {what}")
        return ok

    def section(self, title):
        print(f"== {title}")


# ---------------------------------------------------------------- manifest helpers


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def matches(selector, labels):
    """A label selector (matchLabels/matchExpressions, or a plain map) against labels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        have, op, vals = labels.get(e["key"]), e["operator"], e.get("values", [])
        if op == "In" and have not in vals:
            return False
        if op == "NotIn" and have in vals:
            return False
        if op == "Exists" and have is None:
            return False
        if op == "DoesNotExist" and have is not None:
            return False
    return True


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload):
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def role_of(container):
    """The svc role a container runs (its first argument), or None for other images."""
    args = container.get("args") or []
    return args[0] if args and args[0] in ROLES else None


def port_number(container, port):
    """A probe's or Service's port (name or number) as a containerPort number, or None."""
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    return None


def duration_seconds(text):
    """`5s`, `1m30s`, `250ms` (humantime's common forms) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------- static checks


def check_namespace(objs, r):
    ns = [o for o in objs if o["kind"] == "Namespace" and o["metadata"]["name"] == NAMESPACE]
    if r.check(ns, f"Namespace {NAMESPACE} is in the build"):
        labels = ns[0]["metadata"].get("labels", {})
        r.check(labels.get("pod-security.kubernetes.io/enforce") == "restricted",
                f"Namespace {NAMESPACE} enforces Pod Security 'restricted'")
    for o in objs:
        if o["kind"] != "Namespace":
            r.check(o["metadata"].get("namespace") == NAMESPACE,
                    f"{name_of(o)} is in namespace {NAMESPACE}")


def check_container(w, c, config, r):
    where = f"{name_of(w)} container {c['name']}"
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            r.check(what in res.get(kind, {}), f"{where}: resources.{kind}.{what} is set")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(probe)
        if r.check(p, f"{where}: has a {probe}"):
            action = p.get("httpGet") or p.get("tcpSocket") or p.get("grpc")
            if action:
                r.check(port_number(c, action["port"]) is not None,
                        f"{where}: {probe} port {action['port']!r} is a containerPort")

    pod_sc = pod_spec(w).get("securityContext", {})
    sc = c.get("securityContext", {})
    eff = {k: sc.get(k, pod_sc.get(k)) for k in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")}
    r.check(eff["runAsNonRoot"] is True, f"{where}: runAsNonRoot")
    r.check(eff["runAsUser"] == 1000, f"{where}: runAsUser 1000 (is {eff['runAsUser']})")
    r.check(eff["runAsGroup"] == 1000, f"{where}: runAsGroup 1000 (is {eff['runAsGroup']})")
    r.check((eff["seccompProfile"] or {}).get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
    r.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    r.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
    r.check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities drop ALL")
    r.check(not sc.get("capabilities", {}).get("add"), f"{where}: adds no capabilities")
    r.check(not sc.get("privileged"), f"{where}: not privileged")

    if role_of(c):
        drain = duration_seconds(config.get("DRAIN_DELAY", "5s")) + duration_seconds(config.get("GRACE_PERIOD", "20s"))
        grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
        r.check(grace > drain, f"{where}: terminationGracePeriodSeconds {grace} > drain + grace {drain:g}s")


def check_workloads(objs, r):
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    for o in objs:
        if o["kind"] == "Secret":
            r.check(not o.get("data") and not o.get("stringData"),
                    f"{name_of(o)} carries no secret value in git")
    workloads = [o for o in objs if o["kind"] in WORKLOAD_KINDS]
    r.check(workloads, "the build has workloads")
    for w in workloads:
        spec = pod_spec(w)
        r.check(not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"),
                f"{name_of(w)}: no host namespaces")
        r.check(not any("hostPath" in v for v in spec.get("volumes", [])), f"{name_of(w)}: no hostPath volumes")
        r.check(spec.get("automountServiceAccountToken") is False, f"{name_of(w)}: no service account token")
        config = {}
        for c in containers(w):
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    cm = ref["configMapRef"]["name"]
                    if r.check(cm in configmaps, f"{name_of(w)}: ConfigMap {cm} exists"):
                        config.update(configmaps[cm])
                if "secretRef" in ref:
                    r.check(ref["secretRef"]["name"] in secrets | EXTERNAL_SECRETS,
                            f"{name_of(w)}: Secret {ref['secretRef']['name']} exists or is documented as created by hand")
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    r.check(ref["name"] in secrets | EXTERNAL_SECRETS,
                            f"{name_of(w)}: Secret {ref['name']} exists or is documented as created by hand")
        for c in containers(w):
            check_container(w, c, config, r)
        if w["kind"] == "Deployment" and any(role_of(c) for c in spec["containers"]):
            ru = w["spec"].get("strategy", {}).get("rollingUpdate", {})
            r.check(ru.get("maxSurge") == 1 and ru.get("maxUnavailable") == 0,
                    f"{name_of(w)}: rolling update maxSurge 1 / maxUnavailable 0")


def check_service_accounts(objs, r):
    """Each workload runs as a ServiceAccount of its own that the build holds, with no
    API token: the identity a mesh's AuthorizationPolicies name."""
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    used = {}
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
        sa = pod_spec(w).get("serviceAccountName")
        if not r.check(sa and sa != "default", f"{name_of(w)}: runs as a ServiceAccount of its own (not default)"):
            continue
        if r.check(sa in accounts, f"{name_of(w)}: ServiceAccount {sa} is in the build"):
            r.check(accounts[sa].get("automountServiceAccountToken") is False,
                    f"ServiceAccount/{sa}: automountServiceAccountToken false")
        used.setdefault(sa, set()).add(pod_labels(w).get("app"))
    for sa, apps in used.items():
        r.check(len(apps) == 1, f"ServiceAccount/{sa} is used by one app only (used by {sorted(map(str, apps))})")


def check_one_image(objs, r):
    """The three roles run one image; only their arguments differ."""
    images = {c["image"] for w in objs if w["kind"] in WORKLOAD_KINDS for c in pod_spec(w)["containers"] if role_of(c)}
    r.check(len(images) == 1, f"every role runs the same image (found {sorted(images)})")


def workloads_selected(objs, selector):
    return [w for w in objs if w["kind"] in WORKLOAD_KINDS and matches(selector, pod_labels(w))]


def injected(objs):
    """Whether Istio injects its sidecar into the namespace's pods."""
    return any(o["kind"] == "Namespace" and (o["metadata"].get("labels") or {}).get("istio-injection") == "enabled"
               for o in objs)


def check_services(objs, r):
    sidecar_ports = set(SIDECAR_PORTS) if injected(objs) else set()
    for s in (o for o in objs if o["kind"] == "Service"):
        targets = workloads_selected(objs, s["spec"].get("selector"))
        if not r.check(targets, f"{name_of(s)}: selector {s['spec'].get('selector')} matches a workload's pod labels"):
            continue
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if tp in sidecar_ports:
                continue
            for w in targets:
                r.check(any(port_number(c, tp) for c in w["spec"]["template"]["spec"]["containers"]),
                        f"{name_of(s)}: targetPort {tp!r} is a containerPort of {name_of(w)}")


def check_references(objs, r):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = h["spec"]["scaleTargetRef"]
        r.check(ref["name"] in by_kind.get(ref["kind"], {}), f"{name_of(h)}: scale target {ref['kind']}/{ref['name']} exists")
    for p in by_kind.get("PodDisruptionBudget", {}).values():
        r.check(workloads_selected(objs, p["spec"]["selector"]), f"{name_of(p)}: selector matches a workload")
    for n in by_kind.get("NetworkPolicy", {}).values():
        sel = n["spec"]["podSelector"]
        external = set(sel.get("matchLabels") or {}) & set(EXTERNAL_PODS)
        r.check(sel == {} or external or workloads_selected(objs, sel), f"{name_of(n)}: podSelector matches a workload")
    for ing in by_kind.get("Ingress", {}).values():
        r.check(ing["spec"].get("ingressClassName") == "nginx", f"{name_of(ing)}: ingressClassName nginx")
        r.check("nginx.ingress.kubernetes.io/rewrite-target" not in ing["metadata"].get("annotations", {}),
                f"{name_of(ing)}: no rewrite-target (paths reach the roles unchanged)")
        check_ingress_tls(ing, r)
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = path["backend"]["service"]
                s = by_kind.get("Service", {}).get(svc["name"])
                if r.check(s, f"{name_of(ing)}: backend Service {svc['name']} exists"):
                    r.check(any(svc["port"].get("number") in (p["port"], None) and
                                svc["port"].get("name") in (p.get("name"), None) for p in s["spec"]["ports"]),
                            f"{name_of(ing)}: backend port {svc['port']} is a port of Service {svc['name']}")


def check_ingress_tls(ing, r):
    """An Ingress with TLS covers each of its hosts and redirects plain HTTP to HTTPS;
    one whose certificate cert-manager issues names the Secret it goes into."""
    notes = ing["metadata"].get("annotations") or {}
    tls = ing["spec"].get("tls") or []
    issued = "cert-manager.io/cluster-issuer" in notes or "cert-manager.io/issuer" in notes
    r.check(not issued or tls, f"{name_of(ing)}: a cert-manager issuer annotation comes with tls:")
    if not tls:
        return
    hosts = {h for t in tls for h in t.get("hosts", [])}
    for rule in ing["spec"]["rules"]:
        r.check(rule.get("host") in hosts, f"{name_of(ing)}: host {rule.get('host')} has a TLS certificate")
    r.check(all(t.get("secretName") for t in tls), f"{name_of(ing)}: every tls entry names its Secret")
    r.check(notes.get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true",
            f"{name_of(ing)}: with TLS, plain HTTP is redirected to HTTPS (force-ssl-redirect)")


def selector_apps(selector):
    """The `app` label values a pod selector admits, or None when it admits any."""
    apps = None
    if "app" in (selector.get("matchLabels") or {}):
        apps = {selector["matchLabels"]["app"]}
    for e in selector.get("matchExpressions") or []:
        if e["key"] == "app" and e["operator"] == "In":
            apps = set(e["values"]) if apps is None else apps & set(e["values"])
    return apps


def check_redis_peers(objs, r):
    """Only the roles, the other data nodes and the sentinels reach Redis and the
    sentinels: every policy selecting them admits pods of those apps, nothing wider."""
    allowed = {"api-gateway", "worker", "dashboard", "redis", "redis-sentinel"}
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not any(o["kind"] in WORKLOAD_KINDS for o in objs) or not policies:
        return
    for app in ("redis", "redis-sentinel"):
        if not any(pod_labels(w).get("app") == app for w in objs if w["kind"] in WORKLOAD_KINDS):
            continue
        selecting = [n for n in policies if matches(n["spec"]["podSelector"], {"app": app})]
        r.check(any("Ingress" in n["spec"].get("policyTypes", []) for n in selecting),
                f"a NetworkPolicy limits who reaches {app} pods")
        for n in selecting:
            for rule in n["spec"].get("ingress") or []:
                peers = rule.get("from")
                r.check(peers, f"{name_of(n)}: an ingress rule to {app} pods names its peers")
                for peer in peers or []:
                    apps = selector_apps(peer["podSelector"]) if set(peer) == {"podSelector"} else None
                    r.check(apps is not None and apps <= allowed,
                            f"{name_of(n)}: {app} pods admit only {sorted(allowed)} pods of this namespace (peer {peer})")


def check_sentinel_config(objs, r):
    """REDIS_SENTINELS names pods (name-N.service:port) that a StatefulSet runs."""
    sets = {o["spec"].get("serviceName"): o for o in objs if o["kind"] == "StatefulSet"}
    for cm in (o for o in objs if o["kind"] == "ConfigMap" and "REDIS_SENTINELS" in o.get("data", {})):
        value = cm["data"]["REDIS_SENTINELS"]
        r.check(cm["data"].get("REDIS_MASTER_NAME"), f"{name_of(cm)}: REDIS_MASTER_NAME is set beside REDIS_SENTINELS")
        for entry in value.split(","):
            m = re.fullmatch(r"([a-z0-9-]+)-(\d+)\.([a-z0-9-]+):(\d+)", entry.strip())
            sts = m and sets.get(m.group(3))
            ok = bool(sts) and sts["metadata"]["name"] == m.group(1) and int(m.group(2)) < sts["spec"].get("replicas", 1) \
                and any(port_number(c, int(m.group(4))) for c in pod_spec(sts)["containers"])
            r.check(ok, f"{name_of(cm)}: REDIS_SENTINELS entry {entry!r} is a pod and port of a StatefulSet")


def check_redis_tls(objs, r):
    """Redis with TLS (components/cert-manager/redis-tls): the roles speak TLS and
    every role trusts the CA of the Secret the Redis pods serve, as a whole mounted
    directory (so a renewal reaches it) named by REDIS_CA_FILE."""
    redis_secrets = set()
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS and not any(role_of(c) for c in containers(o))):
        for c in containers(w):
            tls_dir = next((e.get("value") for e in c.get("env", []) if e["name"] == "TLS_DIR"), None)
            if not tls_dir:
                continue
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
            secret = (vols.get(mounts.get(tls_dir), {}).get("secret") or {}).get("secretName")
            if r.check(secret, f"{name_of(w)}: TLS_DIR {tls_dir} is a mounted Secret"):
                redis_secrets.add(secret)
    if not redis_secrets:
        return
    config = next((o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"].startswith("app-config")), {})
    r.check(config.get("REDIS_TLS") == "true", "with Redis TLS, app-config sets REDIS_TLS=true")
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS and any(role_of(c) for c in containers(o))):
        vols = {v["name"]: (v.get("secret") or {}).get("secretName") for v in pod_spec(w).get("volumes", [])}
        for c in (c for c in containers(w) if role_of(c)):
            ca_dirs = {m["mountPath"] for m in c.get("volumeMounts", [])
                       if vols.get(m["name"]) in redis_secrets and not m.get("subPath") and m.get("readOnly")}
            r.check(ca_dirs, f"{name_of(w)}: Redis's CA mounted read-only, whole")
            r.check(posixpath.dirname(config.get("REDIS_CA_FILE", "")) in ca_dirs,
                    f"{name_of(w)}: REDIS_CA_FILE is in the mounted CA directory")


def from_secret(value):
    """A credential value written as `${NAME}` (at its start) or `{file: PATH}`."""
    if isinstance(value, dict):
        return set(value) == {"file"} and isinstance(value["file"], str)
    return isinstance(value, str) and re.match(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value) is not None


# Credentials written into a targets file's text, comments included (they are the
# examples people copy): a URL's password (an SMTP URL's too), a query value named
# like a token, key or signature, a `password:`, `token:`, `routing_key:` or
# `api_key:` value on its line, the secret path of a Slack, Discord or Teams
# webhook. Each is fine as `${NAME}` or `{file: ...}`.
INLINE_CREDENTIALS = [
    ("a Slack webhook URL", re.compile(r"hooks\.slack\.com/services/(?P<v>[^\s'\"]+)")),
    ("a Discord webhook URL", re.compile(r"discord(?:app)?\.com/api/webhooks/(?P<v>[^\s'\"]+)", re.IGNORECASE)),
    ("a Teams webhook URL", re.compile(r"\.webhook\.office\.com/(?P<v>[^\s'\"]+)", re.IGNORECASE)),
    ("a URL with a password (://user:pass@)", re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*:(?P<v>[^\s/@'\"]+)@")),
    ("a token, key or signature in a URL's query",
     re.compile(r"[?&;][A-Za-z0-9_-]*(?:token|key|sig|signature|auth|secret|password)=(?P<v>[^\s&#'\"]+)",
                re.IGNORECASE)),
    ("a password, token, routing_key or api_key value",
     re.compile(r"\b(?:password|token|routing_key|api_key)['\"]?\s*:[ \t]*(?P<v>[^\s#][^\n#]*)", re.IGNORECASE)),
]


def check_no_inline_credentials(where, text, r):
    """No credential written into the targets file (it is a ConfigMap, kept in git):
    they come from the Secrets of CREDENTIAL_SECRETS. The failure names the line,
    never the value."""
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in INLINE_CREDENTIALS:
            for m in pattern.finditer(line):
                value = m.group("v").strip().strip("'\"")
                r.check(value.startswith("${") or re.match(r"\{\s*file\s*:", value),
                        f"{where} line {number}: {what} written in the file, not ${{NAME}} or {{file: ...}} "
                        f"from Secret {' or '.join(e['secret'] for e in CREDENTIAL_SECRETS)}")


class SvcYamlLoader(yaml.SafeLoader):
    """YAML as svc reads the targets file (1.2): only true and false are booleans, so
    a channel's `on:` is the key "on", not the boolean YAML 1.1 makes of it."""


SvcYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SvcYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def check_targets_file(where, text, r):
    """A targets file: `targets` and `notify` lists, unique names that are not svc's
    own, http/https/tcp target URLs, channels of a known kind with a URL of its
    scheme (or from a Secret; always from one where the URL is the credential),
    basic_auth passwords and the channels' keys, tokens and passwords from a Secret,
    every `{file: ...}` in a directory a Secret is mounted at."""
    try:
        doc = yaml.load(text, Loader=SvcYamlLoader)
    except yaml.YAMLError as e:
        r.check(False, f"{where}: parses as YAML ({e})")
        return
    if not r.check(isinstance(doc, dict) and set(doc) <= TARGETS_FILE_KEYS,
                   f"{where}: a map of {', '.join(f'`{k}`' for k in sorted(TARGETS_FILE_KEYS))} only"):
        return
    targets, notify = doc.get("targets") or [], doc.get("notify") or []
    if not r.check(isinstance(targets, list) and isinstance(notify, list), f"{where}: `targets` and `notify` are lists"):
        return
    names = [t.get("name") for t in targets if isinstance(t, dict)]
    r.check(len(names) == len(targets) and all(isinstance(n, str) and n for n in names),
            f"{where}: every target has a name")
    r.check(len(set(names)) == len(names), f"{where}: target names are unique ({names})")
    for t in (t for t in targets if isinstance(t, dict)):
        r.check(t.get("name") not in RESERVED_TARGET_NAMES,
                f"{where}: target {t.get('name')!r} is not named like one of svc's own services")
        r.check(from_secret(t.get("url")) or re.match(r"(https?|tcp)://[^/\s]+", str(t.get("url", ""))),
                f"{where}: target {t.get('name')!r} has an http://, https:// or tcp:// url")
        auth = t.get("basic_auth")
        password = auth.get("password") if isinstance(auth, dict) else None
        r.check(password is None or from_secret(password),
                f"{where}: target {t.get('name')!r}: basic_auth password is ${{NAME}} or {{file: ...}}")
    for i, n in enumerate(notify):
        channel = f"{where}: notify[{i}]"
        if not r.check(isinstance(n, dict) and n.get("kind", "webhook") in CHANNEL_KINDS,
                       f"{channel} has a kind of {', '.join(sorted(CHANNEL_KINDS))} (or none: webhook)"):
            continue
        kind = n.get("kind", "webhook")
        channel = f"{channel} ({n.get('name', kind)})"
        url = n.get("url")
        schemes = "|".join(CHANNEL_KINDS[kind])
        r.check(from_secret(url) or (url is None and kind in CHANNEL_DEFAULT_URL)
                or (kind not in CHANNEL_SECRET_URL and re.match(rf"({schemes})://[^/\s]+", str(url or ""))),
                f"{channel}: url is " + ("${NAME} or {file: ...} (it is the credential)" if kind in CHANNEL_SECRET_URL
                                         else f"a {schemes.replace('|', ' or ')} URL, ${{NAME}} or {{file: ...}}"))
        for field in CHANNEL_CREDENTIALS:
            r.check(field not in n or from_secret(n[field]), f"{channel}: {field} is ${{NAME}} or {{file: ...}}")
        # Helm (YAML 1.1) reads a bare `on:` in values as true and writes it back so.
        r.check(not {True, "true"} & set(n), f'{channel}: has no key `true` (in Helm values, write "on": quoted)')
        states = n.get("on", [])
        r.check(isinstance(states, list) and set(states) <= {"up", "down", "degraded"},
                f"{channel}: on lists states of up, down and degraded")
    names = [n.get("name") for n in notify if isinstance(n, dict) and "name" in n]
    r.check(len(set(names)) == len(names), f"{where}: channel names are unique ({names})")
    for path in files_named(doc):
        r.check(any(path.startswith(e["dir"] + "/") for e in CREDENTIAL_SECRETS),
                f"{where}: {{file: {path}}} is in a mounted Secret "
                f"({', '.join(e['dir'] + '/' for e in CREDENTIAL_SECRETS)})")


def files_named(node):
    """The paths of every `{file: PATH}` value in a parsed targets file."""
    if isinstance(node, dict):
        if from_secret(node):
            yield node["file"]
        else:
            for v in node.values():
                yield from files_named(v)
    elif isinstance(node, list):
        for v in node:
            yield from files_named(v)


def check_targets(objs, r):
    """The roles that read the targets file get TARGETS_FILE inside a whole-ConfigMap
    mount, read-only. Never a subPath: the kubelet never updates a subPath mount,
    so svc would not see an edit until the pod restarts."""
    configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"}
    if TARGETS_CONFIGMAP in configmaps:
        for key, text in configmaps[TARGETS_CONFIGMAP].items():
            check_targets_file(f"ConfigMap/{TARGETS_CONFIGMAP} {key}", text, r)
            check_no_inline_credentials(f"ConfigMap/{TARGETS_CONFIGMAP} {key}", text, r)
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
        volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
        for c in pod_spec(w)["containers"]:
            where = f"{name_of(w)} container {c['name']}"
            path = next((e.get("value") for e in c.get("env", []) if e["name"] == "TARGETS_FILE"), None)
            if role_of(c) in TARGETS_ROLES and TARGETS_CONFIGMAP in configmaps:
                r.check(path, f"{where}: TARGETS_FILE is set (ConfigMap {TARGETS_CONFIGMAP} exists)")
            if not path:
                continue
            mounts = c.get("volumeMounts", [])
            r.check(all(m["mountPath"] != path for m in mounts), f"{where}: TARGETS_FILE {path} is not a subPath mount")
            mount = next((m for m in mounts if m["mountPath"].rstrip("/") == posixpath.dirname(path)), None)
            if not r.check(mount, f"{where}: the directory of TARGETS_FILE {path} is a volume mount"):
                continue
            r.check(not mount.get("subPath") and not mount.get("subPathExpr"), f"{where}: {mount['mountPath']} has no subPath")
            r.check(mount.get("readOnly") is True, f"{where}: {mount['mountPath']} is mounted read-only")
            cm = (volumes.get(mount["name"], {}).get("configMap") or {}).get("name")
            if r.check(cm in configmaps, f"{where}: {mount['mountPath']} is ConfigMap {cm or '(none)'} of the build"):
                r.check(posixpath.basename(path) in configmaps[cm], f"{where}: ConfigMap {cm} has key {posixpath.basename(path)}")


def check_credentials(objs, r):
    """Each Secret of CREDENTIAL_SECRETS reaches the roles that send its keys only (not
    the dashboard, not Redis), and there as a whole, read-only directory that others
    cannot read: never a subPath, which the kubelet never updates, so a rotated key
    would not arrive. Once the targets file is in the build, each of those roles gets
    the Secret, optional (it is created by hand, maybe never), both as environment and
    at its directory."""
    has_targets = any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == TARGETS_CONFIGMAP for o in objs)
    for entry in CREDENTIAL_SECRETS:
        secret, directory, roles = entry["secret"], entry["dir"], entry["roles"]
        for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
            volumes = {v["name"]: v["secret"] for v in pod_spec(w).get("volumes", [])
                       if (v.get("secret") or {}).get("secretName") == secret}
            for c in containers(w):
                where = f"{name_of(w)} container {c['name']}"
                mounts = [m for m in c.get("volumeMounts", []) if m["name"] in volumes]
                env = [ref["secretRef"] for ref in c.get("envFrom", [])
                       if (ref.get("secretRef") or {}).get("name") == secret]
                env_keys = [e for e in c.get("env", [])
                            if ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret]
                if role_of(c) not in roles:
                    r.check(not (mounts or env or env_keys),
                            f"{where}: gets nothing of Secret {secret} (it is for the {', '.join(roles)} only)")
                    continue
                for m in mounts:
                    r.check(m.get("readOnly") is True, f"{where}: Secret {secret} at {m['mountPath']} is read-only")
                    r.check(not m.get("subPath") and not m.get("subPathExpr"),
                            f"{where}: Secret {secret} at {m['mountPath']} has no subPath (rotated keys arrive)")
                    # Kubernetes' default is 0644: readable by every user of the pod.
                    mode = volumes[m["name"]].get("defaultMode")
                    r.check((0o644 if mode is None else mode) & 0o007 == 0,
                            f"{where}: the files of Secret {secret} are not readable by others (defaultMode)")
                if not has_targets:
                    continue
                at_dir = [m for m in mounts if m["mountPath"].rstrip("/") == directory]
                r.check(at_dir, f"{where}: Secret {secret} is mounted at {directory}")
                r.check(all(volumes[m["name"]].get("optional") is True for m in at_dir),
                        f"{where}: the {secret} volume is optional")
                r.check(env and all(ref.get("optional") is True for ref in env),
                        f"{where}: envFrom Secret {secret}, optional")


def self_test(r):
    """The credential rules on known cases: each bad case must fail them, each good
    one pass, so a rule that has stopped matching cannot pass unseen."""
    def targets_file(text):
        return check_targets, [{"kind": "ConfigMap", "metadata": {"name": TARGETS_CONFIGMAP}, "data": {"targets.yaml": text}}]

    def pod(role, mount=(), volume=(), secret_ref=(), secret="svc-credentials", only=False):
        """A Deployment of `role` given every Secret of CREDENTIAL_SECRETS as the base
        does (`only`: just `secret`), with the mount's, the volume's and the envFrom
        entry's fields of `secret` overridden."""
        def given(e):
            mine = e["secret"] == secret
            return ({"secretRef": {"name": e["secret"], "optional": True, **dict(secret_ref if mine else ())}},
                    {"name": e["secret"], "mountPath": e["dir"], "readOnly": True, **dict(mount if mine else ())},
                    {"name": e["secret"], "secret": {"secretName": e["secret"], "optional": True, "defaultMode": 0o440,
                                                     **dict(volume if mine else ())}})
        env, mounts, volumes = zip(*map(given, (e for e in CREDENTIAL_SECRETS if not only or e["secret"] == secret)))
        c = {"name": role, "args": [role], "envFrom": list(env), "volumeMounts": list(mounts)}
        spec = {"containers": [c], "volumes": list(volumes)}
        return check_credentials, targets_file("targets: []\n")[1] + [
            {"kind": "Deployment", "metadata": {"name": role}, "spec": {"template": {"spec": spec}}}]

    good = "targets:\n  - name: a\n    url: "
    cases = [
        (True, "a target with its credentials from the Secret", targets_file(
            good + "https://svc:${A_PASSWORD}@a.example/health?token=${A_TOKEN}\n"
            "    headers: {X-Api-Key: \"${A_TOKEN}\"}\n"
            "    basic_auth: {username: svc, password: {file: /etc/svc/credentials/a}}\n"
            "  - name: b\n    url: {file: /etc/svc/credentials/b-url}\n    basic_auth:\n"
            "      username: svc\n      password:\n        file: /etc/svc/credentials/b\n"
            "notify:\n  - url: ${SLACK_WEBHOOK_URL}\n    kind: slack\n")),
        (False, "a password in a target's URL", targets_file(good + "https://svc:hunter2@a.example/health\n")),
        (False, "a token in a target's URL", targets_file(good + "https://a.example/health?access_token=abc123\n")),
        (False, "a basic_auth password", targets_file(good + "https://a.example/\n    basic_auth: {username: svc, password: hunter2}\n")),
        (False, "a basic_auth password on its own line", targets_file(
            good + "https://a.example/\n    basic_auth:\n      username: svc\n      password:\n        hunter2\n")),
        (False, "a credential in a comment's example", targets_file("targets: []\n# - url: https://u:hunter2@a.example/\n")),
        (False, "a Slack webhook's URL", targets_file("notify:\n  - {url: https://hooks.slack.com/services/T0/B0/X, kind: slack}\n")),
        (True, "channels with their credentials from svc-notify", targets_file(
            "notify:\n  - {name: oncall, kind: pagerduty, routing_key: \"${PD_ROUTING_KEY}\", on: [down, up]}\n"
            "  - {name: team, kind: slack, url: {file: /etc/svc/notify/slack-url}}\n"
            "  - name: ops\n    kind: opsgenie\n    api_key:\n      file: /etc/svc/notify/opsgenie-key\n"
            "  - {name: push, kind: ntfy, url: https://ntfy.example/svc, token: {file: /etc/svc/notify/ntfy}}\n"
            "  - {name: chat, kind: discord, url: \"${DISCORD_WEBHOOK_URL}\"}\n"
            "  - name: mail\n    kind: email\n    url: smtp://svc:${SMTP_PASSWORD}@mail.internal:587\n"
            "    from: svc@example.com\n    to: [oncall@example.com]\n    repeat: 1h\n"
            "  - {url: https://alerts.example.com/hook}\n"
            "targets:\n  - {name: a, url: https://a.example/, notify: [oncall, mail]}\n")),
        (False, "a PagerDuty routing_key", targets_file("notify:\n  - {kind: pagerduty, routing_key: 0123456789abcdef}\n")),
        (False, "an ntfy token on its own line", targets_file(
            "notify:\n  - kind: ntfy\n    url: https://ntfy.example/svc\n    token:\n      tk_0123\n")),
        (False, "an SMTP password in the URL", targets_file("notify:\n  - {kind: email, url: \"smtps://svc:hunter2@mail.internal\"}\n")),
        (False, "a Discord webhook's URL", targets_file(
            "notify:\n  - {kind: discord, url: https://discord.com/api/webhooks/1/abc}\n")),
        (False, "a Teams workflow's signature", targets_file(
            "notify:\n  - {kind: teams, url: \"https://x.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sp=run&sig=abc\"}\n")),
        (False, "a Slack channel's URL not from a Secret", targets_file(
            "notify:\n  - {kind: slack, url: https://slack-proxy.example/hook}\n")),
        (False, "a channel's `on` that Helm turned into true", targets_file(
            "notify:\n  - {kind: pagerduty, routing_key: \"${PD_ROUTING_KEY}\", \"true\": [down]}\n")),
        (False, "a file outside the mounted Secrets", targets_file(
            "notify:\n  - {kind: opsgenie, api_key: {file: /etc/svc/notfiy/opsgenie-key}}\n")),
        (True, "the worker given the Secrets as the base does", pod("worker")),
        (False, "the dashboard given the Secret", pod("dashboard")),
        (False, "the Secret mounted writable", pod("worker", mount={"readOnly": False})),
        (False, "the Secret mounted by subPath", pod("worker", mount={"subPath": "payments-password"})),
        (False, "the Secret required by the volume", pod("worker", volume={"optional": False})),
        (False, "the Secret required by envFrom", pod("worker", secret_ref={"optional": False})),
        (False, "the Secret's files readable by others", pod("worker", volume={"defaultMode": 0o444})),
        (False, "the Secret's files at Kubernetes' default mode", pod("worker", volume={"defaultMode": None})),
        (False, "the dashboard given svc-notify", pod("dashboard", secret="svc-notify", only=True)),
        (False, "svc-notify mounted elsewhere than /etc/svc/notify",
         pod("worker", secret="svc-notify", mount={"mountPath": "/etc/svc/credentials/notify"})),
        (False, "svc-notify required by envFrom", pod("worker", secret="svc-notify", secret_ref={"optional": False})),
    ]
    for ok, what, (check, objs) in cases:
        trial = Report(quiet=True)
        check(objs, trial)
        r.check((trial.failed == 0) == ok, f"self-test: {what} {'passes' if ok else 'fails'} the credential rules")


def route(objs, path, host=INGRESS_HOST):
    """The Service an Ingress sends `path` to: longest matching path, Exact before Prefix."""
    best = None
    for ing in (o for o in objs if o["kind"] == "Ingress"):
        for rule in ing["spec"]["rules"]:
            if rule.get("host", host) != host:
                continue
            for p in rule["http"]["paths"]:
                want, kind = p["path"], p["pathType"]
                if kind == "Exact":
                    hit = path == want
                else:
                    stem = want.rstrip("/")
                    hit = stem == "" or path == stem or path.startswith(stem + "/")
                if hit:
                    rank = (len(want), kind == "Exact")
                    if best is None or rank > best[0]:
                        best = (rank, p["backend"]["service"]["name"])
    return best and best[1]


def role_behind(objs, service_name):
    """The svc role (first container argument) of the workloads behind a Service."""
    svc = next((o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == service_name), None)
    if not svc:
        return None
    roles = {role_of(c) for w in workloads_selected(objs, svc["spec"]["selector"]) for c in pod_spec(w)["containers"]}
    return roles.pop() if len(roles) == 1 else None


def check_ingress_routes(objs, r):
    if not any(o["kind"] == "Ingress" for o in objs):
        return
    for path, role in INGRESS_EXPECTATIONS:
        got = role_behind(objs, route(objs, path))
        r.check(got == role, f"Ingress routes {path} to the {role} (goes to {got or 'nothing'})")
    # An Ingress for another host (components/public-status) is public: it exposes
    # the status pages and badges of the dashboard and nothing else.
    for ing in (o for o in objs if o["kind"] == "Ingress"):
        for rule in ing["spec"]["rules"]:
            if rule.get("host") == INGRESS_HOST:
                continue
            for p in rule["http"]["paths"]:
                role = role_behind(objs, p["backend"]["service"]["name"])
                r.check(p["path"] in PUBLIC_PATHS and p["pathType"] == "Prefix" and role == "dashboard",
                        f"{name_of(ing)}: host {rule.get('host')} exposes only {' '.join(PUBLIC_PATHS)} "
                        f"of the dashboard (has {p['path']} on the {role or 'nothing'})")


def scraped_jobs(objs):
    """The `job` label values of the targets the ServiceMonitors in objs create."""
    jobs = set()
    for m in (o for o in objs if o["kind"] == "ServiceMonitor"):
        for s in (o for o in objs if o["kind"] == "Service"):
            if matches(m["spec"]["selector"], s["metadata"].get("labels", {})):
                label = m["spec"].get("jobLabel")
                jobs.add(s["metadata"].get("labels", {}).get(label) if label else s["metadata"]["name"])
    return jobs


def check_crds(objs, r):
    services = [o for o in objs if o["kind"] == "Service"]
    for o in objs:
        kind = o["kind"]
        if kind == "ServiceMonitor":
            selected = [s for s in services if matches(o["spec"]["selector"], s["metadata"].get("labels", {}))]
            r.check(selected, f"{name_of(o)}: selector matches a Service")
            for ep in o["spec"].get("endpoints", []):
                r.check(ep.get("path", "/metrics").startswith("/"), f"{name_of(o)}: endpoint path is absolute")
                for s in selected:
                    r.check(any(p.get("name") == ep.get("port") for p in s["spec"]["ports"]),
                            f"{name_of(o)}: port {ep.get('port')!r} is a named port of {name_of(s)}")
        elif kind == "PodMonitor":
            pods = workloads_selected(objs, o["spec"]["selector"])
            r.check(pods, f"{name_of(o)}: selector matches a workload")
            for ep in o["spec"].get("podMetricsEndpoints", []):
                r.check(all(any(port_number(c, ep.get("port")) for c in pod_spec(w)["containers"]) for w in pods),
                        f"{name_of(o)}: port {ep.get('port')!r} is a container port")
        elif kind == "PrometheusRule":
            groups = o["spec"].get("groups", [])
            r.check(groups, f"{name_of(o)}: has rule groups")
            # `up{job="X"}`: the Operator names a ServiceMonitor target's job after its
            # Service (unless jobLabel says otherwise), so X must be a scraped Service.
            jobs = scraped_jobs(objs)
            for g in groups:
                for rule in g.get("rules", []):
                    for job in re.findall(r'\bup\{[^}]*\bjob\s*=\s*"([^"]*)"', rule.get("expr", "")):
                        r.check(job in jobs, f"{name_of(o)} {rule.get('alert') or rule.get('record')}: "
                                             f"job {job!r} is a Service a ServiceMonitor scrapes (scraped: {sorted(jobs)})")
            names = [g.get("name") for g in groups]
            r.check(len(set(names)) == len(names), f"{name_of(o)}: group names are unique")
            for g in groups:
                for rule in g.get("rules", []):
                    label = rule.get("alert") or rule.get("record")
                    r.check(("alert" in rule) != ("record" in rule), f"{name_of(o)} {label}: exactly one of alert/record")
                    r.check(isinstance(rule.get("expr"), str) and rule["expr"].strip(), f"{name_of(o)} {label}: has an expr")
                    if "for" in rule:
                        r.check(re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule["for"]), f"{name_of(o)} {label}: `for` is a duration")
                    if "alert" in rule:
                        r.check(rule.get("labels", {}).get("severity") in SEVERITIES, f"{name_of(o)} {label}: severity label")
                        r.check(rule.get("annotations", {}).get("summary"), f"{name_of(o)} {label}: summary annotation")
        elif kind == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {}):
            for key, text in o.get("data", {}).items():
                try:
                    dash = json.loads(text)
                except ValueError as e:
                    r.check(False, f"{name_of(o)} {key}: dashboard JSON parses ({e})")
                    continue
                r.check(dash.get("uid") and dash.get("title"), f"{name_of(o)} {key}: dashboard has uid and title")
                for p in dash.get("panels", []):
                    if p.get("type") != "row":
                        r.check(p.get("targets") and all(t.get("expr") for t in p["targets"]),
                                f"{name_of(o)} {key}: panel {p.get('title')!r} has queries")


def principal(sa):
    return f"cluster.local/ns/{NAMESPACE}/sa/{sa}"


def allowed_calls(objs, kind):
    """{(app, caller, port)} that the NetworkPolicies (kind NetworkPolicy) or the
    AuthorizationPolicies admit; callers are mesh principals. Rules on sidecar ports
    only (outside mTLS) and policies that select no pod are left out."""
    workloads = [w for w in objs if w["kind"] in WORKLOAD_KINDS]
    calls = set()
    for pol in (o for o in objs if o["kind"] == kind):
        spec = pol["spec"]
        if kind == "NetworkPolicy":
            if "Ingress" not in spec.get("policyTypes", []):
                continue
            targets = [w for w in workloads if matches(spec["podSelector"], pod_labels(w))]
            for rule in spec.get("ingress") or []:
                ports = {str(p["port"]) for p in rule.get("ports", [])}
                if ports and ports <= {str(p) for p in SIDECAR_PORTS}:
                    continue
                callers = set()
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer:
                        ns = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                        callers.add(MESH_NAMESPACE_PRINCIPALS.get(ns, f"namespace {ns}, outside the mesh"))
                    else:
                        callers |= {principal(pod_spec(w).get("serviceAccountName"))
                                    for w in workloads if matches(peer["podSelector"], pod_labels(w))}
                calls |= {(pod_labels(w)["app"], c, p) for w in targets for c in callers for p in ports or {"*"}}
        elif spec.get("action", "ALLOW") == "ALLOW" and spec.get("rules"):
            selector = (spec.get("selector") or {}).get("matchLabels", {})
            targets = [w for w in workloads if matches(selector, pod_labels(w))]
            for rule in spec["rules"]:
                callers = {c for f in rule.get("from", []) for c in f["source"].get("principals", [])}
                ports = {p for t in rule.get("to", []) for p in t["operation"].get("ports", [])}
                calls |= {(pod_labels(w)["app"], c, p) for w in targets for c in callers for p in ports or {"*"}}
    return calls


def check_mesh(objs, r):
    """With components/istio: STRICT mTLS, deny by default, AuthorizationPolicies
    admitting exactly what the NetworkPolicies admit, istiod reachable, the roles'
    sidecars draining as long as the roles, a circuit breaker per role's Service and
    the gateway's retries on connect failures and 503 only."""
    if not any(o["kind"] in ("PeerAuthentication", "AuthorizationPolicy") for o in objs):
        return
    r.check(injected(objs), f"Namespace {NAMESPACE} is labelled istio-injection=enabled")
    r.check(any(o["kind"] == "PeerAuthentication" and not o["spec"].get("selector")
                and o["spec"].get("mtls", {}).get("mode") == "STRICT" for o in objs),
            "a namespace-wide PeerAuthentication sets mTLS STRICT")
    r.check(any(o["kind"] == "AuthorizationPolicy" and not o["spec"] for o in objs),
            "AuthorizationPolicy allow-nothing denies what no policy admits")
    by_np, by_ap = allowed_calls(objs, "NetworkPolicy"), allowed_calls(objs, "AuthorizationPolicy")
    for app, caller, port in sorted(by_np - by_ap):
        r.check(False, f"a NetworkPolicy lets {caller} reach {app}:{port}, no AuthorizationPolicy does")
    for app, caller, port in sorted(by_ap - by_np):
        r.check(False, f"an AuthorizationPolicy lets {caller} reach {app}:{port}, no NetworkPolicy does")
    r.check(by_np and by_np == by_ap, f"AuthorizationPolicies and NetworkPolicies admit the same {len(by_np)} calls")
    r.check(any(o["kind"] == "NetworkPolicy" and o["spec"]["podSelector"] == {} and
                any(p.get("port") == 15012 for e in o["spec"].get("egress", []) for p in e.get("ports", []))
                for o in objs), "every pod may reach istiod (istio-system, 15012)")
    config = next((o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"].startswith("app-config")), {})
    drain = duration_seconds(config.get("DRAIN_DELAY", "5s")) + duration_seconds(config.get("GRACE_PERIOD", "20s"))
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
        notes = w["spec"]["template"]["metadata"].get("annotations") or {}
        proxy = json.loads(notes.get("proxy.istio.io/config", "{}"))
        r.check(proxy.get("holdApplicationUntilProxyStarts") is True, f"{name_of(w)}: holdApplicationUntilProxyStarts")
        r.check(notes.get("sidecar.istio.io/rewriteAppHTTPProbers") != "false", f"{name_of(w)}: probes rewritten to the sidecar")
        if any(role_of(c) for c in containers(w)):
            sidecar = duration_seconds(proxy.get("terminationDrainDuration", "5s"))
            grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
            r.check(drain <= sidecar < grace, f"{name_of(w)}: sidecar drain {sidecar:g}s covers DRAIN_DELAY + "
                                              f"GRACE_PERIOD ({drain:g}s) inside terminationGracePeriodSeconds {grace}")
            r.check(notes.get("prometheus.io/scrape") == "true", f"{name_of(w)}: metrics merged into the sidecar's 15020")
    # The per-replica probes call pod addresses: a headless Service of detected
    # protocol over each role gives each pod address an mTLS listener of its own.
    for role in ("api-gateway", "worker", "dashboard"):
        headless = [o for o in objs if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"
                    and (o["spec"].get("selector") or {}).get("app") == role]
        r.check(headless and all(not p.get("appProtocol") and "-" not in p.get("name", "") and
                                 p.get("name") not in ("http", "http2", "grpc", "tcp", "tls", "https")
                                 for o in headless for p in o["spec"]["ports"]),
                f"a headless Service over the {role} pods, its ports of detected protocol (no protocol name)")
    rules = {o["spec"]["host"].split(".")[0]: o["spec"].get("trafficPolicy", {}) for o in objs if o["kind"] == "DestinationRule"}
    for svc in ("api-gateway-service", "worker-service", "dashboard-service"):
        tp = rules.get(svc, {})
        r.check(tp.get("connectionPool") and tp.get("outlierDetection"),
                f"DestinationRule for {svc}: connection pool and outlier detection")
    routes = [h for o in objs if o["kind"] == "VirtualService" and "api-gateway-service" in o["spec"]["hosts"]
              for h in o["spec"].get("http", [])]
    r.check(routes, "a VirtualService for the gateway")
    for h in routes:
        retry = set((h.get("retries") or {}).get("retryOn", "").split(","))
        r.check(h.get("timeout") and retry <= RETRY_ON,
                f"VirtualService route {h.get('name')}: a timeout, retries on {sorted(RETRY_ON)} only (has {sorted(retry)})")


# ---------------------------------------------------------------- metric names


def promql_metric_names(expr):
    """Metric names in a PromQL expression (no full parser: strips strings, label
    matchers, grouping clauses and ranges, then keeps identifiers not called as functions)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group()
        if word.lower() in PROMQL_WORDS or re.match(r"\s*\(", expr[m.end():]):
            continue
        names.add(word)
    return names


def used_metrics(objs):
    """{metric name: [where it is used]} over PrometheusRules and Grafana dashboards."""
    used = {}
    for o in objs:
        exprs = []
        if o["kind"] == "PrometheusRule":
            exprs = [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
                     for g in o["spec"]["groups"] for rule in g["rules"]]
        elif o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {}):
            for text in o.get("data", {}).values():
                for p in json.loads(text).get("panels", []):
                    exprs += [(f"panel {p.get('title')!r}", t["expr"]) for t in p.get("targets", [])]
        for where, expr in exprs:
            for name in promql_metric_names(expr):
                used.setdefault(name, []).append(where)
    return used


def owner(metric):
    for prefix, role in METRIC_OWNERS.items():
        if metric.startswith(prefix):
            return role
    return None


def check_metric_owners(used, r):
    for name, where in sorted(used.items()):
        r.check(owner(name) or name in EXTERNAL_METRICS,
                f"metric {name} (in {where[0]}) is exported by a role or listed as external")


# ---------------------------------------------------------------- live checks


def http_get(url, timeout=3.0, method="GET", body=None):
    """(status, body text); status 0 when nothing answers."""
    req = urllib.request.Request(url, method=method, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def exposed_names(text):
    """Sample names in Prometheus text format, plus histogram/summary series names."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            if kind in ("histogram", "summary"):
                names |= {name + s for s in ("_bucket", "_sum", "_count")}
            names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def page_urls(html):
    """Same-origin URLs a page makes the browser request: links, assets, htmx and fetch calls."""
    found = re.findall(r'\b(?:href|src|action|hx-get|hx-post|data-url|data-src)\s*=\s*"(/[^"/][^"]*|/)"', html)
    found += re.findall(r"fetch\(\s*['\"`](/[^'\"`]*)", html)
    return sorted({u.split("#")[0] for u in found})


class Binary:
    """`svc all` running in the background, its logs in a temporary file."""

    def __init__(self, path, ports, extra_args):
        self.ports = ports
        self.log = tempfile.NamedTemporaryFile(prefix="svc-all-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_") and k not in ("PORT", "HOST")}
        env.update(APP_ENV="development", LOG_LEVEL="info", WORKER_INTERVAL="1s", REFRESH_PERIOD="1s", DRAIN_DELAY="1s")
        argv = [path, "all", *extra_args]
        print(f"   starting {' '.join(argv)} (log: {self.log.name})")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, role, path):
        return f"http://127.0.0.1:{self.ports[role]}{path}"

    def wait_up(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if http_get(self.url("gateway", "/health/live"))[0] == 200:
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def log_tail(self, lines=30):
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def poll(fn, seconds):
    """Call fn() until it returns a falsy 'missing' value or the deadline passes; return the last value."""
    deadline = time.monotonic() + seconds
    while True:
        missing = fn()
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def live_checks(manifests, svc, used, r, wait):
    r.section(f"live: {' '.join(svc.proc.args)}")
    if not r.check(svc.wait_up(), "svc all starts and the gateway answers /health/live"):
        return

    # Probe paths, per role, from every manifest given.
    probes = {}
    for objs in manifests.values():
        for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
            for c in pod_spec(w)["containers"]:
                role = role_of(c)
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    get = (c.get(kind) or {}).get("httpGet")
                    if role and get:
                        probes.setdefault((role, get["path"]), set()).add(f"{name_of(w)} {kind}")
    not_200 = poll(lambda: {k: s for k in probes if (s := http_get(svc.url(*k))[0]) != 200}, wait)
    for (role, path), users in sorted(probes.items()):
        status = not_200.get((role, path), 200)
        r.check(status == 200, f"{role} answers {path} with 200 (got {status or 'no answer'}); used by {', '.join(sorted(users))}")

    # Traffic, so that per-request and per-task series exist.
    for path in ("/", "/api/status", "/api/info", "/no-such-path"):
        http_get(svc.url("gateway", path))
    http_get(svc.url("gateway", "/api/jobs"), method="POST", body=b'{"task_type":"data_processing"}')

    def missing_metrics():
        seen = {role: exposed_names(http_get(svc.url(role, "/metrics"))[1]) for role in ROLES}
        # The targets' states, once for the cluster, on a path of the dashboard's own.
        seen["dashboard"] |= exposed_names(http_get(svc.url("dashboard", "/metrics/targets"))[1])
        return {n: owner(n) for n in used if owner(n) and n not in seen[owner(n)]}
    missing = poll(missing_metrics, wait)
    for name, where in sorted(used.items()):
        if owner(name):
            r.check(name not in missing, f"{owner(name)} /metrics has {name} (used in {', '.join(sorted(set(where)))})")
        else:
            print(f"   skip {name}: from {EXTERNAL_METRICS[name]}, not svc")
    if missing:
        by_role = {}
        for name, role in missing.items():
            by_role.setdefault(role, []).append(name)
        for role, names in sorted(by_role.items()):
            print(f"   missing on {role} /metrics: {' '.join(sorted(names))}")

    # Ingress: every request the dashboard page makes lands on a role that answers it.
    # Builds whose Ingress and Services are the same are checked once.
    groups = {}
    for path, objs in manifests.items():
        routing = [o for o in objs if o["kind"] in ("Ingress", "Service")]
        if any(o["kind"] == "Ingress" for o in routing):
            key = json.dumps([(o["kind"], o["metadata"]["name"], o["spec"]) for o in routing], sort_keys=True)
            groups.setdefault(key, (objs, []))[1].append(os.path.basename(path))
    for objs, paths in groups.values():
        label = ", ".join(paths)
        status, html = http_get(svc.url(role_behind(objs, route(objs, "/")) or "dashboard", "/"))
        urls = page_urls(html) if status == 200 else []
        r.check(status == 200, f"[{label}] the page behind Ingress / answers 200 (got {status or 'no answer'})")
        if urls:
            print(f"   [{label}] the page requests: {' '.join(urls)}")
        for path in sorted(set(INGRESS_FETCH) | set(urls)):
            role = role_behind(objs, route(objs, path.split("?")[0]))
            got = http_get(svc.url(role, path))[0] if role else 0
            r.check(200 <= got < 300, f"[{label}] Ingress sends {path} to {role or 'nothing'}, which answers {got or 'nothing'}")

    r.check(svc.proc.poll() is None, "svc all is still running after the checks")


def run_live(args, manifests, ports, used, r):
    svc = Binary(args.svc_binary, ports, args.svc_arg)
    before = r.failed
    try:
        live_checks(manifests, svc, used, r, args.wait)
    finally:
        svc.stop()
    if r.failed > before:
        print(f"   last lines of the svc log ({svc.log.name}):\n{svc.log_tail()}")
    else:
        os.unlink(svc.log.name)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifests", nargs="+", help="built manifests, e.g. from `kubectl kustomize deploy/overlays/prod`")
    ap.add_argument("--svc-binary", metavar="PATH", help="also check against `PATH all` running on this machine")
    ap.add_argument("--ports", default=",".join(f"{k}={v}" for k, v in DEFAULT_PORTS.items()),
                    help="where `svc all` serves each role (default: %(default)s)")
    ap.add_argument("--svc-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `svc all`, e.g. --svc-arg=--gateway-port=18080 (repeatable)")
    ap.add_argument("--wait", type=float, default=30, help="seconds to wait for probes and metrics to appear")
    args = ap.parse_args()

    r = Report()
    manifests = {path: load(path) for path in args.manifests}
    r.section("the credential rules on known cases")
    self_test(r)
    used = {}
    for path, objs in manifests.items():
        r.section(f"static: {path} ({len(objs)} objects)")
        before = r.failed
        check_namespace(objs, r)
        check_workloads(objs, r)
        check_one_image(objs, r)
        check_service_accounts(objs, r)
        check_services(objs, r)
        check_references(objs, r)
        check_redis_peers(objs, r)
        check_sentinel_config(objs, r)
        check_redis_tls(objs, r)
        check_targets(objs, r)
        check_credentials(objs, r)
        check_ingress_routes(objs, r)
        check_crds(objs, r)
        check_mesh(objs, r)
        for name, where in used_metrics(objs).items():
            used.setdefault(name, []).extend(where)
        print(f"   {'ok' if r.failed == before else 'failures above'}")
    r.section("metric names in alerts and dashboards")
    check_metric_owners(used, r)
    print(f"   {len(used)} names: {' '.join(sorted(used))}")

    if args.svc_binary:
        ports = {k: int(v) for k, v in (p.split("=") for p in args.ports.split(","))}
        busy = [f"{role}:{port}" for role, port in ports.items() if port_in_use(port)]
        if r.check(not busy, f"the ports of `svc all` are free (in use: {' '.join(busy)})"):
            run_live(args, manifests, ports, used, r)

    print(f"policy: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
