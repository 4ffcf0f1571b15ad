"""Approval records: statuses, the record the pages show, the stored item, and the errors.

Record layout (approval table, key ``approval_id``): see ``new_item``. ``link_expires_at``
and ``expires_at`` (the TTL, 30 days after the link expires so the decision stays on record)
are epoch seconds; ``created_at``, ``decided_at`` and ``closed_at`` are ISO-8601 UTC strings.
The task token is stored in the item only: ``ApprovalRecord`` never holds it, so no page, log
line or error message can carry it.

The ``ApprovalError`` subclasses are what the approval API maps to pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepml.payloads import EvaluationResult, Run
from stepml.utils import from_dynamo, iso_utc, to_dynamo

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
MAX_COMMENT_CHARS = 2000


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


class WrongApproverError(ApprovalError):
    """The signed-in user (the API's JWT authorizer) is not the approver the link was issued to."""


class CrossSiteRequestError(ApprovalError):
    """A decision that did not come from the review form: bad form token or foreign origin."""


class InvalidDecisionError(ApprovalError):
    """The submitted form is incomplete or malformed; the message names the field."""


class UnknownApprovalError(ApprovalError):
    """No approval record has this id (never existed, or deleted after its retention)."""


class RecordStateError(ApprovalError):
    """An approval that can no longer be decided; ``record`` says why."""

    def __init__(self, message: str, record: ApprovalRecord):
        super().__init__(message)
        self.record = record


class ExpiredApprovalError(RecordStateError):
    """The link expired before anybody decided."""


class AlreadyDecidedError(RecordStateError):
    """Somebody already approved or rejected; ``record`` holds that decision."""


class AlreadyVotedError(AlreadyDecidedError):
    """This approver already decided; the approval still waits for the others."""


class ClosedApprovalError(RecordStateError):
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
    model_package_arn: str | None = None
    #: The addresses the links were issued to (link ``to=n`` is ``approvers[n]``).
    approvers: tuple[str, ...] = ()
    required_approvals: int = 1
    #: Each approver's decision so far, by approver number as text: ``decision``, ``decided_at``,
    #: ``comment``.
    votes: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: int = 0

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ApprovalRecord:
        """Build from a DynamoDB item (resource format), converting Decimals."""
        data = from_dynamo(dict(item))
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
            model_package_arn=data.get("model_package_arn"),
            approvers=tuple(data.get("approvers") or ()),
            required_approvals=int(data.get("required_approvals", 1)),
            votes=data.get("votes") or {},
            approvals=int(data.get("approvals", 0)),
        )

    @property
    def is_decided(self) -> bool:
        return self.status in (APPROVED, REJECTED)

    @property
    def ballots(self) -> list[dict[str, Any]]:
        """Every approver's decision (``None`` while undecided), in the order of ``approvers``:
        ``{"address", "decision", "decided_at", "comment"}``."""
        ballots = []
        for index, address in enumerate(self.approvers):
            vote = self.votes.get(str(index)) or {}
            ballots.append(
                {"address": address, **{key: vote.get(key) for key in ("decision", "decided_at", "comment")}}
            )
        return ballots

    def voted(self, approver: int) -> dict[str, Any] | None:
        """Approver number ``approver``'s decision, or None while they have not decided."""
        return self.votes.get(str(approver))

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
    """What the review page needs: the record, the form token while this approver can still
    decide, and which approver's link was opened (``approver``, a place in ``record.approvers``)."""

    record: ApprovalRecord
    form_token: str | None = field(default=None, repr=False)
    approver: int = 0

    @property
    def address(self) -> str:
        """The address the opened link was issued to."""
        return self.record.approvers[self.approver] if self.approver < len(self.record.approvers) else ""


def new_item(
    approval_id: str,
    run: Run,
    evaluation: EvaluationResult,
    *,
    task_token: str,
    execution_arn: str,
    now: datetime,
    link_expires_at: int,
    approvers: list[str],
    required_approvals: int,
) -> dict[str, Any]:
    """The PENDING item of a new approval, as the DynamoDB resource stores it."""
    item = {
        "approval_id": approval_id,
        "status": PENDING,
        "task_token": task_token,
        "run_id": run.run_id,
        "dataset": run.dataset,
        "attempt": run.attempt,
        "execution_arn": execution_arn,
        "input_uri": run.input.uri,
        "input_version_id": run.input.version_id,
        "training_job": run.names.training_job,
        "metric": evaluation.metric,
        "value": evaluation.value,
        "threshold": evaluation.threshold,
        "higher_is_better": evaluation.higher_is_better,
        "passed": evaluation.passed,
        "production": evaluation.production or None,
        "metrics": evaluation.metrics or {},
        "report_uri": evaluation.report_uri,
        "reason": evaluation.reason,
        "rows": evaluation.rows,
        # The registry version the decision is copied to (stepml.registry).
        "model_package_arn": (evaluation.model_package or {}).get("arn"),
        "created_at": iso_utc(now, timespec="seconds"),
        "approvers": list(approvers),
        "required_approvals": required_approvals,
        # Votes go in as approvers decide; ``approvals`` counts the approving ones atomically.
        "votes": {},
        "approvals": 0,
        "link_expires_at": link_expires_at,
        "expires_at": link_expires_at + RECORD_RETENTION_SECONDS,
    }
    return to_dynamo(item)
