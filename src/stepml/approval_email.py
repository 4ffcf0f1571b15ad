"""The approval email (SES v2, plain text and HTML) and the phrases it shares with the pages.

SNS email subscriptions can carry plain text only, so SNS keeps the deployment notices and
alerts and the approval request goes out through SES v2, from the stack's ApprovalSenderEmail
(a verified SES identity) to each approver (the dataset config's ``approvers``, or the stack's
ApproverEmail). Each email carries that approver's own signed link and never the task token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.approval_records import ApprovalRecord, ApprovalServiceError
from stepml.config import Settings

MAX_SUBJECT_CHARS = 100


def utc_text(epoch_seconds: int) -> str:
    """An epoch time as people read it in an email: ``2026-11-30 14:05 UTC``."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_number(value: float | int | None) -> str:
    """A metric value short enough for a subject line: at most 4 decimals, no trailing zeros."""
    if value is None:
        return "n/a"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ascii_line(text: str) -> str:
    """SNS subjects must be ASCII, printable and on one line."""
    return "".join(ch if " " <= ch <= "~" else " " for ch in text)


def email_subject(record: ApprovalRecord) -> str:
    """``[stepml] Approve churn model churn-3f2a9c1b7d4e? auc 0.912 (threshold 0.8)``, ≤100 chars."""
    headline = f"{record.metric} {format_number(record.value)}"
    if record.threshold is not None:
        headline += f" (threshold {format_number(record.threshold)})"
    subject = _ascii_line(f"[stepml] Approve {record.dataset} model {record.run_id}? {headline}")
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    return subject


def production_comparison(record: ApprovalRecord) -> str:
    """One sentence comparing the new model with the production model on the gate metric."""
    production_value = record.production_value
    if production_value is None or record.value is None:
        if record.production:
            return "A production model exists, but its value of the metric is unknown."
        return "There is no production model yet: approving deploys the first one."
    difference = record.value - production_value
    improves = difference > 0 if record.higher_is_better else difference < 0
    if difference == 0:
        verdict = "the same as production"
    else:
        verdict = "better than production" if improves else "worse than production"
    return (
        f"{record.metric} {format_number(record.value)} against production "
        f"{format_number(production_value)} ({'+' if difference > 0 else ''}{format_number(difference)}): "
        f"{verdict}."
    )


def gate_summary(record: ApprovalRecord) -> str:
    """The gate metric against its threshold, in words."""
    if record.threshold is None:
        return f"{record.metric} {format_number(record.value)} (no threshold configured)"
    direction = "at least" if record.higher_is_better else "at most"
    verdict = {True: "passed", False: "NOT passed", None: "gate result unknown"}[record.passed]
    return (
        f"{record.metric} {format_number(record.value)}; the gate requires {direction} "
        f"{format_number(record.threshold)}: {verdict}"
    )


def _version_text(record: ApprovalRecord) -> str:
    return record.input_version_id or "unversioned"


def email_body(record: ApprovalRecord, link: str) -> str:
    """The plain-text part: what was trained on what, how it scored, and the one link."""
    lines = [
        f"A new {record.dataset} model is waiting for your approval before it goes to production.",
        "",
        f"Run:           {record.run_id}" + (f" (attempt {record.attempt})" if record.attempt else ""),
        f"Trained on:    {record.input_uri} (version {_version_text(record)})",
        f"Training job:  {record.training_job or 'unknown'} (SageMaker built-in XGBoost)",
        f"Gate metric:   {gate_summary(record)}",
        f"Production:    {production_comparison(record)}",
        f"Report:        {record.report_uri or 'not available'}",
        *([f"Sign-off:      {sign_off_rule(record)}"] if sign_off_rule(record) else []),
        "",
        f"Review the model and approve or reject it here (the link expires {utc_text(record.link_expires_at)}):",
        "",
        link,
        "",
        "Opening the link changes nothing; the decision is taken only with the buttons on the page.",
        "This link is yours alone: the decision is recorded under your address. Do not forward it.",
    ]
    return "\n".join(lines) + "\n"


def email_html(record: ApprovalRecord, link: str) -> str:
    """The HTML part: the same facts as ``email_body`` and one button-like link to the review
    page. Styles are inline because mail clients drop ``<style>`` blocks; no images, no scripts."""
    run = record.run_id + (f" (attempt {record.attempt})" if record.attempt else "")
    rows = [
        ("Dataset", record.dataset),
        ("Run", run),
        ("Trained on", f"{record.input_uri} (version {_version_text(record)})"),
        ("Training job", f"{record.training_job or 'unknown'} (SageMaker built-in XGBoost)"),
        ("Gate metric", gate_summary(record)),
        ("Production", production_comparison(record)),
        ("Report", record.report_uri or "not available"),
        ("Link expires", utc_text(record.link_expires_at)),
        *([("Sign-off", sign_off_rule(record))] if sign_off_rule(record) else []),
    ]
    cell = "padding:4px 12px 4px 0;vertical-align:top;text-align:left"
    label_cell = f"{cell};color:#57606a;white-space:nowrap"
    table = "".join(
        f'<tr><th style="{label_cell}">{escape(label)}</th><td style="{cell}">{escape(value)}</td></tr>'
        for label, value in rows
    )
    button = (
        "display:inline-block;padding:10px 20px;background:#0969da;color:#ffffff;"
        "text-decoration:none;border-radius:6px;font-weight:600"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(email_subject(record))}</title></head>"
        '<body style="font-family:Arial,Helvetica,sans-serif;color:#1b1f24;line-height:1.45">'
        f"<p>A new <strong>{escape(record.dataset)}</strong> model is waiting for your approval before it goes "
        "to production.</p>"
        f'<table style="border-collapse:collapse">{table}</table>'
        f'<p style="margin:20px 0"><a href="{escape(link, quote=True)}" style="{button}">Review and decide</a></p>'
        f"<p>The link expires {escape(utc_text(record.link_expires_at))}. Opening it changes nothing; the "
        "decision is taken only with the buttons on the page.</p>"
        '<p style="color:#57606a;font-size:13px">This link is yours alone: the decision is recorded under your '
        "address. Do not forward it.</p>"
        "</body></html>\n"
    )


def sign_off_rule(record: ApprovalRecord) -> str:
    """How many approvals the run waits for, in words (empty for a single approver)."""
    if len(record.approvers) <= 1:
        return ""
    return (
        f"{record.required_approvals} of {len(record.approvers)} approvers must approve; the first rejection decides."
    )


def send_approval_email(ses_client: Any, settings: Settings, record: ApprovalRecord, link: str, to: str) -> str:
    """Email approver ``to`` their own link with SES v2 (plain text and HTML); returns SES's message id."""
    content = {
        "Simple": {
            "Subject": {"Data": email_subject(record), "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": email_body(record, link), "Charset": "UTF-8"},
                "Html": {"Data": email_html(record, link), "Charset": "UTF-8"},
            },
        }
    }
    try:
        response = ses_client.send_email(
            FromEmailAddress=settings.approval_sender,
            Destination={"ToAddresses": [to]},
            Content=content,
        )
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(f"SES SendEmail from {settings.approval_sender} to {to} failed: {exc}") from exc
    return str(response.get("MessageId", ""))
