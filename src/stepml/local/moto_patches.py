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


def _integrations_checked_at_definition() -> None:
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    from stepml.local.sfn_integrations import definition_problems, error_name_problems, problems_message

    original = StepFunctionsParserBackend._validate_definition

    @functools.wraps(original)
    def _validate_definition(definition: str) -> None:
        try:
            parsed = json.loads(definition)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            # Before moto's parser, whose own (differently worded) refusal of an unknown resource would win.
            problems = definition_problems(parsed) or error_name_problems(parsed)
            if problems:
                raise InvalidDefinition(message=problems_message(problems))
        original(definition=definition)

    StepFunctionsParserBackend._validate_definition = staticmethod(_validate_definition)


def _validate_state_machine_definition_answers() -> None:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    from stepml.local.sfn_integrations import SCHEMA_VALIDATION_FAILED, definition_problems, error_name_problems

    def validate_state_machine_definition(self):  # type: ignore[no-untyped-def]
        definition = self._get_param("definition") or ""
        diagnostics: list[dict[str, str]] = []
        try:
            parsed = json.loads(definition)
        except ValueError as exc:
            parsed = None
            diagnostics.append({"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": str(exc)})
        if isinstance(parsed, dict):
            for problem in definition_problems(parsed) + error_name_problems(parsed):
                diagnostics.append(
                    {
                        "severity": "ERROR",
                        "code": problem.code,
                        "message": problem.message,
                        "location": problem.location,
                    }
                )
            if not diagnostics:
                try:
                    StepFunctionsParserBackend._validate_definition(definition=definition)
                except InvalidDefinition as exc:
                    diagnostics.append({"severity": "ERROR", "code": SCHEMA_VALIDATION_FAILED, "message": exc.message})
        result = "FAIL" if diagnostics else "OK"
        # maxResults: default and maximum 100, as AWS documents; truncated says some were left out.
        limit = min(int(self._get_param("maxResults") or 100), 100) or 100
        return ActionResult(
            {"result": result, "diagnostics": diagnostics[:limit], "truncated": len(diagnostics) > limit}
        )

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition


def _aws_sdk_error_names() -> None:
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    from stepml.local.sfn_integrations import sdk_error_name, sdk_error_prefix

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

    StateTaskServiceAwsSdk._from_error = _from_error


def _ses_account_and_sandbox() -> None:
    from moto.ses.exceptions import MessageRejectedError
    from moto.sesv2 import urls as sesv2_urls
    from moto.sesv2.models import SESV2Backend
    from moto.sesv2.responses import SESV2Response

    from stepml.local.account_defaults import ses_account

    def get_account(self):  # type: ignore[no-untyped-def]
        return json.dumps(ses_account(self.sesv2_backend).response())

    def refuse_unverified_recipients(backend: Any, recipients: list[str]) -> None:
        if ses_account(backend).production_access_enabled:
            return
        unverified = [r for r in recipients if not backend.core_backend._is_verified_address(r)]
        if unverified:
            raise MessageRejectedError(
                "Email address is not verified. The following identities failed the check in region "
                f"{backend.region_name.upper()}: {', '.join(unverified)}"
            )

    original_send_email = SESV2Backend.send_email
    original_send_raw_email = SESV2Backend.send_raw_email

    @functools.wraps(original_send_email)
    def send_email(self, source, destinations, subject, body):  # type: ignore[no-untyped-def]
        recipients = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in destinations.get(key, [])]
        refuse_unverified_recipients(self, recipients)
        return original_send_email(self, source, destinations, subject, body)

    @functools.wraps(original_send_raw_email)
    def send_raw_email(self, source, destinations, raw_data):  # type: ignore[no-untyped-def]
        refuse_unverified_recipients(self, list(destinations))
        return original_send_raw_email(self, source, destinations, raw_data)

    SESV2Response.get_account = get_account
    # moto's catch-all "/v2/.*" is not a pattern in server mode (Flask takes it literally), so
    # GetAccount (GET /v2/email/account) needs its own route.
    sesv2_urls.url_paths.setdefault("{0}/v2/email/account$", SESV2Response.dispatch)
    SESV2Backend.send_email = send_email
    SESV2Backend.send_raw_email = send_raw_email


def _ses_identities_verified_for_sending() -> None:
    from moto.ses.models import EmailIdentity

    original = EmailIdentity.get_response_object

    def get_response_object(self):  # type: ignore[no-untyped-def]
        answer = dict(original.fget(self))
        # moto lets every identity it holds send (VerificationStatus SUCCESS): say so.
        answer["VerifiedForSendingStatus"] = answer.get("VerificationStatus") == "SUCCESS"
        return answer

    EmailIdentity.get_response_object = property(get_response_object)


