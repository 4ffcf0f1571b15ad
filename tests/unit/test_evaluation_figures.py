"""The evaluation report's figures: curves, residuals, the production comparison, feature
importance read from the trained model without xgboost, and the test split's drift."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from typing import Any

import numpy as np
import pytest
import xgboost

from stepml import evaluation_figures as figures
from stepml.metrics import MetricsError, threshold_curve
from stepml.model_importance import ImportanceError, gain_importance, named_importance
from tests.unit.test_evaluate import Env, csv_text, make_config, make_data, strong_rule, weak_rule


def train_booster(objective: str, **params: Any) -> tuple[xgboost.Booster, np.ndarray]:
    rng = np.random.default_rng(3)
    features = rng.random((400, 4))
    if objective == "multi:softprob":
        labels = (features[:, 0] * 3).astype(int)
    elif objective == "binary:logistic":
        labels = (features[:, 1] + features[:, 0] > 1).astype(int)
    else:
        labels = 5 * features[:, 2] + features[:, 3]
    booster = xgboost.train(
        {"objective": objective, "max_depth": 3, "gamma": 0.3, **params},
        xgboost.DMatrix(features, label=labels),
        15,
    )
    return booster, features


@pytest.mark.parametrize(
    ("objective", "params"),
    [("binary:logistic", {}), ("multi:softprob", {"num_class": 3}), ("reg:squarederror", {})],
)
@pytest.mark.parametrize("suffix", ["", ".json"])
def test_gain_importance_without_xgboost_equals_xgboosts_own(tmp_path, objective, params, suffix) -> None:
    booster, _ = train_booster(objective, **params)
    path = tmp_path / f"xgboost-model{suffix}"  # no suffix: the 1.7 container's binary format
    booster.save_model(str(path))
    expected = booster.get_score(importance_type="gain")

    found = gain_importance(path.read_bytes(), str(path))

    assert {f"f{index}" for index in found} == set(expected)
    for name, gain in expected.items():
        assert found[int(name[1:])]["gain"] == pytest.approx(gain, rel=1e-5)
    weights = booster.get_score(importance_type="weight")
    assert {f"f{i}": e["weight"] for i, e in found.items()} == weights


def test_a_truncated_model_is_an_error_naming_it(tmp_path) -> None:
    booster, _ = train_booster("binary:logistic")
    path = tmp_path / "xgboost-model"
    booster.save_model(str(path))
    data = path.read_bytes()
    with pytest.raises(ImportanceError, match=r"^s3://b/model.tar.gz: the model ends early \(at byte \d+"):
        gain_importance(data[: len(data) // 2], "s3://b/model.tar.gz")


def test_importance_names_features_in_the_manifests_order_largest_gain_first() -> None:
    found = {0: {"weight": 2, "total_gain": 4.0, "gain": 2.0}, 2: {"weight": 1, "total_gain": 9.0, "gain": 9.0}}
    assert named_importance(found, ["tenure", "plan"]) == [
        {"feature": "f2", "gain": 9.0, "total_gain": 9.0, "weight": 1},
        {"feature": "tenure", "gain": 2.0, "total_gain": 4.0, "weight": 2},
    ]


# --- pure figures ---------------------------------------------------------------------------------


def test_curves_have_101_thresholds_and_agree_with_the_class_metrics() -> None:
    features, labels = make_data(rows=500)
    scores = strong_rule(features)
    [curve] = figures.classification_curves("binary", labels.astype(float), scores, ["no", "yes"])
    assert curve["name"] == "yes" and len(curve["thresholds"]) == len(curve["tpr"]) == 101
    half = curve["thresholds"].index(0.5)
    predicted = scores >= 0.5
    assert curve["tpr"][half] == pytest.approx(np.sum(predicted & (labels == 1)) / np.sum(labels == 1))
    assert curve["fpr"][half] == pytest.approx(np.sum(predicted & (labels == 0)) / np.sum(labels == 0))
    assert curve["precision"][half] == pytest.approx(np.sum(predicted & (labels == 1)) / np.sum(predicted))
    assert (curve["tpr"][0], curve["fpr"][0]) == (1.0, 1.0)  # threshold 0: everything positive


def test_the_figures_do_not_grow_with_the_rows() -> None:
    def size(rows: int) -> int:
        features, labels = make_data(rows=rows, seed=5)
        found = {
            "curves": figures.classification_curves("binary", labels.astype(float), strong_rule(features), ["n", "y"]),
            "comparison": figures.comparison("binary", strong_rule(features), weak_rule(features), ["n", "y"]),
            "residuals": figures.residuals(features[:, 0], features[:, 1]),
        }
        return len(json.dumps(found))

    small, large = size(300), size(30_000)
    assert large < small * 1.2 and large < 40_000


def test_a_single_class_has_no_curve() -> None:
    assert figures.classification_curves("binary", np.zeros(5), np.linspace(0, 1, 5), ["no", "yes"]) == []


# --- in the report ------------------------------------------------------------------------------


@pytest.fixture
def env(stack: Any) -> Env:
    return Env(stack)


def put_json(env: Env, uri: str, document: Any) -> None:
    env.s3.put_object(Bucket=env.bucket, Key=uri.removeprefix(f"s3://{env.bucket}/"), Body=json.dumps(document))


def put_model(env: Env, booster: xgboost.Booster, tmp_path) -> str:
    path = tmp_path / "xgboost-model"
    booster.save_model(str(path))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(path, arcname="xgboost-model")
    key = f"models/churn/{env.run()['run_id']}/train-job/output/model.tar.gz"
    env.s3.put_object(Bucket=env.bucket, Key=key, Body=archive.getvalue())
    return f"s3://{env.bucket}/{key}"


def baseline(rows: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model Monitor's statistics and constraints of two Fractional features, from ``rows``."""
    features, constraints = [], []
    for index, name in enumerate(("x1", "x2")):
        values = np.sort(rows[:, index])
        low, high = float(values[0]), float(values[-1])
        edges = np.linspace(low, high, 11)
        counts = np.histogram(values, bins=edges)[0]
        features.append(
            {
                "name": name,
                "inferred_type": "Fractional",
                "numerical_statistics": {
                    "common": {"num_present": len(values), "num_missing": 0},
                    "distribution": {
                        "kll": {
                            "buckets": [
                                {"lower_bound": float(edges[b]), "upper_bound": float(edges[b + 1]), "count": int(c)}
                                for b, c in enumerate(counts)
                            ],
                            "sketch": {"data": [[float(v) for v in np.percentile(values, range(101))]]},
                        }
                    },
                },
            }
        )
        constraints.append({"name": name, "inferred_type": "Fractional", "completeness": 1.0})
    return {"version": 0.0, "features": features}, {"version": 0.0, "features": constraints}


