"""Creators of Lambda layers and functions and of the HTTP APIs that route to them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from stepml import packaging
from stepml.local.apigateway import Route
from stepml.local.lambdas import FunctionSpec
from stepml.local.provision.base import LocalRuntime, ProvisionError
from stepml.local.provision.roles import RoleCreators


class FunctionCreators(RoleCreators):
    """AWS::Serverless::LayerVersion, Function and HttpApi and AWS::Lambda::Permission (the
    function's role from ``RoleCreators``)."""

    def layer(self, logical_id: str, props: dict[str, Any]) -> None:
        """A layer's contents for the local workers' path.

        A ``makefile`` layer is this repository's library layer (scripts/build_layer.py): its
        workers get what that build ships of the ContentUri, the stepml modules the layer's
        functions import, decided by the same function (stepml.packaging); their third-party
        packages come from the local venv. Any other layer puts its ContentUri on the path.
        """
        source = self._local_path(logical_id, "ContentUri", props["ContentUri"])
        build = self.resolved.resource(logical_id).get("Metadata", {}).get("BuildMethod")
        if build == "makefile":
            runtime = self._require_runtime(logical_id)
            entries = packaging.layer_entry_files(self.root, self.resolved.template, logical_id)
            files = packaging.layer_files(source, packaging.runtime_modules(entries, source))
            target = runtime.layer_dir(logical_id)
            packaging.stage_layer(source, files, target, link=True)
            self._layer_dirs[logical_id] = target
        elif build in (None, "python3.11"):
            self._layer_dirs[logical_id] = source
        else:
            raise ProvisionError(f"{logical_id}: BuildMethod {build} is not supported by the local cloud")

    def function(self, logical_id: str, props: dict[str, Any]) -> None:
        """A function as SAM deploys it (its role, its code in moto's Lambda, its reserved
        concurrency), then the runtime's worker for it and the HTTP routes of its events."""
        runtime = self._require_runtime(logical_id)
        reserved = self._reserved_concurrency(logical_id, props)
        code_dir = self._local_path(logical_id, "CodeUri", props["CodeUri"])
        layer_dirs, layer_parts = self._function_layers(logical_id, props.get("Layers", []))
        try:
            packaging.FunctionPackage(logical_id, packaging.measure_code("code", code_dir), tuple(layer_parts)).check()
        except packaging.PackageLimitError as exc:
            raise ProvisionError(str(exc)) from exc
        name = self.resolved.physical_ids[logical_id]
        environment = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
        role = self.function_role(logical_id, props)
        arn = self._create_lambda_function(logical_id, props, code_dir, role, environment, reserved)
        runtime.register_function(
            FunctionSpec(
                name=name,
                handler=props["Handler"],
                code_dir=code_dir,
                layer_dirs=tuple(layer_dirs),
                environment=environment,
                timeout_seconds=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                arn=arn,
                role_arn=role,
                reserved_concurrency=None if reserved is None else int(reserved),
            )
        )
        self._register_http_events(runtime, logical_id, props.get("Events", {}), name)

    def lambda_permission(self, logical_id: str, props: dict[str, Any]) -> None:
        """A statement of a function's resource-based policy (AddPermission), which the local
        cloud's EventBridge checks before it invokes the function for a rule."""
        optional = {key: props[key] for key in ("SourceArn", "SourceAccount") if key in props}
        self.client("lambda").add_permission(
            FunctionName=props["FunctionName"],
            StatementId=logical_id,
            Action=props["Action"],
            Principal=props["Principal"],
            **optional,
        )

    def _reserved_concurrency(self, logical_id: str, props: dict[str, Any]) -> Any:
        """Refuse what the local Lambda cannot run; returns ReservedConcurrentExecutions (None if unset)."""
        if props.get("Runtime") != "python3.11":
            raise ProvisionError(
                f"{logical_id}: Runtime {props.get('Runtime')!r} is not supported locally (python3.11)"
            )
        for unsupported in ("FunctionUrlConfig", "VpcConfig", "ImageUri"):
            if unsupported in props:
                raise ProvisionError(f"{logical_id}: property {unsupported} is not supported by the local cloud")
        reserved = props.get("ReservedConcurrentExecutions")
        if reserved is not None and (not str(reserved).isdigit() or int(reserved) > 1000):
            raise ProvisionError(f"{logical_id}: ReservedConcurrentExecutions must be an integer from 0 to 1000")
        return reserved

    def _function_layers(self, logical_id: str, layers: list[Any]) -> tuple[list[Path], list[packaging.Part]]:
        """The folders the function's layers put on a worker's path, and every layer's size for the package limit."""
        layer_dirs = []
        layer_parts = []
        for layer in layers:
            local = next(
                (
                    lid
                    for lid in self.resolved.resources
                    if self.resolved.resources[lid]["Type"] == "AWS::Serverless::LayerVersion"
                    and self.resolved.ref(lid) == layer
                ),
                None,
            )
            if local is not None:
                layer_dirs.append(self._layer_dirs[local])
                layer_parts.append(packaging.Part(local, packaging.unzipped_size(self._layer_dirs[local])))
                continue
            # A layer of another account: the local venv provides its packages; its size is known.
            known = packaging.known_layer(str(layer))
            if known is None:
                raise ProvisionError(
                    f"{logical_id}: layer {layer} is neither a layer of this template nor one the local cloud "
                    f"provides (the AWS SDK for pandas {packaging.AWS_SDK_PANDAS_VERSION} layer)"
                )
            layer_parts.append(known)
        return layer_dirs, layer_parts

    def _create_lambda_function(
        self,
        logical_id: str,
        props: dict[str, Any],
        code_dir: Path,
        role: str,
        environment: dict[str, str],
        reserved: Any,
    ) -> str:
        """Create the function in moto's Lambda with its code zipped as ``sam package`` would; returns its ARN."""
        name = self.resolved.physical_ids[logical_id]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for file in packaging.package_files(code_dir):
                bundle.write(file, file.relative_to(code_dir))
        created = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler=props["Handler"],
            Code={"ZipFile": archive.getvalue()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": environment},
        )
        self.resolved.runtime_attributes[(logical_id, "Arn")] = created["FunctionArn"]
        if reserved is not None:
            self.client("lambda").put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(reserved)
            )
        return str(created["FunctionArn"])

    def _register_http_events(
        self, runtime: LocalRuntime, logical_id: str, events: dict[str, Any], function_name: str
    ) -> None:
        """Give the runtime each HttpApi event's route to the function, grouped by API."""
        routes: dict[str, list[Route]] = {}
        for event_name, event in events.items():
            if event.get("Type") != "HttpApi":
                raise ProvisionError(
                    f"{logical_id}: event {event_name} of type {event.get('Type')} is not supported "
                    "locally (HttpApi only)"
                )
            api = self._api_logical_id(event["Properties"].get("ApiId"), logical_id)
            routes.setdefault(api, []).append(
                Route(event["Properties"]["Method"].upper(), event["Properties"]["Path"], function_name)
            )
        for api, api_routes in routes.items():
            runtime.register_routes(api, api_routes)

    def _api_logical_id(self, api_ref: Any, logical_id: str) -> str:
        for lid, spec in self.resolved.resources.items():
            if spec["Type"] == "AWS::Serverless::HttpApi" and self.resolved.ref(lid) == api_ref:
                return lid
        raise ProvisionError(f"{logical_id}: HttpApi event needs ApiId referring to an AWS::Serverless::HttpApi")

    def http_api(self, logical_id: str, props: dict[str, Any]) -> None:
        """An HTTP API: its routes come from its functions' events; the runtime serves them."""
        self._require_runtime(logical_id)
        for unsupported in ("Auth", "Domain", "CorsConfiguration", "DefinitionBody", "DefinitionUri"):
            if unsupported in props:
                raise ProvisionError(f"{logical_id}: property {unsupported} is not supported by the local cloud")
