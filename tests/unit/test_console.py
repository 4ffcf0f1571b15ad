"""The console's graph, state colours and pages, from definitions and synthetic histories."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stepml.local.console import graph, pages, svg
from stepml.local.console.data import ExecutionView
from stepml.local.console.execution import execution_page, lineage_section
from stepml.local.console.status import state_runs
from stepml.local.mail import OutboxMessage
from tests.helpers import REPO_ROOT

NESTED = {
    "StartAt": "Pick",
    "States": {
        "Pick": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fan", "BooleanEquals": True, "Next": "Fan out"}],
            "Default": "Each item",
        },
        "Fan out": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {
                    "StartAt": "Right",
                    "States": {
                        "Right": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Right done"},
                        "Right done": {"Type": "Succeed"},
                    },
                },
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handle"}],
            "Next": "Done",
        },
        "Each item": {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}},
            "Next": "Done",
        },
        "Handle": {"Type": "Fail", "Error": "Handled", "Cause": "a branch failed"},
        "Done": {"Type": "Succeed"},
    },
}


def _edges(layout: graph.Layout) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in layout.edges}


def test_the_layout_follows_the_definition_with_choice_catch_and_end_edges():
    layout = graph.layout(NESTED)
    assert set(layout.nodes) == {graph.START, "Pick", "Fan out", "Each item", "Handle", "Done", graph.END}
    assert _edges(layout) == {
        (graph.START, "Pick", "next"),
        ("Pick", "Fan out", "choice"),
        ("Pick", "Each item", "default"),
        ("Fan out", "Done", "next"),
        ("Fan out", "Handle", "catch"),
        ("Each item", "Done", "next"),
        ("Handle", graph.END, "end"),
        ("Done", graph.END, "end"),
    }
    nodes = layout.nodes
    # Layers go down: every forward edge ends below where it starts.
    for edge in layout.edges:
        assert nodes[edge.target].y > nodes[edge.source].y, edge
        assert edge.points[0][1] == nodes[edge.source].y + nodes[edge.source].height
        assert edge.points[-1] == (nodes[edge.target].x, nodes[edge.target].y)
    fan, each = nodes["Fan out"], nodes["Each item"]  # one layer, side by side, centred in it
    assert fan.y + fan.height / 2 == each.y + each.height / 2 and abs(fan.x - each.x) >= (fan.width + each.width) / 2


def test_parallel_branches_and_map_processors_are_nested_groups():
    layout = graph.layout(NESTED)
    fan, each = layout.nodes["Fan out"], layout.nodes["Each item"]
    assert [set(b.nodes) - {graph.START, graph.END} for b in fan.branches] == [{"Left"}, {"Right", "Right done"}]
    assert [set(b.nodes) - {graph.START, graph.END} for b in each.branches] == [{"Inner"}]
    assert fan.width >= sum(b.width for b in fan.branches) and fan.height > max(b.height for b in fan.branches)
    order = [n.name for n in layout.states()]
    assert sorted(order) == sorted(
        ["Pick", "Fan out", "Left", "Right", "Right done", "Each item", "Inner", "Handle", "Done"]
    )
    assert order.index("Fan out") < order.index("Left") < order.index("Right") and order.index(
        "Each item"
    ) < order.index("Inner")
    # A Map written with the older Iterator field is drawn the same way.
    old = json.loads(json.dumps(NESTED))
    old["States"]["Each item"]["Iterator"] = old["States"]["Each item"].pop("ItemProcessor")
    assert set(graph.layout(old).nodes["Each item"].branches[0].nodes) == {graph.START, "Inner", graph.END}


def _state_names(machine: dict) -> set[str]:
    """Every state's name, those of Parallel branches and Map iterations included."""
    names = set()
    for name, state in machine["States"].items():
        names.add(name)
        for inner in [*state.get("Branches", []), state.get("ItemProcessor") or state.get("Iterator") or None]:
            if inner:
                names |= _state_names(inner)
    return names


def test_a_loop_goes_round_the_right_and_long_edges_do_not_cross_nodes():
    definition = json.loads((REPO_ROOT / "statemachine" / "pipeline.asl.json").read_text())
    layout = graph.layout(definition)
    assert {n.name for n in layout.states()} == _state_names(definition)
    loops = [e for e in layout.edges if e.back]
    back = {(e.source, e.target) for e in loops}
    assert ("Count test endpoint check", "Check test endpoint") in back  # checked once before the loop's wait
    assert ("Is the production endpoint ready?", "Wait for production endpoint") in back
    for edge in loops:
        assert edge.points[1][0] > max(n.x + n.width / 2 for n in layout.nodes.values())
    boxes = [n for n in layout.nodes.values() if n.is_state]
    for edge in layout.edges:
        for x, y in edge.points[1:-1]:
            assert not any(abs(x - n.x) < n.width / 2 - 1 and n.y < y < n.y + n.height for n in boxes), (
                f"{edge.source} -> {edge.target} runs through a state at ({x}, {y})"
            )
    # One lane per target, not per edge: 1,640 px for the 74 states before the monitoring steps,
    # 2,920 px for the 82 with them (a lane per edge measured about 3,200 before), 3,149 px for 86,
    # 3,408 px for the 95 with batch scoring (a Parallel whose two branches sit side by side), 3,694 px
    # once the test endpoint is checked before the first wait (its Wait sits beside the Choice's branches).
    assert layout.width < 3750


