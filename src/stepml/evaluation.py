"""Evaluate a model on the test endpoint: score the test split, compute metrics, gate.

``evaluate_model`` is the library half of the Evaluate Lambda (see docs/architecture.md).
It reads the run's test split (CSV with a header, the encoded label first, then the raw
features, written by the Glue job), sends the raw feature rows in batches to the test endpoint
through ``InvokeEndpoint`` (its model is the same inference pipeline production serves: the
preprocessor encodes them as training did; a serverless test endpoint serves the XGBoost
container alone, and the rows are encoded here by the preprocessor's own functions first:
``evaluation_split``), computes
the metrics of the dataset's problem type, and gates on the configured metric and
threshold. When production serves a model (the *champion*), the state machine gives the
test endpoint a second variant serving it, and the same rows are scored there too
(``TargetVariant``): evaluation never sends traffic to the production endpoint, whose data
capture is the monitoring data. With ``promote_only_if_better`` a challenger worse than the
champion does not pass. The full report is written next to the run's other evaluation
outputs, and the compact result goes back to the state machine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stepml import metrics as metric_functions
from stepml.config import METRICS, Settings
from stepml.evaluation_figures import Scored, report_figures, start_drift
from stepml.evaluation_split import (
    PREPROCESSED_BY_EVALUATE,
    SplitError,
    TestSplit,
    error_text,
    read_test_split,
    serving_encoding,
)
from stepml.registry import ModelRegistry, RegistryError, registration_context
from stepml.utils import S3UriError, iso_utc, split_s3_uri, utc_now

CSV = "text/csv"
#: Rows per InvokeEndpoint request, at most: each request costs a round trip through the
#: endpoint's containers, so a test split goes in a few large requests rather than many small ones.
DEFAULT_BATCH_SIZE = 10_000
#: Bytes a batch is filled to: InvokeEndpoint takes 6 MB (a serverless endpoint 4 MB), and the
#: preprocessor's encoded rows it hands on to XGBoost may be several times longer than the raw ones.
MAX_BATCH_BYTES = 1 << 20
#: Bytes per InvokeEndpoint body at most, for any endpoint: a serverless one takes 4 MB. A row
#: longer than ``MAX_BATCH_BYTES`` goes alone, up to this.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: The runtime client's retries: a serverless endpoint answers ThrottlingException (429) past its
#: MaxConcurrency, which standard mode retries with jittered exponential backoff.
RUNTIME_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})
#: The name of the report object under the run's evaluation prefix.
REPORT_NAME = "report.json"
#: The test endpoint's variants (statemachine/pipeline.asl.json names them the same).
CHALLENGER_VARIANT = "Challenger"
CHAMPION_VARIANT = "Champion"

# The XGBoost container answers text/csv with each prediction's str(): multiclass rows
# arrive as "[0.1, 0.2, 0.7],[...]" (or one per line in batch mode).
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


class EvaluationError(RuntimeError):
    """The model could not be evaluated; the message names the endpoint or file and the problem."""


def _number(value: float) -> str:
    return f"{value:.6g}"


def _field(run: Mapping[str, Any], *path: str) -> Any:
    value: Any = run
    for depth, part in enumerate(path):
        if not isinstance(value, Mapping) or part not in value:
            raise EvaluationError(f"Evaluate payload: field 'run.{'.'.join(path[: depth + 1])}' is missing")
        value = value[part]
    return value


# --- scoring ----------------------------------------------------------------------------


def _parse_values(record: str, line: int, source: str) -> list[float]:
    values = []
    for cell in record.split(","):
        text = cell.strip()
        try:
            value = float(text)
        except ValueError:
            raise EvaluationError(f"{source}: prediction {line} holds {text!r}, which is not a number") from None
        if not math.isfinite(value):
            raise EvaluationError(f"{source}: prediction {line} is {text!r}, not a finite number")
        values.append(value)
    return values


def parse_predictions(body: str, rows: int, width: int, source: str) -> np.ndarray:
    """Parse an endpoint's ``text/csv`` answer for ``rows`` rows of ``width`` outputs each.

    Accepted shapes: one prediction per line (several comma-separated class probabilities
    for multiclass); one line of comma-separated values for a single-output model; and
    bracketed rows (``[p0, p1, p2],[...]``) as the XGBoost container writes multiclass
    output. Returns shape ``(rows,)`` for ``width == 1``, else ``(rows, width)``.
    Raises ``EvaluationError`` naming ``source`` when the answer does not fit.
    """
    text = body.strip()
    if not text:
        raise EvaluationError(f"{source}: the response is empty; expected {rows} prediction(s)")
    records = _BRACKETED.findall(text) if "[" in text else [line for line in text.splitlines() if line.strip()]
    parsed = [_parse_values(record, number, source) for number, record in enumerate(records, start=1)]
    if len(parsed) == rows and all(len(values) == width for values in parsed):
        matrix = np.array(parsed, dtype=np.float64)
    elif len(parsed) == 1 and len(parsed[0]) == rows * width:
        matrix = np.array(parsed[0], dtype=np.float64).reshape(rows, width)
    else:
        widths = sorted({len(values) for values in parsed})
        raise EvaluationError(
            f"{source}: row count mismatch: sent {rows} row(s) expecting {width} value(s) each, "
            f"got {len(parsed)} prediction line(s) of {', '.join(map(str, widths))} value(s)"
        )
    return matrix[:, 0] if width == 1 else matrix


def request_batches(
    rows: Sequence[str],
    batch_size: int,
    where: str,
    max_bytes: int = MAX_BATCH_BYTES,
    limit_bytes: int = MAX_REQUEST_BYTES,
) -> Iterator[tuple[int, Sequence[str]]]:
    """(index of the first row, rows) per request: at most ``batch_size`` rows whose newline-joined
    UTF-8 body stays within ``max_bytes``; a longer row goes alone, and one over ``limit_bytes`` is
    an ``EvaluationError``."""
    start = 0
    while start < len(rows):
        first = len(rows[start].encode("utf-8"))
        if first > limit_bytes:
            raise EvaluationError(
                f"{where}: test row {start + 1} alone is over the {limit_bytes}-byte InvokeEndpoint body limit"
            )
        end, size = start + 1, first
        while end < len(rows) and end - start < batch_size:
            added = len(rows[end].encode("utf-8")) + 1
            if size + added > max_bytes:
                break
            size, end = size + added, end + 1
        yield start, rows[start:end]
        start = end


def score_endpoint(
    runtime_client: Any,
    endpoint_name: str,
    feature_rows: Sequence[str],
    *,
    width: int,
    batch_size: int,
    variant: str | None = None,
) -> np.ndarray:
    """Send ``feature_rows`` (headerless CSV lines) to an endpoint (one ``variant`` of it, when
    given) in batches; return its predictions."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    target = {"TargetVariant": variant} if variant else {}
    where = f"endpoint {endpoint_name}" + (f" variant {variant}" if variant else "")
    parts = []
    for start, batch in request_batches(feature_rows, batch_size, where):
        source = f"{where} (test rows {start + 1}-{start + len(batch)})"
        try:
            response = runtime_client.invoke_endpoint(
                EndpointName=endpoint_name,
                ContentType=CSV,
                Accept=CSV,
                Body="\n".join(batch).encode("utf-8"),
                **target,
            )
            body = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise EvaluationError(f"{source}: InvokeEndpoint failed: {error_text(exc)}") from exc
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        except UnicodeDecodeError as exc:
            raise EvaluationError(f"{source}: the response is not UTF-8 text") from exc
        parts.append(parse_predictions(text, len(batch), width, source))
    return np.concatenate(parts)


