"""Evaluate: score the test split through the test endpoint's variants, then gate.

Payload ``payloads.EvaluatePayload`` (``{"run", "endpoint_name", "champion", "serving"}``: a
serverless test endpoint serves XGBoost alone and ``serving`` says Evaluate preprocesses; or
``{"run", "scoring", "champion"}`` when Batch Transform jobs scored a large split); returns the
gate result (see docs/architecture.md) with the run's model package version (``model_package``,
``stepml.registry``). The challenger and, when production serves a model,
the champion are variants of the test endpoint: evaluation traffic never reaches the
production endpoint, whose data capture is monitoring data. Only the run id and endpoint names
are logged, never the payload.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.evaluation import RUNTIME_CLIENT_CONFIG, EvaluationError, Evaluator
from stepml.evaluation_batch import evaluate_scored
from stepml.payloads import EvaluatePayload, parse_payload
from stepml.registry import ModelRegistry

logger = Logger(service="stepml-evaluate")
tracer = Tracer(service="stepml-evaluate")

REQUIRED_SETTINGS = (config.ARTIFACT_BUCKET, config.LINEAGE_TABLE, config.MODEL_PACKAGE_GROUP_PREFIX)


@functools.cache
def dependencies() -> Evaluator:
    """The evaluation service, built once per execution environment on the first request."""
    settings = config.load_settings(REQUIRED_SETTINGS)
    session = boto3.Session()
    return Evaluator(
        settings=settings,
        session=session,
        runtime_client=session.client("sagemaker-runtime", config=RUNTIME_CLIENT_CONFIG),
        s3_client=session.client("s3"),
        registry=ModelRegistry(session.client("sagemaker"), settings.model_package_group_prefix),
        lineage_table=session.resource("dynamodb").Table(settings.lineage_table),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Returns ``{"passed", "reason", "metric", ...}``; a payload that does not fit raises ``EvaluationError``."""
    evaluator = dependencies()
    payload = parse_payload(event, EvaluatePayload, lambda_name="Evaluate", error=EvaluationError)
    logger.append_keys(run_id=payload.run.run_id, endpoint=payload.endpoint_name)
    champion = payload.champion.document() if payload.champion else None
    serving = payload.serving.document() if payload.serving else None
    try:
        if payload.scoring is not None:  # Batch Transform jobs scored a large test split
            result = evaluate_scored(evaluator, payload.run.document(), payload.scoring.document(), champion)
        else:
            result = evaluator.evaluate(payload.run.document(), str(payload.endpoint_name), champion, serving)
    except EvaluationError as exc:
        logger.warning("evaluation failed", extra={"error": str(exc)})
        raise
    logger.info(
        "model evaluated",
        extra={
            "passed": result["passed"],
            "metric": result["metric"],
            "value": result["value"],
            "rows": result["rows"],
            "champion_model": (result["production"] or {}).get("model"),
            "report_uri": result["report_uri"],
            "model_package": (result.get("model_package") or {}).get("arn"),
        },
    )
    return result
