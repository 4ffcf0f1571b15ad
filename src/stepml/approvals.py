"""Human approval of a trained model: requesting it, showing it and deciding it, exactly once.

The state machine waits on a task token while a person reviews the model. The token is a
bearer credential for the execution, so it is stored in the approval table only and never
leaves it except in the one ``SendTaskSuccess`` call. The approver gets a signed link
(``stepml.approval_links``) by email (``stepml.approval_email``). Mail scanners open every
link in corporate mailboxes, so opening a link (``ApprovalDecisions.load_for_review``) never changes
anything; only the review form's POST (``ApprovalDecisions.decide``) does. That POST carries the link
MAC plus the form token, and ``decide`` records the decision with one conditional write so
that it happens exactly once however many times the form is submitted.

The record and the errors live in ``stepml.approval_records``. This module knows nothing
about HTTP: the approval API maps the ``ApprovalError`` subclasses to pages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from stepml.approval_email import send_approval_email, utc_text
from stepml.approval_links import (
    approval_link,
    error_code,
    form_token,
    link_signature,
    new_approval_id,
    verify_form_token,
    verify_link,
)
from stepml.approval_records import (
    APPROVED,
    CLOSED,
    DECISION_STATUSES,
    MAX_APPROVER_CHARS,
    MAX_COMMENT_CHARS,
    PENDING,
    PIPELINE_GONE_ERRORS,
    REJECTED,
    AlreadyDecidedError,
    ApprovalRecord,
    ApprovalServiceError,
    ClosedApprovalError,
    DecisionNotDeliveredError,
    ExpiredApprovalError,
    InvalidDecisionError,
    PipelineNotWaitingError,
    RecordStateError,
    Review,
    UnknownApprovalError,
    new_item,
)
from stepml.config import Settings
from stepml.payloads import RequestApprovalPayload
from stepml.registry import DECISION_STATUS, ModelRegistry, RegistryError, decision_description
from stepml.utils import iso_utc, utc_now

_log = logging.getLogger(__name__)

_DECISION_ATTRIBUTES = {
    "#status": "status",
    "#decision": "decision",
    "#decided_by": "decided_by",
    "#decided_at": "decided_at",
    "#comment": "comment",
}


@dataclass(frozen=True, kw_only=True)
class _ApprovalTable:
    """The approval table and KMS, which signs its links with ``settings.approval_signing_key_id``;
    ``clock`` tells the time (tests fix it)."""

    table: Any
    kms_client: Any
    settings: Settings
    clock: Callable[[], datetime] = utc_now


@dataclass(frozen=True, kw_only=True)
class ApprovalRequests(_ApprovalTable):
    """RequestApproval's service: stores approvals and emails their links (``ses_client``: SES v2).

    ``settings`` holds the signing key id, the base URL, and the sender and approver addresses.
    """

    ses_client: Any

    # --- requesting -----------------------------------------------------------------------

    def request(self, payload: RequestApprovalPayload) -> dict[str, Any]:
        """Store a PENDING approval for the waiting task and email its signed review link.

        The link expires when Step Functions stops waiting: ``payload.waiting_since`` (the
        task's entered time) plus the run's approval timeout, so that a link opened after the
        timeout says "expired", never "closed". Without ``waiting_since`` the clock starts now.
        Returns ``{"approval_id", "expires_at"}``, ``expires_at`` being when the link expires.
        """
        now = self.clock()
        link_expires_at = int((payload.waiting_since or now).timestamp()) + payload.run.approval_timeout_seconds
        approval_id = new_approval_id()
        item = new_item(
            approval_id,
            payload.run,
            payload.evaluation,
            task_token=payload.task_token,
            execution_arn=payload.execution_arn,
            now=now,
            link_expires_at=link_expires_at,
        )
        # Sign before storing so that a KMS failure leaves no record behind.
        sig = link_signature(self.kms_client, self.settings.approval_signing_key_id, approval_id)
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(approval_id)")
        except (ClientError, BotoCoreError) as exc:
            raise ApprovalServiceError(
                f"DynamoDB PutItem into the approval table {self.table.name} failed: {exc}"
            ) from exc
        link = approval_link(self.settings.approval_base_url, approval_id, sig)
        send_approval_email(self.ses_client, self.settings, ApprovalRecord.from_item(item), link)
        expires_at = iso_utc(datetime.fromtimestamp(link_expires_at, UTC), timespec="seconds")
        return {"approval_id": approval_id, "expires_at": expires_at}


@dataclass(frozen=True, kw_only=True)
class ApprovalDecisions(_ApprovalTable):
    """The approval API's service: shows approvals and takes decisions (``sfn_client``: Step
    Functions, which the decision completes). ``settings`` holds the signing key id. With a
    ``registry`` the decision is copied to the run's model package version at once."""

    sfn_client: Any
    registry: ModelRegistry | None = None

    # --- reviewing ------------------------------------------------------------------------

    def load_for_review(self, approval_id: str, sig: str | None) -> Review:
        """Check the link and load what the review page shows. Reads only, never writes.

        A decided record is returned (the page shows the decision); a CLOSED or expired one
        raises, and so does a PENDING one whose execution no longer runs (stopped, failed), so
        nobody fills in a form that can no longer count. The form token is issued only while
        the approval is PENDING and its execution waits.
        """
        verify_link(self.kms_client, self.settings.approval_signing_key_id, approval_id, sig)
        record = self._get_record(approval_id)
        if record.is_decided:
            return Review(record)
        problem = _undecidable(record, self.clock())
        if problem is not None:
            raise problem
        stopped = self._execution_stopped(record)
        if stopped is not None:
            # Shown as closed, but not written: opening a link never changes anything.
            raise ClosedApprovalError(
                f"approval {approval_id}: its execution is {stopped}",
                replace(record, status=CLOSED, closed_reason=stopped),
            )
        return Review(record, form_token(self.kms_client, self.settings.approval_signing_key_id, approval_id))

    def _get_record(self, approval_id: str) -> ApprovalRecord:
        try:
            item = self.table.get_item(Key={"approval_id": approval_id}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise ApprovalServiceError(
                f"DynamoDB GetItem on the approval table {self.table.name} failed: {exc}"
            ) from exc
        if item is None:
            raise UnknownApprovalError(f"approval {approval_id} does not exist")
        return ApprovalRecord.from_item(item)

    def _execution_stopped(self, record: ApprovalRecord) -> str | None:
        """The status of the record's execution when it no longer runs (``ABORTED``, ``FAILED``,
        ``TIMED_OUT``, ``SUCCEEDED``, ``ExecutionDoesNotExist``), or None while it runs."""
        if not record.execution_arn:
            return None
        try:
            status = self.sfn_client.describe_execution(executionArn=record.execution_arn)["status"]
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return "ExecutionDoesNotExist"
            raise ApprovalServiceError(f"Step Functions DescribeExecution failed: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise ApprovalServiceError("Step Functions DescribeExecution could not be reached") from exc
        return None if status == "RUNNING" else str(status)

    # --- deciding -------------------------------------------------------------------------

    def decide(
        self,
        approval_id: str,
        *,
        decision: str | None,
        approver: str | None,
        comment: str | None,
        sig: str | None,
        csrf: str | None,
    ) -> ApprovalRecord:
        """Record a decision exactly once and complete the waiting task with it.

        The link signature and the form token must both verify. One conditional update moves
        the record from PENDING (and unexpired) to APPROVED or REJECTED, so of any number of
        concurrent submissions exactly one wins; the others raise ``AlreadyDecidedError`` (or
        ``ExpiredApprovalError`` / ``ClosedApprovalError``). Then ``SendTaskSuccess`` completes
        the task; if the execution is gone the record becomes CLOSED and
        ``PipelineNotWaitingError`` is raised.
        """
        verify_link(self.kms_client, self.settings.approval_signing_key_id, approval_id, sig)
        verify_form_token(self.kms_client, self.settings.approval_signing_key_id, approval_id, csrf)
        decision, approver, comment = _validated_form(decision, approver, comment)
        now = self.clock()
        # Milliseconds, because the decision's time also identifies it when it must be undone.
        decided_at = iso_utc(now)
        item = self._write_decision(approval_id, decision, approver, comment, decided_at, now)
        record = ApprovalRecord.from_item({k: v for k, v in item.items() if k != "task_token"})
        output = {
            "decision": decision,
            "approver": approver,
            "comment": comment,
            "decided_at": decided_at,
            "approval_id": approval_id,
        }
        self._complete_task(record, item["task_token"], output)
        self._copy_to_registry(record)
        return record

    def _copy_to_registry(self, record: ApprovalRecord) -> None:
        """Set the run's model package version to the decision, so SageMaker Studio shows it now.

        The decision is delivered by then and stands whatever happens here: a failed update is
        logged, and RecordStep sets the same status again when the pipeline records the decision.
        """
        if self.registry is None or not record.model_package_arn or record.decision not in DECISION_STATUS:
            return
        status = DECISION_STATUS[record.decision]
        description = decision_description(status, record.decided_by, record.decided_at, record.comment)
        try:
            self.registry.set_status(record.model_package_arn, status, description)
        except RegistryError as exc:
            _log.warning("the model registry was not updated: %s", exc)

    def _write_decision(
        self, approval_id: str, decision: str, approver: str, comment: str, decided_at: str, now: datetime
    ) -> dict[str, Any]:
        """The one conditional write that decides; returns the item as it is now."""
        try:
            response = self.table.update_item(
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
            if error_code(exc) != "ConditionalCheckFailedException":
                raise ApprovalServiceError(
                    f"DynamoDB UpdateItem on the approval table {self.table.name} failed: {error_code(exc)}"
                ) from exc
            raise _refusal(approval_id, exc.response.get("Item"), now) from exc
        except BotoCoreError as exc:
            raise ApprovalServiceError(f"DynamoDB UpdateItem on the approval table {self.table.name} failed") from exc
        return response["Attributes"]

    def _complete_task(self, record: ApprovalRecord, task_token: str, output: Mapping[str, Any]) -> None:
        """``SendTaskSuccess``; when it fails the decision is taken back (CLOSED when the
        execution no longer waits, PENDING to try again otherwise)."""
        approval_id, decided_at = record.approval_id, str(output["decided_at"])
        try:
            self.sfn_client.send_task_success(taskToken=task_token, output=json.dumps(output))
        except ClientError as exc:
            code = error_code(exc)
            if code in PIPELINE_GONE_ERRORS:
                closed = self._undo_decision(
                    approval_id, decided_at, status=CLOSED, extra={"closed_reason": code, "closed_at": decided_at}
                )
                raise PipelineNotWaitingError(
                    f"approval {approval_id}: the pipeline is no longer waiting ({code}); nothing was decided",
                    closed or record,
                ) from exc
            self._undo_decision(approval_id, decided_at, status=PENDING, extra={})
            raise DecisionNotDeliveredError(
                f"approval {approval_id}: Step Functions SendTaskSuccess failed ({code}); the decision was "
                "not recorded, try again"
            ) from exc
        except BotoCoreError as exc:
            self._undo_decision(approval_id, decided_at, status=PENDING, extra={})
            raise DecisionNotDeliveredError(
                f"approval {approval_id}: Step Functions SendTaskSuccess could not be reached; the decision "
                "was not recorded, try again"
            ) from exc

    def _undo_decision(
        self, approval_id: str, decided_at: str, *, status: str, extra: Mapping[str, Any]
    ) -> ApprovalRecord | None:
        """Take back the decision this request wrote (and only that one), moving the record to
        ``status``. Returns the updated record, or None if the write failed."""
        assignments = ["#status = :status", *(f"{name} = :{name}" for name in extra)]
        try:
            response = self.table.update_item(
                Key={"approval_id": approval_id},
                UpdateExpression="SET " + ", ".join(assignments) + " REMOVE #decision, #decided_by, #decided_at, "
                "#comment",
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


def _undecidable(record: ApprovalRecord, now: datetime) -> RecordStateError | None:
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


def _refusal(approval_id: str, old: Mapping[str, Any] | None, now: datetime) -> Exception:
    """Why the decision's conditional write failed, from the item as it was (low-level format)."""
    if not old:
        return UnknownApprovalError(f"approval {approval_id} does not exist")
    deserializer = TypeDeserializer()
    record = ApprovalRecord.from_item({k: deserializer.deserialize(v) for k, v in old.items()})
    # The condition failed, so one of _undecidable's reasons must hold.
    return _undecidable(record, now) or AlreadyDecidedError(
        f"approval {approval_id} cannot be decided any more", record
    )


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
