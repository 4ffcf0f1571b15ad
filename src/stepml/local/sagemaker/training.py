"""Training jobs: each runs in its own thread, from Starting to Completed, Failed or Stopped.

A job downloads its channels from S3 (every object under the S3Prefix except empty objects
and ``_SUCCESS``) into an /opt/ml-shaped tree, runs the built-in XGBoost algorithm
(``algorithm``) or the user's script (``script_mode``), and uploads ``model.tar.gz`` (and
``output.tar.gz``) to ``<S3OutputPath>/<TrainingJobName>/output/``. DescribeTrainingJob sees
the secondary statuses as they pass, then the end with ``FinalMetricDataList`` or a
FailureReason that names the problem. ``StoppingCondition.MaxRuntimeInSeconds`` and
StopTrainingJob stop a job. Its log goes to ``/aws/sagemaker/TrainingJobs`` (stream
``<job>/algo-1-<epoch>``) and its final metrics to that CloudWatch namespace (dimension
``Host=<job>/algo-1``), under the execution role.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import faults, telemetry
from stepml.local.iam.gate import AccessDeniedError
from stepml.local.idle import release_memory
from stepml.local.sagemaker import algorithm, script_mode
from stepml.local.sagemaker.context import EngineContext, wait_for_status
from stepml.local.sagemaker.errors import (
    LocalSageMakerError,
    ResourceInUseError,
    SageMakerValidationError,
    TrainingFailedError,
    TrainingStoppedError,
)
from stepml.local.sagemaker.files import JobLayout, tar_directory
from stepml.local.sagemaker.jobs import (
    DEFAULT_MAX_RUNTIME_SECONDS,
    TERMINAL_TRAINING_STATUSES,
    TRAINING_HOST,
    TRAINING_LOG_GROUP,
    TRAINING_METRICS_NAMESPACE,
    TrainingJob,
    TrainingJobView,
)
from stepml.local.sagemaker.validation import (
    BUILTIN_XGBOOST_IMAGE,
    SUPPORTED_XGBOOST_TAGS,
    arn,
    authorize_image_pull,
    truncate_reason,
    validate_request,
)
from stepml.utils import split_s3_uri, utc_now

LOGGER = logging.getLogger(__name__)


class TrainingJobs:
    """The engine's training jobs, by (account, region, name)."""

    def __init__(self, context: EngineContext):
        self._context = context
        self._jobs: dict[tuple[str, str, str], TrainingJob] = {}

    def create(self, request: Mapping[str, Any], *, account_id: str, region: str) -> TrainingJobView:
        """Validate a CreateTrainingJob request and start the job in the background."""
        validate_request("CreateTrainingJob", request)
        request = copy.deepcopy(dict(request))
        name = request["TrainingJobName"]
        key = (account_id, region, name)
        output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        job = TrainingJob(key=key, request=request, model_artifacts=f"{output_path}/{name}/output/model.tar.gz")
        with self._context.lock:
            if self._context.closing.is_set():
                raise LocalSageMakerError("the local SageMaker engine is shut down")
            if key in self._jobs:
                raise ResourceInUseError(
                    "Training job names must be unique within an AWS account and region, and a training job with "
                    f"this name already exists ({arn('training-job', name, account_id, region)})"
                )
            self._jobs[key] = job
        job.phase("Starting")
        job.thread = self._context.spawn(self._run, f"stepml-sm-train-{name}", job)
        return job.view()

    def describe(self, name: str, *, account_id: str, region: str) -> TrainingJobView | None:
        """The job's current state, or None when this engine does not run it."""
        job = self._jobs.get((account_id, region, name))
        return job.view() if job else None

    def stop(self, name: str, *, account_id: str, region: str) -> None:
        """Ask a running job to stop (status Stopping, then Stopped)."""
        job = self._jobs.get((account_id, region, name))
        if job is None:
            raise SageMakerValidationError(
                f"Requested resource not found: {arn('training-job', name, account_id, region)}"
            )
        with job.lock:
            if job.status != "InProgress":
                raise SageMakerValidationError(
                    f"The request was rejected because the training job is in status {job.status}."
                )
            job.phase("Stopping", status="Stopping")
            job.stop_requested.set()

    def wait(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> TrainingJobView:
        """Block until the job reaches Completed, Failed or Stopped (for tests and the CLI)."""
        return wait_for_status(
            lambda: self.describe(name, account_id=account_id, region=region),
            f"training job {name}",
            TERMINAL_TRAINING_STATUSES,
            timeout,
        )

    def stop_all(self) -> None:
        """Stop every job (the engine shuts down): running scripts are terminated now."""
        with self._context.lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop_requested.set()
            if job.process is not None:
                script_mode.terminate(job.process)

    def _run(self, job: TrainingJob) -> None:
        request = job.request
        max_runtime = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
        job_dir = Path(tempfile.mkdtemp(prefix=f"train-{job.name[:40]}-", dir=self._context.work_dir))
        layout = JobLayout(job_dir / "opt" / "ml").create()
        with job.lock:
            job.start_time = utc_now()
        job.deadline = time.monotonic() + max_runtime
        scripted = script_mode.is_script_mode(request)
        shipper = self._start_log(job, layout, scripted)
        outcome: tuple[str, str, str | None] = ("Failed", "Failed", "InternalServerError: the job did not finish")
        try:
            self._execute(job, layout, scripted)
            outcome = ("Completed", "Completed", None)
        except TrainingStoppedError as exc:
            outcome = ("Stopped", str(exc), None)
        except TrainingFailedError as exc:
            outcome = ("Failed", "Failed", truncate_reason(str(exc)))
        except Exception as exc:  # the job must end Failed, never hang InProgress
            LOGGER.exception("local training job %s crashed", job.name)
            outcome = ("Failed", "Failed", truncate_reason(f"InternalServerError: {type(exc).__name__}: {exc}"))
        finally:
            # The job's logs and metrics are written before it ends: whoever sees it end can read them.
            self._finish_telemetry(job, shipper, outcome)
            self._finish(job, *outcome)
            shutil.rmtree(job_dir, ignore_errors=True)
            release_memory()  # the job's matrices are freed: give their pages back to the OS

    def _execute(self, job: TrainingJob, layout: JobLayout, scripted: bool) -> None:
        request = job.request
        if not scripted:
            check_builtin_image(request)
        image = (request.get("AlgorithmSpecification") or {}).get("TrainingImage")
        if image:
            try:
                authorize_image_pull(request.get("RoleArn"), image)
            except AccessDeniedError as denied:
                raise TrainingFailedError(f"ClientError: Cannot pull algorithm container {image}: {denied}") from denied
        job.phase("Downloading")
        if failure := faults.trigger("sagemaker:TrainingJob", job.name):
            raise TrainingFailedError(failure)
        self._download_channels(job, layout)
        job.phase("Training")
        if scripted:
            script_mode.run_script(self._context, job, layout)
        else:
            self._train_builtin(job, layout)
        job.check()
        job.phase("Uploading")
        self._upload_outputs(job, layout)

    def _start_log(self, job: TrainingJob, layout: JobLayout, scripted: bool) -> telemetry.Shipper:
        """The job's log stream, ``<job>/algo-1-<epoch of the start>``, sent while the job runs."""
        assert job.start_time is not None
        stream = f"{job.name}/{TRAINING_HOST}-{int(job.start_time.timestamp())}"
        log = telemetry.LogStream(
            self._context.client_as("logs", job.request.get("RoleArn")),
            TRAINING_LOG_GROUP,
            stream,
            describe_first=True,
        )
        job.log = log
        # Script mode: the container's log is the entry point's standard output and error.
        followers = (
            [telemetry.FileFollower(layout.root.parent / name, [log]) for name in ("stdout.log", "stderr.log")]
            if scripted
            else []
        )
        return telemetry.Shipper(
            [log], followers, interval=self._context.settings.log_flush_seconds, name=f"stepml-sm-logs-{job.name}"
        ).start()

    def _finish_telemetry(
        self, job: TrainingJob, shipper: telemetry.Shipper, outcome: tuple[str, str, str | None]
    ) -> None:
        status, _, reason = outcome
        shipper.close()  # the script's last lines first
        if reason:
            job.log.add(reason)
        job.log.add(f"Training job {job.name} {status.lower()}")
        job.log.flush()
        with job.lock:
            metrics = list(job.final_metrics)
        if metrics:
            host = [{"Name": "Host", "Value": f"{job.name}/{TRAINING_HOST}"}]
            telemetry.put_metrics(
                self._context.client_as("cloudwatch", job.request.get("RoleArn")),
                TRAINING_METRICS_NAMESPACE,
                [
                    {
                        "MetricName": metric["MetricName"],
                        "Dimensions": host,
                        "Timestamp": metric["Timestamp"],
                        "Value": metric["Value"],
                        "Unit": "None",
                    }
                    for metric in metrics
                ],
            )

    @staticmethod
    def _finish(job: TrainingJob, status: str, secondary: str, reason: str | None = None) -> None:
        # One step under the lock: a poller never sees a terminal status without TrainingEndTime.
        with job.lock:
            job.phase(secondary, status=status)
            job.end_time = utc_now()
            job.failure_reason = reason
            job.transitions[-1]["EndTime"] = job.end_time

    def _download_channels(self, job: TrainingJob, layout: JobLayout) -> None:
        for channel in job.request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if source is None:
                raise TrainingFailedError(f"ClientError: channel {name}: only S3DataSource is supported locally")
            if source.get("S3DataType") != "S3Prefix":
                raise TrainingFailedError(
                    f"ClientError: channel {name}: S3DataType {source.get('S3DataType')} is not supported locally "
                    "(use S3Prefix)"
                )
            if channel.get("CompressionType", "None") != "None":
                raise TrainingFailedError(
                    f"ClientError: channel {name}: CompressionType {channel['CompressionType']} "
                    "is not supported locally"
                )
            self._download_prefix(job, name, source["S3Uri"], layout.channel_dir(name))

    def _download_prefix(self, job: TrainingJob, channel: str, uri: str, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        bucket, prefix = split_s3_uri(uri)
        root = destination.resolve()
        found = False
        s3 = self._context.client_as("s3", job.request.get("RoleArn"))
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found = True
                    key = item["Key"]
                    name = PurePosixPath(key).name
                    if item["Size"] == 0 or name == "_SUCCESS" or key.endswith("/"):
                        continue
                    relative = key[len(prefix) :].lstrip("/") or name
                    target = (root / relative).resolve()
                    if root not in target.parents:
                        raise TrainingFailedError(f"ClientError: channel {channel}: S3 key {key} escapes the channel")
                    job.check()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, key, str(target))
        except ClientError as exc:
            raise TrainingFailedError(
                f"ClientError: Data download failed for channel {channel} from {uri}: "
                f"{exc.response.get('Error', {}).get('Code')}: {exc.response.get('Error', {}).get('Message')}"
            ) from exc
        if not found:
            raise TrainingFailedError(
                f'ClientError: Data download failed: no S3 objects found under S3 URL "{uri}" given in input data '
                f"source (channel {channel}). Please ensure that the S3 prefix contains data."
            )

    @staticmethod
    def _train_builtin(job: TrainingJob, layout: JobLayout) -> None:
        channels = {c["ChannelName"]: c for c in job.request.get("InputDataConfig") or []}
        result = algorithm.train(
            channels, layout.data_dir, job.request.get("HyperParameters") or {}, log=job.log.add, check=job.check
        )
        result.booster.save_model(str(layout.model_dir / "xgboost-model"))
        with job.lock:
            job.final_metrics = result.metrics

    def _upload_outputs(self, job: TrainingJob, layout: JobLayout) -> None:
        output = job.request["OutputDataConfig"]
        bucket, model_key = split_s3_uri(job.model_artifacts)
        extra = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": output["KmsKeyId"]}
            if output.get("KmsKeyId")
            else {"ServerSideEncryption": "AES256"}
        )
        uploads = [(layout.model_dir, model_key)]
        if any(layout.output_data_dir.iterdir()):
            uploads.append((layout.output_data_dir, model_key.rsplit("/", 1)[0] + "/output.tar.gz"))
        for directory, key in uploads:
            archive = layout.root.parent / PurePosixPath(key).name
            tar_directory(directory, archive)
            try:
                self._context.client_as("s3", job.request.get("RoleArn")).upload_file(
                    str(archive), bucket, key, ExtraArgs=extra
                )
            except (ClientError, BotoCoreError) as exc:
                raise TrainingFailedError(f"ClientError: could not upload s3://{bucket}/{key}: {exc}") from exc


def check_builtin_image(request: Mapping[str, Any]) -> None:
    """A job without a script must name the built-in sagemaker-xgboost:1.7-1 image."""
    specification = request.get("AlgorithmSpecification") or {}
    image = specification.get("TrainingImage")
    if not image:
        raise TrainingFailedError(
            f"ClientError: algorithm resource {specification.get('AlgorithmName')!r} cannot run locally: "
            "the local cloud runs the built-in sagemaker-xgboost:1.7-1 image and script mode"
        )
    match = BUILTIN_XGBOOST_IMAGE.match(image)
    if not match:
        raise TrainingFailedError(
            f"ClientError: training image {image} cannot run locally: the local cloud runs the built-in "
            "sagemaker-xgboost:1.7-1 image, or script mode (hyperparameters sagemaker_program and "
            "sagemaker_submit_directory)"
        )
    if match.group("tag") not in SUPPORTED_XGBOOST_TAGS:
        raise TrainingFailedError(
            f"ClientError: training image {image}: the local cloud emulates sagemaker-xgboost:1.7-1 only "
            "(xgboost 1.7.6); model files of other versions would not match"
        )
