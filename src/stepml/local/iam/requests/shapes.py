"""Input members decoded by their botocore shapes from a query-protocol form, an XML body
(rest-xml) or a JSON body (json, rest-json: blobs arrive base64-encoded)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape


def scalar(shape: Shape, value: str) -> Any:
    """A string member read as its shape's type (integer, float, boolean; else the string)."""
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


def decode_query(shape: Shape, form: Mapping[str, str], prefix: str) -> Any:
    """A member of a query-protocol form (``Tags.member.1.Key``, ``Attributes.entry.1.key``),
    decoded by its shape; None when absent."""
    if prefix and not any(key == prefix or key.startswith(prefix + ".") for key in form):
        return None  # absent (and the end of recursive shapes)
    if isinstance(shape, StructureShape):
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = _query_member_name(name, member)
            value = decode_query(member, form, f"{prefix}.{key}" if prefix else key)
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
            value = decode_query(shape.member, form, f"{item_prefix}.{index}")
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
            value = decode_query(shape.value, form, f"{entry}.{index}.{value_name}")
            mapping[form[f"{entry}.{index}.{key_name}"]] = value
            index += 1
        return mapping or None
    if prefix in form:
        return scalar(shape, form[prefix])
    return None


def _local_tag(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def decode_xml(shape: Shape, element: ElementTree.Element) -> Any:
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
                    result[name] = [decode_xml(member.member, item) for item in children[tag]]
                continue
            if tag in children:
                result[name] = decode_xml(member, children[tag][0])
        return result
    if isinstance(shape, ListShape):
        item_tag = shape.member.serialization.get("name", "member")
        return [decode_xml(shape.member, child) for child in element if _local_tag(child.tag) == item_tag]
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
                    value = decode_xml(shape.value, part)
            if key is not None:
                mapping[key] = value
        return mapping
    return scalar(shape, element.text or "")


def parse_xml(body: bytes) -> ElementTree.Element | None:
    """The root element of an XML body, None when empty or not XML."""
    if not body.strip():
        return None
    try:
        # Python's expat refuses entity-expansion bombs and ElementTree never fetches external
        # entities; the bodies come from local SDK clients.
        return ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return None


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object body, ``{}`` when empty, not JSON or not an object."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def decode_json(shape: Shape | None, value: Any) -> Any:
    """JSON members decoded by their shape: blobs arrive base64-encoded."""
    if shape is None:
        return value
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return {
            key: decode_json(shape.members[key], item) if key in shape.members else item for key, item in value.items()
        }
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [decode_json(shape.member, item) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: decode_json(shape.value, item) for key, item in value.items()}
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value
    return value
