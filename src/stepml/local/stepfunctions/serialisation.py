"""How Step Functions writes the values a service task returns.

A boto response carries datetimes; Step Functions' optimized integrations return them as epoch
milliseconds (numbers) and its aws-sdk integrations as ISO-8601 UTC text. The interpreter patch
``service-task-timestamps`` and the SageMaker integration's failure Cause convert with these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stepml.utils import iso_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_millis(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def _convert_datetimes(value: Any, convert: Any) -> Any:
    if isinstance(value, datetime):
        return convert(value)
    if isinstance(value, dict):
        return {key: _convert_datetimes(item, convert) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_convert_datetimes(item, convert) for item in value]
    return value


def datetimes_to_epoch_millis(value: Any) -> Any:
    """``value`` with every datetime (at any depth) replaced by epoch milliseconds.

    A naive datetime is taken to be UTC (moto and botocore keep naive UTC times).
    """
    return _convert_datetimes(value, _epoch_millis)


def datetimes_to_iso8601(value: Any) -> Any:
    """``value`` with every datetime (at any depth) replaced by ISO-8601 UTC text (``...T03:04:05.678Z``)."""
    return _convert_datetimes(value, iso_utc)
