"""One long-lived Glue job runner: runs job scripts one after another in the same process.

Started by the engine (``ScriptWorker``, the handle at the end of this module) as
``python -m stepml.local.glue.worker``. A Glue script gets
its SparkSession with ``getOrCreate()`` and leaves it running, so the second script in this
process finds a JVM whose classes are loaded, whose generated code is cached and whose JIT
has warmed up: a job that takes 25-45 s in a new JVM takes 3-6 s here. The price is that
scripts share one driver JVM (never at the same time), which AWS Glue does not do; the
engine documents it.

The protocol is one JSON object per line: a request ``{"script", "argv", "cwd", "log"}`` on
stdin, a reply ``{"exit_code": N}`` on the original stdout. During a run, file descriptors 1
and 2 point at the run's log file, so the script's prints, its logging and its traceback land
there as they would in the job's CloudWatch log.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _run_script(request: dict[str, Any]) -> int:
    # The run's own variables (its role's credentials) for this run only.
    saved = {name: os.environ.get(name) for name in request.get("environment", {})}
    os.environ.update(request.get("environment", {}))
    try:
        return _run_script_file(request)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_script_file(request: dict[str, Any]) -> int:
    script = request["script"]
    sys.argv = [script, *request["argv"]]
    os.chdir(request["cwd"])
    # As `python script.py` would: the script's folder first on the import path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # a script's failure is the run's result, never the worker's
        traceback.print_exc()
        return 1
    finally:
        sys.path.pop(0)
    return 0


def serve(requests: Any, replies: Any) -> None:
    """Run each request's script with fds 1 and 2 on its log; reply with its exit code."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        saved = (os.dup(1), os.dup(2))
        with open(request["log"], "ab", buffering=0) as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                exit_code = _run_script(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        replies.write(json.dumps({"exit_code": exit_code}) + "\n")
        replies.flush()
        _shrink()


def _shrink() -> None:
    """After a run (its reply sent): a full GC in the warm driver's JVM, whose serial collector
    then gives the heap the run grew back to the OS, and the same for Python's heap. A warm
    driver waits at the size Spark's start-up needs, not at the size of the largest input."""
    pyspark = sys.modules.get("pyspark")
    context = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if context is not None:
        with contextlib.suppress(Exception):  # a driver the script stopped, or a JVM gone
            context._jvm.System.gc()
    from stepml.local.idle import release_memory

    release_memory()


def main() -> None:
    # The protocol owns the original stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    serve(sys.stdin, replies)


class ScriptWorker:
    """The engine's handle on a worker process: runs one script at a time, keeps its Spark driver warm."""

    def __init__(self, environment: Mapping[str, str], log_file: Path):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # The JVM's own output (Spark's log4j lines) goes here; each run's output goes to its log.
        self._jvm_log = open(log_file, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stepml.local.glue.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._jvm_log,
            env=dict(environment),
            cwd=log_file.parent,
            start_new_session=True,
        )
        #: When the worker last finished a run (``time.monotonic()``): the idle reaper's clock.
        self.idle_since = time.monotonic()

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
        try:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout_seconds)
            if not ready:
                self.stop()
                raise subprocess.TimeoutExpired(str(script), timeout_seconds)
            line = self.process.stdout.readline()
        except (ValueError, OSError):
            # The engine closed this worker (the cloud is stopping) while the run waited for it.
            line = b""
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


class IdleWorkers:
    """Warm workers that outlive the engine that started them.

    A process that starts several local clouds one after another (the test session starts one per
    module) hands each engine's idle workers to the next engine instead of paying Spark's start-up
    again. A worker serves any cloud: the engine gives every run its cloud's endpoint and
    credentials in the run's own environment.
    """

    def __init__(self) -> None:
        self._workers: list[ScriptWorker] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._workers)

    def take(self) -> ScriptWorker | None:
        """A live idle worker, or None."""
        with self._lock:
            while self._workers:
                worker = self._workers.pop()
                if worker.alive:
                    return worker
                worker.stop()
        return None

    def keep(self, worker: ScriptWorker) -> None:
        """Keep ``worker`` for the next engine (a dead one is stopped instead)."""
        if worker.alive:
            with self._lock:
                self._workers.append(worker)
        else:
            worker.stop()

    def close(self) -> None:
        """Stop every kept worker."""
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    main()
