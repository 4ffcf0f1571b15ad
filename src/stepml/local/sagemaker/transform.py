"""Batch transform jobs: each runs in its own thread, InProgress to Completed, Failed or Stopped.

A job starts the model's containers as an endpoint's are started (``deployment.prepare_model``:
model data and code fetched under the model's execution role; an inference pipeline's
containers in order), with the environment SageMaker gives a transform container
(``SAGEMAKER_BATCH`` and the payload settings, then the job's ``Environment``). It lists the
input objects (every object under the S3Prefix, or those a ManifestFile names) and, one object
after another: splits it into records (``SplitType`` Line; None sends the object whole), applies
the InputFilter to each CSV record, packs mini-batches up to ``MaxPayloadInMB`` (MultiRecord) or
sends one record each (SingleRecord), at most ``MaxConcurrentTransforms`` requests at once,
through the containers as the endpoint serves them (``hosting.invoke_pipeline``), joins the
input to the output (JoinSource Input) and applies the OutputFilter, then writes
``<S3OutputPath>/<key relative to the input prefix>.out`` (records one per line with
AssembleWith Line). As in SageMaker, an object's output is written only when all of it was
transformed. An object the containers fail on gets no output and the job goes on with the
others, then ends Failed with the first such object's FailureReason: a container's error status
(``ClientError`` for 4xx, ``AlgorithmError`` for 5xx and timeouts, after
``InvocationsMaxRetries`` retries of the latter). An S3 call the execution role may not make
fails the job at once. The job's log goes to ``/aws/sagemaker/TransformJobs`` (stream ``<job>/<instance id>-<epoch>``).
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import faults, telemetry
from stepml.local.sagemaker.context import EngineContext, wait_for_status
from stepml.local.sagemaker.deployment import Variant, prepare_model, wait_healthy
from stepml.local.sagemaker.errors import (
    DeploymentFailedError,
    LocalSageMakerError,
    ResourceInUseError,
    ResourceNotFoundError,
    SageMakerValidationError,
)
from stepml.local.sagemaker.hosting import invoke_pipeline
from stepml.local.sagemaker.model_server import ModelServer, ModelServerError
from stepml.local.sagemaker.transform_validation import (
    DEFAULT_MAX_PAYLOAD_MB,
    CsvFilter,
    FilterError,
    join_csv_record,
    parse_filter,
    split_csv_record,
    validate_transform_request,
)
from stepml.local.sagemaker.validation import arn, truncate_reason
from stepml.utils import split_s3_uri, utc_now

LOGGER = logging.getLogger(__name__)

TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
TERMINAL_TRANSFORM_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
#: SageMaker's defaults for a transform job's invocations (ModelClientConfig).
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 600
DEFAULT_INVOCATION_RETRIES = 3


class TransformFailedError(Exception):
    """Ends a transform job as Failed; the message is the FailureReason."""


class TransformStoppedError(Exception):
    """Ends a transform job as Stopped."""


@dataclass(frozen=True)
class TransformJobView:
    """What DescribeTransformJob reports of a job's state at one moment."""

    name: str
    status: str
    failure_reason: str | None
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None

    def as_api(self) -> dict[str, Any]:
        """DescribeTransformJob members for the job's state."""
        response: dict[str, Any] = {"TransformJobName": self.name, "TransformJobStatus": self.status}
        if self.failure_reason:
            response["FailureReason"] = self.failure_reason
        if self.start_time:
            response["TransformStartTime"] = self.start_time
        if self.end_time:
            response["TransformEndTime"] = self.end_time
        return response


