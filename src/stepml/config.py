"""Typed configuration: Lambda environment settings and the dataset config schema.

Two kinds of configuration live here, and nowhere else:

* ``Settings``: what a Lambda learns from its environment (table names, topic ARNs,
  defaults from template parameters). Each variable name is a constant below and
  ``load_settings`` validates the ones a handler needs, naming the bad variable.
* ``DatasetConfig``: the JSON file that onboards a dataset (label, problem type, metric
  and threshold, hyperparameters, instance types). ``parse_dataset_config`` validates it
  against the schema and names the bad field and the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

# --- Environment variable names (the template sets these on the functions) -------------

LINEAGE_TABLE = "STEPML_LINEAGE_TABLE"
APPROVAL_TABLE = "STEPML_APPROVAL_TABLE"
ARTIFACT_BUCKET = "STEPML_ARTIFACT_BUCKET"
APPROVAL_SIGNING_KEY_ID = "STEPML_APPROVAL_SIGNING_KEY_ID"
APPROVAL_BASE_URL = "STEPML_APPROVAL_BASE_URL"
APPROVAL_SENDER = "STEPML_APPROVAL_SENDER"
APPROVER_EMAIL = "STEPML_APPROVER_EMAIL"
APPROVAL_TIMEOUT_SECONDS = "STEPML_APPROVAL_TIMEOUT_SECONDS"
PRODUCTION_ENDPOINT_NAME = "STEPML_PRODUCTION_ENDPOINT_NAME"
DEFAULT_TRAINING_INSTANCE_TYPE = "STEPML_DEFAULT_TRAINING_INSTANCE_TYPE"
DEFAULT_HOSTING_INSTANCE_TYPE = "STEPML_DEFAULT_HOSTING_INSTANCE_TYPE"
ENDPOINT_POLL_SECONDS = "STEPML_ENDPOINT_POLL_SECONDS"
LINEAGE_RETENTION_DAYS = "STEPML_LINEAGE_RETENTION_DAYS"
MODEL_PACKAGE_GROUP_PREFIX = "STEPML_MODEL_PACKAGE_GROUP_PREFIX"
#: The approval page's sign-in (``none`` or ``cognito``) and, with ``cognito``, the user pool,
#: the name of its app client and the hosted UI's base URL (stepml.approval_signin); the pool and
#: the URL are ``none`` without a sign-in.
APPROVAL_SIGNIN = "STEPML_APPROVAL_SIGNIN"
APPROVAL_USER_POOL_ID = "STEPML_APPROVAL_USER_POOL_ID"
APPROVAL_SIGNIN_CLIENT_NAME = "STEPML_APPROVAL_SIGNIN_CLIENT_NAME"
APPROVAL_SIGNIN_URL = "STEPML_APPROVAL_SIGNIN_URL"
UPLOAD_BUCKET = "STEPML_UPLOAD_BUCKET"
STATE_MACHINE_ARN = "STEPML_STATE_MACHINE_ARN"

#: Where dataset configs live in the artifact bucket: ``datasets/<name>/config.json``.
DATASET_CONFIG_PREFIX = "datasets/"
#: Uploads that start a run: ``incoming/<dataset>/<file>`` in the upload bucket.
INCOMING_PREFIX = "incoming/"

_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Addresses of one dataset's approvers, at most (one email and one link each).
MAX_APPROVERS = 20
MAX_EMAIL_CHARS = 254
DATASET_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$"


class ConfigError(ValueError):
    """A missing or invalid environment setting."""


class DatasetConfigError(ValueError):
    """A dataset config that does not match the schema; the message names file and field."""


@dataclass(frozen=True)
class Settings:
    """Environment settings of one Lambda; only the variables it asked for are checked."""

    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """Return a loaded variable, or raise ``ConfigError`` naming it."""
        try:
            return self.values[name]
        except KeyError:
            raise ConfigError(f"environment variable {name} was not loaded or is not set") from None

    def get_int(self, name: str) -> int:
        return int(self.get(name))

    @property
    def lineage_table(self) -> str:
        return self.get(LINEAGE_TABLE)

    @property
    def approval_table(self) -> str:
        return self.get(APPROVAL_TABLE)

    @property
    def artifact_bucket(self) -> str:
        return self.get(ARTIFACT_BUCKET)

    @property
    def approval_signing_key_id(self) -> str:
        return self.get(APPROVAL_SIGNING_KEY_ID)

    @property
    def approval_base_url(self) -> str:
        return self.get(APPROVAL_BASE_URL).rstrip("/")

    @property
    def approval_sender(self) -> str:
        """The From address of approval emails (an SES-verified identity)."""
        return self.get(APPROVAL_SENDER)

    @property
    def approver_email(self) -> str:
        return self.get(APPROVER_EMAIL)

    @property
    def approval_timeout_seconds(self) -> int:
        return self.get_int(APPROVAL_TIMEOUT_SECONDS)

    @property
    def production_endpoint_name(self) -> str:
        return self.get(PRODUCTION_ENDPOINT_NAME)

    @property
    def model_package_group_prefix(self) -> str:
        """The start of every model package group name of the stack (its name): ``<prefix>-<dataset>``."""
        return self.get(MODEL_PACKAGE_GROUP_PREFIX)

    @property
    def default_training_instance_type(self) -> str:
        return self.get(DEFAULT_TRAINING_INSTANCE_TYPE)

    @property
    def default_hosting_instance_type(self) -> str:
        return self.get(DEFAULT_HOSTING_INSTANCE_TYPE)

    @property
    def endpoint_poll_seconds(self) -> int:
        return self.get_int(ENDPOINT_POLL_SECONDS)

    @property
    def lineage_retention_days(self) -> int:
        return self.get_int(LINEAGE_RETENTION_DAYS)

    @property
    def upload_bucket(self) -> str:
        return self.get(UPLOAD_BUCKET)

    @property
    def state_machine_arn(self) -> str:
        """The pipeline's state machine (a drift retrain starts it)."""
        return self.get(STATE_MACHINE_ARN)


