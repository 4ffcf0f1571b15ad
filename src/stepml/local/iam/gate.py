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
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from stepml.local.iam import policy
from stepml.local.iam import requests as iam_requests
from stepml.local.iam.model import (
    LOCAL_ACCOUNT,
    AuthorizationRequest,
    Decision,
    PolicyDocument,
    Principal,
)

#: S3 reads of one key whose "does not exist" answer depends on s3:ListBucket (S3 API Reference,
#: GetObject and HeadObject, Permissions).
_S3_READS_OF_ONE_KEY = frozenset({"GetObject", "HeadObject"})

#: The prefix AWS gives temporary (STS) access key ids.
_TEMPORARY_KEY_PREFIX = "ASIA"


class AccessDeniedError(Exception):
    """A call was denied; ``message`` is AWS's wording, ``request`` what was asked."""

    def __init__(self, message: str, principal: Principal, request: AuthorizationRequest, decision: Decision):
        super().__init__(message)
        self.message = message
        self.principal = principal
        self.request = request
        self.decision = decision


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str

    def environment(self) -> dict[str, str]:
        """The variables boto3 and the AWS CLI read, for a worker process."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    def client_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


def role_name(role_arn: str) -> str:
    """``arn:aws:iam::1:role/path/Name`` -> ``Name``."""
    return role_arn.rsplit("/", 1)[-1]


class Principals:
    """The access keys of every role the local cloud acts as, and back from a key to the role."""

    def __init__(self, account: str = LOCAL_ACCOUNT):
        self.account = account
        self._by_key: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def credentials(self, role_arn: str, session_name: str) -> Credentials:
        """Temporary credentials of ``role_arn`` for a session called ``session_name``.

        The key is derived from the role and session, so a worker process started later gets the
        same key for the same principal.
        """
        digest = hashlib.sha256(f"{role_arn}\0{session_name}".encode()).hexdigest().upper()
        key = _TEMPORARY_KEY_PREFIX + digest[:16]
        with self._lock:
            self._by_key[key] = self.session(role_arn, session_name)
        return Credentials(key, digest[16:56], "local-session-" + digest[:24].lower())

    def session(self, role_arn: str, session_name: str) -> Principal:
        """The principal of ``role_arn``'s session ``session_name`` (its assumed-role ARN)."""
        return Principal(
            arn=f"arn:aws:sts::{self.account}:assumed-role/{role_name(role_arn)}/{session_name}",
            account=self.account,
            role_arn=role_arn,
        )

    def administrator(self) -> Principal:
        """The local user: whoever signs with keys that belong to no role (you, the CLI, provisioning)."""
        return Principal(arn=f"arn:aws:iam::{self.account}:user/local", account=self.account)

    def principal_of(self, access_key_id: str | None) -> Principal | None:
        """The role session behind a key, or None for the local user's keys."""
        if access_key_id is None:
            return None
        with self._lock:
            return self._by_key.get(access_key_id)


@dataclass
class CallRecord:
    """One authorization check: who, what, on which resource, with which result, in which test."""

    test: str
    principal: str
    role_arn: str | None
    service: str | None
    action: str
    resource: str
    context: dict[str, Any]
    resource_policy: str | None
    key_policy: bool
    allowed: bool
    decided_by: str | None


class Recorder:
    """Every check the gate and the engines made, labelled with the running test."""

    def __init__(self) -> None:
        self.label = ""
        self.records: list[CallRecord] = []
        #: The policy documents the checks were made against, by source, for replay.
        self.documents: dict[str, PolicyDocument] = {}
        #: The identity policy sources of each role, in order.
        self.role_policies: dict[str, list[str]] = {}
        #: The template resource (logical id) whose resource-based policy each source is: the
        #: bucket, topic, queue and key policies a local cloud provisioned from its template.
        self.resource_policy_owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def own(self, sources: Mapping[str, str]) -> None:
        """Record which template resource (logical id) each resource-policy source belongs to."""
        with self._lock:
            self.resource_policy_owners.update(sources)

    def remember(self, role_arn: str | None, identity: list[PolicyDocument], resource: PolicyDocument | None) -> None:
        with self._lock:
            for document in [*identity, *([resource] if resource else [])]:
                self.documents[document.source] = document
            if role_arn:
                self.role_policies[role_arn] = [document.source for document in identity]

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.records)

    def write_jsonl(self, path: Path) -> None:
        with path.open("a", encoding="utf-8") as out:
            for record in self.snapshot():
                out.write(json.dumps(asdict(record), sort_keys=True, default=str) + "\n")


#: The local user's identity policy: an administrator's (AdministratorAccess).
ADMINISTRATOR_POLICY = PolicyDocument(
    "local user (AdministratorAccess)",
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
)

#: One recorder per process: tests label it with the running test (tests/conftest.py).
RECORDER = Recorder()


@lru_cache(maxsize=4096)
def _parsed(document: str) -> Mapping[str, Any]:
    return json.loads(document)


def _as_document(value: Any) -> Mapping[str, Any]:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return _parsed(value)
    return value