def champion_of(payload: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The champion the state machine found (``$.champion``): ``None`` when production serves no model."""
    if payload is None or not payload.get("in_service"):
        return None
    champion = {}
    for key in ("endpoint", "endpoint_config", "model"):
        value = payload.get(key)
        if not isinstance(value, str) or not value:
            raise EvaluationError(f"Evaluate payload: field 'champion.{key}' is missing")
        champion[key] = value
    return champion


# --- metrics and the gate ---------------------------------------------------------------


def _prediction_width(config: Mapping[str, Any]) -> int:
    if config["problem_type"] != "multiclass":
        return 1
    classes = config.get("classes")
    if not classes or len(classes) < 3:
        raise EvaluationError("Evaluate payload: field 'run.config.classes' must list the classes of a multiclass run")
    return len(classes)


def _score(problem_type: str, labels: np.ndarray, predictions: np.ndarray, endpoint: str, uri: str) -> dict[str, float]:
    try:
        return metric_functions.compute_metrics(problem_type, labels, predictions)
    except metric_functions.MetricsError as exc:
        raise EvaluationError(f"endpoint {endpoint} on test split {uri}: {exc}") from exc


def _class_names(config: Mapping[str, Any]) -> list[str]:
    """The class names of a classification run (their indices when the config names none)."""
    count = 2 if config["problem_type"] == "binary" else _prediction_width(config)
    classes = config.get("classes")
    return [str(name) for name in classes] if classes and len(classes) == count else [str(i) for i in range(count)]


def _confusion(
    config: Mapping[str, Any], labels: np.ndarray, predictions: np.ndarray, endpoint: str
) -> dict[str, Any] | None:
    problem_type = config["problem_type"]
    if problem_type == "regression":
        return None
    names = _class_names(config)
    count = len(names)
    try:
        predicted = metric_functions.predicted_classes(problem_type, predictions)
        matrix = metric_functions.confusion_matrix(labels.astype(np.int64), predicted, count)
    except metric_functions.MetricsError as exc:
        raise EvaluationError(f"endpoint {endpoint}: confusion matrix: {exc}") from exc
    return {"labels": names, "rows": "actual", "columns": "predicted", "matrix": matrix}


def _gate(
    metric: str,
    value: float,
    threshold: float,
    higher_is_better: bool,
    production: Mapping[str, Any] | None,
    promote_only_if_better: bool,
) -> tuple[bool, str]:
    """Whether the challenger passes, and one sentence saying why."""
    direction = "higher" if higher_is_better else "lower"
    problems = []
    if metric_functions.meets_threshold(value, threshold, higher_is_better):
        verdict = f"{metric} {_number(value)} meets the threshold {_number(threshold)} ({direction} is better)"
    else:
        problems.append(
            f"{metric} {_number(value)} does not meet the threshold {_number(threshold)} ({direction} is better)"
        )
    if production is None:
        comparison = "there is no production model in service to compare with"
    else:
        champion = production["value"]
        where = f"production endpoint {production['endpoint']} ({metric} {_number(champion)})"
        if production["challenger_better"]:
            comparison = f"it is better than {where}"
        elif not metric_functions.is_better(champion, value, higher_is_better):
            comparison = f"it ties {where}"
        elif promote_only_if_better:
            problems.append(f"{metric} {_number(value)} is worse than {where} and promote_only_if_better is true")
            comparison = ""
        else:
            comparison = f"it is worse than {where}, allowed because promote_only_if_better is false"
    if problems:
        return False, "; ".join(problems)
    return True, f"{verdict}; {comparison}"


# --- the report -------------------------------------------------------------------------


def _write_report(s3_client: Any, uri: str, report: Mapping[str, Any]) -> None:
    try:
        bucket, key = split_s3_uri(uri)
    except S3UriError as exc:
        raise EvaluationError(f"Evaluate payload: field 'run.paths.evaluation' is not an s3:// URI: {uri!r}") from exc
    try:
        body = json.dumps(report, indent=2, allow_nan=False).encode("utf-8")
        s3_client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ServerSideEncryption="AES256",
        )
    except ValueError as exc:
        raise EvaluationError(f"report {uri}: not serialisable as JSON: {exc}") from exc
    except (ClientError, BotoCoreError) as exc:
        raise EvaluationError(f"report {uri}: PutObject failed: {error_text(exc)}") from exc


def check_report_location(run: Mapping[str, Any], artifact_bucket: str) -> None:
    """Refuse a run whose report would land outside the stack's evaluation prefix.

    The Evaluate role may write nowhere else; saying so before scoring beats an AccessDenied
    after minutes of it.
    """
    prefix = f"s3://{artifact_bucket}/evaluation/"
    uri = str((run.get("paths") or {}).get("evaluation", ""))
    if not uri.startswith(prefix):
        raise EvaluationError(f"Evaluate payload: field 'run.paths.evaluation' {uri!r} is not under {prefix}")


def _gate_config(run: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str, float]:
    """The run's dataset config, problem type, gate metric and threshold, checked to fit together."""
    config = _field(run, "config")
    problem_type = str(_field(run, "config", "problem_type"))
    metric = str(_field(run, "config", "metric"))
    if metric not in METRICS.get(problem_type, {}):
        raise EvaluationError(
            f"Evaluate payload: field 'run.config.metric' {metric!r} does not fit problem_type {problem_type!r}"
        )
    return config, problem_type, metric, float(_field(run, "config", "threshold"))


def _score_champion(
    runtime_client: Any,
    endpoint_name: str,
    split: TestSplit,
    serving: Mapping[str, str],
    config: Mapping[str, Any],
    challenger_value: float,
    *,
    batch_size: int,
) -> tuple[dict[str, Any], dict[str, Any] | None, np.ndarray]:
    """The champion's ``production`` result, confusion matrix and predictions: the same rows
    through the champion variant of the test endpoint, never through production."""
    problem_type, metric = str(config["problem_type"]), str(config["metric"])
    predictions = score_endpoint(
        runtime_client,
        endpoint_name,
        split.endpoint_rows,
        width=_prediction_width(config),
        batch_size=batch_size,
        variant=CHAMPION_VARIANT,
    )
    where = f"{endpoint_name} variant {CHAMPION_VARIANT}"
    champion_metrics = _score(problem_type, split.labels, predictions, where, split.uri)
    higher_is_better = METRICS[problem_type][metric]
    production = {
        "endpoint": serving["endpoint"],
        "model": serving["model"],
        "variant": CHAMPION_VARIANT,
        "metrics": champion_metrics,
        "value": champion_metrics[metric],
        "challenger_better": metric_functions.is_better(challenger_value, champion_metrics[metric], higher_is_better),
    }
    return production, _confusion(config, split.labels, predictions, where), predictions


def _report_context(
    run: Mapping[str, Any],
    split: TestSplit,
    endpoint_name: str,
    serving: Mapping[str, str] | None,
) -> dict[str, Any]:
    """What the report says beyond the result: the run, its input, the split, the variants and
    where the rows were preprocessed."""
    names = run.get("names") or {}
    return {
        **report_run_context(run, serving),
        "test_uri": split.uri,
        "label_column": split.label_column,
        "endpoint_name": endpoint_name,
        # Serverless: the test endpoint served XGBoost alone (test_model), the rows encoded by Evaluate.
        "preprocessing": split.preprocessed_by,
        "test_model_name": names.get("test_model" if split.preprocessed_by == PREPROCESSED_BY_EVALUATE else "model"),
        "challenger_variant": CHALLENGER_VARIANT,
        "champion_variant": CHAMPION_VARIANT if serving else None,
    }


def report_run_context(run: Mapping[str, Any], serving: Mapping[str, str] | None) -> dict[str, Any]:
    """The report's fields about the run whichever way its test split was scored: the run, its
    input, its model, the champion in service and the code version."""
    upload = run.get("input") or {}
    return {
        "run_id": run.get("run_id"),
        "dataset": run.get("dataset"),
        "attempt": run.get("attempt"),
        "problem_type": str(run["config"]["problem_type"]),
        "input": {"uri": upload.get("uri"), "version_id": upload.get("version_id")},
        "model_name": (run.get("names") or {}).get("model"),
        "champion": serving and {"in_service": True, **serving},
        "production_endpoint_name": serving["endpoint"] if serving else None,
        "code_version": run.get("code_version"),
    }


def _read_split(
    run: Mapping[str, Any],
    config: Mapping[str, Any],
    test_serving: Mapping[str, Any] | None,
    champion: Mapping[str, str] | None,
    boto3_session: Any,
    s3_client: Any,
) -> TestSplit:
    """The run's test split as the test endpoint takes it: raw rows for the inference pipeline, or
    encoded here when ``test_serving`` (``$.test_serving``) says the endpoint serves XGBoost alone
    (serverless: ``evaluation_split``)."""
    uri = str(_field(run, "paths", "test"))
    try:
        encoding = serving_encoding(run, test_serving, s3_client)
        if encoding is not None and champion is not None:
            # The champion variant would be production's inference pipeline, which takes raw rows.
            raise EvaluationError(
                "Evaluate payload: 'serving' says Evaluate preprocesses (a serverless test endpoint, one variant) "
                "but 'champion' is in service, which the test endpoint scores as a second variant"
            )
        return read_test_split(uri, config, boto3_session=boto3_session, encoding=encoding)
    except SplitError as exc:
        raise EvaluationError(str(exc)) from exc


def _score_challenger(
    runtime_client: Any, endpoint_name: str, split: TestSplit, config: Mapping[str, Any], batch_size: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The challenger variant's predictions on the test split, and their metrics."""
    predictions = score_endpoint(
        runtime_client,
        endpoint_name,
        split.endpoint_rows,
        width=_prediction_width(config),
        batch_size=batch_size,
        variant=CHALLENGER_VARIANT,
    )
    return predictions, _score(config["problem_type"], split.labels, predictions, endpoint_name, split.uri)


def _figures(
    s3_client: Any,
    run: Mapping[str, Any],
    split: TestSplit,
    predictions: np.ndarray,
    champion_predictions: np.ndarray | None,
    model_data: str | None,
    drift_figure: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The report's pictures (``evaluation_figures``): both models' predictions on the same rows."""
    config = run["config"]
    problem_type = str(config["problem_type"])
    classes = [] if problem_type == "regression" else _class_names(config)
    scored = Scored(problem_type, classes, split.labels, predictions, champion_predictions, split.feature_rows)
    return report_figures(s3_client, run, scored, model_data, drift_figure)


def gate_result(
    config: Mapping[str, Any],
    metric: str,
    threshold: float,
    higher_is_better: bool,
    challenger_metrics: Mapping[str, float],
    production: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The gate's decision on the challenger's ``metric`` (against ``threshold`` and, when one is in
    service, the champion's ``production`` result) and the result fields both scoring paths return."""
    value = challenger_metrics[metric]
    promote_only_if_better = bool(config.get("promote_only_if_better", True))
    passed, reason = _gate(metric, value, threshold, higher_is_better, production, promote_only_if_better)
    return {
        "passed": passed,
        "reason": reason,
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "higher_is_better": higher_is_better,
        "metrics": dict(challenger_metrics),
        "production": production,
    }


def evaluate_model(
    run: Mapping[str, Any],
    endpoint_name: str,
    *,
    runtime_client: Any,
    boto3_session: Any,
    champion: Mapping[str, Any] | None = None,
    s3_client: Any | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: Callable[[], datetime] = utc_now,
    model_data: str | None = None,
    test_serving: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the run's test split on the test endpoint's challenger variant, and on the champion
    variant when ``champion`` (what production serves) has a model; compare and gate.

    ``boto3_session`` reads the test split (awswrangler); ``s3_client`` writes the report and reads
    what its figures need (``evaluation_figures``: baseline, manifest, the trained ``model_data``).
    Returns the gate result (docs/architecture.md: ``passed``, ``reason``, ``metric``, ``value``,
    ``production`` ...). Raises ``EvaluationError`` naming the endpoint or file on any failure.
    """
    started_at = now()
    config, problem_type, metric, threshold = _gate_config(run)
    higher_is_better = METRICS[problem_type][metric]
    report_uri = str(_field(run, "paths", "evaluation")) + REPORT_NAME
    serving = champion_of(champion)
    s3 = s3_client or boto3_session.client("s3")
    split = _read_split(run, config, test_serving, serving, boto3_session, s3)  # encoded here when serverless
    drift_figure = start_drift(s3, run, split.feature_rows)  # while the endpoint scores
    predictions, challenger_metrics = _score_challenger(runtime_client, endpoint_name, split, config, batch_size)
    value = challenger_metrics[metric]
    production, production_confusion, champion_predictions = None, None, None
    if serving is not None:
        production, production_confusion, champion_predictions = _score_champion(
            runtime_client, endpoint_name, split, serving, config, value, batch_size=batch_size
        )
    result = {
        **gate_result(config, metric, threshold, higher_is_better, challenger_metrics, production),
        "rows": split.rows,
        "report_uri": report_uri,
        "started_at": iso_utc(started_at),
        "ended_at": iso_utc(now()),
    }
    extra = {
        **_report_context(run, split, endpoint_name, serving),
        "confusion_matrix": _confusion(config, split.labels, predictions, endpoint_name),
        "production_confusion_matrix": production_confusion,
        **_figures(s3, run, split, predictions, champion_predictions, model_data, drift_figure),
    }
    _write_report(s3, report_uri, {**result, **extra})
    return result


@dataclass(frozen=True)
class Evaluator:
    """The Evaluate Lambda's service: ``session`` reads the test split (awswrangler),
    ``runtime_client`` (SageMaker Runtime) scores it, ``s3_client`` writes the report under
    ``settings.artifact_bucket``'s evaluation prefix. With a ``registry`` (and the
    ``lineage_table`` it asks first), the evaluated model becomes the run's model package version."""

    settings: Settings
    session: Any
    runtime_client: Any
    s3_client: Any
    registry: ModelRegistry | None = None
    lineage_table: Any = None

    def evaluate(
        self,
        run: Mapping[str, Any],
        endpoint_name: str,
        champion: Mapping[str, Any] | None = None,
        test_serving: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``evaluate_model`` on these clients (``evaluate_with``)."""
        return self.evaluate_with(
            run,
            lambda model_data: evaluate_model(
                run,
                endpoint_name,
                runtime_client=self.runtime_client,
                boto3_session=self.session,
                champion=champion,
                s3_client=self.s3_client,
                model_data=model_data,
                test_serving=test_serving,
            ),
        )

    def evaluate_with(self, run: Mapping[str, Any], score: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        """``score(model_data)`` (the endpoint's ``evaluate_model``, or ``evaluation_batch``'s), once the
        report's location is known to be writable; then the run's model package version
        (``result["model_package"]``), created only once per run."""
        check_report_location(run, self.settings.artifact_bucket)
        context = None
        if self.lineage_table is not None:
            try:
                context = registration_context(self.lineage_table, str(run["run_id"]))
            except RegistryError as exc:
                raise EvaluationError(f"model registry: {exc}") from exc
        result = score(context.training.get("model_data") if context else None)
        if self.registry is not None:
            try:
                context = context or registration_context(self.lineage_table, str(run["run_id"]))
                result["model_package"] = self.registry.register(run, result, context)
            except RegistryError as exc:
                raise EvaluationError(f"model registry: {exc}") from exc
        return result
