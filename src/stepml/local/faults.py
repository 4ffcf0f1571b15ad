"""The local cloud's fault switch: make a chosen operation fail the next N times.

A fault is ``OPERATION[@MATCH]=N``: the next N calls of the operation whose subject (the job
or endpoint name, the function name and payload, the topic and message) contains MATCH fail
as AWS would fail them. Set faults with ``STEPML_LOCAL_FAULTS`` (comma-separated), with
``--fault`` on ``stepml local up`` / ``stepml demo``, or with ``LocalCloud.faults`` in tests.

Each engine asks :func:`trigger` at the one point where its operation can fail; with no
fault set that is a dictionary lookup. Which faults the state machine's Retry recovers from
(*transient*) and which end the step, so the run fails and can be resumed (*permanent*), is
listed in :data:`OPERATIONS` and in the README.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stepml.local.patching import Patch, register

ENVIRONMENT_VARIABLE = "STEPML_LOCAL_FAULTS"
#: ``lambda:<Name>`` matches every function whose name contains ``<Name>``.
_LAMBDA = re.compile(r"^lambda:(?P<function>[A-Za-z0-9_-]+)(?P<kind>\.error|\.timeout)?$")
_SPEC = re.compile(r"^(?P<operation>[A-Za-z0-9_:.-]+)(?:@(?P<match>.+))?=(?P<times>\d+)$")


class FaultSpecError(ValueError):
    """A fault setting that names no known operation or has no count."""


@dataclass(frozen=True)
class Operation:
    """What a fault of this operation does and what recovers from it."""

    effect: str
    recovery: str


#: The operations the engines consult, as ``stepml local up --help`` and the README list them.
OPERATIONS: dict[str, Operation] = {
    "glue:StartJobRun": Operation(
        "StartJobRun answers ConcurrentRunsExceededException; no job run starts",
        "transient: Preprocess data retries Glue.ConcurrentRunsExceededException up to 5 times",
    ),
    "glue:JobRun": Operation(
        "the job run starts and ends FAILED with an ErrorMessage, as a failing script would",
        "permanent: a failed job run is not retried; resume the run",
    ),
    "sagemaker:CreateTrainingJob": Operation(
        "CreateTrainingJob answers ThrottlingException; no job is created",
        "transient: Train model retries SageMaker.AmazonSageMakerException up to 3 times",
    ),
    "sagemaker:TrainingJob": Operation(
        "the training job ends Failed with a FailureReason",
        "permanent: a failed job cannot be retried under its name; resume the run (new attempt, new job name)",
    ),
    "sagemaker:CreateTransformJob": Operation(
        "CreateTransformJob answers ThrottlingException; no job is created",
        "transient: Score challenger in batch and Score champion in batch retry SageMaker.AmazonSageMakerException "
        "up to 3 times",
    ),
    "sagemaker:TransformJob": Operation(
        "the transform job ends Failed with a FailureReason, before its containers start; no output is written",
        "permanent: the run fails at test scoring; resume the run (new attempt, new transform job names)",
    ),
    "sagemaker:CreateEndpoint": Operation(
        "CreateEndpoint answers ThrottlingException; no endpoint is created",
        "transient: Create test endpoint retries SageMaker.AmazonSageMakerException up to 3 times",
    ),
    "sagemaker:Endpoint": Operation(
        "the endpoint (created or updated) ends Failed with a FailureReason",
        "permanent: the run fails at the endpoint step; resume the run",
    ),
    "sagemaker:DeleteEndpoint": Operation(
        "DeleteEndpoint answers ThrottlingException; the endpoint stays and keeps serving",
        "transient: the delete tasks retry up to 5 times; past that, after evaluation the run goes on to the gate "
        "with a warning in lineage and an alert naming the endpoint, and after a failure it still fails as it would",
    ),
    "lambda:<Name>": Operation(
        "Invoke of a function whose name contains <Name> answers TooManyRequestsException (HTTP 429)",
        "transient: every Lambda task retries Lambda.TooManyRequestsException up to 3 times",
    ),
    "lambda:<Name>.error": Operation(
        "the function fails (Unhandled, errorType stepml.FaultInjected)",
        "permanent: function errors are not retried; resume the run",
    ),
    "lambda:<Name>.timeout": Operation(
        "the invocation answers as a timed-out one (errorType Sandbox.Timedout) at once, without waiting",
        "permanent: timeouts are not retried; resume the run",
    ),
    "sns:Publish": Operation(
        "Publish answers Throttled (HTTP 400); nothing is delivered",
        "transient: the state machine's SNS tasks retry SNS.ThrottledException up to 5 times; past that, the run "
        "ends as it would have and lineage notes the notification was not delivered",
    ),
}


def known_operation(operation: str) -> bool:
    return operation in OPERATIONS or _LAMBDA.match(operation) is not None


@dataclass
class Fault:
    """One fault: fail ``operation`` the next ``remaining`` times a subject contains ``match``."""

    operation: str
    remaining: int
    match: str | None = None

    def applies(self, operation: str, subject: str) -> bool:
        return self.operation == operation and self.remaining > 0 and (not self.match or self.match in subject)


@dataclass(frozen=True)
class Hit:
    """A call a fault made fail."""

    operation: str
    subject: str
    at: str
    message: str


@dataclass
class FaultSwitch:
    """The set faults and the calls they made fail, safe to use from the cloud's threads."""

    faults: list[Fault] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, operation: str, times: int, match: str | None = None) -> Fault:
        """Fail ``operation`` the next ``times`` times (only for subjects containing ``match``)."""
        if not known_operation(operation):
            raise FaultSpecError(
                f"unknown fault operation {operation!r}; expected one of {', '.join(sorted(OPERATIONS))}"
            )
        if times < 0:
            raise FaultSpecError(f"fault {operation}: the count must be 0 or more, not {times}")
        fault = Fault(operation, times, match or None)
        with self._lock:
            self.faults.append(fault)
        return fault

    def load(self, specs: str | Iterable[str]) -> list[Fault]:
        """Add faults from ``OP[@MATCH]=N`` settings (a comma-separated string or a list)."""
        items = specs.split(",") if isinstance(specs, str) else list(specs)
        parsed = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            found = _SPEC.match(item)
            if found is None:
                raise FaultSpecError(f"fault {item!r}: expected OPERATION[@MATCH]=N, e.g. glue:StartJobRun=2")
            parsed.append((found["operation"], int(found["times"]), found["match"]))
        return [self.add(operation, times, match) for operation, times, match in parsed]

    def clear(self, operation: str | None = None) -> None:
        """Remove every fault (or those of one operation); the record of hits stays."""
        with self._lock:
            self.faults = [f for f in self.faults if operation is not None and f.operation != operation]

    def take(self, operation: str, subject: str, message: str) -> Hit | None:
        """Use up one matching fault, if any; the hit when the call must fail."""
        with self._lock:
            fault = next((f for f in self.faults if f.applies(operation, subject)), None)
            if fault is None:
                return None
            fault.remaining -= 1
            hit = Hit(operation, subject, datetime.now(UTC).isoformat(timespec="milliseconds"), message)
            self.hits.append(hit)
            return hit

    def hit_count(self, operation: str, match: str | None = None) -> int:
        with self._lock:
            return sum(1 for h in self.hits if h.operation == operation and (not match or match in h.subject))


