"""Compares the CDK app's synthesized template (infra/cdk) with template.yaml after the SAM
transform, resource by resource, so that the two ways to deploy cannot drift apart unnoticed.

Usage:
  .venv/bin/python tests/cdk_compare.py placeholders <sam.json> <dir>
      writes <dir>/<FunctionId>/bootstrap for every function of the transformed template, each
      holding its binary's name, for an offline `cdk synth -c lambdaDir=<dir>`
  .venv/bin/python tests/cdk_compare.py compare <sam.json> <cdk.out>
      prints every difference and exits 1 if there is one
  .venv/bin/python tests/cdk_compare.py selftest <sam.json> <cdk.out>
      applies each deliberate drift of DRIFTS alone to the transformed template.yaml and checks
      that the comparison then fails and names it (so no kind of difference is ignored)

Logical ids differ by nature (CDK appends hashes), so each resource is named by what it is: the
table, the bucket, the queue with a redrive policy and its dead-letter queue, a function by the
binary it runs (template.yaml's BuildProperties.Binary; in cdk.out the placeholder file its code
asset holds), a role by the function that assumes it, an API by its protocol, a route by its API and
route key, an integration by its API and function, and so on. Every reference (Ref, GetAtt,
Sub, Join) is rewritten to those names, every property of every resource is then compared, and
the template-level parameters, conditions, rules and outputs too.

The comparison runs once per scenario of parameter values (SCENARIOS): conditions (Fn::If,
a resource's Condition) are evaluated for them, while every other parameter reference stays a
symbol, so a value hard-coded on one side where the other refers to a parameter is a
difference even when it equals the default.

Allowed differences, the only normalizations (see the README's "Deploy with CDK"):
- Metadata of resources (SAM's build method, CDK's construct paths and asset locations), the
  AWS::CDK::Metadata resource, CDK's BootstrapVersion parameter and CheckBootstrapVersion rule,
  and the template's Description (each names its own deploy tool);
- the function code's location (S3 placeholder vs CDK asset): compared as the binary it holds;
- IAM: a role's grants are compared as the set of (effect, action, resource) it gets from its
  inline policies and from every AWS::IAM::Policy attached to it (CDK attaches them, SAM
  inlines them; a conditional policy counts where its condition holds); statement ids, policy
  names and document versions are not compared;
- the tag `lambda:createdBy: SAM` that SAM adds to functions and roles;
- DependsOn from a function to its own role (and so that role's policies), which CDK adds;
- list order where CloudFormation ignores it (attribute definitions, managed policy ARNs);
- numbers and booleans compared as CloudFormation reads them (128 and "128" are the same).
- a dashboard's body (JSON text) compared as the JSON it holds, not its layout.
"""

import copy
import json
import re
import sys
from pathlib import Path

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "chat"}
NO_VALUE = object()

# Parameter values for which the conditions are evaluated; each must satisfy the templates'
# rules. Together they turn every condition both ways.
REQUIRED = {"N8nWebhookUrl": "https://n8n.example.com/webhook/chat"}
SCENARIOS = {
    "defaults, secrets as values": {
        **REQUIRED, "WebhookSecret": "w" * 32, "SessionSecret": "s" * 32},
    "every option on: secrets in SSM, JWKS, alarm topic, reserved concurrency, session start": {
        **REQUIRED,
        "WebhookSecretParameter": "/chat/prod/webhook-secret",
        "SessionSecretParameter": "/chat/prod/session-secret",
        "AuthJwtSecretParameter": "/chat/prod/jwt-secret",
        "AuthJwksUrl": "https://id.example.com/.well-known/jwks.json",
        "AuthJwtAudience": "chat", "AuthJwtIssuer": "https://id.example.com/",
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:chat-alarms",
        "N8nSessionStart": "true",
        **{f"{f}ReservedConcurrency": "5"
           for f in ("Session", "Send", "Webhook", "Connect", "Disconnect", "Dispatch", "Agent")}},
    "mixed: one secret in SSM, an app JWT secret, reserved concurrency 0": {
        **REQUIRED, "WebhookSecretParameter": "/chat/prod/webhook-secret",
        "SessionSecret": "s" * 32, "AuthJwtSecret": "j" * 32,
        **{f"{f}ReservedConcurrency": "0"
           for f in ("Session", "Send", "Webhook", "Connect", "Disconnect", "Dispatch", "Agent")}},
}

