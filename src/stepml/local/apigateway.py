"""The template's HTTP API routes served over real HTTP, as API Gateway would.

Each ``HttpApi`` event of a function in the template becomes a route (method and path with
``{parameters}``). A request is turned into the API Gateway HTTP API payload format 2.0 event,
the function runs in the local Lambda engine, and its response (``statusCode``, ``headers``,
``cookies``, ``body``, ``isBase64Encoded``) is written back. A request no route matches gets
API Gateway's ``{"message":"Not Found"}``; a function error gets its ``Internal Server Error``,
and so does a throttled invocation (API Gateway answers 500 when Lambda answers 429).

Like API Gateway, the server answers every request, whatever its body: a body passes as text
only for the content types HTTP APIs pass as text (``text/*``, JSON, XML, JavaScript) and only
when it is UTF-8, otherwise base64-encoded with ``isBase64Encoded`` (HTTP APIs base64-encode
form posts too); a body over API Gateway's 10 MB payload limit is 413, an event over Lambda's
6 MB synchronous invoke limit is 413 ``Request Too Long``, a malformed ``Content-Length`` is
400, and anything that goes wrong inside is 500, never a closed connection.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, urlsplit

from stepml.local.lambdas import FunctionThrottledError


class InvokesFunctions(Protocol):
    def invoke(self, name: str, payload: bytes | str | None) -> Any: ...


@dataclass(frozen=True)
class Route:
    """One HTTP API route: ``GET /approvals/{approval_id}`` served by a function."""

    method: str
    path: str
    function_name: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method and self.method != "ANY":
            return None
        pattern = "^" + re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


_LOG = logging.getLogger(__name__)
#: Content types an HTTP API passes to Lambda as text; every other body arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
#: API Gateway's payload limit (10 MB) and Lambda's synchronous invoke payload limit (6 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024
_BODY_TOO_LARGE = f"HTTP content length exceeded {MAX_BODY_BYTES} bytes.".encode()


class BadRequestError(ValueError):
    """The request cannot be read (its framing: Content-Length or chunked encoding)."""


class RequestTooLargeError(ValueError):
    """The request body is over API Gateway's payload limit."""


def _as_text(body: bytes, content_type: str) -> str | None:
    """The body as the event's text, or None when an HTTP API would base64-encode it."""
    if not body or not content_type.strip().lower().startswith(_TEXT_TYPES):
        return "" if not body else None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # bytes a text type promised but did not hold travel intact, base64-encoded


