"""Print Helm values files merged as `helm -f a -f b` merges them (maps deep, the rest
replaced), as JSON, so that the merged result can be checked against values.schema.json."""
import json
import sys

from ruamel.yaml import YAML


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


values = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        values = merge(values, YAML(typ="safe").load(f) or {})
json.dump(values, sys.stdout, indent=1)
