"""The console's HTTP server: its own port, GET (and HEAD) only, one thread per request.

The console is read-only: it changes nothing in the cloud it shows, so any other method is
refused with 405 and an ``Allow`` header. Pages are built per request from ``ConsoleData``;
AWS's refusal of a read is a page with the status and the reason, never a dropped connection.
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError

from stepml.local.apigateway import BackgroundServer
from stepml.local.console import pages
from stepml.local.console.data import ConsoleData, ConsoleDataError, run_id_of
from stepml.local.console.execution import execution_page

_LOG = logging.getLogger(__name__)


class ConsoleError(RuntimeError):
    """A page cannot be answered; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a port in use must fail here, as the free-port check said


class ConsoleServer(BackgroundServer):
    """Serves the console for ``data`` on ``host:port``; ``url`` is where it listens."""

    def __init__(self, data: ConsoleData, *, host: str = "127.0.0.1", port: int = 0):
        self.data = data
        console = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "stepml-console"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per page would drown `stepml local up`'s output

            def do_GET(self) -> None:
                console.answer(self, body=True)

            def do_HEAD(self) -> None:
                console.answer(self, body=False)

            def _refuse(self) -> None:
                console.send(
                    self,
                    405,
                    pages.error_page(405, f"{self.command} is not allowed: the console is read-only"),
                    extra=[("Allow", "GET, HEAD")],
                )

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        self._listen(_Server((host, port), Handler), "stepml-console")

    @property
    def url(self) -> str:
        return self.address + "/"

    def page(self, path: str, query: dict[str, list[str]]) -> str:
        """The HTML of one console path (``ConsoleError`` for a wrong path or a missing execution)."""
        if path == "/":
            return pages.executions_page(self.data.executions())
        if path == "/outbox":
            return pages.outbox_page(self.data.outbox())
        if path == "/endpoints":
            return pages.endpoints_page(self.data.endpoints(), self._run_href())
        if path == "/execution":
            arn = (query.get("arn") or [""])[0]
            if not arn:
                raise ConsoleError(400, "which execution? /execution?arn=EXECUTION_ARN")
            view = self.data.execution(arn)
            run_id = run_id_of(view.describe.get("input"))
            selected = (query.get("state") or [None])[0]
            return execution_page(view, selected, self.data.lineage(run_id), self.data.outbox(run_id) if run_id else [])
        raise ConsoleError(404, f"no console page at {path}")

    def _run_href(self) -> Any:
        """Links from a run id to the newest execution that ran it."""
        by_run: dict[str, str] = {}
        for execution in reversed(self.data.executions()):
            try:
                described = self.data.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
            except ClientError:
                _LOG.debug("execution %s vanished; its run gets no link", execution["executionArn"])
                continue
            run_id = run_id_of(described.get("input"))
            if run_id:
                by_run[run_id] = pages.execution_href(execution["executionArn"])
        return by_run.get

    def answer(self, request: BaseHTTPRequestHandler, *, body: bool) -> None:
        """Answer one GET or HEAD; whatever happens, the client gets an HTTP answer."""
        parts = urlsplit(request.path)
        try:
            html = self.page(parts.path, parse_qs(parts.query))
            status = 200
        except ConsoleError as exc:
            status, html = exc.status, pages.error_page(exc.status, str(exc))
        except ConsoleDataError as exc:
            status = 404 if exc.not_found else 502
            html = pages.error_page(status, str(exc))
        except Exception as exc:  # the page says what broke; the server keeps serving
            _LOG.exception("console page %s failed", parts.path)
            status, html = 500, pages.error_page(500, f"{type(exc).__name__}: {exc}")
        self.send(request, status, html, include_body=body)

    @staticmethod
    def send(
        request: BaseHTTPRequestHandler,
        status: int,
        html: str,
        *,
        include_body: bool = True,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        payload = html.encode("utf-8")
        request.send_response(status)
        for name, value in [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
            ("X-Content-Type-Options", "nosniff"),
            *(extra or []),
        ]:
            request.send_header(name, value)
        request.end_headers()
        if include_body:
            request.wfile.write(payload)
