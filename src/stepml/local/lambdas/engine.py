"""The local Lambda engine: the template's functions run in warm local worker processes.

moto's Lambda Invoke needs Docker (or echoes the payload). Here each function gets a pool of
worker processes (``stepml/local/lambdas/worker.py``, run as a script) started with the function's
CodeUri and layers on ``PYTHONPATH``, its environment, and the local cloud's endpoint. Errors and
timeouts come back as Lambda returns them (``X-Amz-Function-Error: Unhandled`` with ``errorType``
and ``errorMessage``), so the state machine's Retry and Catch behave as in AWS. A function with
reserved concurrency runs at most that many invocations at once; one more is throttled with
Lambda's ``TooManyRequestsException``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stepml.local.lambdas.errors import FunctionThrottledError, LambdaEngineError

#: The worker runs as a script with ``-P`` (no script folder on ``sys.path``), so a handler sees its
#: code, its layers and the runtime's packages, but not this package's local cloud.
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: How long ``prewarm`` waits for a worker to import its handler (Lambda's init phase limit).
WARM_UP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class FunctionSpec:
    """What the local cloud needs to run one function of the template."""

    name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 3.0
    memory_mb: int = 128
    arn: str = ""
    #: The function's execution role: its workers sign their calls with its credentials.
    role_arn: str = ""
    #: ReservedConcurrentExecutions: the most invocations that may run at once (None: no cap).
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class InvocationResult:
    """A Lambda Invoke answer: the payload, and ``function_error`` set when the function failed."""

    payload: bytes
    function_error: str | None
    duration_ms: float

    def json(self) -> Any:
        return json.loads(self.payload)


class _Worker:
    def __init__(
        self,
        spec: FunctionSpec,
        base_environment: Mapping[str, str],
        log: IO[bytes] | int,
        credentials: Mapping[str, str] | None = None,
    ):
        # Only the function's code and layers; the caller's PYTHONPATH (a checkout's src/ with the
        # whole library) would hand the handler modules its package does not ship.
        python_path = [str(spec.code_dir), *(str(d) for d in spec.layer_dirs)]
        environment = {
            **base_environment,
            **spec.environment,
            # As in Lambda: the role's temporary credentials, set by the service, not the template.
            **(credentials or {}),
            "PYTHONPATH": os.pathsep.join(python_path),
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout_seconds)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "STEPML_LOCAL_FUNCTION_ARN": spec.arn,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=environment,
            cwd=str(spec.code_dir),
            start_new_session=True,
        )
        #: When the worker last finished an invocation (``time.monotonic()``): the idle reaper's clock.
        self.idle_since = time.monotonic()

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one invocation; ``None`` when the worker did not answer in time or died."""
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            return None
        ready, _, _ = select.select([self.process.stdout], [], [], max(timeout, 0.0))
        if not ready:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()


class _Pool:
    def __init__(self, spec: FunctionSpec, max_workers: int):
        self.spec = spec
        self.max_workers = max_workers
        self.idle: list[_Worker] = []
        self.busy = 0
        self.started = 0
        #: Invocations accepted and not finished, including those waiting for a worker.
        self.in_flight = 0
        #: Workers ``prewarm`` started that are still importing: an invocation waits for one
        #: rather than start a second cold worker beside it.
        self.warming = 0
        self.condition = threading.Condition()


