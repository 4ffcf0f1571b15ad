"""TestState's ``mock``: what AWS accepts as a mock for each state type, and the mocked run of a state.

AWS runs a Map or Parallel state in TestState only with a mock, and then ``mock.result`` is the whole
state's result (the array the iterations or branches would have made; a Map with a ResultWriter
gives an object), which the state's ResultSelector, ResultPath and OutputPath then process; a Task's
``mock.result`` is its service's answer, checked against the API's response shape as
``mock.fieldValidationMode`` says. ``mock.errorOutput`` is the state's failure, which its Retry and
Catch handle. Pass, Succeed and Fail states take no mock. The refusals' wordings are those AWS
answers (recorded in public test snapshots). The patch ``test-state-parses-nested-states`` lets moto's
TestState parser read a Map's or Parallel's inner states. moto is imported inside functions only.
"""

from __future__ import annotations

import json
from typing import Any, Final

from stepml.local.patching import Patch, register
from stepml.local.stepfunctions.integrations import REQUEST_RESPONSE, parse_resource, sdk_operation

#: State types TestState runs without a mock (AWS runs Map, Parallel and activities only with one).
RUNNABLE_TYPES: Final[frozenset[str]] = frozenset({"Task", "Pass", "Wait", "Choice", "Succeed", "Fail"})
#: State types that take a mock: the mock stands for the service call or for the iterations/branches.
MOCKABLE_TYPES: Final[frozenset[str]] = frozenset({"Task", "Map", "Parallel"})
FIELD_VALIDATION_MODES: Final[tuple[str, ...]] = ("STRICT", "PRESENT", "NONE")
NO_MAP_OR_PARALLEL: Final[str] = (
    "TestState API does not support Map or Parallel states. "
    "Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]"
)


class TestStateError(Exception):
    """A TestState request AWS refuses: ``code`` is the error AWS answers with."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_mock(mock: dict[str, Any] | None, state: dict[str, Any], reveal_secrets: bool = False) -> None:
    """Refuse, as AWS does, a mock the state cannot take (or a state that needs one and has none)."""
    kind = state.get("Type")
    if mock is None:
        if kind in ("Map", "Parallel"):
            raise TestStateError("InvalidDefinition", NO_MAP_OR_PARALLEL)
        _check_runnable_task(state)
        return
    if kind in ("Pass", "Succeed", "Fail"):
        raise TestStateError("ValidationException", f"State type '{kind}' is not supported when a mock is specified")
    if kind not in MOCKABLE_TYPES:
        raise TestStateError("ValidationException", f"The local cloud mocks Task, Map and Parallel states, not {kind}")
    if reveal_secrets:
        raise TestStateError(
            "ValidationException", "TestState does not support RevealSecrets when a mock is specified."
        )
    if "result" in mock and "errorOutput" in mock:
        raise TestStateError(
            "ValidationException", "A test mock should have only one of the following fields: [result, errorOutput]."
        )
    mode = mock.get("fieldValidationMode") or "STRICT"
    if mode not in FIELD_VALIDATION_MODES:
        raise TestStateError(
            "ValidationException",
            f"1 validation error detected: Value '{mode}' at 'mock.fieldValidationMode' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(FIELD_VALIDATION_MODES)}]",
        )
    if "result" in mock:
        try:
            result = json.loads(mock["result"])
        except (TypeError, ValueError) as exc:
            raise TestStateError("ValidationException", "Mocked result must be valid JSON") from exc
        if kind == "Map":
            _check_mocked_map_result(result, state)
        _check_mocked_fields(result, state, mode)
    elif "errorOutput" not in mock:
        raise TestStateError("ValidationException", "A mock must have either a result or an errorOutput")
    elif not (mock["errorOutput"] or {}).get("error"):
        raise TestStateError("ValidationException", "mock.errorOutput.error is required")


def _check_mocked_map_result(result: Any, state: dict[str, Any]) -> None:
    if "ResultWriter" in state and not isinstance(result, dict):
        raise TestStateError("ValidationException", "Mocked result must be a JSON object.")
    if "ResultWriter" not in state and not isinstance(result, list):
        raise TestStateError("ValidationException", "Mocked result must be an array.")


def _check_runnable_task(state: dict[str, Any]) -> None:
    """Without a mock, AWS runs no activity and no .sync or .waitForTaskToken integration."""
    arn = state.get("Resource")
    if state.get("Type") != "Task" or not isinstance(arn, str):
        return
    resource = parse_resource(arn)
    if ":activity:" in arn or (resource is not None and resource.pattern != REQUEST_RESPONSE):
        raise TestStateError(
            "ValidationException",
            f"TestState runs the resource {arn} only with a mock (an activity, .sync or .waitForTaskToken)",
        )


def _check_mocked_fields(result: Any, state: dict[str, Any], mode: str) -> None:
    """fieldValidationMode for an aws-sdk Task: the mocked result against the API's response shape
    (STRICT: no unknown field and every required one; PRESENT: no unknown field; NONE: nothing). An
    optimized integration's result adds Step Functions' own fields, so it is taken as given, as is a
    Map's or Parallel's (they have no API)."""
    arn = state.get("Resource")
    resource = parse_resource(arn) if state.get("Type") == "Task" and isinstance(arn, str) else None
    operation = sdk_operation(resource) if resource is not None and resource.is_sdk else None
    if mode == "NONE" or operation is None or operation.output_shape is None:
        return
    if not isinstance(result, dict):
        raise TestStateError("ValidationException", f"The mocked result of {arn} must be a JSON object")
    members = {name[:1].upper() + name[1:] for name in operation.output_shape.members}
    unknown = sorted(set(result) - members)
    missing = sorted(
        name[:1].upper() + name[1:]
        for name in operation.output_shape.required_members
        if name[:1].upper() + name[1:] not in result
    )
    if unknown or (mode == "STRICT" and missing):
        found = [f"unknown field {name!r}" for name in unknown] + [f"missing field {name!r}" for name in missing]
        raise TestStateError(
            "ValidationException",
            f"The mocked result does not match the {operation.name} response ({mode}): {', '.join(found)}",
        )


def error_name(error: str) -> Any:
    """The interpreter's name for a mocked error: a States.* name is that States error (moto's custom
    error names refuse the prefix, and a mocked States.TaskFailed is one)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName

    if not error.startswith("States."):
        return CustomErrorName(error)
    try:
        return StatesErrorName.from_name(error)
    except Exception:  # a States.* name moto does not list
        return ErrorName(error_name=error)


