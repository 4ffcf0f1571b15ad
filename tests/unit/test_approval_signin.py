"""The approval page's sign-in (ApprovalSignIn=cognito): PKCE, the ID token's checks, the MAC'd
cookies, and the approval API's redirects and refusals with a user pool in moto."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from joserfc import jwk, jwt
from moto.utilities.utils import load_resource

from stepml import approval_signin
from stepml.approval_signin import SignInClient, SignInError, SignInSettings
from stepml.local.mail import Outbox
from tests.helpers import load_handler, set_function_environment
from tests.unit.test_approval_api import Api, assert_html, http_event, running_execution
from tests.unit.test_approvals import approval_env, create_approval, tampered

POOL_ID = "us-east-1_TestPool1"
SETTINGS = SignInSettings(
    user_pool_id=POOL_ID,
    client_name="stepml-local-approval-page",
    hosted_ui_url="https://approvals.auth.us-east-1.amazoncognito.com",
    region="us-east-1",
    endpoint_url="https://cognito-idp.us-east-1.amazonaws.com",
)
CLIENT = SignInClient(
    client_id="client123", redirect_uri="https://abc123.execute-api.us-east-1.amazonaws.com/auth/callback"
)
#: moto's user pool key pair: tokens signed with the private half verify against its JWKS.
PRIVATE_KEY = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
PUBLIC_KEYS = load_resource("cognitoidp/resources/jwks-public.json")


def id_token(**overrides: Any) -> str:
    """An ID token as the pool issues it, with ``overrides`` (None removes a claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": SETTINGS.issuer,
        "aud": CLIENT.client_id,
        "token_use": "id",
        "exp": now + 300,
        "iat": now,
        "email": "Approver@Example.com",
        "email_verified": True,
    }
    header = {"kid": "dummy", "alg": "RS256", **overrides.pop("header", {})}
    claims.update(overrides)
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, PRIVATE_KEY)


@pytest.fixture
def published_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's JWKS as the function would have fetched it."""
    keys = {k["kid"]: k for k in PUBLIC_KEYS["keys"]}
    monkeypatch.setitem(approval_signin._JWKS_CACHE, SETTINGS.jwks_url, keys)
    monkeypatch.setattr(approval_signin, "fetch_jwks", lambda url: PUBLIC_KEYS if url == SETTINGS.jwks_url else {})


# --- PKCE and the authorize redirect ---------------------------------------------------------


def test_code_challenge_is_rfc_7636_s256() -> None:
    # RFC 7636, Appendix B.
    assert approval_signin.code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    verifier = approval_signin.new_code_verifier()
    assert len(verifier) == 43 and verifier != approval_signin.new_code_verifier()


def test_authorize_url_asks_for_a_code_with_an_s256_challenge() -> None:
    url = approval_signin.authorize_url(SETTINGS, CLIENT, state="st4te", verifier="v" * 43)
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert f"{split.scheme}://{split.netloc}{split.path}" == f"{SETTINGS.hosted_ui_url}/oauth2/authorize"
    assert query == {
        "response_type": "code",
        "client_id": CLIENT.client_id,
        "redirect_uri": CLIENT.redirect_uri,
        "scope": "openid email",
        "state": "st4te",
        "code_challenge": approval_signin.code_challenge("v" * 43),
        "code_challenge_method": "S256",
    }


# --- the ID token ------------------------------------------------------------------------------


@pytest.mark.usefixtures("published_keys")
def test_a_valid_id_token_gives_its_email_in_lower_case() -> None:
    assert approval_signin.verify_id_token(SETTINGS, CLIENT, id_token()) == "approver@example.com"


@pytest.mark.usefixtures("published_keys")
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}, "claim 'iss'"),
        ({"aud": "another-client"}, "claim 'aud'"),
        ({"token_use": "access"}, "claim 'token_use'"),
        ({"exp": int(time.time()) - 120}, "claim 'exp'"),
        ({"email": None}, "claim 'email'"),
        ({"email_verified": False}, "claim 'email_verified'"),
        ({"header": {"kid": "rotated-away"}}, "signed with key 'rotated-away'"),
    ],
)
def test_an_id_token_failing_a_check_is_refused_naming_it(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SignInError, match=message):
        approval_signin.verify_id_token(SETTINGS, CLIENT, id_token(**overrides))