def test_a_binary_report_draws_curves_comparison_importance_and_drift(env: Env, tmp_path) -> None:
    features, labels = make_data(rows=300, seed=9)
    shifted = features.copy()
    shifted[:, 1] += 2.0  # x2 of the test rows moved away from training: drift; x1 did not
    env.put_test_split(csv_text(["churned", "x1", "x2"], labels, shifted))
    statistics, constraints = baseline(features)
    put_json(env, env.paths["statistics"], statistics)
    put_json(env, env.paths["constraints"], constraints)
    put_json(env, env.paths["manifest"], {"feature_order": ["x1", "x2"], "categorical_encodings": {}})
    booster, _ = train_booster("binary:logistic")
    model_data = put_model(env, booster, tmp_path)

    result = env.evaluate(env.runtime(strong_rule, weak_rule), champion=env.champion, model_data=model_data)
    report, _ = env.report()

    [ours], [theirs] = report["curves"]["challenger"], report["curves"]["champion"]
    assert ours["auc"] == pytest.approx(result["value"], abs=1e-6)
    assert theirs["auc"] == pytest.approx(result["production"]["metrics"]["auc"], abs=1e-6)
    comparison = report["comparison"]
    same = (strong_rule(shifted) >= 0.5) == (weak_rule(shifted) >= 0.5)
    assert comparison["agreement"] == pytest.approx(np.mean(same), abs=1e-6)
    assert sum(map(sum, comparison["matrix"])) == sum(map(sum, comparison["scores"]["counts"])) == 300
    expected = booster.get_score(importance_type="gain")
    importance = report["feature_importance"]
    assert importance["model_data"] == model_data
    names = {"f0": "x1", "f1": "x2"}
    assert {f["feature"]: f["gain"] for f in importance["features"]} == pytest.approx(
        {names.get(k, k): v for k, v in expected.items()}, rel=1e-5
    )
    drift = {f["name"]: f for f in report["drift"]["features"]}
    assert drift["x2"]["violations"][0]["constraint_check_type"] == "baseline_drift_check"
    assert drift["x2"]["distance"] > drift["x2"]["threshold"] >= drift["x1"]["distance"]
    assert drift["x1"]["violations"] == [] and len(drift["x1"]["labels"]) == 12
    assert report["drift"]["rows"] == report["drift"]["of_rows"] == 300


