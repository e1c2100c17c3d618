#!/usr/bin/env python3
"""Every custom resource validated against its CRD's JSON Schema (deploy/crd-schemas/).

Reads built manifests (kustomize builds, Helm renders, plain YAML files) and checks
each object whose API group has a folder in the schema directory against
`<group>/<kind>_<version>.json`. An object of such a group with no schema file
fails: a kind nobody can check is not deployed unchecked. Objects of other groups
are left to kubernetes-validate.

    python3 deploy/crd_check.py build/prod.yaml deploy/gitops/argocd/*.yaml
"""

import json
import os
import sys

import jsonschema
import yaml

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")
GROUPS = {g for g in os.listdir(SCHEMAS) if os.path.isdir(os.path.join(SCHEMAS, g))}


def schema_path(obj):
    group, _, version = obj["apiVersion"].rpartition("/")
    if group not in GROUPS:
        return None
    return os.path.join(SCHEMAS, group, f"{obj['kind'].lower()}_{version}.json")


def main(paths):
    cache, checked, failures = {}, 0, 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        kinds = []
        for obj in docs:
            schema_file = schema_path(obj)
            if schema_file is None:
                continue
            where = f"{path}: {obj['kind']}/{obj['metadata']['name']}"
            kinds.append(obj["kind"])
            if not os.path.exists(schema_file):
                print(f"  FAIL {where}: no schema {os.path.relpath(schema_file, SCHEMAS)} in {SCHEMAS}")
                failures += 1
                continue
            if schema_file not in cache:
                schema = json.load(open(schema_file))
                cache[schema_file] = jsonschema.validators.validator_for(schema)(schema)
            errors = sorted(cache[schema_file].iter_errors(obj), key=lambda e: list(e.absolute_path))
            checked += 1
            for e in errors:
                print(f"  FAIL {where} at {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}")
            failures += bool(errors)
        print(f"   {os.path.basename(path)}: {len(kinds)} custom resources {sorted(set(kinds))}")
    print(f"crd schemas: {checked} custom resources checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