_active = FaultSwitch()


def _install_switch(patch: Patch, switch: FaultSwitch) -> None:
    patch.replace(sys.modules[__name__], "_active", switch)


#: The engines ask ``trigger`` from many places (the Glue, SageMaker, Lambda and SNS adapters and
#: the engines themselves), so the switch they consult stays a module-level one; this patch is the
#: only way it is set, so a cloud's undo (last applied first) puts back the one before it.
SWITCH = register(
    Patch(
        name="faults.switch",
        why=(
            "moto has no way to make an operation fail on demand. This patch changes no moto code: it makes "
            "a running cloud's FaultSwitch the one every engine and adapter consults through faults.trigger "
            "(a module-level accessor, as the callers are many), and undoes to the one before."
        ),
        test="tests/unit/test_local_faults.py::test_glue_start_job_run_throttles_then_a_run_fails_as_glue_reports_it",
        install=_install_switch,
        scope="cloud",
    )
)


def from_environment(environ: dict[str, str] | None = None) -> FaultSwitch:
    """A switch holding the faults of ``STEPML_LOCAL_FAULTS``."""
    switch = FaultSwitch()
    switch.load((environ if environ is not None else os.environ).get(ENVIRONMENT_VARIABLE, ""))
    return switch


def trigger(operation: str, subject: str) -> str | None:
    """The error message when a fault makes this call fail, else None (the call goes on)."""
    if not _active.faults:
        return None
    message = f"{_MESSAGES.get(operation, 'the operation failed')} (local fault {operation})"
    hit = _active.take(operation, subject, message)
    return hit.message if hit else None


def trigger_lambda(function_name: str, payload: str) -> tuple[str, str] | None:
    """(kind, message) when a ``lambda:<Name>[.error|.timeout]`` fault applies to this invocation."""
    if not _active.faults:
        return None
    for fault in list(_active.faults):
        found = _LAMBDA.match(fault.operation)
        if found is None or found["function"] not in function_name:
            continue
        kind = (found["kind"] or ".throttle").lstrip(".")
        message = f"{_MESSAGES['lambda:' + kind]} (local fault {fault.operation})"
        if _active.take(fault.operation, f"{function_name} {payload}", message):
            return kind, message
    return None


_MESSAGES = {
    "glue:StartJobRun": "Concurrent runs exceeded for the job",
    "glue:JobRun": "RuntimeError: the job run failed",
    "sagemaker:CreateTrainingJob": "Rate exceeded",
    "sagemaker:TrainingJob": "InternalServerError: We encountered an internal error. Please try again.",
    "sagemaker:CreateTransformJob": "Rate exceeded",
    "sagemaker:TransformJob": "InternalServerError: We encountered an internal error. Please try again.",
    "sagemaker:CreateEndpoint": "Rate exceeded",
    "sagemaker:Endpoint": "The endpoint failed to start: the model server did not become healthy",
    "sagemaker:DeleteEndpoint": "Rate exceeded",
    "sns:Publish": "Rate exceeded",
    "lambda:throttle": "Rate Exceeded.",
    "lambda:error": "the function failed",
    "lambda:timeout": "Task timed out",
}
