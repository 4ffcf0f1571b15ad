"""The approval library: records, signed links, the email, review and exactly-once decisions.

Resources come from template.yaml through the ``stack`` fixture (moto in-process). Step
Functions is a small recorder, because moto cannot complete a task token it never issued.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.responses import DynamoHandler

from stepml import config
from stepml.approval_email import email_subject
from stepml.approval_links import check_same_origin, form_token, link_signature, new_approval_id, verify_link
from stepml.approval_records import (
    APPROVED,
    CLOSED,
    PENDING,
    RECORD_RETENTION_SECONDS,
    REJECTED,
    AlreadyDecidedError,
    ApprovalRecord,
    ClosedApprovalError,
    CrossSiteRequestError,
    DecisionNotDeliveredError,
    ExpiredApprovalError,
    ForgedLinkError,
    InvalidDecisionError,
    PipelineNotWaitingError,
    UnknownApprovalError,
)
from stepml.approvals import ApprovalDecisions, ApprovalRequests
from stepml.lineage import artifact_paths, resource_names
from stepml.local.mail import Outbox
from stepml.payloads import RequestApprovalPayload
from tests.conftest import new_session

REGION = "us-east-1"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
TIMEOUT_SECONDS = 3 * 24 * 3600
TASK_TOKEN = "AQB8AAAAKgAAAAMAAAAAAAAAAdistinctiveTaskTokenMarker" + "Q" * 120
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:exec-1"
LINK = re.compile(r"^(https://\S+)/approvals/([A-Za-z0-9_-]+)\?to=([0-9]+)&sig=([A-Za-z0-9_-]+)$", re.MULTILINE)
APPROVER = "approver@example.com"  # the template's ApproverEmail default


# --- helpers shared with test_approval_api.py -------------------------------------------------


def make_run(**overrides: Any) -> dict[str, Any]:
    """A run document (``$.run``) as ResolveRun returns it."""
    run: dict[str, Any] = {
        "run_id": "churn-3f2a9c1b7d4e",
        "dataset": "churn",
        "attempt": 1,
        "execution_arn": EXECUTION_ARN,
        "input": {
            "bucket": "uploads",
            "key": "incoming/churn/data.csv",
            "version_id": "v-7Hq2",
            "etag": "abc",
            "size": 1234,
            "uri": "s3://uploads/incoming/churn/data.csv",
        },
        "config": {"name": "churn", "label": "churned", "problem_type": "binary", "metric": "auc", "threshold": 0.8},
        "hyperparameters": {"num_round": "100", "objective": "binary:logistic"},
        "names": resource_names("churn-3f2a9c1b7d4e", 1, "stepml-prod"),
        "paths": artifact_paths("artifacts", "churn", "churn-3f2a9c1b7d4e"),
        "endpoint_poll_seconds": 30,
        "approval_timeout_seconds": TIMEOUT_SECONDS,
        "code_version": "abc1234",
    }
    run.update(overrides)
    return run


def make_evaluation(**overrides: Any) -> dict[str, Any]:
    """An Evaluate result that passed the gate and beats production."""
    evaluation: dict[str, Any] = {
        "passed": True,
        "metric": "auc",
        "value": 0.9123,
        "threshold": 0.8,
        "higher_is_better": True,
        "metrics": {"auc": 0.9123, "accuracy": 0.87, "f1": 0.71},
        "rows": 600,
        "reason": "auc 0.9123 meets the threshold 0.8 (higher is better)",
        "production": {
            "endpoint_name": "stepml-prod",
            "value": 0.9,
            "metrics": {"auc": 0.9, "accuracy": 0.85, "f1": 0.7},
        },
        "report_uri": "s3://artifacts/evaluation/churn/churn-3f2a9c1b7d4e/report.json",
    }
    evaluation.update(overrides)
    return evaluation


class SfnRecorder:
    """Stands in for the Step Functions client: records SendTaskSuccess, or fails with a code;
    DescribeExecution reports ``execution_status``."""

    def __init__(self, fail_with: str | None = None, execution_status: str = "RUNNING"):
        self.fail_with = fail_with
        self.execution_status = execution_status
        self.calls: list[dict[str, Any]] = []
        self.described: list[str] = []
        self._lock = threading.Lock()

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        self.described.append(executionArn)
        if self.execution_status == "ExecutionDoesNotExist":
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist", "Message": "gone"}}, "DescribeExecution")
        return {"executionArn": executionArn, "status": self.execution_status}

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:
        with self._lock:
            self.calls.append({"taskToken": taskToken, "output": output})
        if self.fail_with:
            raise ClientError({"Error": {"Code": self.fail_with, "Message": "Task Timed Out"}}, "SendTaskSuccess")
        return {}


@dataclass
class ApprovalEnv:
    """Everything the library functions take, built from the template's resources."""

    table: Any
    kms: Any
    ses: Any
    settings: config.Settings
    key_id: str
    outbox: Outbox
    sfn: SfnRecorder = field(default_factory=SfnRecorder)

    def published(self) -> list[tuple[str, str]]:
        """(subject, plain-text part) of every email sent, through moto's SES into the outbox."""
        return [(message.subject, message.body) for message in self.outbox.messages()]

    def item(self, approval_id: str) -> dict[str, Any] | None:
        return self.table.get_item(Key={"approval_id": approval_id}, ConsistentRead=True).get("Item")

    def _clock(self, now: datetime | None) -> dict[str, Any]:
        return {} if now is None else {"clock": lambda: now}

    def requests(self, now: datetime | None = NOW) -> ApprovalRequests:
        """RequestApproval's service on these resources, its clock stopped at ``now`` (None: real time)."""
        return ApprovalRequests(
            table=self.table, kms_client=self.kms, ses_client=self.ses, settings=self.settings, **self._clock(now)
        )

    def decisions(self, now: datetime | None = NOW) -> ApprovalDecisions:
        """The approval API's service on these resources, its clock stopped at ``now`` (None: real time)."""
        return ApprovalDecisions(
            table=self.table, kms_client=self.kms, sfn_client=self.sfn, settings=self.settings, **self._clock(now)
        )


