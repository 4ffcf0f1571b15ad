"""Human approval of a trained model: approval records, signed links, and decisions.

The state machine waits on a task token while a person reviews the model. The token is a
bearer credential for the execution, so it is stored in the approval table only and never
leaves it except in the one ``SendTaskSuccess`` call. What the approver receives is a link
``{base_url}/approvals/{approval_id}?sig={mac}``: the id is random and the MAC comes from a
KMS HMAC key that never leaves KMS, so a link can be neither guessed nor altered.

The email goes out with SES v2 as plain text and HTML (SNS email subscriptions can carry
plain text only, so SNS keeps the deployment notices and alerts). Mail scanners open every
link in corporate mailboxes, so opening a link (``load_for_review``) never changes anything;
only the review form's POST (``decide``) does. That POST carries the
link MAC plus a second MAC with a different purpose (the form token), which a page on another
site cannot read, and ``decide`` records the decision with one conditional write so that it
happens exactly once however many times the form is submitted.

Record layout (approval table, key ``approval_id``): see ``_new_item``. ``link_expires_at``
and ``expires_at`` (the TTL, 30 days after the link expires so the decision stays on record)
are epoch seconds; ``created_at``, ``decided_at`` and ``closed_at`` are ISO-8601 UTC strings.

This module knows nothing about HTTP: the approval API maps the ``ApprovalError`` subclasses
to pages.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import urlsplit

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from stepml.config import Settings

PENDING = "PENDING"
APPROVED = "APPROVED"
REJECTED = "REJECTED"
CLOSED = "CLOSED"

#: Form values of the two buttons, and the status each one records.
DECISION_STATUSES = {"approve": APPROVED, "reject": REJECTED}

#: Step Functions errors that mean the execution no longer waits for this task token.
PIPELINE_GONE_ERRORS = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})

#: How long a record outlives its link, so the decision can still be looked up.
RECORD_RETENTION_SECONDS = 30 * 24 * 3600
MAX_APPROVER_CHARS = 200
MAX_COMMENT_CHARS = 2000
MAX_SUBJECT_CHARS = 100

MAC_ALGORITHM = "HMAC_SHA_256"
# Each MAC binds a purpose to the id, so a link MAC can never serve as a form token (or the
# reverse); ':' cannot occur in an id, which keeps the messages unambiguous.
_LINK_PURPOSE = b"link:"
_FORM_PURPOSE = b"form:"
_APPROVAL_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
_MAC_TEXT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding


class ApprovalError(RuntimeError):
    """Base class of every approval failure."""


class ApprovalRequestError(ApprovalError):
    """The RequestApproval payload lacks a field the approval needs; the message names it."""


class ApprovalServiceError(ApprovalError):
    """An AWS call (DynamoDB, KMS, SES, Step Functions) failed; the message names the call."""


class DecisionNotDeliveredError(ApprovalServiceError):
    """Step Functions could not be told; the record was put back to PENDING to try again."""


class ForgedLinkError(ApprovalError):
    """The link's signature is missing or does not match its approval id."""


class CrossSiteRequestError(ApprovalError):
    """A decision that did not come from the review form: bad form token or foreign origin."""


class InvalidDecisionError(ApprovalError):
    """The submitted form is incomplete or malformed; the message names the field."""


class UnknownApprovalError(ApprovalError):
    """No approval record has this id (never existed, or deleted after its retention)."""


class _RecordStateError(ApprovalError):
    """An approval that can no longer be decided; ``record`` says why."""

    def __init__(self, message: str, record: ApprovalRecord):
        super().__init__(message)
        self.record = record


class ExpiredApprovalError(_RecordStateError):
    """The link expired before anybody decided."""


class AlreadyDecidedError(_RecordStateError):
    """Somebody already approved or rejected; ``record`` holds that decision."""


class ClosedApprovalError(_RecordStateError):
    """The pipeline stopped waiting for this approval; nothing was decided."""


class PipelineNotWaitingError(ClosedApprovalError):
    """This very decision found the pipeline gone; the record is now CLOSED."""


