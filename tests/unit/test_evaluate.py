"""Evaluate: the test split through a (fake) endpoint, metrics, the gate, champion vs challenger.

The buckets come from template.yaml (the ``stack`` fixture). The test endpoint serves the
challenger and, when production has a model, the champion as a second variant; moto's
InvokeEndpoint only returns canned output, so scoring goes through ``FakeRuntime``, whose
variants each apply a fixed rule to the features they are sent. Expected metric values are
computed here, independently of stepml.metrics.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from stepml import config
from stepml.config import ConfigError, parse_dataset_config
from stepml.evaluation import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    EvaluationError,
    Evaluator,
    evaluate_model,
    parse_predictions,
)
from stepml.lineage import artifact_paths, resource_names
from tests.helpers import CHURN_CONFIG, FakeLambdaContext, load_handler, set_function_environment

RUN_ID = "churn-3f2a9c1b7d4e"
REGION = "us-east-1"
Rule = Callable[[np.ndarray], np.ndarray]


# --- data and rules ---------------------------------------------------------------------


def make_data(rows: int = 23, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Two features; the label follows x1 (with noise), x2 is unrelated to it."""
    rng = np.random.default_rng(seed)
    features = np.round(rng.normal(size=(rows, 2)), 3)
    labels = (features[:, 0] + 0.8 * rng.normal(size=rows) > 0).astype(int)
    return features, labels


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-values))


def strong_rule(features: np.ndarray) -> np.ndarray:
    return sigmoid(2 * features[:, 0])


def weak_rule(features: np.ndarray) -> np.ndarray:
    return sigmoid(features[:, 1] + 0.2 * features[:, 0])


def pair_counting_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def csv_text(header: list[str], labels: np.ndarray, features: np.ndarray) -> str:
    lines = [",".join(header)]
    lines += [
        ",".join([str(label), *(repr(float(v)) for v in row)]) for label, row in zip(labels, features, strict=True)
    ]
    return "\n".join(lines) + "\n"


# --- fakes ------------------------------------------------------------------------------


class FakeRuntime:
    """Stands in for sagemaker-runtime: one endpoint whose variants each apply a rule to the CSV rows.

    ``style`` is how the answer is written: ``container`` as the XGBoost container does
    (``",".join(str(p))`` on one line), ``lines`` one prediction per line. Any other endpoint
    (production) answers as one the caller may not invoke.
    """

    def __init__(
        self,
        endpoint: str,
        variants: dict[str, Rule],
        style: str = "container",
        short_calls: frozenset[int] = frozenset(),
    ):
        self.endpoint = endpoint
        self.variants = variants
        self.style = style
        self.short_calls = short_calls  # these calls (0-based) answer one prediction short
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(
        self, *, EndpointName: str, ContentType: str, Accept: str, Body: bytes, TargetVariant: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(
            {
                "EndpointName": EndpointName,
                "TargetVariant": TargetVariant,
                "ContentType": ContentType,
                "Accept": Accept,
                "Body": Body,
            }
        )
        if EndpointName != self.endpoint or not self.variants:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f"Endpoint {EndpointName} not found."}},
                "InvokeEndpoint",
            )
        variant = TargetVariant or next(iter(self.variants))
        if variant not in self.variants:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f"Variant {variant} does not exist."}},
                "InvokeEndpoint",
            )
        rows = [[float(cell) for cell in line.split(",")] for line in Body.decode("utf-8").split("\n")]
        predictions = self.variants[variant](np.array(rows)).tolist()
        if len(self.calls) - 1 in self.short_calls:
            predictions = predictions[:-1]
        if self.style == "container":
            text = ",".join(map(str, predictions))
        else:
            text = "\n".join(",".join(map(str, p)) if isinstance(p, list) else str(p) for p in predictions) + "\n"
        return {"Body": io.BytesIO(text.encode("utf-8")), "ContentType": "text/csv"}

    def rows_per_call(self, variant: str = CHALLENGER_VARIANT) -> list[int]:
        return [len(call["Body"].decode().split("\n")) for call in self.calls if call["TargetVariant"] == variant]


