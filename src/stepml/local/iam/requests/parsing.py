"""One HTTP request to an AWS API read as a call: the SigV4 signature (access key, region,
signing service), the service (signature, else host), then the operation by protocol:
``X-Amz-Target`` (json), the CBOR path (smithy-rpc-v2-cbor), ``Action=`` (query) or the best
``requestUri`` template (rest-json, rest-xml)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from stepml.local.iam.requests.call import ParsedCall, UnknownCallError
from stepml.local.iam.requests.cbor import CborError, cbor_loads
from stepml.local.iam.requests.models import (
    UNSIGNED_QUERY_SERVICES,
    botocore_services,
    service_model,
    services_by_target_prefix,
    services_for_signing_name,
    wire_protocols,
)
from stepml.local.iam.requests.rest import RestOperation, match_rest, rest_operations, rest_params
from stepml.local.iam.requests.shapes import decode_json, decode_query, parse_json

# --- Signature: access key, region, signing service ---


@dataclass(frozen=True)
class _Signature:
    access_key_id: str | None = None
    region: str | None = None
    service: str | None = None
    auth_type: str | None = None
    version: str | None = None


_CREDENTIAL_RE = re.compile(r"Credential=([^,\s]+)")


def _scope(credential: str, headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(access key id, region, service) of ``AKID/date/region/service/aws4_request`` (SigV4) or
    ``AKID/date/service/aws4_request`` (SigV4a, whose regions are in ``X-Amz-Region-Set``)."""
    parts = credential.split("/")
    if len(parts) == 5:
        return parts[0], parts[2], parts[3]
    if len(parts) == 4:
        region_set = headers.get("x-amz-region-set")
        return parts[0], region_set, parts[2]
    return (parts[0] or None), None, None


