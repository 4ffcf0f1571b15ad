"""The local Glue engine: a job run executes its script on local PySpark.

moto records job runs and reports them SUCCEEDED without running anything. Here a run
executes the job's script in a worker process with the job's default arguments merged with the
run's (moto already merges them), as Glue passes them (``--name value``). Spark's s3a
connector cannot be installed here, so every ``s3://`` argument is staged: objects are
downloaded to a local mirror before the run, and files the script wrote under an ``s3://``
prefix argument are uploaded after it. An argument naming a single object is never uploaded
back, so the input object stays unchanged. An object argument ``--NAME_uri`` with a
``--NAME_version_id`` beside it is staged at that version (GetObject with VersionId), as the
script on Glue reads the recorded version of its input and not the newest one. GetJobRun
reports the real state, error message and timing; a failing script gives FAILED with its error.

As in Glue, a run acts under the job's role: it reads its script from the job's
``ScriptLocation`` in S3 (where ``sam package`` put it), stages data, writes its logs to
CloudWatch Logs (``RunLogs``) and, with ``--enable-metrics``, publishes job metrics in the
``Glue`` namespace. Files under an output prefix that the script deleted (Spark's
``mode("overwrite")`` replaces a path's contents) are deleted from S3 too.

Scripts run in long-lived worker processes (``stepml.local.glue.worker``), one run at a time each, so a
run after the first reuses a warm Spark driver: Spark's start-up and JIT warm-up are paid
once per worker, not once per run. ``warm_up`` pays them before the first upload.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepml.local import faults, telemetry
from stepml.local.glue.errors import GlueEngineError, _RunFailure
from stepml.local.glue.logs import LogEncryption, RunLogs, _enabled
from stepml.local.glue.worker import IdleWorkers, ScriptWorker
from stepml.utils import split_s3_uri

_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
#: Arguments that are scratch space, not data: staged locally, never uploaded.
SCRATCH_ARGUMENTS = frozenset({"--TempDir"})
#: The session name of a job run's calls under the job role.
GLUE_SESSION = "GlueJobRunnerSession"
#: The namespace of Glue's job metrics.
METRICS_NAMESPACE = "Glue"


def _unreadable(what: str, exc: ClientError, needs: str) -> GlueEngineError:
    """S3's refusal to stage ``what`` in, naming it. A refused HEAD (download_file's first call) has
    no body, so S3's bare 403 is spelt out as the AccessDenied it is."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code"), error.get("Message")
    if code in ("403", "Forbidden"):
        code, message = "AccessDenied", f"403 Forbidden: the job role may not read it ({needs})"
    return GlueEngineError(f"{what} cannot be read: {code}: {message}")


@dataclass
class _RunMeasures:
    """What a run's job metrics report."""

    bytes_read: int = 0
    bytes_written: int = 0
    script_seconds: float | None = None


@dataclass
class JobRunRecord:
    """What GetJobRun reports for a run the engine executed."""

    run_id: str
    job_name: str
    state: str = "RUNNING"
    error_message: str | None = None
    started_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_on: datetime | None = None
    log_file: Path | None = None
    #: The job's role: the run stages data and its script calls AWS under it.
    role_arn: str | None = None

    @property
    def execution_seconds(self) -> int:
        end = self.completed_on or datetime.now(UTC)
        return int((end - self.started_on).total_seconds())


def _version_of(name: str, arguments: Mapping[str, str]) -> str | None:
    """The object version an ``--X_uri`` argument names in ``--X_version_id`` (None: the newest)."""
    if not name.endswith("_uri"):
        return None
    version = arguments.get(name.removesuffix("_uri") + "_version_id")
    return version if isinstance(version, str) and version not in ("", "null") else None


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _fault_subject(job_name: str, arguments: Mapping[str, str]) -> str:
    """What a glue fault's MATCH is looked up in: the job name and its run's arguments."""
    return " ".join([job_name, *(f"{name}={value}" for name, value in arguments.items())])