def request_payload(
    run: dict[str, Any] | None = None, evaluation: dict[str, Any] | None = None, **fields: Any
) -> RequestApprovalPayload:
    """What the state machine sends RequestApproval, parsed."""
    payload = {
        "task_token": TASK_TOKEN,
        "run": make_run() if run is None else run,
        "evaluation": make_evaluation() if evaluation is None else evaluation,
        "execution_arn": EXECUTION_ARN,
        **fields,
    }
    return RequestApprovalPayload.model_validate(payload)


def approval_env(stack: Any, outbox: Outbox) -> ApprovalEnv:
    """The RequestApproval function's settings and clients, its sender verified in SES (as an
    operator does before deploying); ``outbox`` is the ``mail_outbox`` fixture's."""
    environ = stack.function_environment("RequestApprovalFunction")
    settings = config.load_settings(
        [
            config.APPROVAL_TABLE,
            config.APPROVAL_SIGNING_KEY_ID,
            config.APPROVAL_BASE_URL,
            config.APPROVAL_SENDER,
            config.APPROVER_EMAIL,
        ],
        environ,
    )
    session = new_session()
    ses = session.client("sesv2")
    ses.create_email_identity(EmailIdentity=settings.approval_sender)
    return ApprovalEnv(
        table=session.resource("dynamodb").Table(settings.approval_table),
        kms=session.client("kms"),
        ses=ses,
        settings=settings,
        key_id=settings.approval_signing_key_id,
        outbox=outbox,
    )


def create_approval(
    env: ApprovalEnv, *, now: datetime = NOW, execution_arn: str = EXECUTION_ARN, **evaluation: Any
) -> tuple[str, str]:
    """Request an approval and return (approval_id, sig) taken from the emailed link."""
    result = env.requests(now).request(
        request_payload(
            make_run(execution_arn=execution_arn), make_evaluation(**evaluation), execution_arn=execution_arn
        )
    )
    _subject, message = env.published()[-1]
    match = LINK.search(message)
    assert match, message
    assert match.group(2) == result["approval_id"]
    assert match.group(3) == "0"
    return result["approval_id"], match.group(4)


