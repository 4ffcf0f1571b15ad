"""Step Functions' optimized SageMaker integration, for moto's interpreter.

moto 5.2.5 lists ``sagemaker`` as unsupported, so ``arn:aws:states:::sagemaker:*`` tasks fail
before Retry and Catch apply. ``StateTaskServiceSageMaker`` behaves as AWS documents for this
integration: request-response for the supported APIs, ``.sync`` for jobs (the output is the
job's Describe response), no ``.waitForTaskToken``. Errors are named as AWS names them:
``SageMaker.<ModeledError>Exception`` for the errors SageMaker's API model declares,
``SageMaker.AmazonSageMakerException`` for the rest (validation, throttling), and
``States.TaskFailed`` with the Describe response as Cause when a ``.sync`` job fails.

Only ``stepml.local.moto_patches`` imports this module (it reaches into moto's internals).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import botocore.session
from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape
from botocore.validate import ParamValidator
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

from stepml.local.moto_patches import datetimes_to_epoch_millis


@dataclass(frozen=True)
class SyncJob:
    """How ``.sync`` follows a job: the Describe API, the name parameter, the status field."""

    describe: str
    name_parameter: str
    status_field: str


#: The APIs of the optimized integration (AWS Step Functions developer guide, "Create and
#: manage Amazon SageMaker AI jobs with Step Functions"), keyed by the ASL's action name.
SUPPORTED_ACTIONS: Final[dict[str, str]] = {
    "createEndpoint": "CreateEndpoint",
    "createEndpointConfig": "CreateEndpointConfig",
    "createHyperParameterTuningJob": "CreateHyperParameterTuningJob",
    "createLabelingJob": "CreateLabelingJob",
    "createModel": "CreateModel",
    "createProcessingJob": "CreateProcessingJob",
    "createTrainingJob": "CreateTrainingJob",
    "createTransformJob": "CreateTransformJob",
    "updateEndpoint": "UpdateEndpoint",
}

SYNC_JOBS: Final[dict[str, SyncJob]] = {
    "createTrainingJob": SyncJob("DescribeTrainingJob", "TrainingJobName", "TrainingJobStatus"),
    "createProcessingJob": SyncJob("DescribeProcessingJob", "ProcessingJobName", "ProcessingJobStatus"),
    "createTransformJob": SyncJob("DescribeTransformJob", "TransformJobName", "TransformJobStatus"),
    "createHyperParameterTuningJob": SyncJob(
        "DescribeHyperParameterTuningJob", "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"
    ),
    "createLabelingJob": SyncJob("DescribeLabelingJob", "LabelingJobName", "LabelingJobStatus"),
}

SUCCEEDED_STATUS: Final[str] = "Completed"
FAILED_STATUSES: Final[frozenset[str]] = frozenset({"Failed", "Stopped"})
# A .sync poller rides out throttling instead of failing the task on it.
_TRANSIENT_ERROR_CODES: Final[frozenset[str]] = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
GENERIC_ERROR: Final[str] = "SageMaker.AmazonSageMakerException"


@functools.cache
def _service_model() -> ServiceModel:
    # botocore's model of the SageMaker API: the one boto3 clients (and moto) use.
    return botocore.session.get_session().get_service_model("sagemaker")


def operation_model(action: str) -> OperationModel:
    """The botocore operation for an ASL action name such as ``createTrainingJob``."""
    return _service_model().operation_model(SUPPORTED_ACTIONS[action])


def error_name(code: str) -> str:
    """The Step Functions error name for a SageMaker API error code.

    Step Functions names errors after the SDK exception: the errors SageMaker's API model
    declares (ResourceInUse, ResourceLimitExceeded, ResourceNotFound, ConflictException) get
    their own ``...Exception``; every other code is ``AmazonSageMakerException``.
    """
    modeled = {shape.name for shape in _service_model().error_shapes}
    if code not in modeled:
        return GENERIC_ERROR
    return f"SageMaker.{code}" if code.endswith("Exception") else f"SageMaker.{code}Exception"


def error_cause(message: str, code: str, status_code: int, request_id: str) -> str:
    """The Cause text Step Functions gives a failed SageMaker call."""
    return (
        f"{message} (Service: AmazonSageMaker; Status Code: {status_code}; Error Code: {code}; "
        f"Request ID: {request_id}; Proxy: null)"
    )


class SageMakerRequestInvalidError(ValueError):
    """The task's resolved parameters do not fit the API's request shape."""

    def __init__(self, action: str, report: str) -> None:
        super().__init__(f"{action}: {report}")
        self.report = report


def validate_request(action: str, parameters: dict[str, Any]) -> None:
    """Check resolved parameters against botocore's request shape, as SageMaker's API would.

    moto's interpreter calls services with ``parameter_validation=False`` and moto ignores
    unknown fields, so a misspelt parameter would otherwise pass silently.
    """
    report = ParamValidator().validate(parameters, operation_model(action).input_shape)
    if report.has_errors():
        raise SageMakerRequestInvalidError(action, report.generate_report())


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` for moto's interpreter."""

    def __init__(self) -> None:
        super().__init__(supported_integration_patterns={ResourceCondition.Sync})

    # -- definition time ---------------------------------------------------------------

    def _get_supported_parameters(self) -> set[str] | None:
        action = self.resource.api_action
        if action not in SUPPORTED_ACTIONS:
            return None
        return set(operation_model(action).input_shape.members)

    def _validate_service_integration_is_supported(self) -> None:
        super()._validate_service_integration_is_supported()
        condition = self.resource.condition
        if condition is None:
            return
        if condition == ResourceCondition.Sync and self.resource.api_action in SYNC_JOBS:
            return
        raise ValueError(
            f"The resource provided {self.resource.resource_arn} not recognized: the SageMaker integration "
            f"supports .sync only for {', '.join(sorted(SYNC_JOBS))}, and no .waitForTaskToken."
        )

    # -- run time ----------------------------------------------------------------------

    def _client(self, resource_runtime_part: ResourceRuntimePart, state_credentials: StateCredentials) -> Any:
        return boto_client_for(
            service="sagemaker", region=resource_runtime_part.region, state_credentials=state_credentials
        )

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> None:
        action = self.resource.api_action
        validate_request(action, normalised_parameters)
        client = self._client(resource_runtime_part, state_credentials)
        response = getattr(client, xform_name(SUPPORTED_ACTIONS[action]))(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(response)

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> Callable[[], Any]:
        # The request-response output is on the stack for the resolver; the job name is in the request.
        env.stack.pop()
        job = SYNC_JOBS[self.resource.api_action]
        job_name = normalised_parameters[job.name_parameter]
        client = self._client(resource_runtime_part, state_credentials)
        describe = getattr(client, xform_name(job.describe))

        def resolve() -> dict[str, Any] | None:
            try:
                response = describe(**{job.name_parameter: job_name})
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _TRANSIENT_ERROR_CODES:
                    return None
                raise
            response.pop("ResponseMetadata", None)
            status = response.get(job.status_field)
            if status == SUCCEEDED_STATUS:
                return response
            if status in FAILED_STATUSES:
                raise FailureEventException(self._job_failed_event(env, response))
            return None

        return resolve

    def _job_failed_event(self, env: Environment, describe_response: dict[str, Any]) -> FailureEvent:
        return FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(
                taskFailedEventDetails=TaskFailedEventDetails(
                    resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                    error=StatesErrorNameType.StatesTaskFailed.to_name(),
                    cause=json.dumps(datetimes_to_epoch_millis(describe_response), separators=(",", ":")),
                )
            ),
        )

    def _task_failed_event(self, env: Environment, error: str, cause: str) -> FailureEvent:
        return FailureEvent(
            env=env,
            error_name=CustomErrorName(error_name=error),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(
                taskFailedEventDetails=TaskFailedEventDetails(
                    resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                    error=error,
                    cause=cause,
                )
            ),
        )

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            error = ex.response.get("Error", {})
            metadata = ex.response.get("ResponseMetadata", {})
            code = error.get("Code", "Unknown")
            cause = error_cause(
                error.get("Message", ""), code, metadata.get("HTTPStatusCode", 400), metadata.get("RequestId", "")
            )
            return self._task_failed_event(env, error_name(code), cause)
        if isinstance(ex, SageMakerRequestInvalidError):
            cause = error_cause(ex.report, "ValidationException", 400, str(uuid.uuid4()))
            return self._task_failed_event(env, GENERIC_ERROR, cause)
        return super()._from_error(env=env, ex=ex)


