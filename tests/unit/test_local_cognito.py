"""The local hosted UI (stepml.local.cognito) over real HTTP, backed by moto's user pool: an
approver signs in through it with an HTTP client that follows redirects, reaches the review page
and decides; and the hosted UI refuses what Cognito refuses, with Cognito's error codes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, build_opener

import boto3
import pytest
import requests

from stepml.approval_signin import SignInSettings
from stepml.local.apigateway import HttpApiServer, Route
from stepml.local.cognito import HostedUi, MotoUserPools
from stepml.local.mail import Outbox
from tests.helpers import FakeLambdaContext
from tests.unit.test_approval_api import Api
from tests.unit.test_approval_signin import new_approval, signin_api, signin_pool

ACCOUNT_ID = "123456789012"
PASSWORD = "Corr3ct-Horse!"


@dataclass
class _Result:
    payload: bytes
    function_error: str | None = None


class InProcessFunction:
    """The approval function run in this process (moto in-process is its AWS), for the HTTP API."""

    def __init__(self, api: Api):
        self.api = api

    def invoke(self, name: str, payload: bytes | str | None) -> _Result:
        answer = self.api.module.handler(json.loads(payload or "{}"), FakeLambdaContext(function_name=name))
        return _Result(json.dumps(answer).encode())


class JwksServer:
    """``/<pool>/.well-known/jwks.json`` as the cognito-idp endpoint serves it (moto's keys)."""

    def __init__(self, pools: MotoUserPools, pool_id: str):
        document = json.dumps(pools.jwks(pool_id)).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                found = self.path == f"/{pool_id}/.well-known/jwks.json"
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(document) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(document)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@dataclass
class SignInWorld:
    api: Api
    api_url: str
    hosted_ui: HostedUi
    pool_id: str
    client_id: str

    @property
    def callback(self) -> str:
        return f"{self.api_url}/auth/callback"


@pytest.fixture
def world(stack: Any, monkeypatch: pytest.MonkeyPatch, mail_outbox: Outbox) -> Iterator[SignInWorld]:
    holder: dict[str, Api] = {}
    routes = [Route(method, "/approvals/{approval_id}", "approval-api") for method in ("GET", "HEAD", "POST")] + [
        Route("GET", "/auth/callback", "approval-api")
    ]
    server = HttpApiServer(routes, InProcessFunction.__new__(InProcessFunction), api_id="abc123").start()
    pool_id, client_id = signin_pool(f"{server.url}/auth/callback")
    pools = MotoUserPools(ACCOUNT_ID, "us-east-1")
    hosted_ui = HostedUi(pools, pool_id).start()
    jwks = JwksServer(pools, pool_id)
    settings = SignInSettings(
        user_pool_id=pool_id,
        client_name="stepml-local-approval-page",
        hosted_ui_url=hosted_ui.address,
        region="us-east-1",
        endpoint_url=jwks.url,
    )
    holder["api"] = signin_api(stack, monkeypatch, mail_outbox, settings)
    server.engine = InProcessFunction(holder["api"])
    try:
        yield SignInWorld(holder["api"], server.url, hosted_ui, pool_id, client_id)
    finally:
        server.stop()
        hosted_ui.stop()
        jwks.httpd.shutdown()


@dataclass
class Page:
    status_code: int
    url: str
    text: str
    #: The URL of each redirect followed on the way, first first.
    history: list[str]


class Browser:
    """An HTTP client that keeps cookies and follows redirects as a browser does. Browsers treat
    loopback http as a secure context and send ``Secure`` cookies to 127.0.0.1; the stdlib jar
    does too once http counts as secure (requests' merged jars drop such a policy)."""

    def __init__(self) -> None:
        self.cookies = CookieJar(DefaultCookiePolicy(secure_protocols=("https", "wss", "http")))
        self._history: list[str] = []
        browser = self

        class Redirects(HTTPRedirectHandler):
            def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
                browser._history.append(req.full_url)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        self.opener = build_opener(HTTPCookieProcessor(self.cookies), Redirects())

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name and c.value), None)

    def open(self, url: str, form: dict[str, str] | None = None) -> Page:
        self._history = []
        data = urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(url, data=data, timeout=30) as answer:
                return Page(answer.status, answer.url, answer.read().decode(), self._history)
        except HTTPError as exc:
            return Page(exc.code, exc.url, exc.read().decode(), self._history)


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


