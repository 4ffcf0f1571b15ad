"""Hosting: endpoints, their blue/green updates with auto-rollback, and invocations.

An endpoint is Creating until its fleet (``deployment``) answers ``/ping``, then InService
(or Failed with a FailureReason). UpdateEndpoint starts the new fleet, waits until it is
healthy and switches routing atomically; with ``DeploymentConfig.AutoRollbackConfiguration
.Alarms`` it reads the alarms (DescribeAlarms, under the model's execution role) during the
baking period and moves the traffic back to the old fleet when one is in ALARM or cannot be
read; then the fleet that lost drains and stops: no request fails in between. DeleteEndpoint
stops the servers. InvokeEndpoint forwards Body, ContentType, Accept and CustomAttributes to
the current fleet (through each container of an inference pipeline in order, ``invoke_pipeline``);
model errors, and answers over the payload limit, come back as ``ModelInvocationError`` (AWS:
ModelError, 424). A serverless variant takes and returns at most 4 MB of body (an instance-backed
one 6 MB) and at most its MaxConcurrency requests at once: one more is refused at once with
``EndpointThrottledError`` (AWS: ThrottlingException, 429); captured data goes to ``capture``
and each request's status and latencies to the endpoint's CloudWatch metrics
(``endpoint_metrics``), which the production alarms watch.
"""

from __future__ import annotations

import copy
import http.client
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local.sagemaker import capture
from stepml.local.sagemaker.capture import CaptureSettings, CaptureWriter
from stepml.local.sagemaker.context import EngineContext, wait_for_status
from stepml.local.sagemaker.deployment import (
    ENDPOINT_LOG_GROUP_PREFIX,
    Deployment,
    Variant,
    retire,
    start_deployment,
)
from stepml.local.sagemaker.errors import (
    DeploymentFailedError,
    EndpointNotFoundError,
    EndpointThrottledError,
    LocalSageMakerError,
    ModelInvocationError,
    SageMakerValidationError,
)
from stepml.local.sagemaker.validation import arn, truncate_reason, validate_request
from stepml.utils import utc_now

#: An API request (or DescribeEndpointConfig answer), and the CreateModel request of each model by name.
Request = Mapping[str, Any]
ModelRequests = Mapping[str, Mapping[str, Any]]
#: InvokeEndpoint's request and response payload limit (botocore's model: the request's and the
#: response's ``Body`` are both a BodyBlob of at most 6291456 bytes).
MAX_INVOCATION_BYTES = 6 * 1024 * 1024
#: A serverless endpoint's request and response payload limit ("The maximum request and response
#: payload size for serverless invocations is 4 MB",
#: https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html).
MAX_SERVERLESS_INVOCATION_BYTES = 4 * 1024 * 1024
#: How long SageMaker waits for a container to answer /invocations.
INVOCATION_TIMEOUT_SECONDS = 60.0


@dataclass
class Endpoint:
    """One endpoint's state; ``generation`` grows with each update or delete, so a deployment
    thread that is no longer current knows to give up."""

    key: tuple[str, str, str]
    arn: str
    config_name: str
    config: dict[str, Any]
    status: str = "Creating"
    failure_reason: str | None = None
    deployment: Deployment | None = None
    generation: int = 0
    created: datetime = field(default_factory=utc_now)
    modified: datetime = field(default_factory=utc_now)

    @property
    def name(self) -> str:
        return self.key[2]


@dataclass(frozen=True)
class EndpointView:
    """What DescribeEndpoint reports for an endpoint at one moment."""

    name: str
    status: str
    config_name: str
    failure_reason: str | None
    production_variants: tuple[dict[str, Any], ...]
    data_capture: dict[str, Any] | None
    last_modified: datetime
    addresses: dict[str, str]


@dataclass(frozen=True)
class InvocationResult:
    """An InvokeEndpoint answer."""

    body: bytes
    content_type: str
    invoked_variant: str


