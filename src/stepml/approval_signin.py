"""Optional sign-in for the approval page: the OpenID Connect code flow with PKCE against a
Cognito user pool's hosted UI, and a short session cookie.

A link clicked in a mail client carries no ``Authorization`` header, so an API Gateway JWT or
IAM authorizer would refuse every approver's browser. With ``ApprovalSignIn=cognito`` the
approval function signs the browser in itself:

1. no session: 302 to ``{hosted UI}/oauth2/authorize`` with a random ``state`` and an S256
   code challenge; the ``state``, the code verifier and the page to come back to travel in a
   short "pending sign-in" cookie that the stack's KMS HMAC key authenticates;
2. ``/auth/callback``: the ``state`` must equal the cookie's, the code is exchanged at
   ``/oauth2/token`` (a public client: the code verifier, no client secret), and the ID token is
   verified here (RS256 signature by the pool's JWKS, ``iss``, ``aud``, ``exp``, ``token_use``);
3. the session cookie holds the token's ``email`` and an expiry, MAC'd by the same KMS key
   (its own purpose prefix, so it is never a link MAC): no secret in the environment, none in
   the function's memory.

The signed-in address is then held against the link's approver by ``ApprovalDecisions`` (the
same check as a JWT authorizer's ``email`` claim). The hosted UI's client id is looked up by the
client's name at run time (``ListUserPoolClients``): the client's callback URL names the API,
the API integrates this function, so the function's environment cannot name the client
(CloudFormation would see a cycle).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from stepml.approval_links import message_mac, message_mac_is_valid
from stepml.approval_records import ApprovalError, ApprovalServiceError

#: The session's and the pending sign-in's cookie names.
SESSION_COOKIE = "stepml_session"
PENDING_COOKIE = "stepml_signin"
#: How long a session lasts: long enough to read the review page and decide, short enough that a
#: shared computer does not keep deciding as somebody.
SESSION_SECONDS = 30 * 60
#: How long a sign-in may take between the redirect and the callback.
PENDING_SECONDS = 10 * 60
CALLBACK_PATH = "/auth/callback"
_SESSION_PURPOSE = b"session:"
_PENDING_PURPOSE = b"signin:"
#: DigestInfo prefix of a SHA-256 digest (RFC 8017, 9.2), for RS256 verification.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
#: Allowed clock difference between Cognito and this function when reading ``exp``/``iat``.
_CLOCK_SKEW_SECONDS = 60
_HTTP_TIMEOUT_SECONDS = 5


class SignInError(ApprovalError):
    """The sign-in cannot be completed (bad state, refused code, an ID token that does not verify)."""


class SignInServiceError(ApprovalServiceError):
    """The user pool, its hosted UI or its keys could not be reached."""


@dataclass(frozen=True)
class SignInSettings:
    """Where the user pool and its hosted UI are; ``endpoint_url`` is the cognito-idp endpoint
    boto3 resolves (the pool's JWKS lives under it)."""

    user_pool_id: str
    client_name: str
    hosted_ui_url: str
    region: str
    endpoint_url: str

    @property
    def issuer(self) -> str:
        """The ``iss`` of the pool's tokens (always AWS's name, wherever the keys are fetched)."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint_url.rstrip('/')}/{self.user_pool_id}/.well-known/jwks.json"


@dataclass(frozen=True)
class SignInClient:
    """The hosted UI's app client: its id and the one callback URL it registers."""

    client_id: str
    redirect_uri: str


def find_client(cognito: Any, settings: SignInSettings) -> SignInClient:
    """The pool's app client named ``settings.client_name`` and its callback URL."""
    try:
        pages = cognito.get_paginator("list_user_pool_clients").paginate(UserPoolId=settings.user_pool_id)
        found = [c for page in pages for c in page["UserPoolClients"] if c["ClientName"] == settings.client_name]
        if len(found) != 1:
            raise SignInServiceError(
                f"user pool {settings.user_pool_id} has {len(found)} app clients named {settings.client_name!r}, not 1"
            )
        client = cognito.describe_user_pool_client(UserPoolId=settings.user_pool_id, ClientId=found[0]["ClientId"])
    except (ClientError, BotoCoreError) as exc:
        raise SignInServiceError(f"looking up the sign-in app client failed: {exc}") from exc
    callbacks = [u for u in client["UserPoolClient"].get("CallbackURLs", []) if u.endswith(CALLBACK_PATH)]
    if not callbacks:
        raise SignInServiceError(
            f"app client {settings.client_name!r} registers no callback URL ending {CALLBACK_PATH}"
        )
    return SignInClient(client_id=found[0]["ClientId"], redirect_uri=callbacks[0])


# --- PKCE and the authorize redirect ---------------------------------------------------


def new_code_verifier() -> str:
    """A PKCE code verifier: 43 characters of base64url (RFC 7636, 4.1)."""
    return secrets.token_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: base64url(SHA-256), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(settings: SignInSettings, client: SignInClient, *, state: str, verifier: str) -> str:
    """The hosted UI's ``/oauth2/authorize`` address that starts a sign-in."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "scope": "openid email",
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{settings.hosted_ui_url.rstrip('/')}/oauth2/authorize?{query}"


# --- MAC'd cookies ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(kms_client: Any, key_id: str, purpose: bytes, claims: dict[str, Any]) -> str:
    """``claims`` as a cookie value: base64url JSON, a dot, the KMS MAC of ``purpose`` + JSON."""
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{message_mac(kms_client, key_id, purpose + body.encode('ascii'))}"


def unseal(kms_client: Any, key_id: str, purpose: bytes, value: str | None, *, now: float | None = None) -> dict | None:
    """The claims of a cookie ``seal`` made with ``purpose``, or None when it is absent, altered
    or past its ``exp``."""
    body, _, mac = (value or "").partition(".")
    if not body or len(body) > 4096 or not message_mac_is_valid(kms_client, key_id, purpose + body.encode(), mac):
        return None
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        return None
    return claims if claims["exp"] > (time.time() if now is None else now) else None


def read_cookie(cookies: list[str], name: str) -> str | None:
    """The value of cookie ``name`` in an HTTP API event's ``cookies`` (the first one)."""
    for cookie in cookies:
        key, _, value = cookie.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


def new_pending(kms_client: Any, key_id: str, return_to: str) -> tuple[str, str, str]:
    """A new sign-in: its ``state``, its code verifier and the pending cookie's value."""
    state, verifier = secrets.token_urlsafe(24), new_code_verifier()
    claims = {"state": state, "verifier": verifier, "return_to": return_to, "exp": int(time.time()) + PENDING_SECONDS}
    return state, verifier, seal(kms_client, key_id, _PENDING_PURPOSE, claims)


def read_pending(kms_client: Any, key_id: str, value: str | None, state: str | None) -> dict[str, Any]:
    """The pending sign-in the callback belongs to; ``SignInError`` unless its ``state`` matches."""
    claims = unseal(kms_client, key_id, _PENDING_PURPOSE, value)
    if claims is None:
        raise SignInError("the sign-in has expired or was started in another browser; open the approval link again")
    # Bytes: compare_digest refuses str with non-ASCII characters (a crafted query).
    if not state or not hmac.compare_digest(str(claims.get("state")).encode(), state.encode("utf-8", "replace")):
        raise SignInError("the sign-in's state does not match (query 'state'); open the approval link again")
    return claims


def new_session(kms_client: Any, key_id: str, email: str) -> str:
    """The session cookie's value for ``email``."""
    claims = {"email": email.strip().lower(), "exp": int(time.time()) + SESSION_SECONDS}
    return seal(kms_client, key_id, _SESSION_PURPOSE, claims)


def session_email(kms_client: Any, key_id: str, value: str | None) -> str | None:
    """The signed-in address of a session cookie, or None without a valid, unexpired one."""
    claims = unseal(kms_client, key_id, _SESSION_PURPOSE, value)
    email = claims.get("email") if claims else None
    return email if isinstance(email, str) and email else None


# --- the token endpoint and the ID token -----------------------------------------------


def exchange_code(settings: SignInSettings, client: SignInClient, *, code: str, verifier: str) -> str:
    """The ID token the hosted UI's ``/oauth2/token`` gives for ``code`` (PKCE, no secret)."""
    form = urlencode(
        {
            "grant_type": "authorization_code",
            "client_id": client.client_id,
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the hosted UI's https URL from the template
        f"{settings.hosted_ui_url.rstrip('/')}/oauth2/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        # 400 with an OAuth error code: the code was used, expired, or the verifier is wrong.
        error = _oauth_error(exc)
        if 400 <= exc.code < 500:
            raise SignInError(
                f"the sign-in was refused by the user pool ({error}); open the approval link again"
            ) from exc
        raise SignInServiceError(f"the hosted UI's token endpoint answered {exc.code} ({error})") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SignInServiceError(f"the hosted UI's token endpoint could not be reached: {exc}") from exc
    token = answer.get("id_token") if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise SignInServiceError("the token endpoint's answer has no id_token")
    return token


def _oauth_error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", "unknown"))[:64]
    except (ValueError, AttributeError, OSError):
        return "unknown"


_JWKS_CACHE: dict[str, dict[str, Any]] = {}


def fetch_jwks(url: str) -> dict[str, Any]:
    """The JSON Web Key Set at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            document = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SignInServiceError(f"the user pool's keys could not be read from {url}: {exc}") from exc
    return document if isinstance(document, dict) else {}


def _signing_key(settings: SignInSettings, kid: str) -> dict[str, Any]:
    """The pool's public key ``kid`` (the JWKS is fetched once per container, again for an
    unknown ``kid``: Cognito may add keys)."""
    keys = _JWKS_CACHE.get(settings.jwks_url)
    if keys is None or kid not in keys:
        document = fetch_jwks(settings.jwks_url)
        keys = {k["kid"]: k for k in document.get("keys", []) if isinstance(k, dict) and "kid" in k}
        _JWKS_CACHE[settings.jwks_url] = keys
    if kid not in keys:
        raise SignInError(f"the ID token is signed with key {kid[:40]!r}, which the user pool does not publish")
    return keys[kid]


def rs256_signature_is_valid(key: dict[str, Any], signed: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2.2) under a JWK RSA public key."""
    if key.get("kty") != "RSA" or not isinstance(key.get("n"), str) or not isinstance(key.get("e"), str):
        return False
    n = int.from_bytes(_unb64(key["n"]), "big")
    e = int.from_bytes(_unb64(key["e"]), "big")
    size = (n.bit_length() + 7) // 8
    if len(signature) != size or int.from_bytes(signature, "big") >= n:
        return False
    encoded = pow(int.from_bytes(signature, "big"), e, n).to_bytes(size, "big")
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(signed).digest()
    expected = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


def verify_id_token(settings: SignInSettings, client: SignInClient, token: str, *, now: float | None = None) -> str:
    """The verified ID token's ``email``; ``SignInError`` naming the first check that fails."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(payload_b64))
        signature = _unb64(signature_b64)
    except ValueError as exc:
        raise SignInError("the ID token is not a JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise SignInError("the ID token is not signed with RS256")
    key = _signing_key(settings, str(header.get("kid", "")))
    if not rs256_signature_is_valid(key, f"{header_b64}.{payload_b64}".encode("ascii"), signature):
        raise SignInError("the ID token's signature does not verify")
    now = time.time() if now is None else now
    checks = (
        ("iss", claims.get("iss") == settings.issuer),
        ("aud", claims.get("aud") == client.client_id),
        ("token_use", claims.get("token_use") == "id"),
        ("exp", isinstance(claims.get("exp"), int) and claims["exp"] + _CLOCK_SKEW_SECONDS > now),
        ("email", isinstance(claims.get("email"), str) and bool(claims["email"])),
        # An address nobody proved to own names nobody (a pool that lets users sign up).
        ("email_verified", claims.get("email_verified") in (True, "true")),
    )
    for name, passed in checks:
        if not passed:
            raise SignInError(f"the ID token's claim {name!r} is not valid")
    return str(claims["email"]).strip().lower()
