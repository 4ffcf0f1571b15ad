"""The authorizations AWS checks for one parsed call: the per-service resolver, else the default."""

from __future__ import annotations

from collections.abc import Callable

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.call import ParsedCall, ResourceResolver
from stepml.local.iam.requests.common import _dedupe, _default, _Env
from stepml.local.iam.requests.dynamodb import _dynamodb, _dynamodbstreams
from stepml.local.iam.requests.management import _cloudformation, _cloudwatch, _ecr, _logs, _service_quotas, _ssm
from stepml.local.iam.requests.messaging import _ses, _sesv2, _sns, _sqs
from stepml.local.iam.requests.s3 import _s3
from stepml.local.iam.requests.sagemaker import _sagemaker, _sagemaker_generic_runtime, _sagemaker_runtime
from stepml.local.iam.requests.security import _iam, _kms, _sts
from stepml.local.iam.requests.workflows import _events, _glue, _lambda, _stepfunctions

# --- authorization_requests ---

_HANDLERS: dict[str, Callable[[_Env], list[AuthorizationRequest] | None]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "dynamodbstreams": _dynamodbstreams,
    "sagemaker": _sagemaker,
    "sagemaker-runtime": _sagemaker_runtime,
    "sagemaker-featurestore-runtime": _sagemaker_generic_runtime,
    "sagemaker-a2i-runtime": _sagemaker_generic_runtime,
    "stepfunctions": _stepfunctions,
    "glue": _glue,
    "sns": _sns,
    "sqs": _sqs,
    "sesv2": _sesv2,
    "ses": _ses,
    "kms": _kms,
    "events": _events,
    "lambda": _lambda,
    "logs": _logs,
    "cloudwatch": _cloudwatch,
    "iam": _iam,
    "sts": _sts,
    "ssm": _ssm,
    "ecr": _ecr,
    "service-quotas": _service_quotas,
    "cloudformation": _cloudformation,
}


def authorization_requests(
    call: ParsedCall, *, account: str, region: str, resolver: ResourceResolver
) -> list[AuthorizationRequest]:
    """The authorizations AWS checks for ``call``, each of which must be allowed.

    One :class:`AuthorizationRequest` per (action, resource) pair AWS evaluates: an S3 copy is a
    read of the source and a write of the target, a DynamoDB batch one request per table, an SES
    send one per identity and configuration set. An empty list means no permission is needed
    (``sts:GetCallerIdentity``). Operations without a rule here are ``<prefix>:<Operation>`` on
    ``"*"``.
    """
    env = _Env(call=call, account=account, region=region, resolver=resolver)
    handler = _HANDLERS.get(call.service)
    requests = handler(env) if handler else None
    if requests is None:
        requests = _default(env)
    return _dedupe(requests)
