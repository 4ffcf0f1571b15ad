"""``LocalSageMaker``: the local cloud's SageMaker, one object that owns the engine's state.

moto answers SageMaker's control plane with canned data (a training job is Completed and an
endpoint InService the moment it is created, and nothing runs). This engine does the work
instead: ``adapter`` routes moto's SageMaker and sagemaker-runtime backends to it, so the
state machine, the Lambdas and the CLI call the usual APIs and get AWS's behaviour. The
facade only owns the state and the lifecycle; the work is done by its collaborators:

- ``training.TrainingJobs``: training jobs (built-in XGBoost via ``algorithm``, script mode
  via ``script_mode``), their statuses, stop, logs and metrics;
- ``transform.TransformJobs``: batch transform jobs, through the model's containers as an
  endpoint serves them;
- ``hosting.Endpoints``: endpoints, blue/green updates with auto-rollback, invocations (each
  fleet of model servers is a ``deployment``);
- ``capture.CaptureWriter``: data capture files and endpoint logs, written in the background;
- ``monitoring.MonitoringSchedules``: monitoring schedules, one data-quality execution of each
  every ``monitor_period_seconds``.

The engine knows nothing about moto: it takes API-shaped request dicts and a boto3 session
for S3 (pointing at the local cloud's endpoint), so it can be driven directly too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

from stepml.local.sagemaker.capture import CaptureWriter
from stepml.local.sagemaker.context import EngineContext, EngineSettings
from stepml.local.sagemaker.hosting import Endpoints, EndpointView, InvocationResult, ModelRequests, Request
from stepml.local.sagemaker.jobs import TrainingJobView
from stepml.local.sagemaker.monitoring import MonitoringSchedules
from stepml.local.sagemaker.training import TrainingJobs
from stepml.local.sagemaker.transform import TransformJobs, TransformJobView


class LocalSageMaker:
    """SageMaker training and hosting on this machine; S3 through ``session`` (the local cloud's endpoint).

    ``capture_flush_seconds`` bounds how long a captured request waits before it is written to
    S3; ``health_check_interval`` is the gap between ``/ping`` health checks of a starting
    model server (the first check comes one interval after the server starts, as SageMaker's do).
    ``log_flush_seconds`` is how often a running training job's new log lines are sent (endpoint
    logs go with the capture flush); ``alarm_poll_seconds`` the gap between reads of the
    auto-rollback alarms during a baking period; ``baking_period_seconds`` the longest a
    blue/green update's baking period lasts here (its ``WaitIntervalInSeconds``, cut to this, as
    ``monitor_period_seconds`` stands in for an hour; None bakes for the full period);
    ``monitor_period_seconds`` how often each monitoring schedule runs (AWS: hourly). Call
    ``shutdown`` to stop every job, server and thread.
    """

    def __init__(
        self,
        session: boto3.Session,
        *,
        endpoint_url: str | None = None,
        work_dir: Path | None = None,
        capture_flush_seconds: float = 2.0,
        health_check_interval: float = 0.1,
        health_check_timeout: float = 120.0,
        drain_timeout: float = 30.0,
        python_executable: str = sys.executable,
        log_flush_seconds: float = 2.0,
        alarm_poll_seconds: float = 5.0,
        baking_period_seconds: float | None = None,
        monitor_period_seconds: float = 60.0,
    ):
        self._owns_work_dir = work_dir is None
        root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="stepml-sagemaker-"))
        root.mkdir(parents=True, exist_ok=True)
        settings = EngineSettings(
            capture_flush_seconds=capture_flush_seconds,
            health_check_interval=health_check_interval,
            health_check_timeout=health_check_timeout,
            drain_timeout=drain_timeout,
            python_executable=python_executable,
            log_flush_seconds=log_flush_seconds,
            alarm_poll_seconds=alarm_poll_seconds,
            baking_period_seconds=baking_period_seconds,
        )
        self._context = EngineContext(session=session, endpoint_url=endpoint_url, work_dir=root, settings=settings)
        self._writer = CaptureWriter(self._context)
        self.training_jobs = TrainingJobs(self._context)
        self.transform_jobs = TransformJobs(self._context)
        self.endpoints = Endpoints(self._context, self._writer)
        self.monitoring = MonitoringSchedules(self._context, self._capture_destination, monitor_period_seconds)
        self.monitoring.start()

    def _capture_destination(self, endpoint: str, account_id: str, region: str) -> str | None:
        view = self.endpoints.describe(endpoint, account_id=account_id, region=region)
        return (view.data_capture or {}).get("DestinationS3Uri") if view is not None else None

    # ------------------------------------------------------------------ training

    def create_training_job(self, request: Mapping[str, Any], *, account_id: str, region: str) -> TrainingJobView:
        """Validate a CreateTrainingJob request and start the job in the background."""
        return self.training_jobs.create(request, account_id=account_id, region=region)

    def describe_training_job(self, name: str, *, account_id: str, region: str) -> TrainingJobView | None:
        """The job's current state, or None when this engine does not run it."""
        return self.training_jobs.describe(name, account_id=account_id, region=region)

    def stop_training_job(self, name: str, *, account_id: str, region: str) -> None:
        """Ask a running job to stop (status Stopping, then Stopped)."""
        self.training_jobs.stop(name, account_id=account_id, region=region)

    def wait_for_training_job(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> TrainingJobView:
        """Block until the job reaches Completed, Failed or Stopped (for tests and the CLI)."""
        return self.training_jobs.wait(name, account_id=account_id, region=region, timeout=timeout)

    # ------------------------------------------------------------------ batch transform

    def create_transform_job(
        self, request: Mapping[str, Any], model: Mapping[str, Any], *, account_id: str, region: str
    ) -> TransformJobView:
        """Validate a CreateTransformJob request and start the job; ``model`` is its model's CreateModel request."""
        return self.transform_jobs.create(request, model, account_id=account_id, region=region)

    def describe_transform_job(self, name: str, *, account_id: str, region: str) -> TransformJobView | None:
        """The transform job's current state, or None when this engine does not run it."""
        return self.transform_jobs.describe(name, account_id=account_id, region=region)

    def stop_transform_job(self, name: str, *, account_id: str, region: str) -> None:
        """Ask a running transform job to stop (status Stopping, then Stopped)."""
        self.transform_jobs.stop(name, account_id=account_id, region=region)

    def wait_for_transform_job(
        self, name: str, *, account_id: str, region: str, timeout: float = 60
    ) -> TransformJobView:
        """Block until the transform job reaches Completed, Failed or Stopped (for tests and the CLI)."""
        return self.transform_jobs.wait(name, account_id=account_id, region=region, timeout=timeout)

    # ------------------------------------------------------------------ hosting

    def create_endpoint(
        self, request: Request, endpoint_config: Request, models: ModelRequests, *, account_id: str, region: str
    ) -> EndpointView:
        """Start the model servers of ``endpoint_config`` for a new endpoint (status Creating).

        ``endpoint_config`` is a DescribeEndpointConfig-shaped dict; ``models`` maps each
        variant's ModelName to its CreateModel request (``PrimaryContainer`` or ``Containers``).
        """
        return self.endpoints.create(request, endpoint_config, models, account_id=account_id, region=region)

    def update_endpoint(
        self, request: Request, endpoint_config: Request, models: ModelRequests, *, account_id: str, region: str
    ) -> EndpointView:
        """Blue/green: start the new config's servers, then switch all traffic at once (status Updating)."""
        return self.endpoints.update(request, endpoint_config, models, account_id=account_id, region=region)

    def delete_endpoint(self, name: str, *, account_id: str, region: str) -> None:
        """Stop the endpoint's model servers (refusing connections) and flush its captured data."""
        self.endpoints.delete(name, account_id=account_id, region=region)

    def describe_endpoint(self, name: str, *, account_id: str, region: str) -> EndpointView | None:
        """The endpoint's current state, or None when this engine does not host it."""
        return self.endpoints.describe(name, account_id=account_id, region=region)

    def wait_for_endpoint(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> EndpointView:
        """Block until the endpoint is InService or Failed (for tests and the CLI)."""
        return self.endpoints.wait(name, account_id=account_id, region=region, timeout=timeout)

    def invoke_endpoint(
        self, name: str, body: bytes, *, account_id: str, region: str, **options: str | None
    ) -> InvocationResult:
        """Forward one request to the endpoint's current model server, capturing it if configured.

        ``options``: ``content_type``, ``accept``, ``custom_attributes``, ``target_variant`` and
        ``inference_id`` (InvokeEndpoint's headers).
        """
        return self.endpoints.invoke(name, body, account_id=account_id, region=region, **options)

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every training and transform job, model server and background thread; flush captured data."""
        context = self._context
        context.closing.set()
        self.training_jobs.stop_all()
        self.transform_jobs.stop_all()
        self.endpoints.delete_all()
        deadline = time.monotonic() + timeout
        with context.lock:
            threads = [*context.workers, *([self._writer.thread] if self._writer.thread else [])]
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._writer.close()
        if self._owns_work_dir:
            shutil.rmtree(context.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalSageMaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
