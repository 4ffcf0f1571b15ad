"""TestState of an HTTP Task (``arn:aws:states:::http:invoke``): a real HTTPS call, and TRACE's request and response.

The local cloud's state machines do not model HTTP Tasks (``definitions`` refuses them), but Workflow
Studio's *Test state* is where such a Task is tried, so TestState runs one, as the developer guide's
"Using TestState" and "Call HTTPS APIs" pages describe:

- the request: ``Method`` to ``ApiEndpoint`` (HTTPS only, its certificate verified) with
  ``QueryParameters``, ``Headers`` and ``RequestBody`` (JSON), to which the EventBridge connection
  (``Authentication.ConnectionArn``, read from the local EventBridge) adds its authorization (API key
  or basic) and its invocation headers, query string and body parameters; Step Functions' own
  ``User-Agent`` and ``Range: bytes=0-262144`` headers;
- the result: ``Headers`` (each a list of values), ``ResponseBody`` (parsed when it is JSON),
  ``StatusCode`` and ``StatusText``; a status of 400 or more fails the Task with
  ``States.Http.StatusCode.<code>``, a connection that cannot be made with ``States.Http.Socket``;
- at TRACE, ``inspectionData.request`` (protocol, method, url, headers, body) and ``.response``
  (protocol, statusCode, statusMessage, headers, body), headers written ``[Name: value, ...]``;
  without ``revealSecrets`` what the connection adds is left out of them, as AWS leaves it out.

OAuth connections and a ``Transform`` other than none are not supported locally (the Task fails
saying so). The patch ``http-tasks-parse`` lets moto's parser read an HTTP Task (this module runs it).
moto is imported inside functions only.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

from stepml.local.patching import Patch, register

HTTP_INVOKE: Final[str] = "arn:aws:states:::http:invoke"
#: Step Functions reads at most this much of a response (its Range header asks for no more).
RESPONSE_LIMIT: Final[int] = 262_144
REQUEST_TIMEOUT_SECONDS: Final[float] = 60.0


def is_http_task(state: dict[str, Any]) -> bool:
    """Whether ``state`` is an HTTP Task."""
    resource = state.get("Resource")
    return state.get("Type") == "Task" and isinstance(resource, str) and resource.split(":", 5)[-1] == "http:invoke"


def without_http_task_refusals(problems: list[Any]) -> list[Any]:
    """``problems`` less the local cloud's refusal of HTTP Tasks (TestState runs them)."""
    return [
        problem for problem in problems if "http:invoke" not in str(problem) or "does not model" not in str(problem)
    ]


class HttpTaskError(Exception):
    """The HTTP Task fails with ``error`` and ``cause`` (raised into the interpreter as a task failure)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error, self.cause = error, cause


@dataclass
class HttpRequest:
    """The request an HTTP Task makes; ``secret_*`` are what its connection adds."""

    method: str
    endpoint: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: dict[str, Any] | None
    secret_query: list[tuple[str, str]] = field(default_factory=list)
    secret_headers: list[tuple[str, str]] = field(default_factory=list)
    secret_body: dict[str, Any] = field(default_factory=dict)

    def url(self, reveal: bool = True) -> str:
        query = self.query + (self.secret_query if reveal else [])
        return f"{self.endpoint}?{urllib.parse.urlencode(query)}" if query else self.endpoint

    def body_text(self, reveal: bool = True) -> str:
        if self.body is None and not (reveal and self.secret_body):
            return ""
        return json.dumps({**(self.body or {}), **(self.secret_body if reveal else {})}, separators=(",", ":"))

    def header_list(self, region: str, reveal: bool = True) -> list[tuple[str, str]]:
        own = [("User-Agent", f"Amazon|StepFunctions|HttpInvoke|{region}"), ("Range", f"bytes=0-{RESPONSE_LIMIT}")]
        return self.headers + (self.secret_headers if reveal else []) + own


@dataclass
class HttpResponse:
    """What the API answered."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: str

    def result(self) -> dict[str, Any]:
        """The HTTP Task's result."""
        grouped: dict[str, list[str]] = {}
        for name, value in self.headers:
            grouped.setdefault(name, []).append(value)
        try:
            body: Any = json.loads(self.body) if self.body else ""
        except ValueError:
            body = self.body
        return {"Headers": grouped, "ResponseBody": body, "StatusCode": self.status, "StatusText": self.reason}


