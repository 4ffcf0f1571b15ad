"""moto's SageMaker and sagemaker-runtime, routed to a ``LocalSageMaker`` engine.

The only module of the package that imports moto. Each ``Patch`` below replaces a few moto
methods while an engine is bound (``patch.apply(engine)`` for each of ``PATCHES``, in order, which
``LocalCloud`` does); its undo puts moto's own methods back. moto keeps its records (ARNs, List* answers, the
resources the engine does not run), and the patched methods bring the engine's state into
them before moto answers: a training job's statuses and metrics, an endpoint's status.
Every request the engine receives is rebuilt from moto's snake_case arguments and checked
against botocore's model first, so a typo fails as it would in AWS.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto.core.exceptions import JsonRESTError, ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import camelcase_to_underscores
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound
from moto.sagemaker.exceptions import ValidationError as MotoValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from stepml.local import botocore_models, faults
from stepml.local.patching import Patch, register
from stepml.local.sagemaker.engine import LocalSageMaker
from stepml.local.sagemaker.errors import (
    EndpointNotFoundError,
    EndpointThrottledError,
    LocalSageMakerError,
    ModelInvocationError,
    ResourceInUseError,
    ResourceNotFoundError,
    SageMakerValidationError,
)
from stepml.local.sagemaker.hosting import EndpointView
from stepml.local.sagemaker.jobs import TrainingJobView
from stepml.local.sagemaker.validation import (
    arn,
    validate_model_containers,
    validate_request,
    validate_serverless_variants,
)
from stepml.utils import utc_now

_TEST_FILE = "tests/unit/test_local_sagemaker.py"
#: Marks a replacement with the moto method it wraps, so a second engine's patch wraps moto, not the first engine.
_MOTO_ORIGINAL = "__stepml_moto_original__"

# --------------------------------------------------------------------------- moto's records <-> the engine


def _request_from_kwargs(operation: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the API request from the snake_case arguments moto's responses pass to its backend."""
    members = botocore_models.operation_model("sagemaker", operation).input_shape.members
    request = {}
    for member in members:
        value = kwargs.get(camelcase_to_underscores(member))
        if value is not None:
            request[member] = copy.deepcopy(value)
    return request


def _naive_utc(moment: datetime) -> datetime:
    # moto keeps naive UTC datetimes and compares them in its List* filters.
    return moment.astimezone(UTC).replace(tzinfo=None)


def _sync_training_job(fake: Any, view: TrainingJobView) -> None:
    fake.training_job_status = view.status
    fake.secondary_status = view.secondary_status
    fake.secondary_status_transitions = [
        {k: _naive_utc(v) if isinstance(v, datetime) else v for k, v in t.items()} for t in view.transitions
    ]
    fake.failure_reason = view.failure_reason
    fake.training_start_time = _naive_utc(view.start_time) if view.start_time else None
    fake.training_end_time = _naive_utc(view.end_time) if view.end_time else None
    fake.final_metric_data_list = [{**m, "Timestamp": _naive_utc(m["Timestamp"])} for m in view.final_metrics]
    fake.model_artifacts = {"S3ModelArtifacts": view.model_artifacts}
    api = view.as_api()
    fake.training_time_in_seconds = api.get("TrainingTimeInSeconds")
    fake.billable_time_in_seconds = api.get("BillableTimeInSeconds")
    fake.last_modified_time = _naive_utc(view.end_time or view.start_time or utc_now())


def _sync_endpoint(fake: Any, view: EndpointView) -> None:
    fake.endpoint_status = view.status
    fake.failure_reason = view.failure_reason
    fake.endpoint_config_name = view.config_name
    fake.production_variants = [dict(v) for v in view.production_variants] or None
    fake.data_capture_config = view.data_capture
    fake.last_modified_time = _naive_utc(view.last_modified)