def decide_with(env: ApprovalEnv, approval_id: str, sig: str, **overrides: Any) -> ApprovalRecord:
    """Call ``decide`` as approver ``approver`` (a link's ``to``, default "0")'s review form would
    (valid form token unless overridden), an hour after NOW unless ``now`` says otherwise;
    ``table`` replaces the approval table."""
    approvals = env.decisions(overrides.pop("now", NOW + timedelta(hours=1)))
    if "table" in overrides:
        approvals = replace(approvals, table=overrides.pop("table"))
    approver = str(overrides.get("approver", "0"))
    arguments: dict[str, Any] = {
        "decision": "approve",
        "approver": approver,
        "comment": "looks good",
        "sig": sig,
        "csrf": form_token(env.kms, env.key_id, approval_id, int(approver) if approver.isdigit() else 0),
    }
    arguments.update(overrides)
    return approvals.decide(approval_id, **arguments)


def tampered(text: str) -> str:
    """The same string with one character changed (still valid base64url)."""
    middle = len(text) // 2
    return text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]


@pytest.fixture
def env(stack: Any, mail_outbox: Outbox) -> ApprovalEnv:
    return approval_env(stack, mail_outbox)


@pytest.fixture
def atomic_moto_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB evaluates a condition and applies the update atomically per item; moto 5.2.5
    checks and writes without a lock, so two threads can both pass the same condition, and it
    serialises an answer from the live item while another thread changes it (a nested map:
    "dictionary changed size during iteration"). Serialising moto's whole DynamoDB request,
    answer included, restores DynamoDB's guarantee, so the concurrency test measures our use of
    the conditional write and not moto's race."""
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


# --- requesting -----------------------------------------------------------------------------


def test_the_key_from_the_template_signs_and_verifies_macs(env: ApprovalEnv) -> None:
    approval_id = new_approval_id()
    sig = link_signature(env.kms, env.key_id, approval_id, 0)
    verify_link(env.kms, env.key_id, approval_id, "0", sig)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sig)
    assert form_token(env.kms, env.key_id, approval_id, 0) != sig  # distinct purposes, distinct MACs


def test_request_approval_stores_the_record(env: ApprovalEnv) -> None:
    result = env.requests(NOW).request(request_payload(make_run(), make_evaluation()))

    expiry = int(NOW.timestamp()) + TIMEOUT_SECONDS
    assert result == {
        "approval_id": result["approval_id"],
        "expires_at": datetime.fromtimestamp(expiry, UTC).isoformat().replace("+00:00", "Z"),
    }
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", result["approval_id"])
    item = env.item(result["approval_id"])
    assert item is not None
    assert item["status"] == PENDING
    assert item["task_token"] == TASK_TOKEN
    assert item["execution_arn"] == EXECUTION_ARN
    assert item["link_expires_at"] == expiry
    assert item["expires_at"] == expiry + RECORD_RETENTION_SECONDS
    assert item["value"] == Decimal("0.9123")
    record = ApprovalRecord.from_item(item)
    assert record.run_id == "churn-3f2a9c1b7d4e"
    assert record.dataset == "churn"
    assert record.input_uri == "s3://uploads/incoming/churn/data.csv"
    assert record.input_version_id == "v-7Hq2"
    assert record.training_job == "stepml-churn-3f2a9c1b7d4e-a1"
    assert (record.metric, record.value, record.threshold) == ("auc", 0.9123, 0.8)
    assert isinstance(record.value, float)
    assert isinstance(record.link_expires_at, int)
    assert record.production == make_evaluation()["production"]
    assert (record.rows, record.reason) == (600, "auc 0.9123 meets the threshold 0.8 (higher is better)")
    assert record.metrics["accuracy"] == 0.87
    assert record.created_at == "2026-11-22T12:00:00Z"
    assert record.decision is None


