"""Edits Workflow Studio makes, each applied to a copy of the pipeline and run end to end.

Each edit is a small function over ``statemachine/pipeline.asl.json`` (placeholders kept): add a
state, rename one, change a Retry, turn a state into JSONata with ``Assign`` (read by a later
JSONata state), wrap two steps in a Parallel. Every copy must pass ``stepml asl validate``'s checks
and the local cloud's ValidateStateMachineDefinition, is filled as ``stepml asl export`` fills it
(the stack's own values), and runs as the stack's state machine: UpdateStateMachine with the copy,
then StartExecution with the S3 event EventBridge would send. An execution keeps the definition
it started with (as in AWS), so the five copies run at once, each on its own upload; the upload
rule is disabled meanwhile so the uploads start no other execution. Approvals go one at a time
(every run deploys to the same production endpoint) and each run must end as the unedited
pipeline does: SUCCEEDED, its model serving in production. What the local cloud held for each run
is read with DescribeStateMachine right after its UpdateStateMachine, and each execution's
DescribeStateMachineForExecution answers the copy that execution ran, as AWS does.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from stepml.cli.asl_lint import template_facts
from stepml.cli.asl_lint import validate as asl_validate
from stepml.cli.asl_substitutions import fill, parse_definition, substitutions_from_definitions
from stepml.cli.runs import approve_link
from stepml.local.events import s3_object_created_event
from stepml.sample_data import churn_csv
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e
DEFINITION = REPO_ROOT / "statemachine/pipeline.asl.json"
TEMPLATE = REPO_ROOT / "template.yaml"
DATASET = "studio"
ROWS = 800

ADDED = "Note the Studio edit"
RENAMED = ("Train model", "Train XGBoost model")
RETRY = {"IntervalSeconds": 3, "MaxAttempts": 5, "BackoffRate": 1.5, "MaxDelaySeconds": 30}
# The production endpoint's loop waits before its first check, so its counter runs in every run (the
# test endpoint's is checked at once and counts only when the endpoint is not yet InService).
JSONATA_WRITER, JSONATA_READER = "Start waiting for production endpoint", "Count production endpoint check"
PARALLEL = "Record training and create model"


# --- the edits ----------------------------------------------------------------------------


def add_state(definition: dict[str, Any]) -> dict[str, Any]:
    """A Pass after 'Record preprocessing' that adds ``$.studio``, wired into the flow."""
    states = definition["States"]
    before = states["Record preprocessing"]
    added = {
        "Type": "Pass",
        "Comment": "Added in Workflow Studio: note which upload was preprocessed.",
        "Parameters": {"edited_by": "workflow-studio", "upload.$": "$.run.input.uri"},
        "ResultPath": "$.studio",
        "Next": before["Next"],
    }
    before["Next"] = ADDED
    definition["States"] = _insert_after(states, "Record preprocessing", ADDED, added)
    return definition


def rename_state(definition: dict[str, Any], old: str = RENAMED[0], new: str = RENAMED[1]) -> dict[str, Any]:
    """Rename a state: its key (in place) and every StartAt, Next and Default that names it."""

    def follow(node: Any) -> Any:
        if isinstance(node, list):
            return [follow(item) for item in node]
        if not isinstance(node, dict):
            return node
        renamed = {}
        for key, value in node.items():
            if key in ("StartAt", "Next", "Default") and value == old:
                renamed[key] = new
            elif key == "States" and isinstance(value, dict):
                renamed[key] = {(new if name == old else name): follow(state) for name, state in value.items()}
            else:
                renamed[key] = follow(value)
        return renamed

    return follow(definition)


def change_retry(definition: dict[str, Any]) -> dict[str, Any]:
    """The training Task's Retry: more attempts, a gentler backoff, a cap on the delay."""
    definition["States"]["Train model"]["Retry"][0].update(RETRY)
    return definition


def jsonata_with_assign(definition: dict[str, Any]) -> dict[str, Any]:
    """The wait counter's reset as a JSONata Pass that assigns the poll interval, and the counter
    as a JSONata Pass that reads it with ``$pollSeconds``; the JSONPath states around stay."""
    states = definition["States"]
    states[JSONATA_WRITER] = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Comment": "Reset the wait counter; remember the poll interval and when the wait began.",
        "Assign": {
            "pollSeconds": "{% $states.input.run.endpoint_poll_seconds %}",
            "waitBegan": "{% $states.context.State.EnteredTime %}",
        },
        "Output": "{% $merge([$states.input, {'wait': {'checks': 0, 'seconds': 0}}]) %}",
        "Next": states[JSONATA_WRITER]["Next"],
    }
    states[JSONATA_READER] = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Comment": "One more check after one more poll interval (the assigned variable).",
        "Output": (
            "{% $merge([$states.input, {'wait': {'checks': $states.input.wait.checks + 1, "
            "'seconds': $states.input.wait.seconds + $pollSeconds, 'since': $waitBegan}}]) %}"
        ),
        "Next": states[JSONATA_READER]["Next"],
    }
    return definition


