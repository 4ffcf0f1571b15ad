"""Lint of statemachine/pipeline.asl.json: it reads well in Workflow Studio and fails in one place.

Four rules, each a function returning messages that name the offending state:

- every Task and Choice has a Comment saying what it does for a reader of the graph;
- every cycle of the state graph is a counted wait: a Pass adds to a counter with
  ``States.MathAdd`` and a Choice leaves the cycle once the counter reaches a cap;
- every Task's catch-all leads into the one cleanup path ("Record failure") through a Pass
  that names the failed step in ``$.failed_step``, so lineage records the step the Catch
  named; the cleanup path's own Tasks stay inside it, and a Task whose catch-all keeps its
  error beside ``$.error`` (``$.cleanup_error``, ``$.notify_error``) is a warning the run goes on past;
- no two states do the same thing where one shared state would do (at least, one delete
  pair for the test endpoint, and one delete of a serverless test endpoint's model, serve every path).

Each rule is also given a small bad definition, to show its message names the state.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from stepml.lineage import STEP_TITLES
from tests.helpers import REPO_ROOT

ASL_PATH = REPO_ROOT / "statemachine/pipeline.asl.json"
#: The one entry of the cleanup path; every failure reaches it through a step-naming Pass.
FAILURE_ENTRY = "Record failure"
FAILED_STEP_PATH = "$.failed_step"
#: Where the failure entry writes the failure: a Choice that tests it first routes a failed run.
FAILURE_MARK = "$.failure"
#: Calls made once in the definition: every path that needs them shares the state.
SHARED_CALLS = (
    "arn:aws:states:::aws-sdk:sagemaker:deleteEndpoint",
    "arn:aws:states:::aws-sdk:sagemaker:deleteEndpointConfig",
    # The serverless test endpoint's own model, deleted on the same cleanup path.
    "arn:aws:states:::aws-sdk:sagemaker:deleteModel",
)
#: Choice comparisons that end a counted loop once its counter reaches the cap.
CAP_COMPARISONS = (
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "NumericGreaterThanPath",
    "NumericGreaterThanEqualsPath",
)
#: A Standard workflow's own limit when the definition sets no TimeoutSeconds (one year).
STANDARD_MAX_SECONDS = 365 * 24 * 3600
_MATH_ADD = re.compile(r"^States\.MathAdd\(\s*(\$[\w.]+)\s*,")


# --- the graph ---------------------------------------------------------------------------


def _targets(state: dict[str, Any]) -> list[str]:
    found = [state[key] for key in ("Next", "Default") if key in state]
    found += [rule["Next"] for rule in state.get("Choices", [])]
    found += [catch["Next"] for catch in state.get("Catch", [])]
    return found


def _edges(states: dict[str, Any], name: str, failed: bool) -> list[tuple[str, bool]]:
    """Where ``name`` goes, and whether the run has failed there: past the failure entry it has
    (its ResultPath holds the failure), and a Choice whose first rule finds that mark takes it."""
    failed = failed or name == FAILURE_ENTRY
    rules = states[name].get("Choices", [])
    if failed and rules and rules[0].get("Variable") == FAILURE_MARK and rules[0].get("IsPresent") is True:
        return [(rules[0]["Next"], True)]
    return [(target, failed) for target in _targets(states[name])]


def _walk(states: dict[str, Any], start: tuple[str, bool]) -> set[tuple[str, bool]]:
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current not in seen and current[0] in states:
            seen.add(current)
            todo.extend(_edges(states, *current))
    return seen


def _reachable(states: dict[str, Any], start: str) -> set[str]:
    return {name for name, _ in _walk(states, (start, False))}


def _cycles(states: dict[str, Any]) -> list[list[str]]:
    """The strongly connected parts of the graph that loop (a state that reaches itself). The
    shared test endpoint cleanup lies on the run's way to the gate and on the failure path, so the
    graph goes from any later failure back to the gate; no run can, as the failure mark routes it
    out, so the graph walked is of (state, failed yet?)."""
    nodes = [(name, failed) for failed in (False, True) for name in states]
    reach = {node: set().union(*(_walk(states, t) for t in _edges(states, *node))) for node in nodes}
    cycles, placed = [], set()
    for node in nodes:
        if node in placed or node not in reach[node]:
            continue
        part = [other for other in nodes if other in reach[node] and node in reach[other]]
        placed.update(part)
        names = list(dict.fromkeys(name for name, _ in part))
        if names not in cycles:  # the same loop, run before and after a failure
            cycles.append(names)
    return cycles


def _rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A Choice rule and the comparisons nested in its And/Or."""
    nested = [inner for key in ("And", "Or") for child in rule.get(key, []) for inner in _rules(child)]
    return [rule, *nested]


# --- rules -------------------------------------------------------------------------------