@dataclass
class TransformJob:
    """One transform job's state; ``lock`` guards what DescribeTransformJob reads."""

    key: tuple[str, str, str]
    request: dict[str, Any]
    model: dict[str, Any]
    status: str = "InProgress"
    failure_reason: str | None = None
    creation_time: datetime = field(default_factory=utc_now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.RLock = field(default_factory=threading.RLock)
    log: Any = None

    @property
    def name(self) -> str:
        return self.key[2]

    @property
    def role(self) -> str | None:
        return self.model.get("ExecutionRoleArn")

    def check(self) -> None:
        """Raise ``TransformStoppedError`` once StopTransformJob asked the job to stop."""
        if self.stop_requested.is_set():
            raise TransformStoppedError("Stopped")

    def view(self) -> TransformJobView:
        """A snapshot of the job for DescribeTransformJob."""
        with self.lock:
            return TransformJobView(
                self.name, self.status, self.failure_reason, self.creation_time, self.start_time, self.end_time
            )


@dataclass(frozen=True)
class _Plan:
    """How the job turns one input object into its output: read once from the request."""

    split_lines: bool
    multi_record: bool
    max_payload_bytes: int
    concurrency: int
    content_type: str | None
    accept: str | None
    gzip: bool
    assemble_lines: bool
    input_filter: CsvFilter
    output_filter: CsvFilter
    join_input: bool
    timeout: float
    retries: int

    @classmethod
    def of(cls, request: Mapping[str, Any]) -> _Plan:
        source = request["TransformInput"]
        output = request["TransformOutput"]
        processing = request.get("DataProcessing") or {}
        client = request.get("ModelClientConfig") or {}
        return cls(
            split_lines=source.get("SplitType", "None") == "Line",
            multi_record=request.get("BatchStrategy", "MultiRecord") == "MultiRecord",
            max_payload_bytes=int(request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)) * 1024 * 1024,
            concurrency=max(1, int(request.get("MaxConcurrentTransforms") or 1)),
            content_type=source.get("ContentType"),
            accept=output.get("Accept"),
            gzip=source.get("CompressionType", "None") == "Gzip",
            assemble_lines=output.get("AssembleWith", "None") == "Line",
            input_filter=parse_filter(processing.get("InputFilter"), "InputFilter"),
            output_filter=parse_filter(processing.get("OutputFilter"), "OutputFilter"),
            join_input=processing.get("JoinSource", "None") == "Input",
            timeout=float(client.get("InvocationsTimeoutInSeconds", DEFAULT_INVOCATION_TIMEOUT_SECONDS)),
            retries=int(client.get("InvocationsMaxRetries", DEFAULT_INVOCATION_RETRIES)),
        )

    @property
    def per_record_output(self) -> bool:
        """Whether each record's answer must be found in the response (to join or filter it)."""
        return self.join_input or self.output_filter.items is not None


