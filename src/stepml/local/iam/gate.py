"""Credentials per principal, the IAM gate in front of moto, and the record of every check.

In AWS a Lambda signs its calls with its function role's temporary credentials, Step Functions
with the state machine role's, Glue with the job role's and SageMaker with the execution
role's. The local cloud does the same: ``Principals`` hands each role deterministic access
keys, and the gate (a WSGI middleware in front of moto's server) maps the key of every request
back to the role, asks ``requests`` which actions and resources the call needs and ``policy``
whether the role's policies (read from moto's IAM, where provisioning put ``template.yaml``'s
policies) and the resource's policy allow them. A denied call is answered as the service
answers it in AWS (``AccessDeniedException``, S3's ``AccessDenied``, SNS's
``AuthorizationError``), naming the principal, action and resource.

Calls signed with any other key are the local user's (the person at the terminal, the tests,
the CLI): like an account administrator they are not checked. Engines that act for AWS
without an HTTP call (ECR pulls, the ``.sync`` patterns' managed rules) ask ``Authorizer``
directly.

Every check is recorded (``Recorder``) with the test that was running, so that
``tests/e2e/test_iam_mutation.py`` can replay the session's calls against the template's
policies with one statement or action removed.

This module holds the denial (``AccessDeniedError``), ``Authorizer`` and the WSGI gate; the
credentials are ``principals``, the policies as moto holds them ``moto_policies`` and the
record ``record``, whose names it re-exports for the modules that import them from here.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

from stepml.local.iam import policy
from stepml.local.iam import requests as iam_requests
from stepml.local.iam.model import (
    AuthorizationRequest,
    Decision,
    PolicyDocument,
    Principal,
)
from stepml.local.iam.moto_policies import MotoPolicies, resource_policy_source
from stepml.local.iam.principals import ADMINISTRATOR_POLICY, Credentials, Principals, role_name
from stepml.local.iam.record import RECORDER, CallRecord, Recorder

__all__ = [
    "ADMINISTRATOR_POLICY",
    "RECORDER",
    "AccessDeniedError",
    "Authorizer",
    "CallRecord",
    "Credentials",
    "GatedMotoServer",
    "IamGate",
    "MotoPolicies",
    "Principals",
    "Recorder",
    "resource_policy_source",
    "role_name",
]


#: S3 reads of one key whose "does not exist" answer depends on s3:ListBucket (S3 API Reference,
#: GetObject and HeadObject, Permissions).
_S3_READS_OF_ONE_KEY = frozenset({"GetObject", "HeadObject"})


class AccessDeniedError(Exception):
    """A call was denied; ``message`` is AWS's wording, ``request`` what was asked."""

    def __init__(self, message: str, principal: Principal, request: AuthorizationRequest, decision: Decision):
        super().__init__(message)
        self.message = message
        self.principal = principal
        self.request = request
        self.decision = decision


def _over_tls(request: AuthorizationRequest) -> AuthorizationRequest:
    """The request with ``aws:SecureTransport`` true unless it says otherwise: the loopback
    endpoint stands for AWS's TLS endpoint."""
    return AuthorizationRequest(request.action, request.resource, {"aws:SecureTransport": "true", **request.context})


class Authorizer:
    """Checks (and records) requests of a principal against moto's policies."""

    def __init__(self, principals: Principals, policies: MotoPolicies, recorder: Recorder = RECORDER):
        self.principals = principals
        self.policies = policies
        self.recorder = recorder

    def check(
        self,
        principal: Principal,
        request: AuthorizationRequest,
        service: str | None = None,
        identity: list[PolicyDocument] | None = None,
    ) -> Decision:
        """Decide (and record) ``request``; ``identity`` stands for the principal's own policies when
        it has no role (the local user, an administrator, for the checks AWS makes of a caller)."""
        if identity is None:
            identity = self.policies.identity_policies(principal.role_arn) if principal.role_arn else []
        resource_policy, key_policy = self.policies.resource_policy(request.resource)
        checked = _over_tls(request)
        decision = policy.evaluate(
            principal, checked, identity, resource_policy, resource_account=self.policies.account, key_policy=key_policy
        )
        self.recorder.remember(principal.role_arn or (principal.arn if identity else None), identity, resource_policy)
        self.recorder.add(
            CallRecord(
                test=self.recorder.label,
                principal=principal.arn,
                role_arn=principal.role_arn,
                service=service,
                action=request.action,
                resource=request.resource,
                context=dict(checked.context),
                resource_policy=resource_policy.source if resource_policy else None,
                key_policy=key_policy,
                allowed=decision.allowed,
                decided_by=decision.statement.source if decision.statement else None,
            )
        )
        return decision

    def require(
        self, principal: Principal, requests: Iterable[AuthorizationRequest], service: str | None = None
    ) -> None:
        """Raise ``AccessDeniedError`` for the first request the principal may not make."""
        for request in requests:
            decision = self.check(principal, request, service)
            if not decision.allowed:
                checked = _over_tls(request)
                raise AccessDeniedError(
                    policy.denial_message(principal, checked, decision), principal, checked, decision
                )

    def require_role(
        self, role_arn: str, session_name: str, requests: Iterable[AuthorizationRequest], service: str | None = None
    ) -> None:
        """``require`` for a role's session (engines acting for AWS under a role)."""
        self.require(self.principals.session(role_arn, session_name), requests, service)


