"""HTML pages of the approval API: the review form, the decision and the refusals.

Pages are small, self-contained documents: no JavaScript, no external resources (the
Content-Security-Policy the API sends allows only inline styles and forms posting back to
the same origin). The review page's pictures are inline ``<svg>`` elements
(``stepml.review_figures``), which that policy allows as it allows any markup: they hold no
script and style themselves with presentation attributes. Every value from a record or a
request goes through ``html.escape``. A page never receives the task token: ``ApprovalRecord``
does not hold it.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from stepml.approval_email import format_number, gate_summary, production_comparison, sign_off_rule, utc_text
from stepml.approval_records import APPROVED, MAX_COMMENT_CHARS, ApprovalRecord
from stepml.review_figures import figure_sections

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:46rem;margin:2rem auto;
padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.4rem}
h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid #d8dee4}
th{width:11rem;color:#57606a;font-weight:600}
.metrics th{width:auto}
code{word-break:break-all}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],textarea{width:100%;box-sizing:border-box;padding:.4rem;font:inherit}
textarea{min-height:5rem}
.buttons{margin-top:1.2rem;display:flex;gap:1rem}
button{font:inherit;padding:.5rem 1.4rem;border-radius:6px;border:1px solid #8c959f;cursor:pointer}
.approve{background:#1f883d;color:#fff;border-color:#1a7f37}
.reject{background:#cf222e;color:#fff;border-color:#a40e26}
.note{color:#57606a;font-size:.9rem}
.outcome{padding:.8rem 1rem;border-radius:6px;background:#f6f8fa;border:1px solid #d8dee4}
h3{font-size:1rem;margin-top:1.4rem}
figure{margin:1rem 0;max-width:40rem}
figure svg.chart{display:block;height:auto;max-width:100%}
figcaption{color:#57606a;font-size:.9rem}
details{font-size:.9rem}
table.numbers th{width:auto}
table.numbers td,table.numbers th{padding:.25rem .4rem;font-size:.85rem}
.scroll{overflow-x:auto;max-width:100%}
.small{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:0 1rem}
.small figure{margin:.5rem 0}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _layout(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{_e(title)} - stepml</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>\n"
    )


def _row(label: str, value_html: str) -> str:
    return f'<tr><th scope="row">{_e(label)}</th><td>{value_html}</td></tr>'


def _report_section(record: ApprovalRecord) -> str:
    """The evaluation report in short: the gate's verdict, the test rows, every test metric of
    this model beside the production model's, and where the full report lies."""
    production_metrics = (record.production or {}).get("metrics") or {}
    with_production = bool(production_metrics)
    header = "<tr><th>metric</th><th>this model</th>" + ("<th>production</th>" if with_production else "") + "</tr>"
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(_metric_text(value))}</td>"
        + (f"<td>{_e(_metric_text(production_metrics.get(name)))}</td>" if with_production else "")
        + "</tr>"
        for name, value in sorted(record.metrics.items())
    )
    facts = []
    if record.reason:
        facts.append(f"<p>{_e(record.reason)}</p>")
    if record.rows:
        facts.append(f"<p>Scored on {_e(record.rows)} held-out test rows through the test endpoint.</p>")
    table = f'<table class="metrics">{header}{rows}</table>' if rows else ""
    location = f'<p class="note">Full report: <code>{_e(record.report_uri)}</code></p>' if record.report_uri else ""
    return f"<h2>Evaluation report</h2>{''.join(facts)}{table}{location}"


def _metric_text(value: Any) -> str:
    if value is None:
        return "n/a"
    return format_number(value) if _is_number(value) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _summary(record: ApprovalRecord) -> str:
    run = f"<code>{_e(record.run_id)}</code>"
    if record.attempt:
        run += f" (attempt {_e(record.attempt)})"
    trained_on = (
        f"<code>{_e(record.input_uri)}</code>, version <code>{_e(record.input_version_id or 'unversioned')}</code>"
    )
    rows = [
        _row("Dataset", _e(record.dataset)),
        _row("Run", run),
        _row("Trained on", trained_on),
        _row("Training job", f"<code>{_e(record.training_job or 'unknown')}</code>"),
        _row("Gate metric", _e(gate_summary(record))),
        _row("Production", _e(production_comparison(record))),
        _row("Execution", f"<code>{_e(record.execution_arn)}</code>"),
        _row("Requested", _e(record.created_at)),
        _row("Link expires", _e(utc_text(record.link_expires_at))),
    ]
    return f"<table>{''.join(rows)}</table>{_report_section(record)}"


def review_page(
    record: ApprovalRecord,
    *,
    sig: str,
    form_token: str,
    approver: int = 0,
    report: Mapping[str, Any] | None = None,
    report_problem: str | None = None,
) -> str:
    """The review page of a PENDING approval with the Approve / Reject form of approver number
    ``approver`` (the decision is recorded under the address their link was issued to): the
    summary, the pictures of the evaluation ``report`` (or why there are none: ``report_problem``)."""
    # A relative action resolves to /.../approvals/<id> under any stage or base path,
    # and drops the query string so the signature travels in the body only.
    form = (
        f'<form method="post" action="{_e(record.approval_id)}">'
        f'<input type="hidden" name="sig" value="{_e(sig)}">'
        f'<input type="hidden" name="to" value="{_e(approver)}">'
        f'<input type="hidden" name="csrf" value="{_e(form_token)}">'
        f"<p>Deciding as <strong>{_e(record.approvers[approver] if record.approvers else '')}</strong>, "
        "the address this link was sent to.</p>"
        '<label for="comment">Comment (optional)</label>'
        f'<textarea id="comment" name="comment" maxlength="{MAX_COMMENT_CHARS}"></textarea>'
        '<div class="buttons">'
        '<button type="submit" class="approve" name="decision" value="approve">Approve</button>'
        '<button type="submit" class="reject" name="decision" value="reject">Reject</button>'
        "</div></form>"
        f'<p class="note">{_e(_deploy_rule(record))} This page stays valid until the link expires.</p>'
    )
    pictures = figure_sections(report, report_problem)
    return _layout(f"Approve the {record.dataset} model?", _summary(record) + pictures + "<h2>Decision</h2>" + form)


