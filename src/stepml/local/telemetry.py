"""CloudWatch Logs and metrics written the way AWS's engines write them, for the local engines.

In AWS, Glue's and SageMaker's agents send a job's output to CloudWatch Logs and its metrics to
CloudWatch, signed with the job's role: a role that may not write them loses them, and the job
goes on. The local Glue and SageMaker engines do the same through ``LogStream`` (one stream,
created when it is first written, its log group created when missing), ``FileFollower`` (the
lines a process appends to a file), ``Shipper`` (sends what is pending every few seconds while a
job runs, and the rest when it ends) and ``put_metrics``.

Every batch respects PutLogEvents' limits: at most 10,000 events and 1,048,576 bytes (each
event's UTF-8 message plus 26 bytes), in chronological order, spanning at most 24 hours; a
message longer than an event may be is split. Errors never propagate: telemetry that cannot be
written is dropped with a warning, as in AWS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

LOGGER = logging.getLogger(__name__)

#: PutLogEvents' limits (CloudWatch Logs API Reference, PutLogEvents).
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_BATCH_SPAN_MS = 24 * 60 * 60 * 1000
#: The largest event message this module sends. CloudWatch Logs takes up to 1 MB per event now;
#: 256 KiB was the limit for years, and is within both.
MAX_MESSAGE_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES
#: PutMetricData takes at most 1,000 metric data items per call.
MAX_METRIC_DATA = 1000
#: The error codes of a call the caller's role may not make (JSON and query protocols).
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})


@dataclass(frozen=True)
class LogEvent:
    """One log event: milliseconds since the epoch and the message."""

    timestamp: int
    message: str

    @property
    def size(self) -> int:
        """What the event counts towards PutLogEvents' batch size."""
        return len(self.message.encode("utf-8")) + EVENT_OVERHEAD_BYTES


def now_ms() -> int:
    return int(time.time() * 1000)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def split_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> list[str]:
    """``message`` in pieces of at most ``limit`` UTF-8 bytes, never splitting a character."""
    encoded = message.encode("utf-8")
    if len(encoded) <= limit:
        return [message]
    pieces = []
    start = 0
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        # Back off to the start of a character: continuation bytes are 0b10xxxxxx.
        while end < len(encoded) and encoded[end] & 0xC0 == 0x80:
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces


def batches(events: Sequence[LogEvent]) -> Iterator[list[LogEvent]]:
    """``events`` in chronological order, cut into batches PutLogEvents accepts."""
    batch: list[LogEvent] = []
    size = 0
    for event in sorted(events, key=lambda e: e.timestamp):
        full = len(batch) >= MAX_BATCH_EVENTS or size + event.size > MAX_BATCH_BYTES
        if batch and (full or event.timestamp - batch[0].timestamp > MAX_BATCH_SPAN_MS):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event.size
    if batch:
        yield batch