def test_the_drift_analysis_runs_while_the_endpoint_scores(env: Env, monkeypatch) -> None:
    features, labels = make_data(rows=300, seed=9)
    env.put_test_split(csv_text(["churned", "x1", "x2"], labels, features))
    statistics, constraints = baseline(features)
    put_json(env, env.paths["statistics"], statistics)
    put_json(env, env.paths["constraints"], constraints)
    analyzing = threading.Event()
    analyze_rows = figures.analyze_rows

    def analyze_and_say_so(*args):
        analyzing.set()
        return analyze_rows(*args)

    monkeypatch.setattr(figures, "analyze_rows", analyze_and_say_so)
    runtime = env.runtime(strong_rule)
    invoke = runtime.invoke_endpoint
    seen_analyzing = []

    def invoke_once_the_analysis_started(**request):
        # Run one after the other, the analysis would start only after the scoring: this would wait in vain.
        seen_analyzing.append(analyzing.wait(timeout=60))
        return invoke(**request)

    runtime.invoke_endpoint = invoke_once_the_analysis_started

    env.evaluate(runtime)
    report, _ = env.report()

    assert seen_analyzing and all(seen_analyzing)
    assert report["drift"]["rows"] == 300 and {f["name"] for f in report["drift"]["features"]} == {"x1", "x2"}


def test_a_regression_report_has_residuals_instead_of_curves(env: Env) -> None:
    features, _ = make_data(rows=200)
    targets = 3 * features[:, 0] - features[:, 1]
    env.put_test_split(csv_text(["spend", "x1", "x2"], targets, features))
    config = make_config(label="spend", problem_type="regression", classes=None, metric="rmse", threshold=0.5)

    env.evaluate(env.runtime(lambda rows: 3 * rows[:, 0] - rows[:, 1] + 0.25), env.run(config))
    report, _ = env.report()

    assert "curves" not in report and report["comparison"] is None
    residuals = report["residuals"]
    assert sum(residuals["histogram"]["counts"]) == 200 and len(residuals["histogram"]["counts"]) == 30
    filled = [b for b in residuals["by_prediction"] if b["count"]]
    assert sum(b["count"] for b in residuals["by_prediction"]) == 200
    assert all(b["p50"] == pytest.approx(-0.25) for b in filled)  # every prediction 0.25 too high
    assert sum(map(sum, residuals["predicted_vs_actual"]["counts"])) == 200


def test_figures_that_cannot_be_made_say_why_and_the_evaluation_still_passes(env: Env) -> None:
    features, labels = make_data()
    env.put_test_split(csv_text(["churned", "x1", "x2"], labels, features))

    result = env.evaluate(env.runtime(strong_rule))
    report, _ = env.report()

    assert result["passed"] is True
    manifest = env.paths["manifest"]
    assert report["feature_importance"] == {"unavailable": f"{manifest}: cannot read it: NoSuchKey"}
    assert report["drift"] == {"unavailable": f"{env.paths['statistics']}: cannot read it: NoSuchKey"}


def test_a_threshold_curve_counts_rows_at_or_above_each_threshold() -> None:
    curve = threshold_curve([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], points=3)  # thresholds 0, 0.5, 1
    assert curve == {
        "thresholds": [0.0, 0.5, 1.0],
        "fpr": [1.0, 0.5, 0.0],
        "tpr": [1.0, 0.5, 0.0],
        "precision": [0.5, 0.5, None],  # nothing predicted positive at 1: no precision
    }
    with pytest.raises(MetricsError, match=r"^a threshold curve needs both classes in y_true$"):
        threshold_curve([1, 1], [0.2, 0.4])
    with pytest.raises(MetricsError, match=r"^a threshold curve needs at least 2 points, got 1$"):
        threshold_curve([0, 1], [0.2, 0.4], points=1)