def _header_text(headers: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{name}: {value}" for name, value in headers) + "]"


def trace(request: HttpRequest, response: HttpResponse | None, region: str, reveal: bool) -> dict[str, Any]:
    """TRACE's ``request`` and ``response`` inspection data."""
    data: dict[str, Any] = {
        "request": {
            "protocol": "https",
            "method": request.method,
            "url": request.url(reveal),
            "headers": _header_text(request.header_list(region, reveal)),
            "body": request.body_text(reveal),
        }
    }
    if response is not None:
        data["response"] = {
            "protocol": "https",
            "statusCode": str(response.status),
            "statusMessage": response.reason,
            "headers": _header_text(response.headers),
            "body": response.body,
        }
    return data


def build_request(parameters: dict[str, Any], connection: dict[str, Any]) -> HttpRequest:
    """The request of an HTTP Task's evaluated ``parameters`` through ``connection`` (its AuthParameters)."""
    endpoint = parameters.get("ApiEndpoint")
    method = parameters.get("Method")
    if not isinstance(endpoint, str) or not isinstance(method, str):
        raise HttpTaskError("States.Runtime", "An HTTP Task needs an ApiEndpoint and a Method")  # INFERRED wording
    if urllib.parse.urlsplit(endpoint).scheme != "https":
        raise HttpTaskError("States.Runtime", f"The ApiEndpoint {endpoint} is not an HTTPS URL")  # INFERRED wording
    transform = parameters.get("Transform") or {}
    if transform.get("RequestBodyEncoding", "NONE") != "NONE":
        raise HttpTaskError("States.Runtime", "The local cloud's HTTP Task sends JSON bodies only (Transform NONE)")
    body = parameters.get("RequestBody")
    request = HttpRequest(
        method=method.upper(),
        endpoint=endpoint,
        query=[(str(key), str(value)) for key, value in (parameters.get("QueryParameters") or {}).items()],
        headers=[(str(key), str(value)) for key, value in (parameters.get("Headers") or {}).items()],
        body=body if isinstance(body, dict) or body is None else {"body": body},
    )
    _add_connection(request, connection)
    return request


def _add_connection(request: HttpRequest, auth: dict[str, Any]) -> None:
    if "OAuthParameters" in auth:
        raise HttpTaskError("States.Runtime", "The local cloud's HTTP Task does not support OAuth connections")
    if "ApiKeyAuthParameters" in auth:
        key = auth["ApiKeyAuthParameters"]
        request.secret_headers.append((key.get("ApiKeyName", ""), key.get("ApiKeyValue", "")))
    if "BasicAuthParameters" in auth:
        basic = auth["BasicAuthParameters"]
        token = base64.b64encode(f"{basic.get('Username', '')}:{basic.get('Password', '')}".encode()).decode()
        request.secret_headers.append(("Authorization", f"Basic {token}"))
    invocation = auth.get("InvocationHttpParameters") or {}
    request.secret_headers.extend((item["Key"], item["Value"]) for item in invocation.get("HeaderParameters", []))
    request.secret_query.extend((item["Key"], item["Value"]) for item in invocation.get("QueryStringParameters", []))
    request.secret_body.update({item["Key"]: item["Value"] for item in invocation.get("BodyParameters", [])})


