"""``RedriveExecution`` in the local cloud: a failed Standard execution continues from the state that failed.

moto 5.2.5 has no RedriveExecution. AWS's API reference and the developer guide's "Redriving
executions" page say what it does, and this module does the same with moto's interpreter:

- the execution keeps its ARN, input and definition; it continues from the top-level state that
  was running when it failed, timed out or was aborted, with that state's input and the variables
  as they were when the state was entered (the states before it are not run again);
- inside that state, a Parallel branch or an inline Map iteration that succeeded is not run again:
  its recorded output is reused, and only the branches and iterations that failed, were aborted or
  never ran are run (each from its first state). Branches and iterations of a Parallel or Map nested
  inside another are run again whole, as is a distributed Map;
- the history is kept and continues with an ``ExecutionRedriven`` event (``redriveCount``); the
  context object has ``$$.Execution.RedriveCount`` and ``RedriveTime``; the state machine's
  ``TimeoutSeconds`` counts again from the redrive;
- DescribeExecution answers ``redriveCount``, ``redriveDate``, ``redriveStatus`` and
  ``redriveStatusReason``; ListExecutions answers ``redriveCount``/``redriveDate`` per execution
  and takes ``redriveFilter``;
- a ``clientToken`` used in the last 15 minutes for one of the last 10 redrives answers that
  redrive again without redriving.

Refusals (``ExecutionNotRedrivable``) use the ``redriveStatusReason`` texts AWS documents; three
have no documented wording and are marked ``INFERRED``. moto is imported inside functions only.
"""

from __future__ import annotations

import copy
import datetime
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from stepml.local import botocore_models
from stepml.local.patching import Patch, register
from stepml.utils import iso_utc

#: AWS's quota: an execution can be redriven at most this many times.
MAX_REDRIVES: Final[int] = 1000
#: How long after it stopped an execution can be redriven.
REDRIVABLE_PERIOD: Final[datetime.timedelta] = datetime.timedelta(days=14)
#: The maximum open time of an execution (a year).
MAX_EXECUTION_TIME: Final[datetime.timedelta] = datetime.timedelta(days=365)
#: A redrive appends at least two events to the history, which holds at most 25,000.
HISTORY_EVENT_LIMIT: Final[int] = 24_999
#: The client tokens AWS remembers per execution, and for how long.
CLIENT_TOKENS: Final[int] = 10
CLIENT_TOKEN_LIFETIME: Final[datetime.timedelta] = datetime.timedelta(minutes=15)
REDRIVE_FILTERS: Final[tuple[str, ...]] = ("REDRIVEN", "NOT_REDRIVEN")

_TESTS = "tests/unit/stepfunctions/test_redrive.py::"
_UNSET: Any = object()


class RedriveError(Exception):
    """A RedriveExecution (or ListExecutions filter) AWS refuses: ``code`` is AWS's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Checkpoint:
    """The top-level state an execution was running: where a redrive continues."""

    state: str
    input: Any
    variables: dict[str, Any]
    #: Outputs of the branches and iterations of this state that succeeded, by (type, state, index).
    finished: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)


@dataclass
class RedriveRecord:
    """What one execution's redrives need; it lives as long as the execution's event history."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    checkpoint: Checkpoint | None = None
    reuse: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    keep_reuse: bool = False
    count: int = 0
    date: datetime.datetime | None = None
    tokens: deque[tuple[str, datetime.datetime, datetime.datetime]] = field(
        default_factory=lambda: deque(maxlen=CLIENT_TOKENS)
    )

    def enter(self, state: str, state_input: Any, variables: dict[str, Any]) -> None:
        """A top-level state starts: it becomes the checkpoint; reuse holds only for the redriven state."""
        with self.lock:
            if self.keep_reuse:
                self.keep_reuse = False
            else:
                self.reuse = {}
            self.checkpoint = Checkpoint(state, copy.deepcopy(state_input), copy.deepcopy(variables))

    def finish(self, key: tuple[str, str, int], output: Any) -> None:
        """A branch or iteration of the current top-level state succeeded with ``output``."""
        with self.lock:
            if self.checkpoint is not None:
                self.checkpoint.finished.setdefault(key, []).append(copy.deepcopy(output))

    def reused(self, key: tuple[str, str, int]) -> Any:
        """The output to reuse for ``key`` in a redrive (``_UNSET``: run it)."""
        with self.lock:
            return copy.deepcopy(self.reuse[key]) if key in self.reuse else _UNSET