def test_a_definition_without_states_is_a_graph_error():
    with pytest.raises(graph.GraphError, match="no States with its StartAt"):
        graph.layout({"StartAt": "A", "States": {}})


T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _events(*spec: tuple[str, int, dict]) -> list[dict]:
    """Events with ids in order; each (type, previousEventId, details)."""
    events = []
    for index, (kind, previous, details) in enumerate(spec, start=1):
        event = {"id": index, "previousEventId": previous, "type": kind, "timestamp": T0 + timedelta(seconds=index)}
        event.update(details)
        events.append(event)
    return events


def _entered(name: str, data: str = "{}") -> dict:
    return {"stateEnteredEventDetails": {"name": name, "input": data}}


def _exited(name: str, data: str = "{}") -> dict:
    return {"stateExitedEventDetails": {"name": name, "output": data}}


def test_statuses_from_a_history_succeeded_caught_failed_and_not_reached():
    events = _events(
        ("ExecutionStarted", 0, {}),
        ("ChoiceStateEntered", 1, _entered("Pick", '{"fan": true}')),
        ("ChoiceStateExited", 2, _exited("Pick")),
        ("ParallelStateEntered", 3, _entered("Fan out")),
        ("ParallelStateStarted", 4, {}),
        ("PassStateEntered", 5, _entered("Left")),
        ("PassStateExited", 6, _exited("Left")),
        ("TaskStateEntered", 5, _entered("Right")),
        ("TaskScheduled", 8, {}),
        ("TaskFailed", 9, {"taskFailedEventDetails": {"error": "Lambda.Unknown", "cause": "first try <b>"}}),
        ("TaskScheduled", 10, {}),
        ("TaskFailed", 11, {"taskFailedEventDetails": {"error": "Boom", "cause": "it broke"}}),
        ("ParallelStateFailed", 12, {}),
        ("ParallelStateExited", 13, _exited("Fan out", '{"Error": "Boom"}')),
        ("FailStateEntered", 14, _entered("Handle")),
        ("ExecutionFailed", 15, {"executionFailedEventDetails": {"error": "Handled", "cause": "a branch failed"}}),
    )
    runs = state_runs(NESTED, events, "FAILED")
    status = {name: run.status for name, run in runs.items()}
    assert status == {
        "Pick": "succeeded",
        "Fan out": "caught",
        "Left": "succeeded",
        "Right": "failed",
        "Right done": "not-reached",
        "Each item": "not-reached",
        "Inner": "not-reached",
        "Handle": "failed",
        "Done": "not-reached",
    }
    right = runs["Right"]
    assert (right.error, right.cause, right.retries) == ("Boom", "it broke", 1)
    assert (runs["Handle"].error, runs["Handle"].cause) == ("Handled", "a branch failed")
    assert runs["Pick"].input == '{"fan": true}' and runs["Pick"].seconds() == 1.0


def test_a_retried_task_that_then_succeeds_is_green_and_counts_its_retries():
    definition = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}},
    }
    events = _events(
        ("TaskStateEntered", 0, _entered("T")),
        ("TaskScheduled", 1, {}),
        ("TaskFailed", 2, {"taskFailedEventDetails": {"error": "Lambda.TooManyRequestsException"}}),
        ("TaskScheduled", 3, {}),
        ("TaskSucceeded", 4, {}),
        ("TaskStateExited", 5, _exited("T", '{"ok": 1}')),
    )
    run = state_runs(definition, events, "SUCCEEDED")["T"]
    assert (run.status, run.retries, run.output) == ("succeeded", 1, '{"ok": 1}')


def test_a_task_token_task_still_open_is_waiting_and_a_running_one_in_progress():
    definition = {
        "StartAt": "Ask",
        "States": {
            "Ask": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync", "End": True},
        },
    }
    asking = _events(("TaskStateEntered", 0, _entered("Ask")), ("TaskScheduled", 1, {}), ("TaskSubmitted", 2, {}))
    assert state_runs(definition, asking, "RUNNING")["Ask"].status == "waiting"
    assert state_runs(definition, asking, "ABORTED")["Ask"].status == "cancelled"
    working = _events(
        ("TaskStateEntered", 0, _entered("Ask")),
        ("TaskStateExited", 1, _exited("Ask")),
        ("TaskStateEntered", 2, _entered("Work")),
    )
    runs = state_runs(definition, working, "RUNNING")
    assert (runs["Ask"].status, runs["Work"].status) == ("succeeded", "running")


