"""The one home of stepml's small conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from stepml.utils import S3UriError, from_dynamo, iso_utc, s3_uri, split_s3_uri, to_dynamo


def test_split_s3_uri_keeps_the_key_and_round_trips() -> None:
    assert split_s3_uri("s3://bucket/a/b.csv") == ("bucket", "a/b.csv")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    assert s3_uri(*split_s3_uri("s3://bucket/a/")) == "s3://bucket/a/"


@pytest.mark.parametrize("value", ["bucket/key", "s3://", "s3:///key", "https://bucket/key"])
def test_split_s3_uri_names_a_value_that_is_no_uri(value: str) -> None:
    with pytest.raises(S3UriError) as raised:
        split_s3_uri(value)
    assert repr(value) in str(raised.value)


def test_iso_utc_converts_zones_and_reads_naive_times_as_utc() -> None:
    moment = datetime(2026, 1, 2, 5, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2026-01-02T03:04:05.678Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    assert iso_utc(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000Z"
    assert iso_utc(moment, timespec="seconds") == "2026-01-02T03:04:05Z", "approval records keep seconds"


def test_dynamo_conversion_round_trips_and_drops_what_dynamodb_cannot_store() -> None:
    stored = to_dynamo({"auc": 0.91, "rows": 3, "nan": float("nan"), "ok": True, "at": datetime(2026, 1, 1)})
    assert stored == {"auc": Decimal("0.91"), "rows": 3, "nan": None, "ok": True, "at": "2026-01-01 00:00:00"}
    assert from_dynamo({"a": [Decimal("2"), Decimal("0.5")]}) == {"a": [2, 0.5]}
    assert isinstance(from_dynamo(Decimal("2")), int)
