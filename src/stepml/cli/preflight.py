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
- ``quotas``: SageMaker instance quotas for the instance types and counts the stack and the
  dataset configs need;
- ``glue``: the Glue version of the preprocessing job offered in the region.

Each check is one line: OK, WARN or FAIL, what was checked, and for a FAIL the command that fixes
it. ``run`` returns a ``Report``; any FAIL makes the CLI exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from stepml.config import DatasetConfig, DatasetConfigError, parse_dataset_config
from stepml.local.provision import referenced_resources
from stepml.local.template import ResolvedTemplate, TemplateError, load_template

OK: Final = "OK"
WARN: Final = "WARN"
FAIL: Final = "FAIL"

STATE_MACHINE: Final = "PipelineStateMachine"
GLUE_JOB: Final = "PreprocessJob"
XGBOOST_MAPPING: Final = "XGBoostImageRegistry"
XGBOOST_REPOSITORY: Final = "sagemaker-xgboost"
XGBOOST_VERSION: Final = "1.7-1"

#: Regions where AWS Glue runs: botocore's endpoint data for ``glue`` (botocore 1.43.127, read
#: 2026-12-02) in the aws, aws-cn and aws-us-gov partitions. AWS's "AWS Glue versions" page
#: (docs.aws.amazon.com/glue/latest/dg/release-notes.html) lists the versions without naming
#: regions, and the GovCloud user guide (govcloud-glue) documents Glue 5.0 in both GovCloud
#: regions; so Glue 5.0 counts as offered wherever Glue is. A region outside this table fails.
GLUE_REGIONS: Final[frozenset[str]] = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "cn-north-1",
        "cn-northwest-1",
        "us-gov-east-1",
        "us-gov-west-1",
    }
)
#: The Glue versions the table above was checked for.
GLUE_VERSIONS_CHECKED: Final[frozenset[str]] = frozenset({"5.0"})

#: The test endpoint runs one instance (statemachine/pipeline.asl.json, "Create test endpoint
#: config"); production runs ``hosting.instance_count`` and a blue/green update provisions the
#: new fleet beside the old one while the test endpoint still runs.
TEST_ENDPOINT_INSTANCES: Final = 1

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
_MAX_MESSAGE = 300


class PreflightError(RuntimeError):
    """Preflight cannot start (no samconfig environment, no template); the message says what to do."""


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    summary: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.summary}"
        if self.fix and self.status != OK:
            text += f" -- fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
            "data": self.data,
        }


@dataclass
class Report:
    """Every check, in the order run."""

    stack_name: str
    config_env: str
    region: str
    account: str | None
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def lines(self) -> list[str]:
        """The report as text: a line per check, its details indented below it."""
        out = []
        for check in self.checks:
            out.append(check.line())
            out.extend(f"      {detail}" for detail in check.details)
        counts = {status: sum(c.status == status for c in self.checks) for status in (OK, WARN, FAIL)}
        verdict = "ready to deploy" if self.ok else "fix the FAIL lines before deploying"
        out.append(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL: {verdict}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stack_name": self.stack_name,
            "config_env": self.config_env,
            "region": self.region,
            "account": self.account,
            "checks": [c.to_dict() for c in self.checks],
        }


# -- samconfig ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamConfigEnv:
    """What ``sam deploy --config-env ENV`` would use: stack name, region, parameter overrides."""

    name: str
    stack_name: str | None
    region: str | None
    parameters: dict[str, str]


def load_samconfig(root: Path, env: str) -> SamConfigEnv:
    """Read ``samconfig.toml``'s ``[ENV.global.parameters]`` and ``[ENV.deploy.parameters]``
    (deploy wins, as in the SAM CLI)."""
    path = root / "samconfig.toml"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PreflightError(f"{path}: cannot read: {exc}") from exc
    if env not in document:
        known = ", ".join(sorted(k for k, v in document.items() if isinstance(v, dict))) or "none"
        raise PreflightError(f"{path}: no [{env}] environment (known: {known}); pass --config-env")
    section = document[env]
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(section.get(command, {}).get("parameters", {}))
    overrides = merged.get("parameter_overrides", "")
    if isinstance(overrides, list):
        overrides = " ".join(overrides)
    try:
        pairs = shlex.split(str(overrides))
        parameters = dict(pair.split("=", 1) for pair in pairs)
    except ValueError as exc:
        raise PreflightError(f"{path}: [{env}.deploy.parameters] parameter_overrides is not KEY=VALUE pairs") from exc
    return SamConfigEnv(env, merged.get("stack_name"), merged.get("region"), parameters)


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """``Key=Value Key2="value two"`` (as ``sam deploy --parameter-overrides`` takes them)."""
    try:
        return dict(pair.split("=", 1) for pair in shlex.split(text))
    except ValueError as exc:
        raise PreflightError(f"--parameter-overrides must be KEY=VALUE pairs, got {text!r}") from exc