def _check_positive_int(name: str, value: str) -> None:
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"environment variable {name} must be a positive integer, got {value!r}")


_VALIDATORS: dict[str, Any] = {
    APPROVAL_BASE_URL: lambda n, v: (
        None
        if v.startswith(("https://", "http://127.0.0.1", "http://localhost"))
        else _bad(n, v, "an https:// URL (plain http only on localhost)")
    ),
    APPROVAL_SIGNIN: lambda n, v: None if v in ("none", "cognito") else _bad(n, v, "none or cognito"),
    APPROVAL_USER_POOL_ID: lambda n, v: (
        None if v == "none" or re.match(r"^[\w-]+_[0-9a-zA-Z]+$", v) else _bad(n, v, "none or a user pool id")
    ),
    APPROVAL_SIGNIN_URL: lambda n, v: (
        None
        if v == "none" or v.startswith(("https://", "http://127.0.0.1", "http://localhost"))
        else _bad(n, v, "none or an https:// URL (plain http only on localhost)")
    ),
    APPROVAL_SENDER: lambda n, v: None if _EMAIL.match(v) else _bad(n, v, "an email address"),
    APPROVER_EMAIL: lambda n, v: None if _EMAIL.match(v) else _bad(n, v, "an email address"),
    APPROVAL_TIMEOUT_SECONDS: _check_positive_int,
    ENDPOINT_POLL_SECONDS: _check_positive_int,
    LINEAGE_RETENTION_DAYS: lambda n, v: None if v.isdigit() else _bad(n, v, "a whole number of days"),
    DEFAULT_TRAINING_INSTANCE_TYPE: lambda n, v: (
        None if _INSTANCE_TYPE.match(v) else _bad(n, v, "a SageMaker instance type such as ml.m5.xlarge")
    ),
    DEFAULT_HOSTING_INSTANCE_TYPE: lambda n, v: (
        None if _INSTANCE_TYPE.match(v) else _bad(n, v, "a SageMaker instance type such as ml.m5.large")
    ),
}


def _bad(name: str, value: str, expected: str) -> None:
    raise ConfigError(f"environment variable {name} must be {expected}, got {value!r}")