CDK_ONLY_PARAMETERS = {"BootstrapVersion"}
CDK_ONLY_RULES = {"CheckBootstrapVersion"}
DROPPED_TYPES = {"AWS::CDK::Metadata"}
FOLDED_TYPES = {"AWS::IAM::Policy"}  # into the roles they attach to
UNORDERED = {"AttributeDefinitions", "ManagedPolicyArns"}


def refs(v):
    """The names a value refers to: Ref, Fn::GetAtt and the ${...} of Fn::Sub."""
    if isinstance(v, list):
        return [r for x in v for r in refs(x)]
    if not isinstance(v, dict):
        return []
    if set(v) == {"Ref"}:
        return [v["Ref"]]
    if set(v) == {"Fn::GetAtt"}:
        a = v["Fn::GetAtt"]
        return [a[0] if isinstance(a, list) else a.split(".", 1)[0]]
    if set(v) == {"Fn::Sub"}:
        a = v["Fn::Sub"]
        text, names = (a, {}) if isinstance(a, str) else (a[0], a[1])
        own = [m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text) if m not in names]
        return own + refs(list(names.values()))
    return [r for x in v.values() for r in refs(x)]


def as_list(v):
    return v if isinstance(v, list) else [v]


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return v


class Template:
    """One template, its resources named by what they are (see the module's doc)."""

    def __init__(self, doc, binary_of):
        self.doc = doc
        self.res = doc.get("Resources", {})
        self.params = doc.get("Parameters", {})
        self.conditions = doc.get("Conditions", {})
        self.key = {}
        self._name_resources(binary_of)

    def _of_type(self, t):
        return {k: r for k, r in self.res.items() if r["Type"] == t}

    def _first(self, value, prefix):
        """The name of the first resource `value` refers to whose name starts with `prefix`."""
        for r in refs(value):
            if self.key.get(r, "").startswith(prefix):
                return self.key[r]
        return "?"

    def _name_resources(self, binary_of):
        for k, r in self._of_type("AWS::Lambda::Function").items():
            self.key[k] = f"Function {binary_of.get(k, '?' + k)}"
        for k in self._of_type("AWS::DynamoDB::Table"):
            self.key[k] = "Table"
        for k in self._of_type("AWS::S3::Bucket"):
            self.key[k] = "Bucket"
        for k, r in self._of_type("AWS::ApiGatewayV2::Api").items():
            self.key[k] = f"Api {r['Properties'].get('ProtocolType')}"
        queues = self._of_type("AWS::SQS::Queue")
        dead_letter = {d for q in queues.values()
                       for d in refs(q["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn"))}
        for k, q in queues.items():
            self.key[k] = ("Queue" if "RedrivePolicy" in q["Properties"]
                           else "DeadLetterQueue" if k in dead_letter else f"Queue {k}")
        for k, r in self.res.items():
            p, t = r.get("Properties", {}), r["Type"]
            if t == "AWS::IAM::Role":
                users = [self.key[f] for f, fr in self._of_type("AWS::Lambda::Function").items()
                         if k in refs(fr["Properties"].get("Role"))]
                self.key[k] = f"Role of {users[0]}" if len(users) == 1 else f"Role {k}"
            elif t == "AWS::Logs::LogGroup":
                self.key[k] = f"LogGroup of {self._first(p.get('LogGroupName'), 'Function ')}"
            elif t == "AWS::ApiGatewayV2::Stage":
                self.key[k] = f"Stage of {self._first(p.get('ApiId'), 'Api ')}"
            elif t == "AWS::ApiGatewayV2::Route":
                self.key[k] = f"Route {self._first(p.get('ApiId'), 'Api ')} {p.get('RouteKey')}"
            elif t == "AWS::ApiGatewayV2::Integration":
                self.key[k] = (f"Integration {self._first(p.get('ApiId'), 'Api ')}"
                               f" -> {self._first(p.get('IntegrationUri'), 'Function ')}")
            elif t == "AWS::Lambda::Permission":
                self.key[k] = (f"Permission {self._first(p.get('SourceArn'), 'Api ')}"
                               f" -> {self._first(p.get('FunctionName'), 'Function ')}")
            elif t == "AWS::Lambda::EventSourceMapping":
                self.key[k] = (f"EventSourceMapping {self._first(p.get('EventSourceArn'), 'Queue')}"
                               f" -> {self._first(p.get('FunctionName'), 'Function ')}")
            elif t == "AWS::CloudWatch::Alarm":
                # By its metric, or the metrics of its math; and what they measure.
                stats = [q["MetricStat"]["Metric"] for q in p.get("Metrics", []) if "MetricStat" in q]
                names = sorted({m.get("MetricName") for m in stats} | ({p["MetricName"]} if "MetricName" in p else set()))
                on = ", ".join(self.key.get(r, r) for r in refs(p.get("Dimensions")))
                self.key[k] = f"Alarm {'+'.join(names)}" + (f" of {on}" if on else "")
            elif t == "AWS::CloudWatch::Dashboard":
                self.key[k] = "Dashboard"
            elif k not in self.key:
                self.key[k] = f"{t} {k}"
        names = list(self.key.values())
        for k, name in self.key.items():
            if names.count(name) > 1:
                self.key[k] = f"{name} ({k})"

    # ----- evaluation ---------------------------------------------------------------------

    def condition(self, name, values):
        return bool(self._concrete(self.conditions[name], values))

    def _concrete(self, v, values):
        """Evaluates a condition's expression for concrete parameter values."""
        if isinstance(v, list):
            return [self._concrete(x, values) for x in v]
        if not isinstance(v, dict):
            return scalar(v)
        (k, a), = v.items()
        if k == "Ref":
            if a in PSEUDO:
                return PSEUDO[a]
            return values.get(a, scalar(self.params.get(a, {}).get("Default", "")))
        if k == "Condition":
            return self.condition(a, values)
        if k == "Fn::Equals":
            x, y = self._concrete(a, values)
            return str(x) == str(y)
        if k == "Fn::Not":
            return not self._concrete(a[0], values)
        if k == "Fn::Or":
            return any(self._concrete(a, values))
        if k == "Fn::And":
            return all(self._concrete(a, values))
        raise SystemExit(f"unsupported in a condition: {k}")

    def _name(self, ref):
        if ref in PSEUDO:
            return PSEUDO[ref]
        if ref in self.res:
            return "${" + self.key[ref] + "}"
        return "${" + ref + "}"  # a parameter: stays a symbol

    def _sub(self, text, names, values):
        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in names:
                return str(self.evaluate(names[name], values))
            base, _, attr = name.partition(".")
            if attr and base in self.res:
                return "${" + self.key[base] + "." + attr + "}"
            return self._name(name)
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def evaluate(self, v, values):
        """Conditions decided for `values`, references rewritten to resource names."""
        if isinstance(v, list):
            return [x for x in (self.evaluate(x, values) for x in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return scalar(v)
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return NO_VALUE if a == "AWS::NoValue" else self._name(a)
            if k == "Fn::GetAtt":
                base, attr = a if isinstance(a, list) else a.split(".", 1)
                return "${" + self.key.get(base, base) + "." + attr + "}"
            if k == "Fn::Sub":
                text, names = (a, {}) if isinstance(a, str) else (a[0], a[1])
                return self._sub(text, names, values)
            if k == "Fn::Join":
                parts = self.evaluate(a[1], values)
                if isinstance(parts, list) and all(isinstance(x, str) for x in parts):
                    return a[0].join(parts)
                return {k: [a[0], parts]}
            if k == "Fn::If":
                name, yes, no = a
                return self.evaluate(yes if self.condition(name, values) else no, values)
        out = {}
        for key, x in v.items():
            x = self.evaluate(x, values)
            if x is not NO_VALUE:
                out[key] = sorted(x, key=json.dumps) if key in UNORDERED and isinstance(x, list) else x
        return out

    # ----- the model compared --------------------------------------------------------------

    def model(self, values):
        """Everything compared, for one scenario of parameter values."""
        resources, policies = {}, []
        for k, r in self.res.items():
            if r["Type"] in DROPPED_TYPES:
                continue
            if "Condition" in r and not self.condition(r["Condition"], values):
                continue
            if r["Type"] in FOLDED_TYPES:
                policies.append(self.evaluate(r["Properties"], values))
                continue
            out = {"Type": r["Type"], "Properties": self.evaluate(r.get("Properties", {}), values)}
            for attr in ("DeletionPolicy", "UpdateReplacePolicy", "Condition"):
                if attr in r:
                    out[attr] = r[attr]
            depends = sorted({self.key[d] for d in as_list(r.get("DependsOn", []))
                              if self.res[d]["Type"] not in FOLDED_TYPES})
            depends += sorted({self.key[role] for d in as_list(r.get("DependsOn", []))
                               if self.res[d]["Type"] in FOLDED_TYPES
                               for role in refs(self.res[d]["Properties"].get("Roles"))})
            if r["Type"] == "AWS::Lambda::Function":
                depends = [d for d in depends if d != f"Role of {self.key[k]}"]
                out["Properties"]["Code"] = self.key[k].removeprefix("Function ")
            if depends:
                out["DependsOn"] = sorted(set(depends))
            strip_sam_tag(out["Properties"])
            body = out["Properties"].get("DashboardBody")
            if isinstance(body, str):
                # JSON text: compared as what it says, not how it is laid out.
                try:
                    out["Properties"]["DashboardBody"] = json.loads(body)
                except ValueError:
                    pass
            resources[self.key[k]] = out
        for name, r in resources.items():
            if r["Type"] == "AWS::IAM::Role":
                fold_grants(name, r["Properties"], policies)
        return {
            "AWSTemplateFormatVersion": self.doc.get("AWSTemplateFormatVersion"),
            "Parameters": {k: {a: scalar(x) for a, x in p.items()} for k, p in self.params.items()
                           if k not in CDK_ONLY_PARAMETERS},
            "Conditions": self.evaluate(self.conditions, values),
            "Rules": self.evaluate({k: r for k, r in self.doc.get("Rules", {}).items()
                                    if k not in CDK_ONLY_RULES}, values),
            "Resources": resources,
            "Outputs": self.evaluate(self.doc.get("Outputs", {}), values),
        }


def strip_sam_tag(props):
    if "Tags" in props:
        props["Tags"] = [t for t in props["Tags"] if t.get("Key") != "lambda:createdBy"]
        if not props["Tags"]:
            del props["Tags"]


def grants(document):
    """A policy document as sorted 'Effect action on resource [by principal]' lines."""
    out = []
    for st in as_list(document.get("Statement", [])):
        extra = {k: v for k, v in st.items()
                 if k not in ("Sid", "Effect", "Action", "Resource", "Principal")}
        suffix = f" {json.dumps(extra, sort_keys=True)}" if extra else ""
        principals = [f" by {kind}:{who}" for kind, whos in st.get("Principal", {}).items()
                      for who in as_list(whos)] or [""]
        for action in as_list(st.get("Action", [])) or ["(no action)"]:
            for resource in as_list(st.get("Resource", [])) or ["(no resource)"]:
                for principal in principals:
                    out.append(f"{st.get('Effect')} {action} on {resource}{principal}{suffix}")
    return out


def fold_grants(role, props, policies):
    """Replaces a role's inline policies, and the policies attached to it, by its grants."""
    lines = [g for p in props.pop("Policies", []) for g in grants(p.get("PolicyDocument", {}))]
    for p in policies:
        if "${" + role + "}" in as_list(p.get("Roles", [])):
            lines += grants(p.get("PolicyDocument", {}))
    props["Grants"] = sorted(set(lines))
    if "AssumeRolePolicyDocument" in props:
        props["AssumeRolePolicyDocument"] = sorted(
            set(grants(props["AssumeRolePolicyDocument"])))


def diff(a, b, path=""):
    """Every difference between two models, as 'path: template.yaml ... | CDK ...' lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path} / {k}" if path else k
            if k not in b:
                out.append(f"{p}: only in template.yaml: {json.dumps(a[k])}")
            elif k not in a:
                out.append(f"{p}: only in the CDK app: {json.dumps(b[k])}")
            else:
                out += diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b) \
            and len(set(a)) == len(a) and len(set(b)) == len(b) and path.endswith(("Grants", "AssumeRolePolicyDocument")):
        return ([f"{path}: only in template.yaml: {x}" for x in a if x not in b]
                + [f"{path}: only in the CDK app: {x}" for x in b if x not in a])
    if a != b:
        return [f"{path}: template.yaml has {json.dumps(a)}, the CDK app {json.dumps(b)}"]
    return []


def counts(t):
    out = {}
    for r in t.res.values():
        out[r["Type"]] = out.get(r["Type"], 0) + 1
    return out


def load_sam(path):
    doc = json.loads(Path(path).read_text())
    binary_of = {k: r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", "?")
                 for k, r in doc["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    return Template(doc, binary_of)


def load_cdk(out_dir):
    """The one stack of a cloud assembly; each function named by the placeholder it deploys."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    stacks = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    if len(stacks) != 1:
        raise SystemExit(f"expected one stack in {out_dir}, found {len(stacks)}")
    doc = json.loads((out_dir / stacks[0]["properties"]["templateFile"]).read_text())
    asset_dir = {}
    for f in out_dir.glob("*.assets.json"):
        for asset in json.loads(f.read_text()).get("files", {}).values():
            for dest in asset["destinations"].values():
                asset_dir[dest["objectKey"]] = out_dir / asset["source"]["path"]
    binary_of = {}
    for k, r in doc["Resources"].items():
        if r["Type"] == "AWS::Lambda::Function":
            bootstrap = asset_dir.get(r["Properties"]["Code"].get("S3Key"), Path("?")) / "bootstrap"
            binary_of[k] = bootstrap.read_text().strip() if bootstrap.is_file() else f"?{k}"
    return Template(doc, binary_of)


def compare(sam, cdk):
    """All differences: type counts, then the models of every scenario."""
    problems = []
    cs, cc = counts(sam), counts(cdk)
    print(f"{'resource type':<36} {'template.yaml':>13} {'CDK':>5}")
    for t in sorted(set(cs) | set(cc)):
        allowed = t in DROPPED_TYPES or t in FOLDED_TYPES
        note = "  (allowed: folded into the roles)" if t in FOLDED_TYPES else \
            "  (allowed: CDK's own)" if t in DROPPED_TYPES else ""
        print(f"{t:<36} {cs.get(t, 0):>13} {cc.get(t, 0):>5}{note}")
        if not allowed and cs.get(t, 0) != cc.get(t, 0):
            problems.append(f"count of {t}: template.yaml has {cs.get(t, 0)}, the CDK app {cc.get(t, 0)}")
    found = {}
    for name, values in SCENARIOS.items():
        lines = diff(sam.model(values), cdk.model(values))
        print(f"scenario '{name}': {len(lines)} difference(s)")
        for line in lines:
            found.setdefault(line, []).append(name)
    for line, where in found.items():
        problems.append(line if len(where) == len(SCENARIOS) else f"{line} (in: {'; '.join(where)})")
    return problems


def _env(doc, fn):
    return doc["Resources"][fn]["Properties"]["Environment"]["Variables"]


def _props(doc, logical_id):
    return doc["Resources"][logical_id]["Properties"]


def _statements(doc, role):
    return _props(doc, role)["Policies"][0]["PolicyDocument"]["Statement"]


def _index(doc, name):
    return next(i for i in _props(doc, "Table")["GlobalSecondaryIndexes"] if i["IndexName"] == name)


def _drop_statement(doc, role, sid):
    statements = _statements(doc, role)
    statements.remove(next(s for s in statements if isinstance(s, dict) and s.get("Sid") == sid))


def _rename_env(doc, fn, old, new):
    env = _env(doc, fn)
    env[new] = env.pop(old)


# Deliberate drifts, each applied alone to the transformed template.yaml, and a text that a
# line of the comparison's report must then hold. They cover each kind of thing compared.
DRIFTS = [
    ("the bucket's public access no longer blocked",
     lambda d: _props(d, "AttachmentsBucket")["PublicAccessBlockConfiguration"].update(RestrictPublicBuckets=False),
     "Bucket / Properties / PublicAccessBlockConfiguration / RestrictPublicBuckets"),
    ("an environment variable renamed", lambda d: _rename_env(d, "SendFunction", "QUEUE_URL", "QUEUE"),
     "Function send / Properties / Environment / Variables / QUEUE"),
    ("a static environment value", lambda d: _env(d, "ConnectFunction").update(RUST_LOG="debug"),
     "Function connect / Properties / Environment / Variables / RUST_LOG"),
    ("an environment value hard-coded instead of its parameter",
     lambda d: _env(d, "DispatchFunction").update(CHAT_DISPATCH_TIMEOUT_MS="10000"),
     "Function dispatch / Properties / Environment / Variables / CHAT_DISPATCH_TIMEOUT_MS"),
    ("memory", lambda d: _props(d, "WebhookFunction").update(MemorySize=256),
     "Function webhook / Properties / MemorySize"),
    ("timeout", lambda d: _props(d, "DispatchFunction").update(Timeout=60),
     "Function dispatch / Properties / Timeout"),
    ("architecture", lambda d: _props(d, "SessionFunction").update(Architectures=["x86_64"]),
     "Function session / Properties / Architectures"),
    ("runtime", lambda d: _props(d, "SessionFunction").update(Runtime="provided.al2"),
     "Function session / Properties / Runtime"),
    ("reserved concurrency dropped", lambda d: _props(d, "SendFunction").pop("ReservedConcurrentExecutions"),
     "Function send / Properties / ReservedConcurrentExecutions"),
    ("an IAM action added", lambda d: _statements(d, "ConnectFunctionRole")[0]["Action"].append("dynamodb:Scan"),
     "Role of Function connect / Properties / Grants: only in template.yaml: Allow dynamodb:Scan"),
    ("an IAM statement on another resource",
     lambda d: _statements(d, "SendFunctionRole")[1].update(Resource={"Fn::GetAtt": ["DispatchDeadLetterQueue", "Arn"]}),
     "Role of Function send / Properties / Grants"),
    ("an IAM statement dropped", lambda d: _statements(d, "WebhookFunctionRole").pop(1),
     "Role of Function webhook / Properties / Grants: only in the CDK app: Allow dynamodb:Query"),
    ("a route reaching another function",
     lambda d: _props(d, "GetSessionRoute").update(Target={"Fn::Sub": "integrations/${SendHttpIntegration}"}),
     "Route Api HTTP GET /sessions/{id} / Properties / Target"),
    ("an agent's route reaching another function",
     lambda d: _props(d, "AgentChangeRoute").update(Target={"Fn::Sub": "integrations/${SessionHttpIntegration}"}),
     "Route Api HTTP POST /agent/sessions/{id}/{action} / Properties / Target"),
    ("a route key", lambda d: _props(d, "PingRoute").update(RouteKey="pong"),
     "Route Api WEBSOCKET pong"),
    ("a route removed", lambda d: d["Resources"].pop("HealthRoute"),
     "count of AWS::ApiGatewayV2::Route"),
    ("stage throttling of one route",
     lambda d: _props(d, "WebSocketStage")["RouteSettings"].pop("ping"),
     "Stage of Api WEBSOCKET / Properties / RouteSettings / ping"),
    ("stage default throttling",
     lambda d: _props(d, "HttpApiStage")["DefaultRouteSettings"].update(ThrottlingBurstLimit=50),
     "Stage of Api HTTP / Properties / DefaultRouteSettings / ThrottlingBurstLimit"),
    ("CORS", lambda d: _props(d, "HttpApi")["CorsConfiguration"]["AllowMethods"].append("DELETE"),
     "Api HTTP / Properties / CorsConfiguration / AllowMethods"),
    ("queue visibility", lambda d: _props(d, "DispatchQueue").update(VisibilityTimeout=30),
     "Queue / Properties / VisibilityTimeout"),
    ("queue redrive", lambda d: _props(d, "DispatchQueue")["RedrivePolicy"].update(maxReceiveCount=5),
     "Queue / Properties / RedrivePolicy / maxReceiveCount"),
    ("table TTL", lambda d: _props(d, "Table")["TimeToLiveSpecification"].update(AttributeName="expires"),
     "Table / Properties / TimeToLiveSpecification / AttributeName"),
    ("table index", lambda d: _props(d, "Table")["LocalSecondaryIndexes"][0].update(IndexName="byMsg"),
     "Table / Properties / LocalSecondaryIndexes"),
    ("an inbox index's key",
     lambda d: _props(d, "Table")["GlobalSecondaryIndexes"][2]["KeySchema"][1].update(AttributeName="waitSk"),
     "Table / Properties / GlobalSecondaryIndexes"),
    ("the byUser index's sort key",
     lambda d: _index(d, "byUser")["KeySchema"][1].update(AttributeName="updatedAt"),
     "Table / Properties / GlobalSecondaryIndexes"),
    ("the byUser index's grant dropped", lambda d: _drop_statement(d, "SessionFunctionRole", "UserIndex"),
     "Role of Function session / Properties / Grants: only in the CDK app: Allow dynamodb:Query"),
    ("table retention", lambda d: d["Resources"]["Table"].update(DeletionPolicy="Delete"),
     "Table / DeletionPolicy"),
    ("alarm", lambda d: _props(d, "DeadLetterAlarm").update(Threshold=5),
     "Threshold"),
    ("an alarm's statistic", lambda d: _props(d, "AnswerLatencyAlarm").update(ExtendedStatistic="p90"),
     "Alarm chat_answer_latency_ms of Stage / Properties / ExtendedStatistic"),
    ("an alarm's action", lambda d: _props(d, "FunctionErrorsAlarm").pop("AlarmActions"),
     "Alarm Errors / Properties / AlarmActions"),
    ("a metric of an alarm's math",
     lambda d: _props(d, "FunctionThrottlesAlarm")["Metrics"][6]["MetricStat"]["Metric"]["Dimensions"][0].update(
         Value={"Ref": "SendFunction"}),
     "Alarm Throttles / Properties / Metrics"),
    ("the failure rate's expression",
     lambda d: _props(d, "DispatchFailureRateAlarm")["Metrics"][0].update(Expression="100 * failures / attempts"),
     "Alarm chat_dispatch_attempts_total+chat_dispatch_failures_total / Properties / Metrics"),
    ("a dashboard widget's metric",
     lambda d: _props(d, "Dashboard").update(DashboardBody={"Fn::Sub": _props(d, "Dashboard")["DashboardBody"]["Fn::Sub"].replace('"p99"}]', '"p95"}]', 1)}),
     "Dashboard / Properties / DashboardBody / widgets"),
    ("log retention", lambda d: _props(d, "DispatchFunctionLogs").update(RetentionInDays=7),
     "LogGroup of Function dispatch / Properties / RetentionInDays"),
    ("an output removed", lambda d: d["Outputs"].pop("DlqUrl"),
     "Outputs / DlqUrl: only in the CDK app"),
    ("a parameter's default", lambda d: d["Parameters"]["ReplyTimeoutMs"].update(Default=60000),
     "Parameters / ReplyTimeoutMs / Default"),
    ("a new parameter", lambda d: d["Parameters"].update(WelcomeText={"Type": "String", "Default": ""}),
     "Parameters / WelcomeText: only in template.yaml"),
    ("a condition", lambda d: d["Conditions"].update(HasAlarmTopic={"Fn::Equals": ["", ""]}),
     "HasAlarmTopic"),
]


def selftest(sam_json, cdk_out):
    """Each drift of DRIFTS alone must fail the comparison with a line that names it."""
    doc, cdk = json.loads(Path(sam_json).read_text()), load_cdk(cdk_out)
    passed, failed = 0, 0
    for what, drift, expected in DRIFTS:
        drifted = copy.deepcopy(doc)
        drift(drifted)
        binary_of = {k: r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", "?")
                     for k, r in drifted["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
        with open("/dev/null", "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                problems = compare(Template(drifted, binary_of), cdk)
            finally:
                sys.stdout = stdout
        if any(expected in p for p in problems):
            passed += 1
            print(f"ok: {what}: {next(p for p in problems if expected in p)}")
        else:
            failed += 1
            print(f"FAILED: {what}: no difference holds {expected!r}; found: {problems}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def write_placeholders(sam_json, out_dir):
    sam = load_sam(sam_json)
    for k, r in sam.res.items():
        if r["Type"] == "AWS::Lambda::Function":
            d = Path(out_dir) / k
            d.mkdir(parents=True, exist_ok=True)
            (d / "bootstrap").write_text(sam.key[k].removeprefix("Function ") + "\n")


def main(argv):
    if len(argv) == 4 and argv[1] == "placeholders":
        write_placeholders(argv[2], argv[3])
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        problems = compare(load_sam(argv[2]), load_cdk(argv[3]))
        for p in problems:
            print(f"DIFFERENT {p}")
        if problems:
            print(f"\nthe CDK app and template.yaml differ in {len(problems)} place(s)")
            return 1
        print("\nthe CDK app deploys what template.yaml deploys (modulo the allowed differences)")
        return 0
    if len(argv) == 4 and argv[1] == "selftest":
        return selftest(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