class Clock:
    """``now`` for evaluate_model: a fixed start, one second per call."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        current = self.moment
        self.moment += timedelta(seconds=1)
        return current


# --- the run and the stack --------------------------------------------------------------


def make_config(**overrides: Any) -> dict[str, Any]:
    raw = {**CHURN_CONFIG, "threshold": 0.7, **overrides}
    return parse_dataset_config(raw, "test config").model_dump(mode="json")


class Env:
    """The stack's artifact bucket and production endpoint name, and a run pointing into them."""

    def __init__(self, stack: Any):
        self.bucket = stack.function_environment("EvaluateFunction")["STEPML_ARTIFACT_BUCKET"]
        self.production = stack.function_environment("ResolveRunFunction")["STEPML_PRODUCTION_ENDPOINT_NAME"]
        self.session = boto3.Session(region_name=REGION)
        self.s3 = self.session.client("s3")
        self.names = resource_names(RUN_ID, 1, self.production)
        self.paths = artifact_paths(self.bucket, "churn", RUN_ID)

    def run(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "run_id": RUN_ID,
            "dataset": "churn",
            "attempt": 1,
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:exec-1",
            "input": {
                "bucket": "uploads",
                "key": "incoming/churn/data.csv",
                "version_id": "v-7Hq2",
                "etag": '"abc"',
                "size": 1234,
                "uri": "s3://uploads/incoming/churn/data.csv",
            },
            "config": config or make_config(),
            "hyperparameters": {"num_round": "100", "objective": "binary:logistic"},
            "names": self.names,
            "paths": self.paths,
            "endpoint_poll_seconds": 30,
            "approval_timeout_seconds": 3600,
            "code_version": "abc1234",
        }

    @property
    def test_endpoint(self) -> str:
        return self.names["test_endpoint"]

    def put_test_split(self, text: str, part: str = "part-00000.csv") -> str:
        key = self.paths["test"].removeprefix(f"s3://{self.bucket}/") + part
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"))
        return key

    def put_binary_split(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Two part files and Spark's empty _SUCCESS marker, as the Glue job leaves them."""
        half = len(labels) // 2
        header = ["churned", "x1", "x2"]
        self.put_test_split(csv_text(header, labels[:half], features[:half]), "part-00000.csv")
        self.put_test_split(csv_text(header, labels[half:], features[half:]), "part-00001.csv")
        self.put_test_split("", "_SUCCESS")

    @property
    def champion(self) -> dict[str, Any]:
        """What the state machine found production serving (``$.champion``), served on the test endpoint."""
        return {
            "in_service": True,
            "endpoint": self.production,
            "endpoint_config": "stepml-churn-0a1b2c3d4e5f-prod-a1",
            "model": "stepml-churn-0a1b2c3d4e5f-a1",
        }

    def runtime(self, challenger: Rule, champion: Rule | None = None, **kwargs: Any) -> FakeRuntime:
        variants = {CHALLENGER_VARIANT: challenger} | ({CHAMPION_VARIANT: champion} if champion else {})
        return FakeRuntime(self.test_endpoint, variants, **kwargs)

    def evaluate(
        self,
        runtime: FakeRuntime,
        run: dict[str, Any] | None = None,
        champion: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return evaluate_model(
            run or self.run(),
            self.test_endpoint,
            runtime_client=runtime,
            boto3_session=self.session,
            champion=champion,
            now=kwargs.pop("now", Clock()),
            **kwargs,
        )

    @property
    def report_key(self) -> str:
        return self.paths["evaluation"].removeprefix(f"s3://{self.bucket}/") + "report.json"

    def report_exists(self) -> bool:
        return "Contents" in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.report_key)

    def report(self) -> tuple[dict[str, Any], dict[str, Any]]:
        key = self.report_key
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return json.loads(body), head


@pytest.fixture
def env(stack: Any) -> Env:
    return Env(stack)


@pytest.fixture
def data(env: Env) -> tuple[np.ndarray, np.ndarray]:
    features, labels = make_data()
    env.put_binary_split(features, labels)
    return features, labels


OUTPUT_KEYS = {
    "passed",
    "reason",
    "metric",
    "value",
    "threshold",
    "higher_is_better",
    "metrics",
    "rows",
    "production",
    "report_uri",
    "started_at",
    "ended_at",
}


# --- the gate ---------------------------------------------------------------------------


def test_a_good_model_without_production_passes(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    expected_auc = pair_counting_auc(labels, strong_rule(features))
    assert expected_auc >= 0.7  # the data must let this model pass

    result = env.evaluate(env.runtime(strong_rule))

    assert set(result) == OUTPUT_KEYS
    assert result["passed"] is True
    assert (result["metric"], result["threshold"], result["higher_is_better"]) == ("auc", 0.7, True)
    assert result["value"] == pytest.approx(expected_auc)
    assert result["metrics"]["auc"] == result["value"]
    assert set(result["metrics"]) == {"auc", "accuracy", "f1", "precision", "recall", "logloss"}
    assert result["metrics"]["accuracy"] == pytest.approx(np.mean((strong_rule(features) >= 0.5) == labels))
    assert result["rows"] == len(labels) == 23
    assert result["production"] is None
    assert "no production model" in result["reason"]
    assert result["report_uri"] == f"s3://{env.bucket}/evaluation/churn/{RUN_ID}/report.json"
    assert (result["started_at"], result["ended_at"]) == ("2026-11-22T12:00:00.000Z", "2026-11-22T12:00:01.000Z")


def test_a_model_below_the_threshold_fails_with_a_reason(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    probabilities = weak_rule(features)
    cases = [
        ("auc", 0.99, "higher is better", pair_counting_auc(labels, probabilities)),
        (
            "logloss",
            0.01,
            "lower is better",
            -np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)),
        ),
    ]
    for metric, threshold, direction, expected in cases:
        result = env.evaluate(env.runtime(weak_rule), env.run(make_config(metric=metric, threshold=threshold)))

        assert result["passed"] is False
        assert (result["metric"], result["value"]) == (metric, pytest.approx(expected))
        assert result["reason"] == (
            f"{metric} {result['value']:.6g} does not meet the threshold {threshold:g} ({direction})"
        )


def test_a_challenger_worse_than_the_champion_does_not_pass(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    challenger = pair_counting_auc(labels, weak_rule(features))
    champion = pair_counting_auc(labels, strong_rule(features))
    assert champion > challenger >= 0.5  # above a 0.5 threshold, below production
    runtime = env.runtime(weak_rule, strong_rule)

    result = env.evaluate(runtime, env.run(make_config(threshold=0.5)), env.champion)

    assert result["passed"] is False
    assert result["value"] == pytest.approx(challenger)
    production = result["production"]
    assert set(production) == {"endpoint", "model", "variant", "metrics", "value", "challenger_better"}
    assert (production["endpoint"], production["challenger_better"]) == (env.production, False)
    assert (production["model"], production["variant"]) == (env.champion["model"], CHAMPION_VARIANT)
    assert production["value"] == production["metrics"]["auc"] == pytest.approx(champion)
    assert production["metrics"]["accuracy"] == pytest.approx(np.mean((strong_rule(features) >= 0.5) == labels))
    assert re.fullmatch(
        rf"auc {challenger:.6g} is worse than production endpoint {env.production} \(auc {champion:.6g}\) "
        r"and promote_only_if_better is true",
        result["reason"],
    )
    assert runtime.rows_per_call(CHAMPION_VARIANT) == [23]

    # The same models, with the dataset allowing a worse challenger through.
    allowed = env.evaluate(runtime, env.run(make_config(threshold=0.5, promote_only_if_better=False)), env.champion)

    assert allowed["passed"] is True
    assert allowed["production"]["challenger_better"] is False
    assert "allowed because promote_only_if_better is false" in allowed["reason"]


def test_a_challenger_better_than_the_champion_passes(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    runtime = env.runtime(strong_rule, weak_rule)

    result = env.evaluate(runtime, env.run(make_config(threshold=0.5)), env.champion)

    assert result["passed"] is True
    assert result["production"]["challenger_better"] is True
    assert result["production"]["value"] == pytest.approx(pair_counting_auc(labels, weak_rule(features)))
    assert f"better than production endpoint {env.production}" in result["reason"]


def test_the_champion_is_scored_on_the_test_endpoint_never_on_production(
    env: Env, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """Production's data capture is monitoring data: evaluation rows go to the test endpoint's variants."""
    runtime = env.runtime(strong_rule, weak_rule)

    env.evaluate(runtime, champion=env.champion, batch_size=10)

    assert {call["EndpointName"] for call in runtime.calls} == {env.test_endpoint}
    assert [call["TargetVariant"] for call in runtime.calls] == [CHALLENGER_VARIANT] * 3 + [CHAMPION_VARIANT] * 3
    challenger_rows = [c["Body"] for c in runtime.calls if c["TargetVariant"] == CHALLENGER_VARIANT]
    champion_rows = [c["Body"] for c in runtime.calls if c["TargetVariant"] == CHAMPION_VARIANT]
    assert challenger_rows == champion_rows, "both variants get the same rows, in the same batches"
    report, _ = env.report()
    assert report["champion"] == env.champion
    assert (report["challenger_variant"], report["champion_variant"]) == (CHALLENGER_VARIANT, CHAMPION_VARIANT)


def test_without_a_champion_in_service_only_the_challenger_is_scored(
    env: Env, data: tuple[np.ndarray, np.ndarray]
) -> None:
    runtime = env.runtime(strong_rule)

    for champion in (None, {"in_service": False}):
        result = env.evaluate(runtime, champion=champion)

        assert result["production"] is None and "no production model" in result["reason"]
        report, _ = env.report()
        assert report["champion"] is None and report["production_endpoint_name"] is None
    assert {call["TargetVariant"] for call in runtime.calls} == {CHALLENGER_VARIANT}

    with pytest.raises(EvaluationError, match=r"Evaluate payload: field 'champion.model' is missing"):
        env.evaluate(runtime, champion={**env.champion, "model": ""})


# --- scoring ----------------------------------------------------------------------------


def test_rows_go_in_batches_without_header_or_label(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    for style in ("container", "lines"):
        runtime = env.runtime(strong_rule, style=style)

        result = env.evaluate(runtime, batch_size=5)

        assert runtime.rows_per_call() == [5, 5, 5, 5, 3]
        first = runtime.calls[0]
        assert (first["ContentType"], first["Accept"]) == ("text/csv", "text/csv")
        assert first["Body"].decode().split("\n")[0] == f"{float(features[0][0])!r},{float(features[0][1])!r}"
        assert b"churned" not in first["Body"]
        assert result["value"] == pytest.approx(pair_counting_auc(labels, strong_rule(features)))


def softmax_rule(features: np.ndarray) -> np.ndarray:
    logits = np.stack([-features[:, 0], np.zeros(len(features)), features[:, 0]], axis=1)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def test_multiclass_probabilities_are_parsed_per_row(env: Env) -> None:
    rng = np.random.default_rng(11)
    features = np.round(rng.normal(size=(17, 2)), 3)
    labels = np.digitize(features[:, 0] + 0.5 * rng.normal(size=17), [-0.5, 0.5])  # 0, 1, 2
    env.put_test_split(csv_text(["plan", "x1", "x2"], labels, features))
    config = make_config(
        label="plan", problem_type="multiclass", classes=["basic", "plus", "premium"], metric="accuracy", threshold=0.3
    )
    probabilities = softmax_rule(features)
    predicted = probabilities.argmax(axis=1)

    expected_matrix = [[int(np.sum((labels == a) & (predicted == p))) for p in range(3)] for a in range(3)]

    # "container": "[p0, p1, p2],[...]" on one line, as the XGBoost container answers; "lines": one row per line.
    for style in ("container", "lines"):
        runtime = env.runtime(softmax_rule, style=style)
        result = env.evaluate(runtime, env.run(config), batch_size=4)

        assert runtime.rows_per_call() == [4, 4, 4, 4, 1]
        assert set(result["metrics"]) == {"accuracy", "f1_macro", "logloss"}
        assert result["value"] == pytest.approx(np.mean(predicted == labels))
        assert result["metrics"]["logloss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(17), labels])))
        report, _ = env.report()
        assert report["confusion_matrix"]["labels"] == ["basic", "plus", "premium"]
        assert report["confusion_matrix"]["matrix"] == expected_matrix


def test_regression_has_no_confusion_matrix(env: Env) -> None:
    features, _ = make_data()
    targets = 3 * features[:, 0] - features[:, 1]
    env.put_test_split(csv_text(["spend", "x1", "x2"], targets, features))
    config = make_config(label="spend", problem_type="regression", classes=None, metric="rmse", threshold=0.5)

    def rule(rows: np.ndarray) -> np.ndarray:
        return 3 * rows[:, 0] - rows[:, 1] + 0.25

    result = env.evaluate(env.runtime(rule), env.run(config))

    assert result["passed"] is True
    assert (result["value"], result["higher_is_better"]) == (pytest.approx(0.25), False)
    assert result["metrics"]["mae"] == pytest.approx(0.25)
    report, _ = env.report()
    assert report["confusion_matrix"] is None


def test_class_names_in_the_label_column_map_to_class_indices(env: Env) -> None:
    features, labels = make_data()
    named = np.array(["no", "yes"])[labels]
    env.put_test_split(csv_text(["churned", "x1", "x2"], named, features))

    result = env.evaluate(env.runtime(strong_rule))

    assert result["value"] == pytest.approx(pair_counting_auc(labels, strong_rule(features)))


# --- the report -------------------------------------------------------------------------


def test_the_report_holds_the_result_lineage_and_confusion_matrix(
    env: Env, data: tuple[np.ndarray, np.ndarray]
) -> None:
    features, labels = data
    runtime = env.runtime(strong_rule, weak_rule)

    result = env.evaluate(runtime, champion=env.champion)
    report, head = env.report()

    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/json"
    assert {key: report[key] for key in OUTPUT_KEYS} == json.loads(json.dumps(result))
    assert report["run_id"] == RUN_ID
    assert report["dataset"] == "churn"
    assert report["input"] == {"uri": "s3://uploads/incoming/churn/data.csv", "version_id": "v-7Hq2"}
    assert report["test_uri"] == env.paths["test"]
    assert report["label_column"] == "churned"
    assert report["endpoint_name"] == env.test_endpoint == f"stepml-{RUN_ID}-test-a1"
    assert report["production_endpoint_name"] == env.production
    assert report["model_name"] == f"stepml-{RUN_ID}-a1"
    assert report["champion"]["model"] == result["production"]["model"] == env.champion["model"]

    def counts(predicted: np.ndarray) -> list[list[int]]:
        return [[int(np.sum((labels == a) & (predicted == p))) for p in (0, 1)] for a in (0, 1)]

    assert report["confusion_matrix"] == {
        "labels": ["no", "yes"],
        "rows": "actual",
        "columns": "predicted",
        "matrix": counts((strong_rule(features) >= 0.5).astype(int)),
    }
    assert report["production_confusion_matrix"]["matrix"] == counts((weak_rule(features) >= 0.5).astype(int))
    assert sum(map(sum, report["production_confusion_matrix"]["matrix"])) == report["rows"] == len(labels)


# --- errors -----------------------------------------------------------------------------


def test_an_unusable_test_split_is_an_error_naming_it(env: Env) -> None:
    runtime = env.runtime(strong_rule)
    prefix = re.escape(env.paths["test"])

    with pytest.raises(EvaluationError, match=rf"test split {prefix}: no test rows, the prefix holds no files"):
        env.evaluate(runtime)

    env.put_test_split("churned,x1,x2\n")
    with pytest.raises(EvaluationError, match=rf"test split {prefix}: no test rows \(found 0 row\(s\)"):
        env.evaluate(runtime)

    env.put_test_split("x1,churned,x2\n0.1,1,0.2\n0.3,0,0.4\n")
    with pytest.raises(
        EvaluationError, match=rf"test split {prefix}: label column 'churned' must be the first column, found it at"
    ):
        env.evaluate(runtime)

    env.put_test_split("churned,x1,x2\nmaybe,0.1,0.2\nyes,0.3,0.4\n")
    with pytest.raises(EvaluationError, match=r"label column 'churned' holds values that are not in .*\['maybe'\]"):
        env.evaluate(runtime)

    features, _ = make_data()
    env.put_test_split(csv_text(["churned", "x1", "x2"], np.zeros(len(features), dtype=int), features))
    with pytest.raises(
        EvaluationError, match=rf"endpoint {env.test_endpoint} on test split {prefix}: auc is undefined"
    ):
        env.evaluate(runtime)
    assert not env.report_exists()


def test_an_endpoint_error_names_the_endpoint_and_rows(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(
        EvaluationError,
        match=rf"endpoint {env.test_endpoint} variant {CHALLENGER_VARIANT} \(test rows 1-10\): InvokeEndpoint "
        r"failed: ValidationException",
    ) as raised:
        env.evaluate(FakeRuntime(env.test_endpoint, {}), batch_size=10)
    assert isinstance(raised.value.__cause__, ClientError)


def test_a_short_response_is_a_row_count_mismatch(env: Env, data: tuple[np.ndarray, np.ndarray]) -> None:
    for style in ("container", "lines"):
        runtime = env.runtime(strong_rule, style=style, short_calls=frozenset({1}))

        with pytest.raises(
            EvaluationError,
            match=rf"endpoint {env.test_endpoint} variant {CHALLENGER_VARIANT} \(test rows 11-20\): row count "
            r"mismatch: sent 10 row\(s\) "
            r"expecting 1 value\(s\) each, got (9 prediction line\(s\) of 1|1 prediction line\(s\) of 9) value",
        ):
            env.evaluate(runtime, batch_size=10)


# --- parse_predictions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "width", "expected"),
    [
        ("0.1\n0.2\n0.3\n", 1, [0.1, 0.2, 0.3]),
        ("0.1,0.2,0.3", 1, [0.1, 0.2, 0.3]),
        ("[0.1, 0.2, 0.7],[0.3, 0.3, 0.4],[1.0, 0.0, 0.0]", 3, [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1, 0, 0]]),
        ("[0.1, 0.2, 0.7]\n[0.3, 0.3, 0.4]\n[1.0, 0.0, 0.0]\n", 3, [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1, 0, 0]]),
        ("0.1,0.2,0.7\r\n0.3,0.3,0.4\r\n1,0,0\r\n", 3, [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1, 0, 0]]),
        ("[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1, 0, 0]]", 3, [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1, 0, 0]]),
    ],
)
def test_parse_predictions_accepts_the_shapes_endpoints_answer_with(body: str, width: int, expected: list) -> None:
    assert parse_predictions(body, 3, width, "endpoint e").tolist() == expected


@pytest.mark.parametrize(
    ("body", "width", "message"),
    [
        ("", 1, r"endpoint e: the response is empty; expected 3 prediction\(s\)"),
        ("0.1\n0.2\n", 1, r"endpoint e: row count mismatch: sent 3 row\(s\) expecting 1 value\(s\) each, got 2"),
        ("0.1,0.9\n0.2,0.8\n0.3,0.7\n", 3, r"row count mismatch: .* got 3 prediction line\(s\) of 2 value\(s\)"),
        ("0.1\nabc\n0.3", 1, r"endpoint e: prediction 2 holds 'abc', which is not a number"),
        ("0.1\nnan\n0.3", 1, r"endpoint e: prediction 2 is 'nan', not a finite number"),
    ],
)
def test_parse_predictions_refuses_what_does_not_fit(body: str, width: int, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        parse_predictions(body, 3, width, "endpoint e")


# --- the handler ------------------------------------------------------------------------


@pytest.fixture
def evaluate_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")  # the handler must ignore it
    return load_handler("lambdas/evaluate/app.py")


def test_the_handler_wires_settings_and_clients(
    stack: Any,
    env: Env,
    data: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    evaluate_module: Any,
) -> None:
    set_function_environment(monkeypatch, stack, "EvaluateFunction")
    runtime = env.runtime(strong_rule, weak_rule)
    settings = config.load_settings(evaluate_module.REQUIRED_SETTINGS)
    monkeypatch.setattr(
        evaluate_module,
        "dependencies",
        lambda: Evaluator(settings=settings, session=env.session, runtime_client=runtime, s3_client=env.s3),
    )
    log = io.StringIO()
    monkeypatch.setattr(evaluate_module.logger.registered_handler, "stream", log)
    run = env.run()

    payload = {"run": run, "endpoint_name": env.test_endpoint, "champion": env.champion}
    result = evaluate_module.handler(payload, FakeLambdaContext())

    assert set(result) == OUTPUT_KEYS
    assert result["production"]["endpoint"] == env.production  # from the payload's champion
    assert {(call["EndpointName"], call["TargetVariant"]) for call in runtime.calls} == {
        (env.test_endpoint, CHALLENGER_VARIANT),
        (env.test_endpoint, CHAMPION_VARIANT),
    }
    report, _ = env.report()
    assert report["value"] == result["value"]
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    [evaluated] = [record for record in records if record["message"] == "model evaluated"]
    assert (evaluated["run_id"], evaluated["endpoint"]) == (RUN_ID, env.test_endpoint)
    assert (evaluated["service"], evaluated["passed"]) == ("stepml-evaluate", True)
    # POWERTOOLS_LOGGER_LOG_EVENT is on, yet the payload is not logged.
    assert "hyperparameters" not in log.getvalue() and "incoming/churn" not in log.getvalue()


def test_the_handler_refuses_a_bad_payload(
    stack: Any, env: Env, monkeypatch: pytest.MonkeyPatch, evaluate_module: Any
) -> None:
    set_function_environment(monkeypatch, stack, "EvaluateFunction")
    run = env.run()
    run["paths"] = {**run["paths"], "evaluation": "s3://elsewhere/evaluation/churn/x/"}

    with pytest.raises(EvaluationError, match=r"field 'run.paths.evaluation' 's3://elsewhere/.*' is not under s3://"):
        evaluate_module.handler({"run": run, "endpoint_name": env.test_endpoint}, FakeLambdaContext())
    with pytest.raises(EvaluationError, match=r"^Evaluate payload: .*field 'run.paths': Field required.*"):
        evaluate_module.handler({"run": {"run_id": RUN_ID}}, FakeLambdaContext())
    # A test endpoint's name, or the Batch Transform jobs that scored the split (evaluation_batch).
    with pytest.raises(EvaluationError, match=r"^Evaluate payload: give either endpoint_name .* or scoring .*\)$"):
        evaluate_module.handler({"run": env.run()}, FakeLambdaContext())
    with pytest.raises(EvaluationError, match=r"^Evaluate payload: field 'champion': .*needs endpoint, model$"):
        champion = {"in_service": True, "endpoint_config": "c"}
        evaluate_module.handler({"run": env.run(), "endpoint_name": "e", "champion": champion}, FakeLambdaContext())


def test_the_handler_needs_its_environment(monkeypatch: pytest.MonkeyPatch, evaluate_module: Any) -> None:
    monkeypatch.delenv("STEPML_ARTIFACT_BUCKET", raising=False)

    with pytest.raises(ConfigError, match="STEPML_ARTIFACT_BUCKET is missing or empty"):
        evaluate_module.handler({"run": {}, "endpoint_name": "e"}, FakeLambdaContext())
