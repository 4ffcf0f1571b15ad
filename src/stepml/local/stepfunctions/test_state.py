"""Step Functions' ``TestState`` in the local cloud: one state run as Workflow Studio's *Test state* runs it.

moto 5.2.5 routes no TestState (HTTP 500), and the TestState code its interpreter carries (LocalStack's
first version) leaves any state with a ``Next`` running and knows neither mocks nor Retry/Catch outcomes.
This module parses the state with that interpreter's TestState parser (which records the inspection
data: ``afterInputPath``, ``afterParameters``, ``result``, ``afterResultSelector``, ``afterResultPath``),
runs it once, synchronously, and answers as AWS does:

- ``mock.result`` is a Task's result (a Map's or Parallel's whole result) and ``mock.errorOutput`` its
  failure, without calling the service (``test_state_mocks`` checks a mock as AWS does);
- a failure a Retry matches with attempts left (``stateConfiguration.retrierRetryCount`` counts those
  already made) answers ``RETRIABLE`` with the retrier's index and backoff; one a Catch matches answers
  ``CAUGHT_ERROR`` with the catcher's ``Next``; any other ``FAILED``;
- ``stateName`` picks the state out of a whole machine's definition;
- an HTTP Task makes its HTTPS call, and TRACE shows the request and response (``test_state_http``).

The definition is refused (``InvalidDefinition``) with ``stepml.local.stepfunctions.definitions``'
findings: a single state's shape and integration, or a whole machine's every finding (less the refusal
of HTTP Tasks, which TestState runs). moto is imported
inside functions only.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Final

from stepml.local.patching import Patch, register
from stepml.local.stepfunctions.definitions import definition_problems, integration_problems, problems_message
from stepml.local.stepfunctions.schema import shape_problems
from stepml.local.stepfunctions.test_state_http import http_execution, is_http_task, without_http_task_refusals
from stepml.local.stepfunctions.test_state_mocks import TestStateError, check_mock, mocked_execution

INSPECTION_LEVELS: Final[tuple[str, ...]] = ("INFO", "DEBUG", "TRACE")
#: The state types whose JSONPath processing steps DEBUG names.
_PATH_STEPS: Final[frozenset[str]] = frozenset({"Task", "Pass", "Map", "Parallel"})
#: The Retry defaults the States Language documents.
_RETRY_DEFAULTS: Final[dict[str, float]] = {"IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}
#: The context object's role when a mocked test names none (AWS makes roleArn optional with a mock).
_ACCOUNT_ROLE: Final[str] = "arn:aws:iam::{account}:role/TestState"


@dataclass
class TestStateRequest:
    """A TestState request, parsed and checked."""

    __test__ = False

    name: str
    state: dict[str, Any]
    input: Any
    inspection_level: str = "INFO"
    role_arn: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    mock: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    retry_count: int = 0
    reveal_secrets: bool = False


class _Retriable(Exception):
    """Ends the run: the failure matched a retrier with attempts left."""

    def __init__(self, error: str, cause: str, index: int, backoff: int) -> None:
        super().__init__(error)
        self.error, self.cause, self.index, self.backoff = error, cause, index, backoff


# -- the request ----------------------------------------------------------------------------


def _json(text: str | None, code: str, what: str, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TestStateError(code, f"Invalid {what}: {exc}") from exc


def parse_request(params: dict[str, Any]) -> TestStateRequest:
    """Check a TestState request's parameters (botocore's names) as AWS does; raise ``TestStateError``."""
    level = params.get("inspectionLevel") or "INFO"
    if level not in INSPECTION_LEVELS:
        raise TestStateError(
            "ValidationException",
            f"1 validation error detected: Value '{level}' at 'inspectionLevel' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(INSPECTION_LEVELS)}]",
        )
    definition = _json(params.get("definition"), "InvalidDefinition", "State Machine Definition")
    if not isinstance(definition, dict):
        raise TestStateError("InvalidDefinition", "Invalid State Machine Definition: the definition must be an object")
    name, state = _pick_state(definition, params.get("stateName"))
    mock = params.get("mock") or None
    check_mock(mock, state, bool(params.get("revealSecrets")))
    if mock is None and not params.get("roleArn"):
        raise TestStateError("ValidationException", "roleArn is required when no mock is given")
    variables = _json(params.get("variables"), "ValidationException", "variables", {})
    context = _json(params.get("context"), "ValidationException", "context", {})
    if not isinstance(variables, dict) or not isinstance(context, dict):
        raise TestStateError("ValidationException", "variables and context must be JSON objects")
    configuration = params.get("stateConfiguration") or {}
    return TestStateRequest(
        name=name,
        state=state,
        input=_json(params.get("input"), "InvalidExecutionInput", "input", {}),
        inspection_level=level,
        role_arn=params.get("roleArn"),
        variables=variables,
        mock=mock,
        context=context,
        retry_count=int(configuration.get("retrierRetryCount") or 0),
        reveal_secrets=bool(params.get("revealSecrets")),
    )


def _pick_state(definition: dict[str, Any], state_name: str | None) -> tuple[str, dict[str, Any]]:
    if state_name is None:
        if "States" in definition and "Type" not in definition:
            raise TestStateError("ValidationException", "stateName is required to test a state of a state machine")
        wrapper = {"StartAt": "TestState", "States": {"TestState": definition}}
        # Transitions are left out: the state's Next names a state the test has not got.
        problems = without_http_task_refusals(shape_problems(wrapper) + integration_problems(wrapper))
        if problems:
            raise TestStateError("InvalidDefinition", problems_message(problems))
        return "TestState", definition
    problems = without_http_task_refusals(definition_problems(definition))
    if problems:
        raise TestStateError("InvalidDefinition", problems_message(problems))
    state = (definition.get("States") or {}).get(state_name)
    if not isinstance(state, dict):
        raise TestStateError("ValidationException", f"State '{state_name}' is not in the state machine definition")
    if "QueryLanguage" in definition and "QueryLanguage" not in state:
        state = {**state, "QueryLanguage": definition["QueryLanguage"]}
    return state_name, state


# -- the run --------------------------------------------------------------------------------


def _environment(request: TestStateRequest, account: str, region: str) -> Any:
    from moto.stepfunctions.parser.api import StateMachineType
    from moto.stepfunctions.parser.asl.eval.evaluation_details import AWSExecutionDetails
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
    from moto.stepfunctions.parser.asl.eval.states import ContextObjectData, ExecutionData, StateMachineData
    from moto.stepfunctions.parser.asl.eval.test_state.environment import TestStateEnvironment

    role_arn = request.role_arn or _ACCOUNT_ROLE.format(account=account)
    machine = f"arn:aws:states:{region}:{account}:stateMachine:TestState"
    env = TestStateEnvironment(
        aws_execution_details=AWSExecutionDetails(account=account, region=region, role_arn=role_arn),
        execution_type=StateMachineType.STANDARD,
        context=ContextObjectData(
            Execution=ExecutionData(
                Id=f"arn:aws:states:{region}:{account}:execution:TestState:TestState",
                Input=request.input,
                Name="TestState",
                RoleArn=role_arn,
                StartTime=datetime.datetime.now(tz=datetime.UTC).isoformat(),
            ),
            StateMachine=StateMachineData(Id=machine, Name="TestState"),
        ),
        event_history_context=EventHistoryContext.of_program_start(),
        activity_store={},
    )
    env.states.reset(input_value=request.input)
    for key, value in request.context.items():
        if isinstance(value, dict) and isinstance(env.states.context_object.context_object_data.get(key), dict):
            env.states.context_object.context_object_data[key].update(value)
        else:
            env.states.context_object.context_object_data[key] = value
    # The caller's variables are the state's starting scope; its own Assign may overwrite them.
    env.variable_store._inner_scope.update(request.variables)
    return env


def _matches(env: Any, error_equals: Any, error_name: Any) -> bool:
    env.stack.append(error_name)
    error_equals.eval(env)
    return bool(env.stack.pop())


def _retry_decision(request: TestStateRequest, state_field: Any) -> Any:
    """Instead of moto's retrier (which sleeps and runs the state again): RETRIABLE, or on to the Catch."""
    from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome

    retriers = request.state.get("Retry") or []

    def _handle_retry(env: Any, failure_event: Any) -> Any:
        for index, retrier in enumerate(state_field.retry.retriers):
            if not _matches(env, retrier.error_equals, failure_event.error_name):
                continue
            spec = {**_RETRY_DEFAULTS, **(retriers[index] if index < len(retriers) else {})}
            if request.retry_count >= spec["MaxAttempts"]:
                return RetryOutcome.CannotRetry
            backoff = spec["IntervalSeconds"] * spec["BackoffRate"] ** request.retry_count
            if "MaxDelaySeconds" in spec:
                backoff = min(backoff, spec["MaxDelaySeconds"])
            error = env.states.get_error_output()
            raise _Retriable(error.get("Error", ""), error.get("Cause", ""), index, int(backoff))
        return RetryOutcome.NoRetrier

    return _handle_retry


