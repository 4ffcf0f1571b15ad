"""Evaluate a test split that Batch Transform jobs scored: labels and predictions read in chunks.

A run whose test split is too large for the Evaluate function to score in memory
(``stepml.test_scoring``) has SageMaker Batch Transform score it instead: the challenger's model
and, when production serves one, the champion's, each writing ``<test file>.out`` (one
prediction line per test line, in order) under its own prefix. ``evaluate_batch`` then streams
each test file for its first column (the encoded label) and the matching ``.out`` file for the
predictions, a chunk of lines at a time: it never holds the raw feature rows, only the labels
and predictions (8 bytes a value) and a bounded sample of feature rows for the drift figure. The
metrics, the comparison with the champion, the gate and the report are those of the endpoint
path (``stepml.evaluation``); the report says the mode was ``batch`` and names the jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from stepml import metrics as metric_functions
from stepml.config import METRICS
from stepml.evaluation import (
    _BRACKETED,
    REPORT_NAME,
    EvaluationError,
    Evaluator,
    _class_names,
    _confusion,
    _field,
    _gate_config,
    _parse_values,
    _prediction_width,
    _score,
    _write_report,
    champion_of,
    gate_result,
    report_run_context,
)
from stepml.evaluation_figures import MAX_DRIFT_ROWS, Scored, report_figures
from stepml.evaluation_split import SplitError, _label_values, error_text
from stepml.utils import S3UriError, iso_utc, split_s3_uri, utc_now

#: Lines parsed at a time: bounds the text held besides the arrays.
CHUNK_LINES = 50_000
#: What the report says scored the rows (``preprocessing``): the inference pipeline in the jobs.
PREPROCESSED_BY_TRANSFORM = "transform"
OUTPUT_SUFFIX = ".out"


class _MissingObject(EvaluationError):
    """The object to read does not exist."""


def _location(uri: str, field: str) -> tuple[str, str]:
    try:
        bucket, key = split_s3_uri(uri)
    except S3UriError as exc:
        raise EvaluationError(f"Evaluate payload: field '{field}' is not an s3:// URI: {uri!r}") from exc
    return bucket, key


def test_files(s3_client: Any, uri: str) -> list[str]:
    """The keys of the test split's data files, sorted (Spark's empty markers and dot files left out)."""
    bucket, prefix = _location(uri, "run.paths.test")
    keys = []
    try:
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if item.get("Size", 0) > 0 and not name.startswith(("_", ".")):
                    keys.append(item["Key"])
    except (ClientError, BotoCoreError) as exc:
        raise EvaluationError(f"test split {uri}: cannot list it: {error_text(exc)}") from exc
    if not keys:
        raise EvaluationError(f"test split {uri}: no test rows, the prefix holds no files")
    return sorted(keys)


def _chunks(s3_client: Any, bucket: str, key: str) -> Iterator[list[str]]:
    """The object's non-blank lines, ``CHUNK_LINES`` at a time, streamed."""
    where = f"s3://{bucket}/{key}"
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        chunk: list[str] = []
        for raw in body.iter_lines(chunk_size=1 << 20):
            line = raw.decode("utf-8").rstrip("\r")
            if line.strip():
                chunk.append(line)
            if len(chunk) >= CHUNK_LINES:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    except ClientError as exc:
        missing = exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
        raise (_MissingObject if missing else EvaluationError)(f"{where}: cannot read it: {error_text(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"{where}: not UTF-8 text") from exc


class _Labels:
    """The labels of every test file, and an evenly spread sample of feature rows: every
    ``stride``-th row, the stride doubling whenever the sample reaches twice the drift figure's rows."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.sample: list[str] = []
        self.seen, self.stride = 0, 1

    def _keep(self, cells: list[list[str]]) -> None:
        for index, cell in enumerate(cells, start=self.seen):
            if index % self.stride == 0 and len(cell) == 2:
                self.sample.append(cell[1])
                if len(self.sample) >= 2 * MAX_DRIFT_ROWS:
                    self.sample, self.stride = self.sample[::2], self.stride * 2
        self.seen += len(cells)

    def read(self, s3_client: Any, bucket: str, key: str) -> np.ndarray:
        parts = []
        label = str(self.config.get("label", "label"))
        for chunk in _chunks(s3_client, bucket, key):
            cells = [line.split(",", 1) for line in chunk]
            try:
                parts.append(
                    _label_values(
                        [cell[0] for cell in cells],
                        str(self.config["problem_type"]),
                        self.config.get("classes"),
                        f"s3://{bucket}/{key}",
                        label,
                    )
                )
            except SplitError as exc:
                raise EvaluationError(str(exc)) from exc
            self._keep(cells)
        return np.concatenate(parts) if parts else np.zeros(0)


def read_predictions(s3_client: Any, bucket: str, key: str, width: int) -> np.ndarray:
    """A transform output's predictions, one per line (bracketed rows for multiclass), in order."""
    source = f"transform output s3://{bucket}/{key}"
    parts, line = [], 0
    for chunk in _chunks(s3_client, bucket, key):
        text = "\n".join(chunk)
        records = _BRACKETED.findall(text) if "[" in text else chunk
        values = [_parse_values(record, line + number, source) for number, record in enumerate(records, start=1)]
        wrong = next((n for n, v in enumerate(values, start=line + 1) if len(v) != width), None)
        if wrong is not None:
            raise EvaluationError(
                f"{source}: prediction {wrong} holds {len(values[wrong - line - 1])} value(s), expected {width}"
            )
        line += len(values)
        parts.append(np.array(values, dtype=np.float64).reshape(len(values), width))
    matrix = np.concatenate(parts) if parts else np.zeros((0, width))
    return matrix[:, 0] if width == 1 else matrix


def _read_scored(
    s3_client: Any, run: Mapping[str, Any], summary: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Labels, each job's predictions matched to them file by file and line by line, and the sample."""
    config, uri = run["config"], str(_field(run, "paths", "test"))
    keys = test_files(s3_client, uri)
    outputs = {name: summary[name]["output"] for name in ("challenger", "champion") if summary[name]}
    bucket, prefix = _location(uri, "run.paths.test")
    width = _prediction_width(config)
    labels = _Labels(config)
    label_parts, predictions = [], {name: [] for name in outputs}
    for key in keys:
        file_labels = labels.read(s3_client, bucket, key)
        label_parts.append(file_labels)
        for name, output in outputs.items():
            out_bucket, out_prefix = _location(output, f"scoring.{name}.output")
            out_key = out_prefix + key.removeprefix(prefix) + OUTPUT_SUFFIX
            try:
                file_predictions = read_predictions(s3_client, out_bucket, out_key, width)
            except _MissingObject as exc:
                raise EvaluationError(
                    f"transform output s3://{out_bucket}/{out_key}: missing; the {name}'s job wrote no output "
                    f"for test file s3://{bucket}/{key}"
                ) from exc
            if len(file_predictions) != len(file_labels):
                raise EvaluationError(
                    f"transform output s3://{out_bucket}/{out_key}: row count mismatch: {len(file_predictions)} "
                    f"prediction line(s) for the {len(file_labels)} row(s) of test file s3://{bucket}/{key}"
                )
            predictions[name].append(file_predictions)
    joined = {name: np.concatenate(parts) for name, parts in predictions.items()}
    return np.concatenate(label_parts), joined, labels.sample


def _champion_result(
    serving: Mapping[str, str],
    job: Mapping[str, Any],
    run: Mapping[str, Any],
    labels: np.ndarray,
    predictions: np.ndarray,
    challenger_value: float,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The champion's result as the endpoint path reports it, scored by its own transform job, and
    its confusion matrix."""
    config = run["config"]
    metric, problem_type = str(config["metric"]), str(config["problem_type"])
    champion_metrics = _score(problem_type, labels, predictions, job["job_name"], str(run["paths"]["test"]))
    production = {
        "endpoint": serving["endpoint"],
        "model": serving["model"],
        "variant": None,
        "transform_job": job["job_name"],
        "metrics": champion_metrics,
        "value": champion_metrics[metric],
        "challenger_better": metric_functions.is_better(
            challenger_value, champion_metrics[metric], METRICS[problem_type][metric]
        ),
    }
    return production, _confusion(config, labels, predictions, job["job_name"])


def _scoring_summary(scoring: Mapping[str, Any], serving: Mapping[str, str] | None) -> dict[str, Any]:
    """The jobs as the result and lineage name them; a champion job exactly when one is in service."""
    champion = scoring.get("champion") or None
    if (serving is None) != (champion is None):
        raise EvaluationError(
            "Evaluate payload: 'scoring.champion' must be given exactly when a champion is in service"
        )
    return {
        "mode": "batch",
        "challenger": {"job_name": scoring["challenger"]["job_name"], "output": scoring["challenger"]["output"]},
        "champion": champion and {"job_name": champion["job_name"], "output": champion["output"]},
    }


def _report_context(run: Mapping[str, Any], serving: Mapping[str, str] | None, summary: Mapping[str, Any]) -> dict:
    return {
        **report_run_context(run, serving),
        "test_uri": run["paths"]["test"],
        "label_column": run["config"].get("label"),
        "endpoint_name": None,
        "preprocessing": PREPROCESSED_BY_TRANSFORM,
        "test_model_name": (run.get("names") or {}).get("model"),
        "transform_jobs": [job["job_name"] for job in (summary["challenger"], summary["champion"]) if job],
    }


def _figures(
    s3_client: Any,
    run: Mapping[str, Any],
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    sample: list[str],
    model_data: str | None,
) -> dict[str, Any]:
    """The report's pictures (``evaluation_figures``); the drift figure gets the feature rows
    sampled while streaming, never the whole split."""
    config = run["config"]
    problem_type = str(config["problem_type"])
    classes = [] if problem_type == "regression" else _class_names(config)
    scored = Scored(problem_type, classes, labels, predictions["challenger"], predictions.get("champion"), sample)
    return {"feature_sample_rows": len(sample), **report_figures(s3_client, run, scored, model_data)}


def evaluate_batch(
    run: Mapping[str, Any],
    scoring: Mapping[str, Any],
    *,
    s3_client: Any,
    champion: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = utc_now,
    model_data: str | None = None,
) -> dict[str, Any]:
    """Metrics, comparison and gate of a test split the transform jobs of ``scoring``
    (``$.steps.test_scoring``) scored; the same result and report as ``evaluate_model``, with
    ``scoring`` naming the jobs. Raises ``EvaluationError`` naming the file on any failure."""
    started_at = now()
    config, problem_type, metric, threshold = _gate_config(run)
    report_uri = str(_field(run, "paths", "evaluation")) + REPORT_NAME
    serving = champion_of(champion)
    summary = _scoring_summary(scoring, serving)
    labels, predictions, sample = _read_scored(s3_client, run, summary)
    challenger_job = summary["challenger"]["job_name"]
    challenger_metrics = _score(problem_type, labels, predictions["challenger"], challenger_job, run["paths"]["test"])
    value = challenger_metrics[metric]
    production, production_confusion = None, None
    if serving is not None:
        production, production_confusion = _champion_result(
            serving, summary["champion"], run, labels, predictions["champion"], value
        )
    higher_is_better = METRICS[problem_type][metric]
    result = {
        **gate_result(config, metric, threshold, higher_is_better, challenger_metrics, production),
        "rows": len(labels),
        "report_uri": report_uri,
        "scoring": summary,
        "started_at": iso_utc(started_at),
        "ended_at": iso_utc(now()),
    }
    extra = {
        **_report_context(run, serving, summary),
        "confusion_matrix": _confusion(config, labels, predictions["challenger"], challenger_job),
        "production_confusion_matrix": production_confusion,
        **_figures(s3_client, run, labels, predictions, sample, model_data),
    }
    _write_report(s3_client, report_uri, {**result, **extra})
    return result


def evaluate_scored(
    evaluator: Evaluator, run: Mapping[str, Any], scoring: Mapping[str, Any], champion: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``evaluate_batch`` through the Evaluate function's service: the report's location checked
    first, the run's model package version registered after (``Evaluator.evaluate_with``)."""
    return evaluator.evaluate_with(
        run,
        lambda model_data: evaluate_batch(
            run, scoring, s3_client=evaluator.s3_client, champion=champion, model_data=model_data
        ),
    )
