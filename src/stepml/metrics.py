"""Evaluation metrics for the three problem types, in plain numpy.

The metric names are exactly those of ``stepml.config.METRICS``, which also says whether
a larger value is better. Conventions (they match scikit-learn's defaults, so a report
can be checked with it):

* binary: ``y_true`` holds 0/1, ``predictions`` the probability of class 1; the class
  metrics (accuracy, f1, precision, recall) predict 1 when the probability is >= 0.5.
  AUC is the rank statistic (Mann-Whitney U), with tied scores counting one half.
* multiclass: ``y_true`` holds class indices 0..k-1, ``predictions`` an (n, k) matrix of
  class probabilities; the predicted class is the most probable one. ``f1_macro``
  averages over the classes that occur in ``y_true`` or in the predictions.
* regression: ``y_true`` and ``predictions`` are numbers.

Precision, recall and F1 are 0 when their denominator is 0 (nothing predicted or nothing
to find). AUC with a single class, and R² with a constant ``y_true``, are undefined and
raise ``MetricsError`` rather than report a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stepml.config import METRICS

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before log loss, so one confident
#: mistake costs a large but finite amount.
EPSILON = 1e-15
#: Binary class metrics predict class 1 at or above this probability.
DECISION_THRESHOLD = 0.5


class MetricsError(ValueError):
    """Inputs a metric cannot be computed from; the message names the metric and the problem."""


# --- input checks -----------------------------------------------------------------------


def _as_float_array(values: Any, what: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{what} must be numbers: {exc}") from exc
    if array.ndim != ndim:
        raise MetricsError(f"{what} must have {ndim} dimension(s), got shape {array.shape}")
    if array.shape[0] == 0:
        raise MetricsError(f"{what} is empty")
    if not np.all(np.isfinite(array)):
        raise MetricsError(f"{what} holds NaN or infinite values")
    return array


def _paired(y_true: Any, predictions: Any, prediction_ndim: int = 1) -> tuple[np.ndarray, np.ndarray]:
    truth = _as_float_array(y_true, "y_true", 1)
    predicted = _as_float_array(predictions, "predictions", prediction_ndim)
    if truth.shape[0] != predicted.shape[0]:
        raise MetricsError(f"y_true has {truth.shape[0]} values but predictions has {predicted.shape[0]}")
    return truth, predicted


def _binary(y_true: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    truth, scores = _paired(y_true, probabilities)
    if not np.all((truth == 0) | (truth == 1)):
        bad = sorted({float(v) for v in truth[(truth != 0) & (truth != 1)]})[:5]
        raise MetricsError(f"binary y_true must hold only 0 and 1, found {bad}")
    return truth.astype(np.int64), scores


def _probabilities(scores: np.ndarray) -> np.ndarray:
    if np.any((scores < 0) | (scores > 1)):
        raise MetricsError(
            "binary predictions must be probabilities in [0, 1], "
            f"found values from {scores.min():g} to {scores.max():g}"
        )
    return scores


def _multiclass(y_true: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    truth, matrix = _paired(y_true, probabilities, prediction_ndim=2)
    classes = matrix.shape[1]
    if classes < 2:
        raise MetricsError(f"multiclass predictions need one probability per class, got {classes} column(s)")
    valid = (truth == np.round(truth)) & (truth >= 0) & (truth < classes)
    if not np.all(valid):
        bad = sorted({float(v) for v in truth[~valid]})[:5]
        raise MetricsError(f"multiclass y_true must hold class indices 0..{classes - 1}, found {bad}")
    if np.any((matrix < 0) | (matrix > 1)):
        raise MetricsError("multiclass predictions must be probabilities in [0, 1]")
    return truth.astype(np.int64), matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _f1(precision_value: float, recall_value: float) -> float:
    total = precision_value + recall_value
    return 2 * precision_value * recall_value / total if total else 0.0


# --- binary -----------------------------------------------------------------------------


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Start index of each run of equal values, and the run it belongs to.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    run_of_position = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = run_rank[run_of_position]
    return ranks


def auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative."""
    truth, values = _binary(y_true, scores)
    positives = int(truth.sum())
    negatives = truth.shape[0] - positives
    if positives == 0 or negatives == 0:
        only = "1 (positive)" if negatives == 0 else "0 (negative)"
        raise MetricsError(f"auc is undefined: y_true holds only class {only}; the test split needs both classes")
    rank_sum = average_ranks(values)[truth == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def _binary_counts(y_true: Any, probabilities: Any) -> tuple[int, int, int, int]:
    truth, scores = _binary(y_true, probabilities)
    predicted = _probabilities(scores) >= DECISION_THRESHOLD
    actual = truth == 1
    true_positive = int(np.sum(predicted & actual))
    false_positive = int(np.sum(predicted & ~actual))
    false_negative = int(np.sum(~predicted & actual))
    true_negative = int(np.sum(~predicted & ~actual))
    return true_positive, false_positive, false_negative, true_negative


def binary_accuracy(y_true: Any, probabilities: Any) -> float:
    """Share of rows whose thresholded prediction equals the label."""
    tp, fp, fn, tn = _binary_counts(y_true, probabilities)
    return (tp + tn) / (tp + fp + fn + tn)


def precision(y_true: Any, probabilities: Any) -> float:
    """Of the rows predicted positive, the share that are positive (0 if none predicted)."""
    tp, fp, _, _ = _binary_counts(y_true, probabilities)
    return _ratio(tp, tp + fp)


def recall(y_true: Any, probabilities: Any) -> float:
    """Of the positive rows, the share predicted positive (0 if there are none)."""
    tp, _, fn, _ = _binary_counts(y_true, probabilities)
    return _ratio(tp, tp + fn)


def f1(y_true: Any, probabilities: Any) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    tp, fp, fn, _ = _binary_counts(y_true, probabilities)
    return _f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn))