def _model_requests(backend: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The CreateModel request of each model an endpoint config's variants name."""
    models = {}
    for variant in config.get("ProductionVariants") or []:
        model_name = variant["ModelName"]
        model = backend._models.get(model_name)
        if model is None:
            raise MotoValidationError(
                message=f'Could not find model "{arn("model", model_name, backend.account_id, backend.region_name)}".'
            )
        models[model_name] = {
            "ModelName": model_name,
            "ExecutionRoleArn": model.execution_role_arn,
            "PrimaryContainer": copy.deepcopy(model.primary_container or {}),
            "Containers": copy.deepcopy(model.containers or []),
            "EnableNetworkIsolation": bool(getattr(model, "enable_network_isolation", False)),
            "InferenceExecutionConfig": copy.deepcopy(getattr(model, "stepml_inference_execution", {})),
        }
    return models


@contextlib.contextmanager
def _as_moto_errors() -> Iterator[None]:
    try:
        yield
    except SageMakerValidationError as exc:
        raise MotoValidationError(message=str(exc)) from exc
    except ResourceInUseError as exc:
        raise ResourceInUseException(message=str(exc)) from exc
    except ResourceNotFoundError as exc:
        raise ResourceNotFound(message=str(exc)) from exc


def _where(backend: Any) -> dict[str, str]:
    return {"account_id": backend.account_id, "region": backend.region_name}


@dataclass(frozen=True)
class _Mirror:
    """moto's records of one kind (``backend.<records>``) and how the engine's state reaches them."""

    records: str
    describe: Callable[[LocalSageMaker], Callable[..., Any]]
    sync: Callable[[Any, Any], None]


_JOBS = _Mirror("training_jobs", lambda engine: engine.describe_training_job, _sync_training_job)
_ENDPOINTS = _Mirror("endpoints", lambda engine: engine.describe_endpoint, _sync_endpoint)


def _describe_one(mirror: _Mirror, engine: LocalSageMaker, original: Any, backend: Any, name: str) -> Any:
    """Describe*: bring the engine's state of ``name`` into moto's record, then let moto answer."""
    records = getattr(backend, mirror.records)
    view = mirror.describe(engine)(name, **_where(backend))
    if view is not None and name in records:
        mirror.sync(records[name], view)
    return original(backend, name)


def _describe_all(
    mirror: _Mirror, engine: LocalSageMaker, original: Any, backend: Any, *args: Any, **kwargs: Any
) -> Any:
    """List*: bring the engine's state of every record into moto's, then let moto filter and page."""
    for name, fake in getattr(backend, mirror.records).items():
        view = mirror.describe(engine)(name, **_where(backend))
        if view is not None:
            mirror.sync(fake, view)
    return original(backend, *args, **kwargs)


def _throttled(message: str) -> Exception:
    # Not an error shape of SageMaker's model: Step Functions names it SageMaker.AmazonSageMakerException.
    return JsonRESTError("ThrottlingException", message)


def _wrap(patch: Patch, owner: Any, name: str, replacement: Callable[..., Any]) -> None:
    """Replace ``owner.name`` with ``replacement(moto_original, self, *args, **kwargs)``."""
    current = getattr(owner, name)
    original = getattr(current, _MOTO_ORIGINAL, current)

    @functools.wraps(original)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        return replacement(original, self, *args, **kwargs)

    setattr(patched, _MOTO_ORIGINAL, original)
    patch.replace(owner, name, patched)


# --------------------------------------------------------------------------- training jobs


def _create_training_job(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateTrainingJob", kwargs)
    name = request.get("TrainingJobName")
    if message := faults.trigger("sagemaker:CreateTrainingJob", str(name)):
        raise _throttled(message)
    with _as_moto_errors():
        if name in backend.training_jobs:
            raise ResourceInUseError(
                "Training job names must be unique within an AWS account and region, and a training job with "
                f"this name already exists ({backend.training_jobs[name].arn})"
            )
        view = engine.create_training_job(request, **_where(backend))
    fake = original(backend, **kwargs)
    # moto writes a made-up MetricDefinitions into the specification; keep the caller's.
    fake.algorithm_specification = copy.deepcopy(request["AlgorithmSpecification"])
    _sync_training_job(fake, view)
    return fake


def _install_training_jobs(patch: Patch, engine: LocalSageMaker) -> None:
    _wrap(patch, SageMakerModelBackend, "create_training_job", functools.partial(_create_training_job, engine))
    _wrap(patch, SageMakerModelBackend, "describe_training_job", functools.partial(_describe_one, _JOBS, engine))
    _wrap(patch, SageMakerModelBackend, "list_training_jobs", functools.partial(_describe_all, _JOBS, engine))


def _install_stop_training_job(patch: Patch, engine: LocalSageMaker) -> None:
    def stop_training_job(backend: Any, training_job_name: str) -> None:
        if training_job_name not in backend.training_jobs:
            job_arn = arn("training-job", training_job_name, backend.account_id, backend.region_name)
            raise MotoValidationError(message=f"Could not find training job '{job_arn}'.")
        with _as_moto_errors():
            engine.stop_training_job(training_job_name, **_where(backend))

    def respond(self: Any) -> Any:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    patch.replace(SageMakerModelBackend, "stop_training_job", stop_training_job)
    patch.replace(SageMakerResponse, "stop_training_job", respond)


# --------------------------------------------------------------------------- models and endpoint configs


def _create_model(original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateModel", kwargs)
    if request.get("ModelName") in backend._models:
        model_arn = backend._models[request["ModelName"]].arn
        raise MotoValidationError(message=f'Cannot create already existing model "{model_arn}".')
    with _as_moto_errors():
        validate_request("CreateModel", request)
    return original(backend, **kwargs)


def _create_model_response(original: Any, response: Any) -> Any:
    """CreateModel as its response handler sees it: moto's passes the backend neither
    EnableNetworkIsolation nor InferenceExecutionConfig, which the checks and serving need."""
    members = botocore_models.operation_model("sagemaker", "CreateModel").input_shape.members
    request = {name: response._get_param(name) for name in members if response._get_param(name) is not None}
    with _as_moto_errors():
        validate_request("CreateModel", request)
        validate_model_containers(request)
    result = original(response)
    model = response.sagemaker_backend._models.get(request.get("ModelName"))
    if model is not None:
        model.enable_network_isolation = bool(request.get("EnableNetworkIsolation"))
        model.stepml_inference_execution = copy.deepcopy(request.get("InferenceExecutionConfig") or {})
    return result


def _create_endpoint_config(original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateEndpointConfig", kwargs)
    name = request.get("EndpointConfigName")
    if name in backend.endpoint_configs:
        config_arn = backend.endpoint_configs[name].endpoint_config_arn
        raise MotoValidationError(message=f'Cannot create already existing endpoint configuration "{config_arn}".')
    with _as_moto_errors():
        validate_request("CreateEndpointConfig", request)
        containers = {name: len(model.containers or []) for name, model in backend._models.items()}
        validate_serverless_variants(request, containers)
    return original(backend, **kwargs)


def _install_model_checks(patch: Patch, engine: LocalSageMaker) -> None:
    _wrap(patch, SageMakerModelBackend, "create_model", _create_model)
    _wrap(patch, SageMakerResponse, "create_model", _create_model_response)
    _wrap(patch, SageMakerModelBackend, "create_endpoint_config", _create_endpoint_config)


# --------------------------------------------------------------------------- endpoints


def _create_endpoint(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateEndpoint", kwargs)
    name = request.get("EndpointName")
    if message := faults.trigger("sagemaker:CreateEndpoint", str(name)):
        raise _throttled(message)
    if name in backend.endpoints:
        raise MotoValidationError(message=f'Cannot create already existing endpoint "{backend.endpoints[name].arn}".')
    with _as_moto_errors():
        validate_request("CreateEndpoint", request)
    config = backend.describe_endpoint_config(request["EndpointConfigName"])
    models = _model_requests(backend, config)
    with _as_moto_errors():
        view = engine.create_endpoint(request, config, models, **_where(backend))
    fake = original(backend, **kwargs)
    _sync_endpoint(fake, view)
    return fake


def _delete_endpoint(engine: LocalSageMaker, original: Any, backend: Any, endpoint_name: str) -> Any:
    if message := faults.trigger("sagemaker:DeleteEndpoint", str(endpoint_name)):
        raise _throttled(message)
    if engine.describe_endpoint(endpoint_name, **_where(backend)):
        with _as_moto_errors():
            engine.delete_endpoint(endpoint_name, **_where(backend))
    return original(backend, endpoint_name)


def _install_endpoints(patch: Patch, engine: LocalSageMaker) -> None:
    for name, replacement in {
        "create_endpoint": functools.partial(_create_endpoint, engine),
        "describe_endpoint": functools.partial(_describe_one, _ENDPOINTS, engine),
        "list_endpoints": functools.partial(_describe_all, _ENDPOINTS, engine),
        "delete_endpoint": functools.partial(_delete_endpoint, engine),
    }.items():
        _wrap(patch, SageMakerModelBackend, name, replacement)


def _update_endpoint(engine: LocalSageMaker, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("UpdateEndpoint", kwargs)
    name = request.get("EndpointName")
    fake = backend.endpoints.get(name)
    if fake is None:
        endpoint_arn = arn("endpoint", str(name), backend.account_id, backend.region_name)
        raise MotoValidationError(message=f'Could not find endpoint "{endpoint_arn}".')
    with _as_moto_errors():
        validate_request("UpdateEndpoint", request)
    config = backend.describe_endpoint_config(request["EndpointConfigName"])
    models = _model_requests(backend, config)
    with _as_moto_errors():
        view = engine.update_endpoint(request, config, models, **_where(backend))
    _sync_endpoint(fake, view)
    return fake


def _respond_update_endpoint(self: Any) -> Any:
    fake = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=self._get_param("RetainAllVariantProperties"),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=self._get_param("RetainDeploymentConfig"),
    )
    return ActionResult({"EndpointArn": fake.arn})


def _install_update_endpoint(patch: Patch, engine: LocalSageMaker) -> None:
    def update_endpoint(backend: Any, **kwargs: Any) -> Any:
        return _update_endpoint(engine, backend, **kwargs)

    patch.replace(SageMakerModelBackend, "update_endpoint", update_endpoint)
    patch.replace(SageMakerResponse, "update_endpoint", _respond_update_endpoint)


# --------------------------------------------------------------------------- sagemaker-runtime


class _RuntimeValidationError(ServiceException):
    code = "ValidationError"


class _RuntimeModelError(ServiceException):
    code = "ModelError"


class _RuntimeInternalFailure(ServiceException):
    code = "InternalFailure"


def _invoke_endpoint(engine: LocalSageMaker, original: Any, response: Any) -> Any:
    name = unquote(response.path.split("/")[2])
    raw = response.raw_body
    body = raw if isinstance(raw, bytes) else (raw or "").encode("utf-8")
    headers = response.headers
    try:
        result = engine.invoke_endpoint(
            name,
            body,
            account_id=response.current_account,
            region=response.region,
            content_type=headers.get("Content-Type"),
            accept=headers.get("Accept"),
            custom_attributes=headers.get("X-Amzn-SageMaker-Custom-Attributes"),
            target_variant=headers.get("X-Amzn-SageMaker-Target-Variant"),
            inference_id=headers.get("X-Amzn-SageMaker-Inference-Id"),
        )
    except (EndpointNotFoundError, SageMakerValidationError) as exc:
        raise _RuntimeValidationError(str(exc)) from exc
    except EndpointThrottledError as exc:
        return _throttled_answer(str(exc))
    except ModelInvocationError as exc:
        error = _RuntimeModelError(str(exc))
        error.OriginalStatusCode = exc.original_status
        error.OriginalMessage = exc.original_message
        error.LogStreamArn = exc.log_stream_arn
        raise error from exc
    except LocalSageMakerError as exc:
        raise _RuntimeInternalFailure(str(exc)) from exc
    response_headers = {
        "Content-Type": result.content_type or "application/octet-stream",
        "x-Amzn-Invoked-Production-Variant": result.invoked_variant,
    }
    return 200, response_headers, result.body


def _throttled_answer(message: str) -> tuple[int, dict[str, str], bytes]:
    """InvokeEndpoint's throttle: HTTP 429, ThrottlingException. Not an error shape of
    sagemaker-runtime's model, so moto's serializer would answer it with 400: written here, in the
    JSON error form botocore reads (its retry handlers then back off on it, as on AWS's)."""
    body = json.dumps({"__type": "ThrottlingException", "message": message}).encode("utf-8")
    # moto takes a handler's status from its "status" header, not the tuple's first item.
    headers = {"status": "429", "Content-Type": "application/json", "X-Amzn-ErrorType": "ThrottlingException"}
    return 429, headers, body


def _install_invoke_endpoint(patch: Patch, engine: LocalSageMaker) -> None:
    _wrap(patch, SageMakerRuntimeResponse, "invoke_endpoint", functools.partial(_invoke_endpoint, engine))
    patch.replace(SageMakerRuntimeResponse, "use_raw_body", True)


# --------------------------------------------------------------------------- the model registry


def _create_model_package_group(original: Any, backend: Any, **kwargs: Any) -> Any:
    with _as_moto_errors():
        validate_request("CreateModelPackageGroup", _request_from_kwargs("CreateModelPackageGroup", kwargs))
    existing = backend.model_package_groups.get(kwargs.get("model_package_group_name"))
    if existing is not None:
        raise MotoValidationError(message=f"Model Package Group already exists: {existing.arn}")
    return original(backend, **kwargs)


def _create_model_package(original: Any, backend: Any, **kwargs: Any) -> Any:
    with _as_moto_errors():
        validate_request("CreateModelPackage", _request_from_kwargs("CreateModelPackage", kwargs))
    return original(backend, **kwargs)


def _update_model_package(original: Any, backend: Any, **kwargs: Any) -> Any:
    """What the request leaves out stays as it was; new metadata keys join the old ones."""
    with _as_moto_errors():
        validate_request("UpdateModelPackage", _request_from_kwargs("UpdateModelPackage", kwargs))
    name = kwargs.get("model_package_arn")
    package = backend.model_packages.get(backend.model_package_name_mapping.get(name, name))
    if package is not None:
        if package.model_package_version is None and kwargs.get("model_approval_status"):
            raise MotoValidationError(message="ModelApprovalStatus can only be set on a versioned model package.")
        for member in ("model_approval_status", "approval_description"):
            if kwargs.get(member) is None:
                kwargs[member] = getattr(package, member)
        kept = package.customer_metadata_properties or {}
        kwargs["customer_metadata_properties"] = {**kept, **(kwargs.get("customer_metadata_properties") or {})}
    return original(backend, **kwargs)


def _install_model_registry(patch: Patch) -> None:
    _wrap(patch, SageMakerModelBackend, "create_model_package_group", _create_model_package_group)
    _wrap(patch, SageMakerModelBackend, "create_model_package", _create_model_package)
    _wrap(patch, SageMakerModelBackend, "update_model_package", _update_model_package)


# --------------------------------------------------------------------------- the patches

MODEL_REGISTRY = register(
    Patch(
        name="sagemaker-model-registry",
        why=(
            "moto accepts model registry requests with any members, silently replaces a model package group of "
            "the same name, and on UpdateModelPackage erases the ModelApprovalStatus, ApprovalDescription and "
            "CustomerMetadataProperties the request leaves out (AWS keeps them and merges new metadata keys). "
            "The patch checks the requests against botocore's model, refuses a duplicate group with a "
            "ValidationException naming its ARN, keeps what an update leaves out, and refuses an approval status "
            "on an unversioned package (both wordings INFERRED: nobody has recorded AWS's)."
        ),
        test="tests/unit/test_registry.py::test_moto_is_as_strict_as_aws_about_the_registry",
        install=_install_model_registry,
    )
)

TRAINING_JOBS = register(
    Patch(
        name="sagemaker-training-jobs",
        why=(
            "moto records a training job as Completed the moment it is created and runs nothing. The patch starts "
            "the job in the engine (built-in XGBoost or script mode) and brings its statuses, secondary status "
            "transitions, FinalMetricDataList and FailureReason into moto's record on Describe/ListTrainingJobs; "
            "a duplicate name is ResourceInUse and the request is checked against botocore's model."
        ),
        test=f"{_TEST_FILE}::test_builtin_xgboost_trains_on_s3_csv_and_writes_the_containers_model",
        install=_install_training_jobs,
        scope="cloud",
    )
)
STOP_TRAINING_JOB = register(
    Patch(
        name="sagemaker-stop-training-job",
        why=(
            "moto 5.2.5 has no StopTrainingJob (backend method and response action). The patch adds both: the "
            "engine stops the running job (Stopping, then Stopped), and a job that is not running is a "
            "ValidationException as in AWS."
        ),
        test=f"{_TEST_FILE}::test_stop_training_job_stops_a_running_job",
        install=_install_stop_training_job,
        scope="cloud",
    )
)
MODEL_CHECKS = register(
    Patch(
        name="sagemaker-model-checks",
        why=(
            "moto accepts CreateModel and CreateEndpointConfig with any members and silently replaces an existing "
            "model or endpoint config of the same name, drops a model's EnableNetworkIsolation, and lets any "
            "ServerlessConfig through. The patch checks the request against botocore's model and SageMaker's "
            "container rules (PrimaryContainer or an inference pipeline's Containers, at most 15), refuses a "
            "duplicate name with AWS's ValidationException, refuses what serverless variants cannot have "
            "(validation.validate_serverless_variants), and keeps network isolation and the pipeline's execution "
            "mode for serving."
        ),
        test="tests/unit/test_local_sagemaker_adapter.py::test_models_and_endpoint_configs_are_checked_and_unique",
        install=_install_model_checks,
        scope="cloud",
    )
)
ENDPOINTS = register(
    Patch(
        name="sagemaker-endpoints",
        why=(
            "moto records an endpoint as InService at once and serves nothing. The patch has the engine start a "
            "model server per variant (Creating until /ping answers, then InService or Failed with a reason), "
            "brings the status into Describe/ListEndpoints, and stops the servers on DeleteEndpoint."
        ),
        test=f"{_TEST_FILE}::test_endpoint_serves_the_model_and_writes_capture_files",
        install=_install_endpoints,
        scope="cloud",
    )
)
UPDATE_ENDPOINT = register(
    Patch(
        name="sagemaker-update-endpoint",
        why=(
            "moto 5.2.5 has no UpdateEndpoint (backend method and response action). The patch adds both: the "
            "engine's blue/green update switches to the new fleet when it is healthy and rolls back on an "
            "auto-rollback alarm."
        ),
        test=f"{_TEST_FILE}::test_update_endpoint_switches_models_with_no_failed_request",
        install=_install_update_endpoint,
        scope="cloud",
    )
)
INVOKE_ENDPOINT = register(
    Patch(
        name="sagemaker-runtime-invoke-endpoint",
        why=(
            "moto's InvokeEndpoint answers a canned body and decodes the payload as UTF-8, failing on binary "
            "data. The patch takes the raw body, forwards it with its headers to the endpoint's model server and "
            "answers the model's response, or ModelError (424) with OriginalStatusCode as AWS does."
        ),
        test=f"{_TEST_FILE}::test_the_hooks_work_behind_moto_in_server_mode",
        install=_install_invoke_endpoint,
        scope="cloud",
    )
)
#: Applied in this order for each engine; undone last first.
PATCHES: tuple[Patch, ...] = (
    TRAINING_JOBS,
    STOP_TRAINING_JOB,
    MODEL_CHECKS,
    ENDPOINTS,
    UPDATE_ENDPOINT,
    INVOKE_ENDPOINT,
)
