"""What every part of the engine shares: the session, the work directory, clients, threads.

``EngineContext`` is the engine's plumbing, handed to the training jobs, the endpoints and
the data capture writer so none of them needs the facade: AWS clients (under an execution
role when the local cloud's IAM runs), the background threads it starts (so ``shutdown`` can
join them), the lock that guards the engine's state and the event that says it is closing.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from stepml.local.iam import hooks as iam_hooks
from stepml.local.sagemaker.errors import LocalSageMakerError
from stepml.local.sagemaker.validation import SAGEMAKER_SESSION
from stepml.utils import split_s3_uri

#: Bytes read from S3 per write when the engine downloads an object.
_DOWNLOAD_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class EngineSettings:
    """The engine's timings (seconds) and the Python that runs script-mode entry points."""

    capture_flush_seconds: float
    health_check_interval: float
    health_check_timeout: float
    drain_timeout: float
    python_executable: str
    log_flush_seconds: float
    alarm_poll_seconds: float
    #: The longest a blue/green update bakes here (None: its WaitIntervalInSeconds in full).
    baking_period_seconds: float | None = None


@dataclass
class EngineContext:
    """The engine's shared plumbing (see the module docstring)."""

    session: boto3.Session
    endpoint_url: str | None
    work_dir: Path
    settings: EngineSettings
    lock: threading.RLock = field(default_factory=threading.RLock)
    closing: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)
    _s3_client: Any = None
    _role_clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def s3(self) -> Any:
        """The engine's own S3 client."""
        with self.lock:
            if self._s3_client is None:
                self._s3_client = self.session.client("s3", endpoint_url=self.endpoint_url)
            return self._s3_client

    def client_as(self, service: str, role_arn: str | None) -> Any:
        """A client signed with ``role_arn``'s credentials, as SageMaker acts under the execution
        role in AWS; without a running local cloud's IAM (unit tests), the engine's own client."""
        authorizer = iam_hooks.active()
        if authorizer is None or not role_arn:
            return self.s3 if service == "s3" else self.session.client(service, endpoint_url=self.endpoint_url)
        with self.lock:
            client = self._role_clients.get((service, role_arn))
            if client is None:
                credentials = authorizer.principals.credentials(role_arn, SAGEMAKER_SESSION)
                client = self.session.client(service, endpoint_url=self.endpoint_url, **credentials.client_kwargs())
                self._role_clients[(service, role_arn)] = client
            return client

    def spawn(self, target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
        """Start a daemon thread that ``shutdown`` will join."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self.lock:
            self.workers[:] = [t for t in self.workers if t.is_alive()]
            self.workers.append(thread)
        thread.start()
        return thread

    def download(self, uri: str, target: Path, role_arn: str | None = None) -> None:
        """Download one S3 object (as ``role_arn``) to ``target``.

        One GetObject, streamed to the file: model and code archives are small, and the transfer
        manager adds a HeadObject and a thread pool to each (an endpoint's first archive took 68 ms
        that way, 27 ms this way).
        """
        bucket, key = split_s3_uri(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        body = self.client_as("s3", role_arn).get_object(Bucket=bucket, Key=key)["Body"]
        with open(target, "wb") as handle:
            shutil.copyfileobj(body, handle, _DOWNLOAD_CHUNK_BYTES)


def wait_for_status(
    describe: Callable[[], Any], what: str, settled: Collection[str], timeout: float, poll: float = 0.05
) -> Any:
    """Poll ``describe()`` (a view with a ``status``) until its status is in ``settled``: for tests
    and the CLI. ``what`` names the resource in the errors, e.g. ``"training job NAME"``."""
    deadline = time.monotonic() + timeout
    while True:
        view = describe()
        if view is None:
            raise LocalSageMakerError(f"{what} is not run by this engine")
        if view.status in settled:
            return view
        if time.monotonic() > deadline:
            raise LocalSageMakerError(f"{what} still {view.status} after {timeout} s")
        time.sleep(poll)
