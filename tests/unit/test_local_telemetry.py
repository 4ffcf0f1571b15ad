"""CloudWatch Logs batches within PutLogEvents' limits, streams created as the agents create them."""

from __future__ import annotations

import boto3
from moto import mock_aws

from stepml.local.telemetry import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    FileFollower,
    LogEvent,
    LogStream,
    batches,
    now_ms,
    put_metrics,
    split_message,
)


def test_batches_hold_at_most_10000_events_and_1_mib_in_chronological_order():
    many = [LogEvent(1_000 + i % 7, "x") for i in range(25_000)]
    cut = list(batches(many))
    assert [len(batch) for batch in cut] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 5_000]
    flat = [event.timestamp for batch in cut for event in batch]
    assert flat == sorted(flat)

    big = [LogEvent(1, "y" * 100_000) for _ in range(30)]  # 100,026 bytes each as PutLogEvents counts them
    cut = list(batches(big))
    assert [len(batch) for batch in cut] == [10, 10, 10]
    assert all(sum(len(e.message) + EVENT_OVERHEAD_BYTES for e in batch) <= MAX_BATCH_BYTES for batch in cut)


def test_a_batch_spans_at_most_24_hours():
    day = 24 * 60 * 60 * 1000
    cut = list(batches([LogEvent(0, "a"), LogEvent(day, "b"), LogEvent(day + 1, "c")]))
    assert [[e.message for e in batch] for batch in cut] == [["a", "b"], ["c"]]


def test_long_messages_are_split_on_character_boundaries():
    message = "é" * MAX_MESSAGE_BYTES  # two bytes each
    pieces = split_message(message)
    assert "".join(pieces) == message
    assert all(len(piece.encode()) <= MAX_MESSAGE_BYTES for piece in pieces) and len(pieces) == 2
    assert split_message("short") == ["short"]


def test_a_stream_creates_its_group_only_when_missing_and_sends_everything(aws_credentials, tmp_path):
    with mock_aws():
        logs = boto3.client("logs")
        now = now_ms()  # CloudWatch Logs refuses events older than 14 days
        first = LogStream(logs, "/test/group", "one")
        assert first.flush() and first.sent == 0, "nothing pending: no calls"
        assert logs.describe_log_groups(logGroupNamePrefix="/test")["logGroups"] == []
        for i in range(12_000):
            first.add(f"line {i}", timestamp=now - 12_000 + i)
        assert first.flush() and first.sent == 12_000
        second = LogStream(logs, "/test/group", "two", describe_first=True)
        second.add("hello")
        assert second.flush()
        assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="/test/group")["logStreams"]] == [
            "one",
            "two",
        ]
        events = logs.get_log_events(logGroupName="/test/group", logStreamName="one", startFromHead=True)["events"]
        assert events[0]["message"] == "line 0" and len(events) == 10_000  # one page of GetLogEvents

        output = tmp_path / "out.log"
        output.write_text("first\nsecond\npartial")
        follower = FileFollower(output, [second])
        follower.read()
        with output.open("a") as handle:
            handle.write(" line\nlast")
        follower.read(final=True)
        assert second.flush()
        messages = [
            e["message"] for e in logs.get_log_events(logGroupName="/test/group", logStreamName="two")["events"]
        ]
        assert messages == ["hello", "first", "second", "partial line", "last"]


def test_metrics_are_sent_in_calls_of_at_most_1000(aws_credentials):
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch")
        data = [{"MetricName": f"m{i}", "Value": float(i)} for i in range(1_500)]
        assert put_metrics(cloudwatch, "Test", data)
        names = set()
        for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace="Test"):
            names |= {m["MetricName"] for m in page["Metrics"]}
        assert len(names) == 1_500
