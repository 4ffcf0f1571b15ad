"""Write the SAM-transformed template (plain CloudFormation) for checkers that read it.

``sam validate`` transforms the template but prints nothing of the result; checkov then needs
the CloudFormation that AWS would run, with the resources SAM generates (function roles, the
HTTP API's stage, permissions, layer versions). Local code paths become ``s3://`` placeholders,
as ``sam validate`` does, since the transform only accepts S3 locations. Each SAM resource's
``Metadata`` (its checkov suppressions) passes through to the resources it generates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from samtranslator.translator.transform import transform  # noqa: E402

from stepml.local.template import load_template  # noqa: E402

#: The properties of SAM resources that name local folders or files; ``sam package`` uploads them.
LOCAL_PATH_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
PLACEHOLDER_BUCKET = "sam-transform-placeholder"


class NoManagedPolicies:
    """The transform asks IAM for managed policy names only when a template uses them by name."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(template_path: Path, region: str = "us-east-1") -> dict[str, Any]:
    """The template at ``template_path`` after the SAM transform for ``region``."""
    template = load_template(template_path)
    for resource in template["Resources"].values():
        prop = LOCAL_PATH_PROPERTIES.get(resource.get("Type"))
        value = resource.get("Properties", {}).get(prop) if prop else None
        if isinstance(value, str) and not value.startswith("s3://"):
            resource["Properties"][prop] = f"s3://{PLACEHOLDER_BUCKET}/{value.strip('/')}"
    # The transform reads the region from a default boto3 session; nothing calls AWS.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    return transform(template, {"AWS::Region": region}, NoManagedPolicies(), passthrough_metadata=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / ".aws-sam" / "transformed.json")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    result = transformed(args.template, args.region)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.template.name} -> {args.out} ({len(result['Resources'])} resources after the SAM transform)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
