"""RequestApproval: store an approval for the waiting task and email its signed review link.

The email goes out through SES v2 with a plain-text and an HTML part, from the stack's
ApprovalSenderEmail (a verified SES identity) to ApproverEmail.

Invoked with ``.waitForTaskToken``; the approval API completes the task later. The event
holds the task token, so it is never logged (``log_event=False`` whatever the environment).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stepml import config
from stepml.approvals import ApprovalRequestError, request_approval

logger = Logger(service="stepml-request-approval")
tracer = Tracer(service="stepml-request-approval")

_REQUIRED = (
    config.APPROVAL_TABLE,
    config.APPROVAL_SIGNING_KEY_ID,
    config.APPROVAL_BASE_URL,
    config.APPROVAL_SENDER,
    config.APPROVER_EMAIL,
)


class RequestApprovalPayload(BaseModel):
    """``{"task_token", "run", "evaluation", "execution_arn", "waiting_since"}`` from the state
    machine; ``waiting_since`` is when the task started waiting (``$$.State.EnteredTime``)."""

    # Validation errors must not echo the input: it holds the task token.
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    task_token: str = Field(min_length=1)
    run: dict[str, Any]
    evaluation: dict[str, Any]
    execution_arn: str = Field(min_length=1)
    waiting_since: datetime | None = None


def _parse(event: dict[str, Any]) -> RequestApprovalPayload:
    try:
        return parse(event=event, model=RequestApprovalPayload)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in error["loc"]) for error in exc.errors())
        raise ApprovalRequestError(f"RequestApproval payload: invalid or missing field(s): {fields}") from exc


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Payload ``{"task_token", "run", "evaluation", "execution_arn"}``; returns
    ``{"approval_id", "expires_at"}`` (see docs/architecture.md)."""
    payload = _parse(event)
    settings = config.load_settings(_REQUIRED)
    session = boto3.Session()
    result = request_approval(
        payload.run,
        payload.evaluation,
        payload.task_token,
        payload.execution_arn,
        table=session.resource("dynamodb").Table(settings.approval_table),
        kms_client=session.client("kms"),
        ses_client=session.client("sesv2"),
        settings=settings,
        now=datetime.now(UTC),
        waiting_since=payload.waiting_since,
    )
    logger.info(
        "approval requested",
        extra={"run_id": payload.run.get("run_id"), "approval_id": result["approval_id"]},
    )
    return result
