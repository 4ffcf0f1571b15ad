"""DriftRetrain: decide whether a production drift alarm starts a retrain, and start it.

Invoked asynchronously by the ``DriftRetrainRule`` with CloudWatch's ``CloudWatch Alarm State
Change`` event of one of the stack's drift alarms entering ALARM. ``drift_retrain.DriftRetrainer``
decides (dataset opted in, no run in flight, newest upload) and starts the pipeline; the answer
(``{"decision", "reason", ...}``) is logged, since an asynchronous caller never reads it.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.drift_retrain import DriftRetrainer

logger = Logger(service="stepml-drift-retrain")
tracer = Tracer(service="stepml-drift-retrain")

REQUIRED_SETTINGS = (
    config.LINEAGE_TABLE,
    config.ARTIFACT_BUCKET,
    config.UPLOAD_BUCKET,
    config.PRODUCTION_ENDPOINT_NAME,
    config.STATE_MACHINE_ARN,
)


@functools.cache
def dependencies() -> DriftRetrainer:
    """The decision service, built once per execution environment on the first request."""
    return DriftRetrainer.connect(config.load_settings(REQUIRED_SETTINGS), boto3.Session())


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """An event that is not a drift alarm entering ALARM raises ``AlarmEventError``."""
    decision = dependencies().decide(event)
    logger.info("drift alarm decided", extra=decision)
    return decision
