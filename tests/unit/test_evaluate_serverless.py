# ruff: noqa: F811 - the fixtures imported from test_evaluate are parameters here
"""Evaluate on a serverless test endpoint: AWS serves no inference pipeline serverless, so the
endpoint serves the XGBoost container alone and Evaluate applies the preprocessing itself, with
the preprocessor script's own functions over the run's encoding.json. The rows it sends must be
exactly what the pipeline's preprocessor container would have handed XGBoost."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from stepml import preprocessor_script
from stepml.evaluation import CHALLENGER_VARIANT, EvaluationError
from tests.helpers import FakeLambdaContext, set_function_environment
from tests.unit.test_evaluate import Clock, Env, env, evaluate_module  # noqa: F401 - fixtures used by name
from tests.unit.test_preprocessor_script import ENCODING

EVALUATE = {"preprocessing": "evaluate"}
HEADER = "churned,age,income,plan,region"
#: Raw rows as the Glue job keeps them in test/: a blank number, an unknown category, a blank
#: category with a missing-value code (plan) and one without (region).
RAW_ROWS = [
    "52,7000.25,pro,south",
    ",,enterprise,",
    "30,1e3,,north",
    "45,,basic,south",
]
LABELS = [1, 0, 1, 0]


class RecordingRuntime:
    """sagemaker-runtime for an XGBoost container alone: records each body, answers one score per line."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        lines = request["Body"].decode("utf-8").split("\n")
        # A rule of the encoded rows: an imputed income (the median) scores low.
        scores = ",".join(str(0.2 if line.split(",")[1] == "5000.5" else 0.9) for line in lines)
        return {"Body": io.BytesIO(scores.encode("utf-8")), "ContentType": "text/csv"}

    def sent_rows(self) -> list[str]:
        return [row for call in self.calls for row in call["Body"].decode("utf-8").split("\n")]


def _container_answer(tmp_path: Any, rows: list[str]) -> list[str]:
    """What the pipeline's preprocessor container answers for ``rows``: the script's hooks, in order."""
    (tmp_path / preprocessor_script.ENCODING_FILE).write_text(json.dumps(ENCODING))
    model = preprocessor_script.model_fn(str(tmp_path))
    data = preprocessor_script.input_fn("\n".join(rows).encode("utf-8"), "text/csv")
    body, content_type = preprocessor_script.output_fn(preprocessor_script.predict_fn(data, model), "text/csv")
    assert content_type == "text/csv"
    return body.splitlines()


def _put(env: Env, rows: list[str], labels: list[int], encoding: dict[str, Any] | None = ENCODING) -> None:
    lines = [HEADER, *(f"{label},{row}" for label, row in zip(labels, rows, strict=True))]
    env.put_test_split("\n".join(lines) + "\n")
    if encoding is not None:
        bucket, key = env.paths["encoding"].removeprefix("s3://").split("/", 1)
        env.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(encoding).encode("utf-8"))


def test_serverless_evaluate_sends_xgboost_the_rows_the_preprocessor_script_makes(env: Env, tmp_path: Any) -> None:
    _put(env, RAW_ROWS, LABELS)
    runtime = RecordingRuntime()

    result = env.evaluate(runtime, test_serving=EVALUATE)

    assert (
        runtime.sent_rows()
        == _container_answer(tmp_path, RAW_ROWS)
        == [
            "52.0,7000.25,2,1",
            "41.0,5000.5,,",  # the medians; 'enterprise' and a blank region have no code: missing to XGBoost
            "30.0,1000.0,0,0",  # a blank plan is the missing-value category's code
            "45.0,5000.5,1,1",
        ]
    )
    assert [call["TargetVariant"] for call in runtime.calls] == [CHALLENGER_VARIANT]
    assert (result["rows"], result["value"]) == (4, 1.0)
    report, _ = env.report()
    assert (report["preprocessing"], report["test_model_name"]) == ("evaluate", env.names["test_model"])
    assert report["model_name"] == env.names["model"]  # what the run registers and deploys: the pipeline


@pytest.mark.parametrize("serving", [None, {"preprocessing": "endpoint"}])
def test_the_inference_pipeline_gets_the_raw_rows_as_they_are(env: Env, serving: Any) -> None:
    _put(env, RAW_ROWS, LABELS)
    runtime = RecordingRuntime()

    env.evaluate(runtime, test_serving=serving)

    assert runtime.sent_rows() == RAW_ROWS
    report, _ = env.report()
    assert (report["preprocessing"], report["test_model_name"]) == ("endpoint", env.names["model"])


def test_a_row_the_preprocessor_refuses_fails_the_evaluation_naming_it(env: Env) -> None:
    _put(env, [RAW_ROWS[0], "abc,1,pro,south"], [1, 0])
    runtime = RecordingRuntime()

    with pytest.raises(EvaluationError) as error:
        env.evaluate(runtime, test_serving=EVALUATE)

    assert str(error.value) == (
        f"test split {env.paths['test']}: the preprocessing refuses it (400): row 2, column 1 (age): 'abc' is not a "
        "number (numeric feature)"
    )
    assert runtime.calls == []


def test_evaluate_needs_the_runs_encoding_to_preprocess(env: Env) -> None:
    _put(env, RAW_ROWS, LABELS, encoding=None)
    run = env.run()

    with pytest.raises(EvaluationError) as error:
        env.evaluate(RecordingRuntime(), run, test_serving=EVALUATE)
    assert str(error.value).startswith(f"encoding {env.paths['encoding']}: cannot read it: ")

    run["paths"] = {key: value for key, value in run["paths"].items() if key != "encoding"}
    with pytest.raises(EvaluationError, match=r"^Evaluate payload: field 'run.paths.encoding' is missing; "):
        env.evaluate(RecordingRuntime(), run, test_serving=EVALUATE)

    with pytest.raises(EvaluationError, match=r"field 'serving.preprocessing' is 'container', not 'endpoint' or"):
        env.evaluate(RecordingRuntime(), run, test_serving={"preprocessing": "container"})


def test_a_serverless_test_endpoint_has_no_champion_variant(env: Env) -> None:
    _put(env, RAW_ROWS, LABELS)

    with pytest.raises(EvaluationError, match=r"'serving' says Evaluate preprocesses .* but 'champion' is in service"):
        env.evaluate(RecordingRuntime(), champion=env.champion, test_serving=EVALUATE)


def test_the_handler_takes_the_mode_from_its_payload(
    stack: Any, env: Env, monkeypatch: pytest.MonkeyPatch, evaluate_module: Any, tmp_path: Any
) -> None:
    from stepml import config
    from stepml.evaluation import Evaluator

    set_function_environment(monkeypatch, stack, "EvaluateFunction")
    _put(env, RAW_ROWS, LABELS)
    runtime = RecordingRuntime()
    settings = config.load_settings(evaluate_module.REQUIRED_SETTINGS)
    monkeypatch.setattr(
        evaluate_module,
        "dependencies",
        lambda: Evaluator(settings=settings, session=env.session, runtime_client=runtime, s3_client=env.s3),
    )
    payload = {"run": env.run(), "endpoint_name": env.test_endpoint, "champion": {"in_service": False}}

    evaluate_module.handler({**payload, "serving": EVALUATE}, FakeLambdaContext())
    assert runtime.sent_rows() == _container_answer(tmp_path, RAW_ROWS)

    with pytest.raises(EvaluationError, match=r"^Evaluate payload: field 'serving.preprocessing': Input should be"):
        evaluate_module.handler({**payload, "serving": {"preprocessing": "container"}}, FakeLambdaContext())
