"""A fleet: the model servers behind one endpoint config, started, checked and retired.

Each production variant is a ``ModelServer`` on 127.0.0.1 serving the model's
``model.tar.gz`` (downloaded under the model's execution role, which must also be allowed to
pull the image). A fleet is ready when every server answers ``GET /ping`` with 200 (checked
every ``health_check_interval``, as SageMaker's health checks are); retiring it refuses new
requests, waits for the in-flight ones, and stops the servers. Each instance writes its log to
``/aws/sagemaker/Endpoints/<endpoint>`` (stream ``<variant>/<instance id>``).
"""

from __future__ import annotations

import random
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import faults, telemetry
from stepml.local.iam.gate import AccessDeniedError
from stepml.local.sagemaker.capture import CaptureBuffer, CaptureSettings, CaptureWriter
from stepml.local.sagemaker.context import EngineContext
from stepml.local.sagemaker.errors import DeploymentFailedError, LocalSageMakerError, SageMakerValidationError
from stepml.local.sagemaker.files import safe_extract
from stepml.local.sagemaker.model_server import ModelServer, ModelServerError
from stepml.local.sagemaker.validation import authorize_image_pull, is_builtin_xgboost
from stepml.utils import S3UriError

#: Where each endpoint's instances write their logs (``<prefix><endpoint name>``).
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"


@dataclass
class Variant:
    """One production variant's model server (a single instance)."""

    name: str
    model_name: str
    weight: float
    server: ModelServer
    capture: CaptureBuffer | None
    #: The instance's id and its log stream in /aws/sagemaker/Endpoints/<endpoint>.
    instance_id: str = ""
    log: telemetry.LogStream | None = None


def _instance_id() -> str:
    """An instance id shaped like EC2's (``i-`` and 17 hex digits), for an endpoint's log stream."""
    return "i-" + uuid.uuid4().hex[:17]


class Deployment:
    """The model servers behind one endpoint config; counts in-flight requests so retiring can drain."""

    def __init__(self, config_name: str, variants: list[Variant], capture: CaptureSettings | None, work_dir: Path):
        self.config_name = config_name
        self.variants = variants
        self.capture = capture
        self.work_dir = work_dir
        self._in_flight = 0
        self._retired = False
        self._condition = threading.Condition()

    def acquire(self) -> bool:
        """Count one more request in flight; False once the fleet is retiring."""
        with self._condition:
            if self._retired:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        """One request in flight finished."""
        with self._condition:
            self._in_flight -= 1
            self._condition.notify_all()

    def retire(self, drain_timeout: float) -> None:
        """Refuse new requests and wait (bounded) for the in-flight ones to finish."""
        with self._condition:
            self._retired = True
            self._condition.wait_for(lambda: self._in_flight == 0, timeout=drain_timeout)

    def choose(self, target_variant: str | None) -> Variant:
        """The variant that serves a request: the TargetVariant, else one drawn by weight."""
        if target_variant:
            for variant in self.variants:
                if variant.name == target_variant:
                    return variant
            raise SageMakerValidationError(f"Variant {target_variant} does not exist on this endpoint.")
        weights = [variant.weight for variant in self.variants]
        if len(self.variants) == 1 or not any(weights):
            return self.variants[0]
        return random.choices(self.variants, weights=weights)[0]


def start_deployment(
    context: EngineContext,
    name: str,
    config: dict[str, Any],
    models: dict[str, dict[str, Any]],
    still_wanted: Callable[[], bool],
) -> Deployment:
    """Start and health-check the servers of endpoint config ``config`` for endpoint ``name``.

    ``still_wanted`` turns False when the endpoint was deleted or updated meanwhile; every
    failure is a ``DeploymentFailedError`` whose message is the endpoint's FailureReason.
    """
    if failure := faults.trigger("sagemaker:Endpoint", name):
        raise DeploymentFailedError(failure)
    work_dir = Path(tempfile.mkdtemp(prefix=f"endpoint-{name[:40]}-", dir=context.work_dir))
    capture = CaptureSettings.from_config(config.get("DataCaptureConfig"))
    variants: list[Variant] = []
    logs: list[telemetry.LogStream] = []
    try:
        for production_variant in config.get("ProductionVariants") or []:
            variants.append(_start_variant(context, name, production_variant, models, work_dir, capture, logs))
        if not variants:
            raise DeploymentFailedError("The endpoint configuration has no production variants.")
        wait_healthy(context, still_wanted, variants)
    except BaseException:
        for variant in variants:
            variant.server.stop()
        for log in logs:
            log.flush()
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    for log in logs:
        log.flush()
    return Deployment(config["EndpointConfigName"], variants, capture, work_dir)


