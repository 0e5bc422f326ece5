"""Prints, as JSON, what the emulator tests take from template.yaml: the table and queue
definitions they create (keys, index, TTL attribute, queue timeout and redrive), so the tests
build exactly what the template deploys, and each function's IAM policy statements, so
crates/chat-aws/tests/iam_policy.rs can hold them to the calls the code makes; the buckets and
the HTTP API's CORS (template.rs holds the attachment bucket to the code's keys, tag and upload
headers); and the alarms and dashboards (crates/chat-aws/tests/template.rs holds them to the metrics the code emits).

Usage: .venv/bin/python infra/template_resources.py template.yaml [Parameter=value ...]

Parameters not given take their defaults. In the policies, conditions and Fn::If are
evaluated for those parameter values, and ARNs are made concrete with the pseudo parameters
below, except that a resource of this template stands for itself by its logical id:
`!GetAtt Table.Arn` is "Table", `${Table.Arn}/index/x` is "Table/index/x", `${WebSocketApi}` is
"WebSocketApi" (any attribute: `${DispatchQueue.QueueName}` is "DispatchQueue").
"""
import json
import re
import sys

from cfnlint.decode import decode

template, problems = decode(sys.argv[1])
if problems:
    sys.exit(f"template.yaml does not parse: {problems}")
res = template["Resources"]
params = template.get("Parameters", {})
given = dict(a.split("=", 1) for a in sys.argv[2:])
unknown = set(given) - set(params)
if unknown:
    sys.exit(f"no such parameters: {sorted(unknown)}")
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "chat"}
NO_VALUE = object()


def param(name):
    if name in PSEUDO:
        return PSEUDO[name]
    if name in given:
        return given[name]
    if name in params:
        return str(params[name].get("Default", ""))
    if name in res:
        return name
    raise SystemExit(f"unresolvable reference {name}")


def condition(name):
    return evaluate(template["Conditions"][name])


def evaluate(v):
    """Evaluates intrinsics for the given parameters (see the module's doc)."""
    if isinstance(v, list):
        return [x for x in (evaluate(x) for x in v) if x is not NO_VALUE]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        (k, a), = v.items()
        if k == "Ref":
            return NO_VALUE if a == "AWS::NoValue" else param(a)
        if k == "Condition":
            return condition(a)
        if k == "Fn::GetAtt":
            logical, _attr = a if isinstance(a, list) else a.split(".", 1)
            return logical
        if k == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}",
                          lambda m: param(m.group(1) if m.group(1).startswith("AWS::")
                                          else m.group(1).split(".")[0]), a)
        if k == "Fn::If":
            name, yes, no = a
            return evaluate(yes if condition(name) else no)
        if k == "Fn::Equals":
            x, y = evaluate(a)
            return str(x) == str(y)
        if k == "Fn::Not":
            return not evaluate(a[0])
        if k == "Fn::Or":
            return any(evaluate(a))
        if k == "Fn::And":
            return all(evaluate(a))
        if k.startswith("Fn::"):
            raise SystemExit(f"unsupported intrinsic {k}")
    return {k: x for k, x in ((k, evaluate(x)) for k, x in v.items()) if x is not NO_VALUE}


def as_list(v):
    return v if isinstance(v, list) else [v]


def functions():
    """Each function by its binary name: logical id, policy statements, event source queues,
    reserved concurrency, timeout and its own environment variables (beside the globals)."""
    out = {}
    for logical, r in res.items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        statements = []
        for policy in evaluate(r["Properties"].get("Policies", [])):
            if not isinstance(policy, dict) or "Statement" not in policy:
                raise SystemExit(f"{logical}: only inline policy documents are supported")
            for st in as_list(policy["Statement"]):
                if st.get("Effect") != "Allow" or "NotAction" in st or "NotResource" in st:
                    raise SystemExit(f"{logical}: only Allow statements with Action and Resource")
                statements.append({"sid": st.get("Sid", ""),
                                   "actions": as_list(st["Action"]),
                                   "resources": as_list(st["Resource"])})
        queues = [evaluate(m["Properties"]["EventSourceArn"]) for m in res.values()
                  if m["Type"] == "AWS::Lambda::EventSourceMapping"
                  and m["Properties"]["FunctionName"] == {"Ref": logical}]
        reserved = evaluate({"x": r["Properties"].get("ReservedConcurrentExecutions",
                                                     {"Ref": "AWS::NoValue"})}).get("x")
        out[r["Metadata"]["BuildProperties"]["Binary"]] = {
            "logicalId": logical, "statements": statements, "eventSourceQueues": queues,
            "reservedConcurrency": reserved,
            "timeout": evaluate(r["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])),
            "environment": evaluate(r["Properties"].get("Environment", {}).get("Variables", {}))}
    return out


def depends_on(r):
    d = r.get("DependsOn", [])
    return d if isinstance(d, list) else [d]


def apis():
    """Each API's stages (throttling settings, dependencies) and routes, for the tests."""
    out = {}
    for logical, r in res.items():
        if r["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        of_api = lambda t: {k: x for k, x in res.items()
                            if x["Type"] == t and x["Properties"]["ApiId"] == {"Ref": logical}}
        out[logical] = {
            "protocol": r["Properties"]["ProtocolType"],
            "stages": {k: {"dependsOn": depends_on(x),
                           "defaultRouteSettings": evaluate(x["Properties"].get("DefaultRouteSettings")),
                           "routeSettings": evaluate(x["Properties"].get("RouteSettings", {}))}
                       for k, x in of_api("AWS::ApiGatewayV2::Stage").items()},
            "routes": {k: {"routeKey": x["Properties"]["RouteKey"], "dependsOn": depends_on(x)}
                       for k, x in of_api("AWS::ApiGatewayV2::Route").items()},
        }
    return out


websocket_stage = next(evaluate(r["Properties"]["StageName"]) for r in res.values()
                       if r["Type"] == "AWS::ApiGatewayV2::Stage"
                       and r["Properties"]["ApiId"] == {"Ref": "WebSocketApi"})


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
    "table": {k: plain(table[k]) for k in ("AttributeDefinitions", "KeySchema", "LocalSecondaryIndexes", "GlobalSecondaryIndexes")},
    "ttlAttribute": table["TimeToLiveSpecification"]["AttributeName"],
    "queueVisibilityTimeout": plain(queue.get("VisibilityTimeout")),
    "maxReceiveCount": plain(queue["RedrivePolicy"]["maxReceiveCount"]),
    "pseudo": PSEUDO,
    "webSocketStage": websocket_stage,
    "functions": functions(),
    "apis": apis(),
    "environment": evaluate(template["Globals"]["Function"]["Environment"]["Variables"]),
    "buckets": {k: {**evaluate(r["Properties"]), "DeletionPolicy": r.get("DeletionPolicy")}
                for k, r in res.items() if r["Type"] == "AWS::S3::Bucket"},
    "httpCors": evaluate(res["HttpApi"]["Properties"].get("CorsConfiguration", {})),
    "alarms": {k: evaluate(r["Properties"]) for k, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"},
    "dashboards": [json.loads(evaluate(r["Properties"]["DashboardBody"])) for r in res.values()
                   if r["Type"] == "AWS::CloudWatch::Dashboard"],
}))
