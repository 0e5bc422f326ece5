"""Prints, as JSON, the table and queue definitions of template.yaml that the emulator tests
create, so the tests build exactly what the template deploys (keys, index, TTL attribute,
queue timeout and redrive). Usage: .venv/bin/python infra/template_resources.py template.yaml
"""
import json
import sys

from cfnlint.decode import decode

template, problems = decode(sys.argv[1])
if problems:
    sys.exit(f"template.yaml does not parse: {problems}")
res = template["Resources"]
params = template.get("Parameters", {})


def plain(v):
    """Resolves !Ref to a parameter's default; other intrinsics are dropped."""
    if isinstance(v, dict):
        if set(v) == {"Ref"} and v["Ref"] in params:
            return params[v["Ref"]].get("Default")
        if any(k.startswith("Fn::") or k == "Ref" for k in v):
            return None
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


table = res["Table"]["Properties"]
queue = res["DispatchQueue"]["Properties"]
print(json.dumps({
    "table": {k: plain(table[k]) for k in ("AttributeDefinitions", "KeySchema", "LocalSecondaryIndexes")},
    "ttlAttribute": table["TimeToLiveSpecification"]["AttributeName"],
    "queueVisibilityTimeout": plain(queue.get("VisibilityTimeout")),
    "maxReceiveCount": plain(queue["RedrivePolicy"]["maxReceiveCount"]),
}))
