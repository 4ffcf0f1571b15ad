"""The console's HTML pages: plain server-side HTML and CSS, no JavaScript.

Everything shown comes from users (state names, inputs and outputs, error causes, email
subjects and bodies, dataset names), so every value goes through ``html.escape`` here, and
links are only the console's own or the ``http(s)`` links found in an email.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from stepml.local.console.status import STATUS_TITLES, StateRun
from stepml.local.mail import OutboxMessage

MAX_DOCUMENT_CHARS = 20_000
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#16191f;background:#f2f3f3}
header{background:#232f3e;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none}
header a.active{border-bottom:2px solid #ff9900}
header strong{font-size:16px}
main{padding:16px 20px}
section{background:#fff;border:1px solid #d5dbdb;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h1{font-size:20px;margin:0 0 8px}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeded;vertical-align:top}
th{background:#fafafa}
code,pre{font:12px/1.35 ui-monospace,monospace}
pre{white-space:pre-wrap;word-break:break-all;background:#f8f8f8;padding:6px;margin:2px 0;max-height:320px;
overflow:auto}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.SUCCEEDED,.b-succeeded{background:#e9f7e8;color:#1d8102}
.FAILED,.TIMED_OUT,.b-failed{background:#fde8e8;color:#d13212}
.RUNNING,.b-running{background:#e6f2fb;color:#0073bb}
.ABORTED,.b-cancelled{background:#eee;color:#545b64}
.b-caught{background:#fff4e5;color:#b35c00}
.b-waiting{background:#f3e8fd;color:#7d3dbb}
.b-not-reached{background:#fff;color:#687078;border:1px solid #aab7b8}
.cols{display:flex;gap:16px;align-items:flex-start}
.graphbox{flex:1 1 auto;overflow:auto;max-height:80vh;background:#fff;border:1px solid #d5dbdb;border-radius:6px}
.details{flex:0 0 360px;position:sticky;top:8px}
svg.graph text{font:11px system-ui,sans-serif;text-anchor:middle;fill:#16191f}
svg.graph a{cursor:pointer}
svg.graph .state rect{stroke-width:1.5}
.st-succeeded rect{fill:#e9f7e8;stroke:#1d8102}
.st-failed rect{fill:#fde8e8;stroke:#d13212}
.st-caught rect{fill:#fff4e5;stroke:#ff9900}
.st-running rect{fill:#e6f2fb;stroke:#0073bb}
.st-waiting rect{fill:#f3e8fd;stroke:#8a45d6;stroke-dasharray:5 3}
.st-cancelled rect{fill:#eee;stroke:#687078}
.st-not-reached rect{fill:#fff;stroke:#aab7b8}
.group>rect{fill-opacity:.35}
.selected rect{stroke-width:4}
svg.graph .branch{fill:none;stroke:#aab7b8;stroke-dasharray:2 3}
svg.graph .edge{fill:none;stroke:#879596;stroke-width:1.2}
svg.graph .edge.catch{stroke:#d13212;stroke-dasharray:4 3}
svg.graph .edge.back{stroke:#0073bb}
svg.graph marker path{fill:#879596}
svg.graph .marker circle{fill:#fff;stroke:#545b64}
svg.graph .marker text{font-size:9px}
.legend span{margin-right:10px}
dl{display:grid;grid-template-columns:110px 1fr;gap:4px 8px;margin:0}
dt{color:#545b64}
dd{margin:0}
"""


