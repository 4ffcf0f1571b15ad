"""The approval API handler: API Gateway HTTP API (payload 2.0) events in, HTML pages out."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from stepml.approval_links import form_token, link_signature, new_approval_id
from stepml.approval_records import APPROVED, CLOSED, PENDING, REJECTED
from stepml.local.mail import Outbox
from tests.helpers import FakeLambdaContext, load_handler, set_function_environment
from tests.unit.test_approvals import (
    TASK_TOKEN,
    TIMEOUT_SECONDS,
    ApprovalEnv,
    approval_env,
    create_approval,
    tampered,
)

HOST = "abc123.execute-api.us-east-1.amazonaws.com"
EXPECTED_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def http_event(
    method: str,
    approval_id: str,
    *,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = True,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event for ``METHOD /approvals/{approval_id}``."""
    path = f"/approvals/{approval_id}"
    all_headers = {"host": HOST, "user-agent": "Mozilla/5.0 (pytest)", "accept": "text/html"}
    body = raw_body if raw_body is not None else (urlencode(form) if form is not None else None)
    if body is not None:
        all_headers["content-type"] = "application/x-www-form-urlencoded"
    all_headers.update(headers or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} /approvals/{{approval_id}}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": HOST,
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Mozilla/5.0 (pytest)",
            },
            "requestId": "Jd1fYhlTIAMEVfA=",
            "routeKey": f"{method} /approvals/{{approval_id}}",
            "stage": "$default",
            "time": "22/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795348800000,
        },
        "pathParameters": {"approval_id": approval_id},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        if base64_body:
            event["body"] = base64.b64encode(body.encode()).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = body
    return event


@dataclass
class Api:
    module: Any
    env: ApprovalEnv

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.module.handler(event, FakeLambdaContext(function_name="approval-api"))

    def new_approval(self, *, created: datetime | None = None) -> tuple[str, str]:
        return create_approval(self.env, now=created or datetime.now(UTC))

    def get(self, approval_id: str, sig: str | None, method: str = "GET") -> dict[str, Any]:
        return self.call(http_event(method, approval_id, query={"to": "0", "sig": sig} if sig is not None else None))

    def get_as(self, approval_id: str, to: str, sig: str) -> dict[str, Any]:
        return self.call(http_event("GET", approval_id, query={"to": to, "sig": sig}))

    def form(self, approval_id: str, sig: str, **fields: str | None) -> dict[str, str]:
        values: dict[str, str | None] = {
            "decision": "approve",
            # A typed name, as older forms and `stepml runs decide` send: never trusted.
            "approver": "ana@example.com",
            "comment": "",
            "to": "0",
            "sig": sig,
            "csrf": form_token(self.env.kms, self.env.key_id, approval_id, 0),
        }
        values.update(fields)
        return {k: v for k, v in values.items() if v is not None}

    def post(
        self,
        approval_id: str,
        sig: str,
        *,
        headers: dict[str, str] | None = None,
        base64_body: bool = True,
        **fields: str | None,
    ) -> dict[str, Any]:
        event = http_event(
            "POST", approval_id, form=self.form(approval_id, sig, **fields), headers=headers, base64_body=base64_body
        )
        return self.call(event)


@pytest.fixture
def api(stack: Any, monkeypatch: pytest.MonkeyPatch, mail_outbox: Outbox) -> Api:
    set_function_environment(monkeypatch, stack, "ApprovalApiFunction")
    # Both would put secrets into logs if the handler obeyed them.
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    module = load_handler("approval_api/app.py")
    env = approval_env(stack, mail_outbox)
    # Built on each request: tests replace env.sfn. The clock is real, as the handler's is.
    monkeypatch.setattr(module, "dependencies", lambda: env.decisions(now=None))
    return Api(module, env)