def wrap_in_parallel(
    definition: dict[str, Any], first: str = "Record training", second: str = "Create model"
) -> dict[str, Any]:
    """Two consecutive steps as the two branches of a Parallel; the model branch's result is
    put back where the following states read it (``$.steps.model``). A branch cannot Catch into
    the outer states, so the Catch moves to the Parallel."""
    states = definition["States"]
    assert states[first]["Next"] == second
    branches = []
    for name in (first, second):
        state = {k: v for k, v in states[name].items() if k not in ("Next", "Catch")}
        branches.append({"StartAt": name, "States": {name: {**state, "End": True}}})
    parallel = {
        "Type": "Parallel",
        "Comment": "Wrapped in Workflow Studio: record the training while the model is created.",
        "Branches": branches,
        "ResultSelector": {"model_arn.$": "$[1].steps.model.model_arn"},
        "ResultPath": "$.steps.model",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed at model creation"}],
        "Next": states[second]["Next"],
    }
    # A resumed run whose training is done went to the second step: it now goes to the Parallel.
    for states_ in _all_state_maps(definition):
        for state in states_.values():
            _retarget(state, first, PARALLEL)
            _retarget(state, second, PARALLEL)
    rebuilt = {}
    for name, state in states.items():
        if name == first:
            rebuilt[PARALLEL] = parallel
        elif name != second:
            rebuilt[name] = state
    definition["States"] = rebuilt
    return definition


EDITS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "add": add_state,
    "rename": rename_state,
    "retry": change_retry,
    "jsonata": jsonata_with_assign,
    "parallel": wrap_in_parallel,
}


def _insert_after(states: dict[str, Any], after: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in states.items():
        result[key] = value
        if key == after:
            result[name] = state
    return result


def _all_state_maps(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield definition["States"]
    for state in definition["States"].values():
        for branch in state.get("Branches") or []:
            yield from _all_state_maps(branch)


def _retarget(state: dict[str, Any], old: str, new: str) -> None:
    for holder in [state, *state.get("Choices", []), *state.get("Catch", [])]:
        for key in ("Next", "Default"):
            if holder.get(key) == old:
                holder[key] = new


# --- running the copies ---------------------------------------------------------------------


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events += page["events"]
    return events


def _entered(events: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def _exited(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        e["stateExitedEventDetails"]
        for e in events
        if e["type"].endswith("StateExited") and e["stateExitedEventDetails"]["name"] == name
    ]


@pytest.fixture(scope="module")
def edited_copies() -> dict[str, dict[str, Any]]:
    """Each edit applied to its own copy of the repository's definition (placeholders kept)."""
    original = parse_definition(DEFINITION.read_text(encoding="utf-8"), str(DEFINITION))
    return {name: edit(copy.deepcopy(original)) for name, edit in EDITS.items()}


@pytest.fixture(scope="module")
def studio(pipeline, edited_copies) -> dict[str, Any]:
    """The five copies started at once on the stack's state machine, approved one by one, ended."""
    sfn, events = pipeline.client("stepfunctions"), pipeline.client("events")
    machine = pipeline.outputs["StateMachineArn"]
    deployed = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])
    original = parse_definition(DEFINITION.read_text(encoding="utf-8"), str(DEFINITION))
    substitutions = substitutions_from_definitions(original, deployed)
    assert fill(original, substitutions) == deployed, "the stack fills the placeholders as `asl export` does"
    (rule,) = events.list_rule_names_by_target(TargetArn=machine)["RuleNames"]
    events.disable_rule(Name=rule)
    # A low gate: the small sample must reach a person's approval whatever its seed.
    pipeline.onboard(DATASET, threshold=0.5, promote_only_if_better=False)
    account, region = machine.split(":")[4], machine.split(":")[3]
    started: dict[str, dict[str, Any]] = {}
    # The stack's own definition and rule come back once the runs have ended (or failed).
    try:
        for index, (name, definition) in enumerate(edited_copies.items()):
            filled = fill(definition, substitutions)
            body = churn_csv(ROWS, seed=300 + index)
            upload = pipeline.upload(DATASET, f"{name}.csv", body)
            event = s3_object_created_event(
                account, region, upload["bucket"], upload["key"], len(body), upload["etag"], upload["version"]
            )
            sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(filled))
            held = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])
            arn = sfn.start_execution(
                stateMachineArn=machine, name=f"studio-{name}-{uuid.uuid4().hex[:8]}", input=json.dumps(event)
            )["executionArn"]
            started[name] = {"upload": upload, "arn": arn, "filled": filled, "held": held}
        for run in started.values():
            run.update(_approve_and_finish(pipeline, run))
    finally:
        sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(deployed))
        events.enable_rule(Name=rule)
    return {"runs": started, "deployed": deployed}


