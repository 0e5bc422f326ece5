"""Prints template.yaml as CloudFormation JSON after the SAM transform, offline.

cfn-lint lints a SAM template through its own transform but drops most findings it cannot map
back to a line of the source (an invalid IAM action in a function's `Policies`, a circular
dependency that SAM creates, e.g. a function whose environment names an API generated from
that function's own events). tests/lint-template therefore also runs cfn-lint on this output.

Usage: .venv/bin/python tests/sam_translate.py template.yaml > translated.json
(needs AWS_DEFAULT_REGION; makes no AWS call)
"""

import json
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The translator looks up managed policy ARNs only for bare policy names; there are none."""

    def load(self):
        return {}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    template, matches = decode(path)
    if matches:
        for m in matches:
            print(m, file=sys.stderr)
        return 1
    # The translator wants S3 code locations (`sam build` rewrites `CodeUri: .` into them).
    for res in template.get("Resources", {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://placeholder-bucket/code.zip"
    out = transform(template, {}, NoManagedPolicies())
    json.dump(out, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