# -- pure parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceNeed:
    """How many instances of one type a run needs at its peak, and why."""

    usage: str  # "training job usage" or "endpoint usage"
    instance_type: str
    count: int
    reason: str

    @property
    def quota_name(self) -> str:
        """The Service Quotas name of this need's quota, as AWS words it."""
        return f"{self.instance_type} for {self.usage}"


def instance_needs(
    training_default: str, hosting_default: str, configs: Sequence[DatasetConfig] = ()
) -> list[InstanceNeed]:
    """The SageMaker instances one run needs at its peak, per quota, for the stack's defaults and
    every dataset config (``null`` instance types take the defaults). Runs of different datasets
    may overlap; this counts one run at a time."""
    needs: dict[tuple[str, str], InstanceNeed] = {}

    def need(usage: str, instance_type: str, count: int, reason: str) -> None:
        key = (usage, instance_type)
        if key not in needs or needs[key].count < count:
            needs[key] = InstanceNeed(usage, instance_type, count, reason)

    need("training job usage", training_default, 1, "the stack's default training instance")
    need(
        "endpoint usage",
        hosting_default,
        TEST_ENDPOINT_INSTANCES + 2,
        "test endpoint 1 + production 1 + its blue/green replacement 1",
    )
    for config in configs:
        training = config.training.instance_type or training_default
        need("training job usage", training, config.training.instance_count, f"dataset {config.name}: training")
        hosting = config.hosting.instance_type or hosting_default
        production = config.hosting.instance_count
        need(
            "endpoint usage",
            hosting,
            TEST_ENDPOINT_INSTANCES + 2 * production,
            f"dataset {config.name}: test endpoint 1 + production {production} + blue/green replacement {production}",
        )
    return sorted(needs.values(), key=lambda n: (n.usage, n.instance_type))


def glue_version_offered(version: str, region: str) -> bool | None:
    """Whether AWS offers Glue ``version`` in ``region`` per ``GLUE_REGIONS``; None when the table
    was not checked for that version."""
    if version not in GLUE_VERSIONS_CHECKED:
        return None
    return region in GLUE_REGIONS


_NAME_PROPERTY = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Glue::Job": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Serverless::StateMachine": "Name",
}


def named_at_deploy(resolved: ResolvedTemplate, logical_id: str) -> bool:
    """Whether CloudFormation picks the resource's name at deploy (no explicit name property)."""
    spec = resolved.resource(logical_id)
    prop = _NAME_PROPERTY.get(spec["Type"])
    return prop is None or prop not in spec.get("Properties", {})


def bind_stack_resources(resolved: ResolvedTemplate, resources: Mapping[str, tuple[str, str]]) -> None:
    """Make ``resolved`` answer Ref and Fn::GetAtt with the deployed stack's physical ids
    (``resources``: logical id -> (resource type, physical id), as ListStackResources gives them)."""
    for logical, (kind, physical) in resources.items():
        if logical not in resolved.resources or not physical:
            continue
        resolved.runtime_refs[logical] = physical
        if kind == "AWS::SNS::Topic" or kind == "AWS::StepFunctions::StateMachine":
            resolved.runtime_attributes[(logical, "Arn")] = physical  # Ref is the ARN
        elif kind == "AWS::SQS::Queue":
            name = physical.rstrip("/").rsplit("/", 1)[-1]
            resolved.physical_ids[logical] = name
            resolved.runtime_attributes[(logical, "QueueName")] = name
        elif kind == "AWS::KMS::Key":
            resolved.runtime_attributes[(logical, "KeyId")] = physical
        else:
            resolved.physical_ids[logical] = physical