def when(moment: Any) -> str:
    """A datetime (or ISO text) as UTC to the second; empty for none."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return escape(str(moment or ""))


def document_text(value: Any) -> str:
    """JSON text (or any value) pretty-printed for a ``<pre>``, cut at MAX_DOCUMENT_CHARS."""
    if value is None:
        return ""
    try:
        text = json.dumps(json.loads(value) if isinstance(value, str) else value, indent=2, default=str)
    except ValueError:
        text = str(value)
    return text if len(text) <= MAX_DOCUMENT_CHARS else text[:MAX_DOCUMENT_CHARS] + "\n\u2026 (cut)"


def pre(value: Any) -> str:
    return f"<pre>{escape(document_text(value))}</pre>" if value is not None else '<span class="none">-</span>'


def badge(status: str) -> str:
    """An execution status (SUCCEEDED ...) or a state status (succeeded ...) as a coloured badge."""
    css = status if status.isupper() else f"b-{status}"
    text = STATUS_TITLES.get(status, status)
    return f'<span class="badge {escape(css)}" data-status="{escape(status)}">{escape(text)}</span>'


def execution_href(arn: str, state: str | None = None) -> str:
    """The console path of one execution (and, with ``state``, of that state's details)."""
    path = f"/execution?arn={quote(arn, safe='')}"
    return path + (f"&state={quote(state, safe='')}#details" if state else "")


def execution_url(console_url: str, arn: str, state: str | None = None) -> str:
    """The full URL of one execution's page on the console at ``console_url``."""
    return console_url.rstrip("/") + execution_href(arn, state)


def document(title: str, body: str, active: str = "") -> str:
    """A whole page: the console's header and navigation around ``body``."""
    nav = "".join(
        f'<a href="{path}"{" class=active" if name == active else ""}>{name.title()}</a>'
        for name, path in (("executions", "/"), ("outbox", "/outbox"), ("endpoints", "/endpoints"))
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - stepml console</title>'
        f"<style>{STYLE}</style></head><body><header><strong>stepml local console</strong>{nav}</header>"
        f"<main>{body}</main></body></html>"
    )


def _seconds(start: Any, stop: Any) -> str:
    if not isinstance(start, datetime):
        return ""
    end = stop if isinstance(stop, datetime) else datetime.now(UTC)
    return f"{(end - start).total_seconds():.1f} s"


def executions_page(executions: list[Mapping[str, Any]]) -> str:
    """Every execution, newest first, with its status."""
    rows = "".join(
        f'<tr class="execution" data-status="{escape(e["status"])}">'
        f'<td><a href="{escape(execution_href(e["executionArn"]))}">'
        f"{escape(e['name'])}</a></td><td>{escape(e['machineName'])}</td><td>{badge(e['status'])}</td>"
        f"<td>{when(e.get('startDate'))}</td><td>{when(e.get('stopDate'))}</td>"
        f"<td>{_seconds(e.get('startDate'), e.get('stopDate'))}</td></tr>"
        for e in executions
    )
    table = (
        "<table><tr><th>execution</th><th>state machine</th><th>status</th><th>started</th><th>ended</th>"
        f"<th>duration</th></tr>{rows}</table>"
        if executions
        else "<p>No executions yet: upload a dataset (<code>stepml upload FILE --dataset NAME</code>).</p>"
    )
    return document("Executions", f"<section><h1>Executions</h1>{table}</section>", "executions")


def state_details(run: StateRun | None, now: datetime) -> str:
    """The details panel of one state: status, type, timing, input, output, error and cause."""
    if run is None:
        return "<p>Select a state in the graph to see its input, output, error and timing.</p>"
    seconds = run.seconds(now)
    rows = [
        ("status", badge(run.status)),
        ("type", escape(run.type)),
        ("entered", when(run.entered)),
        ("exited", when(run.exited)),
        ("duration", f"{seconds:.3f} s" if seconds is not None else ""),
    ]
    if run.visits > 1:
        rows.append(("visits", f"{run.visits} (the last one shown)"))
    if run.retries:
        rows.append(("retries", str(run.retries)))
    if run.resource:
        rows.append(("resource", f"<code>{escape(run.resource)}</code>"))
    if run.error or run.cause:
        rows.append(("error", f'<code class="error">{escape(run.error or "")}</code>'))
        rows.append(("cause", f'<pre class="cause">{escape(document_text(run.cause))}</pre>'))
    rows += [("input", pre(run.input)), ("output", pre(run.output))]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<h2 class="state-name">{escape(run.name)}</h2><dl>{items}</dl>'


def outbox_list(messages: list[OutboxMessage], *, bodies: bool = True) -> str:
    """Emails with their links (clickable: the approval link opens the review page)."""
    if not messages:
        return "<p>No email.</p>"
    out = []
    for message in messages:
        links = "".join(
            f'<li><a class="mail-link" href="{escape(link)}">{escape(link)}</a></li>'
            for link in message.links
            if link.startswith(("http://", "https://"))
        )
        body = f"<pre>{escape(message.body)}</pre>" if bodies else ""
        out.append(
            f'<article class="mail"><h2>{escape(message.subject)}</h2><p>to {escape(message.to)} - '
            f"{escape(message.sent_at)}</p>{'<ul>' + links + '</ul>' if links else ''}{body}</article>"
        )
    return "".join(out)


def outbox_page(messages: list[OutboxMessage]) -> str:
    return document("Outbox", f"<section><h1>Outbox</h1>{outbox_list(messages)}</section>", "outbox")


def endpoints_page(endpoints: list[Mapping[str, Any]], run_href: Callable[[str], str | None]) -> str:
    """SageMaker endpoints: status, the model each variant serves, its instance, and its run."""
    rows = []
    for endpoint in endpoints:
        variants = endpoint["variants"] or [{}]
        run_id = endpoint.get("run_id")
        href = run_href(run_id) if run_id else None
        run = f'<a href="{escape(href)}">{escape(run_id)}</a>' if href else escape(run_id or "-")
        for variant in variants:
            rows.append(
                f'<tr class="endpoint"><td>{escape(endpoint["name"])}</td><td>{escape(endpoint["status"])}</td>'
                f"<td>{escape(str(variant.get('model') or ''))}</td><td>{escape(str(variant.get('instance') or ''))}"
                f" x {escape(str(variant.get('count') or ''))}</td><td>{run}</td>"
                f"<td>{escape(endpoint.get('failure') or '')}</td></tr>"
            )
    table = (
        "<table><tr><th>endpoint</th><th>status</th><th>model</th><th>instance</th><th>run</th><th>failure</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No endpoints.</p>"
    )
    return document("Endpoints", f"<section><h1>Endpoints</h1>{table}</section>", "endpoints")


def error_page(status: int, message: str) -> str:
    return document(f"Error {status}", f"<section><h1>Error {status}</h1><p>{escape(message)}</p></section>")
