"""The walk over the whole template: which resources, in which order, each by its type's creator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import boto3

from stepml.local.provision.base import ACCOUNT_ID, LocalRuntime, ProvisionedStack, ProvisionError
from stepml.local.provision.functions import FunctionCreators
from stepml.local.provision.identity import IdentityCreators
from stepml.local.provision.storage import StorageCreators
from stepml.local.provision.workflows import WorkflowCreators
from stepml.local.template import ResolvedTemplate, TemplateError, load_template


class _Provisioner(StorageCreators, FunctionCreators, WorkflowCreators, IdentityCreators):
    """Every family of creators, by the resource type each creates."""

    def creators(self) -> dict[str, Callable[[str, dict[str, Any]], None]]:
        """The creator of each resource type the local cloud can provision."""
        return {
            "AWS::Serverless::LayerVersion": self.layer,
            "AWS::Serverless::Function": self.function,
            "AWS::Lambda::Permission": self.lambda_permission,
            "AWS::Serverless::HttpApi": self.http_api,
            "AWS::Serverless::StateMachine": self.state_machine,
            "AWS::Glue::SecurityConfiguration": self.glue_security_configuration,
            "AWS::Glue::Job": self.glue_job,
            "AWS::Events::Rule": self.rule,
            "AWS::CloudWatch::Alarm": self.alarm,
            "AWS::S3::Bucket": self.bucket,
            "AWS::S3::BucketPolicy": self.bucket_policy,
            "AWS::DynamoDB::Table": self.table,
            "AWS::SNS::Topic": self.topic,
            "AWS::SNS::TopicPolicy": self.topic_policy,
            "AWS::KMS::Key": self.key,
            "AWS::SQS::Queue": self.queue,
            "AWS::SQS::QueuePolicy": self.queue_policy,
            "AWS::Logs::LogGroup": self.log_group,
            "AWS::IAM::Role": self.role,
            "AWS::Cognito::UserPool": self.user_pool,
            "AWS::Cognito::UserPoolDomain": self.user_pool_domain,
            "AWS::Cognito::UserPoolClient": self.user_pool_client,
        }


def referenced_resources(value: Any, resources: Iterable[str]) -> set[str]:
    """Logical ids of ``resources`` that an unresolved value refers to through Ref, GetAtt or
    Sub (``${!Literal}`` in a Sub is text, not a reference)."""
    names = set(resources)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, arg in node.items():
                if key == "Ref" and isinstance(arg, str) and arg in names:
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    logical = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                    if logical in names:
                        found.add(logical)
                elif key == "Fn::Sub":
                    text = arg[0] if isinstance(arg, list) else arg
                    for part in str(text).split("${")[1:]:
                        name = part.split("}", 1)[0].split(".", 1)[0]
                        if not name.startswith("!") and name in names:
                            found.add(name)
                    if isinstance(arg, list):
                        walk(arg[1])
                else:
                    walk(arg)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


def creation_order(resolved: ResolvedTemplate, logical_ids: Iterable[str]) -> list[str]:
    """Order resources so each comes after what it refers to (as CloudFormation does)."""
    wanted = list(logical_ids)
    resources = resolved.resources
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(logical: str, path: tuple[str, ...]) -> None:
        if state.get(logical) == "done":
            return
        if state.get(logical) == "visiting":
            raise ProvisionError(f"circular reference: {' -> '.join((*path, logical))}")
        state[logical] = "visiting"
        spec = resources[logical]
        deps = referenced_resources(spec.get("Properties", {}), resources)
        depends_on = spec.get("DependsOn", [])
        deps |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        for dep in sorted(deps):
            if dep in wanted:
                visit(dep, (*path, logical))
        state[logical] = "done"
        order.append(logical)

    for logical in wanted:
        visit(logical, ())
    return order


def provision(
    template_path: Path | str,
    session: boto3.Session,
    *,
    stack_name: str = "stepml-local",
    region: str = "us-east-1",
    parameter_overrides: Mapping[str, str] | None = None,
    types: Iterable[str] | None = None,
    runtime: LocalRuntime | None = None,
) -> ProvisionedStack:
    """Create the template's resources (or only those of ``types``) through ``session``."""
    template_path = Path(template_path)
    account_id = ACCOUNT_ID
    resolved = ResolvedTemplate(
        load_template(template_path),
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameter_overrides=dict(parameter_overrides or {}),
        source=str(template_path),
    )
    provisioner = _Provisioner(resolved, session, template_path.parent, runtime)
    creators = provisioner.creators()
    wanted_types = set(types) if types is not None else None
    selected = []
    for logical, spec in resolved.resources.items():
        if not resolved.is_enabled(logical):
            continue
        if wanted_types is not None and spec["Type"] not in wanted_types:
            continue
        if spec["Type"] not in creators:
            raise ProvisionError(
                f"{template_path}: resource {logical} has type {spec['Type']}, which the local cloud cannot provision"
            )
        selected.append(logical)
    created = []
    for logical in creation_order(resolved, selected):
        try:
            props = resolved.resolved_properties(logical)
            creators[resolved.resources[logical]["Type"]](logical, props)
        except TemplateError as exc:
            raise ProvisionError(f"{template_path}: {logical}: {exc}") from exc
        except Exception as exc:
            raise ProvisionError(f"{template_path}: creating {logical} failed: {exc}") from exc
        created.append(logical)
    return ProvisionedStack(resolved=resolved, root=template_path.parent, created=created)