def format_diagnostic(diagnostic: Mapping[str, Any]) -> str:
    """``ERROR SCHEMA_VALIDATION_FAILED at /States/X/Parameters: message`` (message shortened)."""
    message = " ".join(str(diagnostic.get("message", "")).split())
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    location = diagnostic.get("location")
    where = f" at {location}" if location else ""
    return f"{diagnostic.get('severity', 'ERROR')} {diagnostic.get('code', '?')}{where}: {message}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"{_error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"
    return str(exc)


def _denied(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _error_code(exc) in _DENIED


# -- running -------------------------------------------------------------------------------


@dataclass
class _Context:
    root: Path
    session: Any
    config_env: str
    stack_name: str
    region: str
    samconfig_region: str | None
    parameters: dict[str, str]
    dataset_config_paths: list[Path]
    rerun: str
    account: str | None = None
    stack: dict[str, Any] | None = None
    stack_resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    resolved: ResolvedTemplate | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def resolve_template(self) -> ResolvedTemplate:
        """The template bound to this stack, account, region and parameters (a fresh copy)."""
        resolved = ResolvedTemplate(
            load_template(self.root / "template.yaml"),
            stack_name=self.stack_name,
            region=self.region,
            account_id=self.account or "123456789012",
            parameter_overrides=self.parameters,
            source=str(self.root / "template.yaml"),
        )
        bind_stack_resources(resolved, self.stack_resources)
        return resolved


def run(
    root: Path | str,
    config_env: str = "dev",
    stack_name: str | None = None,
    region: str | None = None,
    session: Any = None,
    parameter_overrides: Mapping[str, str] | None = None,
    dataset_configs: Iterable[Path | str] = (),
) -> Report:
    """Run every check against the account ``session`` (default: boto3's default chain) names.

    ``stack_name``, ``region`` and the parameters default to samconfig's ``config_env``;
    ``parameter_overrides`` win over samconfig's, as ``sam deploy --parameter-overrides`` does.
    ``dataset_configs`` are config files to count in the quota check, beside the ones already
    onboarded to an existing stack.
    """
    root = Path(root)
    samconfig = load_samconfig(root, config_env)
    name = stack_name or samconfig.stack_name
    if not name:
        raise PreflightError(f"no stack name: pass --stack-name or set stack_name in samconfig.toml [{config_env}]")
    session = session or boto3.Session()
    chosen_region = region or samconfig.region or session.region_name
    if not chosen_region:
        raise PreflightError("no region: pass --region, set region in samconfig.toml, or set AWS_REGION")
    rerun = f"stepml preflight --stack-name {name} --config-env {config_env} --region {chosen_region}"
    context = _Context(
        root=root,
        session=session,
        config_env=config_env,
        stack_name=name,
        region=chosen_region,
        samconfig_region=samconfig.region,
        parameters={**samconfig.parameters, **(parameter_overrides or {})},
        dataset_config_paths=[Path(p) for p in dataset_configs],
        rerun=rerun,
    )
    checks = [_guard("identity", _check_identity, context)]
    if checks[0].status == FAIL:
        return Report(name, config_env, chosen_region, None, checks)
    checks.append(_guard("stack", _check_stack, context))
    try:
        context.resolved = context.resolve_template()
    except TemplateError as exc:
        checks.append(Check("template", FAIL, str(exc), fix=f"fix the parameters, then run {rerun}"))
        return Report(name, config_env, chosen_region, context.account, checks)
    for check_name, check in (
        ("definition", check_definition),
        ("ses-sender", _check_ses),
        ("layers", _check_layers),
        ("xgboost-image", _check_xgboost_image),
        ("quotas", _check_quotas),
        ("glue", _check_glue),
    ):
        checks.append(_guard(check_name, check, context))
    return Report(name, config_env, chosen_region, context.account, checks)


def _guard(name: str, check: Callable[[_Context], Check], context: _Context) -> Check:
    """Run one check; an AWS error it did not expect becomes its line (denied: WARN, else FAIL)."""
    try:
        return check(context)
    except (ClientError, BotoCoreError) as exc:
        if _denied(exc):
            return Check(name, WARN, f"cannot check: {_error_message(exc)}", fix="grant the caller this read access")
        return Check(name, FAIL, f"the check failed: {_error_message(exc)}", fix=context.rerun)


def _check_identity(context: _Context) -> Check:
    try:
        identity = context.client("sts").get_caller_identity()
    except (NoCredentialsError, NoRegionError) as exc:
        return Check("identity", FAIL, f"no usable credentials: {exc}", fix="aws configure (or aws sso login)")
    except ClientError as exc:
        return Check("identity", FAIL, f"the credentials are refused: {_error_message(exc)}", fix="aws sso login")
    except BotoCoreError as exc:
        return Check(
            "identity",
            FAIL,
            f"cannot reach STS in {context.region}: {exc}",
            fix="check the network, and AWS_ENDPOINT_URL if it is set",
        )
    context.account = identity["Account"]
    summary = f"account {identity['Account']} as {identity['Arn']}, region {context.region}"
    data = {"account": identity["Account"], "arn": identity["Arn"], "region": context.region}
    if context.samconfig_region and context.samconfig_region != context.region:
        return Check(
            "identity",
            WARN,
            f"{summary}; but samconfig.toml [{context.config_env}] deploys to {context.samconfig_region}",
            fix=f"check that region: {context.rerun.replace(context.region, context.samconfig_region)}",
            data=data,
        )
    return Check("identity", OK, summary, data=data)


_STUCK = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED"}


def _check_stack(context: _Context) -> Check:
    cloudformation = context.client("cloudformation")
    try:
        stack = cloudformation.describe_stacks(StackName=context.stack_name)["Stacks"][0]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return Check("stack", OK, f"{context.stack_name} does not exist yet in {context.region}: deploy creates it")
        raise
    context.stack = stack
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=context.stack_name):
        for resource in page["StackResourceSummaries"]:
            context.stack_resources[resource["LogicalResourceId"]] = (
                resource["ResourceType"],
                resource.get("PhysicalResourceId", ""),
            )
    status = stack["StackStatus"]
    summary = f"{context.stack_name} exists ({status}, {len(context.stack_resources)} resources)"
    if status in _STUCK:
        fix = f"aws cloudformation delete-stack --stack-name {context.stack_name} --region {context.region}"
        if status.startswith("UPDATE_ROLLBACK"):
            fix = (
                f"aws cloudformation continue-update-rollback --stack-name {context.stack_name} "
                f"--region {context.region}"
            )
        return Check("stack", FAIL, f"{summary}: CloudFormation cannot update a stack in {status}", fix=fix)
    if status.endswith("_IN_PROGRESS"):
        return Check(
            "stack",
            FAIL,
            f"{summary}: another operation is running",
            fix=f"aws cloudformation wait stack-update-complete --stack-name {context.stack_name}",
        )
    return Check("stack", OK, summary)


def filled_definition(context: _Context) -> tuple[dict[str, Any], list[str]]:
    """The definition as the stack will fill it, and the placeholders filled with guessed names."""
    assert context.resolved is not None
    resolved = context.resolved
    definition = resolved.state_machine_definition(STATE_MACHINE, context.root)
    substitutions = resolved.properties(STATE_MACHINE).get("DefinitionSubstitutions", {})
    guessed = []
    for key, value in substitutions.items():
        unknown = [
            logical
            for logical in sorted(referenced_resources(value, resolved.resources))
            if logical not in context.stack_resources and named_at_deploy(resolved, logical)
        ]
        if unknown:
            guessed.append(key)
    return definition, guessed


def check_definition(context: _Context) -> Check:
    """AWS's ValidateStateMachineDefinition on the filled definition."""
    assert context.resolved is not None
    try:
        definition, guessed = filled_definition(context)
    except (TemplateError, OSError) as exc:
        return Check(
            "definition",
            FAIL,
            f"cannot fill the definition for {context.region}: {exc}",
            fix="deploy to a region the template maps (see the xgboost-image line) or fix the template",
        )
    machine_type = str(context.resolved.resolved_properties(STATE_MACHINE).get("Type", "STANDARD"))
    answer = context.client("stepfunctions").validate_state_machine_definition(
        definition=json.dumps(definition), type=machine_type, severity="WARNING"
    )
    diagnostics = answer.get("diagnostics", [])
    details = [format_diagnostic(d) for d in diagnostics]
    if answer.get("truncated"):
        details.append("(more diagnostics were left out: fix these and run again)")
    source = (
        "placeholders from the existing stack's resources"
        if context.stack_resources
        else "placeholders filled with the names this stack will create"
    )
    if guessed:
        source += f"; CloudFormation names some at deploy, so plausible ARNs fill {', '.join(guessed)}"
    data = {"result": answer.get("result"), "diagnostics": diagnostics, "guessed_placeholders": guessed}
    definition_file = context.resolved.properties(STATE_MACHINE).get("DefinitionUri", "the definition")
    if answer.get("result") == "FAIL":
        errors = sum(d.get("severity") == "ERROR" for d in diagnostics)
        return Check(
            "definition",
            FAIL,
            f"ValidateStateMachineDefinition ({machine_type}) refuses {definition_file}: {errors} error(s) ({source})",
            fix=f"edit {definition_file} at the locations below, then {context.rerun}",
            details=details,
            data=data,
        )
    status = WARN if diagnostics else OK
    summary = f"ValidateStateMachineDefinition ({machine_type}) accepts {definition_file} ({source})"
    return Check("definition", status, summary, details=details, data=data)


def _identity_status(sesv2: Any, address: str) -> tuple[str, str | None]:
    """(verified|pending|missing, the identity that decided) for an address or its domain."""
    domain = address.rsplit("@", 1)[-1]
    pending = None
    for identity in (address, domain):
        try:
            answer = sesv2.get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if _error_code(exc) == "NotFoundException":
                continue
            raise
        if answer.get("VerifiedForSendingStatus"):
            return "verified", identity
        pending = pending or identity
    return ("pending", pending) if pending else ("missing", None)


def _verify_fix(address: str, region: str) -> str:
    return (
        f"aws sesv2 create-email-identity --email-identity {address} --region {region} "
        "(then open the link SES mails), or verify the domain"
    )


def _check_ses(context: _Context) -> Check:
    assert context.resolved is not None
    sender = str(context.resolved.parameters["ApprovalSenderEmail"])
    approver = str(context.resolved.parameters["ApproverEmail"])
    sesv2 = context.client("sesv2")
    status, identity = _identity_status(sesv2, sender)
    if status == "missing":
        return Check(
            "ses-sender",
            FAIL,
            f"ApprovalSenderEmail {sender} (and its domain) is no SES identity in {context.region}",
            fix=_verify_fix(sender, context.region),
        )
    if status == "pending":
        return Check(
            "ses-sender",
            FAIL,
            f"SES identity {identity} exists in {context.region} but is not verified for sending yet",
            fix=f"open the verification link SES mailed to {sender} (or publish the domain's DKIM records), then "
            + context.rerun,
        )
    summary = f"sender {sender} is verified for sending in {context.region} (identity {identity})"
    account = sesv2.get_account()
    if not account.get("SendingEnabled", True):
        return Check(
            "ses-sender",
            FAIL,
            f"{summary}, but SES sending is paused for the account in {context.region}",
            fix=f"aws sesv2 put-account-sending-attributes --sending-enabled --region {context.region}",
        )
    if account.get("ProductionAccessEnabled"):
        return Check("ses-sender", OK, summary + "; the account has production access")
    approver_status, _ = _identity_status(sesv2, approver)
    if approver_status != "verified":
        return Check(
            "ses-sender",
            FAIL,
            f"{summary}; the account is in the SES sandbox, which delivers only to verified addresses, "
            f"and ApproverEmail {approver} is not verified",
            fix=_verify_fix(approver, context.region)
            + f"; or request production access: aws sesv2 put-account-details --production-access-enabled "
            f"--mail-type TRANSACTIONAL --website-url URL --use-case-description TEXT --region {context.region}",
        )
    return Check(
        "ses-sender",
        WARN,
        f"{summary}; the account is in the SES sandbox: only verified addresses receive mail "
        f"(ApproverEmail {approver} is verified)",
        fix="request production access before adding approvers (aws sesv2 put-account-details "
        "--production-access-enabled ...)",
    )


_LAYER_MISSING = ("ResourceNotFoundException", "ValidationException", "InvalidParameterValueException")
_SSM_REFERENCE = re.compile(r"^\{\{resolve:ssm:(?P<name>[^:}]+)(?::(?P<version>\d+))?\}\}$")


def external_layers(resolved: ResolvedTemplate) -> list[tuple[str, str]]:
    """(function logical id, resolved layer) for every layer a function takes from outside the stack."""
    local_layers = {
        resolved.ref(logical)
        for logical, spec in resolved.resources.items()
        if spec["Type"] in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
    }
    found = []
    for logical, spec in resolved.resources.items():
        if spec["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        for layer in resolved.resolved_properties(logical).get("Layers", []):
            if str(layer) not in local_layers and (logical, str(layer)) not in found:
                found.append((logical, str(layer)))
    return found


def _check_layers(context: _Context) -> Check:
    assert context.resolved is not None
    layers = external_layers(context.resolved)
    if not layers:
        return Check("layers", OK, "no function takes a layer from outside the stack")
    found, problems, details = [], [], []
    for function, layer in layers:
        reference = _SSM_REFERENCE.match(layer)
        if reference:
            name = reference["name"]
            try:
                value = context.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError as exc:
                if _error_code(exc) != "ParameterNotFound":
                    raise
                problems.append(
                    (
                        f"{function}: public SSM parameter {name} does not exist in {context.region}",
                        "set AwsSdkPandasLayerArn to the layer's ARN for this region (aws-sdk-pandas.readthedocs.io, "
                        "AWS Lambda Managed Layers) in samconfig.toml parameter_overrides",
                    )
                )
                continue
            details.append(f"{function}: {name} = {value}")
            layer_arn = value
        else:
            layer_arn = layer
        try:
            version = context.client("lambda").get_layer_version_by_arn(Arn=layer_arn)
        except ClientError as exc:
            if _denied(exc):
                details.append(f"{function}: {layer_arn}: cannot read the layer ({_error_code(exc)})")
                found.append(layer_arn)
                continue
            if _error_code(exc) in _LAYER_MISSING:
                problems.append(
                    (
                        f"{function}: layer {layer_arn} does not exist in {context.region} ({_error_message(exc)})",
                        "set AwsSdkPandasLayerArn to a layer version that exists in this region, or leave it empty "
                        "to resolve the public SSM parameter",
                    )
                )
                continue
            raise
        runtimes = version.get("CompatibleRuntimes") or []
        if runtimes and "python3.11" not in runtimes:
            problems.append(
                (
                    f"{function}: layer {layer_arn} is for {', '.join(runtimes)}, not python3.11",
                    "pick the layer version built for python3.11 (x86_64)",
                )
            )
            continue
        found.append(layer_arn)
    if problems:
        summary = "; ".join(p for p, _ in problems)
        return Check("layers", FAIL, summary, fix=problems[0][1], details=details)
    return Check("layers", OK, f"{len(found)} external layer(s) exist in {context.region}", details=details)


def _check_xgboost_image(context: _Context) -> Check:
    assert context.resolved is not None
    from sagemaker.core import image_uris

    mapping = context.resolved.template.get("Mappings", {}).get(XGBOOST_MAPPING, {})
    mapped = mapping.get(context.region, {}).get("Account")
    try:
        sdk_uri = image_uris.retrieve("xgboost", context.region, XGBOOST_VERSION)
    except ValueError:
        sdk_uri = None
    sdk_account = sdk_uri.split(".", 1)[0] if sdk_uri else None
    if mapped is None and sdk_account is None:
        return Check(
            "xgboost-image",
            FAIL,
            f"SageMaker's XGBoost {XGBOOST_VERSION} is not offered in {context.region} "
            f"(the template's {XGBOOST_MAPPING} mapping and the sagemaker SDK both lack it)",
            fix=f"deploy to a region listed under template.yaml Mappings {XGBOOST_MAPPING} "
            f"(set region in samconfig.toml [{context.config_env}], or pass --region)",
        )
    if mapped is None:
        return Check(
            "xgboost-image",
            FAIL,
            f"the template's {XGBOOST_MAPPING} mapping has no {context.region}; the sagemaker SDK says {sdk_uri}",
            fix=f'add to template.yaml Mappings {XGBOOST_MAPPING}: {context.region}: Account: "{sdk_account}"',
        )
    if sdk_account is None:
        status, note = WARN, "the installed sagemaker SDK does not know the region (upgrade sagemaker-core to compare)"
    elif sdk_account != str(mapped):
        return Check(
            "xgboost-image",
            FAIL,
            f"the template maps {context.region} to registry {mapped}, the sagemaker SDK to {sdk_account}",
            fix=f'set template.yaml Mappings {XGBOOST_MAPPING} {context.region} Account to "{sdk_account}"',
        )
    else:
        status, note = OK, "the template mapping and the sagemaker SDK agree"
    uri = f"{mapped}.dkr.ecr.{context.region}.amazonaws.com/{XGBOOST_REPOSITORY}:{XGBOOST_VERSION}"
    try:
        context.client("ecr").describe_images(
            registryId=str(mapped), repositoryName=XGBOOST_REPOSITORY, imageIds=[{"imageTag": XGBOOST_VERSION}]
        )
        ecr_note = "ECR lists the image"
    except ClientError as exc:
        code = _error_code(exc)
        if code in ("RepositoryNotFoundException", "ImageNotFoundException"):
            return Check(
                "xgboost-image",
                FAIL,
                f"{uri}: ECR answers {code} in {context.region}",
                fix=f"deploy to a region where SageMaker offers XGBoost {XGBOOST_VERSION}, or correct the mapping",
            )
        if not _denied(exc):
            raise
        ecr_note = f"ECR would not say ({code}: this account may not describe SageMaker's registry)"
        status = WARN if status == OK else status
    return Check("xgboost-image", status, f"{uri}: {note}; {ecr_note}", data={"uri": uri})


def _dataset_configs(context: _Context) -> tuple[list[DatasetConfig], list[str]]:
    configs, problems = [], []
    for path in context.dataset_config_paths:
        try:
            configs.append(parse_dataset_config(path.read_bytes(), str(path)))
        except (OSError, DatasetConfigError) as exc:
            problems.append(str(exc))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (context.stack or {}).get("Outputs", [])}
    bucket = outputs.get("ArtifactBucketName")
    if bucket:
        from stepml.config import DATASET_CONFIG_PREFIX

        s3 = context.client("s3")
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DATASET_CONFIG_PREFIX):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/config.json"):
                        continue
                    source = f"s3://{bucket}/{item['Key']}"
                    try:
                        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                        configs.append(parse_dataset_config(body, source))
                    except DatasetConfigError as exc:
                        problems.append(str(exc))
        except ClientError as exc:
            if not _denied(exc):
                raise
            where = f"s3://{bucket}/{DATASET_CONFIG_PREFIX}"
            problems.append(f"cannot read the onboarded configs in {where}: {_error_code(exc)}")
    return configs, problems


