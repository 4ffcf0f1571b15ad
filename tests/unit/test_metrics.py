"""Metrics against small examples worked out by hand (or by brute force) in the test itself."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from stepml import metrics
from stepml.config import METRICS
from stepml.metrics import MetricsError


def brute_force_auc(y_true: list[int], scores: list[float]) -> float:
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 on a tie."""
    positives = [s for y, s in zip(y_true, scores, strict=True) if y == 1]
    negatives = [s for y, s in zip(y_true, scores, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


# --- AUC --------------------------------------------------------------------------------


def test_auc_with_ties_matches_pair_counting() -> None:
    y_true = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]
    # Pairs (positive vs negatives 0.1, 0.4, 0.4): 0.35 -> 1 + 0 + 0; 0.8 -> 3; 0.4 -> 1 + .5 + .5
    assert metrics.auc(y_true, scores) == pytest.approx(6 / 9)
    assert metrics.auc(y_true, scores) == pytest.approx(brute_force_auc(y_true, scores))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_auc_of_random_scores_with_many_ties_matches_pair_counting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=60).tolist()
    scores = np.round(rng.random(60), 1).tolist()  # one decimal: plenty of ties

    assert metrics.auc(y_true, scores) == pytest.approx(brute_force_auc(y_true, scores))


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.9, 0.8, 0.2, 0.1], 0.0), ([0.5, 0.5, 0.5, 0.5], 0.5)],
)
def test_auc_extremes(scores: list[float], expected: float) -> None:
    assert metrics.auc([0, 0, 1, 1], scores) == expected


@pytest.mark.parametrize(("label", "named"), [(1, "1 (positive)"), (0, "0 (negative)")])
def test_auc_of_a_single_class_is_an_error(label: int, named: str) -> None:
    with pytest.raises(MetricsError, match=rf"auc is undefined: y_true holds only class {re.escape(named)}"):
        metrics.auc([label] * 4, [0.1, 0.2, 0.3, 0.4])


def test_average_ranks_share_the_mean_rank_of_a_tie() -> None:
    assert metrics.average_ranks(np.array([10.0, 20.0, 10.0, 30.0, 20.0, 20.0])).tolist() == [
        1.5,
        4.0,
        1.5,
        6.0,
        4.0,
        4.0,
    ]


# --- binary class metrics ---------------------------------------------------------------

# Thresholded at 0.5 the predictions are 1 1 0 1 0 0 1 1 (0.5 itself counts as positive):
# TP rows 0, 1, 6; FP rows 3, 7; FN row 2; TN rows 4, 5.
BINARY_TRUE = [1, 1, 1, 0, 0, 0, 1, 0]
BINARY_PROBABILITIES = [0.9, 0.6, 0.4, 0.5, 0.2, 0.1, 0.5, 0.7]


def test_binary_class_metrics_by_hand() -> None:
    precision, recall = 3 / 5, 3 / 4

    assert metrics.binary_accuracy(BINARY_TRUE, BINARY_PROBABILITIES) == pytest.approx(5 / 8)
    assert metrics.precision(BINARY_TRUE, BINARY_PROBABILITIES) == pytest.approx(precision)
    assert metrics.recall(BINARY_TRUE, BINARY_PROBABILITIES) == pytest.approx(recall)
    assert metrics.f1(BINARY_TRUE, BINARY_PROBABILITIES) == pytest.approx(2 * precision * recall / (precision + recall))


def test_nothing_predicted_positive_gives_zero_precision_recall_and_f1() -> None:
    y_true, probabilities = [1, 0, 1], [0.1, 0.2, 0.49]

    assert metrics.precision(y_true, probabilities) == 0.0
    assert metrics.recall(y_true, probabilities) == 0.0
    assert metrics.f1(y_true, probabilities) == 0.0
    assert metrics.binary_accuracy(y_true, probabilities) == pytest.approx(1 / 3)


def test_binary_logloss_by_hand_and_clipped() -> None:
    assert metrics.binary_logloss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    # Certain and wrong: clipped to 1e-15 instead of infinity.
    assert metrics.binary_logloss([0, 1], [1.0, 0.0]) == pytest.approx(-math.log(1e-15))


def test_binary_labels_other_than_0_and_1_are_refused() -> None:
    with pytest.raises(MetricsError, match=r"binary y_true must hold only 0 and 1, found \[2\.0\]"):
        metrics.compute_metrics("binary", [0, 1, 2], [0.1, 0.5, 0.9])


def test_binary_predictions_that_are_not_probabilities_are_refused() -> None:
    with pytest.raises(MetricsError, match=r"probabilities in \[0, 1\], found values from -0\.5 to 3"):
        metrics.precision([0, 1, 1], [-0.5, 0.5, 3.0])


# --- multiclass -------------------------------------------------------------------------

MULTI_TRUE = [0, 1, 2, 2, 1]
MULTI_PROBABILITIES = [
    [0.7, 0.2, 0.1],  # predicted 0, right
    [0.1, 0.6, 0.3],  # predicted 1, right
    [0.2, 0.5, 0.3],  # predicted 1, wrong
    [0.1, 0.1, 0.8],  # predicted 2, right
    [0.5, 0.3, 0.2],  # predicted 0, wrong
]


def test_multiclass_metrics_by_hand() -> None:
    # Per class (precision, recall): 0 -> (1/2, 1/1); 1 -> (1/2, 1/2); 2 -> (1/1, 1/2).
    f1_per_class = [2 * 0.5 * 1 / 1.5, 0.5, 2 * 1 * 0.5 / 1.5]
    logloss = -(math.log(0.7) + math.log(0.6) + math.log(0.3) + math.log(0.8) + math.log(0.3)) / 5

    result = metrics.compute_metrics("multiclass", MULTI_TRUE, MULTI_PROBABILITIES)

    assert result == pytest.approx({"accuracy": 3 / 5, "f1_macro": sum(f1_per_class) / 3, "logloss": logloss})


