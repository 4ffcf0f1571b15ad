"""What the review page's pictures need, computed by the Evaluate Lambda from the scored rows.

Every figure is bounded, whatever the test split's size: curves at ``metrics.CURVE_POINTS``
thresholds, histograms and grids of a fixed number of bins, and never a row of the split (the
report is read by the approval page and kept as the registry's model quality statistics).

- ``curves``: classification ROC and precision-recall points, binary for the positive class,
  multiclass one-vs-rest for at most ``MAX_CURVE_CLASSES`` classes; the champion's too when
  production serves a model (same rows).
- ``residuals``: regression residuals (actual minus predicted) as a histogram, their spread per
  bin of the prediction (10th, 50th, 90th percentile), and predicted against actual as a grid.
- ``comparison``: the new model against production on the same rows: how often the two
  predict the same class (and the cross-table of their classes), and their scores (binary,
  regression) against each other as a grid of counts.
- ``drift``: the test split against the training baseline per feature (``stepml.monitoring``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from stepml import metrics as metric_functions
from stepml.model_importance import ImportanceError, read_importance
from stepml.monitoring.analysis import MonitoringError, analyze_rows
from stepml.monitoring.report import feature_views
from stepml.utils import S3ReadError, read_s3_json

#: One-vs-rest curves are drawn for at most this many classes (the first ones, in class order).
MAX_CURVE_CLASSES = 10
#: Bins of the residual histogram, of the residual spread by prediction and of each grid axis.
HISTOGRAM_BINS = 30
SPREAD_BINS = 12
GRID_BINS = 20
#: At most this many evenly spaced test rows go into the drift analysis (pure Python per value).
MAX_DRIFT_ROWS = 20_000


class FiguresError(ValueError):
    """The figures cannot be computed from these inputs; the message says why."""


@dataclass(frozen=True)
class Scored:
    """The test split as scored: labels, both models' predictions (``champion`` None without one)."""

    problem_type: str
    classes: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    champion: np.ndarray | None
    feature_rows: Sequence[str]


def _round(values: Any, digits: int = 6) -> list:
    return [None if v is None else round(float(v), digits) for v in values]


# --- classification --------------------------------------------------------------------------