def _quota_values(quotas: Any, names: set[str]) -> dict[str, dict[str, Any]]:
    """The applied quota for each name, falling back to AWS's default where none is applied
    (ListServiceQuotas lists only the quotas that have an applied value)."""
    found: dict[str, dict[str, Any]] = {}
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        missing = names - set(found)
        if not missing:
            break
        for page in quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                if quota.get("QuotaName") in missing and quota.get("QuotaName") not in found:
                    found[quota["QuotaName"]] = quota
    return found


def _check_quotas(context: _Context) -> Check:
    assert context.resolved is not None
    configs, config_problems = _dataset_configs(context)
    needs = instance_needs(
        str(context.resolved.parameters["TrainingInstanceType"]),
        str(context.resolved.parameters["HostingInstanceType"]),
        configs,
    )
    quotas = _quota_values(context.client("service-quotas"), {n.quota_name for n in needs})
    failures, details = [], []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is None:
            failures.append(
                (
                    f"no SageMaker quota named '{need.quota_name}' in {context.region} "
                    f"(is {need.instance_type} offered there?)",
                    "pick an instance type SageMaker offers in this region",
                )
            )
            continue
        value = float(quota["Value"])
        line = f"{need.quota_name}: quota {value:g}, needs {need.count} ({need.reason})"
        details.append(line)
        if value < need.count:
            failures.append(
                (
                    f"'{need.quota_name}' is {value:g} in {context.region}, a run needs {need.count} ({need.reason})",
                    f"aws service-quotas request-service-quota-increase --service-code sagemaker "
                    f"--quota-code {quota['QuotaCode']} --desired-value {need.count} --region {context.region} "
                    f"(or the Service Quotas console: Amazon SageMaker, '{need.quota_name}')",
                )
            )
    details.extend(f"dataset config skipped: {problem}" for problem in config_problems)
    counted = f"{len(configs)} dataset config(s)" if configs else "the stack's defaults"
    if failures:
        summary = "; ".join(failure for failure, _ in failures)
        return Check("quotas", FAIL, summary, fix=" ; ".join(fix for _, fix in failures), details=details)
    status = WARN if config_problems else OK
    return Check(
        "quotas", status, f"SageMaker instance quotas cover {counted} ({len(needs)} quota(s))", details=details
    )