class LambdaEngine:
    """Runs registered functions in warm worker processes, several at once per function."""

    def __init__(
        self,
        base_environment: Mapping[str, str],
        *,
        max_workers_per_function: int = 4,
        log_dir: Path | None = None,
        principals: Any = None,
    ):
        self.base_environment = dict(base_environment)
        #: ``stepml.local.iam.gate.Principals``: gives each function's workers its role's keys.
        self.principals = principals
        self.max_workers_per_function = max_workers_per_function
        self.log_dir = log_dir
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()
        self._logs: dict[str, IO[bytes]] = {}
        self._closed = False

    def register(self, spec: FunctionSpec) -> None:
        """Make a function invocable by name (a re-registration replaces its workers)."""
        with self._lock:
            old = self._pools.pop(spec.name, None)
            self._pools[spec.name] = _Pool(spec, self.max_workers_per_function)
        if old:
            self._drain(old)

    def functions(self) -> list[str]:
        return sorted(self._pools)

    def _pool(self, name: str) -> _Pool:
        key = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        try:
            return self._pools[key]
        except KeyError:
            raise LambdaEngineError(f"function {name!r} is not registered with the local Lambda engine") from None

    def _log_target(self, name: str) -> IO[bytes] | int:
        if self.log_dir is None:
            return subprocess.DEVNULL
        if name not in self._logs:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._logs[name] = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for workers
        return self._logs[name]

    def _credentials(self, spec: FunctionSpec) -> dict[str, str] | None:
        if self.principals is None or not spec.role_arn:
            return None
        return self.principals.credentials(spec.role_arn, spec.name).environment()

    def _acquire(self, pool: _Pool) -> _Worker:
        with pool.condition:
            while True:
                while pool.idle:
                    worker = pool.idle.pop()
                    if worker.alive():
                        pool.busy += 1
                        return worker
                if pool.busy < pool.max_workers and not pool.warming:
                    pool.busy += 1
                    break
                pool.condition.wait()
        return self._acquire_new(pool)

    def _acquire_new(self, pool: _Pool) -> _Worker:
        """Start a worker in the slot the caller counted in ``pool.busy`` (freed again if it cannot start)."""
        try:
            worker = _Worker(
                pool.spec, self.base_environment, self._log_target(pool.spec.name), self._credentials(pool.spec)
            )
        except OSError as exc:
            with pool.condition:
                pool.busy -= 1
                pool.condition.notify_all()
            raise LambdaEngineError(f"cannot start a worker for {pool.spec.name}: {exc}") from exc
        with pool.condition:
            pool.started += 1
        return worker

    def prewarm(self, names: Iterable[str]) -> list[str]:
        """Start a worker for each named function that has none, idle or busy, one after the other,
        each once the one before has imported its handler; return the functions warmed.

        The local cloud calls it when an execution starts, for the functions its definition
        invokes, so a step finds its function's handler imported, and the imports never compete
        with one another for the cores the run needs. An invocation of a function whose worker
        is still importing waits for that worker. Names the engine does not run are skipped; a
        worker left unused is stopped by the idle reaper like any other.
        """
        warmed = []
        for name in names:
            try:
                pool = self._pool(name)
            except LambdaEngineError:
                continue
            with pool.condition:
                if pool.idle or pool.busy or pool.max_workers < 1:
                    continue
                pool.busy += 1  # holds the slot while the process starts
                pool.warming += 1
            try:
                worker = self._acquire_new(pool)
            except LambdaEngineError:
                with pool.condition:
                    pool.warming -= 1
                continue
            ready = worker.call({"warm": True}, WARM_UP_TIMEOUT_SECONDS) is not None
            with pool.condition:
                pool.warming -= 1
            ready = ready and not self._closed  # a worker that was importing when the engine closed stops
            self._release(pool, worker, keep=ready)
            if ready:
                warmed.append(pool.spec.name)
        return warmed

    def _release(self, pool: _Pool, worker: _Worker, keep: bool) -> None:
        with pool.condition:
            pool.busy -= 1
            if keep and worker.alive():
                worker.idle_since = time.monotonic()
                pool.idle.append(worker)
            pool.condition.notify_all()
        if not keep:
            worker.kill()

    def invoke(self, name: str, payload: bytes | str | None, *, queue: bool = False) -> InvocationResult:
        """Invoke a function and return Lambda's answer.

        Over the function's reserved concurrency a synchronous call (RequestResponse) raises
        ``FunctionThrottledError``; with ``queue`` (an asynchronous Event invocation, which Lambda
        queues and retries on throttling) it waits until an invocation finishes.
        """
        pool = self._pool(name)
        with pool.condition:
            cap = pool.spec.reserved_concurrency
            while cap is not None and pool.in_flight >= cap:
                if not queue:
                    raise FunctionThrottledError(pool.spec.name)
                pool.condition.wait()
            pool.in_flight += 1
        try:
            return self._invoke(pool, payload)
        finally:
            with pool.condition:
                pool.in_flight -= 1
                pool.condition.notify_all()

    def _invoke(self, pool: _Pool, payload: bytes | str | None) -> InvocationResult:
        spec = pool.spec
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        deadline = time.time() + spec.timeout_seconds
        text = payload.decode() if isinstance(payload, bytes) else (payload or "")
        worker = self._acquire(pool)
        reply = worker.call({"request_id": request_id, "payload": text, "deadline": deadline}, spec.timeout_seconds)
        elapsed = time.monotonic() - started
        if reply is None:
            timed_out = worker.alive()
            self._release(pool, worker, keep=False)
            if timed_out:
                body = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                    f"{spec.timeout_seconds:.2f} seconds",
                }
            else:
                body = {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited without providing a reason",
                }
            return InvocationResult(json.dumps(body).encode(), "Unhandled", elapsed * 1000)
        self._release(pool, worker, keep=True)
        error = "Unhandled" if reply["error"] else None
        return InvocationResult(json.dumps(reply["payload"]).encode(), error, elapsed * 1000)

    def fault_answer(self, name: str, kind: str, message: str) -> InvocationResult:
        """What Invoke returns when a fault makes the function fail (``error``) or time out (``timeout``)."""
        if kind == "timeout":
            timeout = self._pool(name).spec.timeout_seconds
            after = f"Task timed out after {timeout:.2f} seconds"
            body = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {uuid.uuid4()} Error: {after}; {message}",
            }
        else:
            body = {"errorType": "stepml.FaultInjected", "errorMessage": message}
        return InvocationResult(json.dumps(body).encode(), "Unhandled", 0.0)

    def workers_started(self, name: str) -> int:
        """How many worker processes a function has started (cold starts)."""
        return self._pool(name).started

    def reap_idle(self, idle_seconds: float, now: float | None = None) -> int:
        """Stop the workers no invocation used for ``idle_seconds``, as Lambda reclaims idle
        execution environments (``stepml.local.idle``); the next invocation starts cold.
        Returns how many it stopped."""
        now = time.monotonic() if now is None else now
        with self._lock:
            pools = list(self._pools.values())
        stale: list[_Worker] = []
        for pool in pools:
            with pool.condition:
                old = [worker for worker in pool.idle if now - worker.idle_since >= idle_seconds]
                pool.idle = [worker for worker in pool.idle if worker not in old]
            stale.extend(old)
        for worker in stale:
            worker.kill()
        return len(stale)

    def _drain(self, pool: _Pool) -> None:
        with pool.condition:
            workers, pool.idle = pool.idle, []
        for worker in workers:
            worker.kill()

    def close(self) -> None:
        """Stop every worker and close the logs."""
        self._closed = True
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            self._drain(pool)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
