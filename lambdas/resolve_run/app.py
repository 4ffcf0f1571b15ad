"""ResolveRun: claim the run an upload stands for and return its context to the state machine."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.lineage import resolve_run

logger = Logger()
tracer = Tracer()

REQUIRED_SETTINGS = (
    config.LINEAGE_TABLE,
    config.ARTIFACT_BUCKET,
    config.PRODUCTION_ENDPOINT_NAME,
    config.DEFAULT_TRAINING_INSTANCE_TYPE,
    config.DEFAULT_HOSTING_INSTANCE_TYPE,
    config.ENDPOINT_POLL_SECONDS,
    config.APPROVAL_TIMEOUT_SECONDS,
    config.LINEAGE_RETENTION_DAYS,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Payload ``{"event": <execution input>, "execution_arn"}``; see docs/architecture.md."""
    settings = config.load_settings(REQUIRED_SETTINGS)
    session = boto3.Session()
    result = resolve_run(
        event["event"],
        event["execution_arn"],
        table=session.resource("dynamodb").Table(settings.lineage_table),
        s3_client=session.client("s3"),
        sfn_client=session.client("stepfunctions"),
        settings=settings,
    )
    logger.info(
        "run resolved",
        extra={
            "run_id": result["run"]["run_id"],
            "action": result["action"],
            "attempt": result["run"]["attempt"],
            "skipping": sorted(result["steps"]),
        },
    )
    return result
