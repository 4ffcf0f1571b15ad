"""rest-json and rest-xml: the operation whose ``requestUri`` template best matches a request,
and its input members from the URI labels, query string, headers and body."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from stepml.local.iam.requests.models import service_model
from stepml.local.iam.requests.shapes import decode_json, decode_xml, parse_json, parse_xml, scalar


@dataclass(frozen=True)
class RestOperation:
    """One rest-json/rest-xml operation's ``requestUri`` template, compiled for matching."""

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


def _compile_rest_operation(service: str, operation: OperationModel) -> RestOperation:
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
    return RestOperation(
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
def rest_operations(service: str) -> tuple[RestOperation, ...]:
    """Every operation of ``service`` with its compiled ``requestUri`` template."""
    model = service_model(service)
    return tuple(_compile_rest_operation(service, model.operation_model(name)) for name in model.operation_names)


def match_rest(
    service: str, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> tuple[tuple[Any, ...], RestOperation, dict[str, str]] | None:
    """The best operation of ``service`` for the request: (score, operation, raw labels)."""
    explicit = query.get("x-id", [None])[0]
    best: tuple[tuple[Any, ...], RestOperation, dict[str, str]] | None = None
    paths = [path]
    if len(path) > 1 and path.endswith("/"):
        paths.append(path.rstrip("/") or "/")
    for operation in rest_operations(service):
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


def rest_params(
    service: str,
    operation: OperationModel,
    raw_labels: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """The input members of a rest-json/rest-xml request: URI labels, query string, headers, body."""
    shape = operation.input_shape
    params: dict[str, Any] = {}
    if not isinstance(shape, StructureShape):
        return params
    protocol = service_model(service).protocol
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
                    params[name] = [scalar(member.member, value) for value in values]
                else:
                    params[name] = scalar(member, values[0])
        elif location == "header":
            value = headers.get(location_name.lower())
            if value is not None:
                if isinstance(member, ListShape):
                    params[name] = [scalar(member.member, item.strip()) for item in value.split(",")]
                else:
                    params[name] = scalar(member, value)
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
            root = parse_xml(body)
            if root is not None:
                decoded = decode_xml(shape, root)
                params.update({key: value for key, value in decoded.items() if key in body_members})
        else:
            decoded_json = decode_json(shape, parse_json(body))
            params.update({key: value for key, value in decoded_json.items() if key in body_members})
    return params


def _payload(protocol: str, name: str, member: Shape, body: bytes) -> dict[str, Any]:
    if member.type_name == "blob":
        return {name: body} if body else {}
    if member.type_name == "string":
        return {name: body.decode("utf-8", "replace")} if body else {}
    if protocol == "rest-xml":
        root = parse_xml(body)
        return {name: decode_xml(member, root)} if root is not None else {}
    decoded = decode_json(member, parse_json(body))
    return {name: decoded} if body.strip() else {}
