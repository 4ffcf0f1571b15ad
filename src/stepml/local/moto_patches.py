"""Every patch stepml applies to moto, named and explained.

moto is pinned exactly (pyproject.toml) because these patches reach into its internals;
``apply()`` checks the version first so an upgrade fails loudly instead of half-working.
Each patch fixes a gap where moto behaves differently from AWS for something this app uses,
and each has a test in tests/unit/test_moto_patches.py that fails without it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import moto

PINNED_MOTO_VERSION = "5.2.5"

#: Seconds between two polls of a ``.sync`` job (Glue job run, SageMaker job) locally.
SYNC_POLL_SECONDS_ENV = "STEPML_LOCAL_SYNC_POLL_SECONDS"
DEFAULT_SYNC_POLL_SECONDS = 0.2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MotoPatchError(RuntimeError):
    """The patches cannot apply (another moto or jsonpath-ng) or their setting is invalid."""


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    apply: Callable[[], None]


def _bool_condition_on_secure_transport() -> None:
    from moto.iam.policy_conditions import TrustCondition

    original = TrustCondition.verify_condition

    @functools.wraps(original)
    def verify_condition(self, actual_values):  # type: ignore[no-untyped-def]
        if self._condition != "Bool":
            return original(self, actual_values)
        for key, expected in zip(self._expected_value_source, self._expected_value, strict=True):
            if key.lower() != "aws:securetransport":
                continue  # other Bool keys: keep moto's behaviour (not evaluated)
            allowed = [expected] if isinstance(expected, str) else expected
            if "true" not in [str(value).lower() for value in allowed]:
                return False
        return True

    TrustCondition.verify_condition = verify_condition


def _statements_whose_condition_fails_do_not_apply() -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    @functools.wraps(original)
    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):  # type: ignore[no-untyped-def]
        if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
            return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted


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
        raise MotoPatchError(f"{SYNC_POLL_SECONDS_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def datetimes_to_epoch_millis(value: Any) -> Any:
    """``value`` with every datetime (at any depth) replaced by epoch milliseconds."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {key: datetimes_to_epoch_millis(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [datetimes_to_epoch_millis(item) for item in value]
    return value