@dataclass(frozen=True)
class ApprovalRecord:
    """An approval as the review page shows it. The task token is deliberately not part of
    it, so no page, log line or error message can carry it."""

    approval_id: str
    status: str
    run_id: str
    dataset: str
    attempt: int | None
    execution_arn: str
    input_uri: str
    input_version_id: str | None
    training_job: str | None
    metric: str
    value: float | None
    threshold: float | None
    higher_is_better: bool
    passed: bool | None
    production: dict[str, Any] | None
    metrics: dict[str, Any]
    report_uri: str | None
    created_at: str
    link_expires_at: int
    expires_at: int
    reason: str | None = None
    rows: int | None = None
    decision: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None
    closed_reason: str | None = None
    closed_at: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ApprovalRecord:
        """Build from a DynamoDB item (resource format), converting Decimals."""
        data = _from_dynamo(dict(item))
        return cls(
            approval_id=data["approval_id"],
            status=data["status"],
            run_id=data["run_id"],
            dataset=data["dataset"],
            attempt=data.get("attempt"),
            execution_arn=data.get("execution_arn", ""),
            input_uri=data.get("input_uri", ""),
            input_version_id=data.get("input_version_id"),
            training_job=data.get("training_job"),
            metric=data.get("metric", ""),
            value=data.get("value"),
            threshold=data.get("threshold"),
            higher_is_better=bool(data.get("higher_is_better", True)),
            passed=data.get("passed"),
            production=data.get("production"),
            metrics=data.get("metrics") or {},
            report_uri=data.get("report_uri"),
            created_at=data.get("created_at", ""),
            reason=data.get("reason"),
            rows=data.get("rows"),
            link_expires_at=int(data["link_expires_at"]),
            expires_at=int(data.get("expires_at", 0)),
            decision=data.get("decision"),
            decided_by=data.get("decided_by"),
            decided_at=data.get("decided_at"),
            comment=data.get("comment"),
            closed_reason=data.get("closed_reason"),
            closed_at=data.get("closed_at"),
        )

    @property
    def is_decided(self) -> bool:
        return self.status in (APPROVED, REJECTED)

    @property
    def production_value(self) -> float | None:
        """The production model's value of the gate metric, when there is a production model."""
        if not self.production:
            return None
        value = self.production.get("value")
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    def link_expired(self, now: datetime) -> bool:
        return self.link_expires_at <= int(now.timestamp())


@dataclass(frozen=True)
class Review:
    """What the review page needs: the record, and the form token while it is still PENDING."""

    record: ApprovalRecord
    form_token: str | None = field(default=None, repr=False)


# --- small helpers --------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def _to_dynamo(value: Any) -> Any:
    """Plain JSON data as the DynamoDB resource accepts it: floats as Decimal; NaN and
    infinities (which DynamoDB cannot store) as None."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return str(value)


def _from_dynamo(value: Any) -> Any:
    """DynamoDB data back to plain types: Decimal to int or float."""
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _require(mapping: Mapping[str, Any], where: str, path: str) -> Any:
    """Follow a dotted path in the payload part ``where``; a missing or empty value names it."""
    node: Any = mapping
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None or node == "":
        raise ApprovalRequestError(f"RequestApproval payload: field '{where}.{path}' is missing or empty")
    return node


def _number_or_none(mapping: Mapping[str, Any], key: str, where: str) -> float | None:
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ApprovalRequestError(f"RequestApproval payload: field '{where}.{key}' must be a number")
    return float(value)


# --- signatures -------------------------------------------------------------------------------


def new_approval_id() -> str:
    """A fresh unguessable approval id (192 random bits)."""
    return secrets.token_urlsafe(24)


def _generate_mac(kms_client: Any, key_id: str, message: bytes) -> str:
    try:
        response = kms_client.generate_mac(KeyId=key_id, Message=message, MacAlgorithm=MAC_ALGORITHM)
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(f"KMS GenerateMac with key {key_id} failed: {exc}") from exc
    return base64.urlsafe_b64encode(response["Mac"]).rstrip(b"=").decode("ascii")


def _mac_is_valid(kms_client: Any, key_id: str, message: bytes, mac_text: str | None) -> bool:
    # A MAC of the wrong shape cannot be ours; rejecting it here also keeps garbage away
    # from KMS, which answers malformed input with ValidationException rather than "invalid".
    if not mac_text or not _MAC_TEXT.match(mac_text):
        return False
    mac = base64.urlsafe_b64decode(mac_text + "=")
    try:
        response = kms_client.verify_mac(KeyId=key_id, Message=message, MacAlgorithm=MAC_ALGORITHM, Mac=mac)
    except ClientError as exc:
        if _error_code(exc) == "KMSInvalidMacException":
            return False
        raise ApprovalServiceError(f"KMS VerifyMac with key {key_id} failed: {_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise ApprovalServiceError(f"KMS VerifyMac with key {key_id} failed: {exc}") from exc
    return bool(response.get("MacValid"))


def link_signature(kms_client: Any, key_id: str, approval_id: str) -> str:
    """The MAC that the emailed link carries as ``sig``."""
    return _generate_mac(kms_client, key_id, _LINK_PURPOSE + approval_id.encode("ascii"))


def form_token(kms_client: Any, key_id: str, approval_id: str) -> str:
    """The review form's hidden ``csrf`` value; only someone who loaded the page has it."""
    return _generate_mac(kms_client, key_id, _FORM_PURPOSE + approval_id.encode("ascii"))


