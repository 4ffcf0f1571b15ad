"""The page of one execution: its graph, the selected state's details, its lineage and email.

The graph is laid out from the definition the execution ran (``graph.layout``), coloured by its
history (``status.state_runs``) and drawn as SVG (``svg.render``); a click on a state is a link
back to this page with ``?state=NAME``, which fills the details panel on the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from stepml.local.console import graph, svg
from stepml.local.console.data import ExecutionView
from stepml.local.console.pages import (
    badge,
    document,
    document_text,
    execution_href,
    outbox_list,
    state_details,
    when,
)
from stepml.local.console.status import counts, state_runs
from stepml.local.mail import OutboxMessage


def _value(value: Any) -> str:
    if value in (None, "", {}, []):
        return ""
    if isinstance(value, (dict, list)):
        return f"<code>{escape(json.dumps(value, default=str, sort_keys=True))}</code>"
    return escape(str(value))


def _provenance(tree: Mapping[str, Any]) -> str:
    """data + code + parameters -> training job -> model, from the run's lineage."""
    steps = {step["step"]: step for step in tree.get("steps", [])}
    train = steps.get("train") or {}
    upload = tree.get("input") or {}
    job = train.get("job") or {}
    data = f"{upload.get('uri', '?')} (version {upload.get('version_id', '?')})"
    parameters = (train.get("parameters") or {}).get("hyperparameters")
    parts = [
        ("data", escape(data)),
        ("code", escape(str(train.get("code_version") or tree.get("code_version") or "?"))),
        ("parameters", _value(parameters) or "-"),
        ("job", escape(str(job.get("name") or "-"))),
        ("model", escape(str((tree.get("resources") or {}).get("model") or "-"))),
    ]
    cells = " \u2192 ".join(
        f'<span class="prov" data-part="{name}"><b>{name}</b> {text}</span>' for name, text in parts
    )
    return f'<p class="provenance">{cells}</p>'


def lineage_section(tree: Mapping[str, Any] | None, reason: str | None) -> str:
    """The run's lineage: its status, where its model came from, and each step's record."""
    if tree is None:
        return f'<section id="lineage"><h2>Lineage</h2><p>{escape(reason or "no lineage")}</p></section>'
    run_id = str(tree["run_id"])
    rows = "".join(
        f'<tr class="lineage-step" data-step="{escape(str(step["step"]))}"><td>{escape(str(step["title"]))}</td>'
        f"<td>{escape(str(step.get('status') or ''))}</td><td>{escape(str(step.get('attempt') or ''))}</td>"
        f"<td>{when(step.get('started_at'))}</td><td>{_value(step.get('seconds'))}</td>"
        f"<td>{_value((step.get('job') or {}).get('name'))}</td><td>{_value(step.get('inputs'))}</td>"
        f"<td>{_value(step.get('parameters'))}</td><td>{_value(step.get('outputs'))}</td>"
        f"<td>{_value(step.get('error'))}</td></tr>"
        for step in tree.get("steps", [])
    )
    approval = tree.get("approval") or {}
    decided = (
        f"<p>Approval: {escape(str(approval.get('decision')))} by {escape(str(approval.get('approver')))} at "
        f"{escape(str(approval.get('decided_at')))}</p>"
        if approval.get("decision")
        else ""
    )
    return (
        f'<section id="lineage"><h2>Lineage of run <code>{escape(run_id)}</code> '
        f"{badge(str(tree.get('status') or '?').upper())}</h2>{_provenance(tree)}{decided}"
        "<table><tr><th>step</th><th>status</th><th>attempt</th><th>started</th><th>seconds</th><th>job</th>"
        f"<th>inputs</th><th>parameters</th><th>outputs</th><th>error</th></tr>{rows}</table>"
        f"<p>From a shell: <code>stepml lineage show {escape(run_id)}</code> - "
        f"<code>stepml runs show {escape(run_id)}</code></p></section>"
    )


def _header(view: ExecutionView) -> str:
    d = view.describe
    failure = ""
    if d.get("error") or d.get("cause"):
        failure = (
            f'<p class="execution-error"><b>{escape(str(d.get("error") or ""))}</b></p>'
            f"<pre>{escape(document_text(d.get('cause')))}</pre>"
        )
    return (
        f"<section><h1>{escape(d['name'])} {badge(d['status'])}</h1>"
        f"<p>state machine <b>{escape(view.machine_name)}</b> - started {when(d.get('startDate'))}"
        f"{' - ended ' + when(d.get('stopDate')) if d.get('stopDate') else ''}</p>"
        f"<p><code>{escape(d['executionArn'])}</code></p>{failure}</section>"
    )


def execution_page(
    view: ExecutionView,
    selected: str | None,
    lineage: tuple[dict[str, Any] | None, str | None],
    messages: list[OutboxMessage],
) -> str:
    """The whole page of one execution (``selected``: the state whose details are open)."""
    arn = view.describe["executionArn"]
    runs = state_runs(view.definition, view.events, view.describe["status"])
    try:
        drawing = svg.render(graph.layout(view.definition), runs, lambda name: execution_href(arn, name), selected)
    except graph.GraphError as exc:
        drawing = f"<p>{escape(str(exc))}</p>"
    legend = "".join(f"<span>{badge(status)} {count}</span>" for status, count in counts(runs).items())
    chosen = runs.get(selected) if selected else None
    missing = (
        f"<p>No state named {escape(selected)} in this execution's definition.</p>" if selected and not chosen else ""
    )
    body = (
        _header(view) + f'<section><h2>Graph</h2><p class="legend">{legend}</p>'
        f'<div class="cols"><div class="graphbox">{drawing}</div>'
        f'<aside class="details" id="details"><section>{missing}'
        f"{state_details(chosen, datetime.now(UTC))}</section></aside></div></section>"
        + lineage_section(*lineage)
        + f'<section id="outbox"><h2>Email about this run</h2>{outbox_list(messages, bodies=False)}</section>'
    )
    return document(f"Execution {view.describe['name']}", body, "executions")
