"""What every per-service resolver shares: the call's environment, building and deduplicating
authorization requests, request tags, passed roles, KMS keys used on the caller's behalf, the
tagging action of a create given tags, and the ``<prefix>:<Operation>`` on ``"*"`` default."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.call import ParsedCall, ResourceResolver
from stepml.local.iam.requests.models import iam_prefix


@dataclass(frozen=True)
class CallEnv:
    """One parsed call with the account, region and resolver its authorizations are built in."""

    call: ParsedCall
    account: str
    region: str
    resolver: ResourceResolver

    @property
    def params(self) -> dict[str, Any]:
        return self.call.params

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    def optional(self, method: str, *args: Any) -> Any:
        """An optional resolver method's answer (see :class:`ResourceResolver`), None without it."""
        function = getattr(self.resolver, method, None)
        return function(*args) if callable(function) else None


def need(action: str, resource: str, context: Mapping[str, Any] | None = None) -> AuthorizationRequest:
    """One authorization request; context keys whose value is None are left out (missing)."""
    return AuthorizationRequest(
        action=action, resource=resource, context={k: v for k, v in (context or {}).items() if v is not None}
    )


def tag_map(value: Any) -> dict[str, str] | None:
    """Tags in any of the shapes the APIs use: a list of Key/Value (or key/value, TagKey/TagValue)
    pairs, or a mapping."""
    if isinstance(value, Mapping):
        return {str(key): str(val) for key, val in value.items()}
    if isinstance(value, list):
        tags: dict[str, str] = {}
        for item in value:
            if not isinstance(item, Mapping):
                continue
            key = item.get("Key", item.get("key", item.get("TagKey")))
            val = item.get("Value", item.get("value", item.get("TagValue", "")))
            if key is not None:
                tags[str(key)] = "" if val is None else str(val)
        return tags
    return None


def request_tag_context(tags: Mapping[str, str] | None) -> dict[str, Any]:
    """``aws:RequestTag/KEY`` and ``aws:TagKeys`` for the tags a request sets."""
    if not tags:
        return {}
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    return context


def role_arn_of(env: CallEnv, role: str) -> str:
    """A role's ARN from an ARN or a name (the resolver's answer, with its path, when it knows the role)."""
    if role.startswith("arn:"):
        return role
    return env.optional("iam_role_arn", role) or f"arn:aws:iam::{env.account}:role/{role}"


def pass_role(env: CallEnv, role: str, service_principal: str) -> AuthorizationRequest:
    """``iam:PassRole`` on a role handed to a service (the role ARN, with the service it is
    passed to in ``iam:PassedToService``)."""
    return need("iam:PassRole", role_arn_of(env, role), {"iam:PassedToService": service_principal})


def dedupe(requests: Iterable[AuthorizationRequest]) -> list[AuthorizationRequest]:
    """The requests in order, each (action, resource, context) once."""
    seen: set[str] = set()
    result = []
    for request in requests:
        key = json.dumps([request.action, request.resource, dict(request.context)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            result.append(request)
    return result


def kms_key_resource(env: CallEnv, key_id: str) -> str:
    """The key ARN KMS authorizes for a ``KeyId``: the resolver's answer; for a key the resolver
    does not know, the ARN the id names (the call then fails in KMS as ``NotFoundException``
    after IAM, or IAM refuses it first, as in AWS for a key ARN)."""
    resolved = env.resolver.kms_key_arn(key_id)
    if resolved:
        return resolved
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        return env.arn("kms", key_id)
    return env.arn("kms", f"key/{key_id}")


def kms_via_service(
    env: CallEnv, action: str, key_id: str, service: str, extra: Mapping[str, Any] | None = None
) -> AuthorizationRequest:
    """A KMS action a service performs with the caller's permissions (SSE-KMS in S3, SNS, SQS):
    authorized as the caller, with ``kms:ViaService``."""
    context = {"kms:ViaService": f"{service}.{env.region}.amazonaws.com", "kms:CallerAccount": env.account}
    context.update(extra or {})
    return need(action, kms_key_resource(env, key_id), context)


#: Create operations that, given tags, also need the service's tagging action (each service's
#: "tag on create" note: SNS, SQS, Lambda, CloudWatch Logs, DynamoDB, KMS, ECR, SSM, IAM, Step
#: Functions, EventBridge, Glue, CloudWatch, CloudFormation, SES). Value: (tags member, action).
_TAG_ON_CREATE: dict[tuple[str, str], tuple[str, str]] = {
    ("sns", "CreateTopic"): ("Tags", "sns:TagResource"),
    ("sqs", "CreateQueue"): ("tags", "sqs:TagQueue"),
    ("lambda", "CreateFunction"): ("Tags", "lambda:TagResource"),
    ("logs", "CreateLogGroup"): ("tags", "logs:TagResource"),
    ("dynamodb", "CreateTable"): ("Tags", "dynamodb:TagResource"),
    ("kms", "CreateKey"): ("Tags", "kms:TagResource"),
    ("ecr", "CreateRepository"): ("tags", "ecr:TagResource"),
    ("ssm", "PutParameter"): ("Tags", "ssm:AddTagsToResource"),
    ("iam", "CreateRole"): ("Tags", "iam:TagRole"),
    ("iam", "CreatePolicy"): ("Tags", "iam:TagPolicy"),
    ("iam", "CreateUser"): ("Tags", "iam:TagUser"),
    ("stepfunctions", "CreateStateMachine"): ("tags", "states:TagResource"),
    ("stepfunctions", "CreateActivity"): ("tags", "states:TagResource"),
    ("events", "PutRule"): ("Tags", "events:TagResource"),
    ("events", "CreateEventBus"): ("Tags", "events:TagResource"),
    ("glue", "CreateJob"): ("Tags", "glue:TagResource"),
    ("glue", "CreateCrawler"): ("Tags", "glue:TagResource"),
    ("cloudwatch", "PutMetricAlarm"): ("Tags", "cloudwatch:TagResource"),
    ("cloudwatch", "PutCompositeAlarm"): ("Tags", "cloudwatch:TagResource"),
    ("cloudformation", "CreateStack"): ("Tags", "cloudformation:TagResource"),
    ("sesv2", "CreateEmailIdentity"): ("Tags", "ses:TagResource"),
    ("sesv2", "CreateConfigurationSet"): ("Tags", "ses:TagResource"),
}


def with_tag_on_create(env: CallEnv, requests: list[AuthorizationRequest]) -> list[AuthorizationRequest]:
    """Add the request tags' condition keys to the create request and, when tags are given,
    the tagging action on the same resource."""
    entry = _TAG_ON_CREATE.get((env.call.service, env.call.operation))
    if entry is None or not requests:
        return requests
    tags = tag_map(env.params.get(entry[0]))
    if not tags:
        return requests
    context = request_tag_context(tags)
    primary = requests[0]
    tagged = need(primary.action, primary.resource, {**primary.context, **context})
    return [tagged, *requests[1:], need(entry[1], primary.resource, context)]


def default_requests(env: CallEnv) -> list[AuthorizationRequest]:
    """``<prefix>:<Operation>`` on ``"*"``: the resource of an operation outside the tables here
    is unknown, and ``"*"`` is what only ``Resource: "*"`` statements grant."""
    context = request_tag_context(tag_map(env.params.get("Tags", env.params.get("tags"))))
    return [need(f"{iam_prefix(env.call.service)}:{env.call.operation}", "*", context)]


def first_at(value: Any, *path: str) -> Any:
    """The value at ``path`` in nested mappings, None where the path ends early."""
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
