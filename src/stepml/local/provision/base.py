"""What every part of provisioning shares: the error, the runtime protocol, the stack it returns,
the template-to-API type coercion and the base the resource creators build on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3

from stepml.local.apigateway import Route
from stepml.local.lambdas import FunctionSpec
from stepml.local.template import ResolvedTemplate


class ProvisionError(RuntimeError):
    """A resource of the template could not be created locally."""


class LocalRuntime(Protocol):
    """What the local cloud does beyond moto for compute resources (see stepml.local.cloud)."""

    def register_function(self, spec: FunctionSpec) -> None: ...

    def register_routes(self, api_logical_id: str, routes: list[Route]) -> None: ...

    def register_glue_job(self, name: str, script_path: Path) -> None: ...

    def layer_dir(self, logical_id: str) -> Path:
        """A folder for the contents of a layer built for the local workers (emptied by provisioning)."""
        ...


#: The account the local cloud provisions into (moto's default account).
ACCOUNT_ID = "123456789012"
#: The resource types whose data-plane state the Lambdas use directly.
DATA_RESOURCE_TYPES = frozenset(
    {
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::KMS::Key",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Logs::LogGroup",
        "AWS::IAM::Role",
    }
)


@dataclass
class ProvisionedStack:
    """The result of provisioning: names and ARNs by logical id, and the resolved template."""

    resolved: ResolvedTemplate
    root: Path
    created: list[str]

    def physical_id(self, logical_id: str) -> str:
        """What ``Ref`` gives for the resource: a bucket or table name, topic ARN, key id."""
        return self.resolved.ref(logical_id)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The function's resolved environment variables, as Lambda would see them."""
        return self.resolved.function_environment(logical_id)


def _coerce(value: Any, shape: Any) -> Any:
    """Convert template values (parameters arrive as strings) to the API's types, as CloudFormation does."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: _coerce(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_coerce(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _coerce(v, shape.value) for k, v in value.items()}
    if isinstance(value, str):
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("double", "float"):
            return float(value)
        if kind == "boolean":
            return value.lower() == "true"
    return value


def api_parameters(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each value converted to the type the operation's input shape declares."""
    operation_model = client.meta.service_model.operation_model(operation)
    return _coerce(params, operation_model.input_shape)


def tags(props: Mapping[str, Any]) -> list[dict[str, str]]:
    """The template's ``Tags`` in the API's shape, values as strings."""
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", [])]


class ProvisionerBase:
    """The template, the session and the local runtime that each family of creators works with."""

    def __init__(
        self, resolved: ResolvedTemplate, session: boto3.Session, root: Path, runtime: LocalRuntime | None = None
    ):
        self.resolved = resolved
        self.session = session
        self.root = root
        self.runtime = runtime
        self._clients: dict[str, Any] = {}
        #: What each of the template's layers puts on a worker's path, by logical id.
        self._layer_dirs: dict[str, Path] = {}

    def client(self, service: str) -> Any:
        """One boto3 client per service, in the template's region."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.resolved.region)
        return self._clients[service]

    def _require_runtime(self, logical_id: str) -> LocalRuntime:
        if self.runtime is None:
            raise ProvisionError(f"{logical_id}: provisioning compute resources needs the local cloud's runtime")
        return self.runtime

    def _local_path(self, logical_id: str, prop: str, value: Any) -> Path:
        if not isinstance(value, str) or value.startswith("s3://"):
            raise ProvisionError(f"{logical_id}.{prop}: the local cloud needs a path in the repository, got {value!r}")
        path = (self.root / value).resolve()
        if not path.exists():
            raise ProvisionError(f"{logical_id}.{prop}: {value} does not exist")
        return path