def binary_logloss(y_true: Any, probabilities: Any) -> float:
    """Mean negative log-likelihood of the labels, probabilities clipped by ``EPSILON``."""
    truth, scores = _binary(y_true, probabilities)
    # Clip the probability given to the true class, not p itself: 1 - (1 - 1e-15) is not 1e-15 in floats.
    true_class_probability = np.where(truth == 1, _probabilities(scores), 1 - scores)
    return float(-np.mean(np.log(np.clip(true_class_probability, EPSILON, 1 - EPSILON))))


#: Points of a threshold curve: thresholds 0, 0.01, ..., 1 (the report stays small, whatever the rows).
CURVE_POINTS = 101


def threshold_curve(y_true: Any, scores: Any, points: int = CURVE_POINTS) -> dict[str, list]:
    """ROC and precision-recall points at ``points`` evenly spaced thresholds from 0 to 1.

    At threshold ``t`` a row is predicted positive when its score is >= ``t`` (as the class
    metrics at 0.5). Returns ``thresholds``, ``fpr``, ``tpr`` (= recall) and ``precision``,
    which is ``None`` where nothing is predicted positive. Needs both classes in ``y_true``.
    """
    if points < 2:
        raise MetricsError(f"a threshold curve needs at least 2 points, got {points}")
    truth, values = _binary(y_true, scores)
    positives = np.sort(values[truth == 1])
    negatives = np.sort(values[truth == 0])
    if positives.size == 0 or negatives.size == 0:
        raise MetricsError("a threshold curve needs both classes in y_true")
    thresholds = np.linspace(0.0, 1.0, points)
    # Rows scoring >= t: all minus those strictly below t.
    true_positive = positives.size - np.searchsorted(positives, thresholds, side="left")
    false_positive = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    predicted = true_positive + false_positive
    return {
        "thresholds": [round(float(t), 4) for t in thresholds],
        "fpr": [float(v) for v in false_positive / negatives.size],
        "tpr": [float(v) for v in true_positive / positives.size],
        "precision": [float(tp / n) if n else None for tp, n in zip(true_positive, predicted, strict=True)],
    }


# --- multiclass -------------------------------------------------------------------------


def multiclass_accuracy(y_true: Any, probabilities: Any) -> float:
    """Share of rows whose most probable class is the label."""
    truth, matrix = _multiclass(y_true, probabilities)
    return float(np.mean(np.argmax(matrix, axis=1) == truth))


def f1_macro(y_true: Any, probabilities: Any) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    truth, matrix = _multiclass(y_true, probabilities)
    predicted = np.argmax(matrix, axis=1)
    scores = []
    for label in np.union1d(truth, predicted):
        tp = int(np.sum((predicted == label) & (truth == label)))
        class_precision = _ratio(tp, int(np.sum(predicted == label)))
        class_recall = _ratio(tp, int(np.sum(truth == label)))
        scores.append(_f1(class_precision, class_recall))
    return float(np.mean(scores))


