"""Patches to how moto's Step Functions backend answers about executions.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): the interpreter's
errors carry their codes, task-token calls skip executions still starting, and StopExecution
ends tasks that wait for a token. moto is imported inside each ``install`` only.
"""

from __future__ import annotations

import functools

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/stepfunctions/test_interpreter.py::"


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