def _signature(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> _Signature:
    authorization = headers.get("authorization", "").strip()
    if authorization.startswith("AWS4-"):
        algorithm = authorization.split(None, 1)[0]
        match = _CREDENTIAL_RE.search(authorization)
        if match:
            akid, region, service = _scope(match.group(1), headers)
            return _Signature(akid, region, service, "REST-HEADER", algorithm)
        return _Signature(auth_type="REST-HEADER", version=algorithm)
    if authorization.startswith("AWS "):
        # SigV2 header: only S3 still takes it.
        akid = authorization[4:].split(":", 1)[0]
        return _Signature(akid, None, "s3", "REST-HEADER", "AWS")
    if "X-Amz-Credential" in query:
        akid, region, service = _scope(query["X-Amz-Credential"][0], headers)
        algorithm = query.get("X-Amz-Algorithm", ["AWS4-HMAC-SHA256"])[0]
        return _Signature(akid, region, service, "REST-QUERY-STRING", algorithm)
    if "AWSAccessKeyId" in query:
        # SigV2 in the query: an S3 presigned URL, or an old query-protocol call (with Action=).
        service = None if "Action" in query else "s3"
        return _Signature(query["AWSAccessKeyId"][0], None, service, "REST-QUERY-STRING", "AWS")
    return _Signature()


# --- parse_call ---

_S3_VIRTUAL_HOST = (
    re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$"),
    re.compile(r"^(?P<bucket>.+?)\.(?:s3\.)?localhost(?:\.localstack\.cloud)?$"),
)
_IP_HOST = re.compile(r"^[\d.]+$|^\[[0-9a-fA-F:]+\]$")


def _virtual_host_bucket(host: str) -> str | None:
    """The bucket of a virtual-hosted S3 host (``bucket.s3.amazonaws.com``, ``bucket.localhost``)."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower()
    if not hostname or _IP_HOST.match(hostname) or "s3-control" in hostname or "s3-accesspoint" in hostname:
        return None
    for pattern in _S3_VIRTUAL_HOST:
        match = pattern.match(hostname)
        if match and match.group("bucket") not in ("s3", "www"):
            return match.group("bucket")
    return None


def _query_dict(query_string: str) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return query


def _services_from_host(host: str) -> tuple[str, ...]:
    hostname = host.rsplit(":", 1)[0].lower()
    if _virtual_host_bucket(host) or hostname.startswith("s3.") or hostname == "s3.amazonaws.com":
        return ("s3",)
    labels = hostname.split(".")
    if len(labels) >= 3 and labels[-2:] == ["amazonaws", "com"]:
        return services_for_signing_name(labels[0])
    return ()


#: (service, operation, params) of a call before the signature's details are added.
_Found = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class _Request:
    """One HTTP request, normalised: upper-case method, lower-case headers, the query string and
    (for a form POST) the form decoded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    host: str
    form: dict[str, str]

    @property
    def action(self) -> str | None:
        """The query protocol's ``Action=``, from the form or the query string."""
        return self.form.get("Action") or self.query.get("Action", [None])[0]


def _read_request(
    method: str, path: str, query_string: str, headers: Mapping[str, str], body: bytes, host: str
) -> _Request:
    method = method.upper()
    lowered = {key.lower(): str(value) for key, value in headers.items()}
    body = body or b""
    form: dict[str, str] = {}
    content_type = lowered.get("content-type", "")
    if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        form = {key: values[-1] for key, values in _query_dict(body.decode("utf-8", "replace")).items()}
    return _Request(
        method=method,
        path=path,
        query=_query_dict(query_string),
        headers=lowered,
        body=body,
        host=host or lowered.get("host", ""),
        form=form,
    )


def parse_call(
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    host: str,
) -> ParsedCall:
    """Identify the AWS API call one HTTP request makes.

    ``path`` is the request path as sent (percent-encoded, without the query string: in WSGI,
    ``RAW_URI``/``REQUEST_URI`` cut at ``?``, not the decoded ``PATH_INFO``, or a key such as
    ``a%2Fb`` would be read as ``a/b``); ``query_string`` is the raw query string; ``host`` is the
    ``Host`` the client addressed (for S3 virtual-hosted buckets). The service comes from the
    SigV4 credential scope (header or presigned query), else the host; the operation from
    ``X-Amz-Target``, ``Action=`` or the best-matching ``requestUri`` template.

    Raises :class:`UnknownCallError` when no service operation matches.
    """
    request = _read_request(method, path, query_string, headers, body, host)
    signature = _signature(request.headers, request.query)
    service, operation, params = _find_operation(request, signature)
    return ParsedCall(
        service=service,
        operation=operation,
        params=params,
        access_key_id=signature.access_key_id,
        region=signature.region,
        auth_type=signature.auth_type,
        signature_version=signature.version,
    )


def _find_operation(request: _Request, signature: _Signature) -> _Found:
    """The operation by protocol: the JSON target, the CBOR path, ``Action=``, else a REST template."""
    if signature.service:
        services = services_for_signing_name(signature.service)
        if not services:
            raise UnknownCallError(f"no botocore service signs as {signature.service!r}")
    else:
        services = _services_from_host(request.host)
    target = request.headers.get("x-amz-target")
    if target:
        return _json_operation(request, services, target)
    if not services and request.action:
        services = _unsigned_query_services(request)
    if not services:
        raise UnknownCallError(
            f"cannot tell the service of {request.method} {request.path}: no SigV4 credential scope and no AWS "
            f"host ({request.host!r})"
        )
    found = _cbor_operation(request, services)
    if found is not None:
        return found
    if request.action:
        return _query_operation(request, services, request.action)
    return _rest_operation(request, services, signature)


def _json_operation(request: _Request, services: tuple[str, ...], target: str) -> _Found:
    """``X-Amz-Target: Prefix.Operation`` (json protocols); unsigned, any service with the prefix."""
    prefix, _, operation_name = target.rpartition(".")
    pool = services or tuple(services_by_target_prefix().get(prefix, ()))
    for service in pool:
        model = service_model(service)
        if model.metadata.get("targetPrefix") == prefix and operation_name in model.operation_names:
            input_shape = model.operation_model(operation_name).input_shape
            return service, operation_name, decode_json(input_shape, parse_json(request.body))
    raise UnknownCallError(f"no operation {target!r} in {', '.join(pool) or 'any known service'}")


def _unsigned_query_services(request: _Request) -> tuple[str, ...]:
    """The query-protocol services whose API version the unsigned call names."""
    version = request.form.get("Version") or request.query.get("Version", [None])[0]
    return tuple(
        service
        for service in UNSIGNED_QUERY_SERVICES
        if service in botocore_services() and service_model(service).api_version == version
    )


_CBOR_PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")


def _cbor_operation(request: _Request, services: tuple[str, ...]) -> _Found | None:
    """``POST /service/S/operation/O`` with a CBOR body (smithy-rpc-v2-cbor); None for another protocol."""
    cbor_path = _CBOR_PATH.match(request.path)
    if not (cbor_path and "cbor" in request.headers.get("content-type", "")):
        return None
    operation_name = unquote(cbor_path.group(2))
    for service in services:
        if operation_name in service_model(service).operation_names:
            try:
                decoded = cbor_loads(request.body) if request.body else {}
            except (CborError, IndexError, UnicodeDecodeError):
                decoded = {}
            return service, operation_name, decoded if isinstance(decoded, dict) else {}
    return None


def _query_operation(request: _Request, services: tuple[str, ...], action: str) -> _Found:
    """``Action=`` in the query string or form (query and ec2 protocols)."""
    flat = {key: values[-1] for key, values in request.query.items()} | request.form
    # A service that speaks the query protocol first; then one that used to (SQS and
    # CloudWatch still take Action= forms from older SDKs), decoded by the same shapes.
    ranked = sorted(services, key=lambda service: not ({"query", "ec2"} & wire_protocols(service)))
    for service in ranked:
        model = service_model(service)
        if action in model.operation_names:
            input_shape = model.operation_model(action).input_shape
            params = decode_query(input_shape, flat, "") if input_shape is not None else None
            return service, action, params or {}
    raise UnknownCallError(f"no query-protocol operation {action!r} in {', '.join(services)}")


def _rest_operation(request: _Request, services: tuple[str, ...], signature: _Signature) -> _Found:
    """The best ``requestUri`` template of the rest-json and rest-xml services (an earlier service
    wins a tie), with its members from labels, query string, headers and body."""
    request_path = request.path or "/"
    best: tuple[tuple[Any, ...], str, RestOperation, dict[str, str]] | None = None
    for rank, service in enumerate(services):
        if not {"rest-json", "rest-xml"} & wire_protocols(service):
            continue
        service_path = request_path
        if service == "s3":
            bucket = _virtual_host_bucket(request.host)
            if bucket:
                service_path = "/" + bucket + (request_path if request_path != "/" else "")
        match = match_rest(service, request.method, service_path, request.query, request.headers)
        if match is None:
            continue
        score = (*match[0], -rank)
        if best is None or score > best[0]:
            best = (score, service, match[1], match[2])
    if best is None:
        raise UnknownCallError(f"no operation of {', '.join(services)} matches {request.method} {request.path}")
    _score, service, rest_operation, raw_labels = best
    if signature.service == "s3express" and rest_operation.name == "ListBuckets":
        # Same method and path; the directory-bucket signing name tells them apart.
        rest_operation = next(op for op in rest_operations("s3") if op.name == "ListDirectoryBuckets")
    operation_model = service_model(service).operation_model(rest_operation.name)
    params = rest_params(service, operation_model, raw_labels, request.query, request.headers, request.body)
    return service, rest_operation.name, params


def parse_environ(environ: Mapping[str, Any], body: bytes) -> ParsedCall:
    """:func:`parse_call` for a WSGI request (``body`` is the request body the gate has read).

    The path is the raw request target (``RAW_URI``/``REQUEST_URI``, as werkzeug's server sets
    them) so that an S3 key's ``%2F`` stays a character of the key; only without them is the
    decoded ``PATH_INFO`` quoted back (``/`` and ``%2F`` then read alike).
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = raw.encode("latin-1", "replace").decode("utf-8", "replace")  # PEP 3333 strings
        if "://" in raw.split("?", 1)[0]:
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]  # absolute-form target
        path = raw.partition("?")[0] or "/"
    else:
        path_info = str(environ.get("PATH_INFO", "/")).encode("latin-1", "replace").decode("utf-8", "replace")
        path = quote(path_info, safe="/~!$&'()*+,;=:@")
    headers = {key[5:].replace("_", "-"): str(value) for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-")] = str(environ[key])
    host = headers.get("HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return parse_call(
        str(environ.get("REQUEST_METHOD", "GET")),
        path,
        str(environ.get("QUERY_STRING", "")),
        headers,
        body,
        host,
    )