def load_settings(required: Iterable[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the named environment variables.

    Raises ``ConfigError`` naming the first variable that is missing, empty or malformed.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for name in required:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError(f"environment variable {name} is missing or empty")
        check = _VALIDATORS.get(name)
        if check is not None:
            check(name, value)
        values[name] = value
    return Settings(values)


# --- Dataset config -------------------------------------------------------------------

ProblemType = Literal["binary", "multiclass", "regression"]

#: Metrics per problem type, and whether larger is better.
METRICS: dict[str, dict[str, bool]] = {
    "binary": {
        "auc": True,
        "accuracy": True,
        "f1": True,
        "precision": True,
        "recall": True,
        "logloss": False,
    },
    "multiclass": {"accuracy": True, "f1_macro": True, "logloss": False},
    "regression": {"rmse": False, "mae": False, "r2": True},
}

#: The built-in XGBoost objective each problem type trains with.
OBJECTIVES: dict[str, str] = {
    "binary": "binary:logistic",
    "multiclass": "multi:softprob",
    "regression": "reg:squarederror",
}

_DEFAULT_EVAL_METRIC = {"binary": "auc", "multiclass": "mlogloss", "regression": "rmse"}

HyperparameterValue = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One input column and how preprocessing treats it."""

    name: Annotated[str, Field(min_length=1)]
    type: Literal["numeric", "categorical"]


class SplitSpec(_Strict):
    """Fractions of rows for each split; rows are assigned by hashing the row key."""

    train: Annotated[float, Field(gt=0, lt=1)] = 0.7
    validation: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test: Annotated[float, Field(gt=0, lt=1)] = 0.15

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        return self


class TrainingSpec(_Strict):
    """SageMaker training resources; ``None`` fields take the stack's defaults."""

    instance_type: Annotated[str | None, Field(pattern=_INSTANCE_TYPE.pattern)] = None
    instance_count: Annotated[int, Field(ge=1, le=20)] = 1
    volume_size_gb: Annotated[int, Field(ge=1, le=1024)] = 10
    max_runtime_seconds: Annotated[int, Field(ge=60, le=432000)] = 3600


#: SageMaker Serverless Inference's memory sizes (1 GB steps) and its per-endpoint concurrency limit.
SERVERLESS_MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200


class ServerlessSpec(_Strict):
    """A serverless test endpoint (``ServerlessConfig``): billed per request's compute, not per hour."""

    memory_mb: int = 2048
    max_concurrency: Annotated[int, Field(ge=1, le=SERVERLESS_MAX_CONCURRENCY)] = 5

    @field_validator("memory_mb")
    @classmethod
    def _memory_step(cls, memory_mb: int) -> int:
        if memory_mb not in SERVERLESS_MEMORY_SIZES_MB:
            sizes = ", ".join(str(size) for size in SERVERLESS_MEMORY_SIZES_MB)
            raise ValueError(f"serverless memory must be one of {sizes} MB, got {memory_mb}")
        return memory_mb


class HostingSpec(_Strict):
    """SageMaker hosting resources for the test and production endpoints."""

    instance_type: Annotated[str | None, Field(pattern=_INSTANCE_TYPE.pattern)] = None
    instance_count: Annotated[int, Field(ge=1, le=10)] = 1
    #: Serve the test endpoint serverless when it has the challenger alone (serverless endpoints take
    #: one production variant, so a run scored beside a champion keeps instances); None: instances.
    test_endpoint_serverless: ServerlessSpec | None = None


#: Test rows above which Evaluate does not score in memory through a test endpoint and the run
#: scores the test split with SageMaker Batch Transform instead (``stepml.test_scoring``). Measured
#: on the churn example (README, "Scoring a large test split in batch"): the in-memory path costs
#: the Evaluate function 0.6-0.75 KB of peak memory and 20-30 us of its own time per row, plus the
#: endpoint's; at this many rows that is under a tenth of its 2,048 MB and of its 15 minutes even
#: at 200 us a row, and a 5M-row upload (750,000 test rows at the default split) goes to batch
#: while a 500k-row one (75,000) does not.
DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS = 250_000


class EvaluationSpec(_Strict):
    """How the run's test split is scored (``stepml.test_scoring``)."""

    #: Above this many test rows, Batch Transform jobs score it (0: always); at or below, the
    #: Evaluate function does, through a test endpoint. A JSON integer, never a string or a float.
    batch_transform_above_rows: Annotated[StrictInt, Field(ge=0)] = DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS


class DatasetConfig(_Strict):
    """The schema of ``datasets/<name>/config.json``; see ``examples/datasets/churn.json``."""

    name: Annotated[str, Field(pattern=DATASET_NAME_PATTERN)]
    label: Annotated[str, Field(min_length=1)]
    problem_type: ProblemType
    features: Annotated[list[FeatureSpec], Field(min_length=1)]
    classes: list[str] | None = None
    row_key: str | None = None
    metric: str
    threshold: float
    hyperparameters: dict[str, HyperparameterValue] = Field(default_factory=dict)
    split: SplitSpec = Field(default_factory=SplitSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    hosting: HostingSpec = Field(default_factory=HostingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    promote_only_if_better: bool = True
    csv_delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    min_rows: Annotated[int, Field(ge=2)] = 10
    #: How long this dataset's approval link stays valid; ``None`` takes the stack's
    #: ApprovalTimeoutSeconds. The run ends as not promoted when it passes undecided.
    approval_timeout_seconds: Annotated[int | None, Field(ge=10, le=31536000)] = None
    #: Who signs off this dataset's models, each with a link of their own; empty means the
    #: stack's ApproverEmail alone. Addresses are kept lower-case and once each.
    approvers: Annotated[list[str], Field(max_length=MAX_APPROVERS)] = Field(default_factory=list)
    #: How many of ``approvers`` must approve; the first rejection decides at once.
    required_approvals: Annotated[int, Field(ge=1)] = 1
    #: Retrain on drift: a drift alarm of the production endpoint serving this dataset's model
    #: starts a run on the dataset's newest upload (``stepml.drift_retrain``). Off unless set;
    #: strictly a JSON boolean, so that a quoted "false" cannot switch it on.
    retrain_on_drift: StrictBool = False

    @field_validator("approvers")
    @classmethod
    def _approver_addresses(cls, approvers: list[str]) -> list[str]:
        # Case-insensitive so that one person cannot count twice as Ana@ and ana@.
        unique: list[str] = []
        for index, raw in enumerate(approvers):
            address = raw.strip().lower()
            if not _EMAIL.match(address) or len(address) > MAX_EMAIL_CHARS:
                raise ValueError(f"approvers[{index}] {raw!r} is not an email address")
            if address not in unique:
                unique.append(address)
        return unique

    @field_validator("label", "row_key")
    @classmethod
    def _names_a_column(cls, value: str | None) -> str | None:
        # The Glue job looks columns up by these names; a blank one can never match a header.
        if value is not None and not value.strip():
            raise ValueError(f"must name a column, got {value!r}")
        return value

    @field_validator("csv_delimiter")
    @classmethod
    def _splits_lines(cls, value: str) -> str:
        # The job reads one record per line with RFC 4180 quoting: a quote or a line break
        # cannot delimit fields there.
        if value in '\r\n"':
            raise ValueError(f"must not be a quote or a line break, got {value!r}")
        return value

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        return features

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        feature_names = {f.name for f in self.features}
        if self.label in feature_names:
            raise ValueError(f"label {self.label!r} must not also be listed in features")
        metrics = METRICS[self.problem_type]
        if self.metric not in metrics:
            raise ValueError(
                f"metric {self.metric!r} does not fit problem_type {self.problem_type!r}; "
                f"choose one of: {', '.join(metrics)}"
            )
        if self.problem_type == "multiclass" and (not self.classes or len(self.classes) < 3):
            raise ValueError("classes must list at least 3 label values for a multiclass problem")
        if self.problem_type == "binary" and self.classes is not None and len(self.classes) != 2:
            raise ValueError("classes must list exactly 2 label values (negative first) for a binary problem")
        if self.problem_type == "regression" and self.classes is not None:
            raise ValueError("classes must be omitted for a regression problem")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat a value")
        approvers = len(self.approvers) or 1
        if self.required_approvals > approvers:
            named = f"the {approvers} listed in 'approvers'" if self.approvers else "the stack's ApproverEmail alone"
            raise ValueError(
                f"field 'required_approvals': {self.required_approvals} approvals cannot come from {named}; "
                f"it must be between 1 and {approvers}"
            )
        objective = self.hyperparameters.get("objective")
        if objective is not None and objective != OBJECTIVES[self.problem_type]:
            raise ValueError(
                f"hyperparameters.objective {objective!r} conflicts with problem_type "
                f"{self.problem_type!r}, which trains with {OBJECTIVES[self.problem_type]!r}; omit it"
            )
        return self

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value of the gate metric is a better model."""
        return METRICS[self.problem_type][self.metric]

    def training_hyperparameters(self) -> dict[str, str]:
        """Hyperparameters as SageMaker's built-in XGBoost wants them: all strings,
        with the objective (and ``num_class``) derived from the problem type."""
        merged: dict[str, HyperparameterValue] = {"num_round": 100, "max_depth": 5, "eta": 0.2}
        merged.update(self.hyperparameters)
        merged["objective"] = OBJECTIVES[self.problem_type]
        merged.setdefault("eval_metric", _DEFAULT_EVAL_METRIC[self.problem_type])
        if self.problem_type == "multiclass":
            merged["num_class"] = len(self.classes or [])
        return {key: _hyperparameter_text(value) for key, value in merged.items()}


def _hyperparameter_text(value: HyperparameterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_dataset_config(raw: bytes | str | Mapping[str, Any], source: str) -> DatasetConfig:
    """Validate a dataset config; ``source`` (a path or S3 URI) is named in every error."""
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetConfigError(f"{source}: not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise DatasetConfigError(f"{source}: the config must be a JSON object")
    try:
        return DatasetConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"field '{location}': {message}" if location else message)
        raise DatasetConfigError(f"{source}: " + "; ".join(problems)) from exc


def dataset_config_key(dataset: str) -> str:
    """The artifact-bucket key of a dataset's config."""
    return f"{DATASET_CONFIG_PREFIX}{dataset}/config.json"