def verify_link(kms_client: Any, key_id: str, approval_id: str, sig: str | None) -> None:
    """Raise ``ForgedLinkError`` unless ``sig`` is this id's link MAC."""
    if not _APPROVAL_ID.match(approval_id or "") or not _mac_is_valid(
        kms_client, key_id, _LINK_PURPOSE + approval_id.encode("ascii"), sig
    ):
        raise ForgedLinkError("the approval link is not valid: its signature does not match (query 'sig')")


def verify_form_token(kms_client: Any, key_id: str, approval_id: str, token: str | None) -> None:
    """Raise ``CrossSiteRequestError`` unless ``token`` is this id's form token."""
    if not _mac_is_valid(kms_client, key_id, _FORM_PURPOSE + approval_id.encode("ascii"), token):
        raise CrossSiteRequestError("the decision form's token (field 'csrf') is missing or not valid")


def check_same_origin(*, sec_fetch_site: str | None, origin: str | None, host: str | None) -> None:
    """Refuse a submission that a browser reports as coming from another site.

    ``Sec-Fetch-Site: cross-site`` is refused; so is an ``Origin`` whose host differs from the
    request's own host (an absent ``Origin`` is allowed: older browsers omit it on forms).
    ``Origin: null`` (an opaque origin: a sandboxed frame, a ``data:`` page, or a page whose
    referrer policy is no-referrer) passes only when ``Sec-Fetch-Site`` says same-origin.
    """
    fetch_site = (sec_fetch_site or "").strip().lower()
    if fetch_site == "cross-site":
        raise CrossSiteRequestError("refused a cross-site submission (header 'Sec-Fetch-Site: cross-site')")
    if origin is None:
        return
    if origin.strip() == "null":
        if fetch_site == "same-origin":
            return
        raise CrossSiteRequestError("refused a submission from an opaque origin (header 'Origin: null')")
    origin_host = urlsplit(origin.strip()).netloc.lower() if "://" in origin else ""
    if not host or origin_host != host.strip().lower():
        raise CrossSiteRequestError("refused a submission from another origin (header 'Origin')")


def approval_link(base_url: str, approval_id: str, sig: str) -> str:
    """The review link that goes into the email."""
    return f"{base_url.rstrip('/')}/approvals/{approval_id}?sig={sig}"


# --- requesting an approval -----------------------------------------------------------------


def _new_item(
    approval_id: str,
    run: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    task_token: str,
    execution_arn: str,
    now: datetime,
    link_expires_at: int,
) -> dict[str, Any]:
    production = evaluation.get("production")
    if production is not None and not isinstance(production, Mapping):
        raise ApprovalRequestError("RequestApproval payload: field 'evaluation.production' must be an object")
    metrics = evaluation.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ApprovalRequestError("RequestApproval payload: field 'evaluation.metrics' must be an object")
    passed = evaluation.get("passed")
    item = {
        "approval_id": approval_id,
        "status": PENDING,
        "task_token": task_token,
        "run_id": _require(run, "run", "run_id"),
        "dataset": _require(run, "run", "dataset"),
        "attempt": run.get("attempt"),
        "execution_arn": execution_arn,
        "input_uri": _require(run, "run", "input.uri"),
        "input_version_id": (run.get("input") or {}).get("version_id"),
        "training_job": (run.get("names") or {}).get("training_job"),
        "metric": _require(evaluation, "evaluation", "metric"),
        "value": _number_or_none(evaluation, "value", "evaluation"),
        "threshold": _number_or_none(evaluation, "threshold", "evaluation"),
        "higher_is_better": bool(evaluation.get("higher_is_better", True)),
        "passed": passed if isinstance(passed, bool) else None,
        "production": dict(production) if production else None,
        "metrics": dict(metrics),
        "report_uri": evaluation.get("report_uri"),
        "reason": evaluation.get("reason"),
        "rows": evaluation.get("rows"),
        "created_at": _iso(now),
        "link_expires_at": link_expires_at,
        "expires_at": link_expires_at + RECORD_RETENTION_SECONDS,
    }
    return _to_dynamo(item)