def _catch_recorder(state_field: Any, caught: dict[str, Any]) -> Any:
    """moto's Catch, remembering the error it handled and which catcher matched (``errorDetails.catchIndex``)."""
    original = state_field._handle_catch

    def _handle_catch(env: Any, failure_event: Any) -> None:
        error_output = env.states.get_error_output() or {}
        for index, catcher in enumerate(state_field.catch.catchers):
            if _matches(env, catcher.error_equals, failure_event.error_name):
                caught.update(index=index, error=error_output.get("Error", ""), cause=error_output.get("Cause", ""))
                break
        original(env=env, failure_event=failure_event)

    return _handle_catch


def _program(request: TestStateRequest, caught: dict[str, Any]) -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException
    from moto.stepfunctions.parser.asl.parse.test_state.asl_parser import TestStateAmazonStateLanguageParser

    try:
        program = TestStateAmazonStateLanguageParser.parse(json.dumps(request.state))[0]
    except ASLParserException as exc:
        raise TestStateError("InvalidDefinition", f"Invalid State Machine Definition: '{exc}'") from exc
    state_field = program.test_state
    state_field.name = request.name
    if request.state.get("Type") == "Wait":
        # TestState evaluates a Wait's time (an invalid one fails) but answers without waiting it out.
        state_field.wait_function._wait_interval = _no_wait
    if isinstance(state_field, ExecutionState):
        if request.mock is not None:
            state_field._eval_execution = mocked_execution(request.mock, state_field)
        elif is_http_task(request.state):
            state_field._eval_execution = http_execution(state_field, request.inspection_level, request.reveal_secrets)
        state_field._handle_retry = _retry_decision(request, state_field)
        state_field._handle_catch = _catch_recorder(state_field, caught)
    return program


