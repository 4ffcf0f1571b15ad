"""N-of-M sign-off: a link per approver, votes counted with conditional writes, the N-th approval
(or the first rejection) completing the task token exactly once.

Resources come from template.yaml through the ``stack`` fixture (moto in-process), as in
test_approvals.py, whose helpers these tests share.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepml.approval_links import form_token, link_signature
from stepml.approval_records import (
    APPROVED,
    PENDING,
    REJECTED,
    AlreadyDecidedError,
    AlreadyVotedError,
    ApprovalRequestError,
    ApprovalServiceError,
    DecisionNotDeliveredError,
    ForgedLinkError,
    UnknownApprovalError,
    WrongApproverError,
)
from stepml.registry import PENDING as PENDING_MANUAL_APPROVAL
from tests.conftest import new_session
from tests.unit.test_approvals import (
    LINK,
    NOW,
    ApprovalEnv,
    approval_env,
    atomic_moto_updates,  # noqa: F401 - a fixture
    make_evaluation,
    make_run,
    request_payload,
)

ANA, BEN, CAI = "ana@example.com", "ben@example.com", "cai@example.com"
LATER = NOW + timedelta(hours=1)


def request_sign_off(
    env: ApprovalEnv, approvers: list[str], required: int, now: datetime = NOW
) -> tuple[str, dict[str, str]]:
    """Request an approval (at ``now``) of a run whose dataset names ``approvers``; returns the
    approval id and each approver's (address -> sig) from the email they received."""
    run = make_run()
    run["config"] = {**run["config"], "approvers": approvers, "required_approvals": required}
    result = env.requests(now).request(request_payload(run, make_evaluation()))
    sigs: dict[str, str] = {}
    for message in env.outbox.messages():
        [(_base, approval_id, to, sig)] = LINK.findall(message.body)
        assert approval_id == result["approval_id"]
        assert (approvers or [env.settings.approver_email])[int(to)] == message.to
        sigs[message.to] = sig
    return result["approval_id"], sigs


def vote(env: ApprovalEnv, approval_id: str, sigs: dict[str, str], address: str, **overrides: Any) -> Any:
    """``address``'s review form posted: their link's ``to`` and ``sig`` and their form token."""
    index = list(sigs).index(address)
    approvals = env.decisions(overrides.pop("now", LATER))
    if "table" in overrides:
        approvals = replace(approvals, table=overrides.pop("table"))
    arguments: dict[str, Any] = {
        "decision": "approve",
        "approver": str(index),
        "comment": f"{address.split('@')[0]} agrees",
        "sig": sigs[address],
        "csrf": form_token(env.kms, env.key_id, approval_id, index),
    }
    arguments.update(overrides)
    return approvals.decide(approval_id, **arguments)


@pytest.fixture
def env(stack: Any, mail_outbox: Any) -> ApprovalEnv:
    return approval_env(stack, mail_outbox)


def test_each_approver_gets_an_email_with_a_link_of_their_own(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN, CAI], 2)

    assert list(sigs) == [ANA, BEN, CAI] and len(set(sigs.values())) == 3
    assert all("2 of 3 approvers must approve" in m.body for m in env.outbox.messages())
    item = env.item(approval_id)
    assert item is not None
    assert (item["approvers"], item["required_approvals"], item["approvals"], item["votes"]) == (
        [ANA, BEN, CAI],
        2,
        0,
        {},
    )
    # Ben's link opens Ben's review only: with Ana's number it is forged.
    review = env.decisions(NOW).load_for_review(approval_id, "1", sigs[BEN])
    assert (review.approver, review.address) == (1, BEN)
    with pytest.raises(ForgedLinkError, match=r"query 'to' and 'sig'"):
        env.decisions(NOW).load_for_review(approval_id, "0", sigs[BEN])
    # Nor can Ben's page's form token decide as Ana.
    with pytest.raises(ForgedLinkError):
        vote(env, approval_id, sigs, ANA, sig=sigs[BEN])
    with pytest.raises(Exception, match="field 'csrf'"):
        vote(env, approval_id, sigs, ANA, csrf=review.form_token)
    assert env.sfn.calls == []


def test_without_approvers_the_stacks_approver_email_is_the_one_approver(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [], 1)
    assert list(sigs) == [env.settings.approver_email]
    item = env.item(approval_id)
    assert item is not None and item["approvers"] == [env.settings.approver_email]