def build_event(
    route: Route,
    path_parameters: dict[str, str],
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    api_id: str,
    source_ip: str,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends a Lambda integration."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    text = _as_text(body, lowered.get("content-type", ""))
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": lowered.get("host", "localhost").split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode()
    return event


def response_from_result(payload: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a function's return value to an HTTP response, as the 2.0 format does."""
    if not isinstance(payload, dict) or "statusCode" not in payload:
        body = payload if isinstance(payload, str) else json.dumps(payload)
        return 200, [("Content-Type", "application/json")], body.encode()
    headers = [(k, str(v)) for k, v in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers += [(name, str(v)) for v in values]
    headers += [("Set-Cookie", c) for c in payload.get("cookies") or []]
    body = payload.get("body") or ""
    raw = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
    return int(payload["statusCode"]), headers, raw


class _Server(ThreadingHTTPServer):
    # API Gateway takes bursts of connections; socketserver's default listen backlog of 5
    # reset the connections of a burst of 20 decisions on one approval link.
    request_queue_size = 128


class BackgroundServer:
    """A threaded HTTP server answering on a daemon thread: ``address``, ``start`` and ``stop``
    (the approval API's and the console's)."""

    _httpd: ThreadingHTTPServer
    _thread: threading.Thread

    def _listen(self, httpd: ThreadingHTTPServer, thread_name: str) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name=thread_name, daemon=True)

    @property
    def address(self) -> str:
        """``http://host:port`` of the listening socket."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the socket (also for a server never started: shutdown() would
        wait forever for a serve_forever that never ran)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


class HttpApiServer(BackgroundServer):
    """A threaded HTTP server for a set of routes; ``url`` is where it listens."""

    def __init__(
        self, routes: list[Route], engine: InvokesFunctions, *, api_id: str, host: str = "127.0.0.1", port: int = 0
    ):
        self.routes = routes
        self.engine = engine
        self.api_id = api_id
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # access logs would carry query strings (link signatures)

            def _handle(self) -> None:
                server.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        httpd = _Server((host, port), Handler)
        httpd.daemon_threads = True
        self._listen(httpd, f"http-api-{api_id}")

    @property
    def url(self) -> str:
        return self.address

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Answer one request; whatever happens, the client gets an HTTP answer."""
        json_type = [("Content-Type", "application/json")]
        try:
            self._handle(request)
        except BadRequestError:
            request.close_connection = True  # the framing is lost: the next bytes are no request
            self._send(request, 400, json_type, b'{"message":"Bad Request"}')
        except RequestTooLargeError:
            request.close_connection = True
            self._send(request, 413, [("Content-Type", "text/plain; charset=utf-8")], _BODY_TOO_LARGE)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True  # the client went away; nobody to answer
        except Exception:  # API Gateway answers 500 for any failure behind it
            _LOG.exception("the local HTTP API failed to serve %s %s", request.command, urlsplit(request.path).path)
            request.close_connection = True
            self._send(request, 500, json_type, b'{"message":"Internal Server Error"}')

    @staticmethod
    def _read_body(request: BaseHTTPRequestHandler) -> bytes:
        """The request body, by Content-Length or chunked; refused past API Gateway's limit."""
        if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
            body = bytearray()
            while True:
                size_line = request.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise BadRequestError("bad chunk size") from None
                if size == 0:
                    while request.rfile.readline(1024).strip():  # trailers
                        pass
                    return bytes(body)
                if len(body) + size > MAX_BODY_BYTES:
                    raise RequestTooLargeError
                body += request.rfile.read(size)
                request.rfile.readline(1024)  # the CRLF after the chunk
        raw = request.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise BadRequestError(f"bad Content-Length {raw!r}")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            remaining = length
            while remaining > 0 and remaining <= 2 * MAX_BODY_BYTES:  # drain, so the client reads the 413
                chunk = request.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise RequestTooLargeError
        return request.rfile.read(length) if length else b""

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        split = urlsplit(request.path)
        body = self._read_body(request)
        for route in self.routes:
            parameters = route.match(request.command, split.path)
            if parameters is not None:
                break
        else:
            self._send(request, 404, [("Content-Type", "application/json")], b'{"message":"Not Found"}')
            return
        event = build_event(
            route,
            parameters,
            method=request.command,
            raw_path=split.path,
            raw_query=split.query,
            headers=dict(request.headers.items()),
            body=body,
            api_id=self.api_id,
            source_ip=request.client_address[0],
        )
        payload = json.dumps(event)
        if len(payload.encode()) > MAX_INVOKE_PAYLOAD_BYTES:
            # Lambda refuses the invocation (RequestEntityTooLargeException); API Gateway answers so.
            self._send(request, 413, [("Content-Type", "application/json")], b'{"message":"Request Too Long"}')
            return
        try:
            result = self.engine.invoke(route.function_name, payload)
        except FunctionThrottledError:
            result = None
        if result is None or result.function_error:
            status, headers, raw = 500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}'
        else:
            status, headers, raw = response_from_result(json.loads(result.payload))
        headers.append(("Apigw-Requestid", event["requestContext"]["requestId"]))
        headers.append(("X-Local-Latency-Ms", f"{(time.monotonic() - started) * 1000:.0f}"))
        self._send(request, status, headers, raw)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        request.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length":
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)