def multiclass_logloss(y_true: Any, probabilities: Any) -> float:
    """Mean negative log of the probability given to the true class, clipped by ``EPSILON``."""
    truth, matrix = _multiclass(y_true, probabilities)
    true_class_probability = matrix[np.arange(truth.shape[0]), truth]
    return float(-np.mean(np.log(np.clip(true_class_probability, EPSILON, 1 - EPSILON))))


# --- regression -------------------------------------------------------------------------


def rmse(y_true: Any, predictions: Any) -> float:
    """Root mean squared error."""
    truth, predicted = _paired(y_true, predictions)
    return float(np.sqrt(np.mean((truth - predicted) ** 2)))


def mae(y_true: Any, predictions: Any) -> float:
    """Mean absolute error."""
    truth, predicted = _paired(y_true, predictions)
    return float(np.mean(np.abs(truth - predicted)))


def r2(y_true: Any, predictions: Any) -> float:
    """Coefficient of determination: 1 - residual sum of squares / total sum of squares."""
    truth, predicted = _paired(y_true, predictions)
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0:
        raise MetricsError("r2 is undefined: every y_true value is the same; the test split needs varied labels")
    return float(1 - np.sum((truth - predicted) ** 2) / total)


# --- per problem type -------------------------------------------------------------------

_FUNCTIONS: dict[str, dict[str, Callable[[Any, Any], float]]] = {
    "binary": {
        "auc": auc,
        "accuracy": binary_accuracy,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "logloss": binary_logloss,
    },
    "multiclass": {"accuracy": multiclass_accuracy, "f1_macro": f1_macro, "logloss": multiclass_logloss},
    "regression": {"rmse": rmse, "mae": mae, "r2": r2},
}
# A metric added to the config schema without a function here must fail at import, not mid-run.
if {p: set(m) for p, m in _FUNCTIONS.items()} != {p: set(m) for p, m in METRICS.items()}:
    raise RuntimeError("stepml.metrics does not implement exactly the metrics of stepml.config.METRICS")


def compute_metrics(problem_type: str, y_true: Any, predictions: Any) -> dict[str, float]:
    """Every metric of ``problem_type`` (names as in ``stepml.config.METRICS``).

    Raises ``MetricsError`` for an unknown problem type, mismatched or non-finite inputs,
    labels that do not fit the problem type, or an undefined metric.
    """
    functions = _FUNCTIONS.get(problem_type)
    if functions is None:
        raise MetricsError(f"unknown problem_type {problem_type!r}; expected one of: {', '.join(_FUNCTIONS)}")
    return {name: float(function(y_true, predictions)) for name, function in functions.items()}


def predicted_classes(problem_type: str, predictions: Any) -> np.ndarray:
    """The class index each row is predicted as (binary: probability >= 0.5; multiclass: argmax)."""
    if problem_type == "binary":
        return (_as_float_array(predictions, "predictions", 1) >= DECISION_THRESHOLD).astype(np.int64)
    if problem_type == "multiclass":
        return np.argmax(_as_float_array(predictions, "predictions", 2), axis=1)
    raise MetricsError(f"problem_type {problem_type!r} has no classes")


def confusion_matrix(y_true: Any, predicted: Any, classes: int) -> list[list[int]]:
    """Counts ``matrix[actual][predicted]`` over class indices 0..classes-1."""
    truth = np.asarray(y_true, dtype=np.int64)
    guess = np.asarray(predicted, dtype=np.int64)
    if truth.shape != guess.shape:
        raise MetricsError(f"y_true has {truth.shape[0]} values but predicted has {guess.shape[0]}")
    for name, values in (("y_true", truth), ("predicted", guess)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            raise MetricsError(f"{name} holds class indices outside 0..{classes - 1}")
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, guess), 1)
    return matrix.tolist()


def _check_comparable(values: Sequence[float]) -> None:
    for value in values:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise MetricsError(f"metric values must be finite numbers, got {value!r}")


def meets_threshold(value: float, threshold: float, higher_is_better: bool) -> bool:
    """Whether ``value`` reaches ``threshold``: at least it, or at most it when lower is better."""
    _check_comparable((value, threshold))
    return value >= threshold if higher_is_better else value <= threshold


def is_better(challenger: float, champion: float, higher_is_better: bool) -> bool:
    """Whether ``challenger`` is strictly better than ``champion`` (a tie is not better)."""
    _check_comparable((challenger, champion))
    return challenger > champion if higher_is_better else challenger < champion