def missing_comments(states: dict[str, Any]) -> list[str]:
    """Tasks and Choices without a Comment for the reader of the graph."""
    return [
        f"{state['Type']} state {name!r} has no Comment saying what it does"
        for name, state in states.items()
        if state["Type"] in ("Task", "Choice") and not str(state.get("Comment") or "").strip()
    ]


def _counters(states: dict[str, Any], part: list[str]) -> set[str]:
    """The paths a Pass in ``part`` adds to with States.MathAdd (the counter it keeps)."""
    counters = set()
    for name in part:
        state = states[name]
        if state["Type"] != "Pass" or not isinstance(state.get("Parameters"), dict):
            continue
        for key, value in state["Parameters"].items():
            match = _MATH_ADD.match(value) if key.endswith(".$") and isinstance(value, str) else None
            if match and match.group(1) == f"{state.get('ResultPath', '$')}.{key[:-2]}":
                counters.add(match.group(1))
    return counters


def _caps(states: dict[str, Any], part: list[str]) -> set[str]:
    """The variables a Choice in ``part`` compares against a cap on a branch that leaves the cycle."""
    caps = set()
    for name in part:
        for rule in states[name].get("Choices", []):
            if rule["Next"] in part:
                continue
            caps.update(r["Variable"] for r in _rules(rule) if "Variable" in r and set(r) & set(CAP_COMPARISONS))
    return caps


def uncapped_cycles(states: dict[str, Any]) -> list[str]:
    """Cycles without a counter that a Choice in the same cycle caps."""
    problems = []
    for part in _cycles(states):
        if not _counters(states, part) & _caps(states, part):
            problems.append(
                f"cycle through {', '.join(repr(name) for name in part)} has no capped counter: add a Pass that "
                "counts with States.MathAdd and a Choice that leaves the cycle when the count reaches a cap"
            )
    return problems


def _naming_problem(states: dict[str, Any], name: str) -> str | None:
    state = states.get(name, {})
    if state.get("Type") != "Pass" or state.get("ResultPath") != FAILED_STEP_PATH:
        return f"{name!r} is not a Pass that sets {FAILED_STEP_PATH}"
    if state.get("Result") not in STEP_TITLES:
        return f"{name!r} names {state.get('Result')!r}, not a lineage step ({', '.join(STEP_TITLES)})"
    if state.get("Next") != FAILURE_ENTRY:
        return f"{name!r} goes to {state.get('Next')!r}, not to {FAILURE_ENTRY!r}"
    return None


def catch_problems(states: dict[str, Any]) -> list[str]:
    """Failures that bypass the one cleanup path or reach it without naming their step."""
    if states.get(FAILURE_ENTRY, {}).get("Type") != "Task":
        return [f"there is no Task {FAILURE_ENTRY!r} to start the cleanup path"]
    cleanup = _reachable(states, FAILURE_ENTRY)
    problems = []
    for name, state in states.items():
        if FAILURE_ENTRY in _targets(state) and _naming_problem(states, name):
            problems.append(f"{name!r} goes to {FAILURE_ENTRY!r} without naming the failed step in {FAILED_STEP_PATH}")
        if name in cleanup:
            continue
        if state["Type"] == "Pass" and state.get("ResultPath") == "$.error":
            why = _naming_problem(states, state["Next"])
            if why:
                problems.append(f"Pass {name!r} sets $.error but its Next {why}")
        if state["Type"] != "Task":
            continue
        catch_all = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        if not catch_all:
            problems.append(f"Task {name!r} has no States.ALL Catch into the cleanup path")
            continue
        if catch_all[0].get("ResultPath", "$") not in ("$", "$.error"):
            continue  # a warning (a cleanup or a notice that failed): kept beside the run, which goes on
        why = _naming_problem(states, catch_all[0]["Next"])
        if why:
            problems.append(f"Task {name!r} catches States.ALL into {catch_all[0]['Next']!r}: {why}")
    return problems


def _body(state: dict[str, Any], *, ignore: tuple[str, ...]) -> str:
    return json.dumps({k: v for k, v in state.items() if k not in ignore}, sort_keys=True)


def duplicate_states(states: dict[str, Any]) -> list[str]:
    """States that repeat another's body, Tasks that repeat another's call, and shared calls made twice."""
    problems = []
    # A Succeed state's name is the whole of it: the end the console shows.
    acting = {name: state for name, state in states.items() if state["Type"] != "Succeed"}
    for (a, first), (b, second) in itertools.combinations(acting.items(), 2):
        if _body(first, ignore=("Comment",)) == _body(second, ignore=("Comment",)):
            problems.append(f"{a!r} and {b!r} are the same state under two names: share one")
        elif first["Type"] == second["Type"] == "Task" and first.get("Parameters") is not None:
            call = ("Resource", "Parameters", "ResultSelector", "ResultPath")
            if [first.get(k) for k in call] == [second.get(k) for k in call]:
                problems.append(f"{a!r} and {b!r} make the same call: share one state")
    for resource in SHARED_CALLS:
        callers = [name for name, state in states.items() if state.get("Resource") == resource]
        if len(callers) > 1:
            problems.append(
                f"{resource.rsplit(':', 1)[-1]} is called by {', '.join(repr(c) for c in callers)}: "
                "one state must serve every path"
            )
    return problems