def _service_quotas_for_sagemaker() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    from stepml.local.account_defaults import SAGEMAKER_QUOTAS, service_quota

    def quotas(backend: Any, applied: bool) -> list[dict[str, Any]]:
        values = backend.__dict__.setdefault("stepml_sagemaker_applied", {})
        account = backend.account_id if applied else ""
        return [
            service_quota(backend.region_name, account, q, values.get(q.code) if applied else None)
            for q in SAGEMAKER_QUOTAS
        ]

    def find(backend: Any, quota_code: str, applied: bool) -> dict[str, Any]:
        for quota in quotas(backend, applied):
            if quota["QuotaCode"] == quota_code:
                return quota
        raise JsonRESTError(
            "NoSuchResourceException", f"The request failed because the specified quota {quota_code} does not exist."
        )

    original_defaults = ServiceQuotasBackend.list_aws_default_service_quotas
    original_get = ServiceQuotasBackend.get_service_quota

    def list_aws_default_service_quotas(self, service_code):  # type: ignore[no-untyped-def]
        if service_code == "sagemaker":
            return quotas(self, applied=False)
        return original_defaults(self, service_code)

    def get_service_quota(self, service_code, quota_code):  # type: ignore[no-untyped-def]
        if service_code == "sagemaker":
            return find(self, quota_code, applied=True)
        return original_get(self, service_code, quota_code)

    def get_aws_default_service_quota(self, service_code, quota_code):  # type: ignore[no-untyped-def]
        if service_code == "sagemaker":
            return find(self, quota_code, applied=False)
        return original_get(self, service_code, quota_code)

    def list_service_quotas(self, service_code, quota_code=None):  # type: ignore[no-untyped-def]
        if service_code != "sagemaker":
            return original_defaults(self, service_code)
        return [q for q in quotas(self, applied=True) if quota_code is None or q["QuotaCode"] == quota_code]

    def page(self, items: list[dict[str, Any]]) -> str:
        params = json.loads(self.body or "{}")
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 100)
        answer: dict[str, Any] = {"Quotas": items[start : start + size]}
        if start + size < len(items):
            answer["NextToken"] = str(start + size)
        return json.dumps(answer)

    def respond_list_defaults(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        return page(self, self.backend.list_aws_default_service_quotas(str(params.get("ServiceCode"))))

    def respond_list(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        return page(self, self.backend.list_service_quotas(str(params.get("ServiceCode")), params.get("QuotaCode")))

    def respond_get_default(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        quota = self.backend.get_aws_default_service_quota(str(params.get("ServiceCode")), str(params.get("QuotaCode")))
        return json.dumps({"Quota": quota})

    ServiceQuotasBackend.list_aws_default_service_quotas = list_aws_default_service_quotas
    ServiceQuotasBackend.get_service_quota = get_service_quota
    ServiceQuotasBackend.get_aws_default_service_quota = get_aws_default_service_quota
    ServiceQuotasBackend.list_service_quotas = list_service_quotas
    ServiceQuotasResponse.list_aws_default_service_quotas = respond_list_defaults
    ServiceQuotasResponse.list_service_quotas = respond_list
    ServiceQuotasResponse.get_aws_default_service_quota = respond_get_default


def _lambda_layer_version_by_arn() -> None:
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import lambda_backends
    from moto.awslambda.responses import LambdaResponse

    arn_pattern = re.compile(
        r"^arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:(?P<name>[A-Za-z0-9_-]+):(?P<version>\d+)$"
    )

    def get_layer_version_by_arn(self):  # type: ignore[no-untyped-def]
        arn = self._get_param("Arn") or ""
        match = arn_pattern.match(arn)
        if match is None:
            raise LambdaClientError(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: "
                "(arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)",
            )
        # The layer lives in the account that published it (an AWS-owned one for public layers).
        backend = lambda_backends[match["account"]][match["region"]]
        for version in backend.list_layer_versions(match["name"]):
            if version.version == int(match["version"]):
                return 200, {}, json.dumps(version.get_layer_version())
        error = LambdaClientError("ResourceNotFoundException", "The resource you requested does not exist.")
        error.code = 404
        raise error

    LambdaResponse.get_layer_version_by_arn = get_layer_version_by_arn


def _ecr_registries_of_other_accounts() -> None:
    from moto.ecr.exceptions import RepositoryNotFoundException
    from moto.ecr.models import ECRBackend, ecr_backends

    original = ECRBackend._get_repository

    @functools.wraps(original)
    def _get_repository(self, name, registry_id=None):  # type: ignore[no-untyped-def]
        if registry_id and registry_id != self.account_id:
            other = ecr_backends[registry_id][self.region_name]
            repository = other.repositories.get(name)
            if repository is None or repository.registry_id != registry_id:
                raise RepositoryNotFoundException(name, registry_id)
            return repository
        return original(self, name, registry_id)

    ECRBackend._get_repository = _get_repository


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


def lambda_error_name(code: str) -> str:
    """Step Functions' name for a Lambda service error: ``Lambda.<Code>`` for an error Invoke
    declares (TooManyRequestsException, ResourceNotFoundException ...), else
    ``Lambda.AWSLambdaException`` (AccessDeniedException and other undeclared codes)."""
    from stepml.local.botocore_models import operation_model

    declared = {shape.name for shape in operation_model("lambda", "Invoke").error_shapes}
    return f"Lambda.{code}" if code in declared else "Lambda.AWSLambdaException"


def _lambda_service_error_names() -> None:
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )

    original_cause = StateTaskServiceLambda._error_cause_from_client_error

    def _error_cause_from_client_error(client_error: ClientError) -> tuple[str, str]:
        _, cause = original_cause(client_error)
        return lambda_error_name(client_error.response["Error"]["Code"]), cause

    StateTaskServiceLambda._error_cause_from_client_error = staticmethod(_error_cause_from_client_error)

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

    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName

    task_class._from_error = _from_error


def _service_may(
    principal: Any, request: Any, document_text: str | bytes, *, key_policy: bool = False, service: str
) -> bool:
    """Whether an AWS service principal may make ``request`` under the resource's policy (the text
    moto holds). In a local cloud the check goes through its IAM gate, which records it for the
    mutation test; without one stepml's evaluator decides alone."""
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam import policy
    from stepml.local.iam.gate import resource_policy_source
    from stepml.local.iam.model import PolicyDocument

    authorizer = iam_hooks.active()
    if authorizer is not None:
        return authorizer.check(principal, request, service=service).allowed
    document = PolicyDocument(resource_policy_source(request.resource) or request.resource, json.loads(document_text))
    return policy.evaluate(
        principal, request, [], document, resource_account=principal.account, key_policy=key_policy
    ).allowed


def _log_delivery_policy_check_reads_every_statement() -> None:
    from moto.s3.models import FakeBucket

    from stepml.local.iam.model import AuthorizationRequest, Principal

    logging_service = "logging.s3.amazonaws.com"

    def log_permissions_enabled_policy(source_bucket: Any, target_bucket: Any, target_prefix: str | None) -> bool:
        """Whether the target's bucket policy lets S3's log delivery put the source's logs there,
        evaluated as AWS evaluates it (conditions on the source account and bucket included)."""
        if not target_bucket.policy:
            return False
        account = source_bucket.account_id
        principal = Principal(arn=logging_service, account=account, service=logging_service)
        request = AuthorizationRequest(
            "s3:PutObject",
            f"arn:{target_bucket.partition}:s3:::{target_bucket.name}/{target_prefix or ''}",
            {
                "aws:SourceAccount": account,
                "aws:SourceArn": f"arn:{source_bucket.partition}:s3:::{source_bucket.name}",
                "aws:SecureTransport": "true",
            },
        )
        return _service_may(principal, request, target_bucket.policy, service="s3")

    # moto calls it as a static method; a plain function gets the source bucket as well.
    FakeBucket._log_permissions_enabled_policy = log_permissions_enabled_policy


def _logs_associate_kms_key() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms.models import kms_backends
    from moto.logs.exceptions import ResourceNotFoundException
    from moto.logs.responses import LogsResponse

    from stepml.local.iam.model import AuthorizationRequest, Principal

    def service_may_use_key(account: str, region: str, group: str, key_id: str) -> bool:
        backend = kms_backends[account][region]
        try:
            key = backend.keys[backend.any_id_to_key_id(key_id)]
        except Exception:  # an unknown id, alias or ARN
            return False
        service = f"logs.{region}.amazonaws.com"
        principal = Principal(arn=service, account=account, service=service)
        context = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account}:log-group:{group}"}
        return all(
            _service_may(
                principal, AuthorizationRequest(action, key.arn, context), key.policy, key_policy=True, service="logs"
            )
            for action in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
        )

    def associate_kms_key(self: Any) -> str:
        group = self._get_param("logGroupName")
        key_id = self._get_param("kmsKeyId")
        backend = self.logs_backend
        if group not in backend.groups:
            raise ResourceNotFoundException("The specified log group does not exist.")
        if not service_may_use_key(self.current_account, self.region, group, key_id):
            arn = f"arn:aws:logs:{self.region}:{self.current_account}:log-group:{group}"
            raise JsonRESTError(
                "AccessDeniedException",
                f"The specified KMS key does not exist or is not allowed to be used with Arn '{arn}'",
            )
        backend.groups[group].kms_key_id = key_id
        return ""

    LogsResponse.associate_kms_key = associate_kms_key


KEY_POLICY_LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."


def _kms_key_policy_lockout_check() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms.responses import KmsResponse

    from stepml.local.iam import gate as iam_gate
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam.model import AuthorizationRequest

    original_create = KmsResponse.create_key
    original_put = KmsResponse.put_key_policy

    def caller_may_update(response: Any, key_arn: str) -> bool:
        authorizer = iam_hooks.active()
        if authorizer is None:
            return True
        principals = authorizer.principals
        principal = principals.principal_of(response.get_access_key())
        identity = None
        if principal is None:
            principal, identity = principals.administrator(), [iam_gate.ADMINISTRATOR_POLICY]
        request = AuthorizationRequest("kms:PutKeyPolicy", key_arn)
        return authorizer.check(principal, request, service="kms", identity=identity).allowed

    def lockout() -> JsonRESTError:
        return JsonRESTError("MalformedPolicyDocumentException", KEY_POLICY_LOCKOUT_MESSAGE)

    def create_key(self: Any) -> str:
        answer = original_create(self)
        if not self._get_param("Policy") or self._get_param("BypassPolicyLockoutSafetyCheck"):
            return answer
        metadata = json.loads(answer)["KeyMetadata"]
        if not caller_may_update(self, metadata["Arn"]):
            self.kms_backend.keys.pop(metadata["KeyId"], None)
            raise lockout()
        return answer

    def put_key_policy(self: Any) -> str:
        key_id = self._get_param("KeyId")
        try:
            key = self.kms_backend.describe_key(key_id)
            previous, key_arn = key.policy, key.arn
        except Exception:  # moto's own answer for an unknown key
            return original_put(self)
        answer = original_put(self)
        if not self._get_param("BypassPolicyLockoutSafetyCheck") and not caller_may_update(self, key_arn):
            key.policy = previous
            raise lockout()
        return answer

    KmsResponse.create_key = create_key
    KmsResponse.put_key_policy = put_key_policy


PATCHES: tuple[Patch, ...] = (
    Patch(
        name="logs-associate-kms-key",
        why=(
            "moto 5.2.5 has no CloudWatch Logs AssociateKmsKey. Glue calls it, as the job role, for the log "
            "groups of a job whose security configuration encrypts CloudWatch Logs (SSE-KMS). The patch "
            "associates the key after checking, as CloudWatch Logs does, that the key policy lets "
            "logs.<region>.amazonaws.com use it for that group (else AccessDeniedException 'The specified KMS "
            "key does not exist or is not allowed to be used with Arn ...')."
        ),
        apply=_logs_associate_kms_key,
    ),
    Patch(
        name="kms-key-policy-lockout-check",
        why=(
            "moto accepts any key policy at CreateKey and PutKeyPolicy. KMS refuses one that would not let "
            "the caller update it later (its policy lockout safety check, unless BypassPolicyLockoutSafetyCheck): "
            f"MalformedPolicyDocumentException '{KEY_POLICY_LOCKOUT_MESSAGE}'. In a local cloud the patch asks "
            "its IAM gate whether the caller (a role, or the local user as an administrator) may then call "
            "kms:PutKeyPolicy on the key, and refuses the policy as KMS does if not."
        ),
        apply=_kms_key_policy_lockout_check,
    ),
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
        apply=_lambda_service_error_names,
    ),
    Patch(
        name="s3-log-delivery-policy-any-statement",
        why=(
            "PutBucketLogging checks that the target bucket's policy lets logging.s3.amazonaws.com PutObject; "
            'moto\'s check crashed (AttributeError, HTTP 500) on any statement whose Principal is "*", such as '
            "the TLS-only Deny every bucket of the template has, and matched Action and Resource only as single "
            "strings. The patch evaluates the target's policy with stepml's IAM evaluator for "
            "logging.s3.amazonaws.com's s3:PutObject under the prefix, with aws:SourceAccount and aws:SourceArn of "
            "the source bucket, as S3 does (so an explicit Deny or an unmet condition refuses the logging)."
        ),
        apply=_log_delivery_policy_check_reads_every_statement,
    ),
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
        name="integrations-checked-at-definition",
        why=(
            "Step Functions rejects CreateStateMachine/UpdateStateMachine (InvalidDefinition, "
            "SCHEMA_VALIDATION_FAILED) when a Task names an optimized API or pattern AWS does not offer "
            "(sns:publish.sync) or a Parameters/Arguments field outside the integration's documented subset "
            "(DeploymentConfig on sagemaker:updateEndpoint); aws-sdk tasks take their API's fields. moto accepted"
            " any field, and refused an unknown resource in its own words, so such a definition only failed once "
            "deployed. The patch checks every Task, in Parallel branches and Map processors too, against "
            "stepml.local.sfn_integrations (and SageMaker literals against botocore's types). It also refuses a "
            "Retry/Catch error name the Task can never raise (ERROR_NAME_NEVER_RAISED): AWS accepts any name "
            "there, the local cloud is stricter on purpose."
        ),
        apply=_integrations_checked_at_definition,
    ),
    Patch(
        name="validate-state-machine-definition-answers",
        why=(
            "moto routes no ValidateStateMachineDefinition, so the call answered HTTP 500. The patch answers as AWS "
            "does, {result: OK|FAIL, diagnostics: [{severity, code, message, location}], truncated}, with the same "
            "findings CreateStateMachine refuses (at most maxResults of them, default and maximum 100)."
        ),
        apply=_validate_state_machine_definition_answers,
    ),
    Patch(
        name="aws-sdk-error-names",
        why=(
            "moto named an aws-sdk task's failure after the lower-case service (`sagemaker.sagemakerException`, "
            "`sagemaker.ResourceNotFoundException`), so no Retry or Catch written for AWS matched. Step Functions "
            "names it `ServiceName.ErrorName` in PascalCase: the modeled error with an Exception suffix "
            "(`SageMaker.ResourceNotFoundException`), any other code the SDK's generic `SageMaker.SageMakerException`."
        ),
        apply=_aws_sdk_error_names,
    ),
    Patch(
        name="ses-account-and-sandbox",
        why=(
            "moto has no SES v2 GetAccount (NotImplementedError, HTTP 500), so nothing could ask whether the "
            "account is in the SES sandbox. The patch answers GetAccount from the local account's status "
            "(account_defaults.ses_account: production access on by default, since the local cloud delivers to "
            "any address), and when a test turns production access off, SendEmail refuses unverified recipients "
            "with MessageRejected as the SES sandbox does."
        ),
        apply=_ses_account_and_sandbox,
    ),
    Patch(
        name="ses-identity-verified-for-sending",
        why=(
            "moto lets every email identity it holds send (VerificationStatus SUCCESS) but answers "
            "GetEmailIdentity with VerifiedForSendingStatus false, so a sender the local cloud verified looked "
            "unverified to anyone who asked (stepml preflight). The patch reports VerifiedForSendingStatus true "
            "exactly when moto would let the identity send."
        ),
        apply=_ses_identities_verified_for_sending,
    ),
    Patch(
        name="service-quotas-sagemaker",
        why=(
            "moto's Service Quotas knows only the vpc service's defaults and has no ListServiceQuotas or "
            'GetAWSDefaultServiceQuota, so SageMaker\'s instance quotas ("ml.m5.xlarge for training job usage", '
            '"ml.m5.large for endpoint usage") could not be asked. The patch answers them for sagemaker from the '
            "documented table account_defaults.SAGEMAKER_QUOTAS, with NextToken pagination."
        ),
        apply=_service_quotas_for_sagemaker,
    ),
    Patch(
        name="lambda-get-layer-version-by-arn",
        why=(
            "moto does not implement GetLayerVersionByArn (HTTP 500). The patch answers it from the layers of "
            "the account and region the ARN names (public layers such as the AWS SDK for pandas live in their "
            "publisher's account), and ResourceNotFoundException for a version that does not exist."
        ),
        apply=_lambda_layer_version_by_arn,
    ),
    Patch(
        name="ecr-registries-of-other-accounts",
        why=(
            "moto's ECR looks only in the caller's own registry even when registryId names another account, so "
            "DescribeImages on SageMaker's XGBoost registry always answered RepositoryNotFoundException. The patch "
            "looks in that account's registry (the local cloud seeds SageMaker's image there); repository policies "
            "are not evaluated for these cross-account reads."
        ),
        apply=_ecr_registries_of_other_accounts,
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