def test_an_approver_signs_in_through_the_hosted_ui_reaches_the_page_and_decides(world: SignInWorld) -> None:
    approval_id, sig = new_approval(world.api)
    client = Browser()

    login = client.open(f"{world.api_url}/approvals/{approval_id}?{urlencode({'to': '0', 'sig': sig})}")
    assert login.status_code == 200 and urlsplit(login.url).path == "/login"
    assert [urlsplit(u).path for u in login.history] == [f"/approvals/{approval_id}", "/oauth2/authorize"]

    page = client.open(
        f"{world.hosted_ui.address}/login",
        {**hidden_fields(login.text), "username": "approver@example.com", "password": PASSWORD},
    )
    assert page.status_code == 200, page.text
    assert "Deciding as <strong>approver@example.com</strong>" in page.text
    assert [urlsplit(u).path for u in page.history] == ["/login", "/auth/callback"]
    assert client.cookie("stepml_session") and not client.cookie("stepml_signin")

    form = hidden_fields(page.text)
    decided = client.open(
        f"{world.api_url}/approvals/{approval_id}", {**form, "decision": "approve", "comment": "looks good"}
    )
    assert decided.status_code == 200, decided.text
    item = world.api.env.item(approval_id)
    assert item["status"] == "APPROVED" and item["approvers"] == ["approver@example.com"]


def test_another_user_signed_in_is_refused_on_the_approvers_link(world: SignInWorld) -> None:
    approval_id, sig = new_approval(world.api)
    client = Browser()
    login = client.open(f"{world.api_url}/approvals/{approval_id}?{urlencode({'to': '0', 'sig': sig})}")
    page = client.open(
        f"{world.hosted_ui.address}/login",
        {**hidden_fields(login.text), "username": "someone.else@example.com", "password": PASSWORD},
    )
    assert page.status_code == 403 and "This link is for another approver" in page.text
    assert world.api.env.item(approval_id)["status"] == "PENDING"


def test_a_wrong_password_shows_the_login_form_again(world: SignInWorld) -> None:
    approval_id, sig = new_approval(world.api)
    client = Browser()
    login = client.open(f"{world.api_url}/approvals/{approval_id}?{urlencode({'to': '0', 'sig': sig})}")
    again = client.open(
        f"{world.hosted_ui.address}/login",
        {**hidden_fields(login.text), "username": "approver@example.com", "password": "wrong"},
    )
    assert again.status_code == 200 and "Incorrect username or password." in again.text
    assert not client.cookie("stepml_session")


def _authorize_params(world: SignInWorld, verifier: str, **overrides: str) -> dict[str, str]:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": world.callback,
        "scope": "openid email",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