def _timeout_seconds(run: Mapping[str, Any]) -> int:
    value = _require(run, "run", "approval_timeout_seconds")
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = 0
    if seconds <= 0:
        raise ApprovalRequestError(
            f"RequestApproval payload: field 'run.approval_timeout_seconds' must be a positive "
            f"number of seconds, got {value!r}"
        )
    return seconds


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
        "",
        f"Review the model and approve or reject it here (the link expires {utc_text(record.link_expires_at)}):",
        "",
        link,
        "",
        "Opening the link changes nothing; the decision is taken only with the buttons on the page.",
        "Do not forward this email: anyone with the link can decide.",
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
        '<p style="color:#57606a;font-size:13px">Do not forward this email: anyone with the link can decide.</p>'
        "</body></html>\n"
    )


def send_approval_email(ses_client: Any, settings: Settings, record: ApprovalRecord, link: str) -> str:
    """Email the approver with SES v2 (plain text and HTML); returns SES's message id."""
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
            Destination={"ToAddresses": [settings.approver_email]},
            Content=content,
        )
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(
            f"SES SendEmail from {settings.approval_sender} to {settings.approver_email} failed: {exc}"
        ) from exc
    return str(response.get("MessageId", ""))


def request_approval(
    run: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    task_token: str,
    execution_arn: str,
    *,
    table: Any,
    kms_client: Any,
    ses_client: Any,
    settings: Settings,
    now: datetime,
    waiting_since: datetime | None = None,
) -> dict[str, Any]:
    """Store a PENDING approval for the waiting task and email its signed review link.

    The link expires when Step Functions stops waiting: ``waiting_since`` (the task's entered
    time) plus the run's approval timeout, so that a link opened after the timeout says
    "expired", never "closed". Without ``waiting_since`` the clock starts at ``now``.

    ``table`` is the approval table (boto3 resource); ``ses_client`` an SES v2 client;
    ``settings`` needs the signing key id, base URL, sender and approver addresses. Returns
    ``{"approval_id", "expires_at"}`` where ``expires_at`` is when the link expires (ISO-8601 UTC).
    """
    if not task_token:
        raise ApprovalRequestError("RequestApproval payload: field 'task_token' is missing or empty")
    if not execution_arn:
        raise ApprovalRequestError("RequestApproval payload: field 'execution_arn' is missing or empty")
    link_expires_at = int((waiting_since or now).timestamp()) + _timeout_seconds(run)
    approval_id = new_approval_id()
    item = _new_item(approval_id, run, evaluation, task_token, execution_arn, now, link_expires_at)
    # Sign before storing so that a KMS failure leaves no record behind.
    sig = link_signature(kms_client, settings.approval_signing_key_id, approval_id)
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(approval_id)")
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(f"DynamoDB PutItem into the approval table {table.name} failed: {exc}") from exc
    record = ApprovalRecord.from_item(item)
    send_approval_email(ses_client, settings, record, approval_link(settings.approval_base_url, approval_id, sig))
    return {"approval_id": approval_id, "expires_at": _iso(datetime.fromtimestamp(link_expires_at, UTC))}


# --- reviewing and deciding -------------------------------------------------------------------


def _get_record(table: Any, approval_id: str) -> ApprovalRecord:
    try:
        item = table.get_item(Key={"approval_id": approval_id}, ConsistentRead=True).get("Item")
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(f"DynamoDB GetItem on the approval table {table.name} failed: {exc}") from exc
    if item is None:
        raise UnknownApprovalError(f"approval {approval_id} does not exist")
    return ApprovalRecord.from_item(item)