# -- definition-time validation (static parameters) ---------------------------------------

_SCALAR_TYPES: Final[dict[str, tuple[str, tuple[type, ...]]]] = {
    "string": ("STRING", (str,)),
    "integer": ("INTEGER", (int,)),
    "long": ("INTEGER", (int,)),
    "float": ("NUMBER", (int, float)),
    "double": ("NUMBER", (int, float)),
    "boolean": ("BOOLEAN", (bool,)),
}


def static_parameter_problems(action: str, parameters: dict[str, Any]) -> list[str]:
    """Problems Step Functions reports at CreateStateMachine for a SageMaker task's parameters.

    Field names are checked at every depth; values are checked where they are literals (not
    ``.$`` paths and not JSONata ``{% %}`` expressions). Each problem is phrased as AWS's
    SCHEMA_VALIDATION_FAILED message without the location.
    """
    problems: list[str] = []
    _check_structure(parameters, operation_model(action).input_shape, problems)
    return problems


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("{%") and value.strip().endswith("%}")


def _check_structure(value: dict[str, Any], shape: StructureShape, problems: list[str]) -> None:
    for key, member_value in value.items():
        name = key[:-2] if key.endswith(".$") else key
        if name not in shape.members:
            problems.append(f'The field "{name}" is not supported by Step Functions')
            continue
        if key.endswith(".$"):
            continue
        _check_value(name, member_value, shape.members[name], problems)


