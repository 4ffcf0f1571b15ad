"""The hosted UI of one user pool domain, over real HTTP: the authorization code grant with PKCE.

``GET /oauth2/authorize`` checks the request as Cognito does and sends the browser to ``/login``
with the same parameters; ``POST /login`` checks the password (through ``UserPools``) and
redirects to the callback URL with a one-time ``code`` and the ``state``; ``POST /oauth2/token``
exchanges the code for the tokens. What Cognito refuses is refused the same way:

* a ``redirect_uri`` that is not one of the client's callback URLs: no redirect to it, the browser
  goes to ``/error?error=redirect_mismatch``;
* after that check, errors go back to the ``redirect_uri`` (``unsupported_response_type``,
  ``unauthorized_client`` for a client without the code grant, ``invalid_scope``, and
  ``invalid_request`` for a missing or non-``S256`` code challenge: Cognito supports S256 only);
* the token endpoint answers 400 JSON ``{"error": ...}``: ``unsupported_grant_type``,
  ``invalid_request`` (a missing parameter), ``invalid_client`` (unknown client, or a client with
  a secret and no ``Authorization``), and ``invalid_grant`` for a code that is unknown, used,
  older than 5 minutes, issued to another client or redirect URI, or whose code verifier does not
  match its challenge. A code is spent by its first exchange, successful or not.

Not emulated: the hosted UI's sign-up, forgotten password, MFA and federated sign-in pages,
its own session cookie (each authorize shows the login form), the implicit grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from stepml.local.apigateway import BackgroundServer
from stepml.local.cognito.errors import HostedUiError, SignInFailedError

_LOG = logging.getLogger(__name__)
#: How long an authorization code can be exchanged (Cognito: 5 minutes).
CODE_SECONDS = 300
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class AppClient:
    """What the OAuth endpoints check of an app client."""

    client_id: str
    has_secret: bool
    oauth_enabled: bool
    oauth_flows: tuple[str, ...]
    scopes: tuple[str, ...]
    callback_urls: tuple[str, ...]
    identity_providers: tuple[str, ...]


class UserPools(Protocol):
    """The user pools behind the hosted UI (``adapter.MotoUserPools``)."""

    def app_client(self, user_pool_id: str, client_id: str) -> AppClient: ...

    def sign_in(self, user_pool_id: str, client_id: str, username: str, password: str) -> str: ...


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    id_token: str
    issued: float


@dataclass(frozen=True)
class _Redirect(Exception):
    """Answer with a 302 to ``location``."""

    location: str


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


class HostedUi(BackgroundServer):
    """The hosted UI of ``user_pool_id``'s domain; ``address`` is its base URL."""

    def __init__(self, pools: UserPools, user_pool_id: str, *, host: str = "127.0.0.1", port: int = 0):
        self.pools = pools
        self.user_pool_id = user_pool_id
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # query strings carry codes and states

            def do_GET(self) -> None:
                server.handle(self)

            do_POST = do_GET

        httpd = ThreadingHTTPServer((host, port), Handler)
        httpd.daemon_threads = True
        self._listen(httpd, f"hosted-ui-{user_pool_id}")

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Answer one request: a page, a redirect, or the token endpoint's JSON."""
        split = urlsplit(request.path)
        raw_length = request.headers.get("Content-Length") or "0"
        if not raw_length.isdigit() or int(raw_length) > _MAX_BODY:
            request.close_connection = True  # the body is not read: the next bytes are no request
            self._send(request, 400, "application/json", json.dumps({"error": "invalid_request"}))
            return
        length = int(raw_length)
        body = request.rfile.read(length).decode("utf-8", "replace") if length else ""
        params = dict(parse_qsl(split.query if request.command == "GET" else body, keep_blank_values=True))
        route = (request.command, split.path)
        try:
            if route == ("POST", "/oauth2/token"):
                tokens = self.token(params, request.headers.get("Authorization"))
                self._send(request, 200, "application/json", json.dumps(tokens))
            elif route == ("GET", "/oauth2/authorize"):
                self.check_authorize(params)
                raise _Redirect(f"/login?{urlencode(params)}")
            elif route == ("GET", "/login"):
                self.check_authorize(params)
                self._send(request, 200, "text/html; charset=utf-8", _login_page(params, None))
            elif route == ("POST", "/login"):
                self._login(request, params)
            elif route == ("GET", "/error"):
                self._send(request, 400, "text/html; charset=utf-8", _error_page(params.get("error", "")))
            else:
                self._send(request, 404, "text/html; charset=utf-8", _error_page("not_found"))
        except _Redirect as redirect:
            request.send_response(302)
            request.send_header("Location", redirect.location)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except HostedUiError as exc:
            answer = {"error": exc.code, "error_description": exc.description}
            self._send(request, exc.status, "application/json", json.dumps(answer))
        except Exception:  # whatever breaks, the browser or the function gets an answer
            _LOG.exception("the local hosted UI failed to serve %s %s", request.command, split.path)
            self._send(request, 500, "application/json", json.dumps({"error": "server_error"}))

    def _login(self, request: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        client = self.check_authorize(params)
        try:
            id_token = self.pools.sign_in(
                self.user_pool_id, client.client_id, params.get("username", ""), params.get("password", "")
            )
        except SignInFailedError as exc:
            self._send(request, 200, "text/html; charset=utf-8", _login_page(params, str(exc)))
            return
        code = self.issue_code(client.client_id, params["redirect_uri"], params["code_challenge"], id_token)
        answer = {"code": code, **({"state": params["state"]} if "state" in params else {})}
        raise _Redirect(_with_query(params["redirect_uri"], answer))

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, content_type: str, text: str) -> None:
        data = text.encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Cache-Control", "no-store")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    # -- the authorization endpoint --------------------------------------------------------

    def check_authorize(self, params: dict[str, str]) -> AppClient:
        """The client of an authorize request that Cognito would accept, else a ``_Redirect`` to
        where Cognito sends the browser (its error page, or the callback URL with ``error``)."""
        try:
            client = self.pools.app_client(self.user_pool_id, params.get("client_id", ""))
        except HostedUiError:
            raise _Redirect(f"/error?{urlencode({'error': 'invalid_request', 'client_id': ''})}") from None
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.callback_urls:
            raise _Redirect(f"/error?{urlencode({'error': 'redirect_mismatch', 'client_id': client.client_id})}")
        state = {"state": params["state"]} if "state" in params else {}
        problem = None
        if params.get("response_type") not in ("code", "token"):
            problem = "unsupported_response_type"
        elif not client.oauth_enabled or params["response_type"] not in client.oauth_flows:
            problem = "unauthorized_client"
        elif not set(params.get("scope", "openid").split()) <= set(client.scopes):
            problem = "invalid_scope"
        elif params["response_type"] == "code" and (
            params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) != 43
        ):
            # This emulation serves PKCE clients (the approval page is one); Cognito also takes
            # a code request without a challenge, for clients with a secret.
            problem = "invalid_request"
        if problem:
            raise _Redirect(_with_query(redirect_uri, {"error": problem, **state}))
        return client

    def issue_code(self, client_id: str, redirect_uri: str, challenge: str, id_token: str) -> str:
        """A one-time authorization code for a completed sign-in."""
        code = secrets.token_urlsafe(27)
        with self._lock:
            self._grants[code] = _Grant(client_id, redirect_uri, challenge, id_token, time.monotonic())
        return code

    # -- the token endpoint ----------------------------------------------------------------

    def token(self, params: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """The tokens of an authorization code; ``HostedUiError`` with Cognito's error code."""
        if params.get("grant_type") != "authorization_code":
            raise HostedUiError("unsupported_grant_type", "grant_type must be authorization_code here")
        for name in ("client_id", "code", "redirect_uri"):
            if not params.get(name):
                raise HostedUiError("invalid_request", f"the request has no {name}")
        client = self.pools.app_client(self.user_pool_id, params["client_id"])
        if client.has_secret and not authorization:
            raise HostedUiError("invalid_client", "this client has a secret: send it in the Authorization header")
        with self._lock:
            grant = self._grants.pop(params["code"], None)  # spent by this attempt, whatever its outcome
        if grant is None or time.monotonic() - grant.issued > CODE_SECONDS:
            raise HostedUiError("invalid_grant", "the code is unknown, used or expired")
        if grant.client_id != client.client_id or grant.redirect_uri != params["redirect_uri"]:
            raise HostedUiError("invalid_grant", "the code was issued to another client or redirect_uri")
        verifier = params.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(digest.encode(), grant.challenge.encode("utf-8", "replace")):
            raise HostedUiError("invalid_grant", "the code_verifier does not match the code_challenge")
        return {"id_token": grant.id_token, "token_type": "Bearer", "expires_in": 3600}


def _login_page(params: dict[str, str], problem: str | None) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k not in ("username", "password")
    )
    shown = f'<p role="alert">{html.escape(problem)}</p>' if problem else ""
    return (
        "<!doctype html><html><head><title>Signin</title></head><body><h1>Sign in</h1>"
        f'{shown}<form method="post" action="/login">{hidden}'
        '<label>Username <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password" autocomplete="current-password"></label>'
        '<button type="submit">Sign in</button></form></body></html>'
    )


def _error_page(error: str) -> str:
    return (
        "<!doctype html><html><head><title>Error</title></head><body><h1>An error was encountered "
        f"with the requested page.</h1><p>{html.escape(error[:64])}</p></body></html>"
    )