def test_f1_macro_averages_only_classes_that_occur() -> None:
    # Class 2 never occurs in labels or predictions; classes 0 and 1 are perfect.
    assert metrics.f1_macro([0, 1], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]]) == 1.0


def test_multiclass_labels_must_be_class_indices() -> None:
    with pytest.raises(MetricsError, match=r"class indices 0\.\.2, found \[3\.0\]"):
        metrics.multiclass_accuracy([0, 3], [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])


def test_multiclass_needs_a_probability_matrix() -> None:
    with pytest.raises(MetricsError, match=r"predictions must have 2 dimension\(s\), got shape \(2,\)"):
        metrics.compute_metrics("multiclass", [0, 1], [0.2, 0.8])


# --- regression -------------------------------------------------------------------------


def test_regression_metrics_by_hand() -> None:
    y_true, predictions = [3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]
    # Errors 0.5, -0.5, 0, -1: squared sum 1.5, absolute sum 2. Mean 2.875.
    total = (3 - 2.875) ** 2 + (-0.5 - 2.875) ** 2 + (2 - 2.875) ** 2 + (7 - 2.875) ** 2

    result = metrics.compute_metrics("regression", y_true, predictions)

    assert result == pytest.approx({"rmse": math.sqrt(1.5 / 4), "mae": 2 / 4, "r2": 1 - 1.5 / total})


def test_r2_of_a_constant_label_is_an_error() -> None:
    with pytest.raises(MetricsError, match="r2 is undefined: every y_true value is the same"):
        metrics.r2([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])


# --- compute_metrics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem_type", "y_true", "predictions"),
    [
        ("binary", BINARY_TRUE, BINARY_PROBABILITIES),
        ("multiclass", MULTI_TRUE, MULTI_PROBABILITIES),
        ("regression", [1.0, 2.0, 4.0], [1.5, 2.0, 3.0]),
    ],
)
def test_compute_metrics_names_every_metric_of_the_problem_type(
    problem_type: str, y_true: list, predictions: list
) -> None:
    result = metrics.compute_metrics(problem_type, y_true, predictions)

    assert set(result) == set(METRICS[problem_type])
    assert all(isinstance(value, float) and math.isfinite(value) for value in result.values())


def test_compute_metrics_binary_agrees_with_the_single_metrics() -> None:
    result = metrics.compute_metrics("binary", BINARY_TRUE, BINARY_PROBABILITIES)

    assert result["auc"] == pytest.approx(brute_force_auc(BINARY_TRUE, BINARY_PROBABILITIES))
    assert result["accuracy"] == pytest.approx(5 / 8)


@pytest.mark.parametrize(
    ("problem_type", "y_true", "predictions", "message"),
    [
        ("ranking", [1], [1], r"unknown problem_type 'ranking'"),
        ("regression", [1.0, 2.0], [1.0], r"y_true has 2 values but predictions has 1"),
        ("regression", [], [], r"y_true is empty"),
        ("regression", [1.0, 2.0], [1.0, float("nan")], r"predictions holds NaN or infinite values"),
        ("regression", [1.0, 2.0], ["a", "b"], r"predictions must be numbers"),
    ],
)
def test_compute_metrics_refuses_bad_input(problem_type: str, y_true: list, predictions: list, message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        metrics.compute_metrics(problem_type, y_true, predictions)


def test_confusion_matrix_counts_actual_by_predicted() -> None:
    predicted = metrics.predicted_classes("binary", BINARY_PROBABILITIES)

    # Rows actual 0/1, columns predicted 0/1: TN 2, FP 2, FN 1, TP 3 (see BINARY_TRUE).
    assert metrics.confusion_matrix(BINARY_TRUE, predicted, 2) == [[2, 2], [1, 3]]
    assert metrics.confusion_matrix(MULTI_TRUE, metrics.predicted_classes("multiclass", MULTI_PROBABILITIES), 3) == [
        [1, 0, 0],
        [1, 1, 0],
        [0, 1, 1],
    ]


# --- the gate's comparisons -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "threshold", "higher_is_better", "expected"),
    [
        (0.8, 0.75, True, True),
        (0.75, 0.75, True, True),
        (0.7, 0.75, True, False),
        (0.3, 0.4, False, True),
        (0.4, 0.4, False, True),
        (0.5, 0.4, False, False),
    ],
)
def test_meets_threshold(value: float, threshold: float, higher_is_better: bool, expected: bool) -> None:
    assert metrics.meets_threshold(value, threshold, higher_is_better) is expected


@pytest.mark.parametrize(
    ("challenger", "champion", "higher_is_better", "expected"),
    [
        (0.9, 0.8, True, True),
        (0.8, 0.8, True, False),
        (0.7, 0.8, True, False),
        (0.2, 0.3, False, True),
        (0.3, 0.3, False, False),
        (0.4, 0.3, False, False),
    ],
)
def test_is_better_is_strict(challenger: float, champion: float, higher_is_better: bool, expected: bool) -> None:
    assert metrics.is_better(challenger, champion, higher_is_better) is expected


def test_comparisons_refuse_nan() -> None:
    with pytest.raises(MetricsError, match="finite numbers, got nan"):
        metrics.meets_threshold(float("nan"), 0.5, True)
    with pytest.raises(MetricsError, match="finite numbers, got nan"):
        metrics.is_better(0.5, float("nan"), True)
