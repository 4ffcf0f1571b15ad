"""Fixtures of the Step Functions patch tests: moto in-process with executions on, quick `.sync` polls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.sagemaker.models import SageMakerModelBackend

from stepml.local.stepfunctions.tasks import SYNC_POLL_SECONDS_ENV
from tests.unit.stepfunctions.support import EXECUTE_STATE_MACHINES, TrainingProgress


@pytest.fixture
def fast_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "0.02")


@pytest.fixture
def sfn_moto(aws_credentials: None, fast_sync: None) -> Iterator[None]:
    """moto in-process with state machine execution on."""
    with mock_aws(config=EXECUTE_STATE_MACHINES):
        yield


@pytest.fixture
def training_progress(monkeypatch: pytest.MonkeyPatch) -> TrainingProgress:
    progress = TrainingProgress(statuses=["Completed"], reported=[])
    original = SageMakerModelBackend.describe_training_job

    def describe_training_job(self: SageMakerModelBackend, training_job_name: str) -> dict[str, Any]:
        response = dict(original(self, training_job_name))
        status = progress.statuses[min(len(progress.reported), len(progress.statuses) - 1)]
        progress.reported.append(status)
        response["TrainingJobStatus"] = status
        if status == "Failed":
            response["FailureReason"] = "AlgorithmError: label column has 3 classes, objective is binary"
        return response

    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)
    return progress
