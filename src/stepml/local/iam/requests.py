"""What one HTTP request to an AWS API asks IAM for.

Two pure steps, no moto:

- :func:`parse_call` reads a request as it arrives on the wire (method, path, query string,
  headers, body, host) and names the botocore service and operation, the operation's input
  members, and the caller's access key and region from the SigV4 signature. The operation is
  found with botocore's own service models: ``X-Amz-Target`` for the JSON protocols,
  ``Action=`` for the query protocol, the ``requestUri`` templates (path labels and
  query-string qualifiers such as ``/{Bucket}?versioning``) for rest-json and rest-xml.
- :func:`authorization_requests` turns a parsed call into the IAM actions, resources and
  condition keys AWS authorizes for it, following the Service Authorization Reference
  ("Actions, resources, and condition keys for ...") and each service's permission notes
  (sources are cited beside the rules that need them).

State that only the running cloud knows (the key an alias names, the state machine a task
token belongs to, a topic's KMS key ...) comes from a :class:`ResourceResolver` that the gate
implements against its backends.

What a call needs that is not modelled (documented where it matters): condition keys that need
stored state (``aws:ResourceTag/*``, ``s3:ExistingObjectTag/*``, ``dynamodb:LeadingKeys``, which
needs the table's key schema), and any operation outside the tables here, which is authorized as
``<prefix>:<Operation>`` on ``"*"`` because its resource is unknown.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
import functools
import gzip
import json
import os
import re
import struct
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import botocore.exceptions
import botocore.loaders
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from stepml.local import botocore_models
from stepml.local.iam.model import AuthorizationRequest

__all__ = [
    "ParsedCall",
    "ResourceResolver",
    "UnknownCallError",
    "authorization_requests",
    "iam_prefix",
    "parse_call",
    "parse_environ",
]

# ---------------------------------------------------------------------------------------------
# Public types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCall:
    """One AWS API call as the request carries it.

    ``service`` and ``operation`` are botocore's names (``"s3"``, ``"GetObject"``); ``params``
    holds the operation's top-level input members under botocore's member names, recovered from
    the body, the URI labels, the query string and the headers. ``auth_type`` is ``REST-HEADER``
    (an ``Authorization`` header), ``REST-QUERY-STRING`` (a presigned URL) or ``None`` (unsigned);
    ``signature_version`` is ``AWS4-HMAC-SHA256`` (SigV4), ``AWS4-ECDSA-P256-SHA256`` (SigV4a) or
    ``AWS`` (SigV2).
    """

    service: str
    operation: str
    params: dict[str, Any]
    access_key_id: str | None
    region: str | None
    auth_type: str | None = None
    signature_version: str | None = None


class UnknownCallError(ValueError):
    """The request is not a call of any botocore service operation this module can name."""


class ResourceResolver(Protocol):
    """The state of the running cloud that some authorizations depend on.

    Required methods are below. A resolver may also offer these optional ones (looked up with
    ``getattr``; without them the stricter-or-unknown fallback described at each use applies):

    - ``kms_key_of_ciphertext(blob: bytes) -> str | None``: the key ARN a KMS ciphertext blob
      was made with (``Decrypt``/``ReEncrypt`` without ``KeyId``);
    - ``sns_topic_kms_key(topic_arn: str) -> str | None``: the topic's ``KmsMasterKeyId``;
    - ``sqs_queue_kms_key(queue_arn: str) -> str | None``: the queue's ``KmsMasterKeyId``;
    - ``s3_bucket_kms_key(bucket: str) -> str | None``: the bucket's default SSE-KMS key;
    - ``s3_object_kms_key(bucket: str, key: str, version_id: str | None) -> str | None``:
      the SSE-KMS key of a stored object;
    - ``ses_sending_identity(address: str) -> str | None``: the verified identity (the address
      itself, else its domain) that SES sends an address as;
    - ``ses_in_sandbox() -> bool``: whether the account is in the SES sandbox;
    - ``iam_role_arn(name: str) -> str | None``: a role's ARN with its path;
    - ``cloudformation_stack_arn(name: str) -> str | None``: a stack's ARN with its id.
    """

    def kms_key_arn(self, key_id: str) -> str | None:
        """The key ARN for a key id, key ARN, alias name or alias ARN; None when unknown."""
        ...

    def state_machine_of_task_token(self, token: str) -> str | None:
        """The ARN of the state machine (or activity) whose task a token belongs to."""
        ...

    def lambda_function_arn(self, name_or_arn: str) -> str:
        """The unqualified function ARN for a function name, partial ARN or ARN."""
        ...


# ---------------------------------------------------------------------------------------------
# botocore service models
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def _service_model(name: str) -> ServiceModel:
    return botocore_models.require_service_model(name)


@functools.cache
def _protocols(service: str) -> frozenset[str]:
    """The wire protocols a service model declares (``protocols``, else ``protocol``)."""
    metadata = _service_model(service).metadata
    return frozenset(metadata.get("protocols") or [metadata.get("protocol", "")])


def _available_services() -> frozenset[str]:
    return botocore_models.available_services()


#: SigV4 signing names that several botocore services share, or that differ from the service
#: name; the first service wins a tie. Checked against botocore's metadata by the unit tests.
_SIGNING_NAME_SERVICES: dict[str, tuple[str, ...]] = {
    "s3": ("s3", "s3control"),
    "sagemaker": (
        "sagemaker",
        "sagemaker-runtime",
        "sagemaker-featurestore-runtime",
        "sagemaker-a2i-runtime",
        "sagemaker-edge",
        "sagemaker-metrics",
    ),
    "ses": ("sesv2", "ses"),
    "states": ("stepfunctions",),
    "monitoring": ("cloudwatch",),
    "servicequotas": ("service-quotas",),
    "dynamodb": ("dynamodb", "dynamodbstreams"),
    "events": ("events",),
    "lambda": ("lambda",),
    "iam": ("iam",),
    "apigateway": ("apigateway", "apigatewayv2"),
    "elasticmapreduce": ("emr",),
    "es": ("opensearch", "es"),
    "tagging": ("resourcegroupstaggingapi",),
    "elasticloadbalancing": ("elbv2", "elb"),
    "elasticfilesystem": ("efs",),
    "access-analyzer": ("accessanalyzer",),
    # S3 directory buckets and Object Lambda sign with their own names but are S3 operations.
    "s3express": ("s3", "s3control"),
    "s3-object-lambda": ("s3",),
}

#: Query-protocol services an unsigned ``Action=...&Version=...`` call may be for
#: (sts:AssumeRoleWithWebIdentity and AssumeRoleWithSAML are unsigned).
_UNSIGNED_QUERY_SERVICES = ("sts", "sns", "sqs", "iam", "cloudformation", "ses", "cloudwatch", "ec2", "autoscaling")


_METADATA_NAME = re.compile(r'"(signingName|endpointPrefix)"\s*:\s*"([^"]+)"')


def _metadata_head(service: str) -> str:
    """The start of a service model's file, which holds its metadata block."""
    loader = _loader()
    version = loader.list_api_versions(service, "service-2")[-1]
    for base in loader.search_paths:
        path = os.path.join(base, service, version, "service-2.json")
        for candidate in (path, path + ".gz"):
            if os.path.exists(candidate):
                opener = gzip.open if candidate.endswith(".gz") else open
                with opener(candidate, "rt", encoding="utf-8") as handle:
                    return handle.read(4000).split('"operations"', 1)[0]
    return ""


@functools.lru_cache(maxsize=1)
def _signing_name_index() -> dict[str, tuple[str, ...]]:
    """Every botocore service by signing name, read from the metadata at the head of each model
    file (loading every model would take seconds): the last resort, for signing names neither
    the table above nor a service name covers."""
    index: dict[str, list[str]] = {}
    for name in sorted(_available_services()):
        names = dict(_METADATA_NAME.findall(_metadata_head(name)))
        signing = names.get("signingName") or names.get("endpointPrefix")
        if signing:
            index.setdefault(signing, []).append(name)
    return {key: tuple(value) for key, value in index.items()}


def _services_for_signing_name(signing_name: str) -> tuple[str, ...]:
    if signing_name in _SIGNING_NAME_SERVICES:
        return _SIGNING_NAME_SERVICES[signing_name]
    if signing_name in _available_services():
        return (signing_name,)
    return _signing_name_index().get(signing_name, ())


#: The IAM service prefix where it is not the botocore service's signing name.
_IAM_PREFIX_OVERRIDES: dict[str, str] = {
    "cloudwatch": "cloudwatch",
    "stepfunctions": "states",
    "sesv2": "ses",
    "ses": "ses",
    "service-quotas": "servicequotas",
    "dynamodbstreams": "dynamodb",
    "s3control": "s3",
    "apigatewayv2": "apigateway",
    "emr": "elasticmapreduce",
    "elbv2": "elasticloadbalancing",
    "elb": "elasticloadbalancing",
    "opensearch": "es",
    "efs": "elasticfilesystem",
    "resourcegroupstaggingapi": "tag",
    "apigatewaymanagementapi": "execute-api",
    "accessanalyzer": "access-analyzer",
    "iot-data": "iot",
    "sso-admin": "sso",
}


def iam_prefix(service: str) -> str:
    """The IAM action prefix of a botocore service (``stepfunctions`` -> ``states``,
    ``sagemaker-runtime`` -> ``sagemaker``, ``cloudwatch`` -> ``cloudwatch``)."""
    if service in _IAM_PREFIX_OVERRIDES:
        return _IAM_PREFIX_OVERRIDES[service]
    if service.startswith("sagemaker"):
        return "sagemaker"
    try:
        return _service_model(service).signing_name
    except botocore.exceptions.DataNotFoundError:  # not a botocore service: its name is the best guess
        return service


# ---------------------------------------------------------------------------------------------
# Signature: access key, region, signing service
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Shapes: decoding members from JSON, XML, query form, CBOR, headers
# ---------------------------------------------------------------------------------------------