def _check_value(name: str, value: Any, shape: Shape, problems: list[str]) -> None:
    if _is_expression(value):
        return
    if isinstance(shape, StructureShape):
        if isinstance(value, dict):
            _check_structure(value, shape, problems)
        else:
            problems.append(f'The value for the field "{name}" must be an OBJECT')
    elif isinstance(shape, ListShape):
        if isinstance(value, list):
            for item in value:
                _check_value(name, item, shape.member, problems)
        else:
            problems.append(f'The value for the field "{name}" must be an ARRAY')
    elif isinstance(shape, MapShape):
        if isinstance(value, dict):
            for key, item in value.items():
                if not key.endswith(".$"):
                    _check_value(key, item, shape.value, problems)
        else:
            problems.append(f'The value for the field "{name}" must be an OBJECT')
    elif shape.type_name in _SCALAR_TYPES:
        label, python_types = _SCALAR_TYPES[shape.type_name]
        is_bool = isinstance(value, bool)
        if not isinstance(value, python_types) or (is_bool and shape.type_name != "boolean"):
            problems.append(f'The value for the field "{name}" must be a {label}')


_SAGEMAKER_RESOURCE = re.compile(r"^arn:[^:]+:states:::sagemaker:(?P<action>[A-Za-z]+)(?:\.[A-Za-z0-9:]+)?$")


def definition_problems(definition: dict[str, Any]) -> list[str]:
    """SCHEMA_VALIDATION_FAILED messages for the SageMaker tasks of a state machine definition."""
    problems: list[str] = []
    _collect_problems(definition.get("States", {}), "/States", problems)
    return problems


def _collect_problems(states: dict[str, Any], location: str, problems: list[str]) -> None:
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        here = f"{location}/{name}"
        for index, branch in enumerate(state.get("Branches", [])):
            _collect_problems(branch.get("States", {}), f"{here}/Branches/{index}/States", problems)
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                _collect_problems(state[key].get("States", {}), f"{here}/{key}/States", problems)
        match = _SAGEMAKER_RESOURCE.match(str(state.get("Resource", "")))
        if state.get("Type") != "Task" or match is None or match["action"] not in SUPPORTED_ACTIONS:
            continue
        field = "Parameters" if "Parameters" in state else "Arguments"
        parameters = state.get(field)
        if isinstance(parameters, dict):
            problems.extend(
                f"SCHEMA_VALIDATION_FAILED: {problem} at {here}/{field}"
                for problem in static_parameter_problems(match["action"], parameters)
            )