def _curve(name: str, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    if truth.min() == truth.max():  # one class only: no curve, as no AUC
        return None
    points = metric_functions.threshold_curve(truth, scores)
    return {
        "name": name,
        "auc": round(metric_functions.auc(truth, scores), 6),
        "thresholds": points["thresholds"],
        "fpr": _round(points["fpr"]),
        "tpr": _round(points["tpr"]),
        "precision": _round(points["precision"]),
    }


def classification_curves(
    problem_type: str, labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """ROC and precision-recall points: binary for class 1, multiclass one class against the rest."""
    if problem_type == "binary":
        found = _curve(class_names[1] if len(class_names) == 2 else "1", labels.astype(np.int64), predictions)
        return [found] if found else []
    curves = []
    for index in range(min(predictions.shape[1], MAX_CURVE_CLASSES)):
        name = class_names[index] if index < len(class_names) else str(index)
        found = _curve(name, (labels == index).astype(np.int64), predictions[:, index])
        if found:
            curves.append(found)
    return curves


# --- regression --------------------------------------------------------------------------------


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a constant: one bin of width 1 around it
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def grid(x: np.ndarray, y: np.ndarray, bins: int = GRID_BINS) -> dict[str, Any]:
    """Counts of (x, y) pairs on a ``bins`` x ``bins`` grid over both ranges (x the columns)."""
    x_edges, y_edges = _edges(x, bins), _edges(y, bins)
    counts, _, _ = np.histogram2d(y, x, bins=[y_edges, x_edges])
    return {
        "x_edges": _round(x_edges),
        "y_edges": _round(y_edges),
        "counts": [[int(c) for c in row] for row in counts],
    }


def residuals(labels: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Residuals (actual - predicted): histogram, spread per prediction bin, predicted vs actual grid."""
    errors = labels - predictions
    counts, edges = np.histogram(errors, bins=_edges(errors, HISTOGRAM_BINS))
    spread_edges = _edges(predictions, SPREAD_BINS)
    which = np.clip(np.searchsorted(spread_edges, predictions, side="right") - 1, 0, SPREAD_BINS - 1)
    spread = []
    for b in range(SPREAD_BINS):
        inside = errors[which == b]
        low, mid, high = np.percentile(inside, [10, 50, 90]) if inside.size else (None, None, None)
        spread.append(
            {
                "low": round(float(spread_edges[b]), 6),
                "high": round(float(spread_edges[b + 1]), 6),
                "count": int(inside.size),
                "p10": None if low is None else round(float(low), 6),
                "p50": None if mid is None else round(float(mid), 6),
                "p90": None if high is None else round(float(high), 6),
            }
        )
    return {
        "histogram": {"edges": _round(edges), "counts": [int(c) for c in counts]},
        "by_prediction": spread,
        "predicted_vs_actual": grid(predictions, labels),
    }


# --- the new model against production ------------------------------------------------------------


def comparison(
    problem_type: str, challenger: np.ndarray, champion: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """The two models on the same rows: class agreement (classification) and a grid of their scores."""
    if problem_type == "regression":
        gap = np.abs(challenger - champion)
        return {
            "mean_absolute_difference": round(float(gap.mean()), 6),
            "scores": grid(champion, challenger),
        }
    ours = metric_functions.predicted_classes(problem_type, challenger)
    theirs = metric_functions.predicted_classes(problem_type, champion)
    count = len(class_names)
    result: dict[str, Any] = {
        "agreement": round(float(np.mean(ours == theirs)), 6),
        "labels": list(class_names),
        "rows": "this model",
        "columns": "production",
        "matrix": metric_functions.confusion_matrix(ours, theirs, count),
    }
    if problem_type == "binary":
        result["scores"] = grid(champion, challenger)
    return result


# --- drift of the test split against the training baseline -----------------------------------------


def _sample(rows: Sequence[str]) -> list[str]:
    if len(rows) <= MAX_DRIFT_ROWS:
        return list(rows)
    step = len(rows) / MAX_DRIFT_ROWS
    return [rows[int(i * step)] for i in range(MAX_DRIFT_ROWS)]


def drift(statistics: Mapping[str, Any], constraints: Mapping[str, Any], feature_rows: Sequence[str]) -> dict[str, Any]:
    """Per feature the training baseline's distribution against the test split's, with the distance.

    The test split holds the raw feature values (as the endpoint takes them), the values the
    baseline counted.
    """
    rows = _sample(feature_rows)
    try:
        analysis = analyze_rows(statistics, constraints, list(csv.reader(rows)))
    except MonitoringError as exc:
        raise FiguresError(f"drift: {exc}") from exc
    features = []
    for view in feature_views(statistics, analysis.statistics, analysis.violations):
        features.append(
            {
                "name": view.name,
                "kind": view.kind,
                "labels": list(view.labels),
                "train": _round(view.baseline),
                "test": _round(view.current),
                "distance": _rounded_or_none(analysis.distances.get(view.name)),
                "threshold": analysis.thresholds.get(view.name),
                "violations": [dict(v) for v in view.violations],
            }
        )
    return {
        "rows": len(rows),
        "of_rows": len(feature_rows),
        "violations": sum(len(f["violations"]) for f in features),
        "features": features,
    }


def _rounded_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# --- all of them, for the report -------------------------------------------------------------------


def _read_json(s3_client: Any, uri: str) -> Any:
    try:
        return read_s3_json(s3_client, uri)
    except S3ReadError as exc:
        raise FiguresError(str(exc)) from exc


def _unavailable(exc: Exception) -> dict[str, Any]:
    return {"unavailable": str(exc)}


def _model_figures(scored: Scored) -> dict[str, Any]:
    if scored.problem_type == "regression":
        figures: dict[str, Any] = {"residuals": residuals(scored.labels, scored.predictions)}
    else:
        curves = {
            "challenger": classification_curves(scored.problem_type, scored.labels, scored.predictions, scored.classes)
        }
        if scored.champion is not None:
            curves["champion"] = classification_curves(
                scored.problem_type, scored.labels, scored.champion, scored.classes
            )
        figures = {"curves": curves}
    figures["comparison"] = (
        comparison(scored.problem_type, scored.predictions, scored.champion, scored.classes)
        if scored.champion is not None
        else None
    )
    return figures


def _baselines(s3_client: Any, run: Mapping[str, Any]) -> tuple[Any, Any]:
    paths = run.get("paths") or {}
    if not paths.get("constraints"):
        raise FiguresError("the run has no constraints.json baseline (resolved before baselines existed)")
    return _read_json(s3_client, str(paths["statistics"])), _read_json(s3_client, str(paths["constraints"]))


def _drift_or_unavailable(statistics: Any, constraints: Any, feature_rows: Sequence[str]) -> dict[str, Any]:
    try:
        return drift(statistics, constraints, feature_rows)
    except FiguresError as exc:
        return _unavailable(exc)


def start_drift(s3_client: Any, run: Mapping[str, Any], feature_rows: Sequence[str]) -> Callable[[], dict[str, Any]]:
    """Read the run's training baselines now and start the ``drift`` figure of ``feature_rows`` in a
    thread; the returned function waits for the figure. The analysis is pure Python and needs no
    prediction, so it runs while the endpoint scores (the Evaluate Lambda mostly waits on it then);
    the thread makes no AWS call, which keeps it outside the tracer's segment."""
    try:
        statistics, constraints = _baselines(s3_client, run)
    except FiguresError as exc:
        unavailable = _unavailable(exc)
        return lambda: unavailable
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepml-drift")
    future = pool.submit(_drift_or_unavailable, statistics, constraints, feature_rows)
    pool.shutdown(wait=False)
    return future.result


def report_figures(
    s3_client: Any,
    run: Mapping[str, Any],
    scored: Scored,
    model_data: str | None,
    drift_figure: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's figure fields. A figure that cannot be made says why (``{"unavailable": ...}``)
    instead of failing the evaluation: the pictures help the approver, they do not gate.
    ``drift_figure`` is ``start_drift``'s result when the drift figure was started earlier."""
    try:
        figures = _model_figures(scored)
    except (metric_functions.MetricsError, ValueError) as exc:
        figures = {"curves": _unavailable(exc), "comparison": None}
    paths = run.get("paths") or {}
    manifest: Mapping[str, Any] = {}
    try:
        manifest = _read_json(s3_client, str(paths.get("manifest")))
        names = [str(name) for name in manifest.get("feature_order") or []]
        if not model_data:
            raise FiguresError("lineage names no trained model artifact")
        figures["feature_importance"] = {"model_data": model_data, "type": "gain", "features": []}
        figures["feature_importance"]["features"] = read_importance(s3_client, model_data, names)
    except (FiguresError, ImportanceError) as exc:
        figures["feature_importance"] = _unavailable(exc)
    figures["drift"] = (drift_figure or start_drift(s3_client, run, scored.feature_rows))()
    return figures