def _check_glue(context: _Context) -> Check:
    assert context.resolved is not None
    props = context.resolved.resolved_properties(GLUE_JOB)
    version = str(props.get("GlueVersion", ""))
    offered = glue_version_offered(version, context.region)
    if offered is False:
        return Check(
            "glue",
            FAIL,
            f"AWS Glue (and so Glue {version}) is not offered in {context.region}",
            fix="deploy to a region with AWS Glue: set region in samconfig.toml or pass --region",
        )
    summary = (
        f"Glue {version} is offered in {context.region}"
        if offered
        else f"Glue {version}: not in the table of checked versions; trusting the deploy to tell"
    )
    status = OK if offered else WARN
    if context.stack_resources.get(GLUE_JOB):
        job_name = context.stack_resources[GLUE_JOB][1]
        try:
            job = context.client("glue").get_job(JobName=job_name)["Job"]
        except ClientError as exc:
            if not _denied(exc) and _error_code(exc) != "EntityNotFoundException":
                raise
            summary += f"; the stack's job {job_name}: {_error_code(exc)}"
        else:
            deployed = job.get("GlueVersion", "?")
            summary += f"; the stack's job {job_name} runs Glue {deployed}"
            if deployed != version:
                summary += f" (the deploy moves it to {version})"
    return Check("glue", status, summary)


