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
    CLOSED,
    DECISION_STATUSES,
    MAX_COMMENT_CHARS,
    PENDING,
    PIPELINE_GONE_ERRORS,
    AlreadyDecidedError,
    AlreadyVotedError,
    ApprovalRecord,
    ApprovalRequestError,
    ApprovalServiceError,
    ClosedApprovalError,
    DecisionNotDeliveredError,
    ExpiredApprovalError,
    InvalidDecisionError,
    PipelineNotWaitingError,
    RecordStateError,
    Review,
    UnknownApprovalError,
    WrongApproverError,
    new_item,
)
from stepml.approval_votes import VoteRefusedError, close_approved, retract_vote, undo_vote, write_vote
from stepml.config import Settings
from stepml.payloads import RequestApprovalPayload
from stepml.registry import DECISION_STATUS, ModelRegistry, RegistryError, decision_description
from stepml.utils import iso_utc, utc_now

_log = logging.getLogger(__name__)


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
        approvers, required = self._sign_off(payload)
        item = new_item(
            approval_id,
            payload.run,
            payload.evaluation,
            task_token=payload.task_token,
            execution_arn=payload.execution_arn,
            now=now,
            link_expires_at=link_expires_at,
            approvers=approvers,
            required_approvals=required,
        )
        # Sign before storing so that a KMS failure leaves no record behind.
        key_id = self.settings.approval_signing_key_id
        sigs = [link_signature(self.kms_client, key_id, approval_id, index) for index in range(len(approvers))]
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(approval_id)")
        except (ClientError, BotoCoreError) as exc:
            raise ApprovalServiceError(
                f"DynamoDB PutItem into the approval table {self.table.name} failed: {exc}"
            ) from exc
        record = ApprovalRecord.from_item(item)
        for index, (address, sig) in enumerate(zip(approvers, sigs, strict=True)):
            link = approval_link(self.settings.approval_base_url, approval_id, index, sig)
            send_approval_email(self.ses_client, self.settings, record, link, address)
        expires_at = iso_utc(datetime.fromtimestamp(link_expires_at, UTC), timespec="seconds")
        return {"approval_id": approval_id, "expires_at": expires_at}

    def _sign_off(self, payload: RequestApprovalPayload) -> tuple[list[str], int]:
        """The run's approvers and how many must approve: the dataset config's ``approvers`` and
        ``required_approvals`` (validated when the run was resolved), or the stack's ApproverEmail."""
        config = payload.run.config
        approvers = [str(a).strip().lower() for a in config.get("approvers") or []]
        approvers = list(dict.fromkeys(approvers)) or [self.settings.approver_email]
        required = config.get("required_approvals") or 1
        if not isinstance(required, int) or not 1 <= required <= len(approvers):
            raise ApprovalRequestError(
                f"run.config.required_approvals must be between 1 and {len(approvers)} (the number of approvers)"
            )
        return approvers, required