class TransformJobs:
    """The engine's batch transform jobs, by (account, region, name)."""

    def __init__(self, context: EngineContext):
        self._context = context
        self._jobs: dict[tuple[str, str, str], TransformJob] = {}

    def create(
        self, request: Mapping[str, Any], model: Mapping[str, Any], *, account_id: str, region: str
    ) -> TransformJobView:
        """Validate a CreateTransformJob request and start the job in the background; ``model`` is
        the CreateModel request of its ModelName (``PrimaryContainer`` or ``Containers``)."""
        validate_transform_request(request)
        request = copy.deepcopy(dict(request))
        name = request["TransformJobName"]
        key = (account_id, region, name)
        job = TransformJob(key=key, request=request, model=copy.deepcopy(dict(model)))
        with self._context.lock:
            if self._context.closing.is_set():
                raise LocalSageMakerError("the local SageMaker engine is shut down")
            if key in self._jobs:
                raise ResourceInUseError(
                    "Job name must be unique within an AWS account and region, and a job with this name already "
                    f"exists ({arn('transform-job', name, account_id, region)})"
                )
            self._jobs[key] = job
        self._context.spawn(self._run, f"stepml-sm-transform-{name}", job)
        return job.view()

    def describe(self, name: str, *, account_id: str, region: str) -> TransformJobView | None:
        """The job's current state, or None when this engine does not run it."""
        job = self._jobs.get((account_id, region, name))
        return job.view() if job else None

    def stop(self, name: str, *, account_id: str, region: str) -> None:
        """Ask a running job to stop (status Stopping, then Stopped)."""
        job = self._jobs.get((account_id, region, name))
        if job is None:
            raise ResourceNotFoundError(
                f"Could not find transform job '{arn('transform-job', name, account_id, region)}'."
            )
        with job.lock:
            if job.status != "InProgress":
                raise SageMakerValidationError(
                    f"The request was rejected because the transform job is in status {job.status}."
                )
            job.status = "Stopping"
            job.stop_requested.set()

    def wait(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> TransformJobView:
        """Block until the job reaches Completed, Failed or Stopped (for tests and the CLI)."""
        return wait_for_status(
            lambda: self.describe(name, account_id=account_id, region=region),
            f"transform job {name}",
            TERMINAL_TRANSFORM_STATUSES,
            timeout,
        )

    def stop_all(self) -> None:
        """Ask every job to stop (the engine shuts down)."""
        with self._context.lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop_requested.set()

    # ------------------------------------------------------------------ the run

    def _run(self, job: TransformJob) -> None:
        work_dir = Path(tempfile.mkdtemp(prefix=f"transform-{job.name[:40]}-", dir=self._context.work_dir))
        instance_id = "i-" + uuid.uuid4().hex[:17]
        with job.lock:
            job.start_time = utc_now()
        assert job.start_time is not None
        job.log = telemetry.LogStream(
            self._context.client_as("logs", job.role),
            TRANSFORM_LOG_GROUP,
            f"{job.name}/{instance_id}-{int(job.start_time.timestamp())}",
            describe_first=True,
        )
        outcome: tuple[str, str | None] = ("Failed", "InternalServerError: the job did not finish")
        variant: Variant | None = None
        try:
            if failure := faults.trigger("sagemaker:TransformJob", job.name):
                raise TransformFailedError(failure)
            variant = self._start_containers(job, work_dir, instance_id)
            self._transform_all(job, variant, _Plan.of(job.request))
            outcome = ("Completed", None)
        except TransformStoppedError:
            outcome = ("Stopped", None)
        except TransformFailedError as exc:
            outcome = ("Failed", truncate_reason(str(exc)))
        except Exception as exc:  # the job must end Failed, never hang InProgress
            LOGGER.exception("local transform job %s crashed", job.name)
            outcome = ("Failed", truncate_reason(f"InternalServerError: {type(exc).__name__}: {exc}"))
        finally:
            if variant is not None:
                variant.stop()
            status, reason = outcome
            if reason:
                job.log.add(reason)
            job.log.add(f"Transform job {job.name} {status.lower()}")
            job.log.flush()  # before the job ends: whoever sees it end can read its log
            with job.lock:
                job.status, job.failure_reason, job.end_time = status, reason, utc_now()
            shutil.rmtree(work_dir, ignore_errors=True)

    def _start_containers(self, job: TransformJob, work_dir: Path, instance_id: str) -> Variant:
        """The model's containers, serving and healthy, with a transform container's environment."""
        model_name = job.request["ModelName"]
        try:
            containers = prepare_model(self._context, job.model, model_name, "transform", work_dir / "model")
        except DeploymentFailedError as exc:
            raise TransformFailedError(f"ClientError: {exc}") from exc
        servers: list[ModelServer] = []
        variant = Variant("transform", model_name, 1.0, servers, None, instance_id, job.log)
        variant.labels = [container.label for container in containers]
        try:
            for container in containers:
                environment = {**container.environment, **self._batch_environment(job.request)}
                job.log.add(f"Starting the container {container.label} of model {model_name} on {instance_id}")
                server = ModelServer(
                    container.model_dir,
                    environment=environment,
                    name=f"{job.name}-{container.label}",
                    loader=container.loader,
                )
                servers.append(server.start())
            wait_healthy(self._context, lambda: not job.stop_requested.is_set(), [variant])
        except (ModelServerError, DeploymentFailedError) as exc:
            variant.stop()
            job.check()
            raise TransformFailedError(f"ClientError: the model's containers did not start: {exc}") from exc
        return variant

    @staticmethod
    def _batch_environment(request: Mapping[str, Any]) -> dict[str, str]:
        """What SageMaker sets in a transform container, then the job's own Environment."""
        return {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)),
            "SAGEMAKER_BATCH_STRATEGY": str(request.get("BatchStrategy", "MultiRecord"))
            .upper()
            .replace("RECORD", "_RECORD"),
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(request.get("MaxConcurrentTransforms") or 1),
            **{str(k): str(v) for k, v in (request.get("Environment") or {}).items()},
        }

    def _transform_all(self, job: TransformJob, variant: Variant, plan: _Plan) -> None:
        s3 = self._context.client_as("s3", job.role)
        output_bucket, output_prefix = split_s3_uri(job.request["TransformOutput"]["S3OutputPath"])
        output_prefix = output_prefix.rstrip("/")
        count, failures = 0, []
        for bucket, key, relative in self._inputs(job, s3):
            job.check()
            uri = f"s3://{bucket}/{key}"
            target = f"{output_prefix}/{relative}.out" if output_prefix else f"{relative}.out"
            body = self._read(s3, uri, plan)
            try:
                transformed = self._transform_object(job, variant, plan, uri, body)
            except TransformFailedError as exc:
                # AWS's "Use Batch Transform" page: with several input files the job goes on past a
                # file it fails to process, whose output is not written; the others still give results.
                # (An S3 read or write the role may not make still ends the job at once.)
                job.log.add(str(exc))
                failures.append(exc)
                continue
            self._write(job, s3, output_bucket, target, transformed)
            job.log.add(f"Transformed {uri} into s3://{output_bucket}/{target}")
            count += 1
        job.log.add(f"Transformed {count} input object(s)")
        if failures:
            # INFERRED: the job ends Failed with the first file's reason (AWS documents no wording for several).
            raise failures[0]

    def _inputs(self, job: TransformJob, s3: Any) -> Iterator[tuple[str, str, str]]:
        """(bucket, key, key relative to the input prefix) of every input object, in key order."""
        source = job.request["TransformInput"]["DataSource"]["S3DataSource"]
        uri = source["S3Uri"]
        if source["S3DataType"] == "ManifestFile":
            yield from self._manifest(s3, uri, job.role)
            return
        bucket, prefix = split_s3_uri(uri)
        # Outputs keep the input's path below the prefix's last folder.
        folder = prefix[: prefix.rfind("/") + 1]
        keys: list[str] = []
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        except (ClientError, BotoCoreError) as exc:
            raise TransformFailedError(
                f"ClientError: Failed to list the input objects under {uri}: {_s3_error(exc)}"
            ) from exc
        if not keys:
            raise TransformFailedError(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure '
                f"that the bucket exists in the selected region, that objects exist under that S3 prefix, and that "
                f'the role "{job.role}" has "s3:ListBucket" permissions on bucket "{bucket}".'
            )
        for key in sorted(keys):
            yield bucket, key, key[len(folder) :]

    def _manifest(self, s3: Any, uri: str, role: str | None) -> Iterator[tuple[str, str, str]]:
        bucket, key = split_s3_uri(uri)
        try:
            entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            base_bucket, base = split_s3_uri(entries[0]["prefix"])
            relatives = [str(entry) for entry in entries[1:]]
        except (ClientError, BotoCoreError) as exc:
            raise TransformFailedError(f"ClientError: Failed to read the manifest {uri}: {_s3_error(exc)}") from exc
        except (ValueError, KeyError, IndexError, TypeError, LocalSageMakerError) as exc:
            raise TransformFailedError(
                f'ClientError: The manifest {uri} is not a JSON array [{{"prefix": "s3://..."}}, "key", ...]: {exc}'
            ) from exc
        for relative in relatives:
            yield base_bucket, base + relative, relative

    @staticmethod
    def _read(s3: Any, uri: str, plan: _Plan) -> bytes:
        bucket, key = split_s3_uri(uri)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise TransformFailedError(f"ClientError: Failed to download the input {uri}: {_s3_error(exc)}") from exc
        if plan.gzip:
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise TransformFailedError(
                    f"ClientError: {uri} is not gzip data (CompressionType Gzip): {exc}"
                ) from exc
        return body

    def _write(self, job: TransformJob, s3: Any, bucket: str, key: str, body: bytes) -> None:
        kms = job.request["TransformOutput"].get("KmsKeyId")
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms} if kms else {}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise TransformFailedError(
                f"ClientError: Failed to upload the output s3://{bucket}/{key}: {_s3_error(exc)}"
            ) from exc

    # ------------------------------------------------------------------ one object

    def _transform_object(self, job: TransformJob, variant: Variant, plan: _Plan, uri: str, body: bytes) -> bytes:
        records = _records(body, plan, uri)
        if not records:
            # The docs are silent on an object without records (Spark's _SUCCESS marker): "If the batch
            # transform job successfully processes all of the records in an input file, it creates an output
            # file with the same name and the .out file extension" (Use Batch Transform,
            # https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html). None failed, so an empty
            # .out, without a request to the container; INFERRED, kept as decided.
            return b""
        batches = list(_batches(records, plan, uri))

        def send(batch: list[tuple[bytes, bytes]]) -> bytes:
            job.check()
            payload = b"\n".join(sent for _, sent in batch) + (b"\n" if plan.split_lines else b"")
            return self._invoke(variant, plan, payload, uri)

        with ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix=f"stepml-sm-tx-{job.name}") as pool:
            answers = list(pool.map(send, batches))
        outputs = [_per_record(batch, answer, plan, uri) for batch, answer in zip(batches, answers, strict=True)]
        if plan.assemble_lines:
            lines = [line for output in outputs for line in output.splitlines() if line.strip()]
            return b"\n".join(lines) + b"\n"
        return b"".join(outputs)

    @staticmethod
    def _invoke(variant: Variant, plan: _Plan, payload: bytes, uri: str) -> bytes:
        for attempt in range(plan.retries + 1):
            status, answer, _, container = invoke_pipeline(
                variant, payload, plan.content_type, plan.accept, None, timeout=plan.timeout
            )
            if 200 <= status < 300:
                return answer
            if 400 <= status < 500 or attempt == plan.retries:
                break
        message = answer.decode("utf-8", errors="replace")
        if variant.log is not None:
            variant.log.add(f"POST /invocations answered {status} for a mini-batch of {uri}: {message}")
        kind = "ClientError" if 400 <= status < 500 else "AlgorithmError"
        raise TransformFailedError(
            f"{kind}: Bad HTTP status received from algorithm: {status or 'timeout'} (container {container}) for "
            f'a mini-batch of {uri}: "{message}". See job logs for more information.'
        )