def assert_html(response: dict[str, Any], status: int) -> str:
    """Status, the security headers, and the page text (which never carries the secrets)."""
    assert response["statusCode"] == status, response["body"]
    for name, value in EXPECTED_HEADERS.items():
        assert response["headers"][name] == value
    body = response["body"]
    assert not response.get("isBase64Encoded")
    assert TASK_TOKEN not in body and TASK_TOKEN[:40] not in body
    assert "Traceback" not in body and "<script" not in body
    return body


def hidden_value(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


# --- GET ------------------------------------------------------------------------------------


def running_execution() -> str:
    """The ARN of an execution that waits (moto in-process), as the approval's pipeline does."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="stepml-local-pipeline",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/pipeline",
    )
    return sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="waiting")["executionArn"]


def test_get_shows_the_review_page_and_changes_nothing(
    stack: Any, monkeypatch: pytest.MonkeyPatch, mail_outbox: Outbox
) -> None:
    # The handler's own dependencies, built from the function's environment in template.yaml.
    set_function_environment(monkeypatch, stack, "ApprovalApiFunction")
    module = load_handler("approval_api/app.py")
    real = Api(module, approval_env(stack, mail_outbox))
    approval_id, sig = create_approval(real.env, now=datetime.now(UTC), execution_arn=running_execution())
    before = real.env.item(approval_id)

    page = assert_html(real.get(approval_id, sig), 200)

    assert "churn-3f2a9c1b7d4e" in page and "churn" in page
    assert "s3://uploads/incoming/churn/data.csv" in page and "v-7Hq2" in page
    assert "stepml-churn-3f2a9c1b7d4e-a1" in page
    assert "auc 0.9123; the gate requires at least 0.8: passed" in page
    assert "against production 0.9 (+0.0123): better than production." in page
    assert "s3://artifacts/evaluation/churn/churn-3f2a9c1b7d4e/report.json" in page
    assert "<h2>Evaluation report</h2>" in page and "Scored on 600 held-out test rows" in page
    assert "<tr><td>auc</td><td>0.9123</td><td>0.9</td></tr>" in page
    assert "<tr><td>accuracy</td><td>0.87</td><td>0.85</td></tr>" in page
    assert "Link expires" in page and " UTC" in page
    assert f'<form method="post" action="{approval_id}">' in page
    # No name to type: the decision is recorded under the address the link was sent to.
    assert 'name="approver"' not in page
    assert "Deciding as <strong>approver@example.com</strong>" in page
    assert hidden_value(page, "to") == "0"
    assert 'name="comment"' in page
    assert '<button type="submit" class="approve" name="decision" value="approve">Approve</button>' in page
    assert '<button type="submit" class="reject" name="decision" value="reject">Reject</button>' in page
    assert hidden_value(page, "sig") == sig
    assert hidden_value(page, "csrf") == form_token(real.env.kms, real.env.key_id, approval_id, 0)
    assert real.env.key_id not in page

    head = real.get(approval_id, sig, method="HEAD")
    assert_html(head, 200)
    assert head["body"] == ""
    assert real.env.item(approval_id) == before
    assert real.env.sfn.calls == []


def test_get_refuses_forged_unknown_expired_and_closed_links(api: Api) -> None:
    approval_id, sig = api.new_approval()
    page = assert_html(api.get(approval_id, tampered(sig)), 403)
    assert "This link is not valid" in page
    assert_html(api.get(approval_id, None), 403)

    unknown_id = new_approval_id()
    page = assert_html(api.get(unknown_id, link_signature(api.env.kms, api.env.key_id, unknown_id, 0)), 404)
    assert "Approval not found" in page

    expired_id, expired_sig = api.new_approval(created=datetime.now(UTC) - timedelta(seconds=TIMEOUT_SECONDS + 5))
    page = assert_html(api.get(expired_id, expired_sig), 410)
    assert "This approval link has expired" in page

    api.env.table.update_item(
        Key={"approval_id": approval_id},
        UpdateExpression="SET #s = :closed, closed_reason = :reason",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":closed": CLOSED, ":reason": "TaskTimedOut"},
    )
    page = assert_html(api.get(approval_id, sig), 410)
    assert "no longer waiting" in page

    page = assert_html(api.call(http_event("GET", "x/../../admin")), 404)
    assert api.env.sfn.calls == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("ABORTED", "the pipeline run was stopped"),
        ("FAILED", "the pipeline run failed"),
        ("ExecutionDoesNotExist", "the pipeline run no longer exists"),
    ],
)
def test_get_of_a_link_whose_execution_stopped_is_closed_and_writes_nothing(api: Api, status: str, reason: str) -> None:
    approval_id, sig = api.new_approval()
    before = api.env.item(approval_id)
    api.env.sfn.execution_status = status

    for method in ("GET", "HEAD"):
        response = api.get(approval_id, sig, method=method)
        page = assert_html(response, 410)
    page = api.get(approval_id, sig)["body"]

    assert "This approval is closed" in page and f"Reason: {reason}." in page
    assert "<form" not in page and 'name="csrf"' not in page
    assert api.env.item(approval_id) == before
    assert api.env.sfn.calls == []


# --- POST -----------------------------------------------------------------------------------


def test_post_decides_exactly_once(api: Api) -> None:
    approval_id, sig = api.new_approval()
    review = api.get(approval_id, sig)["body"]
    form = {
        "decision": "approve",
        "approver": "ana@example.com",
        "comment": "ship it",
        "to": hidden_value(review, "to"),
        "sig": hidden_value(review, "sig"),
        "csrf": hidden_value(review, "csrf"),
    }

    first = api.call(
        http_event(
            "POST", approval_id, form=form, headers={"origin": f"https://{HOST}", "sec-fetch-site": "same-origin"}
        )
    )
    page = assert_html(first, 200)
    assert "Approved by approver@example.com" in page and "ship it" in page

    second = api.post(approval_id, sig, decision="reject", approver="mallory@example.com")
    page = assert_html(second, 409)
    assert "Already decided" in page and "Approved by approver@example.com" in page

    [call] = api.env.sfn.calls
    assert call["taskToken"] == TASK_TOKEN
    assert json.loads(call["output"])["decision"] == "approve"
    item = api.env.item(approval_id)
    assert item is not None and (item["status"], item["decided_by"]) == (APPROVED, "approver@example.com")

    page = assert_html(api.get(approval_id, sig), 200)
    assert "already approved" in page and "Approved by approver@example.com" in page
    assert "<form" not in page


def test_post_with_a_plain_body_rejects(api: Api) -> None:
    approval_id, sig = api.new_approval()
    page = assert_html(
        api.post(approval_id, sig, decision="reject", comment="worse on recent data", base64_body=False), 200
    )
    assert "Rejected by approver@example.com" in page and "production is unchanged" in page
    item = api.env.item(approval_id)
    assert item is not None and item["status"] == REJECTED
    assert json.loads(api.env.sfn.calls[0]["output"])["comment"] == "worse on recent data"


def test_post_refuses_requests_that_did_not_come_from_the_review_form(api: Api) -> None:
    approval_id, sig = api.new_approval()
    before = api.env.item(approval_id)
    not_base64 = http_event("POST", approval_id, form=api.form(approval_id, sig))
    not_base64["body"] = "A"
    refusals = [
        (api.post(approval_id, sig, csrf=None), 403),
        (api.post(approval_id, sig, csrf=tampered(form_token(api.env.kms, api.env.key_id, approval_id, 0))), 403),
        (api.post(approval_id, sig, csrf=sig), 403),
        (api.post(approval_id, tampered(sig)), 403),
        (api.post(approval_id, sig, headers={"origin": "https://evil.example"}), 403),
        (api.post(approval_id, sig, headers={"sec-fetch-site": "cross-site"}), 403),
        (api.post(approval_id, sig, headers={"content-type": "text/plain"}), 415),
        (api.post(approval_id, sig, decision="ship"), 400),
        (api.post(approval_id, sig, comment="x" * 2001), 400),
        # Another approver's number with this approver's link.
        (api.post(approval_id, sig, to="1"), 403),
        (api.post(approval_id, sig, to=None), 403),
        (api.call(not_base64), 400),
    ]
    for response, status in refusals:
        assert_html(response, status)
    assert "field &#x27;comment&#x27;" in refusals[8][0]["body"]
    assert api.env.item(approval_id) == before
    assert api.env.sfn.calls == []


def test_post_after_the_execution_stopped_closes_the_approval(api: Api) -> None:
    approval_id, sig = api.new_approval()
    api.env.sfn.fail_with = "TaskDoesNotExist"

    page = assert_html(api.post(approval_id, sig), 410)

    assert "The pipeline is no longer waiting for this approval; your decision was not recorded." in page
    item = api.env.item(approval_id)
    assert item is not None and (item["status"], item["closed_reason"]) == (CLOSED, "TaskDoesNotExist")
    assert "decided_by" not in item


def test_post_after_the_link_expired_is_gone(api: Api) -> None:
    approval_id, sig = api.new_approval(created=datetime.now(UTC) - timedelta(seconds=TIMEOUT_SECONDS + 5))
    page = assert_html(api.post(approval_id, sig), 410)
    assert "expired" in page
    item = api.env.item(approval_id)
    assert item is not None and item["status"] == PENDING
    assert api.env.sfn.calls == []


def _raw_post(api: Api, approval_id: str, body: bytes, content_type: str | None) -> dict[str, Any]:
    """A POST whose body is ``body`` as API Gateway delivers a non-text body (base64)."""
    event = http_event("POST", approval_id)
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    return api.call(event)


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (bytes(range(256)) * 4096, FORM, 413, "larger than 32768 bytes"),  # 1 MiB of every byte value
        (bytes(range(256)) * 4096, None, 413, "larger than 32768 bytes"),
        (b"decision=approve&approver=ana\xff\xfe&comment=", FORM, 400, "not valid UTF-8"),
        (b"decision=approve&comment=%FF%FE", FORM, 400, "not valid UTF-8"),
        ("decision=approve&approver=ana".encode("utf-16"), f"{FORM}; charset=utf-16", 415, "charset=utf-16"),
        (b"decision=approve", "application/json", 415, "application/x-www-form-urlencoded"),
        (b"decision=approve", None, 415, "application/x-www-form-urlencoded"),
        (b"&".join([b"a=1"] * 100), FORM, 400, "too many fields"),
    ],
    ids=["1MiB-form", "1MiB-untyped", "bad-utf8", "bad-utf8-escape", "utf16", "json", "untyped", "many-fields"],
)
def test_post_refuses_a_body_it_cannot_read_and_decides_nothing(
    api: Api, body: bytes, content_type: str | None, status: int, says: str
) -> None:
    approval_id, _sig = api.new_approval()
    before = api.env.item(approval_id)
    page = assert_html(_raw_post(api, approval_id, body, content_type), status)
    assert says in page.replace("&#x27;", "'") and "Nothing was decided" in page
    assert api.env.item(approval_id) == before
    assert api.env.sfn.calls == []


def test_a_form_of_the_longest_fields_in_any_script_is_within_the_limit(api: Api) -> None:
    """The limit leaves room for a 200-character approver and a 2000-character comment of
    four-byte characters, percent-encoded (12 bytes each), as a browser sends them."""
    approval_id, sig = api.new_approval()
    page = assert_html(api.post(approval_id, sig, approver="\U0001f600" * 200, comment="\U0001f600" * 2000), 200)
    assert "Approved by" in page


def test_submitted_text_is_escaped(api: Api) -> None:
    approval_id, sig = api.new_approval()
    name = '<script>alert("x")</script>'
    page = assert_html(api.post(approval_id, sig, approver=name, comment="<b>bold</b> & 'quoted'"), 200)
    # The typed name is ignored: the decision is the link's approver's.
    assert "alert" not in page and "Approved by approver@example.com" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27;" in page
    page = assert_html(api.get(approval_id, sig), 200)
    assert "&lt;b&gt;bold" in page


def test_an_unexpected_error_is_a_plain_500_and_is_logged_without_secrets(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    approval_id, sig = api.new_approval()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail: table layout changed")

    api.post(approval_id, sig)  # a decision, so the logs have something to leak if they would
    monkeypatch.setattr(api.module.ApprovalDecisions, "load_for_review", broken)
    response = api.get(approval_id, sig)

    page = assert_html(response, 500)
    assert "Something went wrong" in page
    assert "internal detail" not in page and "RuntimeError" not in page
    streams = capsys.readouterr()
    output = streams.out + streams.err + caplog.text
    assert "internal detail: table layout changed" in output  # logged for the operators...
    assert sig not in output  # ...but never the link signature, form token or task token
    assert form_token(api.env.kms, api.env.key_id, approval_id, 0) not in output
    assert TASK_TOKEN not in output


def test_behind_a_jwt_authorizer_the_signed_in_email_must_be_the_links_approver(api: Api) -> None:
    """API Gateway's JWT authorizer (Cognito) hands the verified claims in
    ``requestContext.authorizer.jwt.claims``; the page decides only for the link's own approver."""
    approval_id, sig = api.new_approval()
    before = api.env.item(approval_id)

    def signed_in(event: dict[str, Any], claims: dict[str, str]) -> dict[str, Any]:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        return event

    query = {"to": "0", "sig": sig}
    for claims in ({"email": "mallory@example.com", "sub": "1"}, {"sub": "no-email"}):
        page = assert_html(api.call(signed_in(http_event("GET", approval_id, query=query), claims)), 403)
        assert "This link is for another approver" in page
        post = http_event("POST", approval_id, form=api.form(approval_id, sig))
        page = assert_html(api.call(signed_in(post, claims)), 403)
    assert api.env.item(approval_id) == before and api.env.sfn.calls == []

    claims = {"email": "Approver@Example.com", "sub": "2"}
    page = assert_html(api.call(signed_in(http_event("GET", approval_id, query=query), claims)), 200)
    assert "Deciding as <strong>approver@example.com</strong>" in page
    post = http_event("POST", approval_id, form=api.form(approval_id, sig))
    page = assert_html(api.call(signed_in(post, claims)), 200)
    assert "Approved by approver@example.com" in page


def test_a_first_approval_of_two_shows_the_wait_and_a_second_by_the_same_approver_is_409(api: Api) -> None:
    from tests.unit.test_approval_votes import ANA, BEN, request_sign_off

    approval_id, sigs = request_sign_off(api.env, [ANA, BEN], 2, now=datetime.now(UTC))

    def post(address: str, decision: str) -> dict[str, Any]:
        index = [ANA, BEN].index(address)
        form = {
            "decision": decision,
            "comment": "",
            "to": str(index),
            "sig": sigs[address],
            "csrf": form_token(api.env.kms, api.env.key_id, approval_id, index),
        }
        return api.call(http_event("POST", approval_id, form=form))

    page = assert_html(post(ANA, "approve"), 200)
    assert "Your approval is recorded" in page and "1 more approval" in page and BEN in page
    page = assert_html(post(ANA, "reject"), 409)
    assert "You have already decided" in page
    page = assert_html(api.get_as(approval_id, "0", sigs[ANA]), 200)
    assert "Your approval is recorded" in page and "<form" not in page
    assert api.env.sfn.calls == []
    page = assert_html(post(BEN, "approve"), 200)
    assert f"Approved by {ANA}, {BEN}" in page
    assert len(api.env.sfn.calls) == 1
