"""The RequestApproval Lambda: the state machine's payload in, an approval record and email out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from stepml.approval_links import verify_link
from stepml.approval_records import PENDING, ApprovalRequestError
from stepml.config import ConfigError
from stepml.local.mail import Outbox
from tests.helpers import FakeLambdaContext, load_handler, set_function_environment
from tests.unit.test_approvals import (
    EXECUTION_ARN,
    LINK,
    TASK_TOKEN,
    approval_env,
    make_evaluation,
    make_run,
)


def payload(**overrides: Any) -> dict[str, Any]:
    """What the state machine sends (see statemachine/pipeline.asl.json, 'Request approval')."""
    event: dict[str, Any] = {
        "task_token": TASK_TOKEN,
        "run": make_run(),
        "evaluation": make_evaluation(),
        "execution_arn": EXECUTION_ARN,
    }
    event.update(overrides)
    return event


@pytest.fixture
def request_approval_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    # Would log the event (and with it the task token) if the handler obeyed it.
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    return load_handler("lambdas/request_approval/app.py")


def test_the_handler_stores_the_approval_and_emails_the_link(
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
    request_approval_module: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    mail_outbox: Outbox,
) -> None:
    environment = set_function_environment(monkeypatch, stack, "RequestApprovalFunction")
    env = approval_env(stack, mail_outbox)

    entered = "2026-11-22T11:59:58.600Z"
    result = request_approval_module.handler(
        payload(waiting_since=entered), FakeLambdaContext(function_name="request-approval")
    )

    assert set(result) == {"approval_id", "expires_at"}
    item = env.item(result["approval_id"])
    assert item is not None
    assert (item["status"], item["task_token"], item["run_id"]) == (PENDING, TASK_TOKEN, "churn-3f2a9c1b7d4e")
    waiting_since = datetime.fromisoformat(entered.replace("Z", "+00:00"))
    assert item["link_expires_at"] == int(waiting_since.timestamp()) + int(make_run()["approval_timeout_seconds"])
    [(subject, message)] = env.published()
    assert subject.startswith("[stepml] Approve churn model churn-3f2a9c1b7d4e?")
    [(base_url, approval_id, to, sig)] = LINK.findall(message)
    assert base_url == environment["STEPML_APPROVAL_BASE_URL"]
    assert approval_id == result["approval_id"]
    assert verify_link(env.kms, env.key_id, approval_id, to, sig) == 0
    streams = capsys.readouterr()
    logs = streams.out + streams.err + caplog.text
    assert "approval requested" in logs
    assert TASK_TOKEN not in logs and TASK_TOKEN[:40] not in logs
    assert sig not in logs


def test_a_payload_without_a_task_token_is_refused_without_echoing_it(
    stack: Any, monkeypatch: pytest.MonkeyPatch, request_approval_module: Any, mail_outbox: Outbox
) -> None:
    set_function_environment(monkeypatch, stack, "RequestApprovalFunction")
    env = approval_env(stack, mail_outbox)
    context = FakeLambdaContext()

    with pytest.raises(ApprovalRequestError, match="task_token"):
        request_approval_module.handler(payload(task_token=""), context)
    with pytest.raises(ApprovalRequestError, match="execution_arn") as raised:
        request_approval_module.handler(payload(execution_arn=None), context)
    assert TASK_TOKEN not in str(raised.value)
    with pytest.raises(ApprovalRequestError, match=re.escape("'run.input.uri'")):
        request_approval_module.handler(payload(run=make_run(input={})), context)

    assert env.table.scan()["Items"] == []
    assert env.published() == []


@pytest.mark.parametrize(
    ("run", "evaluation", "field_name"),
    [
        (make_run(input={"bucket": "b"}), make_evaluation(), "run.input.uri"),
        (make_run(run_id=""), make_evaluation(), "run.run_id"),
        (make_run(approval_timeout_seconds=None), make_evaluation(), "run.approval_timeout_seconds"),
        (make_run(approval_timeout_seconds=-5), make_evaluation(), "run.approval_timeout_seconds"),
        (make_run(), make_evaluation(metric=None), "evaluation.metric"),
        (make_run(), make_evaluation(value="high"), "evaluation.value"),
        (make_run(), make_evaluation(production=[0.9]), "evaluation.production"),
    ],
)
def test_a_request_missing_a_field_names_it_and_stores_nothing(
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
    request_approval_module: Any,
    mail_outbox: Outbox,
    run: dict[str, Any],
    evaluation: dict[str, Any],
    field_name: str,
) -> None:
    set_function_environment(monkeypatch, stack, "RequestApprovalFunction")
    env = approval_env(stack, mail_outbox)

    with pytest.raises(
        ApprovalRequestError, match=rf"^RequestApproval payload: (.*; )?field {re.escape(repr(field_name))}"
    ) as raised:
        request_approval_module.handler(payload(run=run, evaluation=evaluation), FakeLambdaContext())

    assert TASK_TOKEN not in str(raised.value)
    assert env.table.scan()["Items"] == []
    assert env.published() == []


def test_a_missing_setting_is_named(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, request_approval_module: Any
) -> None:
    monkeypatch.setenv("STEPML_APPROVAL_TABLE", "approvals")
    monkeypatch.setenv("STEPML_APPROVAL_SENDER", "stepml@example.com")
    monkeypatch.setenv("STEPML_APPROVER_EMAIL", "approver@example.com")
    monkeypatch.setenv("STEPML_APPROVAL_BASE_URL", "https://approvals.example.com")
    monkeypatch.delenv("STEPML_APPROVAL_SIGNING_KEY_ID", raising=False)

    with pytest.raises(ConfigError, match="STEPML_APPROVAL_SIGNING_KEY_ID"):
        request_approval_module.handler(payload(), FakeLambdaContext())
