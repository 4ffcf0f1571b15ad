"""How each state of an execution went, read from its definition and its history.

The statuses are the Step Functions console's graph view's: ``succeeded``, ``failed``,
``caught`` (the state failed and a Catch took over), ``running``, ``waiting`` (a
``.waitForTaskToken`` task waiting for its token), ``cancelled`` (still in progress when the
execution was stopped or timed out) and ``not-reached``. Each history event belongs to the state
whose ``...StateEntered`` event its ``previousEventId`` chain reaches, so events of states that
run at once (Parallel branches, Map iterations) are told apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepml.local.console.graph import sub_definitions

STATUSES = ("succeeded", "failed", "caught", "running", "waiting", "cancelled", "not-reached")
STATUS_TITLES = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "caught": "Caught error",
    "running": "In progress",
    "waiting": "Waiting for task token",
    "cancelled": "Cancelled",
    "not-reached": "Not reached",
}


@dataclass
class StateRun:
    """One state's last visit (``visits`` counts Map iterations and loops)."""

    name: str
    type: str
    resource: str = ""
    status: str = "not-reached"
    entered: datetime | None = None
    exited: datetime | None = None
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    visits: int = 0
    retries: int = 0
    failed: bool = False

    def seconds(self, now: datetime | None = None) -> float | None:
        """Time in the state: to its exit, else (still in it) to ``now``."""
        end = self.exited or now
        if self.entered is None or end is None:
            return None
        return round((end - self.entered).total_seconds(), 3)


def all_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, state) of every state, nested branches and item processors included.
    State names are unique in a whole state machine, as Step Functions requires."""
    for name, state in (definition.get("States") or {}).items():
        yield name, state
        for inner in sub_definitions(state):
            yield from all_states(inner)


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails")), {})


def _owners(events: list[Mapping[str, Any]]) -> dict[int, str]:
    """The state each event belongs to, by event id (events before any state are left out).

    An event follows its ``previousEventId`` chain to the nearest ``...StateEntered`` event; a
    ``ParallelState...``/``MapState...`` event to the nearest entry of a state of its own kind,
    since its ``previousEventId`` may point into a branch (the branch's last event).
    """
    by_id = {event["id"]: event for event in events}
    owner: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        wanted = kind.split("State", 1)[0] + "StateEntered" if "State" in kind else None
        current: Mapping[str, Any] | None = event
        while current is not None:
            if current["type"].endswith("StateEntered") and wanted in (None, current["type"]):
                owner[event["id"]] = current["stateEnteredEventDetails"]["name"]
                break
            if wanted is None and current["id"] in owner and current is not event:
                owner[event["id"]] = owner[current["id"]]
                break
            current = by_id.get(current.get("previousEventId") or 0)
    return owner


def _is_failure(kind: str) -> bool:
    return kind != "ExecutionFailed" and kind.endswith(("Failed", "TimedOut")) and not kind.startswith("MapIteration")


def _apply(run: StateRun, event: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    kind, details = event["type"], _details(event)
    if kind.endswith("StateEntered"):
        run.visits += 1
        run.entered, run.exited, run.output = event["timestamp"], None, None
        run.input, run.failed, run.error, run.cause = details.get("input"), False, None, None
        if kind == "FailStateEntered":
            run.failed, run.error, run.cause = True, state.get("Error"), state.get("Cause")
    elif kind.endswith("StateExited"):
        run.exited, run.output = event["timestamp"], details.get("output")
    elif _is_failure(kind):
        run.failed = True
        run.error = details.get("error", run.error or kind)
        run.cause = details.get("cause", run.cause)
    elif run.failed and run.exited is None and kind.endswith(("Scheduled", "Started")):
        run.failed, run.retries = False, run.retries + 1  # a Retry: the state tries again


def state_runs(
    definition: Mapping[str, Any], events: list[Mapping[str, Any]], execution_status: str
) -> dict[str, StateRun]:
    """Every state of ``definition`` with how it went in the execution ``events`` tell."""
    states = dict(all_states(definition))
    runs = {
        name: StateRun(name, str(state.get("Type", "")), str(state.get("Resource", "")))
        for name, state in states.items()
    }
    owners = _owners(events)
    for event in events:
        name = owners.get(event["id"])
        if name in runs:
            _apply(runs[name], event, states[name])
            if event["type"] == "ExecutionFailed" and runs[name].error is None:
                details = _details(event)
                runs[name].failed, runs[name].error, runs[name].cause = True, details.get("error"), details.get("cause")
    for run in runs.values():
        run.status = _status(run, execution_status)
    return runs


def _status(run: StateRun, execution_status: str) -> str:
    if run.visits == 0:
        return "not-reached"
    if run.failed:
        return "caught" if run.exited is not None else "failed"
    if run.exited is not None:
        return "succeeded"
    if execution_status != "RUNNING":
        return "cancelled"
    return "waiting" if run.resource.endswith(".waitForTaskToken") else "running"


def counts(runs: Mapping[str, StateRun]) -> dict[str, int]:
    """How many states are in each status (statuses with none left out)."""
    found: dict[str, int] = {}
    for run in runs.values():
        found[run.status] = found.get(run.status, 0) + 1
    return {status: found[status] for status in STATUSES if status in found}
