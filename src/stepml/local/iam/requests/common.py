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
class _Env:
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


def _request(action: str, resource: str, context: Mapping[str, Any] | None = None) -> AuthorizationRequest:
    return AuthorizationRequest(
        action=action, resource=resource, context={k: v for k, v in (context or {}).items() if v is not None}
    )


def _tags(value: Any) -> dict[str, str] | None:
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


def _tag_context(tags: Mapping[str, str] | None) -> dict[str, Any]:
    if not tags:
        return {}
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    return context


def _role_arn(env: _Env, role: str) -> str:
    if role.startswith("arn:"):
        return role
    return env.optional("iam_role_arn", role) or f"arn:aws:iam::{env.account}:role/{role}"


def _pass_role(env: _Env, role: str, service_principal: str) -> AuthorizationRequest:
    """``iam:PassRole`` on a role handed to a service (the role ARN, with the service it is
    passed to in ``iam:PassedToService``)."""
    return _request("iam:PassRole", _role_arn(env, role), {"iam:PassedToService": service_principal})


def _dedupe(requests: Iterable[AuthorizationRequest]) -> list[AuthorizationRequest]:
    seen: set[str] = set()
    result = []
    for request in requests:
        key = json.dumps([request.action, request.resource, dict(request.context)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            result.append(request)
    return result


def _kms_key(env: _Env, key_id: str) -> str:
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


def _kms_via_service(
    env: _Env, action: str, key_id: str, service: str, extra: Mapping[str, Any] | None = None
) -> AuthorizationRequest:
    """A KMS action a service performs with the caller's permissions (SSE-KMS in S3, SNS, SQS):
    authorized as the caller, with ``kms:ViaService``."""
    context = {"kms:ViaService": f"{service}.{env.region}.amazonaws.com", "kms:CallerAccount": env.account}
    context.update(extra or {})
    return _request(action, _kms_key(env, key_id), context)


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


def _with_tag_on_create(env: _Env, requests: list[AuthorizationRequest]) -> list[AuthorizationRequest]:
    """Add the request tags' condition keys to the create request and, when tags are given,
    the tagging action on the same resource."""
    entry = _TAG_ON_CREATE.get((env.call.service, env.call.operation))
    if entry is None or not requests:
        return requests
    tags = _tags(env.params.get(entry[0]))
    if not tags:
        return requests
    context = _tag_context(tags)
    primary = requests[0]
    tagged = _request(primary.action, primary.resource, {**primary.context, **context})
    return [tagged, *requests[1:], _request(entry[1], primary.resource, context)]


def _default(env: _Env) -> list[AuthorizationRequest]:
    """``<prefix>:<Operation>`` on ``"*"``: the resource of an operation outside the tables here
    is unknown, and ``"*"`` is what only ``Resource: "*"`` statements grant."""
    context = _tag_context(_tags(env.params.get("Tags", env.params.get("tags"))))
    return [_request(f"{iam_prefix(env.call.service)}:{env.call.operation}", "*", context)]


def _first(value: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
