"""The contracts between the state machine and the Lambdas, each written once.

Every Lambda input is a pydantic model here, parsed with Powertools' parser (``parse_payload``);
``Run`` is the run document the state machine carries as ``$.run`` (built by ResolveRun, read by
every later state). The wire shapes are those of statemachine/pipeline.asl.json: the models
describe them, they never change them. A payload that does not fit raises the caller's error
type with a message naming the Lambda and every field that does not fit, never the values (a
RequestApproval payload holds the task token).

The approval API's input is API Gateway's HTTP API event, which Powertools' resolver parses;
its form fields are checked by ``stepml.approvals`` (the rules of the decision live there).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from stepml.lineage_table import STEP_TITLES

PayloadModel = TypeVar("PayloadModel", bound=BaseModel)

# Tags of the execution input's kinds; pydantic puts them into error locations, where
# they would read as fields, so ``_location`` leaves them out.
_UPLOAD_EVENT = "upload event"
_RESUME_REQUEST = "resume request"
_REPRODUCE_REQUEST = "reproduce request"
_DRIFT_REQUEST = "drift retrain request"
_UNION_TAGS = frozenset({_UPLOAD_EVENT, _RESUME_REQUEST, _REPRODUCE_REQUEST, _DRIFT_REQUEST})

NonEmpty = Annotated[str, Field(min_length=1)]
Number = Annotated[float, Field(strict=True)]


class PayloadError(ValueError):
    """A Lambda payload that does not fit its contract; the message names the fields."""


class _Contract(BaseModel):
    """A part of a payload: extra fields pass through untouched (the state machine may add
    some), and errors never echo the input."""

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    def document(self) -> dict[str, Any]:
        """The part as the JSON the state machine sent (only the fields it sent)."""
        return self.model_dump(mode="json", exclude_unset=True)


# --- $.run ------------------------------------------------------------------------------------


class Upload(_Contract):
    """``$.run.input``: the uploaded object version the run stands for."""

    bucket: NonEmpty
    key: NonEmpty
    version_id: NonEmpty
    etag: str
    size: int = Field(ge=0)
    uri: NonEmpty


class RunNames(_Contract):
    """``$.run.names``: the SageMaker names of the run's attempt (``lineage.resource_names``)."""

    training_job: NonEmpty
    model: NonEmpty
    test_endpoint_config: NonEmpty
    test_endpoint: NonEmpty
    #: The serverless test endpoint's model, XGBoost alone (absent from runs resolved before it existed).
    test_model: NonEmpty | None = None
    #: Batch Transform jobs scoring a large test split (absent from runs resolved before them).
    challenger_transform_job: NonEmpty | None = None
    champion_transform_job: NonEmpty | None = None
    production_endpoint_config: NonEmpty
    production_endpoint: NonEmpty


class RunPaths(_Contract):
    """``$.run.paths``: where the run's outputs live (``lineage.artifact_paths``)."""

    processed: NonEmpty
    train: NonEmpty
    validation: NonEmpty
    test: NonEmpty
    statistics: NonEmpty
    #: The Model Monitor baseline's constraints.json (absent from runs resolved before it existed).
    constraints: NonEmpty | None = None
    manifest: NonEmpty
    #: The Glue job's fitted encoding and the endpoint preprocessor's model data packed from it
    #: (``stepml.preprocessor``; absent from runs resolved before the inference pipeline).
    encoding: NonEmpty | None = None
    preprocessor: NonEmpty | None = None
    model_output: NonEmpty
    evaluation: NonEmpty
    #: Where Batch Transform jobs write their outputs (absent from runs resolved before them).
    transform: NonEmpty | None = None
    data_capture: NonEmpty


class Run(_Contract):
    """``$.run``: the run document ResolveRun returns and the state machine passes on.

    ``config`` is the dataset config as validated at resolve time (``config.DatasetConfig``
    dumped as JSON, instance types filled in); it is kept as a mapping here so the run
    document does not depend on the schema's version.
    """

    run_id: NonEmpty
    dataset: NonEmpty
    attempt: int = Field(ge=1)
    execution_arn: NonEmpty
    input: Upload
    config: dict[str, Any]
    hyperparameters: dict[str, str]
    names: RunNames
    paths: RunPaths
    endpoint_poll_seconds: int = Field(gt=0)
    approval_timeout_seconds: int = Field(gt=0)
    code_version: NonEmpty
    #: The run this one reproduces (``stepml runs reproduce``): evaluated, never deployed.
    reproduction_of: NonEmpty | None = None


