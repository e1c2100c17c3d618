#!/usr/bin/env python3
"""The Helm chart renders the same objects as the kustomize build it stands for.

Compares two built manifests object by object (kind and name; the ConfigMap hash
suffix kustomize adds is ignored), leaving out metadata labels and annotations,
which the two tools set differently. Data keys holding YAML files (TARGETS_FILE's
targets.yaml) are compared as the YAML they hold: the kustomize base carries its
examples as comments, the chart in values.yaml.

    kubectl kustomize deploy/base > base.yaml
    helm template svc deploy/helm/svc -n microservices-demo > helm.yaml
    python3 deploy/helm_parity.py base.yaml helm.yaml
"""

import difflib
import json
import re
import sys

import yaml


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
        if d["kind"] == "ConfigMap":
            for key, text in (d.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")):
                    d["data"][key] = yaml.safe_load(text)
        objs[(d["kind"], meta["name"])] = d
    return objs


def main(kustomize_path, chart_path):
    want, have = load(kustomize_path), load(chart_path)
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