def test_the_link_expires_when_step_functions_stops_waiting(env: ApprovalEnv) -> None:
    """The clock starts when the task started waiting, not when the Lambda ran: a link opened
    after the task timed out is expired, never still open."""
    waiting_since = NOW - timedelta(seconds=2, milliseconds=400)
    result = env.requests(NOW).request(request_payload(make_run(), make_evaluation(), waiting_since=waiting_since))
    item = env.item(result["approval_id"])
    assert item is not None
    assert item["link_expires_at"] == int(waiting_since.timestamp()) + TIMEOUT_SECONDS
    assert item["link_expires_at"] < int(NOW.timestamp()) + TIMEOUT_SECONDS


def test_the_email_names_the_model_and_carries_only_the_signed_link(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)

    [(subject, message)] = env.published()
    assert subject == "[stepml] Approve churn model churn-3f2a9c1b7d4e? auc 0.9123 (threshold 0.8)"
    assert len(subject) <= 100 and subject.isascii() and "\n" not in subject
    assert "s3://uploads/incoming/churn/data.csv (version v-7Hq2)" in message
    assert "stepml-churn-3f2a9c1b7d4e-a1" in message
    assert "the gate requires at least 0.8: passed" in message
    assert "against production 0.9 (+0.0123): better than production" in message
    assert "s3://artifacts/evaluation/churn/churn-3f2a9c1b7d4e/report.json" in message
    assert "expires 2026-11-25 12:00 UTC" in message
    links = LINK.findall(message)
    assert links == [(env.settings.approval_base_url, approval_id, "0", sig)]
    verify_link(env.kms, env.key_id, approval_id, "0", sig)
    for text in (subject, message):
        assert TASK_TOKEN not in text
        assert TASK_TOKEN[:40] not in text
        assert env.key_id not in text


def test_the_email_has_an_html_part_with_the_same_facts_and_one_link(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env, reason="<b>gate</b>")

    [message] = env.outbox.messages()
    assert (message.sender, message.to) == (env.settings.approval_sender, env.settings.approver_email)
    html = message.html
    assert html is not None and html.startswith("<!DOCTYPE html>")
    link = f"{env.settings.approval_base_url}/approvals/{approval_id}?to=0&sig={sig}"
    assert [unescape(href) for href in re.findall(r'href="([^"]*)"', html)] == [link]
    assert html.count("<a ") == 1 and "<script" not in html and "<img" not in html
    for fact in (
        "churn-3f2a9c1b7d4e (attempt 1)",
        "s3://uploads/incoming/churn/data.csv (version v-7Hq2)",
        "stepml-churn-3f2a9c1b7d4e-a1",
        "auc 0.9123; the gate requires at least 0.8: passed",
        "against production 0.9 (+0.0123): better than production",
        "2026-11-25 12:00 UTC",
        "Opening it changes nothing",
    ):
        assert fact in html, fact
    assert TASK_TOKEN not in html and TASK_TOKEN[:40] not in html and env.key_id not in html
    assert "Traceback" not in html and "Traceback" not in message.body


def test_the_email_says_when_there_is_no_production_model(env: ApprovalEnv) -> None:
    create_approval(env, production=None)
    [(_subject, message)] = env.published()
    assert "There is no production model yet" in message


def test_the_email_says_when_the_new_model_is_worse_than_production(env: ApprovalEnv) -> None:
    create_approval(env, metric="rmse", value=2.5, threshold=3.0, higher_is_better=False, production={"value": 2.25})
    [(subject, message)] = env.published()
    assert subject.endswith("? rmse 2.5 (threshold 3)")
    assert "the gate requires at most 3: passed" in message
    assert "rmse 2.5 against production 2.25 (+0.25): worse than production" in message


def test_the_subject_stays_within_100_ascii_characters(env: ApprovalEnv) -> None:
    long_run = "churn-" + "f" * 120
    env.requests(NOW).request(request_payload(make_run(run_id=long_run), make_evaluation(metric="aüc\nx")))
    [(subject, _message)] = env.published()
    assert len(subject) == 100
    assert subject.isascii() and "\n" not in subject
    assert subject.endswith("...")


