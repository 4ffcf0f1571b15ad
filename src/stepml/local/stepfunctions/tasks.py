"""Patches to how moto's Step Functions interpreter runs service tasks.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): ``.sync`` for
integrations without a callback endpoint, the SageMaker optimized integration, service task
timestamps, and the error names of aws-sdk and Lambda tasks. moto is imported inside each
``install`` only, so registering the patches loads no moto.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

from stepml.local.patching import Patch, register
from stepml.local.stepfunctions.errors import lambda_error_name, sdk_error_name, sdk_error_prefix
from stepml.local.stepfunctions.serialisation import datetimes_to_epoch_millis, datetimes_to_iso8601

#: Seconds between two polls of a ``.sync`` job (Glue job run, SageMaker job) locally.
SYNC_POLL_SECONDS_ENV = "STEPML_LOCAL_SYNC_POLL_SECONDS"
DEFAULT_SYNC_POLL_SECONDS = 0.2

_TESTS = "tests/unit/stepfunctions/test_interpreter.py::"
_SAGEMAKER_TESTS = "tests/unit/stepfunctions/test_sagemaker.py::"


class SyncPollSecondsError(ValueError):
    """``STEPML_LOCAL_SYNC_POLL_SECONDS`` is not a positive number of seconds."""


class _SyncAbandonedError(RuntimeError):
    """The task stopped running (timeout, execution stopped) before its job finished."""


def sync_poll_seconds() -> float:
    """The ``.sync`` poll interval from ``STEPML_LOCAL_SYNC_POLL_SECONDS`` (default 0.2 s)."""
    raw = os.environ.get(SYNC_POLL_SECONDS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_SYNC_POLL_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise SyncPollSecondsError(f"{SYNC_POLL_SECONDS_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def _install_sync_without_callback_endpoint(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_integration_pattern

    @functools.wraps(original)
    def _eval_integration_pattern(self, env, resource_runtime_part, normalised_parameters, state_credentials):  # type: ignore[no-untyped-def]
        if ResourceCondition.WaitForTaskToken in self._supported_integration_patterns:
            # These integrations have a callback endpoint; moto's own code path works for them.
            return original(self, env, resource_runtime_part, normalised_parameters, state_credentials)
        # The request-response output stays on the stack: the resolver builders read it.
        build = (
            self._build_sync_resolver
            if self.resource.condition == ResourceCondition.Sync
            else self._build_sync2_resolver
        )
        resolve = build(
            env=env,
            resource_runtime_part=resource_runtime_part,
            normalised_parameters=normalised_parameters,
            state_credentials=state_credentials,
        )
        while env.is_running():
            outcome = resolve()
            if outcome is not None:
                env.stack.append(outcome)
                return
            time.sleep(sync_poll_seconds())
        # The state's timeout or the execution's stop is reported by the caller; do not record a success.
        raise _SyncAbandonedError(f"{self.resource.resource_arn}: the task stopped before the job finished")

    patch.replace(StateTaskServiceCallback, "_eval_integration_pattern", _eval_integration_pattern)


def _install_sagemaker_service_integration(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_factory,
    )

    from stepml.local.stepfunctions.sagemaker_integration import StateTaskServiceSageMaker

    original = state_task_factory.state_task_service_for

    @functools.wraps(original)
    def state_task_service_for(service_name: str):  # type: ignore[no-untyped-def]
        if service_name == "sagemaker":
            return StateTaskServiceSageMaker()
        return original(service_name)

    patch.replace(state_task_factory, "state_task_service_for", state_task_service_for)
    patch.replace(state_task_service_factory, "state_task_service_for", state_task_service_for)


def _install_service_task_timestamps(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    def converting(original: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(original)
        def _after_eval_execution(self, env, *args, **kwargs):  # type: ignore[no-untyped-def]
            if env.stack:
                convert = (
                    datetimes_to_iso8601 if isinstance(self, StateTaskServiceAwsSdk) else datetimes_to_epoch_millis
                )
                env.stack[-1] = convert(env.stack[-1])
            return original(self, env, *args, **kwargs)

        return _after_eval_execution

    # The callback class records TaskSubmitted and then runs .sync before calling the base.
    for cls in (StateTaskService, StateTaskServiceCallback):
        patch.replace(cls, "_after_eval_execution", converting(cls.__dict__["_after_eval_execution"]))


def read_streaming_bodies(response: object) -> object:
    """``response`` with every streamed payload (S3 GetObject's ``Body``) read into its UTF-8 text."""
    from botocore.response import StreamingBody

    if isinstance(response, StreamingBody):
        content = response.read()
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A task result is JSON text; bytes that are not UTF-8 cannot be carried in it.
            raise StreamingBodyError(f"the response's body ({len(content)} bytes) is not UTF-8 text") from exc
    if isinstance(response, dict):
        return {key: read_streaming_bodies(value) for key, value in response.items()}
    if isinstance(response, list):
        return [read_streaming_bodies(value) for value in response]
    return response


class StreamingBodyError(ValueError):
    """An aws-sdk task's streamed response could not become JSON text."""


def _install_aws_sdk_streaming_bodies(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    @functools.wraps(original)
    def _eval_service_task(self, env, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, env, *args, **kwargs)
        if env.stack:
            env.stack[-1] = read_streaming_bodies(env.stack[-1])

    patch.replace(StateTaskServiceAwsSdk, "_eval_service_task", _eval_service_task)


def _install_aws_sdk_error_names(patch: Patch) -> None:
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._from_error

    @functools.wraps(original)
    def _from_error(self, env, ex):  # type: ignore[no-untyped-def]
        if not isinstance(ex, ClientError):
            return original(self, env, ex)
        service = self.resource.api_name
        error = ex.response.get("Error", {})
        metadata = ex.response.get("ResponseMetadata", {})
        details = [
            f"Service: {sdk_error_prefix(service)}",
            f"Status Code: {metadata.get('HTTPStatusCode', 400)}",
            f"Request ID: {metadata.get('RequestId', '')}",
        ]
        cause = f"{error.get('Message', '')} ({', '.join(details)})"
        return self._get_task_failure_event(env=env, error=sdk_error_name(service, error.get("Code", "")), cause=cause)

    patch.replace(StateTaskServiceAwsSdk, "_from_error", _from_error)


def _install_lambda_service_error_names(patch: Patch) -> None:
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )

    original_cause = StateTaskServiceLambda._error_cause_from_client_error

    def _error_cause_from_client_error(client_error: ClientError) -> tuple[str, str]:
        _, cause = original_cause(client_error)
        return lambda_error_name(client_error.response["Error"]["Code"]), cause

    patch.replace(
        StateTaskServiceLambda, "_error_cause_from_client_error", staticmethod(_error_cause_from_client_error)
    )

    task_class = state_task_lambda.StateTaskLambda
    original_from_error = task_class._from_error

    @functools.wraps(original_from_error)
    def _from_error(self, env, ex):  # type: ignore[no-untyped-def]
        event = original_from_error(self, env, ex)
        if isinstance(ex, ClientError):
            error, cause = _error_cause_from_client_error(ex)
            details = event.event_details["lambdaFunctionFailedEventDetails"]
            details["error"], details["cause"] = error, cause
            event.error_name = CustomErrorName(error)
        return event

    patch.replace(task_class, "_from_error", _from_error)


register(
    Patch(
        name="sync-without-callback-endpoint",
        why=(
            "Every `.sync` task of an integration that cannot wait for a task token (glue:startJobRun.sync) "
            "ended in States.Runtime: moto's StateTaskServiceCallback._eval_integration_pattern calls "
            "`callback_endpoint.interrupt_all()` in a finally block although no callback endpoint exists for "
            "it. The patch polls the job without one, every STEPML_LOCAL_SYNC_POLL_SECONDS (default 0.2 s)."
        ),
        test=_TESTS + "test_glue_sync_task_waits_for_the_job_run_and_outputs_it",
        install=_install_sync_without_callback_endpoint,
    )
)
register(
    Patch(
        name="sagemaker-optimized-integration",
        why=(
            "moto lists `sagemaker` as an unsupported service integration, so "
            "`arn:aws:states:::sagemaker:createTrainingJob.sync` raised before Retry and Catch applied "
            "(States.Runtime) and no SageMaker error could be caught by name. The patch adds the integration "
            "(stepml.local.stepfunctions.sagemaker_integration) with the APIs and patterns AWS documents: "
            "request-response, `.sync` polling Describe{Training,Processing,Transform,...}Job until Completed "
            "(output: the Describe response) or Failed/Stopped (States.TaskFailed, Cause: the Describe response), "
            "errors named SageMaker.<ModeledError>Exception or SageMaker.AmazonSageMakerException, and request "
            "parameters validated against botocore's model (moto's client skips validation and moto ignores "
            "unknown fields)."
        ),
        test=_SAGEMAKER_TESTS + "test_training_sync_polls_until_completed_and_outputs_the_describe_response",
        install=_install_sagemaker_service_integration,
    )
)
register(
    Patch(
        name="service-task-timestamps",
        why=(
            "Service task outputs kept the datetimes of the boto response (Glue StartedOn, SageMaker "
            "TrainingStartTime), so DescribeExecution failed to serialise the execution output (HTTP 500) and "
            "the history showed Python isoformat text. Step Functions' optimized integrations return such "
            "fields as epoch milliseconds (numbers); the patch converts them, at any depth. aws-sdk integrations "
            "get ISO-8601 UTC text instead (not verified against AWS; this app selects no aws-sdk timestamps)."
        ),
        test=_TESTS + "test_sync_task_timestamps_are_epoch_milliseconds_in_output_and_history",
        install=_install_service_task_timestamps,
    )
)
register(
    Patch(
        name="aws-sdk-streaming-bodies",
        why=(
            "moto left an aws-sdk task's streamed payload (`aws-sdk:s3:getObject`'s `Body`) as botocore's stream "
            "object, so the task's result held its Python repr (`<botocore.response.StreamingBody ...>`) instead "
            "of the object's content. Step Functions returns the body as text, which a definition then parses "
            "with States.StringToJson; the patch reads the stream into its UTF-8 text and fails the task when "
            "the bytes are not text (States.Runtime; that failure is not verified against AWS)."
        ),
        test=_TESTS + "test_aws_sdk_get_object_body_is_the_objects_text",
        install=_install_aws_sdk_streaming_bodies,
    )
)
register(
    Patch(
        name="aws-sdk-error-names",
        why=(
            "moto named an aws-sdk task's failure after the lower-case service (`sagemaker.sagemakerException`, "
            "`sagemaker.ResourceNotFoundException`), so no Retry or Catch written for AWS matched. Step Functions "
            "names it `ServiceName.ErrorName` in PascalCase: the modeled error with an Exception suffix "
            "(`SageMaker.ResourceNotFoundException`), any other code the SDK's generic `SageMaker.SageMakerException`."
        ),
        test=_TESTS + "test_aws_sdk_errors_are_named_as_step_functions_names_them",
        install=_install_aws_sdk_error_names,
    )
)
register(
    Patch(
        name="lambda-service-error-names",
        why=(
            "moto names every Lambda service error of a `lambda:invoke` Task `Lambda.<Code>` and of a Task "
            "whose Resource is the function ARN plain `Exception`, so an AccessDeniedException (the state "
            "machine role without lambda:InvokeFunction) matched no Retry or Catch that AWS's names match. "
            "Step Functions names an error Invoke declares `Lambda.<Code>` (Lambda.TooManyRequestsException) and "
            "any other `Lambda.AWSLambdaException`, with the cause `<message> (Service: AWSLambda; Status Code: "
            "...; Error Code: ...; Request ID: ...; Proxy: null)`."
        ),
        test=_TESTS + "test_lambda_service_errors_are_named_as_step_functions_names_them",
        install=_install_lambda_service_error_names,
    )
)
