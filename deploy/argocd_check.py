#!/usr/bin/env python3
"""Argo CD's objects (deploy/gitops/argocd) against the repository they deploy.

Expands the ApplicationSet's list generator into its Applications (the `{{.key}}`
placeholders and `{{- if eq .key "value" }}` blocks it uses), writes them to OUT for
the CRD schema check, and checks each: its project is the AppProject, its repository
and destination are ones the project allows, its path and components exist and build
with kustomize, every kind of that build is one the project admits, the HPA-owned
replica counts are ignored, dev syncs by itself with prune and self-heal while prod
waits for a person, and the sync waves put ConfigMaps and Redis before the roles.

    kubectl kustomize deploy/gitops/argocd > argocd.yaml
    python3 deploy/argocd_check.py argocd.yaml applications.yaml
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

from policy_check import Report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAVE = "argocd.argoproj.io/sync-wave"
ROLES = ("api-gateway", "worker", "dashboard")
CLUSTER_SCOPED = {"Namespace", "ClusterIssuer"}
HPA_OWNED = {"api-gateway", "worker"}
AUTOMATED_ENVS = {"dev"}


def render(text, values):
    """The subset of Go templates the ApplicationSet uses."""
    def if_block(m):
        key, want, body = m.group(1), m.group(2), m.group(3)
        return body if str(values[key]) == want else ""
    text = re.sub(r'\{\{-? *if eq \.(\w+) "([^"]*)" *-?\}\}\n?(.*?)\{\{-? *end *-?\}\}\n?', if_block, text, flags=re.S)
    return re.sub(r"\{\{ *\.(\w+) *\}\}", lambda m: str(values[m.group(1)]), text)


def merge(base, patch):
    for k, v in patch.items():
        base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def applications(appset):
    spec = appset["spec"]
    template = yaml.safe_dump(spec["template"])
    for gen in spec["generators"]:
        for element in gen["list"]["elements"]:
            app = yaml.safe_load(render(template, element))
            if spec.get("templatePatch"):
                merge(app, yaml.safe_load(render(spec["templatePatch"], element)) or {})
            yield element, {"apiVersion": appset["apiVersion"], "kind": "Application",
                            "metadata": {**app["metadata"], "namespace": appset["metadata"]["namespace"]},
                            "spec": app["spec"]}


def build(source):
    """kubectl kustomize of the Application's path with its components, as Argo CD builds it."""
    path = os.path.join(REPO, source["path"])
    comps = [os.path.normpath(os.path.join(path, c)) for c in source.get("kustomize", {}).get("components", [])]
    with tempfile.TemporaryDirectory() as d:
        rel = lambda p: os.path.relpath(p, d)
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                            "resources": [rel(path)], "components": [rel(c) for c in comps]}, f)
        out = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True)
    if out.returncode:
        return None, out.stderr.strip()
    return [o for o in yaml.safe_load_all(out.stdout) if o], ""


def wave(o):
    return int((o["metadata"].get("annotations") or {}).get(WAVE, "0"))


def main(argocd_path, out_path):
    objs = [o for o in yaml.safe_load_all(open(argocd_path)) if o]
    report = Report()
    check = report.check
    projects = {o["metadata"]["name"]: o for o in objs if o["kind"] == "AppProject"}
    apps = []
    for appset in (o for o in objs if o["kind"] == "ApplicationSet"):
        apps += list(applications(appset))
    apps += [({}, o) for o in objs if o["kind"] == "Application"]
    check(apps, "the Argo CD objects make Applications")
    envs = set()
    for element, app in apps:
        name, spec = app["metadata"]["name"], app["spec"]
        src, dest = spec["source"], spec["destination"]
        env = os.path.basename(src["path"])
        envs.add(env)
        project = projects.get(spec["project"])
        if not check(project, f"{name}: project {spec['project']} is in deploy/gitops/argocd"):
            continue
        pspec = project["spec"]
        check(src["repoURL"] in pspec["sourceRepos"], f"{name}: repository {src['repoURL']} is a source of the project")
        check(any(d["namespace"] == dest["namespace"] for d in pspec["destinations"]),
              f"{name}: namespace {dest['namespace']} is a destination of the project")
        if not check(os.path.isdir(os.path.join(REPO, src["path"])), f"{name}: path {src['path']} exists"):
            continue
        built, err = build(src)
        if not check(built is not None, f"{name}: {src['path']} builds with its components ({err})"):
            continue
        allowed_ns = {(w["group"], w["kind"]) for w in pspec.get("namespaceResourceWhitelist", [])}
        allowed_cluster = {(w["group"], w["kind"]) for w in pspec.get("clusterResourceWhitelist", [])}
        for o in built:
            group = o["apiVersion"].rpartition("/")[0]
            where = f"{name}: {o['kind']}/{o['metadata']['name']}"
            if o["kind"] in CLUSTER_SCOPED:
                check((group, o["kind"]) in allowed_cluster, f"{where} is a cluster kind the project admits")
            else:
                check((group, o["kind"]) in allowed_ns, f"{where} is a kind the project admits ({group or 'core'})")
                check(o["metadata"].get("namespace") == dest["namespace"], f"{where} is in {dest['namespace']}")
        ignored = {d.get("name") for d in spec.get("ignoreDifferences", [])
                   if d.get("kind") == "Deployment" and "/spec/replicas" in d.get("jsonPointers", [])}
        check(HPA_OWNED <= ignored, f"{name}: ignoreDifferences covers the HPA-owned replicas of {sorted(HPA_OWNED)}")
        automated = (spec.get("syncPolicy") or {}).get("automated")
        if env in AUTOMATED_ENVS:
            check(automated and automated.get("prune") and automated.get("selfHeal"),
                  f"{name}: automated sync with prune and self-heal")
        else:
            check(not automated, f"{name}: manual sync (no automated policy)")
        roles = [o for o in built if o["kind"] == "Deployment" and o["metadata"]["name"] in ROLES]
        first = [o for o in built if o["kind"] in ("ConfigMap", "Namespace") or
                 (o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] not in ROLES)]
        for o in first:
            check(all(wave(o) < wave(r) for r in roles),
                  f"{name}: {o['kind']}/{o['metadata']['name']} syncs in a wave before the roles")
        print(f"   {name}: {src['path']} ({len(built)} objects) -> {dest.get('name') or dest.get('server')}/"
              f"{dest['namespace']}, {'automated' if automated else 'manual'} sync")
    check({"dev", "prod", "prod-ha"} <= envs, f"an Application for each of dev, prod, prod-ha (have {sorted(envs)})")
    with open(out_path, "w") as f:
        yaml.safe_dump_all([a for _, a in apps], f)
    print(f"argocd: {len(apps)} Applications, {report.passed} checks passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