class Endpoints:
    """The engine's endpoints, by (account, region, name)."""

    def __init__(self, context: EngineContext, writer: CaptureWriter):
        self._context = context
        self._writer = writer
        self._endpoints: dict[tuple[str, str, str], Endpoint] = {}

    def create(
        self, request: Request, endpoint_config: Request, models: ModelRequests, *, account_id: str, region: str
    ) -> EndpointView:
        """Start the fleet of ``endpoint_config`` for a new endpoint (status Creating)."""
        validate_request("CreateEndpoint", request)
        name = request["EndpointName"]
        key = (account_id, region, name)
        with self._context.lock:
            if self._context.closing.is_set():
                raise LocalSageMakerError("the local SageMaker engine is shut down")
            if key in self._endpoints:
                raise SageMakerValidationError(
                    f'Cannot create already existing endpoint "{arn("endpoint", name, account_id, region)}".'
                )
            endpoint = Endpoint(
                key=key,
                arn=arn("endpoint", name, account_id, region),
                config_name=endpoint_config["EndpointConfigName"],
                config=copy.deepcopy(dict(endpoint_config)),
            )
            self._endpoints[key] = endpoint
            generation = endpoint.generation
        return self._launch(endpoint, generation, endpoint_config, models, None, is_update=False)

    def update(
        self, request: Request, endpoint_config: Request, models: ModelRequests, *, account_id: str, region: str
    ) -> EndpointView:
        """Blue/green: start the new config's fleet, then switch all traffic at once (status Updating)."""
        validate_request("UpdateEndpoint", request)
        name = request["EndpointName"]
        with self._context.lock:
            endpoint = self._endpoints.get((account_id, region, name))
            if endpoint is None:
                raise SageMakerValidationError(
                    f'Could not find endpoint "{arn("endpoint", name, account_id, region)}".'
                )
            if endpoint.status != "InService":
                raise SageMakerValidationError(f'Cannot update in-progress endpoint "{endpoint.arn}".')
            endpoint.status = "Updating"
            endpoint.failure_reason = None
            endpoint.modified = utc_now()
            endpoint.generation += 1
            generation = endpoint.generation
        return self._launch(
            endpoint, generation, endpoint_config, models, request.get("DeploymentConfig"), is_update=True
        )

    def _launch(
        self,
        endpoint: Endpoint,
        generation: int,
        endpoint_config: Request,
        models: ModelRequests,
        deployment_config: Request | None,
        *,
        is_update: bool,
    ) -> EndpointView:
        """Deploy ``endpoint_config`` in the background (copies: the caller's dicts may change)."""
        self._context.spawn(
            self._deploy,
            f"stepml-sm-{'update' if is_update else 'deploy'}-{endpoint.name}",
            endpoint,
            generation,
            copy.deepcopy(dict(endpoint_config)),
            copy.deepcopy(dict(models)),
            is_update,
            copy.deepcopy(deployment_config),
        )
        return self._view(endpoint)

    def delete(self, name: str, *, account_id: str, region: str) -> None:
        """Stop the endpoint's model servers (refusing connections) and flush its captured data."""
        with self._context.lock:
            endpoint = self._endpoints.pop((account_id, region, name), None)
            if endpoint is None:
                raise SageMakerValidationError(
                    f'Could not find endpoint "{arn("endpoint", name, account_id, region)}".'
                )
            deployment = self._detach(endpoint)
            endpoint.status = "Deleting"
        if deployment is not None:
            self._retire(deployment)

    def delete_all(self) -> None:
        """Stop every endpoint's fleet (the engine shuts down)."""
        with self._context.lock:
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for endpoint in endpoints:
            with self._context.lock:
                deployment = self._detach(endpoint)
            if deployment is not None:
                self._retire(deployment)

    @staticmethod
    def _detach(endpoint: Endpoint) -> Deployment | None:
        """Take the endpoint's fleet away (under the engine's lock); the caller retires it."""
        endpoint.generation += 1  # a deployment still starting sees this and stops its servers
        deployment, endpoint.deployment = endpoint.deployment, None
        return deployment

    def describe(self, name: str, *, account_id: str, region: str) -> EndpointView | None:
        """The endpoint's current state, or None when this engine does not host it."""
        endpoint = self._endpoints.get((account_id, region, name))
        return self._view(endpoint) if endpoint else None

    def wait(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> EndpointView:
        """Block until the endpoint is InService or Failed (for tests and the CLI)."""
        return wait_for_status(
            lambda: self.describe(name, account_id=account_id, region=region),
            f"endpoint {name}",
            ("InService", "Failed"),
            timeout,
            poll=0.02,
        )

    def _view(self, endpoint: Endpoint) -> EndpointView:
        with self._context.lock:
            deployment = endpoint.deployment
            variants = endpoint.config.get("ProductionVariants") or []
            settings = CaptureSettings.from_config(endpoint.config.get("DataCaptureConfig"))
            addresses = {v.name: v.server.url for v in deployment.variants} if deployment else {}
            production_variants = tuple(_variant_summary(variant) for variant in variants)
            return EndpointView(
                name=endpoint.name,
                status=endpoint.status,
                config_name=endpoint.config_name,
                failure_reason=endpoint.failure_reason,
                production_variants=production_variants if deployment else (),
                data_capture=settings.summary() if settings else None,
                last_modified=endpoint.modified,
                addresses=addresses,
            )

    def _is_current(self, endpoint: Endpoint, generation: int) -> bool:
        return self._endpoints.get(endpoint.key) is endpoint and endpoint.generation == generation

    def _retire(self, deployment: Deployment) -> None:
        retire(deployment, self._writer, self._context.settings.drain_timeout)

    def _deploy(
        self,
        endpoint: Endpoint,
        generation: int,
        config: dict[str, Any],
        models: dict[str, dict[str, Any]],
        is_update: bool,
        deployment_config: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            deployment = start_deployment(
                self._context, endpoint.name, config, models, lambda: self._is_current(endpoint, generation)
            )
        except DeploymentFailedError as exc:
            with self._context.lock:
                if self._is_current(endpoint, generation):
                    endpoint.failure_reason = truncate_reason(str(exc))
                    endpoint.status = "InService" if is_update else "Failed"
                    endpoint.modified = utc_now()
            return
        self._writer.track([v.capture for v in deployment.variants if v.capture], [v.log for v in deployment.variants])
        alarms = rollback_alarms(deployment_config) if is_update else []
        with self._context.lock:
            current = self._is_current(endpoint, generation)
            previous = None
            if current:
                # Traffic moves to the new fleet at once; with alarms to watch the update is
                # done only when the baking period passes without one in ALARM.
                previous, endpoint.deployment = endpoint.deployment, deployment
                if not alarms:
                    self._complete_update(endpoint, config)
        if not current:
            self._retire(deployment)
            return
        if alarms:
            self._bake(endpoint, generation, config, models, deployment, previous, alarms, deployment_config)
        elif previous is not None:
            self._retire(previous)

    def _bake(
        self,
        endpoint: Endpoint,
        generation: int,
        config: dict[str, Any],
        models: dict[str, dict[str, Any]],
        deployment: Deployment,
        previous: Deployment | None,
        alarms: list[str],
        deployment_config: Mapping[str, Any] | None,
    ) -> None:
        """Watch the alarms through the baking period; keep the new fleet or roll back to ``previous``."""
        variants = config.get("ProductionVariants") or [{}]
        role_arn = (models.get(variants[0].get("ModelName", "")) or {}).get("ExecutionRoleArn")
        seconds = baking_seconds(deployment_config)
        if self._context.settings.baking_period_seconds is not None:
            # The local cloud's shorter baking period, as its monitoring period stands in for an hour.
            seconds = min(seconds, self._context.settings.baking_period_seconds)
        reason = self._watch_alarms(endpoint, generation, alarms, role_arn, seconds)
        with self._context.lock:
            current = self._is_current(endpoint, generation)
            if current and reason is None:
                self._complete_update(endpoint, config)
            elif current:  # roll back: the old fleet takes the traffic again
                endpoint.deployment = previous
                endpoint.status = "InService"
                endpoint.failure_reason = truncate_reason(reason)
                endpoint.modified = utc_now()
        if current and reason is not None:
            self._retire(deployment)
        elif previous is not None:
            # Kept the new fleet, or deleted while baking (the delete retired the new fleet):
            # the old fleet is this thread's to retire.
            self._retire(previous)

    @staticmethod
    def _complete_update(endpoint: Endpoint, config: dict[str, Any]) -> None:
        """The endpoint is InService on ``config`` (under the engine's lock)."""
        endpoint.config_name = config["EndpointConfigName"]
        endpoint.config = config
        endpoint.status = "InService"
        endpoint.failure_reason = None
        endpoint.modified = utc_now()

    def _watch_alarms(
        self, endpoint: Endpoint, generation: int, names: list[str], role_arn: str | None, seconds: float
    ) -> str | None:
        """Read the auto-rollback alarms (under the model's execution role) until the baking period
        ends; None when none was in ALARM, else why the update rolls back."""
        cloudwatch = self._context.client_as("cloudwatch", role_arn)
        deadline = time.monotonic() + seconds
        while True:
            try:
                answer = cloudwatch.describe_alarms(AlarmNames=names)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                return (
                    f"Endpoint update failed: the auto-rollback alarms {', '.join(names)} could not be read with the "
                    f"execution role {role_arn}, which needs cloudwatch:DescribeAlarms on them "
                    f"({error.get('Code')}: {error.get('Message')})"
                )
            except BotoCoreError as exc:
                return f"Endpoint update failed: the auto-rollback alarms could not be read: {exc}"
            found = [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
            firing = sorted(alarm["AlarmName"] for alarm in found if alarm.get("StateValue") == "ALARM")
            if firing:
                return (
                    f"Endpoint update rolled back: the auto-rollback alarm(s) {', '.join(firing)} went into ALARM "
                    "state during the deployment; all traffic was shifted back to the previous endpoint configuration."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._is_current(endpoint, generation):
                return None
            if self._context.closing.wait(min(self._context.settings.alarm_poll_seconds, remaining)):
                return None

    def invoke(
        self,
        name: str,
        body: bytes,
        *,
        account_id: str,
        region: str,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
    ) -> InvocationResult:
        """Forward one request to the endpoint's current model server, capturing it if configured."""
        if len(body) > MAX_INVOCATION_BYTES:
            raise SageMakerValidationError(
                f"Value at 'body' failed to satisfy constraint: Member must have length less than or equal to "
                f"{MAX_INVOCATION_BYTES}"
            )
        endpoint = self._endpoints.get((account_id, region, name))
        while True:
            deployment = endpoint.deployment if endpoint else None
            if deployment is None:
                raise EndpointNotFoundError(f"Endpoint {name} of account {account_id} not found.")
            if deployment.acquire():
                break
            # The deployment retired between the read and the acquire: its successor is in place.
        started, clock = utc_now(), time.monotonic()
        try:
            variant = deployment.choose(target_variant)
            _admit(variant, body, name)
            try:
                sent = time.monotonic()
                status, response_body, response_type, container = invoke_pipeline(
                    variant, body, content_type, accept, custom_attributes
                )
                answered = time.monotonic()
            finally:
                variant.leave()
        finally:
            deployment.release()
        self._writer.metrics.record(name, variant.name, status, answered - sent, answered - clock)
        if status >= 400 or status == 0:
            raise _model_error(
                variant, status, response_body, name=name, account_id=account_id, region=region, container=container
            )
        _check_response(variant, status, response_body, container, name=name, account_id=account_id, region=region)
        if variant.capture is not None:
            capture.record(variant.capture, started, body, content_type, response_body, response_type, inference_id)
        return InvocationResult(response_body, response_type, variant.name)


def _admit(variant: Variant, body: bytes, endpoint_name: str) -> None:
    """Refuse what a serverless variant does not take: a body over 4 MB, or a request beyond its
    MaxConcurrency (non-blocking: AWS throttles at once). On success the caller holds a slot
    (``variant.leave()`` gives it back)."""
    if not variant.serverless:
        return
    if len(body) > MAX_SERVERLESS_INVOCATION_BYTES:
        # INFERRED wording: AWS documents the 4 MB limit but not its refusal's text; the code is
        # InvokeEndpoint's ValidationError, as for the 6 MB limit.
        raise SageMakerValidationError(
            f"Request payload of {len(body)} bytes exceeds the maximum of {MAX_SERVERLESS_INVOCATION_BYTES} bytes "
            f"(4 MB) for serverless endpoint {endpoint_name}."
        )
    if not variant.enter():
        # INFERRED wording: AWS answers ThrottlingException (HTTP 429); the message is ours.
        raise EndpointThrottledError(
            f"Rate exceeded: serverless endpoint {endpoint_name} variant {variant.name} is already serving its "
            f"MaxConcurrency of {variant.max_concurrency} concurrent invocations."
        )


def _check_response(
    variant: Variant, status: int, response_body: bytes, container: str, *, name: str, account_id: str, region: str
) -> None:
    """Refuse a container's answer larger than InvokeEndpoint may return: 4 MB from a serverless
    variant, 6 MB from an instance-backed one. The caller gets nothing of it."""
    limit = MAX_SERVERLESS_INVOCATION_BYTES if variant.serverless else MAX_INVOCATION_BYTES
    if len(response_body) <= limit:
        return
    # INFERRED: AWS documents both limits but neither the error nor its text. ModelError (424) is
    # the error InvokeEndpoint declares for what the model's container answered; the message is ours.
    kind = "serverless" if variant.serverless else "real-time"
    message = (
        f"Response payload of {len(response_body)} bytes exceeds the maximum of {limit} bytes "
        f"({limit // (1024 * 1024)} MB) for {kind} endpoint {name}."
    )
    headline = f"Received a response from {container} that could not be returned: {message}"
    raise _invocation_error(variant, status, headline, message, name=name, account_id=account_id, region=region)


def invoke_pipeline(
    variant: Variant,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    custom_attributes: str | None,
    timeout: float = INVOCATION_TIMEOUT_SECONDS,
) -> tuple[int, bytes, str, str]:
    """Run a request through the variant's containers in order, as a serial inference pipeline
    does: each container's response is the next one's request (its Content-Type the response's);
    the caller's Accept goes to the last container only, the others answer their default.
    Returns (status, body, content type, the container that answered: "primary" for one);
    ``timeout`` bounds each container's answer (a batch transform's InvocationsTimeoutInSeconds)."""
    servers = variant.servers
    for index, server in enumerate(servers):
        last = index == len(servers) - 1
        status, body, response_type = post_invocation(
            server.port, body, content_type, accept if last else None, custom_attributes, timeout
        )
        label = "primary" if len(servers) == 1 else variant.labels[index]
        if status >= 400 or status == 0 or last:
            return status, body, response_type, label
        content_type = response_type or content_type
    raise LocalSageMakerError(f"production variant {variant.name} has no container")


def _model_error(
    variant: Variant,
    status: int,
    response_body: bytes,
    *,
    name: str,
    account_id: str,
    region: str,
    container: str = "primary",
) -> ModelInvocationError:
    """The ModelError of a container's error answer (logged to the instance's stream)."""
    message = response_body.decode("utf-8", errors="replace")
    if variant.log is not None:
        variant.log.add(f"POST /invocations answered {status}: {message}")
    kind = "client" if 400 <= status < 500 else "server"
    headline = f'Received {kind} error ({status}) from {container} with message "{message}".'
    return _invocation_error(variant, status, headline, message, name=name, account_id=account_id, region=region)


def _invocation_error(
    variant: Variant, status: int, headline: str, message: str, *, name: str, account_id: str, region: str
) -> ModelInvocationError:
    """A ModelError as InvokeEndpoint words it: ``headline``, where the endpoint's logs are, and the
    log stream of the variant's instance."""
    return ModelInvocationError(
        f"{headline} See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logEventViewer:group=/aws/sagemaker/Endpoints/{name} in account {account_id} for more information.",
        original_status=status,
        original_message=message,
        log_stream_arn=(
            f"arn:aws:logs:{region}:{account_id}:log-group:{ENDPOINT_LOG_GROUP_PREFIX}{name}:"
            f"log-stream:{variant.name}/{variant.instance_id}"
        ),
    )


def _variant_summary(variant: Mapping[str, Any]) -> dict[str, Any]:
    """DescribeEndpoint's summary of one production variant: instance counts, or for a serverless
    variant its current and desired ServerlessConfig instead."""
    summary: dict[str, Any] = {
        "VariantName": variant["VariantName"],
        "CurrentWeight": float(variant.get("InitialVariantWeight", 1.0)),
        "DesiredWeight": float(variant.get("InitialVariantWeight", 1.0)),
    }
    serverless = variant.get("ServerlessConfig")
    if serverless:
        summary["CurrentServerlessConfig"] = copy.deepcopy(dict(serverless))
        summary["DesiredServerlessConfig"] = copy.deepcopy(dict(serverless))
    else:
        summary["CurrentInstanceCount"] = int(variant.get("InitialInstanceCount", 1))
        summary["DesiredInstanceCount"] = int(variant.get("InitialInstanceCount", 1))
    return summary


def rollback_alarms(deployment_config: Mapping[str, Any] | None) -> list[str]:
    """The names of an UpdateEndpoint's auto-rollback alarms."""
    rollback = (deployment_config or {}).get("AutoRollbackConfiguration") or {}
    return [alarm["AlarmName"] for alarm in rollback.get("Alarms") or [] if alarm.get("AlarmName")]


def baking_seconds(deployment_config: Mapping[str, Any] | None) -> float:
    """The baking period after traffic moved: the blue/green policy's (or rolling policy's)
    WaitIntervalInSeconds."""
    config = deployment_config or {}
    blue_green = (config.get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration") or {}
    rolling = config.get("RollingUpdatePolicy") or {}
    return float(blue_green.get("WaitIntervalInSeconds", rolling.get("WaitIntervalInSeconds", 0)) or 0)


def post_invocation(
    port: int,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    custom_attributes: str | None,
    timeout: float = INVOCATION_TIMEOUT_SECONDS,
) -> tuple[int, bytes, str]:
    """POST /invocations to a model server: (status, body, content type); status 0 for a timeout."""
    headers = {"Content-Length": str(len(body))}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    except TimeoutError:
        return (
            0,
            (
                b"Your invocation timed out while waiting for a response from container primary. Review the latency "
                b"metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
            ),
            "",
        )
    except OSError as exc:
        return 503, f"the local model server is not reachable: {exc}".encode(), ""
    finally:
        connection.close()