ALL_RULES = (missing_comments, uncapped_cycles, catch_problems, duplicate_states)


# --- the pipeline ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())["States"]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda rule: rule.__name__)
def test_the_pipeline_definition_passes(states, rule):
    assert rule(states) == []


def test_the_wait_loops_are_the_only_cycles_and_their_caps_fire_before_the_executions_timeout(states):
    asl = json.loads(ASL_PATH.read_text())
    limit = asl.get("TimeoutSeconds", STANDARD_MAX_SECONDS)
    loops = {frozenset(part) for part in _cycles(states)}
    assert loops == {
        frozenset(
            {
                "Wait for test endpoint",
                "Count test endpoint check",
                "Check test endpoint",
                "Is the test endpoint ready?",
            }
        ),
        frozenset(
            {
                "Wait for production endpoint",
                "Count production endpoint check",
                "Check production endpoint",
                "Is the production endpoint ready?",
            }
        ),
    }
    for kind in ("test", "production"):
        ready = states[f"Is the {kind} endpoint ready?"]
        [cap] = [r for r in ready["Choices"] if r.get("Variable") == "$.wait.seconds"]
        assert 0 < cap["NumericGreaterThanEquals"] < limit
        stop = states[cap["Next"]]
        assert stop["Parameters"]["Error"] == "stepml.EndpointNotReady"
        cause = stop["Parameters"]["Cause.$"]
        assert f"$.run.names.{kind}_endpoint" in cause and "$.wait.checks" in cause
        # The counter starts at the checks made before any wait: the test endpoint is checked at once.
        start = states[f"Start waiting for {kind} endpoint"]
        at_once = start["Next"] == f"Check {kind} endpoint"
        assert at_once == (kind == "test")
        assert start["Result"] == {"checks": int(at_once), "seconds": 0}


@pytest.mark.parametrize(
    ("state", "step"),
    [
        ("Resolve run", "resolve"),
        ("Preprocess data", "preprocess"),
        ("Record preprocessing", "preprocess"),
        ("Train model", "train"),
        ("Record training", "train"),
        ("Create model", "model"),
        ("Find champion", "test_endpoint"),
        ("Create test endpoint", "test_endpoint"),
        ("Check test endpoint", "test_endpoint"),
        ("Test endpoint failed", "test_endpoint"),
        ("Test endpoint not ready in time", "test_endpoint"),
        ("Evaluate model", "evaluate"),
        ("Record evaluation", "evaluate"),
        ("Request approval", "approval"),
        ("Record approval decision", "approval"),
        ("Update production endpoint", "deploy"),
        ("Deployment rolled back", "deploy"),
        ("Production endpoint not ready in time", "deploy"),
        ("Record run succeeded", "deploy"),
    ],
)
def test_each_failure_names_the_step_lineage_records(states, state, step):
    body = states[state]
    target = body["Next"] if body["Type"] == "Pass" else body["Catch"][-1]["Next"]
    assert states[target]["Result"] == step


# --- each rule on a small bad definition ---------------------------------------------------

_RETRY_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed at work"}]


def _small(**extra: dict[str, Any]) -> dict[str, Any]:
    """A good little definition: one Task, its naming Pass, the cleanup entry and the end."""
    states = {
        "Work": {
            "Type": "Task",
            "Comment": "Do the work.",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "work"},
            "Catch": _RETRY_ALL,
            "Next": "Done",
        },
        "Failed at work": {"Type": "Pass", "Result": "train", "ResultPath": FAILED_STEP_PATH, "Next": FAILURE_ENTRY},
        FAILURE_ENTRY: {
            "Type": "Task",
            "Comment": "Record it.",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "record"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "Next": "Failed",
        },
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail"},
    }
    states.update(extra)
    return states


def test_the_small_definition_is_good():
    for rule in ALL_RULES:
        assert rule(_small()) == [], rule.__name__


def test_a_task_or_choice_without_a_comment_is_named():
    states = _small(Decide={"Type": "Choice", "Choices": [], "Default": "Done"})
    del states["Work"]["Comment"]
    assert missing_comments(states) == [
        "Task state 'Work' has no Comment saying what it does",
        "Choice state 'Decide' has no Comment saying what it does",
    ]