def _no_wait(env: Any, wait_seconds: int) -> None:
    return None


def run_test_state(request: TestStateRequest, account: str, region: str) -> dict[str, Any]:
    """Run the request's state once and answer TestState's output (``status``, ``output`` or
    ``error``/``cause``, ``nextState``, ``inspectionData`` at DEBUG and TRACE)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    caught: dict[str, Any] = {}
    program = _program(request, caught)
    state_field = program.test_state
    env = _environment(request, account, region)
    env.next_state_name = request.name
    env.inspection_data["input"] = to_json_str(request.input)
    answer: dict[str, Any]
    try:
        state_field.eval(env=env)
        answer = _finished(request, env, caught)
    except _Retriable as retriable:
        answer = {"status": "RETRIABLE", "error": retriable.error, "cause": retriable.cause, "nextState": request.name}
        env.inspection_data["errorDetails"] = {
            "retryIndex": retriable.index,
            "retryBackoffIntervalSeconds": retriable.backoff,
        }
    except FailureEventException as exc:
        details = exc.get_execution_failed_event_details() or {}
        answer = {"status": "FAILED", "error": details.get("error", ""), "cause": details.get("cause", "")}
    if request.inspection_level != "INFO":
        answer["inspectionData"] = _inspection_data(request, env, answer["status"] == "SUCCEEDED")
    if "output" in answer:
        answer["output"] = _compact(answer["output"])
    return answer


def _compact(text: str) -> str:
    # Step Functions writes its JSON strings without spaces.
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def _inspection_data(request: TestStateRequest, env: Any, succeeded: bool) -> dict[str, Any]:
    """DEBUG's (and TRACE's) inspectionData: every JSONPath step is named even where the state does not
    declare it (the step then passes its value on), as AWS answers."""
    data = {key: _compact(value) if isinstance(value, str) else value for key, value in env.inspection_data.items()}
    state = request.state
    uses_paths = state.get("QueryLanguage", "JSONPath") == "JSONPath" and state.get("Type") in _PATH_STEPS
    if uses_paths and succeeded:
        data.setdefault("afterInputPath", data["input"])
        data.setdefault("afterParameters", data["afterInputPath"])
        if state["Type"] != "Pass":
            data.setdefault("afterResultSelector", data.get("result", data["afterParameters"]))
            data.setdefault("afterResultPath", data["afterResultSelector"])
        else:
            data.setdefault("afterResultPath", data.get("result", data["afterParameters"]))
    variables = dict(env.variable_store._inner_scope)
    if variables:
        data["variables"] = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    return data


def _finished(request: TestStateRequest, env: Any, caught: dict[str, Any]) -> dict[str, Any]:
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError
    from moto.stepfunctions.parser.asl.eval.test_state.program_state import ProgramChoiceSelected
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    program_state = env.program_state()
    if isinstance(program_state, ProgramError):
        return {"status": "FAILED", "error": program_state.error["error"], "cause": program_state.error["cause"]}
    output = to_json_str(env.states.get_input())
    if caught:
        env.inspection_data["errorDetails"] = {"catchIndex": caught["index"]}
        answer = {"status": "CAUGHT_ERROR", "error": caught["error"], "cause": caught["cause"], "output": output}
        return {**answer, "nextState": env.next_state_name}
    answer = {"status": "SUCCEEDED", "output": output}
    kind = request.state.get("Type")
    if isinstance(program_state, ProgramChoiceSelected):
        answer["nextState"] = program_state.next_state_name
    elif kind not in ("Succeed", "Fail") and isinstance(request.state.get("Next"), str):
        answer["nextState"] = request.state["Next"]
    return answer


# -- the API --------------------------------------------------------------------------------


def _install_test_state_answers(patch: Patch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    members = _request_members()

    def test_state(self):  # type: ignore[no-untyped-def]
        params = {name: self._get_param(name) for name in members}
        try:
            request = parse_request(params)
            return ActionResult(run_test_state(request, self.current_account, self.region))
        except TestStateError as exc:
            raise JsonRESTError(exc.code, exc.message) from exc

    patch.replace(StepFunctionResponse, "test_state", test_state)


def _request_members() -> tuple[str, ...]:
    """TestState's request members as the installed botocore models them (older models lack mock ...)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("stepfunctions").operation_model("TestState")
    return tuple(model.input_shape.members)


register(
    Patch(
        name="test-state-answers",
        why=(
            "moto routes no TestState (HTTP 500), the API Workflow Studio's Test state calls, and the TestState "
            "code its interpreter carries leaves a state with Next running and knows no mock. The patch runs the "
            "one state (or stateName's state of a whole machine) once in moto's interpreter and answers as AWS "
            "does: status SUCCEEDED, FAILED, RETRIABLE (a Retry matches with attempts left, retrierRetryCount "
            "counting those made) or CAUGHT_ERROR (a Catch matches), nextState, output or error and cause, and "
            "at DEBUG/TRACE the inspectionData (input, afterInputPath, afterParameters, result, "
            "afterResultSelector, afterResultPath, variables, errorDetails). mock.result is the Task's result (a "
            "Map's or Parallel's whole result) and mock.errorOutput its failure, without calling the service. A "
            "definition CreateStateMachine would refuse is refused (InvalidDefinition), an unknown "
            "inspectionLevel too (ValidationException)."
        ),
        test="tests/unit/stepfunctions/test_test_state.py::test_a_task_with_a_mocked_error_is_caught_by_its_catch",
        install=_install_test_state_answers,
    )
)