@pytest.mark.usefixtures("published_keys")
def test_an_altered_or_unsigned_id_token_is_refused() -> None:
    header, payload, signature = id_token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["email"] = "mallory@example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(SignInError, match="signature does not verify"):
        approval_signin.verify_id_token(SETTINGS, CLIENT, f"{header}.{forged}.{signature}")
    with pytest.raises(SignInError, match="signature does not verify"):
        approval_signin.verify_id_token(SETTINGS, CLIENT, f"{header}.{payload}.{tampered(signature)}")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"dummy"}').rstrip(b"=").decode()
    with pytest.raises(SignInError, match="not signed with RS256"):
        approval_signin.verify_id_token(SETTINGS, CLIENT, f"{none_header}.{payload}.")
    with pytest.raises(SignInError, match="not a JWT"):
        approval_signin.verify_id_token(SETTINGS, CLIENT, "not-a-token")


# --- the MAC'd cookies --------------------------------------------------------------------------


def test_session_cookie_round_trip_and_tampering(stack: Any, mail_outbox: Outbox) -> None:
    env = approval_env(stack, mail_outbox)
    value = approval_signin.new_session(env.kms, env.key_id, "Approver@Example.com")
    assert approval_signin.session_email(env.kms, env.key_id, value) == "approver@example.com"

    body, mac = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "email": "mallory@example.com"}).encode()).decode()
    assert approval_signin.session_email(env.kms, env.key_id, f"{forged.rstrip('=')}.{mac}") is None
    assert approval_signin.session_email(env.kms, env.key_id, f"{body}.{tampered(mac)}") is None
    assert approval_signin.session_email(env.kms, env.key_id, body) is None
    assert approval_signin.session_email(env.kms, env.key_id, None) is None
    expired = approval_signin.unseal(env.kms, env.key_id, b"session:", value, now=time.time() + 31 * 60)
    assert expired is None
    # A session is no pending sign-in, nor the reverse: each MAC covers its purpose.
    with pytest.raises(SignInError, match="expired or was started in another browser"):
        approval_signin.read_pending(env.kms, env.key_id, value, claims.get("state"))
    state, _verifier, pending = approval_signin.new_pending(env.kms, env.key_id, "/approvals/x?to=0&sig=y")
    assert approval_signin.session_email(env.kms, env.key_id, pending) is None
    with pytest.raises(SignInError, match="state does not match"):
        approval_signin.read_pending(env.kms, env.key_id, pending, tampered(state))
    with pytest.raises(SignInError, match="state does not match"):
        approval_signin.read_pending(env.kms, env.key_id, pending, "état-✓")
    assert approval_signin.read_pending(env.kms, env.key_id, pending, state)["return_to"] == "/approvals/x?to=0&sig=y"


# --- the approval API with the sign-in on ---------------------------------------------------------


