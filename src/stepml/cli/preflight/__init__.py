"""``stepml preflight``: before a deploy, ask the target account what only it can answer.

The local cloud proves the template, the definition and the code; it cannot know what a real
account and region hold. These checks ask the account the user's credentials name (the plain
boto3 default chain; ``AWS_ENDPOINT_URL`` points them at the local cloud in the tests):

- ``identity``: who the credentials are, and the region against samconfig's;
- ``stack``: whether the stack exists and can be deployed to (not stuck in a failed state);
- ``definition``: AWS's own ValidateStateMachineDefinition on the definition with every
  ``${Placeholder}`` filled as the stack will fill it;
- ``ses-sender``: the approval sender (or its domain) verified for sending; in the SES sandbox
  the approver too;
- ``layers``: every Lambda layer the template takes from outside the stack (the AWS SDK for
  pandas layer's public SSM parameter, or an explicit layer ARN) exists in the region;
- ``xgboost-image``: SageMaker's XGBoost 1.7-1 image in the region (template mapping, SDK, ECR);
- ``batch-transform``: the stack's HostingInstanceType and every dataset config's
  hosting.instance_type are types Batch Transform takes (a test split past the config's
  ``evaluation.batch_transform_above_rows`` is scored by transform jobs on it): a WARN, a FAIL
  for a config that sends every run to Batch Transform;
- ``quotas``: SageMaker instance quotas for the instance types and counts the stack and the
  dataset configs need; the transform job quota only a large test split needs is a WARN when
  too small (a FAIL for a config that sends every run to Batch Transform);
- ``glue``: the Glue version of the preprocessing job offered in the region.

Each check is one line: OK, WARN or FAIL, what was checked, and for a FAIL the command that fixes
it. ``run`` returns a ``Report``; any FAIL makes the CLI exit non-zero.

The package: ``report`` (the lines), ``inputs`` (samconfig and the pure parts: instance needs,
transform types, Glue regions, binding the template to a deployed stack), ``context`` (one run's
clients and AWS error reading), ``checks`` (account and stack), ``capacity`` (image, transform
types, quotas, Glue) and
``command`` (``run`` and the CLI command). The template reader is imported only when a check
runs, so building the CLI's parser loads nothing of the local cloud.
"""

from __future__ import annotations

from stepml.cli.preflight.checks import external_layers, filled_definition
from stepml.cli.preflight.command import preflight_command, register, run
from stepml.cli.preflight.context import CheckContext
from stepml.cli.preflight.inputs import (
    GLUE_REGIONS,
    InstanceNeed,
    SamConfigEnv,
    bind_stack_resources,
    format_diagnostic,
    glue_version_offered,
    instance_needs,
    load_samconfig,
    named_at_deploy,
    parse_parameter_overrides,
    transform_type_problems,
)
from stepml.cli.preflight.report import FAIL, OK, WARN, Check, PreflightError, Report

__all__ = [
    "FAIL",
    "GLUE_REGIONS",
    "OK",
    "WARN",
    "Check",
    "CheckContext",
    "InstanceNeed",
    "PreflightError",
    "Report",
    "SamConfigEnv",
    "bind_stack_resources",
    "external_layers",
    "filled_definition",
    "format_diagnostic",
    "glue_version_offered",
    "instance_needs",
    "load_samconfig",
    "named_at_deploy",
    "parse_parameter_overrides",
    "preflight_command",
    "register",
    "run",
    "transform_type_problems",
]