def test_required_approvals_beyond_the_approvers_is_refused_before_anything_is_stored(env: ApprovalEnv) -> None:
    run = make_run()
    run["config"] = {**run["config"], "approvers": [ANA], "required_approvals": 2}
    with pytest.raises(ApprovalRequestError, match=r"run\.config\.required_approvals must be between 1 and 1"):
        env.requests(NOW).request(request_payload(run, make_evaluation()))
    assert env.outbox.messages() == []


def test_two_of_three_waits_for_the_second_approval_and_then_completes_once(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN, CAI], 2)

    first = vote(env, approval_id, sigs, ANA)
    assert (first.status, first.approvals, env.sfn.calls) == (PENDING, 1, [])
    # Ana's link now shows her vote, no form.
    review = env.decisions(LATER).load_for_review(approval_id, "0", sigs[ANA])
    assert review.form_token is None and review.record.voted(0)["decision"] == "approve"
    # A second decision by the same approver is refused, whichever button.
    with pytest.raises(AlreadyVotedError, match=f"{ANA} already decided"):
        vote(env, approval_id, sigs, ANA, decision="reject")

    second = vote(env, approval_id, sigs, BEN, now=LATER + timedelta(minutes=5))

    assert (second.status, second.decided_by) == (APPROVED, f"{ANA}, {BEN}")
    [call] = env.sfn.calls
    output = json.loads(call["output"])
    assert (output["decision"], output["approver"], output["required_approvals"]) == ("approve", f"{ANA}, {BEN}", 2)
    assert output["comment"] == f"{ANA}: ana agrees; {BEN}: ben agrees"
    assert output["approvers"] == [
        {"address": ANA, "decision": "approve", "decided_at": "2026-11-22T13:00:00.000Z", "comment": "ana agrees"},
        {"address": BEN, "decision": "approve", "decided_at": "2026-11-22T13:05:00.000Z", "comment": "ben agrees"},
        {"address": CAI, "decision": None, "decided_at": None, "comment": None},
    ]
    with pytest.raises(AlreadyDecidedError) as raised:
        vote(env, approval_id, sigs, CAI, decision="reject")
    assert not isinstance(raised.value, AlreadyVotedError)
    assert len(env.sfn.calls) == 1


def test_the_first_rejection_decides_at_once(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN, CAI], 2)
    vote(env, approval_id, sigs, ANA)

    rejected = vote(env, approval_id, sigs, CAI, decision="reject", comment="drifted")

    assert (rejected.status, rejected.decided_by, rejected.comment) == (REJECTED, CAI, "drifted")
    [call] = env.sfn.calls
    output = json.loads(call["output"])
    assert (output["decision"], output["approver"], output["comment"]) == ("reject", CAI, "drifted")
    assert [b["decision"] for b in output["approvers"]] == ["approve", None, "reject"]
    with pytest.raises(AlreadyDecidedError):
        vote(env, approval_id, sigs, BEN)
    assert len(env.sfn.calls) == 1


def test_an_undelivered_final_approval_is_taken_back_and_counts_again_on_retry(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN], 2)
    vote(env, approval_id, sigs, ANA)
    env.sfn.fail_with = "ThrottlingException"

    with pytest.raises(DecisionNotDeliveredError):
        vote(env, approval_id, sigs, BEN)

    item = env.item(approval_id)
    assert item is not None
    assert (item["status"], item["approvals"], sorted(item["votes"])) == (PENDING, 1, ["0"])
    assert "decided_by" not in item
    env.sfn.fail_with = None
    assert vote(env, approval_id, sigs, BEN).status == APPROVED
    assert len(env.sfn.calls) == 2