def _deploy_rule(record: ApprovalRecord) -> str:
    if record.required_approvals > 1 or len(record.approvers) > 1:
        return (
            f"The model is deployed to production once {record.required_approvals} of "
            f"{len(record.approvers)} approvers approve; the first rejection decides."
        )
    return "Approving deploys this model to production. The first decision counts."


def vote_recorded_page(record: ApprovalRecord, approver: int) -> str:
    """A PENDING approval on which this approver has decided: their vote, and who else must."""
    vote = record.voted(approver) or {}
    waiting = record.required_approvals - record.approvals
    sentence = f"You ({_e(record.approvers[approver])}) approved at {_e(vote.get('decided_at'))}."
    return _layout(
        "Your approval is recorded",
        f'<p class="outcome">{sentence}</p>'
        f"<p>The pipeline waits for {_e(waiting)} more approval{'s' if waiting != 1 else ''} "
        f"({_e(sign_off_rule(record))}) before it deploys.</p>" + _ballots(record) + _summary(record),
    )


def _ballots(record: ApprovalRecord) -> str:
    """Every approver's decision so far."""
    if len(record.approvers) <= 1:
        return ""
    rows = "".join(
        _row(b["address"], _e(f"{b['decision']} at {b['decided_at']}" if b["decision"] else "not yet decided"))
        for b in record.ballots
    )
    return f"<h2>Approvers</h2><table>{rows}</table>"


def _decision_sentence(record: ApprovalRecord) -> str:
    verb = "Approved" if record.status == APPROVED else "Rejected"
    sentence = f"{verb} by {_e(record.decided_by)} at {_e(record.decided_at)}."
    if record.comment:
        sentence += f"<br>Comment: {_e(record.comment)}"
    return f'<p class="outcome">{sentence}</p>'


def decided_page(record: ApprovalRecord) -> str:
    """What an already decided link shows: the decision, by whom and when."""
    return _layout(
        f"The {record.dataset} model was already {'approved' if record.status == APPROVED else 'rejected'}",
        _decision_sentence(record) + _ballots(record) + _summary(record),
    )


def decision_recorded_page(record: ApprovalRecord) -> str:
    """The answer to the decision that won: what happens next."""
    if record.status == APPROVED:
        title = "Approved"
        next_step = "The pipeline now deploys the model to production."
    else:
        title = "Rejected"
        next_step = "The pipeline stops here; production is unchanged."
    return _layout(
        title,
        _decision_sentence(record) + f"<p>{_e(next_step)} You can close this page.</p>" + _summary(record),
    )


def already_decided_page(record: ApprovalRecord) -> str:
    """The answer to a decision that lost: somebody else decided first."""
    return _layout(
        "Already decided",
        "<p>Somebody decided before you; your submission changed nothing.</p>" + _decision_sentence(record),
    )


def already_voted_page(record: ApprovalRecord) -> str:
    """The answer to an approver's second decision: the first one stands."""
    return _layout(
        "You have already decided",
        "<p>Your first decision stands; this submission changed nothing.</p>" + _ballots(record),
    )


def expired_page(record: ApprovalRecord | None = None) -> str:
    """An expired link: nobody decided in time."""
    when = f" at {_e(utc_text(record.link_expires_at))}" if record else ""
    return _layout(
        "This approval link has expired",
        f"<p>The link expired{when} before anybody decided. The model was not deployed.</p>",
    )


#: Why the pipeline stopped waiting, by the code an approval was closed with.
CLOSED_REASONS = {
    "ABORTED": "the pipeline run was stopped",
    "FAILED": "the pipeline run failed",
    "TIMED_OUT": "the pipeline run timed out",
    "SUCCEEDED": "the pipeline run has already ended",
    "ExecutionDoesNotExist": "the pipeline run no longer exists",
    "TaskTimedOut": "the approval step timed out",
    "TaskDoesNotExist": "the pipeline run has moved on",
    "InvalidToken": "the pipeline run was stopped or has ended",
}


def closed_page(record: ApprovalRecord | None = None, *, just_now: bool = False) -> str:
    """The pipeline no longer waits for this approval (stopped, timed out or retried)."""
    first = (
        "The pipeline is no longer waiting for this approval; your decision was not recorded."
        if just_now
        else "The pipeline is no longer waiting for this approval."
    )
    reason = ""
    if record and record.closed_reason:
        reason = f" Reason: {CLOSED_REASONS.get(record.closed_reason, record.closed_reason)}."
    run = f" (run {record.run_id})" if record else ""
    return _layout(
        "This approval is closed",
        f"<p>{_e(first)}{_e(reason)} Nothing was decided and the model{_e(run)} was not deployed.</p>",
    )


def error_page(title: str, message: str) -> str:
    """A plain refusal or failure page; ``message`` is shown escaped."""
    return _layout(title, f"<p>{_e(message)}</p>")
