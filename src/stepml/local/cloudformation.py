"""The local cloud's stack as CloudFormation describes it.

The provisioner creates the template's resources itself (moto's CloudFormation cannot run a
SAM template with real engines behind it), so moto's CloudFormation backend knows no stack and
``aws cloudformation describe-stacks`` listed nothing, though that is where users and tools
(``stepml ... --stack-name``) look for a stack's Outputs. ``register_stack`` records the
provisioned stack in moto's backend, CREATE_COMPLETE, with its parameters, tags, outputs and
resources (logical id, physical id, type after the SAM transform), without moto creating
anything. Updating or deleting it through CloudFormation is refused: the resources belong to
the running local cloud, and ``stepml local down`` removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepml.local.provision import ProvisionedStack
from stepml.local.template import ResolvedTemplate

#: The CloudFormation type each SAM resource becomes after the AWS::Serverless transform.
SAM_TRANSFORMED_TYPES = {
    "AWS::Serverless::Function": "AWS::Lambda::Function",
    "AWS::Serverless::LayerVersion": "AWS::Lambda::LayerVersion",
    "AWS::Serverless::HttpApi": "AWS::ApiGatewayV2::Api",
    "AWS::Serverless::StateMachine": "AWS::StepFunctions::StateMachine",
}


class StackRegistrationError(RuntimeError):
    """The provisioned stack cannot be recorded in moto's CloudFormation backend."""


@dataclass
class StackResource:
    """One resource of the stack, with the attributes moto's CloudFormation responses read."""

    logical_resource_id: str
    physical_resource_id: str
    cf_resource_type: str


def stack_resources(stack: ProvisionedStack) -> list[StackResource]:
    """The resources the local cloud created, as CloudFormation lists them after the SAM transform."""
    resolved = stack.resolved
    resources = []
    for logical in stack.created:
        spec = resolved.resources[logical]
        kind = spec["Type"]
        resources.append(StackResource(logical, resolved.ref(logical), SAM_TRANSFORMED_TYPES.get(kind, kind)))
        if kind == "AWS::Serverless::Function" and "Role" not in spec.get("Properties", {}):
            # SAM generates <Function>Role; the provisioner creates it as <function name>-role.
            role = f"{resolved.physical_ids[logical]}-role"[:64]
            resources.append(StackResource(f"{logical}Role", role, "AWS::IAM::Role"))
    return resources


def _parameter_list(resolved: ResolvedTemplate) -> list[dict[str, str]]:
    """The stack's parameters as DescribeStacks lists them, NoEcho ones masked."""
    declared = resolved.template.get("Parameters", {})
    no_echo = {name for name, spec in declared.items() if str(spec.get("NoEcho", "false")).lower() == "true"}
    return [
        {"ParameterKey": name, "ParameterValue": "****" if name in no_echo else str(value)}
        for name, value in resolved.parameters.items()
    ]


def _output_list(resolved: ResolvedTemplate, outputs: dict[str, str]) -> list[dict[str, Any]]:
    """The resolved output values with the template's description of each."""
    template_outputs = resolved.template.get("Outputs", {})
    return [
        {"OutputKey": name, "OutputValue": value, "Description": template_outputs.get(name, {}).get("Description")}
        for name, value in outputs.items()
    ]


def _local_cloud_stack_class(
    backend: Any,
    parameters: list[dict[str, str]],
    resources: list[StackResource],
    output_list: list[dict[str, Any]],
) -> type:
    """A subclass of moto's Stack that answers with what the provisioner made and refuses updates and deletes."""
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import Stack

    class LocalCloudStack(Stack):
        """moto's Stack with what the provisioner made, instead of resources moto would create."""

        @property
        def parameter_list(self) -> list[dict[str, Any]]:  # type: ignore[override]
            return parameters

        @property
        def stack_parameters(self) -> dict[str, Any]:  # type: ignore[override]
            return {p["ParameterKey"]: p["ParameterValue"] for p in parameters}

        @property
        def stack_resources(self) -> list[StackResource]:  # type: ignore[override]
            return resources

        @property
        def outputs(self) -> list[dict[str, Any]]:  # type: ignore[override]
            return output_list

        @property
        def exports(self) -> list[Any]:  # type: ignore[override]
            return []

        def update(self, *args: Any, **kwargs: Any) -> None:
            raise ValidationError(
                self.name, message=f"Stack {self.name} belongs to the running local cloud and cannot be updated"
            )

        def delete(self) -> None:
            # moto took the stack out of its table before calling delete(): put it back.
            backend.stacks[self.stack_id] = self
            raise ValidationError(
                self.name,
                message=f"Stack {self.name} belongs to the running local cloud; `stepml local down` removes it",
            )

    # moto's serializer finds StackName/StackStatus of a StackSummary through the class name
    # (``Stack`` + ``Name`` -> ``name``), so the subclass keeps it.
    LocalCloudStack.__name__ = LocalCloudStack.__qualname__ = "Stack"
    return LocalCloudStack


def register_stack(
    stack: ProvisionedStack,
    outputs: dict[str, str],
    template_body: str,
    tags: dict[str, str] | None = None,
) -> str:
    """Record ``stack`` in moto's CloudFormation backend as CREATE_COMPLETE; returns its StackId.

    ``outputs`` are the resolved output values (``LocalCloud.outputs()``); their descriptions
    come from the template. Call it with moto running in this process, after provisioning.
    """
    from moto.cloudformation.models import cloudformation_backends

    resolved = stack.resolved
    backend = cloudformation_backends[resolved.account_id][resolved.region]
    if any(existing.name == resolved.stack_name for existing in backend.stacks.values()):
        raise StackRegistrationError(f"stack {resolved.stack_name} is already registered")
    parameters = _parameter_list(resolved)
    stack_class = _local_cloud_stack_class(backend, parameters, stack_resources(stack), _output_list(resolved, outputs))
    # An empty template keeps moto from parsing (and creating) anything; the real body is set after.
    registered = stack_class(
        stack_id=str(resolved._pseudo("AWS::StackId")),
        name=resolved.stack_name,
        template={},
        parameters={p["ParameterKey"]: p["ParameterValue"] for p in parameters},
        account_id=resolved.account_id,
        region_name=resolved.region,
        tags=dict(tags or {}),
    )
    registered.template = template_body
    registered.template_dict = resolved.template
    registered.description = resolved.template.get("Description")
    registered._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
    registered.status = "CREATE_COMPLETE"
    registered._add_stack_event("CREATE_COMPLETE")
    backend.stacks[registered.stack_id] = registered
    return registered.stack_id