class LogStream:
    """One CloudWatch Logs stream, written as AWS's log agents write it.

    The stream is created on the first flush that has events (and its log group when CloudWatch
    Logs says it does not exist). With ``describe_first`` the stream is looked up with
    DescribeLogStreams first, as SageMaker's agent does; Glue's creates it directly. A group this
    stream creates is associated with ``kms_key_id`` (AssociateKmsKey), as Glue does for a job whose
    security configuration encrypts its logs. A call the role may not make loses the stream's logs
    from then on (``lost``), as in AWS.
    """

    def __init__(
        self, client: Any, group: str, stream: str, *, describe_first: bool = False, kms_key_id: str | None = None
    ):
        self.client = client
        self.group = group
        self.stream = stream
        self.describe_first = describe_first
        self.kms_key_id = kms_key_id
        #: The role may not write this stream: its events are dropped.
        self.lost = False
        #: How many events reached CloudWatch Logs.
        self.sent = 0
        self._pending: list[LogEvent] = []
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._ready = False

    def add(self, message: str, timestamp: int | None = None) -> None:
        """Queue one message (split when too long; empty messages are not events)."""
        if self.lost or not message:
            return
        when = now_ms() if timestamp is None else timestamp
        with self._pending_lock:
            self._pending += [LogEvent(when, piece) for piece in split_message(message)]

    def add_lines(self, text: str, timestamp: int | None = None) -> None:
        for line in text.splitlines():
            self.add(line.rstrip("\r"), timestamp)

    def flush(self) -> bool:
        """Send what is pending; False when it could not be sent (and was dropped)."""
        with self._flush_lock:
            with self._pending_lock:
                events, self._pending = self._pending, []
            if self.lost:
                return False
            if not events:
                return True
            try:
                if not self._ready:
                    self._prepare()
                    self._ready = True
                for batch in batches(events):
                    self.client.put_log_events(
                        logGroupName=self.group,
                        logStreamName=self.stream,
                        logEvents=[{"timestamp": e.timestamp, "message": e.message} for e in batch],
                    )
                    self.sent += len(batch)
            except ClientError as exc:
                if error_code(exc) in ACCESS_DENIED_CODES:
                    self.lost = True
                    LOGGER.warning("logs of %s:%s are lost: %s", self.group, self.stream, exc)
                else:
                    LOGGER.warning("%d log events of %s:%s dropped: %s", len(events), self.group, self.stream, exc)
                return False
            except BotoCoreError as exc:
                LOGGER.warning("%d log events of %s:%s dropped: %s", len(events), self.group, self.stream, exc)
                return False
            return True

    def _prepare(self) -> None:
        if self.describe_first:
            try:
                found = self.client.describe_log_streams(logGroupName=self.group, logStreamNamePrefix=self.stream)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._create_group()
            else:
                if any(s.get("logStreamName") == self.stream for s in found.get("logStreams", [])):
                    return
            self._create_stream()
            return
        try:
            self._create_stream()
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            self._create_group()
            self._create_stream()

    def _create_group(self) -> None:
        try:
            self.client.create_log_group(logGroupName=self.group)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":  # another stream created it first
                raise
            return
        if self.kms_key_id:
            self.client.associate_kms_key(logGroupName=self.group, kmsKeyId=self.kms_key_id)

    def _create_stream(self) -> None:
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise


class FileFollower:
    """The lines a process appends to a file, queued on log streams as they appear."""

    def __init__(self, path: Path, streams: Iterable[LogStream]):
        self.path = Path(path)
        self.streams = list(streams)
        self._offset = 0
        self._partial = b""
        self._lock = threading.Lock()

    def read(self, final: bool = False) -> None:
        """Queue the complete lines written since the last read (and, when ``final``, the last
        line even without its newline)."""
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(self._offset)
                    data = handle.read()
            except FileNotFoundError:
                return
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = b"" if final else lines.pop()
            when = now_ms()
            for line in lines:
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                for stream in self.streams:
                    stream.add(text, when)


class Shipper:
    """While a job runs, reads its followed files and flushes its live streams every ``interval``
    seconds; ``close`` reads and flushes everything (live or not) one last time."""

    def __init__(
        self,
        streams: Iterable[LogStream],
        followers: Iterable[FileFollower] = (),
        *,
        live: Iterable[LogStream] | None = None,
        interval: float = 2.0,
        name: str = "stepml-log-shipper",
    ):
        self.streams = list(streams)
        self.live = list(self.streams if live is None else live)
        self.followers = list(followers)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for follower in self.followers:
                follower.read()
            for stream in self.live:
                stream.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for follower in self.followers:
            follower.read(final=True)
        for stream in self.streams:
            stream.flush()


def put_metrics(client: Any, namespace: str, metric_data: Sequence[dict[str, Any]]) -> bool:
    """PutMetricData in calls of at most 1,000 items; False (with a warning) when refused."""
    try:
        for start in range(0, len(metric_data), MAX_METRIC_DATA):
            client.put_metric_data(Namespace=namespace, MetricData=list(metric_data[start : start + MAX_METRIC_DATA]))
    except (ClientError, BotoCoreError) as exc:
        LOGGER.warning("metrics of namespace %s dropped: %s", namespace, exc)
        return False
    return True
