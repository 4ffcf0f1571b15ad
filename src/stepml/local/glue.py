"""Glue for the local cloud: StartJobRun runs the job's script on local PySpark.

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

Scripts run in long-lived worker processes (``glue_worker``), one run at a time each, so a
run after the first reuses a warm Spark driver: Spark's start-up and JIT warm-up are paid
once per worker, not once per run. ``warm_up`` pays them before the first upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stepml.local import faults

_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
#: Arguments that are scratch space, not data: staged locally, never uploaded.
SCRATCH_ARGUMENTS = frozenset({"--TempDir"})
#: The session name of a job run's calls under the job role.
GLUE_SESSION = "GlueJobRunnerSession"


class GlueEngineError(RuntimeError):
    """A job is unknown to the local Glue engine."""


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


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


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


class _ScriptWorker:
    """A ``glue_worker`` process: runs one script at a time, keeps its Spark driver warm."""

    def __init__(self, environment: Mapping[str, str], log_file: Path):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # The JVM's own output (Spark's log4j lines) goes here; each run's output goes to its log.
        self._jvm_log = open(log_file, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stepml.local.glue_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._jvm_log,
            env=dict(environment),
            cwd=log_file.parent,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def run(
        self,
        script: Path,
        argv: list[str],
        cwd: Path,
        log: Path,
        timeout_seconds: float,
        environment: Mapping[str, str] | None = None,
    ) -> int:
        """Run ``script`` with ``argv`` (and ``environment`` set for this run only); its exit code.
        Raises TimeoutExpired (and stops) on timeout."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {
            "script": str(script),
            "argv": argv,
            "cwd": str(cwd),
            "log": str(log),
            "environment": dict(environment or {}),
        }
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return self._exit_code_of_dead_worker(log)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_seconds)
        if not ready:
            self.stop()
            raise subprocess.TimeoutExpired(str(script), timeout_seconds)
        line = self.process.stdout.readline()
        if not line:
            return self._exit_code_of_dead_worker(log)
        return int(json.loads(line)["exit_code"])

    def _exit_code_of_dead_worker(self, log: Path) -> int:
        code = self.process.wait()
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\nRuntimeError: the job's driver process exited with code {code}\n")
        return code or 1

    def stop(self) -> None:
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._jvm_log.close()


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
    ):
        self.s3_client_factory = s3_client_factory
        #: ``stepml.local.iam.gate.Principals``: runs act under their job's role, as in Glue.
        self.principals = principals
        self.work_dir = Path(work_dir)
        self.environment = dict(environment or {})
        self.scripts: dict[str, Path] = {}
        self.runs: dict[str, JobRunRecord] = {}
        self._slots = threading.Semaphore(max_concurrent)
        self._lock = threading.Lock()
        self._idle: list[_ScriptWorker] = []
        self._busy: set[_ScriptWorker] = set()
        self._workers_started = 0
        self._closed = False

    def register_job(self, name: str, script: Path) -> None:
        self.scripts[name] = Path(script)

    # -- staging -----------------------------------------------------------------------

    def _stage_in(self, s3: Any, uri: str, mirror: Path, version_id: str | None = None) -> tuple[Path, bool]:
        """Download an object (at ``version_id`` when given) or a prefix; returns (local path, is_prefix)."""
        bucket, key = _split_s3(uri)
        local = mirror / bucket / key
        if version_id:
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                s3.download_file(bucket, key, str(local), ExtraArgs={"VersionId": version_id})
            except ClientError as exc:
                error = exc.response["Error"]
                raise GlueEngineError(
                    f"{uri}: version {version_id} cannot be read: {error.get('Code')}: {error.get('Message')}"
                ) from exc
            return local, False
        if key and not key.endswith("/"):
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(local))
                return local, False
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                    raise
        local.mkdir(parents=True, exist_ok=True)
        prefix = key if key.endswith("/") or not key else key + "/"
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = mirror / bucket / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
        return local, True

    def _stage_out(self, s3: Any, local: Path, uri: str, before: dict[Path, tuple[int, int]]) -> int:
        bucket, key = _split_s3(uri)
        prefix = key if key.endswith("/") or not key else key + "/"
        uploaded = 0
        for path, signature in sorted(_snapshot(local).items()):
            if before.get(path) == signature or path.name.startswith(".") or path.name.endswith(".crc"):
                continue
            relative = path.relative_to(local).as_posix()
            s3.upload_file(str(path), bucket, prefix + relative, ExtraArgs={"ServerSideEncryption": "AES256"})
            uploaded += 1
        return uploaded

    # -- running -----------------------------------------------------------------------

    def start(
        self,
        job_name: str,
        run_id: str,
        arguments: Mapping[str, str],
        timeout_minutes: int | None,
        role_arn: str | None = None,
    ) -> JobRunRecord:
        """Start a run in the background and return its record."""
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
            target=self._run, args=(record, dict(arguments), timeout_minutes), name=f"glue-{run_id[:12]}", daemon=True
        )
        thread.start()
        return record

    def _run(self, record: JobRunRecord, arguments: dict[str, str], timeout_minutes: int | None) -> None:
        run_dir = self.work_dir / record.run_id
        mirror = run_dir / "s3"
        record.log_file = run_dir / "run.log"
        try:
            with self._slots:
                credentials = self._role_credentials(record.role_arn)
                s3 = self.s3_client_factory(**(credentials.client_kwargs() if credentials else {}))
                local_arguments: dict[str, str] = {}
                outputs: list[tuple[Path, str, dict[Path, tuple[int, int]]]] = []
                for name, value in arguments.items():
                    if isinstance(value, str) and value.startswith("s3://"):
                        local, is_prefix = self._stage_in(s3, value, mirror, _version_of(name, arguments))
                        local_arguments[name] = str(local) + ("/" if is_prefix else "")
                        if is_prefix and name not in SCRATCH_ARGUMENTS:
                            outputs.append((local, value, _snapshot(local)))
                    else:
                        local_arguments[name] = value
                argv = ["--JOB_NAME", record.job_name, "--JOB_RUN_ID", record.run_id]
                for name, value in local_arguments.items():
                    argv += [name if name.startswith("--") else f"--{name}", value]
                record.log_file.parent.mkdir(parents=True, exist_ok=True)
                returncode = self._run_script(
                    self.scripts[record.job_name],
                    argv,
                    run_dir,
                    record.log_file,
                    (timeout_minutes or 2880) * 60,
                    credentials.environment() if credentials else None,
                )
                if self._closed:
                    record.state = "STOPPED"
                    record.error_message = "The local cloud stopped during the run"
                    return
                if returncode != 0:
                    message = error_message_from_log(record.log_file.read_text(errors="replace"))
                    # The script saw staged copies; its error names the objects as on AWS.
                    record.error_message = message.replace(f"{mirror}/", "s3://")
                    record.state = "FAILED"
                    return
                for local, uri, before in outputs:
                    self._stage_out(s3, local, uri, before)
                record.state = "SUCCEEDED"
        except subprocess.TimeoutExpired:
            record.state = "TIMEOUT"
            record.error_message = f"Job run timed out after {timeout_minutes} minutes"
        except Exception as exc:
            record.state = "STOPPED" if self._closed else "FAILED"
            record.error_message = f"{type(exc).__name__}: {exc}"
        finally:
            record.completed_on = datetime.now(UTC)
            shutil.rmtree(mirror, ignore_errors=True)

    # -- workers -----------------------------------------------------------------------

    def _worker_environment(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.environment,
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }

    def _take_worker(self) -> _ScriptWorker:
        with self._lock:
            if self._closed:
                raise GlueEngineError("the local Glue engine is stopped")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    self._busy.add(worker)
                    return worker
                worker.stop()
            self._workers_started += 1
            number = self._workers_started
            worker = _ScriptWorker(self._worker_environment(), self.work_dir / "workers" / f"driver-{number}.log")
            self._busy.add(worker)
            return worker

    def _return_worker(self, worker: _ScriptWorker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if worker.alive and not self._closed:
                self._idle.append(worker)
                return
        worker.stop()

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
        """Stop every worker, running or idle (the local cloud is shutting down)."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for worker in workers:
            worker.stop()

    def wait(self, run_id: str, timeout: float = 300) -> JobRunRecord:
        """Block until a run ends (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        record = self.runs[run_id]
        while record.state == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        return record


def install_moto_hooks(engine: GlueEngine) -> Callable[[], None]:
    """Make moto's job runs real: StartJobRun starts the engine, GetJobRun reports its record."""
    from moto.glue.exceptions import ConcurrentRunsExceededException
    from moto.glue.models import FakeJob, FakeJobRun

    original_start = FakeJob.start_job_run
    original_as_dict = FakeJobRun.as_dict
    original_status = FakeJobRun.status

    def start_job_run(self: Any, *args: Any, **kwargs: Any) -> str:
        throttled = faults.trigger("glue:StartJobRun", _fault_subject(self.name, kwargs.get("arguments") or {}))
        if throttled:
            raise ConcurrentRunsExceededException(throttled)
        run_id = original_start(self, *args, **kwargs)
        run = next(r for r in self.job_runs if r.job_run_id == run_id)
        record = engine.start(self.name, run_id, run.arguments or {}, run.timeout, role_arn=self.role)
        run._stepml_record = record
        return run_id

    def status(self: Any) -> str | None:
        record = getattr(self, "_stepml_record", None)
        return record.state if record is not None else original_status.fget(self)

    def as_dict(self: Any) -> dict[str, Any]:
        data = original_as_dict(self)
        record = getattr(self, "_stepml_record", None)
        if record is None:
            return data
        data["JobRunState"] = record.state
        data["StartedOn"] = record.started_on
        data["LastModifiedOn"] = record.completed_on or datetime.now(UTC)
        data["ExecutionTime"] = record.execution_seconds
        data["LogGroupName"] = "/aws-glue/jobs"
        if record.completed_on is not None:
            data["CompletedOn"] = record.completed_on
        else:
            data.pop("CompletedOn", None)
        if record.error_message:
            data["ErrorMessage"] = record.error_message
        return data

    FakeJob.start_job_run = start_job_run
    FakeJobRun.status = property(status, original_status.fset)
    FakeJobRun.as_dict = as_dict

    def restore() -> None:
        FakeJob.start_job_run = original_start
        FakeJobRun.status = original_status
        FakeJobRun.as_dict = original_as_dict

    return restore