# Keyed by the execution's EventManager, which every frame of the execution shares and which a
# redrive keeps (the history continues), so the record outlives each attempt's environment.
_RECORDS: weakref.WeakKeyDictionary[Any, RedriveRecord] = weakref.WeakKeyDictionary()
_RECORDS_LOCK = threading.Lock()
# Keys of the Parallel branches of top-level states, by the branch's environment frame.
_BRANCH_KEYS: weakref.WeakKeyDictionary[Any, tuple[str, str, int]] = weakref.WeakKeyDictionary()
_PARALLEL = threading.local()
# The records of the executions that have been redriven, by moto's Execution.
_REDRIVEN: weakref.WeakKeyDictionary[Any, RedriveRecord] = weakref.WeakKeyDictionary()
# How deep each environment frame is below its execution's: a state of the top level evaluates its
# Map iterations and Parallel branches in a frame one below (moto's timeout frame).
_DEPTH: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_TOP_LEVEL_STATE_FRAME: Final[int] = 1


def record_of(event_manager: Any) -> RedriveRecord:
    """The redrive record of the execution whose history ``event_manager`` keeps."""
    with _RECORDS_LOCK:
        record = _RECORDS.get(event_manager)
        if record is None:
            record = _RECORDS[event_manager] = RedriveRecord()
        return record


def _record_of_execution(execution: Any) -> RedriveRecord | None:
    redriven = _REDRIVEN.get(execution)
    if redriven is not None:  # its redriven attempt may not have made its environment yet
        return redriven
    worker = getattr(execution, "exec_worker", None)
    env = getattr(worker, "env", None)
    return record_of(env.event_manager) if env is not None else None


# -- the interpreter: checkpoints and reuse ------------------------------------------------------