def _start_variant(
    context: EngineContext,
    name: str,
    production_variant: Mapping[str, Any],
    models: dict[str, dict[str, Any]],
    work_dir: Path,
    capture: CaptureSettings | None,
    logs: list[telemetry.LogStream],
) -> Variant:
    variant_name = production_variant["VariantName"]
    model_name = production_variant["ModelName"]
    model_dir = work_dir / variant_name
    environment = prepare_model(context, models.get(model_name), model_name, variant_name, model_dir)
    role_arn = (models.get(model_name) or {}).get("ExecutionRoleArn")
    instance_id = _instance_id()
    log = telemetry.LogStream(
        context.client_as("logs", role_arn),
        ENDPOINT_LOG_GROUP_PREFIX + name,
        f"{variant_name}/{instance_id}",
        describe_first=True,
    )
    logs.append(log)
    log.add(f"Starting the model server of model {model_name} (sagemaker-xgboost 1.7-1) on {instance_id}")
    server = ModelServer(model_dir, environment=environment, name=f"{name}-{variant_name}")
    try:
        server.start()
    except ModelServerError as exc:
        log.add(f"The model server could not start: {exc}")
        raise DeploymentFailedError(
            f"The model server for production variant {variant_name} could not start: {exc}"
        ) from exc
    buffer = CaptureBuffer(name, variant_name, capture, role_arn) if capture else None
    weight = float(production_variant.get("InitialVariantWeight", 1.0))
    return Variant(variant_name, model_name, weight, server, buffer, instance_id, log)


def prepare_model(
    context: EngineContext, model: Mapping[str, Any] | None, model_name: str, variant_name: str, model_dir: Path
) -> dict[str, str]:
    """Download and extract the model's ModelDataUrl into ``model_dir``; the container's Environment."""
    if model is None:
        raise DeploymentFailedError(f'Could not find model "{model_name}" for production variant {variant_name}.')
    containers = model.get("Containers") or []
    if len(containers) > 1:
        raise DeploymentFailedError(
            f"Model {model_name}: inference pipelines (several Containers) are not supported by the local cloud"
        )
    container = model.get("PrimaryContainer") or (containers[0] if containers else {})
    image = container.get("Image") or ""
    if not is_builtin_xgboost(image):
        raise DeploymentFailedError(
            f"Model {model_name}: image {image or '(none)'} cannot be served locally: the local cloud serves "
            "models of the sagemaker-xgboost:1.7-1 image"
        )
    try:
        authorize_image_pull(model.get("ExecutionRoleArn"), image)
    except AccessDeniedError as denied:
        raise DeploymentFailedError(f"Model {model_name}: cannot pull image {image}: {denied}") from denied
    url = container.get("ModelDataUrl")
    if not url:
        raise DeploymentFailedError(f"Model {model_name} has no ModelDataUrl: there is no model to serve.")
    archive = model_dir.parent / f"{variant_name}.tar.gz"
    try:
        context.download(url, archive, model.get("ExecutionRoleArn"))
        safe_extract(archive, model_dir)
    except (ClientError, BotoCoreError, LocalSageMakerError, S3UriError, tarfile.TarError, OSError) as exc:
        raise DeploymentFailedError(
            f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure '
            "that there is an object located at the URL and that the role passed to CreateModel has "
            f"permissions to download the object. ({exc})"
        ) from exc
    finally:
        archive.unlink(missing_ok=True)
    return {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}


def wait_healthy(context: EngineContext, still_wanted: Callable[[], bool], variants: list[Variant]) -> None:
    """Ping every server until each answers 200; ``DeploymentFailedError`` when one cannot load or time runs out."""
    settings = context.settings
    deadline = time.monotonic() + settings.health_check_timeout
    pending = list(variants)
    while pending:
        if context.closing.wait(settings.health_check_interval) or not still_wanted():
            raise DeploymentFailedError("The endpoint was deleted or updated while it was being created.")
        for variant in list(pending):
            try:
                status = variant.server.ping()
            except OSError:
                status = 0
            if status == 200:
                pending.remove(variant)
                if variant.log is not None:
                    variant.log.add("Model loaded: the container answers GET /ping with 200")
            elif variant.server.load_error is not None:
                if variant.log is not None:
                    variant.log.add(f"Model loading failed: {variant.server.load_error}")
                raise DeploymentFailedError(
                    f"The primary container for production variant {variant.name} did not pass the ping health "
                    f"check. Please check CloudWatch logs for this endpoint. (local model server: "
                    f"{variant.server.load_error})"
                )
        if pending and time.monotonic() > deadline:
            raise DeploymentFailedError(
                f"The primary container for production variant {pending[0].name} did not pass the ping health "
                f"check within {settings.health_check_timeout:g} s."
            )


def retire(deployment: Deployment, writer: CaptureWriter, drain_timeout: float) -> None:
    """Drain and stop the fleet; its last log lines and captured data are written."""
    deployment.retire(drain_timeout)
    for variant in deployment.variants:
        variant.server.stop()
        if variant.log is not None:
            writer.forget_log(variant.log)
            variant.log.add("The model server stopped")
            variant.log.flush()
        if variant.capture is not None:
            writer.retire(variant.capture)
    shutil.rmtree(deployment.work_dir, ignore_errors=True)
