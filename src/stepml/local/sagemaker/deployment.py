"""A fleet: the model servers behind one endpoint config, started, checked and retired.

Each production variant runs one ``ModelServer`` on 127.0.0.1 per container of its model (an
inference pipeline's containers in order; an XGBoost container, or a Scikit-learn one serving
a script, ``script_server``), each serving its ``model.tar.gz`` (downloaded under the model's
execution role, which must also be allowed to pull every image).
A fleet is ready when every server answers ``GET /ping`` with 200 (checked as soon as the models
have loaded, then every ``health_check_interval``, as SageMaker's health checks are); retiring it
refuses new requests, waits for the in-flight ones, and stops the servers. Each instance writes its
log to ``/aws/sagemaker/Endpoints/<endpoint>`` (stream ``<variant>/<instance id>``).
"""

from __future__ import annotations

import functools
import random
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from stepml.local.sagemaker.script_server import MODEL_CODE_DIRECTORY, ScriptModel
from stepml.local.sagemaker.validation import authorize_image_pull, is_builtin_sklearn, is_builtin_xgboost
from stepml.utils import S3UriError

#: Where each endpoint's instances write their logs (``<prefix><endpoint name>``).
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"


@dataclass
class Variant:
    """One production variant's model server (a single instance)."""

    name: str
    model_name: str
    weight: float
    #: One server per container, in the order an inference pipeline runs them.
    servers: list[ModelServer]
    capture: CaptureBuffer | None
    #: The instance's id and its log stream in /aws/sagemaker/Endpoints/<endpoint>.
    instance_id: str = ""
    log: telemetry.LogStream | None = None
    #: Each container's name in errors (``container_1``... or its ContainerHostname).
    labels: list[str] = field(default_factory=list)
    #: A serverless variant's ServerlessConfig.MaxConcurrency; None for an instance-backed one.
    max_concurrency: int | None = None
    _slots: threading.BoundedSemaphore | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrency is not None:
            self._slots = threading.BoundedSemaphore(self.max_concurrency)

    @property
    def serverless(self) -> bool:
        """Whether the variant is serverless (a ServerlessConfig instead of instances)."""
        return self.max_concurrency is not None

    def enter(self) -> bool:
        """Take one of a serverless variant's MaxConcurrency slots without waiting; False when all
        are in use (AWS throttles such a request at once instead of queueing it)."""
        return self._slots is None or self._slots.acquire(blocking=False)

    def leave(self) -> None:
        """Give back the slot ``enter`` took."""
        if self._slots is not None:
            self._slots.release()

    @property
    def server(self) -> ModelServer:
        """The container that receives the endpoint's requests (the pipeline's first)."""
        return self.servers[0]

    def stop(self) -> None:
        """Stop every container's server."""
        for server in self.servers:
            server.stop()


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
            variant.stop()
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
    containers = prepare_model(context, models.get(model_name), model_name, variant_name, work_dir / variant_name)
    role_arn = (models.get(model_name) or {}).get("ExecutionRoleArn")
    instance_id = _instance_id()
    log = telemetry.LogStream(
        context.client_as("logs", role_arn),
        ENDPOINT_LOG_GROUP_PREFIX + name,
        f"{variant_name}/{instance_id}",
        describe_first=True,
    )
    logs.append(log)
    servers: list[ModelServer] = []
    try:
        for container in containers:
            kind = "sagemaker-scikit-learn 1.2-1, script mode" if container.loader else "sagemaker-xgboost 1.7-1"
            which = f", {container.label}" if len(containers) > 1 else ""
            log.add(f"Starting the model server of model {model_name} ({kind}{which}) on {instance_id}")
            server = ModelServer(
                container.model_dir,
                environment=container.environment,
                name=f"{name}-{variant_name}-{container.label}",
                loader=container.loader,
            )
            server.start()
            servers.append(server)
    except ModelServerError as exc:
        for server in servers:
            server.stop()
        log.add(f"The model server could not start: {exc}")
        raise DeploymentFailedError(
            f"The model server for production variant {variant_name} could not start: {exc}"
        ) from exc
    buffer = CaptureBuffer(name, variant_name, capture, role_arn) if capture else None
    weight = float(production_variant.get("InitialVariantWeight", 1.0))
    labels = [container.label for container in containers]
    serverless = production_variant.get("ServerlessConfig") or {}
    concurrency = int(serverless["MaxConcurrency"]) if serverless.get("MaxConcurrency") else None
    return Variant(variant_name, model_name, weight, servers, buffer, instance_id, log, labels, concurrency)