def _records(body: bytes, plan: _Plan, uri: str) -> list[tuple[bytes, bytes]]:
    """(the record as read, the record as sent after the InputFilter) of each record of an object."""
    if not plan.split_lines:
        return [(body, body)] if body else []
    records = []
    for line in body.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        sent = line
        if plan.input_filter.items is not None:
            sent = _filtered(line, plan.input_filter, uri, "InputFilter")
        records.append((line, sent))
    return records


def _filtered(record: bytes, selector: CsvFilter, uri: str, member: str) -> bytes:
    try:
        if b'"' not in record:
            # No quoting: the cells are the comma-separated bytes (the common case, and 10x faster).
            return b",".join(selector.apply(record.split(b",")))
        cells = split_csv_record(record.decode("utf-8"))
        return join_csv_record(selector.apply(cells)).encode("utf-8")
    except (FilterError, UnicodeDecodeError) as exc:
        raise TransformFailedError(f"ClientError: DataProcessing.{member} failed on a record of {uri}: {exc}") from exc


def _batches(records: list[tuple[bytes, bytes]], plan: _Plan, uri: str) -> Iterator[list[tuple[bytes, bytes]]]:
    """Mini-batches: one record each (SingleRecord), or as many as fit in MaxPayloadInMB."""
    batch: list[tuple[bytes, bytes]] = []
    size = 0
    for record in records:
        length = len(record[1]) + 1
        if length > plan.max_payload_bytes:
            raise TransformFailedError(
                f"ClientError: A record of {uri} is {length} bytes, larger than MaxPayloadInMB "
                f"({plan.max_payload_bytes // (1024 * 1024)} MB): raise MaxPayloadInMB or split the records."
            )
        if batch and (not plan.multi_record or size + length > plan.max_payload_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += length
    if batch:
        yield batch


def _per_record(batch: list[tuple[bytes, bytes]], answer: bytes, plan: _Plan, uri: str) -> bytes:
    """A mini-batch's output: the answer itself, or per record joined to its input and filtered."""
    if not plan.per_record_output:
        return answer
    lines = [line.rstrip(b"\r") for line in answer.split(b"\n") if line.strip()]
    if len(lines) != len(batch):
        raise TransformFailedError(
            f"ClientError: The model answered {len(lines)} record(s) for a mini-batch of {len(batch)} record(s) of "
            f"{uri}: batch transform cannot join the output to the input records."
        )
    joined = []
    for (original, _), line in zip(batch, lines, strict=True):
        row = (original + b"," + line) if plan.join_input else line
        joined.append(
            _filtered(row, plan.output_filter, uri, "OutputFilter") if plan.output_filter.items is not None else row
        )
    return b"\n".join(joined) + b"\n"


def _s3_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc)
