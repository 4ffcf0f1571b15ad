"""RequestApproval: store an approval for the waiting task and email its signed review link.

Payload ``payloads.RequestApprovalPayload``; returns ``{"approval_id", "expires_at"}`` (see
docs/architecture.md). Invoked with ``.waitForTaskToken``; the approval API completes the task
later. The event holds the task token, so it is never logged (``log_event=False`` whatever the
environment) and a payload error names fields, never values.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.approval_records import ApprovalRequestError
from stepml.approvals import ApprovalRequests
from stepml.payloads import RequestApprovalPayload, parse_payload

logger = Logger(service="stepml-request-approval")
tracer = Tracer(service="stepml-request-approval")

REQUIRED_SETTINGS = (
    config.APPROVAL_TABLE,
    config.APPROVAL_SIGNING_KEY_ID,
    config.APPROVAL_BASE_URL,
    config.APPROVAL_SENDER,
    config.APPROVER_EMAIL,
)


@functools.cache
def dependencies() -> ApprovalRequests:
    """The approval service, built once per execution environment on the first request."""
    settings = config.load_settings(REQUIRED_SETTINGS)
    session = boto3.Session()
    return ApprovalRequests(
        table=session.resource("dynamodb").Table(settings.approval_table),
        kms_client=session.client("kms"),
        ses_client=session.client("sesv2"),
        settings=settings,
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A payload that does not fit raises ``ApprovalRequestError`` naming the fields."""
    approvals = dependencies()
    payload = parse_payload(event, RequestApprovalPayload, lambda_name="RequestApproval", error=ApprovalRequestError)
    result = approvals.request(payload)
    logger.info("approval requested", extra={"run_id": payload.run.run_id, "approval_id": result["approval_id"]})
    return result