def mocked_execution(mock: dict[str, Any] | None, state_field: Any) -> Any:
    """The state's work (a Task's service call, a Map's iterations, a Parallel's branches), replaced by
    ``mock`` (a Task's Parameters/Arguments are still evaluated, as AWS shows them at DEBUG)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    mock = mock or {}

    def _eval_execution(env: Any) -> None:
        if isinstance(state_field, StateTask):
            arguments = state_field._eval_parameters(env=env)
            if not state_field._is_language_query_jsonpath() and state_field.parargs is not None:
                env.inspection_data["afterArguments"] = to_json_str(arguments)
        elif env.stack:
            env.stack.pop()  # the Map's or Parallel's input: the mock stands for what it would have made
        if "result" in mock:
            result = json.loads(mock["result"])
            env.stack.append(result)
            env.inspection_data["result"] = to_json_str(result)
            return
        error = mock["errorOutput"].get("error") or ""
        cause = mock["errorOutput"].get("cause") or ""
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=error_name(error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(error=error, cause=cause)),
            )
        )

    return _eval_execution


def _install_test_state_parses_nested_states(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.parse import preprocessor
    from moto.stepfunctions.parser.asl.parse.test_state import asl_parser
    from moto.stepfunctions.parser.asl.parse.test_state.preprocessor import TestStatePreprocessor

    class OneTestStatePreprocessor(TestStatePreprocessor):
        """The tested state is the outermost one; the states of its branches or item processor are
        ordinary states (moto's preprocessor made each of them a test program, which broke the parse)."""

        _depth = 0

        def visitState_decl_body(self, ctx):  # type: ignore[no-untyped-def]
            if self._depth:
                return preprocessor.Preprocessor.visitState_decl_body(self, ctx)
            self._depth += 1
            try:
                return super().visitState_decl_body(ctx)
            finally:
                self._depth -= 1

    patch.replace(asl_parser, "TestStatePreprocessor", OneTestStatePreprocessor)


register(
    Patch(
        name="test-state-parses-nested-states",
        why=(
            "TestState runs a Map or Parallel state with a mock; moto's TestState parser turned every state "
            "declaration into a test program, so the states inside a Map's ItemProcessor or a Parallel's "
            "Branches failed to parse (AttributeError, HTTP 500). The patch makes only the tested state the test "
            "program and parses the inner states as a state machine's."
        ),
        test="tests/unit/stepfunctions/test_test_state.py::test_a_mocked_parallel_answers_its_output_and_its_retries",
        install=_install_test_state_parses_nested_states,
    )
)
