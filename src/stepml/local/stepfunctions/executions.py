"""Patches to how moto's Step Functions backend answers about executions.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): the interpreter's
errors carry their codes, task-token calls skip executions still starting, StopExecution
ends tasks that wait for a token, an unnamed execution is named with a UUID, a States.* error
leaves a Parallel branch or Map iteration with its name, DescribeExecution's output is JSON text,
the context object has every field AWS documents, an S3 listing's items carry epoch seconds, and a
definition's syntax tree is built once. moto is imported inside each ``install`` only.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from stepml.local.patching import Patch, register
from stepml.utils import iso_utc

_TESTS = "tests/unit/stepfunctions/test_interpreter.py::"
_CONFORMANCE = "tests/unit/stepfunctions/test_conformance_executions.py::"
#: Definitions whose syntax tree is kept (the pipeline's is 4.4 MiB): a cloud's state machines and revisions.
PARSED_DEFINITIONS_KEPT = 8


def _install_definitions_are_parsed_once(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.parse import asl_parser

    original = asl_parser.AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=PARSED_DEFINITIONS_KEPT)
    def syntax_tree(definition: str) -> Any:
        return original(definition)[1]  # a definition that does not parse raises, and is not kept

    def parse(definition: str) -> tuple[Any, Any]:
        tree = syntax_tree(definition)
        # Fresh evaluation components from the kept tree: they hold an execution's state (a
        # retrier's attempts), so executions never share them.
        return asl_parser.Preprocessor().visit(tree), tree

    patch.replace(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(parse))


def _install_interpreter_errors_have_codes(patch: Patch) -> None:
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser import api

    for error in vars(api).values():
        if not (isinstance(error, type) and issubclass(error, AWSError)) or error.TYPE is not None:
            continue
        code = error.__dict__.get("code")
        if not isinstance(code, str) or "__init__" in error.__dict__:
            continue  # InvalidToken passes its code itself
        patch.replace(error, "TYPE", code)
        patch.replace(error, "STATUS", error.__dict__.get("status_code", 400))
        original_init = error.__init__

        @functools.wraps(original_init)
        def __init__(self, message: str | None = None, *args, __init=original_init, __code=code, **kwargs):  # type: ignore[no-untyped-def]
            # moto raises some of these without a message (TaskTimedOut(), TaskDoesNotExist()).
            __init(self, message if message is not None else __code, *args, **kwargs)

        patch.replace(error, "__init__", __init__)


def _install_task_token_calls_skip_starting_executions(patch: Patch) -> None:
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

    patch.replace(StepFunctionsParserBackend, "_get_executions", _get_executions)


def _install_stop_ends_waiting_tasks(patch: Patch) -> None:
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

        # These are this execution's objects, not moto's code: they end with the execution.
        manager.add_event = add_event_until_aborted
        # ...and an aborted execution stays ABORTED: the unwinding task's error must not fail it.
        env.set_error = lambda error: None
        env.set_timed_out = lambda: None
        # Wake the tasks that wait for a task token; they unwind and the execution ends ABORTED.
        for endpoint in list(env.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()

    patch.replace(ExecutionWorker, "stop", stop)


def _install_unnamed_executions_get_a_uuid(patch: Patch) -> None:
    from moto.moto_api._internal import mock_random
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    @functools.wraps(original)
    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):  # type: ignore[no-untyped-def]
        if name:
            self._validate_name(name)  # moto's plain backend checks it; its interpreter's did not
        return original(self, state_machine_arn, name or str(mock_random.uuid4()), execution_input, trace_header)

    patch.replace(StepFunctionsParserBackend, "start_execution", start_execution)


def _install_states_errors_keep_their_names(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    def error_name_of(error_name: str | None = None) -> Any:
        # A States.* name crossing a branch or iteration boundary is still that States error;
        # moto's CustomErrorName refuses the prefix, which turned it into States.Runtime.
        if error_name is None or not error_name.startswith("States."):
            return CustomErrorName(error_name)
        try:
            return StatesErrorName.from_name(error_name)
        except Exception:  # a States.* name moto does not list (States.Http.StatusCode.404)
            return ErrorName(error_name=error_name)

    for module in (branches_decl, iteration_worker, state_fail):
        patch.replace(module, "CustomErrorName", error_name_of)


def _output_json_text(output: Any) -> str:
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    from stepml.local.stepfunctions.serialisation import datetimes_to_iso8601

    return to_json_str(datetimes_to_iso8601(output), separators=(",", ":"))


def _install_execution_output_is_json_text(patch: Patch) -> None:
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication._reflect_execution_status

    @functools.wraps(original)
    def _reflect_execution_status(self):  # type: ignore[no-untyped-def]
        original(self)
        execution = self.execution
        if execution.output is not None:
            # moto's DescribeExecution passes a str through as it is: keep the output as JSON text.
            execution.output = _output_json_text(execution.output)

    patch.replace(BaseExecutionWorkerCommunication, "_reflect_execution_status", _reflect_execution_status)


def _install_context_object_fields(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original_environment = ExecutionWorker._get_evaluation_environment

    @functools.wraps(original_environment)
    def _get_evaluation_environment(self):  # type: ignore[no-untyped-def]
        env = original_environment(self)
        execution = env.states.context_object.context_object_data["Execution"]
        # A first attempt; a redrive (stepml.local.stepfunctions.redrive) sets its own count and RedriveTime.
        execution.setdefault("RedriveCount", 0)
        if isinstance(execution.get("StartTime"), datetime):  # moto's is a datetime; AWS's ISO-8601 text
            execution["StartTime"] = iso_utc(execution["StartTime"])
        return env

    original_input = CommonStateField._eval_state_input

    @functools.wraps(original_input)
    def _eval_state_input(self, env):  # type: ignore[no-untyped-def]
        state = env.states.context_object.context_object_data["State"]
        state.setdefault("RetryCount", 0)
        entered = state.get("EnteredTime")
        if isinstance(entered, str) and entered.endswith("+00:00"):  # moto's isoformat(); AWS writes ...Z
            state["EnteredTime"] = iso_utc(datetime.fromisoformat(entered))
        return original_input(self, env)

    patch.replace(ExecutionWorker, "_get_evaluation_environment", _get_evaluation_environment)
    patch.replace(CommonStateField, "_eval_state_input", _eval_state_input)


def _epoch_seconds(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def _install_s3_listing_items_have_epoch_seconds(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
        ResourceEvalS3,
    )

    original = ResourceEvalS3._handle_list_objects_v2

    def _handle_list_objects_v2(env, resource_runtime_part, state_credentials):  # type: ignore[no-untyped-def]
        original(env, resource_runtime_part, state_credentials)
        env.stack[-1] = [{key: _epoch_seconds(value) for key, value in item.items()} for item in env.stack[-1]]

    patch.replace(ResourceEvalS3, "_handle_list_objects_v2", staticmethod(_handle_list_objects_v2))


def _install_state_machine_for_execution_is_its_snapshot(patch: Patch) -> None:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.exceptions import ResourceNotFound
    from moto.stepfunctions.responses import StepFunctionResponse

    def describe_state_machine_for_execution(self):  # type: ignore[no-untyped-def]
        arn = self._get_param("executionArn")
        for machine in self.stepfunction_backend.state_machines:
            for execution in machine.executions:
                if execution.execution_arn != arn:
                    continue
                # The execution holds a copy of the machine as it started (moto's start_execution).
                snapshot = getattr(execution, "state_machine", None) or machine
                return ActionResult(
                    {
                        "stateMachineArn": machine.arn,
                        "name": machine.name,
                        "definition": snapshot.definition,
                        "roleArn": snapshot.roleArn,
                        "updateDate": snapshot.update_date,
                        "loggingConfiguration": snapshot.loggingConfiguration,
                        "tracingConfiguration": snapshot.tracingConfiguration,
                    }
                )
        raise ResourceNotFound(arn)

    patch.replace(StepFunctionResponse, "describe_state_machine_for_execution", describe_state_machine_for_execution)


register(
    Patch(
        name="interpreter-errors-have-codes",
        why=(
            "The errors of moto's Step Functions interpreter (moto.stepfunctions.parser.api: InvalidDefinition, "
            "TaskTimedOut, TaskDoesNotExist, ...) declare their code in an attribute moto's AWSError does not "
            "read, so clients got an empty error code, and TaskTimedOut()/TaskDoesNotExist(), raised without a "
            "message, crashed into HTTP 500. The patch gives them their codes and a default message, so "
            "CreateStateMachine fails with InvalidDefinition, and TaskTimedOut/TaskDoesNotExist reach the caller."
        ),
        test=_TESTS + "test_an_invalid_definition_is_refused_with_the_invalid_definition_code",
        install=_install_interpreter_errors_have_codes,
    )
)
register(
    Patch(
        name="task-token-calls-skip-starting-executions",
        why=(
            "SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat look for the token in every execution's "
            "environment, which moto creates only after the execution's thread has parsed the definition; an "
            "approval answered while another execution was starting failed with HTTP 500 (AttributeError). "
            "The patch skips executions that have no environment yet (they hold no token)."
        ),
        test=_TESTS + "test_a_task_token_call_while_another_execution_is_starting_is_answered",
        install=_install_task_token_calls_skip_starting_executions,
    )
)
register(
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
        test=_TESTS + "test_stopping_an_execution_that_waits_for_a_task_token_aborts_it_at_once",
        install=_install_stop_ends_waiting_tasks,
    )
)
register(
    Patch(
        name="unnamed-executions-get-a-uuid",
        why=(
            "StartExecution without a name gave moto's interpreter the name None: the ARN ended in ':None', "
            "$$.Execution.Name was null and a second unnamed start failed with ExecutionAlreadyExists. AWS names "
            "such an execution with a UUID; the patch does too, and refuses a name AWS refuses (white space, "
            "brackets, wildcards, control characters, over 80 characters) with InvalidName as moto's plain backend "
            "does."
        ),
        test=_CONFORMANCE + "test_an_execution_started_without_a_name_is_named_with_a_uuid",
        install=_install_unnamed_executions_get_a_uuid,
    )
)
register(
    Patch(
        name="states-errors-keep-their-names",
        why=(
            "An error named States.* (States.Timeout, States.TaskFailed, States.QueryEvaluationError ...) that "
            "ended a Parallel branch or a Map iteration was re-raised by moto as a custom error name, which "
            "refuses the States. prefix (ValueError): a Parallel's Catch failed the whole execution, and a Map "
            "renamed the error States.Runtime. Fail states had the same problem. The patch keeps the States "
            "error's name, so the enclosing state's Retry and Catch match it as in AWS."
        ),
        test=_CONFORMANCE + "test_a_states_error_leaves_a_branch_or_an_iteration_with_its_name",
        install=_install_states_errors_keep_their_names,
    )
)
register(
    Patch(
        name="execution-output-is-json-text",
        why=(
            "moto's DescribeExecution returns an output that is a string as it is ('text'), not as JSON text "
            "('\"text\"'), and failed (HTTP 500) on an output holding a datetime. AWS's output is always JSON "
            "text; the patch stores the execution's output as JSON text when it ends."
        ),
        test=_CONFORMANCE + "test_the_output_of_a_string_is_json_text",
        install=_install_execution_output_is_json_text,
    )
)
register(
    Patch(
        name="context-object-fields",
        why=(
            "moto's context object lacks $$.Execution.RedriveCount (0 until an execution is redriven) and, "
            "outside Task/Map/Parallel states, $$.State.RetryCount, which the Step Functions developer guide's "
            "'Context object' page lists (a path to either failed with States.Runtime), and gave "
            "$$.Execution.StartTime as a datetime (DescribeExecution then failed to serialise it) and "
            "$$.State.EnteredTime with +00:00. The patch adds both fields and writes both times as AWS does "
            "(ISO-8601 UTC with milliseconds and Z)."
        ),
        test=_CONFORMANCE + "test_the_context_object_has_every_documented_field",
        install=_install_context_object_fields,
    )
)
register(
    Patch(
        name="s3-listing-items-have-epoch-seconds",
        why=(
            "A distributed Map reading an S3 listing (ItemReader arn:aws:states:::s3:listObjectsV2) passed each "
            "object's LastModified on as a Python datetime, so DescribeExecution and the history failed to "
            "serialise it. AWS gives each item's LastModified as epoch seconds (the Map state's ItemReader "
            "documentation shows 'LastModified': 1668699881); the patch does too."
        ),
        test=_CONFORMANCE + "test_a_distributed_map_over_an_s3_listing_can_be_described",
        install=_install_s3_listing_items_have_epoch_seconds,
    )
)
register(
    Patch(
        name="state-machine-for-execution-is-its-snapshot",
        why=(
            "DescribeStateMachineForExecution answered the state machine as it is now, so after an "
            "UpdateStateMachine every earlier execution seemed to have run the new definition. AWS answers the "
            "definition the execution ran; moto's interpreter keeps that copy on the execution, and the patch "
            "answers from it."
        ),
        test="tests/unit/stepfunctions/test_conformance_executions.py::"
        "test_describe_state_machine_for_execution_answers_the_definition_the_execution_ran",
        install=_install_state_machine_for_execution_is_its_snapshot,
    )
)
register(
    Patch(
        name="definitions-are-parsed-once",
        why=(
            "moto's interpreter parses the definition with its ANTLR grammar at CreateStateMachine and again at "
            "every StartExecution, before ExecutionStarted: 0.3 s of pure Python for the pipeline's definition, "
            "on every run's path from upload to email (AWS starts an execution in milliseconds). The patch keeps "
            "the syntax tree of the last 8 definitions used and builds each execution's components from it afresh, "
            "so executions share no state; a definition that does not parse is refused as before."
        ),
        test=_TESTS + "test_a_definition_is_parsed_once_and_each_execution_gets_its_own_components",
        install=_install_definitions_are_parsed_once,
    )
)
