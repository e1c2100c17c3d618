#!/usr/bin/env python3
"""The Helm chart renders the same objects as the kustomize build it stands for.

Compares two built manifests object by object (kind and name; the ConfigMap hash
suffix kustomize adds is ignored), leaving out metadata labels and annotations,
which the two tools set differently. What only the chart has is listed in
CHART_ONLY and removed from its side before comparing.

    kubectl kustomize deploy/base > base.yaml
    helm template svc deploy/helm/svc -n microservices-demo > helm.yaml
    python3 deploy/helm_parity.py base.yaml helm.yaml
"""

import difflib
import json
import re
import sys

import yaml

# The chart's targets ConfigMap, mounted into the workers (values: targets). The
# kustomize base has no targets file yet.
CHART_ONLY_OBJECTS = {("ConfigMap", "svc-targets")}
CHART_ONLY_ENV = {"TARGETS_FILE"}
CHART_ONLY_VOLUMES = {"targets"}


def load(path):
    objs = {}
    for d in yaml.safe_load_all(open(path)):
        if not d:
            continue
        # app-config-<hash> (kustomize) is app-config (Helm), wherever it is named.
        d = json.loads(re.sub(r'"app-config-[a-z0-9]{10}"', '"app-config"', json.dumps(d)))
        meta = d["metadata"]
        for key in ("labels", "annotations"):
            meta.pop(key, None)
            (d.get("spec", {}).get("template", {}).get("metadata") or {}).pop(key, None)
        objs[(d["kind"], meta["name"])] = d
    return objs


def drop_chart_only(objs):
    for key in CHART_ONLY_OBJECTS:
        objs.pop(key, None)
    for obj in objs.values():
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        vols = [v for v in spec.get("volumes", []) if v["name"] not in CHART_ONLY_VOLUMES]
        spec.pop("volumes", None)
        if vols:
            spec["volumes"] = vols
        for c in spec["containers"]:
            c["env"] = [e for e in c.get("env", []) if e["name"] not in CHART_ONLY_ENV]
            mounts = [m for m in c.get("volumeMounts", []) if m["name"] not in CHART_ONLY_VOLUMES]
            c.pop("volumeMounts", None)
            if mounts:
                c["volumeMounts"] = mounts


def main(kustomize_path, chart_path):
    want, have = load(kustomize_path), load(chart_path)
    drop_chart_only(have)
    failures = 0
    for key in sorted(set(want) | set(have)):
        kind, name = key
        if key not in have:
            print(f"  FAIL {kind}/{name}: in the kustomize build, not in the chart")
        elif key not in want:
            print(f"  FAIL {kind}/{name}: in the chart, not in the kustomize build")
        elif want[key] != have[key]:
            print(f"  FAIL {kind}/{name} differs (- kustomize, + chart):")
            diff = difflib.unified_diff(yaml.safe_dump(want[key]).splitlines(),
                                        yaml.safe_dump(have[key]).splitlines(), lineterm="", n=2)
            print("\n".join("    " + line for line in list(diff)[2:]))
        else:
            continue
        failures += 1
    print(f"parity {kustomize_path} vs {chart_path}: {len(want)} objects, {failures} differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