def _code(world: SignInWorld, verifier: str) -> str:
    """Sign in at the hosted UI and take the code from its redirect (not followed)."""
    answer = requests.post(
        f"{world.hosted_ui.address}/login",
        data={**_authorize_params(world, verifier), "username": "approver@example.com", "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == world.callback
    query = parse_qs(location.query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def _exchange(world: SignInWorld, code: str, verifier: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": world.client_id,
        "code": code,
        "redirect_uri": world.callback,
        "code_verifier": verifier,
        **overrides,
    }
    return requests.post(f"{world.hosted_ui.address}/oauth2/token", data=form, timeout=30)


def test_an_unregistered_redirect_uri_goes_to_the_error_page(world: SignInWorld) -> None:
    params = _authorize_params(world, "v" * 43, redirect_uri="https://attacker.example/cb")
    answer = requests.get(f"{world.hosted_ui.address}/oauth2/authorize?{urlencode(params)}", timeout=30)
    assert answer.status_code == 400 and "redirect_mismatch" in answer.text
    assert urlsplit(answer.url).path == "/error"


def test_a_plain_challenge_is_refused_back_at_the_callback(world: SignInWorld) -> None:
    params = _authorize_params(world, "v" * 43, code_challenge_method="plain")
    answer = requests.get(
        f"{world.hosted_ui.address}/oauth2/authorize?{urlencode(params)}", allow_redirects=False, timeout=30
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == f"{world.callback}?{urlencode({'error': 'invalid_request', 'state': 's1'})}"


def test_the_token_endpoint_refuses_a_bad_verifier_and_a_reused_code(world: SignInWorld) -> None:
    verifier = "A" * 43
    code = _code(world, verifier)
    bad = _exchange(world, code, "B" * 43)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    # The failed attempt spent the code, as Cognito's does.
    assert _exchange(world, code, verifier).json()["error"] == "invalid_grant"

    code = _code(world, verifier)
    good = _exchange(world, code, verifier)
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
    reused = _exchange(world, code, verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    code = _code(world, verifier)
    assert _exchange(world, code, verifier, redirect_uri=f"{world.api_url}/other").json()["error"] == "invalid_grant"
    assert _exchange(world, "x", verifier, client_id="nope").json()["error"] == "invalid_client"
    assert _exchange(world, "x", verifier, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert _exchange(world, "", verifier).json()["error"] == "invalid_request"


# --- the template's sign-in, provisioned -----------------------------------------------------------


def test_the_template_provisions_the_sign_in_and_grants_only_the_client_lookup(aws_credentials: None) -> None:
    from moto import mock_aws

    from stepml.approval_signin import find_client
    from stepml.local.iam.model import AuthorizationRequest, PolicyDocument, Principal
    from stepml.local.iam.policy import evaluate
    from stepml.local.iam.requests import authorization_requests
    from stepml.local.provision import provision
    from tests.conftest import TEMPLATE
    from tests.unit.test_iam_requests import Resolver, call_of

    types = {"AWS::Cognito::UserPool", "AWS::Cognito::UserPoolDomain", "AWS::Cognito::UserPoolClient"}
    parameters = {"ApprovalSignIn": "cognito", "ApprovalBaseUrl": "http://127.0.0.1:4567"}
    with mock_aws():
        stack = provision(TEMPLATE, boto3.Session(region_name="us-east-1"), parameter_overrides=parameters, types=types)
        environment = stack.function_environment("ApprovalApiFunction")
        pool_id = stack.physical_id("ApprovalUserPool")
        assert environment["STEPML_APPROVAL_SIGNIN"] == "cognito"
        assert environment["STEPML_APPROVAL_USER_POOL_ID"] == pool_id
        assert environment["STEPML_APPROVAL_SIGNIN_URL"] == (
            f"https://stepml-local-{ACCOUNT_ID}.auth.us-east-1.amazoncognito.com"
        )
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        settings = SignInSettings(pool_id, environment["STEPML_APPROVAL_SIGNIN_CLIENT_NAME"], "", "us-east-1", "")
        client = find_client(cognito, settings)
        assert client.redirect_uri == "http://127.0.0.1:4567/auth/callback"
        described = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client.client_id)["UserPoolClient"]
        assert "ClientSecret" not in described and described["AllowedOAuthFlows"] == ["code"]
        pool_arn = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["Arn"]
        policies = stack.resolved.resolved_properties("ApprovalApiFunction")["Policies"]

    role = Principal(arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/approval/s", role_arn="arn:aws:iam::1:role/approval")
    documents = [PolicyDocument(source="approval/inline", document=document) for document in policies]
    lookups = [
        call_of("cognito-idp", "list_user_pool_clients", UserPoolId=pool_id, MaxResults=60),
        call_of("cognito-idp", "describe_user_pool_client", UserPoolId=pool_id, ClientId=client.client_id),
    ]
    for call in lookups:
        (request,) = authorization_requests(call, account=ACCOUNT_ID, region="us-east-1", resolver=Resolver())
        assert request.resource == pool_arn
        assert evaluate(role, request, documents).kind == "allowed"
    # Only the lookup, and only on this pool.
    other_pool = pool_arn.rsplit("/", 1)[0] + "/us-east-1_Other"
    for action, resource in (
        ("cognito-idp:ListUserPoolClients", other_pool),
        ("cognito-idp:AdminCreateUser", pool_arn),
        ("cognito-idp:DescribeUserPoolClient", "*"),
    ):
        assert evaluate(role, AuthorizationRequest(action, resource, {}), documents).kind == "implicit-deny"


def test_with_the_sign_in_off_the_template_has_no_pool_and_no_cognito_permission(stack: Any) -> None:
    environment = stack.function_environment("ApprovalApiFunction")
    assert environment["STEPML_APPROVAL_SIGNIN"] == "none" and environment["STEPML_APPROVAL_USER_POOL_ID"] == "none"
    assert "ApprovalUserPool" not in stack.created
    policies = json.dumps(stack.resolved.resolved_properties("ApprovalApiFunction")["Policies"])
    assert "cognito-idp" not in policies


def test_stepml_runs_decide_names_the_sign_in_instead_of_posting_to_it(world: SignInWorld) -> None:
    from stepml.cli.context import CliError
    from stepml.cli.runs import approve_link

    approval_id, sig = new_approval(world.api)
    with pytest.raises(CliError, match=r"opened a sign-in page \(Signin\): this stack puts the review page behind"):
        approve_link(f"{world.api_url}/approvals/{approval_id}?to=0&sig={sig}", decision="approve", comment="")
    assert world.api.env.item(approval_id)["status"] == "PENDING"
