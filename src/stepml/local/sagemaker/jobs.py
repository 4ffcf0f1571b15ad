"""The state of one training job and what DescribeTrainingJob shows of it.

Kept apart from ``training`` (which runs jobs) so that ``script_mode`` and the adapter can
name a job's state without importing the runner.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepml.local.sagemaker.errors import TrainingStoppedError
from stepml.utils import utc_now

DEFAULT_MAX_RUNTIME_SECONDS = 86400
TERMINAL_TRAINING_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
#: Where SageMaker writes training jobs' logs and metrics.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
#: The host name of a single-instance training job.
TRAINING_HOST = "algo-1"


@dataclass(frozen=True)
class TrainingJobView:
    """What DescribeTrainingJob reports for a job at one moment (API member names via ``as_api``)."""

    name: str
    status: str
    secondary_status: str
    transitions: tuple[dict[str, Any], ...]
    failure_reason: str | None
    start_time: datetime | None
    end_time: datetime | None
    final_metrics: tuple[dict[str, Any], ...]
    model_artifacts: str

    def as_api(self) -> dict[str, Any]:
        """DescribeTrainingJob members for the job's state."""
        response: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts},
            "FinalMetricDataList": [dict(m) for m in self.final_metrics],
        }
        if self.failure_reason:
            response["FailureReason"] = self.failure_reason
        if self.start_time:
            response["TrainingStartTime"] = self.start_time
        if self.end_time:
            response["TrainingEndTime"] = self.end_time
        if self.start_time and self.end_time:
            seconds = max(1, int((self.end_time - self.start_time).total_seconds()))
            response["TrainingTimeInSeconds"] = seconds
            response["BillableTimeInSeconds"] = seconds
        return response


PHASE_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped because it exceeded MaxRuntimeInSeconds",
}


@dataclass
class TrainingJob:
    """One training job's state; ``lock`` guards what DescribeTrainingJob reads."""

    key: tuple[str, str, str]
    request: dict[str, Any]
    model_artifacts: str
    status: str = "InProgress"
    secondary_status: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    final_metrics: list[dict[str, Any]] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    deadline: float = math.inf
    #: The job's log stream (``telemetry.LogStream``) while it runs.
    log: Any = None

    @property
    def name(self) -> str:
        return self.key[2]

    def phase(self, secondary: str, status: str | None = None) -> None:
        now = utc_now()
        with self.lock:
            if self.transitions:
                self.transitions[-1]["EndTime"] = now
            self.transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": PHASE_MESSAGES[secondary]})
            self.secondary_status = secondary
            if status:
                self.status = status

    def check(self) -> None:
        """Raise ``TrainingStoppedError`` when the job was stopped or ran out of time."""
        if self.stop_requested.is_set():
            raise TrainingStoppedError("Stopped")
        if time.monotonic() > self.deadline:
            raise TrainingStoppedError("MaxRuntimeExceeded")

    def view(self) -> TrainingJobView:
        """A snapshot of the job for DescribeTrainingJob."""
        with self.lock:
            return TrainingJobView(
                name=self.name,
                status=self.status,
                secondary_status=self.secondary_status,
                transitions=tuple(dict(t) for t in self.transitions),
                failure_reason=self.failure_reason,
                start_time=self.start_time,
                end_time=self.end_time,
                final_metrics=tuple(dict(m) for m in self.final_metrics),
                model_artifacts=self.model_artifacts,
            )
