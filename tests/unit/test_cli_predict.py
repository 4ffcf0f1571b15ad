"""`stepml predict`: one prediction per input row, labelled by the classes lineage recorded for the model.

The endpoint answers through moto's SageMaker runtime (the HTTP answer queued as the XGBoost
container writes it); the stack is found through CloudFormation (--stack-name) as for a deployed one.
"""

from __future__ import annotations

import json

import boto3
import pytest

from stepml.cli.main import main
from stepml.local.cloudformation import register_stack
from stepml.utils import csv_line

ROWS = "tenure,charges\n1,2\n3,4\n5,6\n"
CONFIGS = {
    "ep-binary": {"problem_type": "binary", "classes": ["no", "yes"]},
    "ep-binary01": {"problem_type": "binary", "classes": None},
    "ep-multi": {"problem_type": "multiclass", "classes": ["a", "b", "c"]},
    "ep-regression": {"problem_type": "regression", "classes": None},
}


@pytest.fixture
def deployed(stack):
    table_name = stack.physical_id("LineageTable")
    register_stack(stack, {"LineageTableName": table_name}, "{}")
    table = boto3.resource("dynamodb").Table(table_name)
    for number, (endpoint, config) in enumerate(CONFIGS.items()):
        run_id = f"churn-{number:012x}"
        table.put_item(Item={"pk": f"RUN#{run_id}", "sk": "RUN", "run_id": run_id, "config": config})
        table.put_item(
            Item={
                "pk": f"RUN#{run_id}",
                "sk": "STEP#deploy",
                "run_id": run_id,
                "gsi1pk": f"ENDPOINT#{endpoint}",
                "gsi1sk": f"RUN#{run_id}",
                "recorded_at": "2026-03-02T09:00:00.000Z",
                "inputs": {"model": f"model-{number}"},
            }
        )
    return stack


def _answer(body: str) -> None:
    """Queue the endpoint's next answer, as moto's SageMaker runtime replays it."""
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    sagemakerruntime_backends["123456789012"]["us-east-1"].results_queue.append((body, "text/csv", "AllTraffic", ""))


def _predict(tmp_path, capsys, endpoint, *extra):
    rows = tmp_path / "rows.csv"
    rows.write_text(ROWS)
    code = main(["predict", "--endpoint", endpoint, str(rows), "--stack-name", "stepml-local", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_binary_predictions_are_one_entry_per_row_with_score_and_label(deployed, tmp_path, capsys):
    _answer("0.2,0.5,0.9")  # the container's CSV answer: one line, one probability per row
    code, out, err = _predict(tmp_path, capsys, "ep-binary", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["problem_type"] == "binary" and answer["model"] == "model-0"
    assert answer["predictions"] == [
        {"row": 1, "label": "no", "score": 0.2, "features": ["1", "2"]},
        {"row": 2, "label": "yes", "score": 0.5, "features": ["3", "4"]},
        {"row": 3, "label": "yes", "score": 0.9, "features": ["5", "6"]},
    ]


def test_binary_without_classes_labels_rows_0_and_1(deployed, tmp_path, capsys):
    _answer("0.1\n0.7\n0.4\n")  # one per line, as with SAGEMAKER_BATCH
    code, out, err = _predict(tmp_path, capsys, "ep-binary01", "--json")
    assert code == 0, err
    assert [(p["label"], p["score"]) for p in json.loads(out)["predictions"]] == [(0, 0.1), (1, 0.7), (0, 0.4)]


def test_multiclass_predictions_name_the_most_likely_class_and_every_score(deployed, tmp_path, capsys):
    _answer("[0.1, 0.7, 0.2],[0.8, 0.1, 0.1],[0.2, 0.3, 0.5]")
    code, out, err = _predict(tmp_path, capsys, "ep-multi", "--json")
    assert code == 0, err
    predictions = json.loads(out)["predictions"]
    assert [p["label"] for p in predictions] == ["b", "a", "c"]
    assert predictions[0] == {
        "row": 1,
        "label": "b",
        "score": 0.7,
        "scores": {"a": 0.1, "b": 0.7, "c": 0.2},
        "features": ["1", "2"],
    }


def test_regression_predictions_are_one_value_per_row(deployed, tmp_path, capsys):
    _answer("1.5,2.5,3.5")
    code, out, err = _predict(tmp_path, capsys, "ep-regression", "--json")
    assert code == 0, err
    assert [{k: v for k, v in p.items() if k != "features"} for p in json.loads(out)["predictions"]] == [
        {"row": 1, "prediction": 1.5},
        {"row": 2, "prediction": 2.5},
        {"row": 3, "prediction": 3.5},
    ]


def test_text_output_is_one_line_per_row(deployed, tmp_path, capsys):
    _answer("0.2,0.5,0.9")
    code, out, _ = _predict(tmp_path, capsys, "ep-binary")
    assert code == 0 and out.splitlines() == ["no,0.2", "yes,0.5", "yes,0.9"]


def test_an_endpoint_lineage_does_not_know_gets_unlabelled_values_per_row(deployed, tmp_path, capsys):
    _answer("[0.1, 0.9],[0.6, 0.4],[0.5, 0.5]")
    code, out, err = _predict(tmp_path, capsys, "not-from-stepml", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["problem_type"] is None and "not in lineage" in err
    assert [{k: v for k, v in p.items() if k != "features"} for p in answer["predictions"]] == [
        {"row": 1, "scores": [0.1, 0.9]},
        {"row": 2, "scores": [0.6, 0.4]},
        {"row": 3, "scores": [0.5, 0.5]},
    ]


def test_an_answer_that_does_not_fit_the_rows_is_a_one_line_error(deployed, tmp_path, capsys):
    _answer("0.2,0.5")
    code, out, err = _predict(tmp_path, capsys, "ep-binary", "--json")
    assert code == 1 and out == ""
    assert err.startswith("error: endpoint ep-binary: row count mismatch: sent 3 row(s)") and err.count("\n") == 1


def test_raw_rows_are_sent_as_csv_and_shown_by_feature_name(deployed, tmp_path, capsys):
    """Categories as text, a blank for a missing value, a quoted comma: sent as the file has them;
    the first row is a header only when it names the dataset's features (lineage knows them)."""
    table = boto3.resource("dynamodb").Table(deployed.physical_id("LineageTable"))
    features = [{"name": "tenure", "type": "numeric"}, {"name": "plan", "type": "categorical"}]
    config = {"problem_type": "binary", "classes": ["no", "yes"], "features": features}
    table.put_item(Item={"pk": "RUN#churn-000000000000", "sk": "RUN", "run_id": "churn-000000000000", "config": config})
    _answer("0.2,0.8")
    rows = tmp_path / "raw.csv"
    rows.write_text('tenure,plan\n12,month-to-month\n,"pro, annual"\n')
    code = main(["predict", "--endpoint", "ep-binary", str(rows), "--stack-name", "stepml-local", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    predictions = json.loads(captured.out)["predictions"]
    assert [p["features"] for p in predictions] == [
        {"tenure": "12", "plan": "month-to-month"},
        {"tenure": "", "plan": "pro, annual"},
    ]
    # Sent as CSV again: the comma inside a category is quoted for the endpoint's preprocessor.
    assert csv_line(["", "pro, annual"]) == ',"pro, annual"'
