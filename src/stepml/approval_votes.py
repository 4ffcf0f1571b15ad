"""The approval table's conditional writes that make N-of-M sign-off safe under concurrency.

Each approver's decision is a vote in the record's ``votes`` map, keyed by the approver's
number (the ``to`` of their link). One conditional UpdateItem writes a vote only while the
record is PENDING, unexpired, without a vote of this approver and short of its required
approvals, so a second decision by the same approver, and every decision after the run is
decided, is refused by DynamoDB itself, whatever runs concurrently:

* an approval also ``ADD``s 1 to ``approvals``; DynamoDB applies the writes to one item one
  after the other, so each approval sees a different count and exactly one of them sees the
  count reach ``required_approvals``: that request (and only that one) closes the record as
  APPROVED (``close_approved``) and completes the task token;
* a rejection moves the record to REJECTED in the same write: the first rejection decides.

``undo_vote`` takes back the deciding vote when Step Functions could not be told.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from stepml.approval_links import error_code
from stepml.approval_records import (
    APPROVED,
    PENDING,
    REJECTED,
    ApprovalRecord,
    ApprovalServiceError,
)

_NAMES = {
    "#status": "status",
    "#decision": "decision",
    "#decided_by": "decided_by",
    "#decided_at": "decided_at",
    "#comment": "comment",
    "#votes": "votes",
}


class VoteRefusedError(Exception):
    """The vote's condition failed; ``old`` is the record as it was (None when it is gone)."""

    def __init__(self, old: ApprovalRecord | None):
        super().__init__("the vote's condition failed")
        self.old = old


def write_vote(
    table: Any, record: ApprovalRecord, approver: int, vote: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Record approver number ``approver``'s ``vote`` (``decision``, ``decided_at``, ``comment``);
    returns the item as it is now. A rejection decides the record in the same write."""
    names = {**_NAMES, "#voter": str(approver)}
    values: dict[str, Any] = {":vote": dict(vote), ":pending": PENDING, ":now": int(now.timestamp())}
    if vote["decision"] == "approve":
        update = "SET #votes.#voter = :vote ADD approvals :one"
        values[":one"] = 1
    else:
        update = (
            "SET #votes.#voter = :vote, #status = :rejected, #decision = :decision, #decided_by = :address, "
            "#decided_at = :decided_at, #comment = :comment"
        )
        values.update(
            {
                ":rejected": REJECTED,
                ":decision": vote["decision"],
                ":address": record.approvers[approver],
                ":decided_at": vote["decided_at"],
                ":comment": vote["comment"],
            }
        )
    condition = (
        "#status = :pending AND link_expires_at > :now AND attribute_not_exists(#votes.#voter) "
        "AND approvals < required_approvals"
    )
    return _update(table, record.approval_id, update, condition, names, values)


def close_approved(table: Any, record: ApprovalRecord, decided_at: str) -> dict[str, Any]:
    """Move a record whose approvals reached the required number to APPROVED, naming every
    approving address (in the order they approved) and their comments."""
    ayes = sorted((b for b in record.ballots if b["decision"] == "approve"), key=lambda b: str(b["decided_at"]))
    comments = [f"{b['address']}: {b['comment']}" if len(ayes) > 1 else b["comment"] for b in ayes if b["comment"]]
    values = {
        ":approved": APPROVED,
        ":pending": PENDING,
        ":decision": "approve",
        ":decided_by": ", ".join(b["address"] for b in ayes),
        ":decided_at": decided_at,
        ":comment": "; ".join(comments),
    }
    update = (
        "SET #status = :approved, #decision = :decision, #decided_by = :decided_by, #decided_at = :decided_at, "
        "#comment = :comment"
    )
    try:
        return _update(
            table, record.approval_id, update, "#status = :pending AND approvals >= required_approvals", _NAMES, values
        )
    except VoteRefusedError as exc:
        # Only this request saw the count reach N, so nothing else can have moved the record.
        raise ApprovalServiceError(f"approval {record.approval_id}: could not record its final approval") from exc


def retract_vote(table: Any, approval_id: str, approver: int, vote: Mapping[str, Any]) -> None:
    """Take back an approval that was counted but could not close the record, so that the count
    never sits at N on a PENDING record that nobody can complete; the approver can try again.
    Best effort: when this fails too, the link expires as for an undecided approval."""
    names = {"#votes": "votes", "#voter": str(approver)}
    values = {":taken_back": -1, ":decided_at": vote["decided_at"]}
    update = "REMOVE #votes.#voter ADD approvals :taken_back"
    try:
        _update(table, approval_id, update, "#votes.#voter.decided_at = :decided_at", names, values)
    except (ApprovalServiceError, VoteRefusedError):
        return


def undo_vote(
    table: Any,
    approval_id: str,
    approver: int,
    vote: Mapping[str, Any],
    *,
    status: str,
    extra: Mapping[str, Any],
) -> ApprovalRecord | None:
    """Take back the deciding ``vote`` this request wrote (and only that one), moving the record
    to ``status``. Returns the updated record, or None if the write failed."""
    names = {**_NAMES, "#voter": str(approver)}
    assignments = ["#status = :status", *(f"{name} = :{name}" for name in extra)]
    update = "SET " + ", ".join(assignments) + " REMOVE #decision, #decided_by, #decided_at, #comment, #votes.#voter"
    values = {
        ":status": status,
        ":approved": APPROVED,
        ":rejected": REJECTED,
        ":decided_at": vote["decided_at"],
        **{f":{name}": value for name, value in extra.items()},
    }
    if vote["decision"] == "approve":
        # A rejection never counted; an approval counted once.
        update += " ADD approvals :taken_back"
        values[":taken_back"] = -1
    condition = "#status IN (:approved, :rejected) AND #decided_at = :decided_at"
    try:
        item = _update(table, approval_id, update, condition, names, values)
    except (ApprovalServiceError, VoteRefusedError):
        return None
    return ApprovalRecord.from_item(item)


def _update(
    table: Any,
    approval_id: str,
    update: str,
    condition: str,
    names: Mapping[str, str],
    values: Mapping[str, Any],
) -> dict[str, Any]:
    try:
        response = table.update_item(
            Key={"approval_id": approval_id},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames={name: value for name, value in names.items() if name in update + condition},
            ExpressionAttributeValues={name: value for name, value in values.items() if name in update + condition},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise ApprovalServiceError(
                f"DynamoDB UpdateItem on the approval table {table.name} failed: {error_code(exc)}"
            ) from exc
        raise VoteRefusedError(_old_record(exc.response.get("Item"))) from exc
    except BotoCoreError as exc:
        raise ApprovalServiceError(f"DynamoDB UpdateItem on the approval table {table.name} failed") from exc
    return response["Attributes"]


def _old_record(old: Mapping[str, Any] | None) -> ApprovalRecord | None:
    """The item a failed condition returned (low-level format), as a record."""
    if not old:
        return None
    deserializer = TypeDeserializer()
    return ApprovalRecord.from_item({k: deserializer.deserialize(v) for k, v in old.items()})