# --- ResolveRun -------------------------------------------------------------------------------


class ResumeRequest(_Contract):
    """The execution input of ``stepml runs resume``: run an existing run again."""

    resume_run_id: NonEmpty


class ReproduceRequest(_Contract):
    """The execution input of ``stepml runs reproduce``: a new run on a finished run's data
    version, config and hyperparameters; ``reproduce_request_id`` makes each request its own run
    (and the same request delivered twice one run)."""

    reproduce_run_id: NonEmpty
    reproduce_request_id: Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]


class DriftTrigger(_Contract):
    """What started a drift retrain: the alarm's state change (``stepml.drift_retrain``)."""

    alarm_name: NonEmpty
    alarm_arn: NonEmpty
    endpoint: NonEmpty
    reason: str
    changed_at: NonEmpty
    event_id: NonEmpty


class DriftRetrain(_Contract):
    """``drift_retrain`` of a drift retrain's execution input: a new run of ``dataset`` on the
    newest upload ``upload``; ``trigger.event_id`` makes each alarm event its own run (and the
    same event delivered twice one run)."""

    dataset: NonEmpty
    upload: Upload
    trigger: DriftTrigger


class DriftRetrainRequest(_Contract):
    """The execution input of a drift retrain, started by ``stepml.drift_retrain``."""

    drift_retrain: DriftRetrain


def _execution_input_kind(value: Any) -> str:
    if isinstance(value, Mapping) and "drift_retrain" in value:
        return _DRIFT_REQUEST
    if isinstance(value, Mapping) and "resume_run_id" in value:
        return _RESUME_REQUEST
    if isinstance(value, Mapping) and "reproduce_run_id" in value:
        return _REPRODUCE_REQUEST
    return _UPLOAD_EVENT


ExecutionInput = Annotated[
    Annotated[ResumeRequest, Tag(_RESUME_REQUEST)]
    | Annotated[ReproduceRequest, Tag(_REPRODUCE_REQUEST)]
    | Annotated[DriftRetrainRequest, Tag(_DRIFT_REQUEST)]
    | Annotated[S3EventNotificationEventBridgeModel, Tag(_UPLOAD_EVENT)],
    Discriminator(_execution_input_kind),
]


class ResolveRunPayload(_Contract):
    """``{"event": <execution input>, "execution_arn"}``: the input is S3's EventBridge
    ``Object Created`` event (Powertools' model), a resume, reproduce or drift retrain request."""

    event: ExecutionInput
    execution_arn: NonEmpty


# --- Evaluate ---------------------------------------------------------------------------------


class Champion(_Contract):
    """``$.champion``: whether production serves a model and, when it does, which one."""

    in_service: bool
    endpoint: str | None = None
    endpoint_config: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _named_when_in_service(self) -> Champion:
        if self.in_service:
            missing = [name for name in ("endpoint", "endpoint_config", "model") if not getattr(self, name)]
            if missing:
                raise ValueError(f"a champion in service needs {', '.join(missing)}")
        return self


class ChallengerServing(_Contract):
    """``$.test_serving``: who encodes the test rows, as the test endpoint config state the run took
    says. ``endpoint``: its model is the inference pipeline, whose preprocessor encodes raw rows;
    ``evaluate``: a serverless test endpoint serves the XGBoost container alone (AWS serves no
    inference pipeline serverless), so Evaluate applies the preprocessing before invoking."""

    preprocessing: Literal["endpoint", "evaluate"]


class TransformJob(_Contract):
    """A Batch Transform job that scored the test split: its name and its output prefix."""

    job_name: NonEmpty
    output: Annotated[str, Field(pattern=r"^s3://[^/]+/.+/$")]


class BatchScoring(_Contract):
    """``$.steps.test_scoring``: the Batch Transform jobs that scored a large test split, the
    champion's only when production serves one (``stepml.test_scoring``)."""

    mode: Literal["batch"]
    challenger: TransformJob
    champion: TransformJob | None = None


class EvaluatePayload(_Contract):
    """``{"run", "endpoint_name", "champion", "serving"}`` when a test endpoint scores the split,
    ``{"run", "scoring", "champion"}`` when Batch Transform jobs did; ``champion`` and ``serving``
    are absent on old definitions (whose test endpoint always served the inference pipeline)."""

    run: Run
    endpoint_name: NonEmpty | None = None
    champion: Champion | None = None
    serving: ChallengerServing | None = None
    scoring: BatchScoring | None = None

    @model_validator(mode="after")
    def _one_way_of_scoring(self) -> EvaluatePayload:
        if (self.endpoint_name is None) == (self.scoring is None):
            raise ValueError("give either endpoint_name (a test endpoint) or scoring (Batch Transform jobs)")
        if self.scoring is not None and self.serving is not None:
            raise ValueError("serving describes a test endpoint; Batch Transform scoring has none")
        champion_served = bool(self.champion and self.champion.in_service)
        if self.scoring is not None and champion_served != (self.scoring.champion is not None):
            raise ValueError("scoring.champion must be given exactly when champion.in_service is true")
        return self