def _scalar(shape: Shape, value: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("float", "double"):
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        return value.strip().lower() == "true"
    return value


def _query_member_name(name: str, shape: Shape) -> str:
    return shape.serialization.get("name", name)


def _decode_query(shape: Shape, form: Mapping[str, str], prefix: str) -> Any:
    """A member of a query-protocol form (``Tags.member.1.Key``, ``Attributes.entry.1.key``),
    decoded by its shape; None when absent."""
    if prefix and not any(key == prefix or key.startswith(prefix + ".") for key in form):
        return None  # absent (and the end of recursive shapes)
    if isinstance(shape, StructureShape):
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = _query_member_name(name, member)
            value = _decode_query(member, form, f"{prefix}.{key}" if prefix else key)
            if value is not None:
                result[name] = value
        return result or None
    if isinstance(shape, ListShape):
        if shape.serialization.get("flattened"):
            item_prefix = prefix
        else:
            item_prefix = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        items = []
        index = 1
        while True:
            value = _decode_query(shape.member, form, f"{item_prefix}.{index}")
            if value is None:
                break
            items.append(value)
            index += 1
        if not items and form.get(prefix) == "":
            return []
        return items or None
    if isinstance(shape, MapShape):
        entry = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        mapping: dict[str, Any] = {}
        index = 1
        while f"{entry}.{index}.{key_name}" in form:
            value = _decode_query(shape.value, form, f"{entry}.{index}.{value_name}")
            mapping[form[f"{entry}.{index}.{key_name}"]] = value
            index += 1
        return mapping or None
    if prefix in form:
        return _scalar(shape, form[prefix])
    return None


def _local_tag(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _decode_xml(shape: Shape, element: ElementTree.Element) -> Any:
    """An XML element decoded by its shape (rest-xml payloads such as S3's ``Delete``)."""
    if isinstance(shape, StructureShape):
        children: dict[str, list[ElementTree.Element]] = {}
        for child in element:
            children.setdefault(_local_tag(child.tag), []).append(child)
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            tag = member.serialization.get("name", name)
            if isinstance(member, ListShape) and member.serialization.get("flattened"):
                tag = member.member.serialization.get("name", tag)
                if tag in children:
                    result[name] = [_decode_xml(member.member, item) for item in children[tag]]
                continue
            if tag in children:
                result[name] = _decode_xml(member, children[tag][0])
        return result
    if isinstance(shape, ListShape):
        item_tag = shape.member.serialization.get("name", "member")
        return [_decode_xml(shape.member, child) for child in element if _local_tag(child.tag) == item_tag]
    if isinstance(shape, MapShape):
        key_tag = shape.key.serialization.get("name", "key")
        value_tag = shape.value.serialization.get("name", "value")
        mapping: dict[str, Any] = {}
        for entry in element:
            key = value = None
            for part in entry:
                if _local_tag(part.tag) == key_tag:
                    key = part.text or ""
                elif _local_tag(part.tag) == value_tag:
                    value = _decode_xml(shape.value, part)
            if key is not None:
                mapping[key] = value
        return mapping
    return _scalar(shape, element.text or "")


def _parse_xml(body: bytes) -> ElementTree.Element | None:
    if not body.strip():
        return None
    try:
        # Python's expat refuses entity-expansion bombs and ElementTree never fetches external
        # entities; the bodies come from local SDK clients.
        return ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return None


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _decode_json(shape: Shape | None, value: Any) -> Any:
    """JSON members decoded by their shape: blobs arrive base64-encoded."""
    if shape is None:
        return value
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return {
            key: _decode_json(shape.members[key], item) if key in shape.members else item for key, item in value.items()
        }
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_decode_json(shape.member, item) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _decode_json(shape.value, item) for key, item in value.items()}
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value
    return value


class _CborError(ValueError):
    pass


def _cbor_loads(data: bytes) -> Any:
    """Decode one CBOR item (RFC 8949): what the smithy-rpc-v2-cbor protocol sends."""

    def read(pos: int) -> tuple[Any, int]:
        if pos >= len(data):
            raise _CborError("truncated CBOR")
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        pos += 1
        if major == 7:
            if info == 20:
                return False, pos
            if info == 21:
                return True, pos
            if info in (22, 23):
                return None, pos
            if info == 25:
                return _half(data[pos : pos + 2]), pos + 2
            if info == 26:
                return struct.unpack(">f", data[pos : pos + 4])[0], pos + 4
            if info == 27:
                return struct.unpack(">d", data[pos : pos + 8])[0], pos + 8
            raise _CborError(f"unsupported CBOR simple value {info}")
        if info < 24:
            argument = info
        elif info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            argument = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif info == 31 and major in (2, 3, 4, 5):
            return read_indefinite(major, pos)
        else:
            raise _CborError(f"unsupported CBOR length {info}")
        if major == 0:
            return argument, pos
        if major == 1:
            return -1 - argument, pos
        if major == 2:
            return data[pos : pos + argument], pos + argument
        if major == 3:
            return data[pos : pos + argument].decode("utf-8", "replace"), pos + argument
        if major == 4:
            items = []
            for _ in range(argument):
                item, pos = read(pos)
                items.append(item)
            return items, pos
        if major == 5:
            mapping = {}
            for _ in range(argument):
                key, pos = read(pos)
                mapping[key], pos = read(pos)
            return mapping, pos
        # major 6: a tag (1 = epoch timestamp); the tagged value stands for itself here.
        return read(pos)

    def read_indefinite(major: int, pos: int) -> tuple[Any, int]:
        items: list[Any] = []
        while data[pos] != 0xFF:
            item, pos = read(pos)
            items.append(item)
        pos += 1
        if major == 2:
            return b"".join(items), pos
        if major == 3:
            return "".join(items), pos
        if major == 4:
            return items, pos
        return dict(zip(items[0::2], items[1::2], strict=False)), pos

    value, _ = read(0)
    return value


def _half(raw: bytes) -> float:
    bits = int.from_bytes(raw, "big")
    sign = -1.0 if bits & 0x8000 else 1.0
    exponent = (bits >> 10) & 0x1F
    fraction = bits & 0x3FF
    if exponent == 0:
        return sign * fraction * 2.0**-24
    if exponent == 31:
        return sign * float("inf") if fraction == 0 else float("nan")
    return sign * (1 + fraction / 1024) * 2.0 ** (exponent - 15)


# ---------------------------------------------------------------------------------------------
# REST operations: requestUri templates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RestOperation:
    name: str
    method: str
    pattern: re.Pattern[str]
    labels: tuple[tuple[str, bool], ...]  # (label, greedy) by capture group
    literal_chars: int
    query_literals: tuple[tuple[str, str | None], ...]
    required_query: tuple[str, ...]
    required_headers: tuple[str, ...]
    deprecated: bool


#: Operations that share a method and template with a more common one and lose a tie.
_DEPRIORITISED = frozenset({("s3", "ListDirectoryBuckets")})


def _compile_rest_operation(service: str, operation: OperationModel) -> _RestOperation:
    http = operation.http
    uri = http.get("requestUri", "/")
    path, _, query = uri.partition("?")
    pieces: list[str] = []
    labels: list[tuple[str, bool]] = []
    literal_chars = 0
    for token in re.split(r"(\{[^}]+\})", path):
        if token.startswith("{") and token.endswith("}"):
            label = token[1:-1]
            greedy = label.endswith("+")
            labels.append((label.rstrip("+"), greedy))
            pieces.append("(.+)" if greedy else "([^/]+)")
        elif token:
            pieces.append(re.escape(token))
            literal_chars += len(token)
    query_literals = []
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        query_literals.append((key, value if sep else None))
    required_query: list[str] = []
    required_headers: list[str] = []
    shape = operation.input_shape
    if isinstance(shape, StructureShape):
        for name in shape.required_members:
            member = shape.members[name]
            location = member.serialization.get("location")
            location_name = member.serialization.get("name", name)
            if location == "querystring":
                required_query.append(location_name)
            elif location == "header":
                required_headers.append(location_name.lower())
    return _RestOperation(
        name=operation.name,
        method=http.get("method", "POST").upper(),
        pattern=re.compile("^" + "".join(pieces) + "$"),
        labels=tuple(labels),
        literal_chars=literal_chars,
        query_literals=tuple(query_literals),
        required_query=tuple(required_query),
        required_headers=tuple(required_headers),
        deprecated=bool(operation.deprecated) or (service, operation.name) in _DEPRIORITISED,
    )


@functools.cache
def _rest_operations(service: str) -> tuple[_RestOperation, ...]:
    model = _service_model(service)
    return tuple(_compile_rest_operation(service, model.operation_model(name)) for name in model.operation_names)


def _match_rest(
    service: str, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> tuple[tuple[Any, ...], _RestOperation, dict[str, str]] | None:
    """The best operation of ``service`` for the request: (score, operation, raw labels)."""
    explicit = query.get("x-id", [None])[0]
    best: tuple[tuple[Any, ...], _RestOperation, dict[str, str]] | None = None
    paths = [path]
    if len(path) > 1 and path.endswith("/"):
        paths.append(path.rstrip("/") or "/")
    for operation in _rest_operations(service):
        if operation.method != method or (explicit and operation.name != explicit):
            continue
        if any(
            key not in query or (value is not None and value not in query[key])
            for key, value in operation.query_literals
        ):
            continue
        if any(key not in query for key in operation.required_query):
            continue
        if any(key not in headers for key in operation.required_headers):
            continue
        for candidate_path in paths:
            match = operation.pattern.match(candidate_path)
            if match:
                break
        else:
            continue
        raw = {label: match.group(index + 1) for index, (label, _greedy) in enumerate(operation.labels)}
        greedy = sum(1 for _label, is_greedy in operation.labels if is_greedy)
        score = (
            len(operation.query_literals),
            operation.literal_chars,
            len(operation.required_query) + len(operation.required_headers),
            -greedy,
            candidate_path == path,
            not operation.deprecated,
        )
        if best is None or score > best[0]:
            best = (score, operation, raw)
    return best


def _rest_params(
    service: str,
    operation: OperationModel,
    raw_labels: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    shape = operation.input_shape
    params: dict[str, Any] = {}
    if not isinstance(shape, StructureShape):
        return params
    protocol = _service_model(service).protocol
    payload_name = shape.serialization.get("payload")
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        location_name = member.serialization.get("name", name)
        if location == "uri":
            if location_name in raw_labels:
                params[name] = unquote(raw_labels[location_name])
        elif location == "querystring":
            if isinstance(member, MapShape):
                params[name] = {key: values[-1] for key, values in query.items()}
            elif location_name in query:
                values = query[location_name]
                if isinstance(member, ListShape):
                    params[name] = [_scalar(member.member, value) for value in values]
                else:
                    params[name] = _scalar(member, values[0])
        elif location == "header":
            value = headers.get(location_name.lower())
            if value is not None:
                if isinstance(member, ListShape):
                    params[name] = [_scalar(member.member, item.strip()) for item in value.split(",")]
                else:
                    params[name] = _scalar(member, value)
        elif location == "headers":
            prefix = location_name.lower()
            found = {key[len(prefix) :]: value for key, value in headers.items() if key.startswith(prefix)}
            if found:
                params[name] = found
        elif location == "statusCode":
            continue
        elif name == payload_name:
            params.update(_payload(protocol, name, member, body))
        else:
            body_members[name] = member
    if body_members and payload_name is None:
        if protocol == "rest-xml":
            root = _parse_xml(body)
            if root is not None:
                decoded = _decode_xml(shape, root)
                params.update({key: value for key, value in decoded.items() if key in body_members})
        else:
            decoded_json = _decode_json(shape, _parse_json(body))
            params.update({key: value for key, value in decoded_json.items() if key in body_members})
    return params


def _payload(protocol: str, name: str, member: Shape, body: bytes) -> dict[str, Any]:
    if member.type_name == "blob":
        return {name: body} if body else {}
    if member.type_name == "string":
        return {name: body.decode("utf-8", "replace")} if body else {}
    if protocol == "rest-xml":
        root = _parse_xml(body)
        return {name: _decode_xml(member, root)} if root is not None else {}
    decoded = _decode_json(member, _parse_json(body))
    return {name: decoded} if body.strip() else {}


# ---------------------------------------------------------------------------------------------
# parse_call
# ---------------------------------------------------------------------------------------------

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
        return _services_for_signing_name(labels[0])
    return ()


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
    method = method.upper()
    lowered = {key.lower(): str(value) for key, value in headers.items()}
    query = _query_dict(query_string)
    body = body or b""
    host = host or lowered.get("host", "")
    signature = _signature(lowered, query)
    if signature.service:
        services = _services_for_signing_name(signature.service)
        if not services:
            raise UnknownCallError(f"no botocore service signs as {signature.service!r}")
    else:
        services = _services_from_host(host)
    target = lowered.get("x-amz-target")

    def result(service: str, operation: str, params: dict[str, Any]) -> ParsedCall:
        return ParsedCall(
            service=service,
            operation=operation,
            params=params,
            access_key_id=signature.access_key_id,
            region=signature.region,
            auth_type=signature.auth_type,
            signature_version=signature.version,
        )

    if target:
        prefix, _, operation_name = target.rpartition(".")
        pool = services or tuple(_services_by_target_prefix().get(prefix, ()))
        for service in pool:
            model = _service_model(service)
            if model.metadata.get("targetPrefix") == prefix and operation_name in model.operation_names:
                input_shape = model.operation_model(operation_name).input_shape
                return result(service, operation_name, _decode_json(input_shape, _parse_json(body)))
        raise UnknownCallError(f"no operation {target!r} in {', '.join(pool) or 'any known service'}")

    form: dict[str, str] = {}
    content_type = lowered.get("content-type", "")
    if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        form = {key: values[-1] for key, values in _query_dict(body.decode("utf-8", "replace")).items()}
    action = form.get("Action") or query.get("Action", [None])[0]
    if not services and action:
        version = form.get("Version") or query.get("Version", [None])[0]
        services = tuple(
            service
            for service in _UNSIGNED_QUERY_SERVICES
            if service in _available_services() and _service_model(service).api_version == version
        )
    if not services:
        raise UnknownCallError(
            f"cannot tell the service of {method} {path}: no SigV4 credential scope and no AWS host ({host!r})"
        )

    cbor_path = re.match(r"^/service/([^/]+)/operation/([^/]+)$", path)
    if cbor_path and "cbor" in lowered.get("content-type", ""):
        operation_name = unquote(cbor_path.group(2))
        for service in services:
            model = _service_model(service)
            if operation_name in model.operation_names:
                try:
                    decoded = _cbor_loads(body) if body else {}
                except (_CborError, IndexError, UnicodeDecodeError):
                    decoded = {}
                return result(service, operation_name, decoded if isinstance(decoded, dict) else {})

    if action:
        flat = {key: values[-1] for key, values in query.items()} | form
        # A service that speaks the query protocol first; then one that used to (SQS and
        # CloudWatch still take Action= forms from older SDKs), decoded by the same shapes.
        ranked = sorted(services, key=lambda service: not ({"query", "ec2"} & _protocols(service)))
        for service in ranked:
            model = _service_model(service)
            if action in model.operation_names:
                input_shape = model.operation_model(action).input_shape
                params = _decode_query(input_shape, flat, "") if input_shape is not None else None
                return result(service, action, params or {})
        raise UnknownCallError(f"no query-protocol operation {action!r} in {', '.join(services)}")

    request_path = path or "/"
    best: tuple[tuple[Any, ...], str, _RestOperation, dict[str, str]] | None = None
    for rank, service in enumerate(services):
        if not {"rest-json", "rest-xml"} & _protocols(service):
            continue
        service_path = request_path
        if service == "s3":
            bucket = _virtual_host_bucket(host)
            if bucket:
                service_path = "/" + bucket + (request_path if request_path != "/" else "")
        match = _match_rest(service, method, service_path, query, lowered)
        if match is None:
            continue
        score = (*match[0], -rank)
        if best is None or score > best[0]:
            best = (score, service, match[1], match[2])
    if best is None:
        raise UnknownCallError(f"no operation of {', '.join(services)} matches {method} {path}")
    _score, service, rest_operation, raw_labels = best
    if signature.service == "s3express" and rest_operation.name == "ListBuckets":
        # Same method and path; the directory-bucket signing name tells them apart.
        rest_operation = next(op for op in _rest_operations("s3") if op.name == "ListDirectoryBuckets")
    operation_model = _service_model(service).operation_model(rest_operation.name)
    params = _rest_params(service, operation_model, raw_labels, query, lowered, body)
    return result(service, rest_operation.name, params)


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


@functools.lru_cache(maxsize=1)
def _services_by_target_prefix() -> dict[str, tuple[str, ...]]:
    """Services of the signing-name table by JSON target prefix, for unsigned JSON calls."""
    index: dict[str, list[str]] = {}
    names = {service for services in _SIGNING_NAME_SERVICES.values() for service in services}
    names |= {
        "dynamodb", "kms", "logs", "glue", "sqs", "ssm", "ecr", "events", "sagemaker",
        "stepfunctions", "cloudwatch", "service-quotas", "secretsmanager", "sts",
    }  # fmt: skip
    for name in sorted(names & _available_services()):
        prefix = _service_model(name).metadata.get("targetPrefix")
        if prefix:
            index.setdefault(prefix, []).append(name)
    return {key: tuple(value) for key, value in index.items()}


# ---------------------------------------------------------------------------------------------
# authorization_requests: helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Env:
    call: ParsedCall
    account: str
    region: str
    resolver: ResourceResolver

    @property
    def params(self) -> dict[str, Any]:
        return self.call.params

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    def optional(self, method: str, *args: Any) -> Any:
        """An optional resolver method's answer (see :class:`ResourceResolver`), None without it."""
        function = getattr(self.resolver, method, None)
        return function(*args) if callable(function) else None


def _request(action: str, resource: str, context: Mapping[str, Any] | None = None) -> AuthorizationRequest:
    return AuthorizationRequest(
        action=action, resource=resource, context={k: v for k, v in (context or {}).items() if v is not None}
    )


def _tags(value: Any) -> dict[str, str] | None:
    """Tags in any of the shapes the APIs use: a list of Key/Value (or key/value, TagKey/TagValue)
    pairs, or a mapping."""
    if isinstance(value, Mapping):
        return {str(key): str(val) for key, val in value.items()}
    if isinstance(value, list):
        tags: dict[str, str] = {}
        for item in value:
            if not isinstance(item, Mapping):
                continue
            key = item.get("Key", item.get("key", item.get("TagKey")))
            val = item.get("Value", item.get("value", item.get("TagValue", "")))
            if key is not None:
                tags[str(key)] = "" if val is None else str(val)
        return tags
    return None


def _tag_context(tags: Mapping[str, str] | None) -> dict[str, Any]:
    if not tags:
        return {}
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    return context


def _role_arn(env: _Env, role: str) -> str:
    if role.startswith("arn:"):
        return role
    return env.optional("iam_role_arn", role) or f"arn:aws:iam::{env.account}:role/{role}"


def _pass_role(env: _Env, role: str, service_principal: str) -> AuthorizationRequest:
    """``iam:PassRole`` on a role handed to a service (the role ARN, with the service it is
    passed to in ``iam:PassedToService``)."""
    return _request("iam:PassRole", _role_arn(env, role), {"iam:PassedToService": service_principal})


def _dedupe(requests: Iterable[AuthorizationRequest]) -> list[AuthorizationRequest]:
    seen: set[str] = set()
    result = []
    for request in requests:
        key = json.dumps([request.action, request.resource, dict(request.context)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            result.append(request)
    return result


def _kms_key(env: _Env, key_id: str) -> str:
    """The key ARN KMS authorizes for a ``KeyId``: the resolver's answer; for a key the resolver
    does not know, the ARN the id names (the call then fails in KMS as ``NotFoundException``
    after IAM, or IAM refuses it first, as in AWS for a key ARN)."""
    resolved = env.resolver.kms_key_arn(key_id)
    if resolved:
        return resolved
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        return env.arn("kms", key_id)
    return env.arn("kms", f"key/{key_id}")


def _kms_via_service(
    env: _Env, action: str, key_id: str, service: str, extra: Mapping[str, Any] | None = None
) -> AuthorizationRequest:
    """A KMS action a service performs with the caller's permissions (SSE-KMS in S3, SNS, SQS):
    authorized as the caller, with ``kms:ViaService``."""
    context = {"kms:ViaService": f"{service}.{env.region}.amazonaws.com", "kms:CallerAccount": env.account}
    context.update(extra or {})
    return _request(action, _kms_key(env, key_id), context)


#: Create operations that, given tags, also need the service's tagging action (each service's
#: "tag on create" note: SNS, SQS, Lambda, CloudWatch Logs, DynamoDB, KMS, ECR, SSM, IAM, Step
#: Functions, EventBridge, Glue, CloudWatch, CloudFormation, SES). Value: (tags member, action).
_TAG_ON_CREATE: dict[tuple[str, str], tuple[str, str]] = {
    ("sns", "CreateTopic"): ("Tags", "sns:TagResource"),
    ("sqs", "CreateQueue"): ("tags", "sqs:TagQueue"),
    ("lambda", "CreateFunction"): ("Tags", "lambda:TagResource"),
    ("logs", "CreateLogGroup"): ("tags", "logs:TagResource"),
    ("dynamodb", "CreateTable"): ("Tags", "dynamodb:TagResource"),
    ("kms", "CreateKey"): ("Tags", "kms:TagResource"),
    ("ecr", "CreateRepository"): ("tags", "ecr:TagResource"),
    ("ssm", "PutParameter"): ("Tags", "ssm:AddTagsToResource"),
    ("iam", "CreateRole"): ("Tags", "iam:TagRole"),
    ("iam", "CreatePolicy"): ("Tags", "iam:TagPolicy"),
    ("iam", "CreateUser"): ("Tags", "iam:TagUser"),
    ("stepfunctions", "CreateStateMachine"): ("tags", "states:TagResource"),
    ("stepfunctions", "CreateActivity"): ("tags", "states:TagResource"),
    ("events", "PutRule"): ("Tags", "events:TagResource"),
    ("events", "CreateEventBus"): ("Tags", "events:TagResource"),
    ("glue", "CreateJob"): ("Tags", "glue:TagResource"),
    ("glue", "CreateCrawler"): ("Tags", "glue:TagResource"),
    ("cloudwatch", "PutMetricAlarm"): ("Tags", "cloudwatch:TagResource"),
    ("cloudwatch", "PutCompositeAlarm"): ("Tags", "cloudwatch:TagResource"),
    ("cloudformation", "CreateStack"): ("Tags", "cloudformation:TagResource"),
    ("sesv2", "CreateEmailIdentity"): ("Tags", "ses:TagResource"),
    ("sesv2", "CreateConfigurationSet"): ("Tags", "ses:TagResource"),
}


def _with_tag_on_create(env: _Env, requests: list[AuthorizationRequest]) -> list[AuthorizationRequest]:
    """Add the request tags' condition keys to the create request and, when tags are given,
    the tagging action on the same resource."""
    entry = _TAG_ON_CREATE.get((env.call.service, env.call.operation))
    if entry is None or not requests:
        return requests
    tags = _tags(env.params.get(entry[0]))
    if not tags:
        return requests
    context = _tag_context(tags)
    primary = requests[0]
    tagged = _request(primary.action, primary.resource, {**primary.context, **context})
    return [tagged, *requests[1:], _request(entry[1], primary.resource, context)]


def _default(env: _Env) -> list[AuthorizationRequest]:
    """``<prefix>:<Operation>`` on ``"*"``: the resource of an operation outside the tables here
    is unknown, and ``"*"`` is what only ``Resource: "*"`` statements grant."""
    context = _tag_context(_tags(env.params.get("Tags", env.params.get("tags"))))
    return [_request(f"{iam_prefix(env.call.service)}:{env.call.operation}", "*", context)]


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------

# Sources: Service Authorization Reference "Actions, resources, and condition keys for Amazon S3";
# S3 API Reference, the Permissions section of each operation (GetObject/HeadObject with
# versionId -> s3:GetObjectVersion; DeleteObject with versionId -> s3:DeleteObjectVersion;
# multipart upload parts -> s3:PutObject; PutObject with x-amz-tagging -> s3:PutObjectTagging,
# with ACL headers -> s3:PutObjectAcl; ListObjects(V2) -> s3:ListBucket; HeadBucket ->
# s3:ListBucket; DeleteObjects -> s3:DeleteObject per key).

_S3_OBJECT_ACTIONS: dict[str, tuple[str, str | None]] = {
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "SelectObjectContent": ("s3:GetObject", None),
    "GetObjectAcl": ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "GetObjectTorrent": ("s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"),
    "GetObjectRetention": ("s3:GetObjectRetention", None),
    "PutObjectRetention": ("s3:PutObjectRetention", None),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", None),
    "PutObjectLegalHold": ("s3:PutObjectLegalHold", None),
    "RestoreObject": ("s3:RestoreObject", None),
    "UploadPart": ("s3:PutObject", None),
    "CompleteMultipartUpload": ("s3:PutObject", None),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "ListParts": ("s3:ListMultipartUploadParts", None),
}

_S3_BUCKET_ACTIONS: dict[str, str] = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketNotification": "s3:GetBucketNotification",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotification": "s3:PutBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketCors": "s3:GetBucketCORS",
    "PutBucketCors": "s3:PutBucketCORS",
    "DeleteBucketCors": "s3:PutBucketCORS",
    "GetBucketLifecycle": "s3:GetLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycle": "s3:PutLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketWebsite": "s3:GetBucketWebsite",
    "PutBucketWebsite": "s3:PutBucketWebsite",
    "DeleteBucketWebsite": "s3:DeleteBucketWebsite",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetBucketLogging": "s3:GetBucketLogging",
    "PutBucketLogging": "s3:PutBucketLogging",
    "GetBucketReplication": "s3:GetReplicationConfiguration",
    "PutBucketReplication": "s3:PutReplicationConfiguration",
    "DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "GetBucketRequestPayment": "s3:GetBucketRequestPayment",
    "PutBucketRequestPayment": "s3:PutBucketRequestPayment",
    "GetBucketAccelerateConfiguration": "s3:GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "s3:PutAccelerateConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetBucketAnalyticsConfiguration": "s3:GetAnalyticsConfiguration",
    "ListBucketAnalyticsConfigurations": "s3:GetAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "GetBucketInventoryConfiguration": "s3:GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "s3:GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "GetBucketMetricsConfiguration": "s3:GetMetricsConfiguration",
    "ListBucketMetricsConfigurations": "s3:GetMetricsConfiguration",
    "PutBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "GetBucketIntelligentTieringConfiguration": "s3:GetIntelligentTieringConfiguration",
    "ListBucketIntelligentTieringConfigurations": "s3:GetIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
}

_S3_GLOBAL_ACTIONS: dict[str, str] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "ListDirectoryBuckets": "s3express:ListAllMyDirectoryBuckets",
    "WriteGetObjectResponse": "s3-object-lambda:WriteGetObjectResponse",
}

_S3_WRITE_HEADER_KEYS = {
    # request header -> condition key, for the writes that create an object
    "x-amz-acl": "s3:x-amz-acl",
    "x-amz-grant-read": "s3:x-amz-grant-read",
    "x-amz-grant-read-acp": "s3:x-amz-grant-read-acp",
    "x-amz-grant-write-acp": "s3:x-amz-grant-write-acp",
    "x-amz-grant-full-control": "s3:x-amz-grant-full-control",
    "x-amz-server-side-encryption": "s3:x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-storage-class": "s3:x-amz-storage-class",
    "x-amz-website-redirect-location": "s3:x-amz-website-redirect-location",
    "x-amz-object-lock-mode": "s3:object-lock-mode",
    "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold": "s3:object-lock-legal-hold",
    "x-amz-copy-source": "s3:x-amz-copy-source",
    "x-amz-metadata-directive": "s3:x-amz-metadata-directive",
}

#: Members of the object-writing operations by the header they come from.
_S3_WRITE_MEMBERS = {
    "ACL": "x-amz-acl",
    "GrantRead": "x-amz-grant-read",
    "GrantReadACP": "x-amz-grant-read-acp",
    "GrantWriteACP": "x-amz-grant-write-acp",
    "GrantFullControl": "x-amz-grant-full-control",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "StorageClass": "x-amz-storage-class",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
    "ObjectLockMode": "x-amz-object-lock-mode",
    "ObjectLockRetainUntilDate": "x-amz-object-lock-retain-until-date",
    "ObjectLockLegalHoldStatus": "x-amz-object-lock-legal-hold",
    "CopySource": "x-amz-copy-source",
    "MetadataDirective": "x-amz-metadata-directive",
}


def _s3_common_context(env: _Env) -> dict[str, Any]:
    call = env.call
    # Every bucket of the local cloud belongs to its one account.
    context: dict[str, Any] = {"s3:ResourceAccount": env.account}
    if call.auth_type:
        context["s3:authType"] = call.auth_type
    if call.signature_version:
        context["s3:signatureversion"] = "AWS" if call.signature_version == "AWS" else call.signature_version
    return context


def _s3_tag_set(value: Any) -> dict[str, str]:
    """Object tags from ``x-amz-tagging`` (``k=v&k2=v2``) or a ``Tagging`` body."""
    if isinstance(value, str):
        return dict(parse_qsl(value, keep_blank_values=True))
    if isinstance(value, Mapping):
        return _tags(value.get("TagSet")) or {}
    return {}


def _s3_object_tag_context(tags: Mapping[str, str]) -> dict[str, Any]:
    if not tags:
        return {}
    context: dict[str, Any] = {f"s3:RequestObjectTag/{key}": value for key, value in tags.items()}
    context["s3:RequestObjectTagKeys"] = list(tags)
    return context


def _s3_write(env: _Env, bucket: str, key: str, *, copy: bool) -> list[AuthorizationRequest]:
    """s3:PutObject (PutObject, CopyObject's target, CreateMultipartUpload) with the condition
    keys of its headers, and the extra actions its headers ask for."""
    params = env.params
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    context = _s3_common_context(env)
    for member, header in _S3_WRITE_MEMBERS.items():
        if member in params and (copy or member not in ("CopySource", "MetadataDirective")):
            value = params[member]
            context[_S3_WRITE_HEADER_KEYS[header]] = value
    tags = _s3_tag_set(params.get("Tagging"))
    if copy and params.get("TaggingDirective") != "REPLACE":
        tags = {}
    context.update(_s3_object_tag_context(tags))
    requests = [_request("s3:PutObject", object_arn, context)]
    if tags:
        requests.append(_request("s3:PutObjectTagging", object_arn, _s3_object_tag_context(tags)))
    if any(member in params for member in ("ACL", "GrantRead", "GrantReadACP", "GrantWriteACP", "GrantFullControl")):
        requests.append(
            _request(
                "s3:PutObjectAcl", object_arn, {k: v for k, v in context.items() if "grant" in k or k == "s3:x-amz-acl"}
            )
        )
    if "ObjectLockMode" in params or "ObjectLockRetainUntilDate" in params:
        requests.append(_request("s3:PutObjectRetention", object_arn))
    if "ObjectLockLegalHoldStatus" in params:
        requests.append(_request("s3:PutObjectLegalHold", object_arn))
    requests.extend(_s3_kms_for_write(env, bucket, object_arn))
    return requests


def _s3_kms_for_write(env: _Env, bucket: str, object_arn: str) -> list[AuthorizationRequest]:
    """SSE-KMS writes: S3 asks KMS for a data key as the caller (kms:GenerateDataKey on the key,
    via s3), for the key named in the request or else the bucket's default key. Multipart
    uploads also need kms:Decrypt (S3 API Reference, CreateMultipartUpload)."""
    params = env.params
    encryption = params.get("ServerSideEncryption")
    key_id = params.get("SSEKMSKeyId")
    if encryption is None and key_id is None:
        key_id = env.optional("s3_bucket_kms_key", bucket)
    elif not str(encryption or "aws:kms").startswith("aws:kms"):
        return []
    if not key_id:
        return []  # the AWS managed key aws/s3, whose key policy allows the account via S3
    extra = {"kms:EncryptionContext:aws:s3:arn": object_arn, "kms:EncryptionContextKeys": ["aws:s3:arn"]}
    requests = [_kms_via_service(env, "kms:GenerateDataKey", key_id, "s3", extra)]
    if env.call.operation == "CreateMultipartUpload":
        requests.append(_kms_via_service(env, "kms:Decrypt", key_id, "s3", extra))
    return requests


def _s3_kms_for_read(env: _Env, bucket: str, key: str, version: str | None) -> list[AuthorizationRequest]:
    """kms:Decrypt via S3 for a stored SSE-KMS object, when the resolver knows its key."""
    kms_key = env.optional("s3_object_kms_key", bucket, key, version)
    if not kms_key:
        return []
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    extra = {"kms:EncryptionContext:aws:s3:arn": object_arn, "kms:EncryptionContextKeys": ["aws:s3:arn"]}
    return [_kms_via_service(env, "kms:Decrypt", kms_key, "s3", extra)]


def _s3_copy_source(value: str) -> tuple[str, str | None]:
    """(source ARN, version id) of ``x-amz-copy-source`` (``bucket/key[?versionId=v]``, URL-encoded,
    or an access point ARN)."""
    path, _, query = value.partition("?")
    version = dict(parse_qsl(query)).get("versionId")
    path = unquote(path).lstrip("/")
    if path.startswith("arn:"):
        return path, version
    return f"arn:aws:s3:::{path}", version


def _s3(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    bucket = params.get("Bucket")
    key = params.get("Key")
    common = _s3_common_context(env)
    if operation in _S3_GLOBAL_ACTIONS:
        return [_request(_S3_GLOBAL_ACTIONS[operation], "*", common)]
    if bucket is None:
        return None
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if key is not None:
        object_arn = f"arn:aws:s3:::{bucket}/{key}"
        version = params.get("VersionId")
        if operation in ("PutObject", "CreateMultipartUpload"):
            return _s3_write(env, bucket, key, copy=False)
        if operation in ("CopyObject", "UploadPartCopy"):
            source_arn, source_version = _s3_copy_source(str(params.get("CopySource", "")))
            if source_version:
                read = _request("s3:GetObjectVersion", source_arn, {**common, "s3:versionid": source_version})
            else:
                read = _request("s3:GetObject", source_arn, common)
            source_bucket, _, source_key = source_arn.removeprefix("arn:aws:s3:::").partition("/")
            source_kms = _s3_kms_for_read(env, source_bucket, source_key, source_version)
            if operation == "UploadPartCopy":
                return [read, *source_kms, _request("s3:PutObject", object_arn, common)]
            return [read, *source_kms, *_s3_write(env, bucket, key, copy=True)]
        if operation == "GetObjectAttributes":
            if version:
                version_context = {**common, "s3:versionid": version}
                return [
                    _request("s3:GetObjectVersion", object_arn, version_context),
                    _request("s3:GetObjectVersionAttributes", object_arn, version_context),
                ]
            return [
                _request("s3:GetObject", object_arn, common),
                _request("s3:GetObjectAttributes", object_arn, common),
            ]
        if operation in _S3_OBJECT_ACTIONS:
            action, versioned = _S3_OBJECT_ACTIONS[operation]
            context = dict(common)
            if version and versioned:
                action = versioned
                context["s3:versionid"] = version
            if operation == "PutObjectTagging":
                context.update(_s3_object_tag_context(_s3_tag_set(params.get("Tagging"))))
            requests = [_request(action, object_arn, context)]
            if operation in ("GetObject", "SelectObjectContent"):
                # Reading an SSE-KMS object decrypts its data key as the caller (HEAD does not).
                requests += _s3_kms_for_read(env, bucket, key, version)
            return requests
        return None
    if operation == "DeleteObjects":
        requests = []
        for item in (params.get("Delete") or {}).get("Objects", []):
            item_arn = f"arn:aws:s3:::{bucket}/{item.get('Key', '')}"
            if item.get("VersionId"):
                requests.append(
                    _request("s3:DeleteObjectVersion", item_arn, {**common, "s3:versionid": item["VersionId"]})
                )
            else:
                requests.append(_request("s3:DeleteObject", item_arn, common))
        return requests or [_request("s3:DeleteObject", f"{bucket_arn}/*", common)]
    if operation in _S3_BUCKET_ACTIONS:
        context = dict(common)
        if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
            context.update(
                {
                    "s3:prefix": params.get("Prefix"),
                    "s3:delimiter": params.get("Delimiter"),
                    "s3:max-keys": params.get("MaxKeys"),
                }
            )
        requests = [_request(_S3_BUCKET_ACTIONS[operation], bucket_arn, context)]
        if operation == "CreateBucket":
            requests = _s3_create_bucket(env, bucket_arn, context)
        return requests
    return None


def _s3_create_bucket(env: _Env, bucket_arn: str, context: dict[str, Any]) -> list[AuthorizationRequest]:
    """CreateBucket and the actions its options ask for (S3 API Reference, CreateBucket
    Permissions: object lock -> s3:PutBucketObjectLockConfiguration and s3:PutBucketVersioning;
    x-amz-object-ownership -> s3:PutBucketOwnershipControls; ACL headers -> s3:PutBucketAcl)."""
    params = env.params
    configuration = params.get("CreateBucketConfiguration") or {}
    context = {
        **context,
        "s3:LocationConstraint": configuration.get("LocationConstraint"),
        "s3:x-amz-acl": params.get("ACL"),
        "s3:x-amz-object-ownership": params.get("ObjectOwnership"),
    }
    requests = [_request("s3:CreateBucket", bucket_arn, context)]
    if params.get("ObjectLockEnabledForBucket"):
        requests.append(_request("s3:PutBucketObjectLockConfiguration", bucket_arn))
        requests.append(_request("s3:PutBucketVersioning", bucket_arn))
    if params.get("ObjectOwnership"):
        requests.append(_request("s3:PutBucketOwnershipControls", bucket_arn))
    if any(
        member in params
        for member in ("ACL", "GrantRead", "GrantReadACP", "GrantWrite", "GrantWriteACP", "GrantFullControl")
    ):
        requests.append(_request("s3:PutBucketAcl", bucket_arn))
    return requests


# ---------------------------------------------------------------------------------------------
# DynamoDB
# ---------------------------------------------------------------------------------------------

# Sources: Service Authorization Reference for Amazon DynamoDB; DynamoDB Developer Guide
# "Using IAM with DynamoDB transactions" (TransactWriteItems authorizes PutItem, UpdateItem,
# DeleteItem and ConditionCheckItem per table, TransactGetItems authorizes GetItem, each with
# dynamodb:EnclosingOperation).


def _dynamodb_table(env: _Env, name: str) -> str:
    return name if name.startswith("arn:") else env.arn("dynamodb", f"table/{name}")


def _dynamodb_context(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dynamodb:ReturnValues": params.get("ReturnValues"),
        "dynamodb:ReturnConsumedCapacity": params.get("ReturnConsumedCapacity"),
        "dynamodb:Select": params.get("Select"),
    }


_DYNAMODB_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}

_PARTIQL_TABLE = re.compile(
    r'\b(?:FROM|INTO|UPDATE)\s+"?([A-Za-z0-9_.\-]+)"?(?:\."?([A-Za-z0-9_.\-]+)"?)?', re.IGNORECASE
)


def _dynamodb(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    if operation == "DescribeEndpoints":
        return []  # needs no permission
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            _request(f"dynamodb:{operation}", _dynamodb_table(env, table), _dynamodb_context(params))
            for table in (params.get("RequestItems") or {})
        ]
    if operation == "TransactWriteItems":
        requests = []
        for item in params.get("TransactItems") or []:
            for kind, action in _DYNAMODB_TRANSACT_WRITE.items():
                if kind in item:
                    table = _dynamodb_table(env, item[kind].get("TableName", ""))
                    context = {"dynamodb:EnclosingOperation": "TransactWriteItems", **_dynamodb_context(params)}
                    requests.append(_request(action, table, context))
        return requests
    if operation == "TransactGetItems":
        return [
            _request(
                "dynamodb:GetItem",
                _dynamodb_table(env, (item.get("Get") or {}).get("TableName", "")),
                {"dynamodb:EnclosingOperation": "TransactGetItems", **_dynamodb_context(params)},
            )
            for item in params.get("TransactItems") or []
        ]
    if operation in ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"):
        statements = [params.get("Statement", "")]
        statements += [item.get("Statement", "") for item in params.get("Statements") or []]
        statements += [item.get("Statement", "") for item in params.get("TransactStatements") or []]
        requests = []
        for statement in filter(None, statements):
            verb = statement.strip().split(None, 1)[0].upper() if statement.strip() else ""
            action = {
                "SELECT": "PartiQLSelect",
                "INSERT": "PartiQLInsert",
                "UPDATE": "PartiQLUpdate",
                "DELETE": "PartiQLDelete",
            }.get(verb)
            match = _PARTIQL_TABLE.search(statement)
            if action and match:
                resource = _dynamodb_table(env, match.group(1))
                if match.group(2) and verb == "SELECT":
                    resource += f"/index/{match.group(2)}"
                requests.append(_request(f"dynamodb:{action}", resource))
        return requests or None
    action = f"dynamodb:{operation}"
    if "TableName" in params:
        resource = _dynamodb_table(env, params["TableName"])
        if operation in ("Query", "Scan") and params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        requests = [_request(action, resource, _dynamodb_context(params))]
        return _with_tag_on_create(env, requests) if operation == "CreateTable" else requests
    for member in ("ResourceArn", "StreamArn", "BackupArn", "TableArn", "ExportArn", "ImportArn"):
        if member in params:
            return [_request(action, params[member])]
    return None


def _dynamodbstreams(env: _Env) -> list[AuthorizationRequest] | None:
    if "StreamArn" in env.params:
        return [_request(f"dynamodb:{env.call.operation}", env.params["StreamArn"])]
    return None


# ---------------------------------------------------------------------------------------------
# SageMaker
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference "Actions, resources, and condition keys for Amazon
# SageMaker" (resource types and ARN formats; condition keys sagemaker:InstanceTypes,
# sagemaker:VolumeKmsKey, sagemaker:OutputKmsKey, sagemaker:NetworkIsolation,
# sagemaker:InterContainerTrafficEncryption, sagemaker:VpcSubnets, sagemaker:VpcSecurityGroupIds,
# sagemaker:MaxRuntimeInSeconds; iam:PassRole with iam:PassedToService sagemaker.amazonaws.com
# for the Create operations that take a role; sagemaker:AddTags for Create operations given Tags).
# UpdateEndpoint and CreateEndpoint are authorized on the endpoint and on the endpoint
# configuration (AWS's denials name the endpoint-config ARN: aws-cdk issue 11594).

_SAGEMAKER_NAME_TYPES: dict[str, str] = {
    "TrainingJobName": "training-job",
    "ModelName": "model",
    "EndpointConfigName": "endpoint-config",
    "EndpointName": "endpoint",
    "ProcessingJobName": "processing-job",
    "TransformJobName": "transform-job",
    "ModelPackageGroupName": "model-package-group",
    "MonitoringScheduleName": "monitoring-schedule",
    "HyperParameterTuningJobName": "hyper-parameter-tuning-job",
    "PipelineName": "pipeline",
    "NotebookInstanceName": "notebook-instance",
    "NotebookInstanceLifecycleConfigName": "notebook-instance-lifecycle-config",
    "ExperimentName": "experiment",
    "TrialName": "experiment-trial",
    "TrialComponentName": "experiment-trial-component",
    "FeatureGroupName": "feature-group",
    "ImageName": "image",
    "AutoMLJobName": "automl-job",
    "CompilationJobName": "compilation-job",
    "LabelingJobName": "labeling-job",
    "ModelCardName": "model-card",
    "InferenceComponentName": "inference-component",
    "ProjectName": "project",
    "CodeRepositoryName": "code-repository",
    "AlgorithmName": "algorithm",
    "WorkteamName": "workteam",
    "FlowDefinitionName": "flow-definition",
    "HumanTaskUiName": "human-task-ui",
    "ActionName": "action",
    "ContextName": "context",
    "EdgePackagingJobName": "edge-packaging-job",
    "AppImageConfigName": "app-image-config",
    "StudioLifecycleConfigName": "studio-lifecycle-config",
    "DeviceFleetName": "device-fleet",
    "ClusterName": "cluster",
    "TrackingServerName": "mlflow-tracking-server",
    "HubName": "hub",
    "OptimizationJobName": "optimization-job",
    "InferenceExperimentName": "inference-experiment",
    "DomainId": "domain",
}

_SAGEMAKER_JOB_DEFINITION_TYPES = {
    "DataQualityJobDefinition": "data-quality-job-definition",
    "ModelQualityJobDefinition": "model-quality-job-definition",
    "ModelBiasJobDefinition": "model-bias-job-definition",
    "ModelExplainabilityJobDefinition": "model-explainability-job-definition",
}

_SAGEMAKER_VERBS = (
    "Create", "Describe", "Delete", "Update", "Stop", "Start", "List", "Get", "Put", "Search",
    "Retry", "Send", "Invoke", "Batch", "Register", "Deregister", "Add", "Import", "Export",
)  # fmt: skip

_SAGEMAKER_ROLE_MEMBERS = frozenset({"RoleArn", "ExecutionRoleArn", "ExecutionRole"})


def _sagemaker_noun(operation: str) -> str:
    for verb in _SAGEMAKER_VERBS:
        if operation.startswith(verb) and len(operation) > len(verb):
            return operation[len(verb) :]
    return operation


def _sagemaker_arn(env: _Env, member: str, value: str, operation: str) -> str | None:
    if value.startswith("arn:"):
        return value
    if member == "ModelPackageName":
        return env.arn("sagemaker", f"model-package/{value}")
    if member == "JobDefinitionName":
        for noun, resource_type in _SAGEMAKER_JOB_DEFINITION_TYPES.items():
            if noun in operation:
                return env.arn("sagemaker", f"{resource_type}/{value}")
        return None
    if member == "UserProfileName" and "DomainId" in env.params:
        return env.arn("sagemaker", f"user-profile/{env.params['DomainId']}/{value}")
    if member == "SpaceName" and "DomainId" in env.params:
        return env.arn("sagemaker", f"space/{env.params['DomainId']}/{value}")
    resource_type = _SAGEMAKER_NAME_TYPES.get(member)
    return env.arn("sagemaker", f"{resource_type}/{value}") if resource_type else None


def _sagemaker_resources(env: _Env) -> list[str]:
    operation = env.call.operation
    params = env.params
    noun = _sagemaker_noun(operation)
    if operation in ("AddTags", "DeleteTags", "ListTags"):
        return [params["ResourceArn"]] if "ResourceArn" in params else ["*"]
    if operation.startswith(("List", "Search")):
        return ["*"]
    if operation in ("CreateEndpoint", "UpdateEndpoint"):
        arns = [_sagemaker_arn(env, "EndpointName", params.get("EndpointName", ""), operation)]
        if params.get("EndpointConfigName"):
            arns.append(_sagemaker_arn(env, "EndpointConfigName", params["EndpointConfigName"], operation))
        return [arn for arn in arns if arn]
    candidates = [f"{noun}Name", f"{noun}Arn"]
    if noun.endswith("s"):
        candidates.append(f"{noun[:-1]}Name")
    candidates += ["ModelPackageName", "JobDefinitionName", *(_SAGEMAKER_NAME_TYPES)]
    for member in candidates:
        value = params.get(member)
        if isinstance(value, str) and value:
            arn = _sagemaker_arn(env, member, value, operation)
            if arn:
                return [arn]
    for member, value in params.items():
        if member.endswith("Arn") and isinstance(value, str) and value.startswith("arn:aws:sagemaker:"):
            return [value]
    return ["*"]


def _walk(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _first(value: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _sagemaker_context(params: Mapping[str, Any]) -> dict[str, Any]:
    instance_types = sorted({item for key, item in _walk(params) if key == "InstanceType" and isinstance(item, str)})
    volume_key = next((item for key, item in _walk(params) if key == "VolumeKmsKeyId"), None)
    if volume_key is None and "ProductionVariants" in params:
        volume_key = params.get("KmsKeyId")  # CreateEndpointConfig: the ML storage volume key
    output_key = (
        _first(params, "OutputDataConfig", "KmsKeyId")
        or _first(params, "ProcessingOutputConfig", "KmsKeyId")
        or _first(params, "TransformOutput", "KmsKeyId")
    )
    network_isolation = params.get("EnableNetworkIsolation", _first(params, "NetworkConfig", "EnableNetworkIsolation"))
    traffic = params.get(
        "EnableInterContainerTrafficEncryption",
        _first(params, "NetworkConfig", "EnableInterContainerTrafficEncryption"),
    )
    vpc = params.get("VpcConfig") or _first(params, "NetworkConfig", "VpcConfig") or {}
    max_runtime = _first(params, "StoppingCondition", "MaxRuntimeInSeconds")
    context: dict[str, Any] = {
        "sagemaker:InstanceTypes": instance_types or None,
        "sagemaker:VolumeKmsKey": volume_key,
        "sagemaker:OutputKmsKey": output_key,
        "sagemaker:NetworkIsolation": network_isolation,
        "sagemaker:InterContainerTrafficEncryption": traffic,
        "sagemaker:VpcSubnets": vpc.get("Subnets") if isinstance(vpc, Mapping) else None,
        "sagemaker:VpcSecurityGroupIds": vpc.get("SecurityGroupIds") if isinstance(vpc, Mapping) else None,
        "sagemaker:MaxRuntimeInSeconds": max_runtime,
    }
    return {key: value for key, value in context.items() if value is not None}


def _sagemaker(env: _Env) -> list[AuthorizationRequest]:
    operation = env.call.operation
    params = env.params
    action = f"sagemaker:{operation}"
    context = _sagemaker_context(params) if operation.startswith(("Create", "Update")) else {}
    tags = _tags(params.get("Tags")) if operation.startswith("Create") else None
    context.update(_tag_context(tags))
    if operation == "AddTags":
        context.update(_tag_context(_tags(params.get("Tags"))))
    resources = _sagemaker_resources(env)
    requests = [_request(action, resource, context) for resource in resources]
    if operation.startswith(("Create", "Update")):
        roles = sorted(
            {value for key, value in _walk(params) if key in _SAGEMAKER_ROLE_MEMBERS and isinstance(value, str)}
        )
        requests += [_pass_role(env, role, "sagemaker.amazonaws.com") for role in roles]
    if tags:
        requests.append(_request("sagemaker:AddTags", resources[0], _tag_context(tags)))
    return requests


def _sagemaker_runtime(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    name = env.params.get("EndpointName")
    if not name:
        return None
    action = "sagemaker:InvokeEndpointAsync" if operation == "InvokeEndpointAsync" else "sagemaker:InvokeEndpoint"
    context = {"sagemaker:TargetModel": env.params.get("TargetModel")}
    return [_request(action, env.arn("sagemaker", f"endpoint/{name}"), context)]


def _sagemaker_generic_runtime(env: _Env) -> list[AuthorizationRequest]:
    """The other SageMaker data planes (feature store, A2I, edge, metrics): the action is the
    operation, the resource the named feature group, flow ... as in the control plane."""
    resources = _sagemaker_resources(env)
    return [_request(f"sagemaker:{env.call.operation}", resource) for resource in resources]


# ---------------------------------------------------------------------------------------------
# Step Functions
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference for AWS Step Functions (resources activity,
# execution, stateMachine ...; SendTaskSuccess/Failure/Heartbeat are authorized on the state
# machine or activity the task belongs to).

_STATES_ARN_MEMBERS = (
    "executionArn", "stateMachineArn", "activityArn", "mapRunArn", "resourceArn",
    "stateMachineAliasArn", "stateMachineVersionArn",
)  # fmt: skip


def _stepfunctions(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"states:{operation}"
    if operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"):
        owner = env.resolver.state_machine_of_task_token(str(params.get("taskToken", "")))
        return [_request(action, owner or "*")]
    if operation in ("ListStateMachines", "ListActivities", "ValidateStateMachineDefinition"):
        return [_request(action, "*")]
    requests: list[AuthorizationRequest]
    if operation == "CreateStateMachine":
        requests = [_request(action, env.arn("states", f"stateMachine:{params.get('name', '')}"))]
    elif operation == "CreateActivity":
        requests = [_request(action, env.arn("states", f"activity:{params.get('name', '')}"))]
    elif operation == "TestState":
        requests = [_request(action, "*")]
    else:
        member = next((name for name in _STATES_ARN_MEMBERS if params.get(name)), None)
        if member is None:
            return None
        requests = [_request(action, params[member])]
    if operation in ("CreateStateMachine", "UpdateStateMachine", "TestState") and params.get("roleArn"):
        requests.append(_pass_role(env, params["roleArn"], "states.amazonaws.com"))
    return _with_tag_on_create(env, requests)


# ---------------------------------------------------------------------------------------------
# Glue
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference for AWS Glue (job, crawler, trigger, workflow ARNs;
# Data Catalog operations are authorized on the catalog, the database and the table).

_GLUE_NAMED = {
    "job": ("StartJobRun", "GetJobRun", "GetJobRuns", "BatchStopJobRun", "GetJob", "UpdateJob", "DeleteJob",
            "GetJobBookmark", "ResetJobBookmark", "CreateJob"),
    "crawler": ("StartCrawler", "StopCrawler", "GetCrawler", "UpdateCrawler", "DeleteCrawler", "CreateCrawler",
                "GetCrawlerMetrics"),
    "trigger": ("StartTrigger", "StopTrigger", "GetTrigger", "UpdateTrigger", "DeleteTrigger", "CreateTrigger"),
    "workflow": ("StartWorkflowRun", "GetWorkflow", "GetWorkflowRun", "GetWorkflowRuns", "UpdateWorkflow",
                 "DeleteWorkflow", "CreateWorkflow"),
}  # fmt: skip
_GLUE_NAME_MEMBERS = ("JobName", "Name", "CrawlerName", "TriggerName", "WorkflowName")


def _glue(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"glue:{operation}"
    account = params.get("CatalogId") or env.account
    for resource_type, operations in _GLUE_NAMED.items():
        if operation in operations:
            name = next((params[member] for member in _GLUE_NAME_MEMBERS if params.get(member)), None)
            if name is None:
                return None
            requests = [_request(action, env.arn("glue", f"{resource_type}/{name}"))]
            role = params.get("Role") or _first(params, "JobUpdate", "Role") or _first(params, "Crawler", "Role")
            if role and operation in ("CreateJob", "UpdateJob", "CreateCrawler", "UpdateCrawler"):
                requests.append(_pass_role(env, role, "glue.amazonaws.com"))
            return _with_tag_on_create(env, requests)
    if operation in ("BatchGetJobs", "BatchGetCrawlers", "BatchGetTriggers", "BatchGetWorkflows"):
        kind = {"BatchGetJobs": "job", "BatchGetCrawlers": "crawler", "BatchGetTriggers": "trigger",
                "BatchGetWorkflows": "workflow"}[operation]  # fmt: skip
        names = (
            params.get("JobNames")
            or params.get("CrawlerNames")
            or params.get("TriggerNames")
            or params.get("Names")
            or []
        )
        return [_request(action, env.arn("glue", f"{kind}/{name}")) for name in names]
    catalog = env.arn("glue", "catalog", account=account)
    database = params.get("DatabaseName") or _first(params, "DatabaseInput", "Name")
    if operation in ("GetDatabase", "DeleteDatabase", "UpdateDatabase"):
        database = params.get("Name")
    table = params.get("TableName") or _first(params, "TableInput", "Name")
    if operation in ("GetTable", "DeleteTable"):
        table = params.get("Name")
    if database is None:
        if operation in ("GetDatabases", "SearchTables"):
            return [_request(action, catalog), _request(action, env.arn("glue", "database/*", account=account))]
        return None
    requests = [_request(action, catalog), _request(action, env.arn("glue", f"database/{database}", account=account))]
    if table is not None:
        requests.append(_request(action, env.arn("glue", f"table/{database}/{table}", account=account)))
    elif operation in ("GetTables", "GetTableVersions", "DeleteDatabase"):
        requests.append(_request(action, env.arn("glue", f"table/{database}/*", account=account)))
    return requests


# ---------------------------------------------------------------------------------------------
# SNS, SQS
# ---------------------------------------------------------------------------------------------


def _sns(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"sns:{operation}"
    if operation == "CreateTopic":
        return _with_tag_on_create(env, [_request(action, env.arn("sns", str(params.get("Name", ""))))])
    if operation == "Publish":
        if not params.get("TopicArn") and not params.get("TargetArn"):
            return [_request(action, "*")]  # SMS to a phone number
        topic = params.get("TopicArn") or params.get("TargetArn")
        return [_request(action, topic), *_sns_kms(env, topic)]
    if operation == "PublishBatch":
        topic = params.get("TopicArn", "")
        return [_request("sns:Publish", topic), *_sns_kms(env, topic)]
    if operation == "Subscribe":
        context = {"sns:Protocol": params.get("Protocol"), "sns:Endpoint": params.get("Endpoint")}
        return [_request(action, params.get("TopicArn", ""), context)]
    for member in ("TopicArn", "SubscriptionArn", "ResourceArn", "PlatformApplicationArn", "EndpointArn"):
        if params.get(member):
            return [_request(action, params[member])]
    return None


def _sns_kms(env: _Env, topic_arn: str) -> list[AuthorizationRequest]:
    """Publishing to an SSE-KMS topic: the publisher needs kms:GenerateDataKey and kms:Decrypt
    on the topic's key (SNS Developer Guide, "Encryption at rest", key management)."""
    key = env.optional("sns_topic_kms_key", topic_arn)
    if not key:
        return []
    return [
        _kms_via_service(env, "kms:GenerateDataKey", key, "sns"),
        _kms_via_service(env, "kms:Decrypt", key, "sns"),
    ]


_SQS_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _sqs_queue_arn(env: _Env, url: str) -> str:
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if len(parts) >= 2:
        return env.arn("sqs", parts[-1], account=parts[-2])
    return env.arn("sqs", parts[-1] if parts else url)


def _sqs(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = _SQS_ACTIONS.get(operation, f"sqs:{operation}")
    if operation in ("ListQueues",):
        return [_request(action, "*")]
    if operation in ("CreateQueue", "GetQueueUrl"):
        account = params.get("QueueOwnerAWSAccountId") or env.account
        requests = [_request(action, env.arn("sqs", str(params.get("QueueName", "")), account=account))]
        return _with_tag_on_create(env, requests)
    if params.get("QueueUrl"):
        queue = _sqs_queue_arn(env, str(params["QueueUrl"]))
        requests = [_request(action, queue)]
        if action in ("sqs:SendMessage", "sqs:ReceiveMessage"):
            key = env.optional("sqs_queue_kms_key", queue)
            if key:
                # SQS Developer Guide, "Key management": producers need GenerateDataKey and
                # Decrypt, consumers Decrypt.
                if action == "sqs:SendMessage":
                    requests.append(_kms_via_service(env, "kms:GenerateDataKey", key, "sqs"))
                requests.append(_kms_via_service(env, "kms:Decrypt", key, "sqs"))
        return requests
    return None


# ---------------------------------------------------------------------------------------------
# SES
# ---------------------------------------------------------------------------------------------

# What SES checks when sending (SES Developer Guide "Identity and access management in Amazon
# SES" and "Using sending authorization"; the resource of denials seen from AWS):
# - ses:SendEmail (v2; ses:SendEmail/SendRawEmail in v1) on the sending identity's ARN,
#   arn:aws:ses:R:A:identity/<identity>: the identity is the From address's own verified
#   identity, else its domain's (a verified address identity takes precedence over its domain);
#   FromEmailAddressIdentityArn (v2) or SourceArn (v1) names it for sending authorization;
# - also on the configuration set's ARN, arn:aws:ses:R:A:configuration-set/<name>, when one is
#   named (SES v2 SendEmail resource types: identity and configuration-set);
# - in the sandbox, recipients must be verified identities and SES authorizes the send on each
#   recipient identity too (AWS's denials name identity/<recipient>: aws-sdk-js issue 3641);
# - condition keys ses:FromAddress (the bare From address), ses:FromDisplayName, ses:Recipients
#   (To, Cc and Bcc addresses), ses:FeedbackAddress (the Return-Path / feedback forwarding
#   address) and ses:ApiVersion ("2" for SES v2, "1" for the v1 API).
# One request per resource: IAM authorizes each resource the request names, not the first one
# that some statement allows.


def _addresses(values: Iterable[str]) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(list(values)) if address]


def _ses_identity(env: _Env, address: str) -> str:
    identity = env.optional("ses_sending_identity", address)
    return identity or address


def _ses_send(
    env: _Env,
    action: str,
    from_header: str | None,
    recipients: list[str],
    feedback: str | None,
    identity_arn: str | None,
    configuration_set: str | None,
    api_version: str,
) -> list[AuthorizationRequest]:
    display, address = email.utils.parseaddr(from_header or "")
    context: dict[str, Any] = {
        "ses:FromAddress": address or None,
        "ses:FromDisplayName": display or None,
        "ses:Recipients": recipients or None,
        "ses:FeedbackAddress": feedback,
        "ses:ApiVersion": api_version,
    }
    resources = []
    if identity_arn:
        resources.append(identity_arn)
    elif address:
        resources.append(env.arn("ses", f"identity/{_ses_identity(env, address)}"))
    else:
        resources.append("*")
    if configuration_set:
        resources.append(env.arn("ses", f"configuration-set/{configuration_set}"))
    if env.optional("ses_in_sandbox"):
        for recipient in recipients:
            resources.append(env.arn("ses", f"identity/{_ses_identity(env, recipient)}"))
    return [_request(action, resource, context) for resource in resources]


def _raw_headers(data: Any) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes | bytearray):
        return None
    try:
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(bytes(data))
    except (ValueError, TypeError, LookupError):  # a malformed message: no headers to read
        return None


def _maybe_base64(data: Any) -> Any:
    """SES v1's RawMessage.Data arrives base64-encoded in the query form."""
    if isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            return data
    return data


def _sesv2(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"ses:{operation}"
    if operation == "SendEmail":
        destination = params.get("Destination") or {}
        recipients = _addresses(
            destination.get("ToAddresses", [])
            + destination.get("CcAddresses", [])
            + destination.get("BccAddresses", [])
        )
        from_header = params.get("FromEmailAddress")
        raw = _first(params, "Content", "Raw", "Data")
        if raw is not None:
            headers = _raw_headers(_maybe_base64(raw))
            if headers is not None:
                from_header = from_header or headers.get("From")
                if not recipients:
                    recipients = _addresses(
                        headers.get_all("To", []) + headers.get_all("Cc", []) + headers.get_all("Bcc", [])
                    )
        feedback = params.get("FeedbackForwardingEmailAddress")
        return _ses_send(
            env,
            action,
            from_header,
            recipients,
            feedback,
            params.get("FromEmailAddressIdentityArn"),
            params.get("ConfigurationSetName"),
            "2",
        )
    if operation == "SendBulkEmail":
        recipients = []
        for entry in params.get("BulkEmailEntries") or []:
            destination = entry.get("Destination") or {}
            recipients += (
                destination.get("ToAddresses", [])
                + destination.get("CcAddresses", [])
                + destination.get("BccAddresses", [])
            )
        return _ses_send(
            env,
            action,
            params.get("FromEmailAddress"),
            _addresses(recipients),
            params.get("FeedbackForwardingEmailAddress"),
            params.get("FromEmailAddressIdentityArn"),
            params.get("ConfigurationSetName"),
            "2",
        )
    context = {"ses:ApiVersion": "2"}
    if params.get("EmailIdentity"):
        requests = [_request(action, env.arn("ses", f"identity/{params['EmailIdentity']}"), context)]
        return _with_tag_on_create(env, requests)
    if params.get("ConfigurationSetName"):
        requests = [_request(action, env.arn("ses", f"configuration-set/{params['ConfigurationSetName']}"), context)]
        return _with_tag_on_create(env, requests)
    if params.get("TemplateName"):
        return [_request(action, env.arn("ses", f"template/{params['TemplateName']}"), context)]
    if params.get("ContactListName"):
        return [_request(action, env.arn("ses", f"contact-list/{params['ContactListName']}"), context)]
    return [_request(action, "*", context)]


def _ses(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"ses:{operation}"
    if operation in ("SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail"):
        destination = params.get("Destination") or {}
        recipients = _addresses(
            destination.get("ToAddresses", [])
            + destination.get("CcAddresses", [])
            + destination.get("BccAddresses", [])
        )
        recipients += _addresses(params.get("Destinations") or [])
        from_header = params.get("Source")
        if operation == "SendRawEmail":
            headers = _raw_headers(_maybe_base64(_first(params, "RawMessage", "Data")))
            if headers is not None:
                from_header = from_header or headers.get("From")
                if not recipients:
                    recipients = _addresses(
                        headers.get_all("To", []) + headers.get_all("Cc", []) + headers.get_all("Bcc", [])
                    )
        return _ses_send(
            env,
            action,
            from_header,
            recipients,
            params.get("ReturnPath"),
            params.get("SourceArn") or params.get("FromArn"),
            params.get("ConfigurationSetName"),
            "1",
        )
    context = {"ses:ApiVersion": "1"}
    identity = params.get("Identity") or params.get("EmailAddress") or params.get("Domain")
    if identity:
        return [_request(action, env.arn("ses", f"identity/{identity}"), context)]
    return [_request(action, "*", context)]


# ---------------------------------------------------------------------------------------------
# KMS
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference for AWS KMS and the KMS Developer Guide ("AWS KMS
# condition keys": kms:EncryptionContext:*, kms:EncryptionContextKeys, kms:MacAlgorithm,
# kms:EncryptionAlgorithm, kms:SigningAlgorithm, kms:RequestAlias, kms:KeySpec, kms:KeyUsage,
# kms:KeyOrigin, kms:MultiRegion, kms:GrantOperations; CreateAlias needs kms:CreateAlias on
# the alias and on the key; CreateKey with tags also needs kms:TagResource).


def _kms_context(params: Mapping[str, Any], key_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    encryption_context = params.get("EncryptionContext")
    if isinstance(encryption_context, Mapping) and encryption_context:
        context.update({f"kms:EncryptionContext:{key}": value for key, value in encryption_context.items()})
        context["kms:EncryptionContextKeys"] = list(encryption_context)
    for member, key in (
        ("MacAlgorithm", "kms:MacAlgorithm"),
        ("EncryptionAlgorithm", "kms:EncryptionAlgorithm"),
        ("SigningAlgorithm", "kms:SigningAlgorithm"),
        ("KeyPairSpec", "kms:DataKeyPairSpec"),
    ):
        if params.get(member):
            context[key] = params[member]
    if key_id and (key_id.startswith("alias/") or ":alias/" in key_id):
        context["kms:RequestAlias"] = key_id.split(":", 5)[-1] if key_id.startswith("arn:") else key_id
    return context


def _kms(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"kms:{operation}"
    base = {"kms:CallerAccount": env.account}
    if operation == "CreateKey":
        context = {
            **base,
            "kms:KeySpec": params.get("KeySpec") or params.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT",
            "kms:KeyUsage": params.get("KeyUsage") or "ENCRYPT_DECRYPT",
            "kms:KeyOrigin": params.get("Origin") or "AWS_KMS",
            "kms:MultiRegion": bool(params.get("MultiRegion", False)),
            "kms:BypassPolicyLockoutSafetyCheck": bool(params.get("BypassPolicyLockoutSafetyCheck", False)),
        }
        return _with_tag_on_create(env, [_request(action, "*", context)])
    if operation in ("CreateAlias", "UpdateAlias", "DeleteAlias"):
        alias = str(params.get("AliasName", ""))
        requests = [_request(action, env.arn("kms", alias), base)]
        target = params.get("TargetKeyId") or (alias if operation == "DeleteAlias" else None)
        if target:
            requests.append(_request(action, _kms_key(env, str(target)), base))
        return requests
    if operation in ("ReEncrypt",):
        source = params.get("SourceKeyId") or env.optional("kms_key_of_ciphertext", params.get("CiphertextBlob"))
        source_context = {**base, **_kms_context({"EncryptionContext": params.get("SourceEncryptionContext")}, source)}
        destination = str(params.get("DestinationKeyId", ""))
        destination_context = {
            **base,
            **_kms_context({"EncryptionContext": params.get("DestinationEncryptionContext")}, destination),
        }
        return [
            _request("kms:ReEncryptFrom", _kms_key(env, str(source)) if source else "*", source_context),
            _request("kms:ReEncryptTo", _kms_key(env, destination), destination_context),
        ]
    key_id = params.get("KeyId")
    if key_id is None and operation == "Decrypt":
        key_id = env.optional("kms_key_of_ciphertext", params.get("CiphertextBlob"))
        if key_id is None:
            return [_request(action, "*", {**base, **_kms_context(params, None)})]
    if key_id is None:
        return None  # ListKeys, ListAliases, GenerateRandom, CreateCustomKeyStore ...: "*"
    context = {**base, **_kms_context(params, str(key_id))}
    if operation == "CreateGrant":
        context.update(
            {
                "kms:GrantOperations": params.get("Operations"),
                "kms:GranteePrincipal": params.get("GranteePrincipal"),
                "kms:RetiringPrincipal": params.get("RetiringPrincipal"),
            }
        )
    return [_request(action, _kms_key(env, str(key_id)), context)]


# ---------------------------------------------------------------------------------------------
# EventBridge
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference for Amazon EventBridge (event-bus and rule ARNs; a
# rule on a custom bus is rule/<bus>/<name>; events:source and events:detail-type on PutEvents,
# from the pattern on PutRule; events:TargetArn on PutTargets; iam:PassRole for target roles).


def _bus_name(value: str | None) -> str:
    if not value:
        return "default"
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _event_bus_arn(env: _Env, value: str | None) -> str:
    if value and value.startswith("arn:"):
        return value
    return env.arn("events", f"event-bus/{_bus_name(value)}")


def _rule_arn(env: _Env, name: str, bus: str | None) -> str:
    bus_name = _bus_name(bus)
    return env.arn("events", f"rule/{name}" if bus_name == "default" else f"rule/{bus_name}/{name}")


def _pattern_values(pattern: Any, key: str) -> list[str] | None:
    if not isinstance(pattern, str):
        return None
    try:
        values = json.loads(pattern).get(key)
    except (ValueError, AttributeError):
        return None
    if isinstance(values, list):
        return [value for value in values if isinstance(value, str)] or None
    return [values] if isinstance(values, str) else None


def _events(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"events:{operation}"
    if operation == "PutEvents":
        requests = []
        for entry in params.get("Entries") or []:
            context = {"events:source": entry.get("Source"), "events:detail-type": entry.get("DetailType")}
            requests.append(_request(action, _event_bus_arn(env, entry.get("EventBusName")), context))
        return requests or [_request(action, _event_bus_arn(env, None))]
    if operation == "PutRule":
        context = {
            "events:source": _pattern_values(params.get("EventPattern"), "source"),
            "events:detail-type": _pattern_values(params.get("EventPattern"), "detail-type"),
        }
        requests = [_request(action, _rule_arn(env, str(params.get("Name", "")), params.get("EventBusName")), context)]
        if params.get("RoleArn"):
            requests.append(_pass_role(env, params["RoleArn"], "events.amazonaws.com"))
        return _with_tag_on_create(env, requests)
    if operation == "PutTargets":
        targets = params.get("Targets") or []
        context = {"events:TargetArn": [target.get("Arn") for target in targets if target.get("Arn")] or None}
        requests = [_request(action, _rule_arn(env, str(params.get("Rule", "")), params.get("EventBusName")), context)]
        roles = sorted({target["RoleArn"] for target in targets if target.get("RoleArn")})
        requests += [_pass_role(env, role, "events.amazonaws.com") for role in roles]
        return requests
    if operation in ("DescribeRule", "DeleteRule", "EnableRule", "DisableRule", "ListTargetsByRule", "RemoveTargets"):
        name = params.get("Name") or params.get("Rule") or ""
        return [_request(action, _rule_arn(env, str(name), params.get("EventBusName")))]
    if operation in ("CreateEventBus", "DescribeEventBus", "DeleteEventBus", "UpdateEventBus"):
        return _with_tag_on_create(env, [_request(action, _event_bus_arn(env, params.get("Name")))])
    if operation in ("PutPermission", "RemovePermission"):
        return [_request(action, _event_bus_arn(env, params.get("EventBusName")))]
    if params.get("ResourceARN"):
        return [_request(action, params["ResourceARN"])]
    return None


# ---------------------------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------------------------

# Source: Service Authorization Reference for AWS Lambda and the Lambda Developer Guide
# ("Fine-tuning the Resources and Conditions sections of policies": a qualified ARN is
# function:NAME:QUALIFIER, which function:NAME alone does not match; CreateFunction needs
# iam:PassRole for the execution role and lambda:TagResource for tags).

_LAMBDA_ACTIONS = {
    "Invoke": "lambda:InvokeFunction",
    "InvokeWithResponseStream": "lambda:InvokeFunction",
    "InvokeAsync": "lambda:InvokeFunction",
    "GetLayerVersionByArn": "lambda:GetLayerVersion",
}

_LAMBDA_ARN = re.compile(r"^arn:[^:]+:lambda:[^:]*:\d{12}:function:([^:]+)(?::([^:]+))?$")
_LAMBDA_PARTIAL = re.compile(r"^(\d{12}):function:([^:]+)(?::([^:]+))?$")


def _lambda_function(env: _Env, name: str, qualifier: str | None) -> str:
    """The function ARN Lambda authorizes: unqualified, or ``...:function:NAME:QUALIFIER`` for a
    version or alias, given in ``Qualifier`` or in the name (``NAME:QUALIFIER``, a qualified ARN)."""
    match = _LAMBDA_ARN.match(name)
    partial = _LAMBDA_PARTIAL.match(name)
    if match:
        from_name = match.group(2)
        base = name.rsplit(":", 1)[0] if from_name else name
    elif partial:
        from_name = partial.group(3)
        base = env.resolver.lambda_function_arn(f"{partial.group(1)}:function:{partial.group(2)}")
    else:
        bare, _, selector = name.partition(":")
        from_name = selector or None
        base = env.resolver.lambda_function_arn(bare)
    qualifier = qualifier or from_name
    return f"{base}:{qualifier}" if qualifier else base


def _lambda(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = _LAMBDA_ACTIONS.get(operation, f"lambda:{operation}")
    if operation == "ListFunctions":
        return [_request(action, "*")]
    if params.get("FunctionName"):
        resource = _lambda_function(env, str(params["FunctionName"]), params.get("Qualifier"))
        context: dict[str, Any] = {}
        if operation == "AddPermission":
            context = {
                "lambda:Principal": params.get("Principal"),
                "lambda:FunctionUrlAuthType": params.get("FunctionUrlAuthType"),
            }
        if operation in ("CreateFunction", "UpdateFunctionConfiguration"):
            vpc = params.get("VpcConfig") or {}
            context = {
                "lambda:Layer": params.get("Layers"),
                "lambda:SubnetIds": vpc.get("SubnetIds"),
                "lambda:SecurityGroupIds": vpc.get("SecurityGroupIds"),
                "lambda:CodeSigningConfigArn": params.get("CodeSigningConfigArn"),
            }
        requests = [_request(action, resource, context)]
        if operation in ("CreateFunction", "UpdateFunctionConfiguration") and params.get("Role"):
            requests.append(_pass_role(env, params["Role"], "lambda.amazonaws.com"))
        return _with_tag_on_create(env, requests)
    for member in ("Resource", "Arn", "LayerName"):
        if params.get(member):
            value = str(params[member])
            if member == "LayerName" and not value.startswith("arn:"):
                value = env.arn("lambda", f"layer:{value}")
            return [_request(action, value)]
    return None


# ---------------------------------------------------------------------------------------------
# CloudWatch Logs, CloudWatch
# ---------------------------------------------------------------------------------------------

# CloudWatch Logs authorizes log-group operations on
# arn:aws:logs:R:A:log-group:NAME:log-stream: and stream operations on
# ...:log-group:NAME:log-stream:STREAM (the resources AWS names in its denials; policies write
# log-group:NAME:* for both). DescribeLogGroups names log-group::log-stream:.

_LOGS_STREAM_OPERATIONS = frozenset({"CreateLogStream", "PutLogEvents", "GetLogEvents", "DeleteLogStream"})


def _logs(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"logs:{operation}"
    if operation == "DescribeLogGroups":
        return [_request(action, env.arn("logs", "log-group::log-stream:"))]
    group = params.get("logGroupName") or params.get("logGroupIdentifier")
    if group and str(group).startswith("arn:"):
        group = str(group).split(":log-group:", 1)[-1].removesuffix(":*")
    if group:
        stream = params.get("logStreamName", "") if operation in _LOGS_STREAM_OPERATIONS else ""
        requests = [_request(action, env.arn("logs", f"log-group:{group}:log-stream:{stream}"))]
        return _with_tag_on_create(env, requests)
    names = params.get("logGroupNames") or params.get("logGroupIdentifiers")
    if names:
        return [_request(action, env.arn("logs", f"log-group:{name}:log-stream:")) for name in names]
    if params.get("resourceArn"):
        return [_request(action, params["resourceArn"])]
    return None


_CLOUDWATCH_ALARM_OPERATIONS = frozenset(
    {"DeleteAlarms", "DescribeAlarms", "EnableAlarmActions", "DisableAlarmActions", "PutMetricAlarm",
     "PutCompositeAlarm", "SetAlarmState", "DescribeAlarmHistory"}
)  # fmt: skip


def _cloudwatch(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"cloudwatch:{operation}"
    if operation == "PutMetricData":
        return [_request(action, "*", {"cloudwatch:namespace": params.get("Namespace")})]
    if operation in _CLOUDWATCH_ALARM_OPERATIONS:
        names = params.get("AlarmNames") or ([params["AlarmName"]] if params.get("AlarmName") else [])
        if not names:
            return [_request(action, "*")]
        context: dict[str, Any] = {}
        if operation in ("PutMetricAlarm", "PutCompositeAlarm"):
            context["cloudwatch:AlarmActions"] = params.get("AlarmActions")
        requests = [_request(action, env.arn("cloudwatch", f"alarm:{name}"), context) for name in names]
        return _with_tag_on_create(env, requests)
    if operation in ("PutDashboard", "GetDashboard"):
        return [_request(action, env.arn("cloudwatch", f"dashboard/{params.get('DashboardName', '')}", region=""))]
    if operation == "DeleteDashboards":
        return [
            _request(action, env.arn("cloudwatch", f"dashboard/{name}", region=""))
            for name in params.get("DashboardNames") or []
        ]
    if params.get("ResourceARN"):
        return [_request(action, params["ResourceARN"])]
    return None


# ---------------------------------------------------------------------------------------------
# IAM, STS
# ---------------------------------------------------------------------------------------------


def _iam_path(params: Mapping[str, Any]) -> str:
    path = str(params.get("Path") or "/")
    return path if path.endswith("/") else path + "/"


def _iam(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"iam:{operation}"
    iam_arn = functools.partial(env.arn, "iam", region="")
    context: dict[str, Any] = {
        "iam:PolicyARN": params.get("PolicyArn")
        if "RoleName" in params or "UserName" in params or "GroupName" in params
        else None,
        "iam:PermissionsBoundary": params.get("PermissionsBoundary"),
    }
    resource: str | None = None
    if operation in ("CreateRole", "CreateUser", "CreateGroup", "CreatePolicy", "CreateInstanceProfile"):
        kind = {"CreateRole": "role", "CreateUser": "user", "CreateGroup": "group", "CreatePolicy": "policy",
                "CreateInstanceProfile": "instance-profile"}[operation]  # fmt: skip
        name = (
            params.get("RoleName")
            or params.get("UserName")
            or params.get("GroupName")
            or params.get("PolicyName")
            or params.get("InstanceProfileName")
        )
        resource = iam_arn(f"{kind}{_iam_path(params)}{name}")
    elif operation == "CreateServiceLinkedRole":
        service = str(params.get("AWSServiceName", ""))
        resource = iam_arn(f"role/aws-service-role/{service}/*")
        context["iam:AWSServiceName"] = service
    elif params.get("RoleName"):
        resource = _role_arn(env, str(params["RoleName"]))
    elif params.get("UserName"):
        resource = iam_arn(f"user/{params['UserName']}")
    elif params.get("GroupName"):
        resource = iam_arn(f"group/{params['GroupName']}")
    elif params.get("InstanceProfileName"):
        resource = iam_arn(f"instance-profile/{params['InstanceProfileName']}")
    elif params.get("PolicyArn"):
        resource = params["PolicyArn"]
    elif params.get("PolicySourceArn"):
        resource = params["PolicySourceArn"]
    elif params.get("OpenIDConnectProviderArn") or params.get("SAMLProviderArn"):
        resource = params.get("OpenIDConnectProviderArn") or params.get("SAMLProviderArn")
    if resource is None:
        return None
    context.update(_tag_context(_tags(params.get("Tags"))))
    return _with_tag_on_create(env, [_request(action, resource, context)])


def _sts(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    if operation in ("GetCallerIdentity", "GetSessionToken"):
        return []  # no permission needed (STS API Reference)
    if operation in ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
        role = str(params.get("RoleArn", ""))
        context = {
            "sts:RoleSessionName": params.get("RoleSessionName"),
            "sts:ExternalId": params.get("ExternalId"),
            "sts:SourceIdentity": params.get("SourceIdentity"),
            **_tag_context(_tags(params.get("Tags"))),
        }
        if params.get("TransitiveTagKeys"):
            context["sts:TransitiveTagKeys"] = params["TransitiveTagKeys"]
        requests = [_request(f"sts:{operation}", role, context)]
        if params.get("Tags") or params.get("TransitiveTagKeys"):
            requests.append(_request("sts:TagSession", role, context))
        if params.get("SourceIdentity"):
            requests.append(_request("sts:SetSourceIdentity", role, context))
        return requests
    return None


# ---------------------------------------------------------------------------------------------
# SSM, ECR, Service Quotas, CloudFormation
# ---------------------------------------------------------------------------------------------


def _ssm_parameter_arn(env: _Env, name: str) -> str:
    """arn:aws:ssm:R:A:parameter/NAME, NAME without its leading slash and without a
    ``:version`` or ``:label`` selector (which is not part of the name)."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:6])
    base = name.rsplit(":", 1)[0] if ":" in name else name
    return env.arn("ssm", f"parameter/{base.lstrip('/')}")


def _ssm(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"ssm:{operation}"
    if operation in ("GetParameters", "DeleteParameters"):
        return [_request(action, _ssm_parameter_arn(env, name)) for name in params.get("Names") or []]
    if operation == "GetParametersByPath":
        return [_request(action, env.arn("ssm", f"parameter/{str(params.get('Path', '/')).strip('/')}"))]
    if params.get("Name"):
        context = {"ssm:Overwrite": str(bool(params.get("Overwrite"))).lower()} if operation == "PutParameter" else {}
        return _with_tag_on_create(env, [_request(action, _ssm_parameter_arn(env, str(params["Name"])), context)])
    return None


def _ecr(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"ecr:{operation}"
    account = params.get("registryId") or env.account
    if operation == "GetAuthorizationToken":
        return [_request(action, "*")]
    if operation == "DescribeRepositories" and params.get("repositoryNames"):
        return [
            _request(action, env.arn("ecr", f"repository/{name}", account=account))
            for name in params["repositoryNames"]
        ]
    if params.get("repositoryName"):
        requests = [_request(action, env.arn("ecr", f"repository/{params['repositoryName']}", account=account))]
        return _with_tag_on_create(env, requests)
    if params.get("resourceArn"):
        return [_request(action, params["resourceArn"])]
    return None


def _service_quotas(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"servicequotas:{operation}"
    service, quota = params.get("ServiceCode"), params.get("QuotaCode")
    if service and quota and operation in (
        "GetServiceQuota", "RequestServiceQuotaIncrease", "GetAWSDefaultServiceQuota",
        "PutServiceQuotaIncreaseRequestIntoTemplate",
    ):  # fmt: skip
        context = {"servicequotas:service": service} if operation == "RequestServiceQuotaIncrease" else {}
        return [_request(action, env.arn("servicequotas", f"{service}/{quota}"), context)]
    return None


def _cloudformation(env: _Env) -> list[AuthorizationRequest] | None:
    operation = env.call.operation
    params = env.params
    action = f"cloudformation:{operation}"
    name = params.get("StackName")
    if not name:
        return None
    name = str(name)
    if name.startswith("arn:"):
        stack = name
    else:
        # The stack ARN ends in the stack's id; without a resolver that knows it, the id is a
        # wildcard that only matches stack/NAME/* policy resources.
        stack = env.optional("cloudformation_stack_arn", name) or env.arn("cloudformation", f"stack/{name}/*")
    context = {"cloudformation:RoleArn": params.get("RoleARN"), "cloudformation:TemplateUrl": params.get("TemplateURL")}
    requests = [_request(action, stack, {k: v for k, v in context.items() if v})]
    if params.get("RoleARN") and operation in ("CreateStack", "UpdateStack", "CreateChangeSet", "DeleteStack"):
        requests.append(_pass_role(env, params["RoleARN"], "cloudformation.amazonaws.com"))
    return _with_tag_on_create(env, requests)


# ---------------------------------------------------------------------------------------------
# authorization_requests
# ---------------------------------------------------------------------------------------------

_HANDLERS: dict[str, Callable[[_Env], list[AuthorizationRequest] | None]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "dynamodbstreams": _dynamodbstreams,
    "sagemaker": _sagemaker,
    "sagemaker-runtime": _sagemaker_runtime,
    "sagemaker-featurestore-runtime": _sagemaker_generic_runtime,
    "sagemaker-a2i-runtime": _sagemaker_generic_runtime,
    "stepfunctions": _stepfunctions,
    "glue": _glue,
    "sns": _sns,
    "sqs": _sqs,
    "sesv2": _sesv2,
    "ses": _ses,
    "kms": _kms,
    "events": _events,
    "lambda": _lambda,
    "logs": _logs,
    "cloudwatch": _cloudwatch,
    "iam": _iam,
    "sts": _sts,
    "ssm": _ssm,
    "ecr": _ecr,
    "service-quotas": _service_quotas,
    "cloudformation": _cloudformation,
}


def authorization_requests(
    call: ParsedCall, *, account: str, region: str, resolver: ResourceResolver
) -> list[AuthorizationRequest]:
    """The authorizations AWS checks for ``call``, each of which must be allowed.

    One :class:`AuthorizationRequest` per (action, resource) pair AWS evaluates: an S3 copy is a
    read of the source and a write of the target, a DynamoDB batch one request per table, an SES
    send one per identity and configuration set. An empty list means no permission is needed
    (``sts:GetCallerIdentity``). Operations without a rule here are ``<prefix>:<Operation>`` on
    ``"*"``.
    """
    env = _Env(call=call, account=account, region=region, resolver=resolver)
    handler = _HANDLERS.get(call.service)
    requests = handler(env) if handler else None
    if requests is None:
        requests = _default(env)
    return _dedupe(requests)
