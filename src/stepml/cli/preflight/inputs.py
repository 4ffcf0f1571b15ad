"""What preflight knows before it asks AWS: samconfig's environments, the instances a run needs,
where Glue runs, and how a deployed stack's resources bind the template. Pure: no AWS calls."""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stepml.cli.preflight.report import PreflightError
from stepml.config import DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS, DatasetConfig
from stepml.test_scoring import SUGGESTED_TRANSFORM_TYPE, transform_accepts

if TYPE_CHECKING:
    from stepml.local.template import ResolvedTemplate

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
#: A test split past ``evaluation.batch_transform_above_rows`` is scored by the challenger's and
#: the production champion's transform jobs at once, 1 instance each (statemachine/pipeline.asl.json,
#: "Score test split in batch", TransformResources).
TRANSFORM_INSTANCES: Final = 2

_MAX_MESSAGE = 300


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

    usage: str  # "training job usage", "endpoint usage" or "transform job usage"
    instance_type: str
    count: int
    reason: str
    #: None: every run needs it. A row count: only a run whose test split has more rows does
    #: (Batch Transform, past the dataset config's ``evaluation.batch_transform_above_rows``).
    above_rows: int | None = None

    @property
    def quota_name(self) -> str:
        """The Service Quotas name of this need's quota, as AWS words it."""
        return f"{self.instance_type} for {self.usage}"


def instance_needs(
    training_default: str, hosting_default: str, configs: Sequence[DatasetConfig] = ()
) -> list[InstanceNeed]:
    """The SageMaker instances one run needs at its peak, per quota, for the stack's defaults and
    every dataset config (``null`` instance types take the defaults). Runs of different datasets
    may overlap; this counts one run at a time. Transform needs are counted only for types Batch
    Transform takes (``transform_type_problems`` names the others)."""
    needs: dict[tuple[str, str], InstanceNeed] = {}

    def need(usage: str, instance_type: str, count: int, reason: str, above_rows: int | None = None) -> None:
        new = InstanceNeed(usage, instance_type, count, reason, above_rows)
        old = needs.get((usage, instance_type))
        if old is None or _demand(new) > _demand(old):
            needs[(usage, instance_type)] = new

    need("training job usage", training_default, 1, "the stack's default training instance")
    need(
        "endpoint usage",
        hosting_default,
        TEST_ENDPOINT_INSTANCES + 2,
        "test endpoint 1 + production 1 + its blue/green replacement 1",
    )
    if transform_accepts(hosting_default):
        need(*_transform_need(hosting_default, "the stack's default hosting instance", None))
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
        if transform_accepts(hosting):
            need(*_transform_need(hosting, f"dataset {config.name}", config.evaluation.batch_transform_above_rows))
    return sorted(needs.values(), key=lambda n: (n.usage, n.instance_type))


def _demand(need: InstanceNeed) -> tuple[int, bool, int]:
    """Which of two needs of one quota to report: more instances, then every run over some runs,
    then the lower threshold (more runs reach it)."""
    return need.count, need.above_rows is None, -(need.above_rows or 0)


def _transform_need(instance_type: str, who: str, threshold: int | None) -> tuple[str, str, int, str, int | None]:
    """The transform need of one hosting type: challenger and champion jobs at once, on the runs
    whose test split passes ``threshold`` (None: the stack default, for configs not seen here)."""
    jobs = "challenger 1 + champion 1 transform jobs at once"
    if threshold is None:
        threshold = DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS
        when = f"for a run whose test split passes evaluation.batch_transform_above_rows (default {threshold:,} rows)"
    elif threshold == 0:
        return "transform job usage", instance_type, TRANSFORM_INSTANCES, f"{who}: {jobs} on every run", None
    else:
        when = f"for a run whose test split passes evaluation.batch_transform_above_rows ({threshold:,} rows)"
    return "transform job usage", instance_type, TRANSFORM_INSTANCES, f"{who}: {jobs}, {when}", threshold


def transform_type_problems(hosting_default: str, configs: Sequence[DatasetConfig] = ()) -> list[tuple[str, str, bool]]:
    """``(problem, fix, every_run)`` for each hosting type Batch Transform does not take: the
    stack's default, and every dataset config's own. The transform jobs of a large test split run
    on the hosting type; ``every_run`` when a config using that type has threshold 0, so no run
    can pass (otherwise only a run past the config's threshold fails, which preflight cannot foresee)."""
    problems: list[tuple[str, str, bool]] = []
    if not transform_accepts(hosting_default):
        every_run = any(
            c.hosting.instance_type is None and c.evaluation.batch_transform_above_rows == 0 for c in configs
        )
        problems.append(
            (
                f"the stack's HostingInstanceType {hosting_default} is not a type Batch Transform accepts, and "
                "every dataset config with hosting.instance_type null scores a large test split on it",
                f"set HostingInstanceType to a type Batch Transform accepts, such as {SUGGESTED_TRANSFORM_TYPE} "
                "(samconfig.toml parameter_overrides, or --parameter-overrides)",
                every_run,
            )
        )
    for config in configs:
        own = config.hosting.instance_type
        if own is not None and not transform_accepts(own):
            threshold = config.evaluation.batch_transform_above_rows
            problems.append(
                (
                    f"dataset {config.name}: hosting.instance_type {own} is not a type Batch Transform accepts, and "
                    f"a run whose test split passes evaluation.batch_transform_above_rows ({threshold:,} rows) "
                    "scores it with transform jobs on that type",
                    f"set hosting.instance_type of dataset {config.name} to a type Batch Transform accepts, such "
                    f"as {SUGGESTED_TRANSFORM_TYPE}",
                    threshold == 0,
                )
            )
    return problems


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
