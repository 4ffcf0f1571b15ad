"""Step Functions' optimized SageMaker integration, for moto's interpreter.

moto 5.2.5 lists ``sagemaker`` as unsupported, so ``arn:aws:states:::sagemaker:*`` tasks fail
before Retry and Catch apply. ``StateTaskServiceSageMaker`` behaves as AWS documents for this
integration: request-response for the supported APIs, ``.sync`` for jobs (the output is the
job's Describe response), no ``.waitForTaskToken``. Errors are named as AWS names them:
``SageMaker.<ModeledError>Exception`` for the errors SageMaker's API model declares,
``SageMaker.AmazonSageMakerException`` for the rest (validation, throttling), and
``States.TaskFailed`` with the Describe response as Cause when a ``.sync`` job fails.

Only the ``sagemaker-optimized-integration`` patch (``stepml.local.stepfunctions.tasks``) imports
this module (it reaches into moto's internals).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.model import OperationModel
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

from stepml.local import botocore_models
from stepml.local.stepfunctions.errors import optimized_error_name
from stepml.local.stepfunctions.integrations import OPTIMIZED
from stepml.local.stepfunctions.serialisation import datetimes_to_epoch_millis


@dataclass(frozen=True)
class SyncJob:
    """How ``.sync`` follows a job: the Describe API, the name parameter, the status field."""

    describe: str
    name_parameter: str
    status_field: str


#: The APIs of the optimized integration, keyed by the ASL's action name (the table of
#: ``stepml.local.stepfunctions.integrations``).
SUPPORTED_ACTIONS: Final[dict[str, str]] = {
    action: api.operation for action, api in OPTIMIZED["sagemaker"].apis.items()
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
GENERIC_ERROR: Final[str] = optimized_error_name("sagemaker", "ValidationException")


def operation_model(action: str) -> OperationModel:
    """The botocore operation for an ASL action name such as ``createTrainingJob``."""
    return botocore_models.operation_model("sagemaker", SUPPORTED_ACTIONS[action])


def error_name(code: str) -> str:
    """The Step Functions error name for a SageMaker API error code.

    Step Functions names errors after the SDK exception: the errors SageMaker's API model
    declares (ResourceInUse, ResourceLimitExceeded, ResourceNotFound, ConflictException) get
    their own ``...Exception``; every other code is ``AmazonSageMakerException``.
    """
    return optimized_error_name("sagemaker", code)


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
    unknown fields, so a misspelt parameter would otherwise pass silently. The check is the
    local cloud's one (``botocore_models.request_problems``): types, required and unknown
    members, then enums, lengths, ranges and patterns, worded as SageMaker words them.
    """
    operation = SUPPORTED_ACTIONS[action]
    problems = botocore_models.request_problems("sagemaker", operation, parameters)
    if problems:
        raise SageMakerRequestInvalidError(action, botocore_models.validation_message(operation, problems))


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` for moto's interpreter."""

    def __init__(self) -> None:
        super().__init__(supported_integration_patterns={ResourceCondition.Sync})

    # -- definition time ---------------------------------------------------------------

    def _get_supported_parameters(self) -> set[str] | None:
        api = OPTIMIZED["sagemaker"].apis.get(self.resource.api_action)
        return None if api is None else set(api.fields)

    def _validate_service_integration_is_supported(self) -> None:
        # The definition check refuses these first, in AWS's words; this keeps moto's parser consistent.
        super()._validate_service_integration_is_supported()
        api = OPTIMIZED["sagemaker"].apis[self.resource.api_action]
        if str(self.resource.condition or "") not in api.patterns:
            raise ValueError(f"The resource provided {self.resource.resource_arn} is not recognized.")

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