def _undecidable(record: ApprovalRecord, now: datetime) -> _RecordStateError | None:
    """Why this record cannot be decided any more, or None if it can."""
    if record.status == CLOSED:
        return ClosedApprovalError(
            f"approval {record.approval_id} is closed: the pipeline stopped waiting ({record.closed_reason})",
            record,
        )
    if record.is_decided:
        return AlreadyDecidedError(
            f"approval {record.approval_id} was already decided: {record.decision} by {record.decided_by}",
            record,
        )
    if record.link_expired(now):
        return ExpiredApprovalError(
            f"approval {record.approval_id} expired at {utc_text(record.link_expires_at)}", record
        )
    return None


def _execution_stopped(sfn_client: Any, record: ApprovalRecord) -> str | None:
    """The status of the record's execution when it no longer runs (``ABORTED``, ``FAILED``,
    ``TIMED_OUT``, ``SUCCEEDED``, ``ExecutionDoesNotExist``), or None while it runs."""
    if not record.execution_arn:
        return None
    try:
        status = sfn_client.describe_execution(executionArn=record.execution_arn)["status"]
    except ClientError as exc:
        if _error_code(exc) == "ExecutionDoesNotExist":
            return "ExecutionDoesNotExist"
        raise ApprovalServiceError(f"Step Functions DescribeExecution failed: {_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise ApprovalServiceError("Step Functions DescribeExecution could not be reached") from exc
    return None if status == "RUNNING" else str(status)


def load_for_review(
    approval_id: str,
    sig: str | None,
    *,
    table: Any,
    kms_client: Any,
    sfn_client: Any,
    settings: Settings,
    now: datetime,
) -> Review:
    """Check the link and load what the review page shows. Reads only, never writes.

    A decided record is returned (the page shows the decision); a CLOSED or expired one
    raises, and so does a PENDING one whose execution no longer runs (stopped, failed), so
    nobody fills in a form that can no longer count. The form token is issued only while the
    approval is PENDING and its execution waits.
    """
    key_id = settings.approval_signing_key_id
    verify_link(kms_client, key_id, approval_id, sig)
    record = _get_record(table, approval_id)
    if record.is_decided:
        return Review(record)
    problem = _undecidable(record, now)
    if problem is not None:
        raise problem
    stopped = _execution_stopped(sfn_client, record)
    if stopped is not None:
        # Shown as closed, but not written: opening a link never changes anything.
        raise ClosedApprovalError(
            f"approval {approval_id}: its execution is {stopped}",
            replace(record, status=CLOSED, closed_reason=stopped),
        )
    return Review(record, form_token(kms_client, key_id, approval_id))


def _validated_form(decision: str | None, approver: str | None, comment: str | None) -> tuple[str, str, str]:
    decision = (decision or "").strip().lower()
    if decision not in DECISION_STATUSES:
        raise InvalidDecisionError("field 'decision' must be 'approve' or 'reject'")
    approver = " ".join((approver or "").split())
    if not approver:
        raise InvalidDecisionError("field 'approver' (your name or email) is required")
    if len(approver) > MAX_APPROVER_CHARS:
        raise InvalidDecisionError(f"field 'approver' must be at most {MAX_APPROVER_CHARS} characters")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidDecisionError(f"field 'comment' must be at most {MAX_COMMENT_CHARS} characters")
    return decision, approver, comment


_DECISION_ATTRIBUTES = {
    "#status": "status",
    "#decision": "decision",
    "#decided_by": "decided_by",
    "#decided_at": "decided_at",
    "#comment": "comment",
}


def _undo_decision(
    table: Any, approval_id: str, decided_at: str, *, status: str, extra: Mapping[str, Any]
) -> ApprovalRecord | None:
    """Take back the decision this request wrote (and only that one), moving the record to
    ``status``. Returns the updated record, or None if the write failed."""
    assignments = ["#status = :status", *(f"{name} = :{name}" for name in extra)]
    try:
        response = table.update_item(
            Key={"approval_id": approval_id},
            UpdateExpression="SET " + ", ".join(assignments) + " REMOVE #decision, #decided_by, #decided_at, #comment",
            ConditionExpression="#status IN (:approved, :rejected) AND #decided_at = :decided_at",
            ExpressionAttributeNames=_DECISION_ATTRIBUTES,
            ExpressionAttributeValues={
                ":status": status,
                ":approved": APPROVED,
                ":rejected": REJECTED,
                ":decided_at": decided_at,
                **{f":{name}": value for name, value in extra.items()},
            },
            ReturnValues="ALL_NEW",
        )
    except (ClientError, BotoCoreError):
        return None
    return ApprovalRecord.from_item(response["Attributes"])


def decide(
    approval_id: str,
    *,
    decision: str | None,
    approver: str | None,
    comment: str | None,
    sig: str | None,
    csrf: str | None,
    table: Any,
    kms_client: Any,
    sfn_client: Any,
    settings: Settings,
    now: datetime,
) -> ApprovalRecord:
    """Record a decision exactly once and complete the waiting task with it.

    The link signature and the form token must both verify. One conditional update moves the
    record from PENDING (and unexpired) to APPROVED or REJECTED, so of any number of
    concurrent submissions exactly one wins; the others raise ``AlreadyDecidedError`` (or
    ``ExpiredApprovalError`` / ``ClosedApprovalError``). Then ``SendTaskSuccess`` completes
    the task; if the execution is gone the record becomes CLOSED and
    ``PipelineNotWaitingError`` is raised.
    """
    key_id = settings.approval_signing_key_id
    verify_link(kms_client, key_id, approval_id, sig)
    verify_form_token(kms_client, key_id, approval_id, csrf)
    decision, approver, comment = _validated_form(decision, approver, comment)
    # Milliseconds, because the decision's time also identifies it when it must be undone.
    decided_at = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        response = table.update_item(
            Key={"approval_id": approval_id},
            UpdateExpression="SET #status = :new_status, #decision = :decision, #decided_by = :approver, "
            "#decided_at = :decided_at, #comment = :comment",
            ConditionExpression="#status = :pending AND link_expires_at > :now",
            ExpressionAttributeNames=_DECISION_ATTRIBUTES,
            ExpressionAttributeValues={
                ":new_status": DECISION_STATUSES[decision],
                ":decision": decision,
                ":approver": approver,
                ":decided_at": decided_at,
                ":comment": comment,
                ":pending": PENDING,
                ":now": int(now.timestamp()),
            },
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if _error_code(exc) != "ConditionalCheckFailedException":
            raise ApprovalServiceError(
                f"DynamoDB UpdateItem on the approval table {table.name} failed: {_error_code(exc)}"
            ) from exc
        old = exc.response.get("Item")
        if not old:
            raise UnknownApprovalError(f"approval {approval_id} does not exist") from exc
        deserializer = TypeDeserializer()
        record = ApprovalRecord.from_item({k: deserializer.deserialize(v) for k, v in old.items()})
        problem = _undecidable(record, now)
        if problem is None:  # the condition failed, so one of the reasons above must hold
            problem = AlreadyDecidedError(f"approval {approval_id} cannot be decided any more", record)
        raise problem from exc
    except BotoCoreError as exc:
        raise ApprovalServiceError(f"DynamoDB UpdateItem on the approval table {table.name} failed") from exc

    item = response["Attributes"]
    record = ApprovalRecord.from_item({k: v for k, v in item.items() if k != "task_token"})
    output = {
        "decision": decision,
        "approver": approver,
        "comment": comment,
        "decided_at": decided_at,
        "approval_id": approval_id,
    }
    try:
        sfn_client.send_task_success(taskToken=item["task_token"], output=json.dumps(output))
    except ClientError as exc:
        code = _error_code(exc)
        if code in PIPELINE_GONE_ERRORS:
            closed = _undo_decision(
                table,
                approval_id,
                decided_at,
                status=CLOSED,
                extra={"closed_reason": code, "closed_at": decided_at},
            )
            raise PipelineNotWaitingError(
                f"approval {approval_id}: the pipeline is no longer waiting ({code}); nothing was decided",
                closed or record,
            ) from exc
        _undo_decision(table, approval_id, decided_at, status=PENDING, extra={})
        raise DecisionNotDeliveredError(
            f"approval {approval_id}: Step Functions SendTaskSuccess failed ({code}); the decision was "
            "not recorded, try again"
        ) from exc
    except BotoCoreError as exc:
        _undo_decision(table, approval_id, decided_at, status=PENDING, extra={})
        raise DecisionNotDeliveredError(
            f"approval {approval_id}: Step Functions SendTaskSuccess could not be reached; the decision "
            "was not recorded, try again"
        ) from exc
    return record