def resource_policy_source(resource_arn: str) -> str | None:
    """The name the gate gives the resource-based policy that governs ``resource_arn`` (a bucket's,
    topic's, key's or queue's), or None for a resource with no such policy."""
    if resource_arn.startswith("arn:aws:s3:::"):
        return f"bucket policy of {resource_arn[len('arn:aws:s3:::') :].split('/', 1)[0]}"
    parts = resource_arn.split(":", 5)
    if len(parts) < 6:
        return None
    service, name = parts[2], parts[5]
    if service == "sns":
        return f"topic policy of {name}"
    if service == "kms" and name.startswith("key/"):
        return f"key policy of {name}"
    if service == "sqs":
        return f"queue policy of {name}"
    return None


class MotoPolicies:
    """The policies as moto holds them: a role's inline and attached policies, and the resource
    policies of buckets, topics, keys and queues."""

    def __init__(self, account: str = LOCAL_ACCOUNT, region: str = "us-east-1"):
        self.account = account
        self.region = region

    def identity_policies(self, role_arn: str) -> list[PolicyDocument]:
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account]["global"]
        try:
            role = backend.get_role_by_arn(role_arn)
        except Exception:
            return []
        documents = [
            PolicyDocument(f"{role.name}/{name}", _as_document(text)) for name, text in sorted(role.policies.items())
        ]
        for arn, managed in sorted(role.managed_policies.items()):
            version = next((v for v in managed.versions if v.is_default), None)
            if version is not None:
                documents.append(PolicyDocument(f"{role.name}/{arn}", _as_document(version.document)))
        return documents

    def resource_policy(self, resource_arn: str) -> tuple[PolicyDocument | None, bool]:
        """The resource-based policy that governs ``resource_arn`` and whether it is a key policy."""
        source = resource_policy_source(resource_arn)
        if source is None:
            return None, False
        if resource_arn.startswith("arn:aws:s3:::"):
            from moto.s3.models import s3_backends

            bucket_name = resource_arn[len("arn:aws:s3:::") :].split("/", 1)[0]
            bucket = s3_backends[self.account]["aws"].buckets.get(bucket_name)
            if bucket is not None and bucket.policy:
                return PolicyDocument(source, _as_document(bucket.policy)), False
            return None, False
        parts = resource_arn.split(":", 5)
        service, region = parts[2], parts[3]
        if service == "sns":
            from moto.sns.models import sns_backends

            topic = sns_backends[self.account][region].topics.get(resource_arn)
            if topic is not None:
                return PolicyDocument(source, _as_document(topic.policy)), False
        elif service == "kms":
            from moto.kms.models import kms_backends

            key = kms_backends[self.account][region].keys.get(parts[5][len("key/") :])
            if key is not None:
                return PolicyDocument(source, _as_document(key.policy)), True
        elif service == "sqs":
            from moto.sqs.models import sqs_backends

            queue = sqs_backends[self.account][region].queues.get(parts[5])
            if queue is not None and queue.policy:
                return PolicyDocument(source, _as_document(queue.policy)), False
        return None, False

    def ses_sending_identity(self, address: str) -> str | None:
        """The verified SES identity a From address sends as: the address, else its domain."""
        from moto.sesv2.models import sesv2_backends

        backend = sesv2_backends[self.account][self.region]
        identities = backend.core_backend.email_identities
        if address in identities:
            return address
        domain = address.rsplit("@", 1)[-1]
        return domain if domain in identities else None

    def iam_role_arn(self, name: str) -> str | None:
        from moto.iam.models import iam_backends

        try:
            return iam_backends[self.account]["global"].get_role(name).arn
        except Exception:
            return None

    def sns_topic_kms_key(self, topic_arn: str) -> str | None:
        """requests.ResourceResolver: the KMS key a topic encrypts with (SNS then needs the
        publisher's kms rights)."""
        from moto.sns.models import sns_backends

        region = topic_arn.split(":")[3]
        topic = sns_backends[self.account][region].topics.get(topic_arn)
        if topic is None or not topic.kms_master_key_id:
            return None
        return self.kms_key_arn(topic.kms_master_key_id, region)

    # -- requests.ResourceResolver --------------------------------------------------------

    def kms_key_arn(self, key_id: str, region: str | None = None) -> str | None:
        from moto.kms.models import kms_backends

        if key_id.startswith("arn:aws:kms:"):
            region = key_id.split(":")[3]
        region = region or self.region
        backend = kms_backends[self.account][region]
        try:
            resolved = backend.any_id_to_key_id(key_id)
        except Exception:
            return None
        if resolved not in backend.keys:
            return None
        return f"arn:aws:kms:{region}:{self.account}:key/{resolved}"

    def state_machine_of_task_token(self, token: str) -> str | None:
        """The state machine whose running execution waits for ``token`` (SendTask* authorize
        on it), or None for a token no execution holds."""
        from moto.stepfunctions.responses import get_backend

        # The backend that runs executions (moto's interpreter when execution is on).
        backend = get_backend(self.account, self.region)
        for machine in list(backend.state_machines):
            for execution in list(getattr(machine, "executions", [])):
                worker = getattr(execution, "exec_worker", None)
                environment = getattr(worker, "env", None)
                manager = getattr(environment, "callback_pool_manager", None)
                if manager is not None and manager.get(token) is not None:
                    return machine.arn
        return None

    def lambda_function_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name_or_arn}"


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