def error_message_from_log(text: str) -> str:
    """The error Glue would report: the last ``SomethingError: message`` line of the run's output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _ERROR_LINE.match(line)
        if found and not line.startswith(("py4j", "at ")):
            return f"{found.group(1)}: {found.group(2)}"
    return lines[-1] if lines else "the job script failed without output"


def _default_client(service: str, **credentials: str) -> Any:
    return boto3.client(service, **credentials)


def _head_output_path(s3: Any, bucket: str, key: str) -> None:
    """Look an output path up as Hadoop's getFileStatus does; absent is fine, refused is not."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if telemetry.error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise


class GlueEngine:
    """Runs registered jobs' scripts for real; at most ``max_concurrent`` runs at once, each in
    one of up to ``max_concurrent`` long-lived worker processes."""

    def __init__(
        self,
        s3_client_factory: Callable[[], Any],
        work_dir: Path,
        *,
        environment: Mapping[str, str] | None = None,
        max_concurrent: int = 2,
        principals: Any = None,
        client_factory: Callable[..., Any] | None = None,
        log_flush_seconds: float = 2.0,
        idle_workers: IdleWorkers | None = None,
    ):
        self.s3_client_factory = s3_client_factory
        #: ``client_factory(service, **credentials)``: the clients of a run's logs and metrics.
        self.client_factory = client_factory or _default_client
        #: How often a running job's new log lines go to CloudWatch Logs.
        self.log_flush_seconds = log_flush_seconds
        #: ``stepml.local.iam.gate.Principals``: runs act under their job's role, as in Glue.
        self.principals = principals
        self.work_dir = Path(work_dir)
        self.environment = dict(environment or {})
        self.scripts: dict[str, Path] = {}
        self.runs: dict[str, JobRunRecord] = {}
        self._slots = threading.Semaphore(max_concurrent)
        self._lock = threading.Lock()
        self._idle: list[ScriptWorker] = []
        self._busy: set[ScriptWorker] = set()
        self._workers_started = 0
        self._closed = False
        #: Where idle workers go when the engine closes, and where it looks before starting one.
        self.idle_workers = idle_workers

    def register_job(self, name: str, script: Path) -> None:
        self.scripts[name] = Path(script)

    # -- staging -----------------------------------------------------------------------

    def _stage_in(self, s3: Any, uri: str, mirror: Path, version_id: str | None = None) -> tuple[Path, bool, int]:
        """Download an object (at ``version_id`` when given) or a prefix; returns (local path,
        is_prefix, bytes read)."""
        bucket, key = split_s3_uri(uri)
        local = mirror / bucket / key
        if version_id:
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                s3.download_file(bucket, key, str(local), ExtraArgs={"VersionId": version_id})
            except ClientError as exc:
                raise _unreadable(f"{uri}: version {version_id}", exc, "s3:GetObjectVersion") from exc
            return local, False, local.stat().st_size
        if key and not key.endswith("/"):
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(local))
                return local, False, local.stat().st_size
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                    raise _unreadable(uri, exc, "s3:GetObject") from exc
        local.mkdir(parents=True, exist_ok=True)
        prefix = key if key.endswith("/") or not key else key + "/"
        read = 0
        paginator = s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    target = mirror / bucket / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, item["Key"], str(target))
                    read += int(item.get("Size", 0))
        except ClientError as exc:
            raise _unreadable(f"s3://{bucket}/{prefix}", exc, "s3:ListBucket and s3:GetObject") from exc
        return local, True, read

    def _stage_out(self, s3: Any, local: Path, uri: str, before: dict[Path, tuple[int, int]]) -> int:
        """Make the prefix hold what the script left in its local copy; returns bytes written.

        Objects that were staged in and are gone now were deleted by the script (Spark's
        ``mode("overwrite")`` deletes a path's contents before writing it), so they are deleted
        from S3 too. Before writing a path, Hadoop's S3 file systems look it up (getFileStatus:
        HEAD, which needs s3:GetObject); so does the stage-out, for each top-level path written.
        """
        bucket, key = split_s3_uri(uri)
        prefix = key if key.endswith("/") or not key else key + "/"
        current = _snapshot(local)
        for path in sorted(set(before) - set(current)):
            s3.delete_object(Bucket=bucket, Key=prefix + path.relative_to(local).as_posix())
        written = [
            path
            for path, signature in sorted(current.items())
            if before.get(path) != signature and not path.name.startswith(".") and not path.name.endswith(".crc")
        ]
        for top in sorted({path.relative_to(local).parts[0] for path in written}):
            _head_output_path(s3, bucket, prefix + top)
        size = 0
        for path in written:
            relative = path.relative_to(local).as_posix()
            s3.upload_file(str(path), bucket, prefix + relative, ExtraArgs={"ServerSideEncryption": "AES256"})
            size += current[path][0]
        return size

    def _fetch_script(self, s3: Any, location: str | None, folder: Path) -> Path:
        """The job's script, read from its ScriptLocation in S3 under the job role, as Glue does."""
        if not location or not location.startswith("s3://"):
            raise _RunFailure(
                f"Error downloading script: ScriptLocation {location!r} is not an Amazon S3 path (s3://bucket/key)"
            )
        bucket, key = split_s3_uri(location)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", error.get("Code"))
            raise _RunFailure(
                f"Error downloading script: fatal error: An error occurred ({status}) when calling the GetObject "
                f"operation: {error.get('Message') or error.get('Code')}"
            ) from exc
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / (PurePosixPath(key).name or "script.py")
        script.write_bytes(body)
        return script

    # -- running -----------------------------------------------------------------------

    def start(
        self,
        job_name: str,
        run_id: str,
        arguments: Mapping[str, str],
        timeout_minutes: int | None,
        role_arn: str | None = None,
        *,
        script_location: str | None = None,
        glue_version: str | None = None,
        log_encryption: LogEncryption | None = None,
    ) -> JobRunRecord:
        """Start a run of the script at ``script_location`` in the background and return its record."""
        if job_name not in self.scripts:
            raise GlueEngineError(f"job {job_name!r} has no script registered with the local Glue engine")
        record = JobRunRecord(run_id=run_id, job_name=job_name, role_arn=role_arn)
        with self._lock:
            self.runs[run_id] = record
        failure = faults.trigger("glue:JobRun", _fault_subject(job_name, arguments))
        if failure:  # the run ends FAILED before its script starts
            record.error_message, record.completed_on, record.state = failure, datetime.now(UTC), "FAILED"
            return record
        thread = threading.Thread(
            target=self._run,
            args=(record, dict(arguments), timeout_minutes, script_location, glue_version, log_encryption),
            name=f"glue-{run_id[:12]}",
            daemon=True,
        )
        thread.start()
        return record

    def _run(
        self,
        record: JobRunRecord,
        arguments: dict[str, str],
        timeout_minutes: int | None,
        script_location: str | None,
        glue_version: str | None,
        log_encryption: LogEncryption | None = None,
    ) -> None:
        run_dir = self.work_dir / record.run_id
        mirror = run_dir / "s3"
        record.log_file = run_dir / "run.log"
        record.log_file.parent.mkdir(parents=True, exist_ok=True)
        state, error = "FAILED", None
        client_kwargs: dict[str, str] = {}
        logs: RunLogs | None = None
        measures = _RunMeasures()
        try:
            with self._slots:
                credentials = self._role_credentials(record.role_arn)
                client_kwargs = credentials.client_kwargs() if credentials else {}
                s3 = self.s3_client_factory(**client_kwargs)
                logs = RunLogs(
                    self.client_factory("logs", **client_kwargs),
                    record.run_id,
                    record.log_file,
                    arguments,
                    glue_version,
                    self.log_flush_seconds,
                    role_arn=record.role_arn,
                    encryption=log_encryption,
                )
                state, error = self._execute(
                    record, arguments, timeout_minutes, script_location, s3, mirror, logs, measures, credentials
                )
        except _RunFailure as exc:
            state, error = "FAILED", str(exc)
        except Exception as exc:
            state = "STOPPED" if self._closed else "FAILED"
            error = f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(mirror, ignore_errors=True)
            # Logs and metrics are written before the run ends: whoever sees it end can read them.
            if logs is not None:
                logs.close(state, error)
            if measures.script_seconds is not None and _enabled(arguments.get("--enable-metrics")):
                self._publish_metrics(record, measures, client_kwargs)
            record.error_message = error
            record.completed_on = datetime.now(UTC)
            record.state = state

    def _execute(
        self,
        record: JobRunRecord,
        arguments: dict[str, str],
        timeout_minutes: int | None,
        script_location: str | None,
        s3: Any,
        mirror: Path,
        logs: RunLogs,
        measures: _RunMeasures,
        credentials: Any,
    ) -> tuple[str, str | None]:
        """Fetch the script, stage in, run, stage out: the run's final state and error message."""
        run_dir = mirror.parent
        logs.system(f"Job run {record.run_id} of job {record.job_name} started; script {script_location}")
        script = self._fetch_script(s3, script_location, run_dir / "script")
        local_arguments: dict[str, str] = {}
        outputs: list[tuple[Path, str, dict[Path, tuple[int, int]]]] = []
        for name, value in arguments.items():
            if isinstance(value, str) and value.startswith("s3://"):
                local, is_prefix, read = self._stage_in(s3, value, mirror, _version_of(name, arguments))
                measures.bytes_read += read
                local_arguments[name] = str(local) + ("/" if is_prefix else "")
                if is_prefix and name not in SCRATCH_ARGUMENTS:
                    outputs.append((local, value, _snapshot(local)))
            else:
                local_arguments[name] = value
        argv = ["--JOB_NAME", record.job_name, "--JOB_RUN_ID", record.run_id]
        for name, value in local_arguments.items():
            argv += [name if name.startswith("--") else f"--{name}", value]
        started = time.monotonic()
        try:
            returncode = self._run_script(
                script,
                argv,
                run_dir,
                record.log_file,
                (timeout_minutes or 2880) * 60,
                credentials.environment() if credentials else None,
            )
        except subprocess.TimeoutExpired:
            return "TIMEOUT", f"Job run timed out after {timeout_minutes} minutes"
        finally:
            measures.script_seconds = time.monotonic() - started
        if self._closed:
            return "STOPPED", "The local cloud stopped during the run"
        if returncode != 0:
            message = error_message_from_log(record.log_file.read_text(errors="replace"))
            # The script saw staged copies; its error names the objects as on AWS.
            return "FAILED", message.replace(f"{mirror}/", "s3://")
        for local, uri, before in outputs:
            measures.bytes_written += self._stage_out(s3, local, uri, before)
        return "SUCCEEDED", None

    def _publish_metrics(self, record: JobRunRecord, measures: _RunMeasures, client_kwargs: Mapping[str, str]) -> None:
        """A few of Glue's job metrics (``--enable-metrics``), for the run and for ALL runs of the job."""
        now = datetime.now(UTC)
        values = [
            ("glue.driver.aggregate.elapsedTime", "count", (measures.script_seconds or 0) * 1000, "Milliseconds"),
            ("glue.ALL.s3.filesystem.read_bytes", "gauge", measures.bytes_read, "Bytes"),
            ("glue.ALL.s3.filesystem.write_bytes", "gauge", measures.bytes_written, "Bytes"),
        ]
        data = [
            {
                "MetricName": name,
                "Dimensions": [
                    {"Name": "JobName", "Value": record.job_name},
                    {"Name": "JobRunId", "Value": run},
                    {"Name": "Type", "Value": kind},
                ],
                "Timestamp": now,
                "Value": float(value),
                "Unit": unit,
            }
            for run in (record.run_id, "ALL")
            for name, kind, value, unit in values
        ]
        telemetry.put_metrics(self.client_factory("cloudwatch", **client_kwargs), METRICS_NAMESPACE, data)

    # -- workers -----------------------------------------------------------------------

    def _worker_environment(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.environment,
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }

    def _take_worker(self) -> ScriptWorker:
        with self._lock:
            if self._closed:
                raise GlueEngineError("the local Glue engine is stopped")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    self._busy.add(worker)
                    return worker
                worker.stop()
            kept = self.idle_workers.take() if self.idle_workers is not None else None
            if kept is not None:
                self._busy.add(kept)
                return kept
            self._workers_started += 1
            number = self._workers_started
            worker = ScriptWorker(self._worker_environment(), self.work_dir / "workers" / f"driver-{number}.log")
            self._busy.add(worker)
            return worker

    def _return_worker(self, worker: ScriptWorker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if worker.alive and not self._closed:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                return
        worker.stop()

    def reap_idle(self, idle_seconds: float, now: float | None = None) -> int:
        """Stop the idle workers unused for ``idle_seconds`` (``stepml.local.idle``); a running
        one is never touched, and the next run starts a new one. Returns how many it stopped."""
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [worker for worker in self._idle if now - worker.idle_since >= idle_seconds]
            self._idle = [worker for worker in self._idle if worker not in stale]
        for worker in stale:
            worker.stop()
        return len(stale)

    def _role_credentials(self, role_arn: str | None) -> Any:
        """The job role's session credentials (Glue's session name), or None without local IAM."""
        if self.principals is None or not role_arn:
            return None
        return self.principals.credentials(role_arn, GLUE_SESSION)

    def _run_script(
        self,
        script: Path,
        argv: list[str],
        cwd: Path,
        log: Path,
        timeout_seconds: float,
        environment: Mapping[str, str] | None = None,
    ) -> int:
        worker = self._take_worker()
        # The cloud's endpoint with every run: a kept worker may have been started for another cloud.
        environment = {**self.environment, **(environment or {})}
        try:
            return worker.run(script, argv, cwd, log, timeout_seconds, environment)
        finally:
            self._return_worker(worker)

    def warm_up(self, job_name: str, arguments: Mapping[str, str], workers: int = 1) -> threading.Thread:
        """In the background, run ``job_name`` once on local ``arguments`` in ``workers`` workers,
        so the first real run finds a warm Spark driver. Runs hold their slot while warming, so a
        real run waits for a warm worker instead of starting a cold one beside it."""

        def warm(number: int) -> None:
            folder = self.work_dir / "warm-up" / str(number)
            folder.mkdir(parents=True, exist_ok=True)
            argv = ["--JOB_NAME", job_name, "--JOB_RUN_ID", f"warm-up-{number}"]
            for name, value in arguments.items():
                argv += [name if name.startswith("--") else f"--{name}", value.replace("{n}", str(number))]
            with self._slots:
                if self._closed:
                    return
                self._run_script(self.scripts[job_name], argv, folder, folder / "run.log", 600)

        def warm_all() -> None:
            threads = [threading.Thread(target=warm, args=(n,), daemon=True) for n in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        thread = threading.Thread(target=warm_all, name="glue-warm-up", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop every running worker and every idle one, or hand the idle ones to ``idle_workers``
        (the local cloud is shutting down)."""
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for worker in busy:
            worker.stop()
        for worker in idle:
            if self.idle_workers is not None:
                self.idle_workers.keep(worker)
            else:
                worker.stop()

    def wait(self, run_id: str, timeout: float = 300) -> JobRunRecord:
        """Block until a run ends (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        record = self.runs[run_id]
        while record.state == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        return record