def _poll_loop(count: dict[str, Any] | None, cap_rule: dict[str, Any] | None) -> dict[str, Any]:
    ready = {
        "Type": "Choice",
        "Comment": "Ready?",
        "Choices": [{"Variable": "$.probe", "StringEquals": "InService", "Next": "Done"}],
        "Default": "Wait",
    }
    if cap_rule:
        ready["Choices"].append(cap_rule)
    states = _small(
        Wait={"Type": "Wait", "Seconds": 1, "Next": "Count" if count else "Poll"},
        Poll={**_small()["Work"], "Comment": "Poll.", "Parameters": {"FunctionName": "poll"}, "Next": "Ready?"},
        **{"Ready?": ready},
    )
    if count:
        states["Count"] = {**count, "Next": "Poll"}
    states["Work"]["Next"] = "Wait"
    return states


COUNT = {"Type": "Pass", "Parameters": {"checks.$": "States.MathAdd($.wait.checks, 1)"}, "ResultPath": "$.wait"}
CAP = {"Variable": "$.wait.checks", "NumericGreaterThanEquals": 10, "Next": "Failed at work"}


def test_a_counted_and_capped_loop_passes():
    assert uncapped_cycles(_poll_loop(COUNT, CAP)) == []


@pytest.mark.parametrize(
    ("count", "cap"),
    [
        (None, None),  # the old poll loop: wait, describe, choice, forever
        (COUNT, None),  # counted, never capped
        (None, CAP),  # capped on a counter nothing counts
        (COUNT, {**CAP, "Variable": "$.wait.other"}),  # the cap reads another variable
        (COUNT, {**CAP, "Next": "Wait"}),  # the cap does not leave the loop
    ],
)
def test_a_loop_without_a_capped_counter_is_named(count, cap):
    [problem] = uncapped_cycles(_poll_loop(count, cap))
    assert "'Wait'" in problem and "'Poll'" in problem and "'Ready?'" in problem and "capped counter" in problem


def test_a_catch_straight_into_the_cleanup_path_is_named():
    states = _small()
    states["Work"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAILURE_ENTRY}]
    assert catch_problems(states) == [
        f"'Work' goes to {FAILURE_ENTRY!r} without naming the failed step in $.failed_step",
        f"Task 'Work' catches States.ALL into {FAILURE_ENTRY!r}: {FAILURE_ENTRY!r} is not a Pass that sets "
        "$.failed_step",
    ]


def test_a_task_without_a_catch_all_or_with_a_private_handler_is_named():
    states = _small(Other={**_small()["Work"], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]})
    states["Work"]["Catch"] = [{"ErrorEquals": ["States.Timeout"], "Next": "Failed at work"}]
    states["Work"]["Next"] = "Other"
    assert catch_problems(states) == [
        "Task 'Work' has no States.ALL Catch into the cleanup path",
        "Task 'Other' catches States.ALL into 'Done': 'Done' is not a Pass that sets $.failed_step",
    ]


def test_a_naming_pass_must_name_a_lineage_step_and_an_error_pass_must_go_through_one():
    states = _small(Broken={"Type": "Pass", "Result": {"Error": "E"}, "ResultPath": "$.error", "Next": "Done"})
    states["Failed at work"]["Result"] = "somewhere"
    states["Work"]["Next"] = "Broken"
    task, named, broken = catch_problems(states)
    assert task.startswith("Task 'Work' catches States.ALL into 'Failed at work': 'Failed at work' names 'somewhere'")
    assert named.startswith("'Failed at work' goes to 'Record failure' without naming the failed step")
    assert broken == "Pass 'Broken' sets $.error but its Next 'Done' is not a Pass that sets $.failed_step"


def test_a_second_delete_pair_is_named():
    delete = {
        "Type": "Task",
        "Comment": "Delete.",
        "Resource": SHARED_CALLS[0],
        "Parameters": {"EndpointName.$": "$.run.names.test_endpoint"},
        "Catch": _RETRY_ALL,
        "Next": "Done",
    }
    after_failure = {**delete, "Parameters": {"EndpointName.$": "$.failure.test_endpoint"}, "Next": "Failed"}
    states = _small(**{"Delete test endpoint": delete, "Delete test endpoint after failure": after_failure})
    assert duplicate_states(states) == [
        "deleteEndpoint is called by 'Delete test endpoint', 'Delete test endpoint after failure': "
        "one state must serve every path"
    ]


def test_states_that_repeat_a_body_or_a_call_are_named():
    states = _small(
        **{
            "Work again": {**_small()["Work"], "Comment": "Same work, other words."},
            "Work elsewhere": {**_small()["Work"], "Next": "Failed"},
        }
    )
    assert duplicate_states(states) == [
        "'Work' and 'Work again' are the same state under two names: share one",
        "'Work' and 'Work elsewhere' make the same call: share one state",
        "'Work again' and 'Work elsewhere' make the same call: share one state",
    ]