def _approve_and_finish(pipeline, run: dict[str, Any]) -> dict[str, Any]:
    """Approve the run as a person does (the email's link), wait for its execution to end and
    note what production serves then (the next run is approved only after)."""
    run_id = run["upload"]["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    status, title = approve_link(email.links[0], decision="approve", comment="edited copy")
    assert status == 200 and title.startswith("Approved"), title
    pipeline.wait_for_executions([run["arn"]], time.monotonic() + 240)
    sfn = pipeline.client("stepfunctions")
    return {
        "described": sfn.describe_execution(executionArn=run["arn"]),
        "for_execution": json.loads(sfn.describe_state_machine_for_execution(executionArn=run["arn"])["definition"]),
        "history": _history(sfn, run["arn"]),
        "records": pipeline.run_record(run_id),
        "production": pipeline.endpoint_config(pipeline.outputs["ProductionEndpointName"]),
    }


def _filled_as_the_stack_fills(sfn: Any, machine: str, definition: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``definition`` filled with the stack's values (as ``stepml asl export``), and the stack's role."""
    described = sfn.describe_state_machine(stateMachineArn=machine)
    original = parse_definition(DEFINITION.read_text(encoding="utf-8"), str(DEFINITION))
    substitutions = substitutions_from_definitions(original, json.loads(described["definition"]))
    return fill(definition, substitutions), described["roleArn"]


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EDITS))
def test_each_edited_copy_passes_asl_validate_and_the_local_clouds_definition_checks(pipeline, edited_copies, name):
    definition = edited_copies[name]
    problems = asl_validate(definition, template_facts(TEMPLATE, DEFINITION))
    assert problems == [], [str(p) for p in problems]
    sfn = pipeline.client("stepfunctions")
    filled, role = _filled_as_the_stack_fills(sfn, pipeline.outputs["StateMachineArn"], definition)
    answer = sfn.validate_state_machine_definition(definition=json.dumps(filled), type="STANDARD")
    assert answer["result"] == "OK", answer["diagnostics"]
    # CreateStateMachine with the stack's role accepts it too (the same checks, AWS's way to be sure).
    created = sfn.create_state_machine(name=f"studio-check-{name}", definition=json.dumps(filled), roleArn=role)
    sfn.delete_state_machine(stateMachineArn=created["stateMachineArn"])


def test_a_rename_that_misses_a_target_is_refused_by_both_checks(pipeline):
    """The checks above bite: a state renamed without its Next targets is refused, at its referrer."""
    definition = parse_definition(DEFINITION.read_text(encoding="utf-8"), str(DEFINITION))
    states = definition["States"]
    definition["States"] = {(RENAMED[1] if k == RENAMED[0] else k): v for k, v in states.items()}
    problems = [str(p) for p in asl_validate(definition, template_facts(TEMPLATE, DEFINITION))]
    assert any("/States/Training already done?" in p for p in problems), problems
    sfn = pipeline.client("stepfunctions")
    filled, _role = _filled_as_the_stack_fills(sfn, pipeline.outputs["StateMachineArn"], definition)
    answer = sfn.validate_state_machine_definition(definition=json.dumps(filled), type="STANDARD")
    assert answer["result"] == "FAIL" and answer["diagnostics"], answer


@pytest.mark.parametrize("name", list(EDITS))
def test_each_edited_copy_ends_as_the_pipeline_does(pipeline, runs, name):
    run = runs[name]
    assert run["held"] == run["filled"], "the stack's machine held the edited copy when the run started"
    assert run["described"]["status"] == "SUCCEEDED", run["described"]
    records = run["records"]
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    for step in ("preprocess", "train", "evaluate", "approval", "deploy"):
        assert records[f"STEP#{step}"]["status"] == "SUCCEEDED", step
    assert run["production"] == records["RUN"]["names"]["production_endpoint_config"]
    assert _entered(run["history"])[-1] == "Model deployed"


def test_describe_state_machine_for_execution_answers_the_definition_the_execution_ran(runs):
    last = list(runs.values())[-1]["filled"]
    answered = {
        name: (
            "its own"
            if run["for_execution"] == run["filled"]
            else "the last copy's"
            if run["for_execution"] == last
            else "another"
        )
        for name, run in runs.items()
    }
    assert all(run["for_execution"] == run["filled"] for run in runs.values()), answered


def test_the_added_state_is_entered_and_adds_its_field(runs):
    events = runs["add"]["history"]
    entered = _entered(events)
    assert entered.index("Record preprocessing") + 1 == entered.index(ADDED)
    assert entered.index(ADDED) + 1 == entered.index("Training already done?")
    (exited,) = _exited(events, ADDED)
    studio = json.loads(exited["output"])["studio"]
    assert studio == {"edited_by": "workflow-studio", "upload": runs["add"]["records"]["RUN"]["input"]["uri"]}


def test_the_renamed_state_runs_under_its_new_name(runs):
    entered = _entered(runs["rename"]["history"])
    assert RENAMED[1] in entered and RENAMED[0] not in entered
    assert entered.index(RENAMED[1]) + 1 == entered.index("Record training")
    assert runs["rename"]["records"]["STEP#train"]["status"] == "SUCCEEDED"


def test_the_changed_retry_is_the_one_the_local_cloud_holds(runs):
    (retry,) = runs["retry"]["held"]["States"]["Train model"]["Retry"]
    assert {key: retry[key] for key in RETRY} == RETRY
    assert retry["ErrorEquals"] == ["SageMaker.AmazonSageMakerException"] and retry["JitterStrategy"] == "FULL"


def test_the_jsonata_states_assigned_variable_is_read_downstream(runs):
    events = runs["jsonata"]["history"]
    (began,) = [e for e in events if e["type"] == "PassStateEntered" and _name(e) == JSONATA_WRITER]
    poll = json.loads(began["stateEnteredEventDetails"]["input"])["run"]["endpoint_poll_seconds"]
    (written,) = _exited(events, JSONATA_WRITER)
    assert json.loads(written["assignedVariables"]["pollSeconds"]) == poll, written
    counts = [json.loads(exited["output"])["wait"] for exited in _exited(events, JSONATA_READER)]
    assert counts, "the counter ran"
    for index, wait in enumerate(counts, start=1):
        assert wait["checks"] == index and wait["seconds"] == index * poll, wait
        since = datetime.fromisoformat(wait["since"].replace("Z", "+00:00"))
        assert abs((since - began["timestamp"]).total_seconds()) < 2, (wait, began["timestamp"])
    # The JSONPath states after the JSONata ones read what they wrote.
    assert "Record deployment" in _entered(events)


def test_the_parallel_runs_both_steps_and_merges_the_model_back(runs):
    events = runs["parallel"]["history"]
    entered = _entered(events)
    assert {PARALLEL, "Record training", "Create model"} <= set(entered)
    assert entered.index(PARALLEL) < entered.index("Record training") and entered.index(PARALLEL) < entered.index(
        "Create model"
    )
    parallel_events = [e["type"] for e in events if e["type"].startswith("Parallel")]
    assert "ParallelStateSucceeded" in parallel_events and "ParallelStateFailed" not in parallel_events
    (exited,) = _exited(events, PARALLEL)
    model = json.loads(exited["output"])["steps"]["model"]
    assert model["model_arn"].endswith(":model/" + runs["parallel"]["records"]["RUN"]["names"]["model"])


def test_the_stacks_own_definition_and_upload_rule_are_back_after_the_runs(pipeline, studio):
    sfn, events = pipeline.client("stepfunctions"), pipeline.client("events")
    machine = pipeline.outputs["StateMachineArn"]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"]) == studio["deployed"]
    (rule,) = events.list_rule_names_by_target(TargetArn=machine)["RuleNames"]
    assert events.describe_rule(Name=rule)["State"] == "ENABLED"


@pytest.fixture(scope="module")
def runs(studio) -> dict[str, dict[str, Any]]:
    return studio["runs"]


def _name(event: dict[str, Any]) -> str:
    return event["stateEnteredEventDetails"]["name"]