class FailingClose:
    """The approval table, except that the write closing the record as APPROVED fails."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.name = table.name

    def get_item(self, **kwargs: Any) -> Any:
        return self._table.get_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        if ":approved" in kwargs["ExpressionAttributeValues"] and "#status = :pending" in kwargs["ConditionExpression"]:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")
        return self._table.update_item(**kwargs)


def test_an_nth_approval_that_cannot_close_the_record_is_taken_back(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN], 2)
    vote(env, approval_id, sigs, ANA)

    with pytest.raises(ApprovalServiceError, match=r"UpdateItem on the approval table .* failed: InternalServerError"):
        vote(env, approval_id, sigs, BEN, table=FailingClose(env.table))

    item = env.item(approval_id)
    assert item is not None and (item["status"], item["approvals"], sorted(item["votes"])) == (PENDING, 1, ["0"])
    assert env.sfn.calls == []
    assert vote(env, approval_id, sigs, BEN).status == APPROVED


@pytest.mark.usefixtures("atomic_moto_updates")
@pytest.mark.parametrize(("approvers", "required"), [([ANA, BEN], 2), ([ANA, BEN, CAI], 2)])
def test_concurrent_approvals_complete_the_task_exactly_once(
    env: ApprovalEnv, approvers: list[str], required: int
) -> None:
    approval_id, sigs = request_sign_off(env, approvers, required)
    # boto3 resources are not thread-safe: one table object per thread.
    tables = [new_session().resource("dynamodb").Table(env.table.name) for _ in approvers]
    start = threading.Barrier(len(approvers))
    outcomes: dict[str, str] = {}

    def submit(index: int) -> None:
        address = approvers[index]
        start.wait()
        try:
            outcomes[address] = vote(env, approval_id, sigs, address, table=tables[index]).status
        except AlreadyDecidedError:
            outcomes[address] = "refused"

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(approvers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Exactly one request saw the count reach N: it alone sent the token.
    assert sorted(outcomes.values()) == sorted([APPROVED, PENDING] + ["refused"] * (len(approvers) - required))
    [call] = env.sfn.calls
    output = json.loads(call["output"])
    assert sum(b["decision"] == "approve" for b in output["approvers"]) == required
    item = env.item(approval_id)
    assert item is not None and (item["status"], item["approvals"]) == (APPROVED, required)


class RegistryRecorder:
    """Stands in for ``ModelRegistry``: records the status updates of the model package."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str]] = []

    def set_status(self, arn: str, status: str, description: str) -> None:
        self.updates.append((arn, status, description))


def test_the_model_package_is_approved_only_by_the_nth_approval_and_names_the_approvers(env: ApprovalEnv) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/stepml-local-churn/3"
    run = make_run()
    run["config"] = {**run["config"], "approvers": [ANA, BEN], "required_approvals": 2}
    evaluation = make_evaluation(model_package={"arn": arn, "status": PENDING_MANUAL_APPROVAL})
    approval_id = env.requests(NOW).request(request_payload(run, evaluation))["approval_id"]
    sigs = {m.to: LINK.findall(m.body)[0][3] for m in env.outbox.messages()}
    registry = RegistryRecorder()
    decisions = replace(env.decisions(LATER), registry=registry)

    for address in (ANA, BEN):
        index = [ANA, BEN].index(address)
        decisions.decide(
            approval_id,
            decision="approve",
            approver=str(index),
            comment="",
            sig=sigs[address],
            csrf=form_token(env.kms, env.key_id, approval_id, index),
        )
        if address == ANA:
            assert registry.updates == []

    [(updated, status, description)] = registry.updates
    assert (updated, status) == (arn, "Approved")
    assert description.startswith(f"Approved by {ANA}, {BEN} at ")


def test_with_a_sign_in_the_signed_in_user_must_be_the_links_approver(env: ApprovalEnv) -> None:
    approval_id, sigs = request_sign_off(env, [ANA, BEN], 1)
    decisions = env.decisions(NOW)
    with pytest.raises(WrongApproverError, match="not the approver this link was issued to"):
        decisions.load_for_review(approval_id, "1", sigs[BEN], signed_in_as=ANA)
    with pytest.raises(WrongApproverError):
        decisions.load_for_review(approval_id, "1", sigs[BEN], signed_in_as="")
    with pytest.raises(WrongApproverError):
        vote(env, approval_id, sigs, BEN, signed_in_as=ANA)
    assert decisions.load_for_review(approval_id, "1", sigs[BEN], signed_in_as="Ben@Example.com").address == BEN
    assert vote(env, approval_id, sigs, BEN, signed_in_as=BEN).status == APPROVED


def test_a_link_of_an_approver_number_the_record_does_not_have_is_unknown(env: ApprovalEnv) -> None:
    approval_id, _sigs = request_sign_off(env, [ANA], 1)
    sig = link_signature(env.kms, env.key_id, approval_id, 5)
    with pytest.raises(UnknownApprovalError, match="has no approver number 5"):
        env.decisions(NOW).load_for_review(approval_id, "5", sig)
