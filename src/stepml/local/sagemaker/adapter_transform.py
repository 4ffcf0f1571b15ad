"""moto's SageMaker batch transform jobs, routed to a ``LocalSageMaker`` engine's ``transform_jobs``.

An adapter module like ``adapter.py`` (the only modules of the package that import moto), kept apart
so that each stays under a page: moto 5.2.5 records a transform job as Completed the moment it is
created, replaces a job of the same name and has no StopTransformJob; these patches run the job in
the engine and bring its state into moto's record on Describe/ListTransformJobs.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from moto.core.responses import EmptyResult
from moto.sagemaker.exceptions import ResourceNotFound
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from stepml.local import faults
from stepml.local.patching import Patch, register
from stepml.local.sagemaker.adapter import (
    _as_moto_errors,
    _describe_all,
    _describe_one,
    _Mirror,
    _model_requests,
    _naive_utc,
    _request_from_kwargs,
    _throttled,
    _where,
    _wrap,
)
from stepml.local.sagemaker.engine import LocalSageMaker
from stepml.local.sagemaker.errors import ResourceInUseError
from stepml.local.sagemaker.transform import TransformJobView
from stepml.local.sagemaker.transform_validation import validate_transform_request
from stepml.local.sagemaker.validation import arn
from stepml.utils import utc_now

_TEST_FILE = "tests/unit/test_local_transform.py"


def _naive(moment: datetime | None) -> datetime | None:
    return _naive_utc(moment) if moment else None


def _sync_transform_job(fake: Any, view: TransformJobView) -> None:
    fake.transform_job_status = view.status
    fake.failure_reason = view.failure_reason
    fake.transform_start_time = _naive(view.start_time)
    fake.transform_end_time = _naive(view.end_time)
    fake.last_modified_time = _naive_utc(view.end_time or view.start_time or utc_now())


_TRANSFORMS = _Mirror("transform_jobs", lambda engine: engine.describe_transform_job, _sync_transform_job)


def _create_transform_job(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateTransformJob", kwargs)
    name = request.get("TransformJobName")
    if message := faults.trigger("sagemaker:CreateTransformJob", str(name)):
        raise _throttled(message)
    with _as_moto_errors():
        validate_transform_request(request)
        if name in backend.transform_jobs:
            raise ResourceInUseError(
                "Job name must be unique within an AWS account and region, and a job with this name already exists "
                f"({backend.transform_jobs[name].arn})"
            )
    # AWS's answer for a missing model: ValidationException 'Could not find model "<arn>".'
    model = _model_requests(backend, {"ProductionVariants": [{"ModelName": request["ModelName"]}]})
    with _as_moto_errors():
        view = engine.create_transform_job(request, model[request["ModelName"]], **_where(backend))
    fake = original(backend, **kwargs)
    # moto fills in empty strings AWS leaves out.
    fake.labeling_job_arn = fake.auto_ml_job_arn = None
    fake.creation_time = _naive_utc(view.creation_time)
    _sync_transform_job(fake, view)
    return fake


def _install_transform_jobs(patch: Patch, engine: LocalSageMaker) -> None:
    _wrap(patch, SageMakerModelBackend, "create_transform_job", functools.partial(_create_transform_job, engine))

    def describe(original: Any, backend: Any, transform_job_name: str) -> Any:
        # moto's response handler names the argument; _describe_one takes it by position.
        return _describe_one(_TRANSFORMS, engine, original, backend, transform_job_name)

    _wrap(patch, SageMakerModelBackend, "describe_transform_job", describe)
    _wrap(patch, SageMakerModelBackend, "list_transform_jobs", functools.partial(_describe_all, _TRANSFORMS, engine))


def _install_stop_transform_job(patch: Patch, engine: LocalSageMaker) -> None:
    def stop_transform_job(backend: Any, transform_job_name: str) -> None:
        if transform_job_name not in backend.transform_jobs:
            job_arn = arn("transform-job", transform_job_name, backend.account_id, backend.region_name)
            raise ResourceNotFound(message=f"Could not find transform job '{job_arn}'.")
        with _as_moto_errors():
            engine.stop_transform_job(transform_job_name, **_where(backend))

    def respond(self: Any) -> Any:
        self.sagemaker_backend.stop_transform_job(self._get_param("TransformJobName"))
        return EmptyResult()

    patch.replace(SageMakerModelBackend, "stop_transform_job", stop_transform_job)
    patch.replace(SageMakerResponse, "stop_transform_job", respond)


TRANSFORM_JOBS = register(
    Patch(
        name="sagemaker-transform-jobs",
        why=(
            "moto records a transform job as Completed the moment it is created, runs nothing, accepts any "
            "members, a model that does not exist and a name already taken (replacing the job). The patch checks "
            "the request (botocore's model, SageMaker's payload limits, what the local cloud cannot run), refuses "
            "a missing model with a ValidationException and a duplicate name with ResourceInUse (and answers "
            "ThrottlingException while a sagemaker:CreateTransformJob fault is set), runs the job in "
            "the engine (the model's containers over the input objects, outputs to S3) and brings its status, "
            "times and FailureReason into moto's record on Describe/ListTransformJobs."
        ),
        test=f"{_TEST_FILE}::test_a_transform_job_writes_one_out_object_per_input_with_xgboosts_predictions",
        install=_install_transform_jobs,
        scope="cloud",
    )
)
STOP_TRANSFORM_JOB = register(
    Patch(
        name="sagemaker-stop-transform-job",
        why=(
            "moto 5.2.5 has no StopTransformJob (backend method and response action). The patch adds both: the "
            "engine stops the running job (Stopping, then Stopped); an unknown job is ResourceNotFound and one "
            "that is not running a ValidationException."
        ),
        test=f"{_TEST_FILE}::test_stop_transform_job_stops_a_running_job",
        install=_install_stop_transform_job,
        scope="cloud",
    )
)
#: Applied in this order for each engine, after ``adapter.PATCHES``; undone last first.
PATCHES: tuple[Patch, ...] = (TRANSFORM_JOBS, STOP_TRANSFORM_JOB)