# -------------------------------------------------------------------------- the WSGI gate


def _denied_response(service: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """AWS's answer to a denied call, in the service's protocol."""
    request_id = str(uuid.uuid4())
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{request_id}</HostId></Error>"
        ).encode()
        return "403 Forbidden", [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body
    protocol = _protocol(service)
    if protocol == "query":
        code = "AuthorizationError" if service == "sns" else "AccessDenied"
        body = (
            '<ErrorResponse xmlns="http://webservices.amazon.com/AWSFault/2005-15-09"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return "403 Forbidden", [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
    if service == "dynamodb":
        error_type = "com.amazonaws.dynamodb.v20120810#AccessDeniedException"
    else:
        error_type = "AccessDeniedException"
    body = json.dumps({"__type": error_type, "message": message, "Message": message}).encode()
    status = "400 Bad Request" if protocol == "json" else "403 Forbidden"
    headers = [
        ("Content-Type", "application/x-amz-json-1.1" if protocol == "json" else "application/json"),
        ("x-amzn-RequestId", request_id),
        ("x-amzn-ErrorType", "AccessDeniedException"),
    ]
    return status, headers, body


@lru_cache(maxsize=64)
def _protocol(service: str) -> str:
    from stepml.local.botocore_models import service_model

    model = service_model(service)
    if model is None:
        return "json"
    protocol = model.metadata.get("protocol", "json")
    return "query" if protocol in ("query", "ec2") else protocol


class IamGate:
    """WSGI middleware: a request signed with a role's key passes only if the role may make it."""

    def __init__(self, app: Callable[..., Any], authorizer: Authorizer, region: str):
        self.app = app
        self.authorizer = authorizer
        self.region = region

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes] | list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = environ["CONTENT_TYPE"]
        access_key = _access_key(headers.get("authorization", ""), environ.get("QUERY_STRING", ""))
        principal = self.authorizer.principals.principal_of(access_key)
        if principal is None:
            return self.app(environ, start_response)
        body = _read_body(environ)
        try:
            call = iam_requests.parse_environ(environ, body)
            needed = iam_requests.authorization_requests(
                call,
                account=self.authorizer.policies.account,
                region=call.region or self.region,
                resolver=self.authorizer.policies,
            )
        except iam_requests.UnknownCallError as exc:
            # A role's call the gate cannot name is refused, never waved through.
            status, response_headers, payload = _denied_response(
                "json", f"User: {principal.arn} is not authorized to perform this call: {exc}"
            )
            start_response(status, [*response_headers, ("Content-Length", str(len(payload)))])
            return [payload]
        try:
            self.authorizer.require(principal, needed, call.service)
        except AccessDeniedError as denied:
            status, response_headers, payload = _denied_response(call.service, denied.message)
            start_response(status, [*response_headers, ("Content-Length", str(len(payload)))])
            return [payload]
        if call.service == "s3" and call.operation in _S3_READS_OF_ONE_KEY:
            return self._missing_key_needs_list_bucket(environ, start_response, principal, call, needed)
        return self.app(environ, start_response)

    def _missing_key_needs_list_bucket(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        principal: Principal,
        call: Any,
        needed: list[AuthorizationRequest],
    ) -> Iterator[bytes] | list[bytes]:
        """S3 answers a read of a key that does not exist with 404 only when the caller may list the
        bucket (s3:ListBucket, the key as s3:prefix); otherwise with 403 AccessDenied, as it answers a
        key the caller may not read, so that nobody learns which keys exist without list permission."""
        captured: dict[str, Any] = {}
        written: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return written.append

        answer = self.app(environ, capture)
        status, headers = captured["status"], captured["headers"]
        if not status.startswith("404") and not written:
            start_response(status, headers)
            return answer  # found (or another error): streamed as moto answers it
        body = b"".join([*written, *answer])
        if hasattr(answer, "close"):
            answer.close()
        missing = status.startswith("404") and (call.operation == "HeadObject" or b"<Code>NoSuchKey</Code>" in body)
        if missing:
            bucket, key = call.params.get("Bucket"), call.params.get("Key")
            context = {**(needed[0].context if needed else {}), "s3:prefix": key}
            listing = AuthorizationRequest("s3:ListBucket", f"arn:aws:s3:::{bucket}", context)
            try:
                self.authorizer.require(principal, [listing], call.service)
            except AccessDeniedError as denied:
                status, headers, body = _denied_response(call.service, denied.message)
                if call.operation == "HeadObject":
                    body = b""  # a HEAD answer has no body: the SDK sees only the 403
                headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]


def _access_key(authorization: str, query_string: str) -> str | None:
    marker = "Credential="
    if marker in authorization:
        return authorization.split(marker, 1)[1].split("/", 1)[0].strip()
    from urllib.parse import parse_qs

    credential = parse_qs(query_string).get("X-Amz-Credential")
    if credential:
        return credential[0].split("/", 1)[0]
    return None


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


class GatedMotoServer:
    """moto's threaded server with the IAM gate in front of its WSGI application."""

    def __init__(self, authorizer: Authorizer, region: str, ip_address: str, port: int):
        self._authorizer = authorizer
        self._region = region
        self._ip_address = ip_address
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _serve(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = IamGate(DomainDispatcherApplication(create_backend_app), self._authorizer, self._region)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._ready.set()
        self._server.serve_forever()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="moto-server", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