def send(request: HttpRequest, region: str) -> HttpResponse:
    """Make the request (TLS verified against the system's, or ``SSL_CERT_FILE``'s, authorities)."""
    body = request.body_text()
    prepared = urllib.request.Request(  # noqa: S310 - build_request admits https URLs only
        request.url(),
        data=body.encode() if body else None,
        method=request.method,
        headers=dict(request.header_list(region)),
    )
    if body:
        prepared.add_header("Content-Type", "application/json; charset=UTF-8")
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(prepared, timeout=REQUEST_TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310 - https only
            return HttpResponse(answer.status, answer.reason, list(answer.headers.items()), _read(answer))
    except urllib.error.HTTPError as answer:
        return HttpResponse(answer.code, answer.reason, list(answer.headers.items()), _read(answer))
    except (urllib.error.URLError, OSError) as exc:
        raise HttpTaskError("States.Http.Socket", f"The HTTP request to {request.endpoint} failed: {exc}") from exc


def _read(answer: Any) -> str:
    return answer.read(RESPONSE_LIMIT + 1)[: RESPONSE_LIMIT + 1].decode("utf-8", errors="replace")


def connection_parameters(connection_arn: Any, account: str, region: str) -> dict[str, Any]:
    """The AuthParameters of the local EventBridge connection ``connection_arn``."""
    from moto.events.models import events_backends

    if not isinstance(connection_arn, str) or ":connection/" not in connection_arn:
        raise HttpTaskError("States.Runtime", "An HTTP Task needs Authentication.ConnectionArn")  # INFERRED wording
    name = connection_arn.split(":connection/", 1)[1].split("/", 1)[0]
    connection = events_backends[account][region].connections.get(name)
    if connection is None or connection.arn != connection_arn:
        raise HttpTaskError("States.Runtime", f"The connection {connection_arn} does not exist")  # INFERRED wording
    return dict(connection.auth_parameters or {})


def http_execution(state_field: Any, inspection_level: str, reveal_secrets: bool) -> Any:
    """The HTTP Task's work for moto's interpreter: the call, its result, TRACE's request and response."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    from stepml.local.stepfunctions.test_state_mocks import error_name

    def _eval_execution(env: Any) -> None:
        parameters = state_field._eval_parameters(env=env)
        details = env.aws_execution_details
        request = response = None
        try:
            auth = connection_parameters(
                (parameters.get("Authentication") or {}).get("ConnectionArn"), details.account, details.region
            )
            request = build_request(parameters, auth)
            response = send(request, details.region)
            result = response.result()
            if response.status >= 400:
                raise HttpTaskError(
                    f"States.Http.StatusCode.{response.status}", json.dumps(result, separators=(",", ":"))
                )
        except HttpTaskError as failure:
            failed = FailureEvent(
                env=env,
                error_name=error_name(failure.error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(error=failure.error, cause=failure.cause)
                ),
            )
            raise FailureEventException(failure_event=failed) from failure
        finally:
            if inspection_level == "TRACE" and request is not None:
                env.inspection_data.update(trace(request, response, details.region, reveal_secrets))
        env.stack.append(result)
        env.inspection_data["result"] = to_json_str(result)

    return _eval_execution


def _install_http_tasks_parse(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
        StateTaskServiceUnsupported,
    )

    original = state_task_factory.state_task_service_for

    def state_task_service_for(service_name: str) -> Any:
        # A stand-in whose work TestState replaces (http_execution); CreateStateMachine still refuses
        # an HTTP Task before moto parses it (definitions.NOT_MODELLED).
        if service_name == "http":
            return StateTaskServiceUnsupported()
        return original(service_name=service_name)

    patch.replace(state_task_factory, "state_task_service_for", state_task_service_for)


register(
    Patch(
        name="http-tasks-parse",
        why=(
            "moto's parser knows no http:invoke (RecognitionException 'Unknown service', HTTP 500), so TestState "
            "could not run an HTTP Task, the Task type TestState's TRACE level is for. The patch parses it as a "
            "Task whose work TestState supplies: the HTTPS call with the EventBridge connection, its result, and "
            "TRACE's request and response."
        ),
        test="tests/unit/stepfunctions/test_test_state_http.py::"
        "test_trace_shows_the_http_request_and_response_with_the_connections_secrets_revealed",
        install=_install_http_tasks_parse,
    )
)