@dataclass
class Container:
    """One container of a model, ready to serve: its extracted model data and environment."""

    label: str
    model_dir: Path
    environment: dict[str, str]
    loader: Callable[[Path, Mapping[str, str]], Any] | None


def prepare_model(
    context: EngineContext, model: Mapping[str, Any] | None, model_name: str, variant_name: str, model_dir: Path
) -> list[Container]:
    """Each container of the model (one, or an inference pipeline's in order), its ModelDataUrl
    downloaded under the execution role and extracted under ``model_dir``."""
    if model is None:
        raise DeploymentFailedError(f'Could not find model "{model_name}" for production variant {variant_name}.')
    containers = list(model.get("Containers") or []) or [model.get("PrimaryContainer") or {}]
    prepared = []
    for index, container in enumerate(containers, start=1):
        label = container.get("ContainerHostname") or f"container_{index}"
        directory = model_dir / label if len(containers) > 1 else model_dir
        prepared.append(_prepare_container(context, model, model_name, container, label, directory))
    return prepared


def _prepare_container(
    context: EngineContext,
    model: Mapping[str, Any],
    model_name: str,
    container: Mapping[str, Any],
    label: str,
    model_dir: Path,
) -> Container:
    image = container.get("Image") or ""
    environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    script_mode = is_builtin_sklearn(image)
    if not (is_builtin_xgboost(image) or script_mode):
        raise DeploymentFailedError(
            f"Model {model_name}: image {image or '(none)'} cannot be served locally: the local cloud serves "
            "the sagemaker-xgboost:1.7-1 and sagemaker-scikit-learn:1.2-1 (script mode) images"
        )
    role = model.get("ExecutionRoleArn")
    try:
        authorize_image_pull(role, image)
    except AccessDeniedError as denied:
        raise DeploymentFailedError(f"Model {model_name}: cannot pull image {image}: {denied}") from denied
    url = container.get("ModelDataUrl")
    if not url:
        raise DeploymentFailedError(f"Model {model_name} has no ModelDataUrl: there is no model to serve.")
    _fetch(context, url, role, model_dir, f'Failed to download model data for container "{label}" from URL: "{url}"')
    if not script_mode:
        return Container(label, model_dir, environment, None)
    code_dir = _code_directory(context, model, model_name, environment, model_dir)
    return Container(label, model_dir, environment, functools.partial(ScriptModel.load, code_dir=code_dir))


def _code_directory(
    context: EngineContext, model: Mapping[str, Any], model_name: str, environment: Mapping[str, str], model_dir: Path
) -> Path:
    """Where a script-mode container finds ``SAGEMAKER_PROGRAM``: the model data's ``code/``, or
    the ``s3://`` source archive of ``SAGEMAKER_SUBMIT_DIRECTORY`` (fetched by the container at
    start, with the execution role: impossible under network isolation)."""
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if not environment.get("SAGEMAKER_PROGRAM"):
        raise DeploymentFailedError(
            f"Model {model_name}: the Scikit-learn container serves in script mode and needs SAGEMAKER_PROGRAM"
        )
    if submit.rstrip("/") == MODEL_CODE_DIRECTORY:
        return model_dir / "code"
    if not submit.startswith("s3://"):
        raise DeploymentFailedError(
            f"Model {model_name}: SAGEMAKER_SUBMIT_DIRECTORY {submit or '(unset)'} is neither "
            f"{MODEL_CODE_DIRECTORY} nor an s3:// source archive"
        )
    if model.get("EnableNetworkIsolation"):
        raise DeploymentFailedError(
            f"Model {model_name}: the container cannot download its code from {submit}: the model runs with "
            f"network isolation; pack the code into the model data and set SAGEMAKER_SUBMIT_DIRECTORY to "
            f"{MODEL_CODE_DIRECTORY}"
        )
    code_dir = model_dir.parent / f"{model_dir.name}-code"
    _fetch(context, submit, model.get("ExecutionRoleArn"), code_dir, f'Failed to download the code from "{submit}"')
    return code_dir


