"""The authorizations AWS checks for one parsed call: the per-service resolver, else the default."""

from __future__ import annotations

from collections.abc import Callable

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.call import ParsedCall, ResourceResolver
from stepml.local.iam.requests.common import CallEnv, dedupe, default_requests
from stepml.local.iam.requests.dynamodb import dynamodb_requests, dynamodbstreams_requests
from stepml.local.iam.requests.management import (
    cloudformation_requests,
    cloudwatch_requests,
    ecr_requests,
    logs_requests,
    service_quotas_requests,
    ssm_requests,
)
from stepml.local.iam.requests.messaging import ses_requests, sesv2_requests, sns_requests, sqs_requests
from stepml.local.iam.requests.s3 import s3_requests
from stepml.local.iam.requests.sagemaker import (
    sagemaker_generic_runtime_requests,
    sagemaker_requests,
    sagemaker_runtime_requests,
)
from stepml.local.iam.requests.security import cognito_idp_requests, iam_requests, kms_requests, sts_requests
from stepml.local.iam.requests.workflows import events_requests, glue_requests, lambda_requests, stepfunctions_requests

_HANDLERS: dict[str, Callable[[CallEnv], list[AuthorizationRequest] | None]] = {
    "s3": s3_requests,
    "dynamodb": dynamodb_requests,
    "dynamodbstreams": dynamodbstreams_requests,
    "sagemaker": sagemaker_requests,
    "sagemaker-runtime": sagemaker_runtime_requests,
    "sagemaker-featurestore-runtime": sagemaker_generic_runtime_requests,
    "sagemaker-a2i-runtime": sagemaker_generic_runtime_requests,
    "stepfunctions": stepfunctions_requests,
    "glue": glue_requests,
    "sns": sns_requests,
    "sqs": sqs_requests,
    "sesv2": sesv2_requests,
    "ses": ses_requests,
    "kms": kms_requests,
    "events": events_requests,
    "lambda": lambda_requests,
    "logs": logs_requests,
    "cloudwatch": cloudwatch_requests,
    "iam": iam_requests,
    "sts": sts_requests,
    "ssm": ssm_requests,
    "ecr": ecr_requests,
    "service-quotas": service_quotas_requests,
    "cloudformation": cloudformation_requests,
    "cognito-idp": cognito_idp_requests,
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
    env = CallEnv(call=call, account=account, region=region, resolver=resolver)
    handler = _HANDLERS.get(call.service)
    requests = handler(env) if handler else None
    if requests is None:
        requests = default_requests(env)
    return dedupe(requests)