@dataclass(frozen=True, kw_only=True)
class ApprovalDecisions(_ApprovalTable):
    """The approval API's service: shows approvals and takes decisions (``sfn_client``: Step
    Functions, which the decision completes). ``settings`` holds the signing key id. With a
    ``registry`` the decision is copied to the run's model package version at once."""

    sfn_client: Any
    registry: ModelRegistry | None = None

    # --- reviewing ------------------------------------------------------------------------

    def load_for_review(
        self, approval_id: str, approver: str | None, sig: str | None, *, signed_in_as: str | None = None
    ) -> Review:
        """Check the link (``to`` and ``sig``) and load what the review page shows. Reads only.

        A decided record, or one this approver already voted on, is returned without a form
        token (the page shows the decision); a CLOSED or expired one raises, and so does a
        PENDING one whose execution no longer runs (stopped, failed), so nobody fills in a form
        that can no longer count. The form token is issued only while the approval is PENDING,
        its execution waits and this approver has not decided. ``signed_in_as`` (the API's
        sign-in, when it has one) must be the link's approver.
        """
        key_id = self.settings.approval_signing_key_id
        index = verify_link(self.kms_client, key_id, approval_id, approver, sig)
        record = self._approvers_record(approval_id, index, signed_in_as)
        if record.is_decided or record.voted(index):
            return Review(record, approver=index)
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
        return Review(record, form_token(self.kms_client, key_id, approval_id, index), approver=index)

    def _approvers_record(self, approval_id: str, approver: int, signed_in_as: str | None) -> ApprovalRecord:
        """The record, checked to have approver number ``approver`` and, when the API has a
        sign-in, to have issued that approver's link to the signed-in address."""
        record = self._get_record(approval_id)
        if approver >= len(record.approvers):
            raise UnknownApprovalError(f"approval {approval_id} has no approver number {approver}")
        if signed_in_as is not None and signed_in_as.strip().lower() != record.approvers[approver]:
            raise WrongApproverError(
                f"approval {approval_id}: the signed-in user is not the approver this link was issued to"
            )
        return record

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
        signed_in_as: str | None = None,
    ) -> ApprovalRecord:
        """Record one approver's decision exactly once; complete the waiting task when it decides.

        ``approver`` is the link's ``to``: the link signature and the form token must both
        verify for it, and the decision is recorded under the address that link was issued to.
        A conditional write records the vote (``stepml.approval_votes``); a second decision of
        the same approver, or any after the run is decided, raises ``AlreadyDecidedError``
        (``AlreadyVotedError``), or ``ExpiredApprovalError`` / ``ClosedApprovalError``. An
        approval that leaves the count short of ``required_approvals`` returns the PENDING
        record; the approval that reaches it, or the first rejection, is sent with
        ``SendTaskSuccess``; if the execution is gone the record becomes CLOSED and
        ``PipelineNotWaitingError`` is raised. ``signed_in_as`` as for ``load_for_review``.
        """
        key_id = self.settings.approval_signing_key_id
        index = verify_link(self.kms_client, key_id, approval_id, approver, sig)
        verify_form_token(self.kms_client, key_id, approval_id, index, csrf)
        decision, comment = _validated_form(decision, comment)
        record = self._approvers_record(approval_id, index, signed_in_as)
        now = self.clock()
        # Milliseconds, because the decision's time also identifies it when it must be undone.
        vote = {"decision": decision, "decided_at": iso_utc(now), "comment": comment}
        try:
            item = write_vote(self.table, record, index, vote, now)
        except VoteRefusedError as exc:
            raise _refusal(approval_id, exc.old, index, now) from exc
        record = ApprovalRecord.from_item({k: v for k, v in item.items() if k != "task_token"})
        if decision == "approve":
            if record.approvals < record.required_approvals:
                return record
            try:
                item = close_approved(self.table, record, vote["decided_at"])
            except ApprovalServiceError:
                retract_vote(self.table, approval_id, index, vote)
                raise
            record = ApprovalRecord.from_item({k: v for k, v in item.items() if k != "task_token"})
        output = {
            "decision": decision,
            "approver": record.decided_by,
            "comment": record.comment,
            "decided_at": record.decided_at,
            "approval_id": approval_id,
            "required_approvals": record.required_approvals,
            "approvers": record.ballots,
        }
        self._complete_task(record, item["task_token"], output, index, vote)
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

    def _complete_task(
        self,
        record: ApprovalRecord,
        task_token: str,
        output: Mapping[str, Any],
        approver: int,
        vote: Mapping[str, Any],
    ) -> None:
        """``SendTaskSuccess``; when it fails the deciding vote is taken back (CLOSED when the
        execution no longer waits, PENDING to try again otherwise)."""
        approval_id, decided_at = record.approval_id, str(vote["decided_at"])
        try:
            self.sfn_client.send_task_success(taskToken=task_token, output=json.dumps(output))
        except ClientError as exc:
            code = error_code(exc)
            if code in PIPELINE_GONE_ERRORS:
                closed = undo_vote(
                    self.table,
                    approval_id,
                    approver,
                    vote,
                    status=CLOSED,
                    extra={"closed_reason": code, "closed_at": decided_at},
                )
                raise PipelineNotWaitingError(
                    f"approval {approval_id}: the pipeline is no longer waiting ({code}); nothing was decided",
                    closed or record,
                ) from exc
            undo_vote(self.table, approval_id, approver, vote, status=PENDING, extra={})
            raise DecisionNotDeliveredError(
                f"approval {approval_id}: Step Functions SendTaskSuccess failed ({code}); the decision was "
                "not recorded, try again"
            ) from exc
        except BotoCoreError as exc:
            undo_vote(self.table, approval_id, approver, vote, status=PENDING, extra={})
            raise DecisionNotDeliveredError(
                f"approval {approval_id}: Step Functions SendTaskSuccess could not be reached; the decision "
                "was not recorded, try again"
            ) from exc


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
    if record.approvals >= record.required_approvals:
        return AlreadyDecidedError(
            f"approval {record.approval_id} has its {record.required_approvals} approvals", record
        )
    if record.link_expired(now):
        return ExpiredApprovalError(
            f"approval {record.approval_id} expired at {utc_text(record.link_expires_at)}", record
        )
    return None


def _refusal(approval_id: str, old: ApprovalRecord | None, approver: int, now: datetime) -> Exception:
    """Why a vote's conditional write failed, from the record as it was."""
    if old is None:
        return UnknownApprovalError(f"approval {approval_id} does not exist")
    voted = old.voted(approver)
    if voted and not old.is_decided and old.status != CLOSED:
        return AlreadyVotedError(
            f"approval {approval_id}: {old.approvers[approver]} already decided ({voted.get('decision')})", old
        )
    # The condition failed, so one of _undecidable's reasons must hold.
    return _undecidable(old, now) or AlreadyDecidedError(f"approval {approval_id} cannot be decided any more", old)


def _validated_form(decision: str | None, comment: str | None) -> tuple[str, str]:
    decision = (decision or "").strip().lower()
    if decision not in DECISION_STATUSES:
        raise InvalidDecisionError("field 'decision' must be 'approve' or 'reject'")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidDecisionError(f"field 'comment' must be at most {MAX_COMMENT_CHARS} characters")
    return decision, comment