def _fetch(context: EngineContext, url: str, role: str | None, target: Path, failure: str) -> None:
    archive = target.parent / f"{target.name}-{uuid.uuid4().hex[:8]}.tar.gz"
    try:
        context.download(url, archive, role)
        safe_extract(archive, target)
    except (ClientError, BotoCoreError, LocalSageMakerError, S3UriError, tarfile.TarError, OSError) as exc:
        raise DeploymentFailedError(
            f"{failure}. Please ensure that there is an object located at the URL and that the role passed to "
            f"CreateModel has permissions to download the object. ({exc})"
        ) from exc
    finally:
        archive.unlink(missing_ok=True)


def wait_healthy(context: EngineContext, still_wanted: Callable[[], bool], variants: list[Variant]) -> None:
    """Ping every server until each answers 200; ``DeploymentFailedError`` when one cannot load or time runs out."""
    settings = context.settings
    deadline = time.monotonic() + settings.health_check_timeout
    pending = list(variants)
    while pending:
        # A round pings as soon as every pending model has loaded, or when the interval ends: a model
        # that loads in milliseconds is InService without waiting out a first interval.
        round_ends = time.monotonic() + settings.health_check_interval
        for server in [server for variant in pending for server in variant.servers]:
            server.wait_loaded(max(0.0, round_ends - time.monotonic()))
        if context.closing.is_set() or not still_wanted():
            raise DeploymentFailedError("The endpoint was deleted or updated while it was being created.")
        for variant in list(pending):
            statuses = []
            for server in variant.servers:
                try:
                    statuses.append(server.ping())
                except OSError:
                    statuses.append(0)
            failed = next((server for server in variant.servers if server.load_error is not None), None)
            if all(status == 200 for status in statuses):
                pending.remove(variant)
                if variant.log is not None:
                    which = "the container answers" if len(variant.servers) == 1 else "every container answers"
                    variant.log.add(f"Model loaded: {which} GET /ping with 200")
            elif failed is not None:
                if variant.log is not None:
                    variant.log.add(f"Model loading failed: {failed.load_error}")
                raise DeploymentFailedError(
                    f"The primary container for production variant {variant.name} did not pass the ping health "
                    f"check. Please check CloudWatch logs for this endpoint. (local model server: "
                    f"{failed.load_error})"
                )
        if pending and time.monotonic() > deadline:
            raise DeploymentFailedError(
                f"The primary container for production variant {pending[0].name} did not pass the ping health "
                f"check within {settings.health_check_timeout:g} s."
            )
        if pending:
            context.closing.wait(max(0.0, round_ends - time.monotonic()))


def retire(deployment: Deployment, writer: CaptureWriter, drain_timeout: float) -> None:
    """Drain and stop the fleet; its last log lines and captured data are written."""
    deployment.retire(drain_timeout)
    for variant in deployment.variants:
        variant.stop()
        if variant.log is not None:
            writer.forget_log(variant.log)
            variant.log.add("The model server stopped")
            variant.log.flush()
        if variant.capture is not None:
            writer.retire(variant.capture)
    shutil.rmtree(deployment.work_dir, ignore_errors=True)