def signin_pool(callback_url: str) -> tuple[str, str]:
    """A user pool in moto with the template's app client and the approver as a user."""
    cognito = boto3.client("cognito-idp", region_name="us-east-1")
    pool = cognito.create_user_pool(PoolName="stepml-local-approvers", UsernameAttributes=["email"])["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName=SETTINGS.client_name,
        GenerateSecret=False,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "email"],
        SupportedIdentityProviders=["COGNITO"],
        CallbackURLs=[callback_url],
        ReadAttributes=["email", "email_verified"],
    )["UserPoolClient"]["ClientId"]
    for address in ("approver@example.com", "someone.else@example.com"):
        cognito.admin_create_user(
            UserPoolId=pool,
            Username=address,
            UserAttributes=[{"Name": "email", "Value": address}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )
        cognito.admin_set_user_password(UserPoolId=pool, Username=address, Password="Corr3ct-Horse!", Permanent=True)
    return pool, client


def signin_api(stack: Any, monkeypatch: pytest.MonkeyPatch, outbox: Outbox, settings: SignInSettings) -> Api:
    """The approval API handler with the sign-in on, against ``settings``' pool."""
    set_function_environment(monkeypatch, stack, "ApprovalApiFunction")
    module = load_handler("approval_api/app.py")
    env = approval_env(stack, outbox)
    monkeypatch.setattr(module, "dependencies", lambda: env.decisions(now=None))
    monkeypatch.setattr(module, "signin_settings", lambda: settings)
    return Api(module, env)


@pytest.fixture
def signed_api(stack: Any, monkeypatch: pytest.MonkeyPatch, mail_outbox: Outbox) -> Api:
    pool, _client = signin_pool(CLIENT.redirect_uri)
    settings = SignInSettings(**{**SETTINGS.__dict__, "user_pool_id": pool})
    return signin_api(stack, monkeypatch, mail_outbox, settings)


def new_approval(api: Api) -> tuple[str, str]:
    """A pending approval of a waiting execution, requested now: (id, the link's sig)."""
    return create_approval(api.env, now=datetime.now(UTC), execution_arn=running_execution())


def with_cookie(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    return {**event, "cookies": [f"{name}={value}"]}


def test_without_a_session_the_page_redirects_to_the_hosted_ui(signed_api: Api) -> None:
    approval_id, sig = new_approval(signed_api)
    response = signed_api.get(approval_id, sig)

    assert response["statusCode"] == 302
    location = urlsplit(response["headers"]["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"https://{location.netloc}{location.path}" == f"{SETTINGS.hosted_ui_url}/oauth2/authorize"
    assert query["redirect_uri"] == CLIENT.redirect_uri and query["code_challenge_method"] == "S256"
    (cookie,) = response["cookies"]
    assert cookie.startswith(f"{approval_signin.PENDING_COOKIE}=")
    for attribute in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"):
        assert attribute in cookie
    pending = approval_signin.read_pending(
        signed_api.env.kms, signed_api.env.key_id, cookie.split("=", 1)[1].split(";")[0], query["state"]
    )
    assert pending["return_to"] == f"/approvals/{approval_id}?to=0&sig={sig}"
    assert query["code_challenge"] == approval_signin.code_challenge(pending["verifier"])


def test_a_decision_without_a_session_decides_nothing(signed_api: Api) -> None:
    approval_id, sig = new_approval(signed_api)
    response = signed_api.post(approval_id, sig)
    assert response["statusCode"] == 302
    assert signed_api.env.item(approval_id)["status"] == "PENDING"


def test_a_session_of_another_address_is_refused_with_403(signed_api: Api) -> None:
    approval_id, sig = new_approval(signed_api)
    session = approval_signin.new_session(signed_api.env.kms, signed_api.env.key_id, "someone.else@example.com")
    event = http_event("GET", approval_id, query={"to": "0", "sig": sig})
    page = assert_html(signed_api.call(with_cookie(event, approval_signin.SESSION_COOKIE, session)), 403)
    assert "This link is for another approver" in page
    post = http_event("POST", approval_id, form=signed_api.form(approval_id, sig))
    page = assert_html(signed_api.call(with_cookie(post, approval_signin.SESSION_COOKIE, session)), 403)
    assert "This link is for another approver" in page
    assert signed_api.env.item(approval_id)["status"] == "PENDING"


def test_a_tampered_session_cookie_means_signing_in_again(signed_api: Api) -> None:
    approval_id, sig = new_approval(signed_api)
    session = approval_signin.new_session(signed_api.env.kms, signed_api.env.key_id, "approver@example.com")
    event = http_event("GET", approval_id, query={"to": "0", "sig": sig})
    assert signed_api.call(with_cookie(event, approval_signin.SESSION_COOKIE, tampered(session)))["statusCode"] == 302
    page = assert_html(signed_api.call(with_cookie(event, approval_signin.SESSION_COOKIE, session)), 200)
    assert "Deciding as <strong>approver@example.com</strong>" in page


def test_a_callback_with_another_state_is_refused(signed_api: Api) -> None:
    _state, _verifier, pending = approval_signin.new_pending(signed_api.env.kms, signed_api.env.key_id, "/approvals/x")
    event = http_event("GET", "x", query={"code": "c0de", "state": "forged"})
    event.update(rawPath="/auth/callback", routeKey="GET /auth/callback")
    event["requestContext"].update(
        routeKey="GET /auth/callback", http={**event["requestContext"]["http"], "path": "/auth/callback"}
    )
    event.pop("pathParameters")
    page = assert_html(signed_api.call(with_cookie(event, approval_signin.PENDING_COOKIE, pending)), 403)
    assert "Sign-in failed" in page and "state does not match" in page


def test_the_callback_is_not_found_while_the_sign_in_is_off(signed_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signed_api.module, "signin_settings", lambda: None)
    event = http_event("GET", "x", query={"code": "c0de", "state": "s"})
    event.update(rawPath="/auth/callback", routeKey="GET /auth/callback")
    event["requestContext"].update(http={**event["requestContext"]["http"], "path": "/auth/callback"})
    assert signed_api.call(event)["statusCode"] == 404
