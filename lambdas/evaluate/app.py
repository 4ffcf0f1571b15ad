"""Evaluate: score the test split through the test endpoint's variants, then gate.

Payload ``{"run", "endpoint_name", "champion"}``; returns the gate result (see
docs/architecture.md). The challenger and, when production serves a model, the champion are
variants of the test endpoint: evaluation traffic never reaches the production endpoint, whose
data capture is monitoring data. Only the run id and endpoint names are logged, never the payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.evaluation import EvaluationError, evaluate_model

logger = Logger(service="stepml-evaluate")
tracer = Tracer(service="stepml-evaluate")

_REQUIRED = (config.ARTIFACT_BUCKET,)


@dataclass(frozen=True)
class AwsClients:
    """What evaluate_model talks to; built once per execution environment."""

    session: Any
    runtime: Any
    s3: Any


@cache
def aws_clients() -> AwsClients:
    """Clients for this execution environment, created on first use (cold start)."""
    session = boto3.Session()
    return AwsClients(
        session=session,
        runtime=session.client("sagemaker-runtime"),
        s3=session.client("s3"),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Payload ``{"run", "endpoint_name", "champion"}``; returns ``{"passed", "reason", "metric", ...}``."""
    settings = config.load_settings(_REQUIRED)
    run = event.get("run")
    endpoint_name = event.get("endpoint_name")
    champion = event.get("champion")
    if not isinstance(run, dict) or not isinstance(endpoint_name, str) or not endpoint_name:
        raise EvaluationError("Evaluate payload: fields 'run' (object) and 'endpoint_name' (string) are required")
    if champion is not None and not isinstance(champion, dict):
        raise EvaluationError("Evaluate payload: field 'champion' must be an object")
    logger.append_keys(run_id=run.get("run_id"), endpoint=endpoint_name)
    # The report may only land under the stack's own evaluation prefix (the role can write
    # nowhere else); saying so here beats an AccessDenied after minutes of scoring.
    evaluation_prefix = f"s3://{settings.artifact_bucket}/evaluation/"
    evaluation_uri = str((run.get("paths") or {}).get("evaluation", ""))
    if not evaluation_uri.startswith(evaluation_prefix):
        raise EvaluationError(
            f"Evaluate payload: field 'run.paths.evaluation' {evaluation_uri!r} is not under {evaluation_prefix}"
        )
    clients = aws_clients()
    try:
        result = evaluate_model(
            run,
            endpoint_name,
            runtime_client=clients.runtime,
            boto3_session=clients.session,
            champion=champion,
            s3_client=clients.s3,
        )
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
        },
    )
    return result
