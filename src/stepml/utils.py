"""The small conversions every part of stepml needs, written once.

S3 URIs, UTC timestamps, DynamoDB's number type and CSV lines for an endpoint come up in the handlers, the CLI and
the local cloud alike; each has exactly one definition here so that a fix (an URI without
a key, a NaN metric) reaches every caller. Runtime code: the Lambda layer ships it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class S3UriError(ValueError):
    """A value that should be an ``s3://bucket/key`` URI is not one."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` as ``("bucket", "some/key")`` (the key may be empty).

    Raises ``S3UriError`` naming the value when it is not an S3 URI with a bucket.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise S3UriError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise S3UriError(f"{uri!r} names no bucket")
    return bucket, key


def s3_uri(bucket: str, key: str = "") -> str:
    """The ``s3://`` URI of ``key`` in ``bucket``."""
    return f"s3://{bucket}/{key}"


class S3ReadError(Exception):
    """An object named by an ``s3://`` URI could not be read; the message names the URI and why."""


def read_s3_object(s3_client: Any, uri: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of the object at ``uri``.

    Raises ``S3ReadError`` naming the URI and the reason: not an S3 URI, S3's error code (or
    botocore's error class), or larger than ``max_bytes`` (from the answer's ContentLength, so a
    large object is refused before its body is read).
    """
    try:
        bucket, key = split_s3_uri(uri)
        answer = s3_client.get_object(Bucket=bucket, Key=key)
        if max_bytes is not None and int(answer.get("ContentLength") or 0) > max_bytes:
            answer["Body"].close()
            raise S3ReadError(f"{uri}: larger than {max_bytes} bytes, not read")
        return answer["Body"].read()
    except S3UriError as exc:
        raise S3ReadError(str(exc)) from exc
    except ClientError as exc:
        raise S3ReadError(f"{uri}: cannot read it: {exc.response.get('Error', {}).get('Code')}") from exc
    except BotoCoreError as exc:
        raise S3ReadError(f"{uri}: cannot read it: {type(exc).__name__}") from exc


def read_s3_json(s3_client: Any, uri: str, *, max_bytes: int | None = None) -> Any:
    """The JSON document at ``uri``; ``S3ReadError`` as ``read_s3_object``, or when it is not JSON."""
    body = read_s3_object(s3_client, uri, max_bytes=max_bytes)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise S3ReadError(f"{uri}: not JSON: {exc}") from exc


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` as ISO-8601 UTC text with a ``Z``, to the millisecond (``2026-01-02T03:04:05.678Z``)
    or to ``timespec`` (``datetime.isoformat``'s: ``"seconds"`` gives ``2026-01-02T03:04:05Z``).

    A naive datetime is taken to be UTC already (moto and botocore keep naive UTC times).
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def to_dynamo(value: Any) -> Any:
    """Plain JSON-like data as the DynamoDB resource accepts it.

    Floats become Decimal (DynamoDB has no float); NaN and infinities, which it cannot store,
    become None; other objects (datetimes, paths) become their text.
    """
    if isinstance(value, bool) or value is None or isinstance(value, int | str | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(item) for item in value]
    return str(value)


def from_dynamo(value: Any) -> Any:
    """DynamoDB data back to plain JSON types (Decimal to int or float, at any depth)."""
    if isinstance(value, list):
        return [from_dynamo(item) for item in value]
    if isinstance(value, dict):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def csv_line(cells: Sequence[str]) -> str:
    """One headerless CSV line (RFC 4180), quoted where a value holds a comma, quote or line break."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()