# -- the command ----------------------------------------------------------------------------


def preflight_command(args: argparse.Namespace) -> int:
    """``stepml preflight``: print the report (or ``--json``); exit 1 on any FAIL."""
    from stepml.cli.context import CliError, print_json

    try:
        report = run(
            Path(args.root),
            config_env=args.config_env,
            stack_name=args.stack_name,
            region=args.region,
            parameter_overrides=parse_parameter_overrides(args.parameter_overrides or ""),
            dataset_configs=args.dataset_config or (),
        )
    except (PreflightError, TemplateError) as exc:
        raise CliError(str(exc), exit_code=2) from exc
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"preflight of stack {report.stack_name} ({report.config_env}) in {report.region}")
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "preflight",
        help="before a deploy: check what only the target AWS account can answer",
        description=(
            "Checks the account your AWS credentials name (boto3's default chain; AWS_ENDPOINT_URL is honoured): "
            "ValidateStateMachineDefinition on the filled definition, the SES sender identity, the SDK for pandas "
            "layer, the XGBoost image, SageMaker quotas and Glue in the region. Exits 1 on any FAIL."
        ),
    )
    parser.add_argument("--stack-name", help="the stack to deploy (default: samconfig's stack_name)")
    parser.add_argument("--config-env", default="dev", help="the samconfig.toml environment (default dev)")
    parser.add_argument("--region", help="the region to check (default: samconfig's, then AWS_REGION)")
    parser.add_argument(
        "--parameter-overrides", help='template parameters over samconfig\'s, as sam deploy takes them: "K=V K2=V2"'
    )
    parser.add_argument(
        "--dataset-config",
        action="append",
        metavar="FILE",
        help="a dataset config to count in the quota check (repeatable); an existing stack's onboarded configs "
        "are counted too",
    )
    parser.add_argument("--root", default=".", help="the project folder with template.yaml and samconfig.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=preflight_command)
