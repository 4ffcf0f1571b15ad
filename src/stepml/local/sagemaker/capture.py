"""Data capture: an endpoint's requests and responses, in SageMaker's JSON Lines format, in S3.

``CaptureSettings`` reads an endpoint config's DataCaptureConfig; each variant keeps a
``CaptureBuffer`` of sampled events, and the ``CaptureWriter`` thread flushes them every
``capture_flush_seconds`` (and when a fleet retires) to
``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl``
under the model's execution role. The same thread sends the endpoint instances' logs.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import telemetry
from stepml.local.sagemaker.context import EngineContext
from stepml.local.sagemaker.endpoint_metrics import NAMESPACE as METRICS_NAMESPACE
from stepml.local.sagemaker.endpoint_metrics import InvocationMetrics
from stepml.utils import S3UriError, split_s3_uri

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureSettings:
    """An endpoint config's DataCaptureConfig, typed."""

    destination: str
    sampling_percentage: float
    modes: frozenset[str]
    csv_types: tuple[str, ...]
    json_types: tuple[str, ...]
    kms_key_id: str | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> CaptureSettings | None:
        """The settings of a DataCaptureConfig; None when capture is off."""
        if not config or not config.get("EnableCapture", True):
            return None
        modes: set[str] = set()
        for option in config.get("CaptureOptions") or []:
            mode = option.get("CaptureMode")
            modes.update(
                {"Input": {"INPUT"}, "Output": {"OUTPUT"}, "InputAndOutput": {"INPUT", "OUTPUT"}}.get(mode, set())
            )
        headers = config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination=str(config.get("DestinationS3Uri", "")),
            sampling_percentage=float(config.get("InitialSamplingPercentage", 0)),
            modes=frozenset(modes),
            csv_types=tuple(t.lower() for t in headers.get("CsvContentTypes") or ()),
            json_types=tuple(t.lower() for t in headers.get("JsonContentTypes") or ()),
            kms_key_id=config.get("KmsKeyId"),
        )

    def summary(self) -> dict[str, Any]:
        """DescribeEndpoint's DataCaptureConfig summary."""
        summary = {
            "EnableCapture": True,
            "CaptureStatus": "Started",
            "CurrentSamplingPercentage": int(self.sampling_percentage),
            "DestinationS3Uri": self.destination,
        }
        if self.kms_key_id:
            summary["KmsKeyId"] = self.kms_key_id
        return summary

    def encode(self, mode: str, content_type: str | None, body: bytes) -> dict[str, str]:
        """One side of an event: CSV or JSON text for the configured content types, else base64."""
        media = (content_type or "").split(";")[0].strip().lower()
        encoding = "CSV" if media in self.csv_types else "JSON" if media in self.json_types else "BASE64"
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                encoding = "BASE64"
        if encoding == "BASE64":
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


class CaptureBuffer:
    """Captured events of one endpoint variant, waiting for the next flush to S3."""

    def __init__(self, endpoint_name: str, variant_name: str, settings: CaptureSettings, role_arn: str | None = None):
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.settings = settings
        #: The model's execution role: SageMaker writes capture files under it.
        self.role_arn = role_arn
        self._events: list[tuple[datetime, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def add(self, when: datetime, record: dict[str, Any]) -> None:
        """Keep one event until the next flush."""
        with self._lock:
            self._events.append((when, record))

    def drain(self) -> list[tuple[datetime, dict[str, Any]]]:
        """Take every waiting event."""
        with self._lock:
            events, self._events = self._events, []
        return events


def record(
    buffer: CaptureBuffer,
    when: datetime,
    request_body: bytes,
    request_type: str | None,
    response_body: bytes,
    response_type: str,
    inference_id: str | None,
) -> None:
    """Add one invocation to ``buffer`` if it is sampled (InitialSamplingPercentage)."""
    settings = buffer.settings
    if random.random() * 100 >= settings.sampling_percentage:
        return
    capture_data: dict[str, Any] = {}
    if "INPUT" in settings.modes:
        capture_data["endpointInput"] = settings.encode("INPUT", request_type, request_body)
    if "OUTPUT" in settings.modes:
        capture_data["endpointOutput"] = settings.encode("OUTPUT", response_type, response_body)
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    buffer.add(when, {"captureData": capture_data, "eventMetadata": metadata, "eventVersion": "0"})


class CaptureWriter:
    """The thread that writes captured data, endpoint logs and invocation metrics every
    ``capture_flush_seconds``."""

    def __init__(self, context: EngineContext):
        self._context = context
        #: Every endpoint's invocation metrics, published with the captured data.
        self.metrics = InvocationMetrics()
        self._buffers: set[CaptureBuffer] = set()
        self._logs: set[telemetry.LogStream] = set()
        self._flusher: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The flusher thread, once started."""
        return self._flusher

    def track(self, buffers: list[CaptureBuffer], logs: list[telemetry.LogStream]) -> None:
        """Flush ``buffers`` and send ``logs`` from now on (a new fleet is in service)."""
        with self._context.lock:
            self._buffers.update(buffers)
            self._logs.update(logs)
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_loop, name="stepml-sm-capture", daemon=True)
                self._flusher.start()

    def forget_log(self, log: telemetry.LogStream) -> None:
        """Stop sending ``log`` (its instance stopped; the caller flushes it a last time)."""
        with self._context.lock:
            self._logs.discard(log)

    def retire(self, buffer: CaptureBuffer) -> None:
        """Write ``buffer``'s last events and stop tracking it."""
        with self._context.lock:
            self._buffers.discard(buffer)
        self.flush(buffer)

    def close(self) -> None:
        """Write every buffer's last events (the engine shuts down)."""
        with self._context.lock:
            buffers = list(self._buffers)
            self._buffers.clear()
        for buffer in buffers:
            self.flush(buffer)
        self.publish_metrics()

    def publish_metrics(self) -> None:
        """PutMetricData of the invocations served since the last call (``endpoint_metrics``)."""
        items = self.metrics.drain()
        if items:
            telemetry.put_metrics(self._context.client_as("cloudwatch", None), METRICS_NAMESPACE, items)

    def _flush_loop(self) -> None:
        while not self._context.closing.wait(self._context.settings.capture_flush_seconds):
            with self._context.lock:
                buffers = list(self._buffers)
                logs = list(self._logs)
            for buffer in buffers:
                self.flush(buffer)
            for log in logs:
                log.flush()
            self.publish_metrics()

    def flush(self, buffer: CaptureBuffer) -> None:
        """Write ``buffer``'s waiting events, one file per hour they fall in."""
        events = buffer.drain()
        if not events:
            return
        settings = buffer.settings
        try:
            bucket, prefix = split_s3_uri(settings.destination)
        except S3UriError:
            LOGGER.warning(
                "data capture of %s dropped: bad DestinationS3Uri %r", buffer.endpoint_name, settings.destination
            )
            return
        by_hour: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
        for when, event in events:
            by_hour.setdefault(when.strftime("%Y/%m/%d/%H"), []).append((when, event))
        extra = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id}
            if settings.kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )
        for hour, hour_events in by_hour.items():
            first = hour_events[0][0]
            file_name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            key = "/".join(
                filter(None, [prefix.rstrip("/"), buffer.endpoint_name, buffer.variant_name, hour, file_name])
            )
            body = "".join(json.dumps(event, separators=(",", ":")) + "\n" for _, event in hour_events)
            try:
                self._context.client_as("s3", buffer.role_arn).put_object(
                    Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/jsonlines", **extra
                )
            except (ClientError, BotoCoreError) as exc:
                LOGGER.warning("data capture file s3://%s/%s could not be written: %s", bucket, key, exc)