def test_every_status_has_its_colour_class_in_the_svg_and_names_are_escaped():
    definition = {"StartAt": "<script>x</script>", "States": {"<script>x</script>": {"Type": "Pass", "End": True}}}
    events = _events(("PassStateEntered", 0, _entered("<script>x</script>")))
    runs = state_runs(definition, events, "RUNNING")
    drawing = svg.render(
        graph.layout(definition), runs, lambda name: pages.execution_href("arn:x", name), "<script>x</script>"
    )
    assert "<script>" not in drawing and "&lt;script&gt;x&lt;/script&gt;" in drawing
    assert 'class="state st-running kind-Pass selected"' in drawing
    assert 'href="/execution?arn=arn%3Ax&amp;state=%3Cscript%3Ex%3C%2Fscript%3E#details"' in drawing
    for status in ("succeeded", "failed", "caught", "running", "waiting", "cancelled", "not-reached"):
        assert f".st-{status} rect" in pages.STYLE, status


def _hostile_message(tmp_path: Path) -> OutboxMessage:
    return OutboxMessage(
        path=tmp_path / "1.eml",
        to="<b>x@example.com</b>",
        subject='Approve <img src=x onerror="alert(1)">',
        body='see http://127.0.0.1:1/approvals/a?sig=b"><script>alert(1)</script> and javascript:alert(1)',
        sent_at="now",
        topic_arn="",
    )


def test_pages_escape_everything_users_wrote(tmp_path):
    arn = "arn:aws:states:us-east-1:123456789012:execution:m:<i>run</i>"
    definition = {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": True}}}
    events = _events(
        ("TaskStateEntered", 0, _entered("A", '{"name": "<script>alert(1)</script>"}')),
        ("TaskFailed", 1, {"taskFailedEventDetails": {"error": "<Err>", "cause": "<img src=x onerror=alert(1)>"}}),
        ("ExecutionFailed", 2, {"executionFailedEventDetails": {"error": "<Err>", "cause": "<img>"}}),
    )
    describe = {
        "executionArn": arn,
        "name": "<i>run</i>",
        "status": "FAILED",
        "startDate": T0,
        "error": "<Err>",
        "cause": "<img>",
    }
    view = ExecutionView(describe, definition, events, "<m>")
    tree = {"run_id": "<r>", "status": "failed", "input": {"uri": "s3://b/<k>"}, "steps": [
        {"step": "resolve", "title": "<t>", "status": "FAILED", "error": {"cause": "<c>"}, "inputs": {"<k>": "<v>"}},
    ]}  # fmt: skip
    html = execution_page(view, "A", (tree, None), [_hostile_message(tmp_path)])
    for raw in ("<script", "<img", "<i>", "<Err>", "<m>", "<r>", "<t>", "<c>", "<k>", 'onerror="'):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;Err&gt;" in html
    # Only the email's http(s) links become links, each escaped inside its attribute.
    assert html.count('class="mail-link"') == 1 and 'href="javascript' not in html
    assert "stepml lineage show &lt;r&gt;" in html
    listing = pages.executions_page(
        [{"executionArn": arn, "name": "<i>run</i>", "machineName": "<m>", "status": "FAILED"}]
    )
    assert "<i>run" not in listing and "&lt;i&gt;run&lt;/i&gt;" in listing
    outbox = pages.outbox_page([_hostile_message(tmp_path)])
    assert "<script" not in outbox and "<img" not in outbox and "<b>x@" not in outbox
    endpoints = pages.endpoints_page(
        [{"name": "<e>", "status": "InService", "variants": [{"model": "<mo>", "instance": "ml.m5.large", "count": 1}],
          "run_id": "<r>", "failure": None}],
        lambda run_id: "/execution?arn=x",
    )  # fmt: skip
    assert "<e>" not in endpoints and "<mo>" not in endpoints and "&lt;mo&gt;" in endpoints


def test_a_run_without_lineage_says_why():
    assert "not an upload event" in lineage_section(None, "the execution's input is not an upload event")


class _NoData:
    """ConsoleData's reads for a cloud with nothing in it and no such execution."""

    def executions(self) -> list:
        return []

    def execution(self, arn: str) -> ExecutionView:
        from stepml.local.console.data import ConsoleDataError

        raise ConsoleDataError(f"Execution Does Not Exist: '{arn}'", not_found=True)


def test_the_server_answers_get_only_and_says_what_is_missing():
    import urllib.error
    import urllib.request

    from stepml.local.console import ConsoleServer

    server = ConsoleServer(_NoData(), port=0).start()  # type: ignore[arg-type]

    def call(method: str, path: str) -> tuple[int, str, str | None]:
        request = urllib.request.Request(server.url.rstrip("/") + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(), response.headers.get("Allow")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers.get("Allow")

    try:
        status, body, _ = call("GET", "/")
        assert status == 200 and "No executions yet" in body
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, body, allow = call(method, "/execution?arn=x")
            assert (status, allow) == (405, "GET, HEAD") and "the console is read-only" in body
        status, body, _ = call("GET", "/execution?arn=%3Cb%3E")
        assert status == 404 and "Execution Does Not Exist: &#x27;&lt;b&gt;&#x27;" in body
        assert call("GET", "/execution")[0] == 400
        assert call("GET", "/nowhere")[0] == 404
        assert call("HEAD", "/")[:2] == (200, "")
    finally:
        server.stop()