class EvaluationResult(_Contract):
    """``$.steps.evaluate``: Evaluate's result as the state machine keeps it."""

    passed: bool | None = None
    reason: str | None = None
    metric: NonEmpty
    value: Number | None = None
    threshold: Number | None = None
    higher_is_better: bool = True
    metrics: dict[str, Any] | None = None
    rows: int | None = None
    production: dict[str, Any] | None = None
    report_uri: str | None = None
    #: The run's model package version (``stepml.registry``): ``arn``, ``group``, ``version``, ``status``.
    model_package: dict[str, Any] | None = None


# --- RequestApproval --------------------------------------------------------------------------


class RequestApprovalPayload(_Contract):
    """``{"task_token", "run", "evaluation", "execution_arn", "waiting_since"}``;
    ``waiting_since`` is when the task started waiting (``$$.State.EnteredTime``)."""

    task_token: NonEmpty
    run: Run
    evaluation: EvaluationResult
    execution_arn: NonEmpty
    waiting_since: datetime | None = None


# --- RecordStep -------------------------------------------------------------------------------


class StepRecordPayload(_Contract):
    """``{"run", "step", "status", "result"}``: a step (or the run, or its cleanup) finished."""

    run: Run
    step: NonEmpty
    status: NonEmpty
    result: Any = None


class FailedState(_Contract):
    """``$`` when a Catch sent the run to the cleanup path: the step its "Failed at ..." Pass
    named, the error it caught, and (unless ResolveRun itself failed) the run. The step is
    never inferred from missing records: a state without a known ``failed_step`` is refused."""

    failed_step: NonEmpty
    error: dict[str, Any] | None = None
    run: dict[str, Any] | None = None

    @field_validator("failed_step")
    @classmethod
    def _a_step_of_the_pipeline(cls, step: str) -> str:
        if step not in STEP_TITLES:
            raise ValueError(
                f"the Catch that led here must name one of {', '.join(STEP_TITLES)} "
                "(statemachine/pipeline.asl.json, the 'Failed at ...' Pass states)"
            )
        return step


class FailurePayload(_Contract):
    """``{"state", "step": "failure", "execution_arn"}``: record the failure and alert."""

    step: Literal["failure"]
    state: FailedState
    execution_arn: NonEmpty


class NotificationFailurePayload(_Contract):
    """``{"state", "step": "notify", "execution_arn", "notification"}``: a notice or alert was
    not delivered; ``notification`` names it where the definition knows which."""

    step: Literal["notify"]
    state: dict[str, Any]
    execution_arn: NonEmpty
    notification: str | None = None


RecordStepRequest = StepRecordPayload | FailurePayload | NotificationFailurePayload


def parse_record_step(event: Any, *, error: type[Exception] = PayloadError) -> RecordStepRequest:
    """RecordStep's payload as the model its ``step`` selects ("failure", "notify", or a step record)."""
    kind = event.get("step") if isinstance(event, Mapping) else None
    model: type[BaseModel] = {"failure": FailurePayload, "notify": NotificationFailurePayload}.get(
        kind, StepRecordPayload
    )
    return parse_payload(event, model, lambda_name="RecordStep", error=error)  # type: ignore[return-value]


# --- parsing ----------------------------------------------------------------------------------


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in _UNION_TAGS)


def describe(exc: ValidationError, *, root: str = "") -> str:
    """Each field that does not fit and why (``field 'run.input.uri': Field required``), without
    values; ``root`` prefixes each field's path (``"$."`` for a state of the state machine)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = root + _location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"field '{where}': {message}" if where else message)
    return "; ".join(dict.fromkeys(problems))


def parse_payload(
    event: Any,
    model: type[PayloadModel],
    *,
    lambda_name: str,
    error: type[Exception] = PayloadError,
) -> PayloadModel:
    """``event`` as ``model`` (through Powertools' parser), or ``error`` naming ``lambda_name``
    and the fields that do not fit."""
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        raise error(f"{lambda_name} payload: {describe(exc)}") from exc