def datetimes_to_iso8601(value: Any) -> Any:
    """``value`` with every datetime (at any depth) replaced by ISO-8601 UTC text."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: datetimes_to_iso8601(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [datetimes_to_iso8601(item) for item in value]
    return value


class _SyncAbandonedError(RuntimeError):
    """The task stopped running (timeout, execution stopped) before its job finished."""


def _sync_without_callback_endpoint() -> None:
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

    StateTaskServiceCallback._eval_integration_pattern = _eval_integration_pattern


def _sagemaker_service_integration() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_factory,
    )

    from stepml.local.sfn_sagemaker import StateTaskServiceSageMaker

    original = state_task_factory.state_task_service_for

    @functools.wraps(original)
    def state_task_service_for(service_name: str):  # type: ignore[no-untyped-def]
        if service_name == "sagemaker":
            return StateTaskServiceSageMaker()
        return original(service_name)

    state_task_factory.state_task_service_for = state_task_service_for
    state_task_service_factory.state_task_service_for = state_task_service_for


def _sagemaker_parameters_checked_at_definition() -> None:
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    from stepml.local.sfn_sagemaker import definition_problems

    original = StepFunctionsParserBackend._validate_definition

    @functools.wraps(original)
    def _validate_definition(definition: str) -> None:
        original(definition=definition)
        problems = definition_problems(json.loads(definition))
        if problems:
            raise InvalidDefinition(message=f"Invalid State Machine Definition: '{', '.join(problems)}'")

    StepFunctionsParserBackend._validate_definition = staticmethod(_validate_definition)


def _jsonata_evaluator() -> None:
    import jsonata
    from moto.stepfunctions.parser.api import EvaluationFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringJSONata
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
            # Plain JSON values, as moto's (absent) JVM bridge would return: no JSONata
            # sequences or functions leak into the interpreter.
            return json.loads(json.dumps(result))
        except Exception as exc:  # jsonata-python raises JException, and TypeError for non-JSON results
            raise moto_jsonata.JSONataException("States.QueryEvaluationError", str(exc)) from exc

    moto_jsonata._eval_jsonata = evaluate

    original_eval_body = StringJSONata._eval_body

    @functools.wraps(original_eval_body)
    def _eval_body(self, env):  # type: ignore[no-untyped-def]
        try:
            original_eval_body(self, env)
        except moto_jsonata.JSONataException as exc:
            # As Step Functions reports it: a catchable States.QueryEvaluationError naming the expression.
            error = StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError)
            cause = f"An error occurred while evaluating the expression '{self.expression}': {exc.details}"
            details = EvaluationFailedEventDetails(error=error.error_name, cause=cause)
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=error,
                    event_type=HistoryEventType.EvaluationFailed,
                    event_details=EventDetails(evaluationFailedEventDetails=details),
                )
            ) from exc

    StringJSONata._eval_body = _eval_body


def _jsonata_string_variables_escaped() -> None:
    from moto.stepfunctions.parser.asl.eval import states, variable_store
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    def encode_jsonata_variable_declarations(bindings: dict[str, Any]) -> str:
        # JSON text is a valid JSONata literal, strings included (quotes and backslashes escaped).
        return "".join(f"{name}:={to_json_str(value, separators=(',', ':'))};" for name, value in bindings.items())

    for module in (moto_jsonata, states, variable_store):
        module.encode_jsonata_variable_declarations = encode_jsonata_variable_declarations


def _service_task_timestamps() -> None:
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
        cls._after_eval_execution = converting(cls.__dict__["_after_eval_execution"])


_FILTER = re.compile(r"\[\s*\?")


def _jsonpath_filters_yield_arrays() -> None:
    from jsonpath_ng.ext import parse
    from moto.stepfunctions.parser.asl.utils import json_path

    try:
        parse("$.a[?(@.b == 1 && @.c == 2 || @.d == 3)]")
    except Exception as exc:
        raise MotoPatchError(
            "the installed jsonpath-ng cannot parse && / || in JSONPath filters; Step Functions can. "
            "Install jsonpath-ng>=1.16"
        ) from exc

    original = json_path._contains_slice_or_wildcard_array

    @functools.wraps(original)
    def _contains_slice_or_wildcard_array(path: str) -> bool:
        return original(path) or bool(_FILTER.search(path))

    json_path._contains_slice_or_wildcard_array = _contains_slice_or_wildcard_array


#: aws-sdk integrations this app calls, by the lower-case name in the Resource, and the PascalCase
#: service name Step Functions puts in front of their errors (``SageMaker.ResourceNotFoundException``).
AWS_SDK_ERROR_SERVICE_NAMES = {"sagemaker": "SageMaker"}


def _aws_sdk_error_service_names() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    names = state_task_service_aws_sdk._SERVICE_ERROR_NAMES
    for lower, pascal in AWS_SDK_ERROR_SERVICE_NAMES.items():
        if names.get(lower, pascal) != pascal:
            raise MotoPatchError(f"moto names aws-sdk {lower} errors {names[lower]!r}, expected {pascal!r}")
        names[lower] = pascal


def _interpreter_errors_have_codes() -> None:
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser import api

    for error in vars(api).values():
        if not (isinstance(error, type) and issubclass(error, AWSError)) or error.TYPE is not None:
            continue
        code = error.__dict__.get("code")
        if not isinstance(code, str) or "__init__" in error.__dict__:
            continue  # InvalidToken passes its code itself
        error.TYPE = code
        error.STATUS = error.__dict__.get("status_code", 400)
        original_init = error.__init__

        @functools.wraps(original_init)
        def __init__(self, message: str | None = None, *args, __init=original_init, __code=code, **kwargs):  # type: ignore[no-untyped-def]
            # moto raises some of these without a message (TaskTimedOut(), TaskDoesNotExist()).
            __init(self, message if message is not None else __code, *args, **kwargs)

        error.__init__ = __init__


def _task_token_calls_skip_starting_executions() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend._get_executions

    @functools.wraps(original)
    def _get_executions(self, execution_status=None):  # type: ignore[no-untyped-def]
        # An execution's environment exists once its worker thread has parsed the definition;
        # until then it holds no task token, so it cannot answer a SendTask* call.
        return [
            execution
            for execution in original(self, execution_status)
            if execution.exec_worker is not None and execution.exec_worker.env is not None
        ]

    StepFunctionsParserBackend._get_executions = _get_executions


def _stop_ends_waiting_tasks() -> None:
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker.stop

    @functools.wraps(original)
    def stop(self, stop_date, error, cause):  # type: ignore[no-untyped-def]
        env = self.env
        original(self, stop_date=stop_date, error=error, cause=cause)
        if env is None:
            return
        # Step Functions records nothing after StopExecution but ExecutionAborted.
        manager = env.event_manager
        add_event = manager.add_event

        def add_event_until_aborted(context, event_type, *args, **kwargs):  # type: ignore[no-untyped-def]
            if event_type != HistoryEventType.ExecutionAborted:
                return None
            return add_event(context, event_type, *args, **kwargs)

        manager.add_event = add_event_until_aborted
        # ...and an aborted execution stays ABORTED: the unwinding task's error must not fail it.
        env.set_error = lambda error: None
        env.set_timed_out = lambda: None
        # Wake the tasks that wait for a task token; they unwind and the execution ends ABORTED.
        for endpoint in list(env.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()

    ExecutionWorker.stop = stop


_DYNAMODB_WRITE_LOCK = threading.RLock()


def _dynamodb_writes_are_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            with _DYNAMODB_WRITE_LOCK:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))


PATCHES: tuple[Patch, ...] = (
    Patch(
        name="dynamodb-writes-atomic",
        why=(
            "moto checks a ConditionExpression and then writes without a lock, so under the threaded "
            "server two concurrent conditional writes can both succeed. DynamoDB makes each conditional "
            "write atomic; the approval API's exactly-once decision and ResolveRun's claim rely on it."
        ),
        apply=_dynamodb_writes_are_atomic,
    ),
    Patch(
        name="bool-condition-secure-transport",
        why=(
            "moto skips condition operators it does not know, so a statement with "
            "`Bool: {aws:SecureTransport: false}` always applies: the template's TLS-only bucket "
            "policy (Deny when the request is not TLS) denied every PutObject. The patch evaluates "
            "aws:SecureTransport as true, since the local endpoint stands in for AWS's TLS endpoint."
        ),
        apply=_bool_condition_on_secure_transport,
    ),
    Patch(
        name="failed-condition-means-not-applicable",
        why=(
            "moto answers DENIED when a statement's Condition does not hold, even for a Deny "
            "statement, so a Deny-unless-TLS statement denied TLS requests too. In AWS a statement "
            "whose condition does not hold does not apply (NEUTRAL)."
        ),
        apply=_statements_whose_condition_fails_do_not_apply,
    ),
    Patch(
        name="interpreter-errors-have-codes",
        why=(
            "The errors of moto's Step Functions interpreter (moto.stepfunctions.parser.api: InvalidDefinition, "
            "TaskTimedOut, TaskDoesNotExist, ...) declare their code in an attribute moto's AWSError does not "
            "read, so clients got an empty error code, and TaskTimedOut()/TaskDoesNotExist(), raised without a "
            "message, crashed into HTTP 500. The patch gives them their codes and a default message, so "
            "CreateStateMachine fails with InvalidDefinition, and TaskTimedOut/TaskDoesNotExist reach the caller."
        ),
        apply=_interpreter_errors_have_codes,
    ),
    Patch(
        name="task-token-calls-skip-starting-executions",
        why=(
            "SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat look for the token in every execution's "
            "environment, which moto creates only after the execution's thread has parsed the definition; an "
            "approval answered while another execution was starting failed with HTTP 500 (AttributeError). "
            "The patch skips executions that have no environment yet (they hold no token)."
        ),
        apply=_task_token_calls_skip_starting_executions,
    ),
    Patch(
        name="stop-ends-waiting-tasks",
        why=(
            "StopExecution only flagged moto's interpreter: a task waiting for a task token "
            "(.waitForTaskToken) went on waiting until its TimeoutSeconds, so the execution stayed RUNNING "
            "(an approval's for days) and then recorded the task as timed out. In AWS the execution is ABORTED "
            "at once and its history ends with ExecutionAborted. The patch wakes the waiting tasks, drops "
            "every event but ExecutionAborted once the execution is stopped, and keeps the unwinding task's "
            "error from turning ABORTED into FAILED."
        ),
        apply=_stop_ends_waiting_tasks,
    ),
    Patch(
        name="sync-without-callback-endpoint",
        why=(
            "Every `.sync` task of an integration that cannot wait for a task token (glue:startJobRun.sync) "
            "ended in States.Runtime: moto's StateTaskServiceCallback._eval_integration_pattern calls "
            "`callback_endpoint.interrupt_all()` in a finally block although no callback endpoint exists for "
            "it. The patch polls the job without one, every STEPML_LOCAL_SYNC_POLL_SECONDS (default 0.2 s)."
        ),
        apply=_sync_without_callback_endpoint,
    ),
    Patch(
        name="sagemaker-optimized-integration",
        why=(
            "moto lists `sagemaker` as an unsupported service integration, so "
            "`arn:aws:states:::sagemaker:createTrainingJob.sync` raised before Retry and Catch applied "
            "(States.Runtime) and no SageMaker error could be caught by name. The patch adds the integration "
            "(stepml.local.sfn_sagemaker) with the APIs and patterns AWS documents: request-response, `.sync` "
            "polling Describe{Training,Processing,Transform,...}Job until Completed (output: the Describe "
            "response) or Failed/Stopped (States.TaskFailed, Cause: the Describe response), errors named "
            "SageMaker.<ModeledError>Exception or SageMaker.AmazonSageMakerException, and request parameters "
            "validated against botocore's model (moto's client skips validation and moto ignores unknown fields)."
        ),
        apply=_sagemaker_service_integration,
    ),
    Patch(
        name="sagemaker-parameters-checked-at-definition",
        why=(
            "Step Functions rejects CreateStateMachine/UpdateStateMachine when a SageMaker task's Parameters "
            "(or Arguments) name a field the API does not have or give a literal of the wrong type "
            "(SCHEMA_VALIDATION_FAILED); moto accepted any field, so a typo made in Workflow Studio only "
            "showed up after deployment. The patch checks static fields against botocore's SageMaker model."
        ),
        apply=_sagemaker_parameters_checked_at_definition,
    ),
    Patch(
        name="jsonata-evaluator",
        why=(
            "moto's JSONata hook `_eval_jsonata` (parser/asl/jsonata/jsonata.py) is None (moto issue 10105), "
            "so every JSONata state machine, and every JSONPath `$variable` reference (evaluated by the same "
            "hook), failed with States.Runtime. The patch evaluates expressions with jsonata-python and reports "
            "an expression that fails as States.QueryEvaluationError naming the expression, as AWS does."
        ),
        apply=_jsonata_evaluator,
    ),
    Patch(
        name="jsonata-string-variables-escaped",
        why=(
            'moto splices string variables into JSONata as `"value"` without escaping, so a variable or '
            "$states value holding a quote or backslash (an error Cause, a JSON document) broke the expression "
            "(States.Runtime). The patch encodes every value as JSON text, which is a valid JSONata literal."
        ),
        apply=_jsonata_string_variables_escaped,
    ),
    Patch(
        name="service-task-timestamps",
        why=(
            "Service task outputs kept the datetimes of the boto response (Glue StartedOn, SageMaker "
            "TrainingStartTime), so DescribeExecution failed to serialise the execution output (HTTP 500) and "
            "the history showed Python isoformat text. Step Functions' optimized integrations return such "
            "fields as epoch milliseconds (numbers); the patch converts them, at any depth. aws-sdk integrations "
            "get ISO-8601 UTC text instead (not verified against AWS; this app selects no aws-sdk timestamps)."
        ),
        apply=_service_task_timestamps,
    ),
    Patch(
        name="aws-sdk-error-service-names",
        why=(
            "An aws-sdk task's error is named `ServiceName.ErrorName`, both PascalCase "
            "(`SageMaker.SageMakerException` for an error the API model does not declare). moto knows the "
            "PascalCase name of DynamoDB and Step Functions only and used the Resource's lower-case name for "
            "the rest, so `arn:aws:states:::aws-sdk:sagemaker:deleteEndpoint` failed with "
            "`sagemaker.sagemakerException`, which no Retry or Catch naming `SageMaker.` errors matched: the "
            "local cloud never retried a throttled aws-sdk SageMaker call. The patch adds SageMaker's name."
        ),
        apply=_aws_sdk_error_service_names,
    ),
    Patch(
        name="jsonpath-filter-results-are-arrays",
        why=(
            "A JSONPath filter that matches nothing (`$.items[?(@.n > 5)]`) gives [] in Step Functions; moto "
            "raised 'could not be found' (States.Runtime) because it only returns [] for wildcards and slices "
            "(moto issue 10078). The patch treats filters the same way. The issue's other half, && and || in "
            "filters, is handled by jsonpath-ng>=1.16; apply() fails if the installed jsonpath-ng cannot parse them."
        ),
        apply=_jsonpath_filters_yield_arrays,
    ),
)

_applied = False


def apply() -> None:
    """Apply every patch once; raise ``MotoPatchError`` on an unexpected moto version."""
    global _applied
    if _applied:
        return
    if moto.__version__ != PINNED_MOTO_VERSION:
        raise MotoPatchError(
            f"stepml's moto patches are for moto {PINNED_MOTO_VERSION}, found {moto.__version__}; "
            "reinstall with `make install`"
        )
    for patch in PATCHES:
        patch.apply()
    _applied = True