def _install_frame_depths(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.eval.environment import Environment

    for name in ("open_frame", "open_inner_frame"):
        original = getattr(Environment, name)

        def open_frame(self, event_history_context=None, __original=original):  # type: ignore[no-untyped-def]
            frame = __original(self, event_history_context)
            _DEPTH[frame] = _DEPTH.get(self, 0) + 1
            return frame

        patch.replace(Environment, name, open_frame)


def _is_top_level(env: Any) -> bool:
    return _DEPTH.get(env, 0) == _TOP_LEVEL_STATE_FRAME


def _install_checkpoints(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker import (
        IterationWorker,
    )
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField

    _install_frame_depths(patch)

    original_eval = CommonStateField.eval

    def eval(self, env):  # type: ignore[no-untyped-def]
        if not env.is_frame():
            variables = dict(env.variable_store._inner_scope)
            record_of(env.event_manager).enter(self.name, env.states.get_input(), variables)
        return original_eval(self, env)

    original_job = IterationWorker._eval_job

    def _eval_job(self, env, job):  # type: ignore[no-untyped-def]
        # Only the iterations of a top-level Map are keyed unambiguously by (state, index).
        if not _is_top_level(self._env):
            return original_job(self, env, job)
        record = record_of(env.event_manager)
        key = ("Map", self._work_name, job.job_index)
        reused = record.reused(key)
        if reused is not _UNSET:
            job.job_output = reused
        else:
            original_job(self, env, job)
        if not isinstance(job.job_output, BaseException):
            record.finish(key, job.job_output)
        return None

    patch.replace(CommonStateField, "eval", eval)
    patch.replace(IterationWorker, "_eval_job", _eval_job)


def _install_parallel_branches(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branch_worker import BranchWorker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branches_decl import (
        BranchesDecl,
        BranchWorkerPool,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded

    original_body = BranchesDecl._eval_body

    def _eval_body(self, env):  # type: ignore[no-untyped-def]
        # The branch workers are made on this thread, in order: number them for their keys.
        state = env.states.context_object.context_object_data.get("State") or {}
        _PARALLEL.branches = [state.get("Name", ""), 0] if _is_top_level(env) else None
        try:
            return original_body(self, env)
        finally:
            _PARALLEL.branches = None

    original_init = BranchWorker.__init__

    def __init__(self, branch_worker_comm, program, env):  # type: ignore[no-untyped-def]
        original_init(self, branch_worker_comm, program, env)
        branches = getattr(_PARALLEL, "branches", None)
        if branches is not None:
            _BRANCH_KEYS[env] = ("Parallel", branches[0], branches[1])
            branches[1] += 1

    original_routine = BranchWorker._thread_routine

    def _thread_routine(self):  # type: ignore[no-untyped-def]
        key = _BRANCH_KEYS.get(self.env)
        reused = record_of(self.env.event_manager).reused(key) if key is not None else _UNSET
        if reused is _UNSET:
            return original_routine(self)
        self.env.states.reset(input_value=reused)
        self.env.set_ended()
        self._branch_worker_comm.on_terminated(env=self.env)
        return None

    original_terminated = BranchWorkerPool.on_terminated

    def on_terminated(self, env):  # type: ignore[no-untyped-def]
        key = _BRANCH_KEYS.get(env)
        if key is not None and isinstance(env.program_state(), ProgramEnded):
            record_of(env.event_manager).finish(key, env.states.get_input())
        return original_terminated(self, env)

    patch.replace(BranchesDecl, "_eval_body", _eval_body)
    patch.replace(BranchWorker, "__init__", __init__)
    patch.replace(BranchWorker, "_thread_routine", _thread_routine)
    patch.replace(BranchWorkerPool, "on_terminated", on_terminated)


# -- the API -------------------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _is_express(execution: Any) -> bool:
    # moto's simulated executions (no parser) carry no state machine: those are Standard.
    machine_type = getattr(getattr(execution, "state_machine", None), "type", None) or "STANDARD"
    return str(getattr(machine_type, "value", machine_type)) == "EXPRESS"


def not_redrivable_reason(execution: Any, now: datetime.datetime | None = None) -> str | None:
    """Why ``execution`` cannot be redriven now (AWS's ``redriveStatusReason``), or None if it can."""
    now = now or _now()
    if _is_express(execution):
        return "Execution of an EXPRESS state machine cannot be redriven"  # INFERRED
    status = execution.status
    if status in ("RUNNING", "SUCCEEDED"):
        return f"Execution is {status} and cannot be redriven"
    record = _record_of_execution(execution)
    if record is not None and record.count >= MAX_REDRIVES:
        return f"Execution has been redriven the maximum number of times ({MAX_REDRIVES})"  # INFERRED
    stop_date = getattr(execution, "stop_date", None)
    if stop_date is not None and now - _aware(stop_date) > REDRIVABLE_PERIOD:
        return "Execution redrivable period exceeded"
    if now - _aware(execution.start_date) > MAX_EXECUTION_TIME:
        return "Execution has exceeded the max execution time"
    worker = getattr(execution, "exec_worker", None)
    env = worker.env if worker is not None else None
    if env is None:
        return "Execution has not started and cannot be redriven"  # INFERRED: a moment after StartExecution
    if len(env.event_manager.get_event_history()) >= HISTORY_EVENT_LIMIT:
        return "Execution history event limit exceeded"
    return None


def redrive_fields(execution: Any) -> dict[str, Any]:
    """DescribeExecution's redrive members for ``execution``."""
    record = _record_of_execution(execution)
    fields: dict[str, Any] = {"redriveCount": record.count if record is not None else 0}
    if record is not None and record.date is not None:
        fields["redriveDate"] = record.date
    reason = not_redrivable_reason(execution)
    fields["redriveStatus"] = "REDRIVABLE" if reason is None else "NOT_REDRIVABLE"
    if reason is not None:
        fields["redriveStatusReason"] = reason
    return fields


def redrive(execution: Any, client_token: str | None = None) -> datetime.datetime:
    """Redrive ``execution`` (moto's parser Execution) and answer its ``redriveDate``; raise ``RedriveError``."""
    now = _now()
    record = _record_of_execution(execution)
    if record is not None and client_token:
        with record.lock:
            for token, used, date in record.tokens:
                if token == client_token and now - used <= CLIENT_TOKEN_LIFETIME:
                    return date
    reason = not_redrivable_reason(execution, now)
    if reason is not None or record is None:
        raise RedriveError("ExecutionNotRedrivable", reason or "Execution cannot be redriven")
    with record.lock:
        record.count += 1
        record.date = now
        if client_token:
            record.tokens.append((client_token, now, now))
        checkpoint = record.checkpoint
        record.reuse = {
            key: outputs[0]
            for key, outputs in (checkpoint.finished if checkpoint is not None else {}).items()
            if all(output == outputs[0] for output in outputs)
        }
        record.keep_reuse = True
    _restart(execution, record, checkpoint, now)
    return now


def _restart(execution: Any, record: RedriveRecord, checkpoint: Checkpoint | None, now: datetime.datetime) -> None:
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.utils import TMP_THREADS

    _REDRIVEN[execution] = record
    old_env = execution.exec_worker.env
    # An aborted execution's history was closed to all but ExecutionAborted (stop-ends-waiting-tasks).
    vars(old_env.event_manager).pop("add_event", None)
    worker = execution._get_start_execution_worker()
    execution.exec_worker = worker
    execution.exec_status = ExecutionStatus.RUNNING
    execution.stop_date = execution.error = execution.cause = execution.output = None
    thread = threading.Thread(
        target=_run_redriven, args=(worker, old_env.event_manager, record, checkpoint, now), daemon=True
    )
    TMP_THREADS.append(thread)
    thread.start()


def _run_redriven(worker: Any, event_manager: Any, record: RedriveRecord, checkpoint: Any, now: Any) -> None:
    from moto.stepfunctions.parser.api import ExecutionRedrivenEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.flow.start_at import StartAt
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext

    program = worker._get_evaluation_entrypoint()
    env = worker._get_evaluation_environment()
    env.event_manager = event_manager
    execution_data = env.states.context_object.context_object_data["Execution"]
    execution_data["RedriveCount"] = record.count
    execution_data["RedriveTime"] = iso_utc(now)
    if checkpoint is not None:
        program.start_at = StartAt(checkpoint.state)
        env.states.reset(input_value=copy.deepcopy(checkpoint.input))
        env.variable_store._inner_scope.update(copy.deepcopy(checkpoint.variables))
    history = event_manager.get_event_history()
    env.event_history_context = EventHistoryContext(previous_event_id=history[-1]["id"] if history else 0)
    worker.env = env
    event_manager.add_event(
        context=env.event_history_context,
        event_type=HistoryEventType.ExecutionRedriven,
        event_details=EventDetails(
            executionRedrivenEventDetails=ExecutionRedrivenEventDetails(redriveCount=record.count)
        ),
    )
    program.eval(env)
    worker._execution_communication.terminated()


def _install_redrive_execution_answers(patch: Patch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def redrive_execution(self):  # type: ignore[no-untyped-def]
        params = {name: self._get_param(name) for name in ("executionArn", "clientToken")}
        problems = botocore_models.request_problems(
            "stepfunctions", "RedriveExecution", {name: value for name, value in params.items() if value is not None}
        )
        if problems:
            raise JsonRESTError("ValidationException", botocore_models.validation_message("RedriveExecution", problems))
        execution = self.stepfunction_backend.describe_execution(params["executionArn"])
        try:
            date = redrive(execution, params["clientToken"])
        except RedriveError as exc:
            raise JsonRESTError(exc.code, exc.message) from exc
        return ActionResult({"redriveDate": date})

    original_describe = StepFunctionResponse.describe_execution

    def describe_execution(self):  # type: ignore[no-untyped-def]
        result = original_describe(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        result.result.update(redrive_fields(execution))
        return result

    original_list = StepFunctionResponse.list_executions

    def list_executions(self):  # type: ignore[no-untyped-def]
        wanted = self._get_param("redriveFilter")
        if wanted is not None and wanted not in REDRIVE_FILTERS:
            raise JsonRESTError(
                "ValidationException",
                f"1 validation error detected: Value '{wanted}' at 'redriveFilter' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(REDRIVE_FILTERS)}]",
            )
        result = original_list(self)
        items = []
        for item in result.result["executions"]:
            record = _record_of_execution(self.stepfunction_backend.describe_execution(item["executionArn"]))
            count = record.count if record is not None else 0
            if wanted is not None and (count > 0) != (wanted == "REDRIVEN"):
                continue
            item["redriveCount"] = count
            if record is not None and record.date is not None:
                item["redriveDate"] = record.date
            items.append(item)
        result.result["executions"] = items
        return result

    patch.replace(StepFunctionResponse, "redrive_execution", redrive_execution)
    patch.replace(StepFunctionResponse, "describe_execution", describe_execution)
    patch.replace(StepFunctionResponse, "list_executions", list_executions)


register(
    Patch(
        name="redrive-checkpoints",
        why=(
            "RedriveExecution continues a failed execution from the state that failed, and inside a Parallel or "
            "Map state reruns only the branches and iterations that did not succeed. moto's interpreter keeps "
            "neither; the patch records, per execution, the top-level state being run (its input and variables) "
            "and the outputs of the branches and iterations of that state that succeeded, and a redriven run "
            "reuses those outputs instead of running them again."
        ),
        test=_TESTS + "test_a_redriven_map_reruns_only_the_iterations_that_failed",
        install=_install_checkpoints,
    )
)
register(
    Patch(
        name="redrive-parallel-branches",
        why=(
            "A redriven Parallel state reruns only the branches that failed or were aborted (AWS's RedriveExecution "
            "reference). moto's branch workers know neither their index nor their state; the patch numbers the "
            "branches of a top-level Parallel, records each one that succeeds, and a redriven run answers a "
            "recorded branch with its output without running it."
        ),
        test=_TESTS + "test_a_redriven_parallel_reruns_only_the_branch_that_failed",
        install=_install_parallel_branches,
    )
)
register(
    Patch(
        name="redrive-execution-answers",
        why=(
            "moto has no RedriveExecution (HTTP 500), and its DescribeExecution and ListExecutions answer no "
            "redrive members. The patch redrives a FAILED, TIMED_OUT or ABORTED Standard execution from the state "
            "that failed (same ARN, history continued with ExecutionRedriven, $$.Execution.RedriveCount and "
            "RedriveTime), refuses what AWS refuses with ExecutionNotRedrivable (RUNNING, SUCCEEDED, EXPRESS, "
            "older than 14 days, 1000 redrives), honours clientToken, and answers redriveCount, redriveDate, "
            "redriveStatus and redriveStatusReason, and ListExecutions' redriveFilter."
        ),
        test=_TESTS + "test_a_failed_execution_is_redriven_from_the_state_that_failed",
        install=_install_redrive_execution_answers,
    )
)