# --- links ----------------------------------------------------------------------------------


def test_a_changed_missing_or_malformed_signature_is_forged(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    with pytest.raises(ForgedLinkError, match="signature does not match"):
        env.decisions(NOW).load_for_review(approval_id, "0", tampered(sig))
    for bad in (None, "", "short", "!" * 43, "A" * 44, "A" * 43, sig + "A", sig[:-1]):
        with pytest.raises(ForgedLinkError):
            env.decisions(NOW).load_for_review(approval_id, "0", bad)


def test_a_valid_mac_opens_only_its_own_approval_and_purpose(env: ApprovalEnv) -> None:
    first_id, first_sig = create_approval(env)
    second_id, _second_sig = create_approval(env)
    assert first_id != second_id
    with pytest.raises(ForgedLinkError):
        env.decisions(NOW).load_for_review(second_id, "0", first_sig)
    # The form token is a MAC of the same key over the same id, but for another purpose.
    with pytest.raises(ForgedLinkError):
        env.decisions(NOW).load_for_review(first_id, "0", form_token(env.kms, env.key_id, first_id, 0))


def test_an_unknown_id_with_its_own_valid_signature_is_unknown(env: ApprovalEnv) -> None:
    missing_id = new_approval_id()
    sig = link_signature(env.kms, env.key_id, missing_id, 0)
    with pytest.raises(UnknownApprovalError, match=missing_id):
        env.decisions(NOW).load_for_review(missing_id, "0", sig)


# --- review ---------------------------------------------------------------------------------


def test_review_of_a_pending_approval_issues_a_form_token_and_changes_nothing(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    before = env.item(approval_id)

    review = env.decisions(NOW).load_for_review(approval_id, "0", sig)
    env.decisions(NOW).load_for_review(approval_id, "0", sig)

    assert review.record.status == PENDING
    assert review.form_token == form_token(env.kms, env.key_id, approval_id, 0)
    assert not hasattr(review.record, "task_token")
    assert env.item(approval_id) == before
    assert env.sfn.calls == []


def test_review_of_an_approval_whose_execution_no_longer_runs_is_closed_but_not_written(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    before = env.item(approval_id)
    env.sfn.execution_status = "ABORTED"

    with pytest.raises(ClosedApprovalError, match="its execution is ABORTED") as raised:
        env.decisions(NOW).load_for_review(approval_id, "0", sig)

    assert (raised.value.record.status, raised.value.record.closed_reason) == (CLOSED, "ABORTED")
    assert env.item(approval_id) == before
    assert env.sfn.described == [EXECUTION_ARN]
    env.sfn.execution_status = "RUNNING"
    review = env.decisions(NOW).load_for_review(approval_id, "0", sig)
    assert review.form_token is not None


def test_review_after_the_link_expired_is_refused(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    later = NOW + timedelta(seconds=TIMEOUT_SECONDS)
    with pytest.raises(ExpiredApprovalError, match="expired at 2026-11-25 12:00 UTC"):
        env.decisions(later).load_for_review(approval_id, "0", sig)


def test_review_of_a_decided_approval_shows_the_decision_without_a_form(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    decide_with(env, approval_id, sig, decision="reject", comment="too slow")

    review = env.decisions(NOW + timedelta(days=10)).load_for_review(approval_id, "0", sig)

    assert review.form_token is None
    assert (review.record.status, review.record.decided_by, review.record.comment) == (REJECTED, APPROVER, "too slow")


# --- deciding -------------------------------------------------------------------------------


def test_decide_approves_once_and_completes_the_task(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)

    record = decide_with(env, approval_id, sig, comment=" ship it ")

    assert record.status == APPROVED
    # Who decided is the address the link was issued to, never a typed name.
    assert (record.decision, record.decided_by, record.comment) == ("approve", APPROVER, "ship it")
    assert record.decided_at == "2026-11-22T13:00:00.000Z"
    [call] = env.sfn.calls
    assert call["taskToken"] == TASK_TOKEN
    assert json.loads(call["output"]) == {
        "decision": "approve",
        "approver": APPROVER,
        "comment": "ship it",
        "decided_at": "2026-11-22T13:00:00.000Z",
        "approval_id": approval_id,
        "required_approvals": 1,
        "approvers": [
            {"address": APPROVER, "decision": "approve", "decided_at": "2026-11-22T13:00:00.000Z", "comment": "ship it"}
        ],
    }
    item = env.item(approval_id)
    assert item is not None
    assert (item["status"], item["decided_by"], item["decision"]) == (APPROVED, APPROVER, "approve")


def test_a_second_decision_is_already_decided_and_sends_nothing(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    decide_with(env, approval_id, sig, decision="approve")

    with pytest.raises(AlreadyDecidedError, match=re.escape(f"approve by {APPROVER}")) as raised:
        decide_with(env, approval_id, sig, decision="reject")

    assert raised.value.record.decided_by == APPROVER
    assert len(env.sfn.calls) == 1
    item = env.item(approval_id)
    assert item is not None and item["status"] == APPROVED and item["decided_by"] == APPROVER


def test_an_empty_comment_is_sent_as_an_empty_string(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    decide_with(env, approval_id, sig, decision="reject", comment=None)
    # The state machine formats 'Rejected by {}: {}' with the comment, which must be a string.
    assert json.loads(env.sfn.calls[0]["output"])["comment"] == ""


def test_deciding_after_the_link_expired_is_refused(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    before = env.item(approval_id)
    with pytest.raises(ExpiredApprovalError):
        decide_with(env, approval_id, sig, now=NOW + timedelta(seconds=TIMEOUT_SECONDS + 1))
    assert env.item(approval_id) == before
    assert env.sfn.calls == []


def test_a_decision_without_the_form_token_is_refused(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    other_id, _other_sig = create_approval(env)
    before = env.item(approval_id)
    bad_tokens = {
        "missing": None,
        "tampered": tampered(form_token(env.kms, env.key_id, approval_id, 0)),
        "link signature": sig,
        "other approval": form_token(env.kms, env.key_id, other_id, 0),
    }
    for kind, csrf in bad_tokens.items():
        with pytest.raises(CrossSiteRequestError, match="field 'csrf'"):
            decide_with(env, approval_id, sig, csrf=csrf)
        assert env.item(approval_id) == before, kind
    assert env.sfn.calls == []


def test_a_decision_with_a_forged_link_is_refused(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    with pytest.raises(ForgedLinkError):
        decide_with(env, approval_id, tampered(sig))
    assert env.sfn.calls == []


def test_an_incomplete_form_names_the_field(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    cases = [
        ({"decision": "maybe"}, "decision"),
        ({"decision": None}, "decision"),
        ({"comment": "x" * 2001}, "comment"),
    ]
    for overrides, field_name in cases:
        with pytest.raises(InvalidDecisionError, match=f"field '{field_name}'"):
            decide_with(env, approval_id, sig, **overrides)
    item = env.item(approval_id)
    assert item is not None and item["status"] == PENDING
    assert env.sfn.calls == []


def test_a_stopped_execution_closes_the_approval_and_decides_nothing(env: ApprovalEnv) -> None:
    for code in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
        approval_id, sig = create_approval(env)
        env.sfn = SfnRecorder(fail_with=code)

        with pytest.raises(PipelineNotWaitingError, match=f"no longer waiting \\({code}\\)") as raised:
            decide_with(env, approval_id, sig)

        assert raised.value.record.status == CLOSED
        item = env.item(approval_id)
        assert item is not None
        assert (item["status"], item["closed_reason"]) == (CLOSED, code)
        assert not {"decision", "decided_by", "decided_at", "comment"} & set(item)
        with pytest.raises(ClosedApprovalError):
            env.decisions(NOW).load_for_review(approval_id, "0", sig)
        env.sfn.fail_with = None
        with pytest.raises(ClosedApprovalError):
            decide_with(env, approval_id, sig)
        assert len(env.sfn.calls) == 1


def test_an_undelivered_decision_is_taken_back_so_it_can_be_retried(env: ApprovalEnv) -> None:
    approval_id, sig = create_approval(env)
    env.sfn.fail_with = "ThrottlingException"

    with pytest.raises(DecisionNotDeliveredError, match="ThrottlingException"):
        decide_with(env, approval_id, sig)

    item = env.item(approval_id)
    assert item is not None and item["status"] == PENDING and "decision" not in item
    env.sfn.fail_with = None
    assert decide_with(env, approval_id, sig).status == APPROVED
    assert len(env.sfn.calls) == 2


def test_concurrent_decisions_exactly_one_wins(env: ApprovalEnv, atomic_moto_updates: None) -> None:
    approval_id, sig = create_approval(env)
    csrf = form_token(env.kms, env.key_id, approval_id, 0)
    # boto3 resources are not thread-safe: one table object per thread.
    tables = [new_session().resource("dynamodb").Table(env.table.name) for _ in range(20)]
    start = threading.Barrier(len(tables))
    outcomes: list[str] = []
    outcomes_lock = threading.Lock()

    def submit(index: int) -> None:
        start.wait()
        try:
            decide_with(
                env,
                approval_id,
                sig,
                csrf=csrf,
                table=tables[index],
                decision="approve" if index % 2 else "reject",
            )
            outcome = f"won:{index}"
        except AlreadyDecidedError:
            outcome = "already decided"
        with outcomes_lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(tables))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1
    assert outcomes.count("already decided") == 19
    [call] = env.sfn.calls
    winner = int(winners[0].split(":")[1])
    output = json.loads(call["output"])
    assert (output["approver"], output["decision"]) == (APPROVER, "approve" if winner % 2 else "reject")
    item = env.item(approval_id)
    assert item is not None and item["decided_by"] == APPROVER


# --- origin checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sec_fetch_site", "origin"),
    [
        (None, None),
        ("same-origin", "https://abc.execute-api.us-east-1.amazonaws.com"),
        ("none", None),
        (None, "https://ABC.execute-api.us-east-1.amazonaws.com"),
        ("same-origin", "null"),  # a page served with Referrer-Policy: no-referrer
    ],
)
def test_same_origin_submissions_pass(sec_fetch_site: str | None, origin: str | None) -> None:
    check_same_origin(sec_fetch_site=sec_fetch_site, origin=origin, host="abc.execute-api.us-east-1.amazonaws.com")


@pytest.mark.parametrize(
    ("sec_fetch_site", "origin", "header"),
    [
        ("cross-site", None, "Sec-Fetch-Site"),
        ("Cross-Site", "https://abc.execute-api.us-east-1.amazonaws.com", "Sec-Fetch-Site"),
        (None, "https://evil.example", "Origin"),
        ("same-site", "https://abc.execute-api.us-east-1.amazonaws.com.evil.example", "Origin"),
        (None, "null", "Origin"),
        ("same-site", "null", "Origin"),
    ],
)
def test_cross_site_submissions_are_refused(sec_fetch_site: str | None, origin: str | None, header: str) -> None:
    with pytest.raises(CrossSiteRequestError, match=header):
        check_same_origin(sec_fetch_site=sec_fetch_site, origin=origin, host="abc.execute-api.us-east-1.amazonaws.com")


def test_email_subject_formats_the_headline_metric() -> None:
    record = ApprovalRecord.from_item(
        {
            "approval_id": "x" * 32,
            "status": PENDING,
            "run_id": "iris-0123456789ab",
            "dataset": "iris",
            "metric": "accuracy",
            "value": Decimal("0.95"),
            "threshold": Decimal("0.90"),
            "link_expires_at": Decimal(1),
            "expires_at": Decimal(2),
        }
    )
    assert email_subject(record) == "[stepml] Approve iris model iris-0123456789ab? accuracy 0.95 (threshold 0.9)"
