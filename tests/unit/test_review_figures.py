"""The review page's pictures: drawn from the evaluation report, read from S3 by the approval API."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import boto3
import numpy as np
import pytest

from stepml import evaluation_figures as ef
from stepml.approval_pages import review_page
from stepml.approval_records import ApprovalRecord
from stepml.review_figures import ReviewReportError, figure_sections, load_report
from tests.helpers import load_handler, set_function_environment
from tests.unit.test_approval_api import Api, assert_html
from tests.unit.test_approvals import approval_env

NASTY = 'plan <b>&"tier"'
REPORT_URI = "s3://artifacts/evaluation/churn/churn-3f2a9c1b7d4e/report.json"


def binary_report() -> dict[str, Any]:
    rng = np.random.default_rng(4)
    labels = (rng.random(400) > 0.5).astype(float)
    ours = np.clip(labels * 0.5 + rng.random(400) * 0.5, 0, 1)
    theirs = rng.random(400)
    return {
        "problem_type": "binary",
        "rows": 400,
        "production": {"endpoint": "stepml-dev-production", "metrics": {"auc": 0.5}},
        "confusion_matrix": {"labels": ["no", "yes"], "matrix": [[171, 29], [13, 187]]},
        "curves": {
            "challenger": ef.classification_curves("binary", labels, ours, ["no", "yes"]),
            "champion": ef.classification_curves("binary", labels, theirs, ["no", "yes"]),
        },
        "comparison": ef.comparison("binary", ours, theirs, ["no", "yes"]),
        "feature_importance": {
            "type": "gain",
            "features": [
                {"feature": NASTY, "gain": 8.5, "total_gain": 17.0, "weight": 2},
                {"feature": "tenure", "gain": 2.0, "total_gain": 8.0, "weight": 4},
            ],
        },
        "drift": {
            "rows": 400,
            "of_rows": 400,
            "violations": 1,
            "features": [
                {
                    "name": NASTY,
                    "kind": "String",
                    "labels": ["basic", "pro"],
                    "train": [0.7, 0.3],
                    "test": [0.2, 0.8],
                    "distance": 0.41,
                    "threshold": 0.1,
                    "violations": [{"feature_name": NASTY, "constraint_check_type": "baseline_drift_check"}],
                }
            ],
        },
    }


def svg_titles(page: str) -> list[str]:
    titles = []
    for markup in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        root = ET.fromstring(markup)  # each picture is well-formed XML on its own
        titles.append(root.find("{http://www.w3.org/2000/svg}title").text)
    return titles


def test_a_classification_report_draws_every_picture() -> None:
    page = figure_sections(binary_report())

    assert svg_titles(page) == [
        "ROC curve",
        "Precision-recall curve",
        "Confusion matrix",
        "Feature importance (gain)",
        "Class agreement with production",
        "Scores: this model against production",
        f"{NASTY}: distance 0.41 (baseline_drift_check)",
    ]
    for count in (171, 29, 13, 187):
        assert f">{count}</text>" in page and f"<td>{count}</td>" in page
    assert "<b>" not in page and "plan &lt;b&gt;&amp;&quot;tier&quot;" in page
    assert "They predict the same class for" in page and "stepml-dev-production" in page


def test_a_regression_report_draws_residuals_not_curves() -> None:
    rng = np.random.default_rng(2)
    actual = rng.random(300) * 10
    predicted = actual + rng.normal(0, 1, 300)
    report = {
        "problem_type": "regression",
        "rows": 300,
        "residuals": ef.residuals(actual, predicted),
        "confusion_matrix": None,
        "comparison": None,
        "feature_importance": {"unavailable": "lineage names no trained model artifact"},
        "drift": {"unavailable": "the run has no constraints.json baseline"},
    }
    page = figure_sections(report)

    assert svg_titles(page) == ["Residuals", "Residuals by prediction", "Predicted against actual"]
    assert "Feature importance: not available (lineage names no trained model artifact)." in page
    assert "Drift: not available (the run has no constraints.json baseline)." in page


def test_an_unreadable_report_leaves_the_form_and_says_why() -> None:
    record = ApprovalRecord.from_item(_record_item())
    page = review_page(record, sig="s", form_token="t", report=None, report_problem=f"{REPORT_URI}: cannot read it")

    assert f"The pictures are not available: {REPORT_URI}: cannot read it." in page
    assert 'value="approve"' in page and "<svg" not in page


def _record_item() -> dict[str, Any]:
    return {
        "approval_id": "a1",
        "status": "PENDING",
        "run_id": "churn-3f2a9c1b7d4e",
        "dataset": "churn",
        "metrics": {"auc": 0.91},
        "report_uri": REPORT_URI,
        "link_expires_at": 1_900_000_000,
    }


# --- reading the report ------------------------------------------------------------------------


@pytest.fixture
def s3(stack: Any) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="artifacts")
    return client


def test_load_report_reads_the_json_and_names_what_it_cannot_read(s3: Any) -> None:
    key = REPORT_URI.removeprefix("s3://artifacts/")
    with pytest.raises(ReviewReportError, match=f"^{re.escape(REPORT_URI)}: cannot read it: NoSuchKey$"):
        load_report(s3, REPORT_URI)
    s3.put_object(Bucket="artifacts", Key=key, Body=b"not json")
    with pytest.raises(ReviewReportError, match=f"^{re.escape(REPORT_URI)}: not JSON: Expecting value"):
        load_report(s3, REPORT_URI)
    with pytest.raises(ReviewReportError, match=r"^the approval names no evaluation report$"):
        load_report(s3, None)
    s3.put_object(Bucket="artifacts", Key=key, Body=json.dumps(binary_report()).encode())
    assert load_report(s3, REPORT_URI)["rows"] == 400


def test_the_review_page_draws_the_report_the_evaluation_wrote(
    s3: Any, stack: Any, monkeypatch: pytest.MonkeyPatch, mail_outbox: Any
) -> None:
    set_function_environment(monkeypatch, stack, "ApprovalApiFunction")
    module = load_handler("approval_api/app.py")
    env = approval_env(stack, mail_outbox)
    monkeypatch.setattr(module, "dependencies", lambda: env.decisions(now=None))
    api = Api(module, env)
    approval_id, sig = api.new_approval()

    page = assert_html(api.get(approval_id, sig), 200)
    assert f"The pictures are not available: {REPORT_URI}: cannot read it: NoSuchKey." in page
    assert 'value="approve"' in page  # no pictures never means no decision

    key = REPORT_URI.removeprefix("s3://artifacts/")
    s3.put_object(Bucket="artifacts", Key=key, Body=json.dumps(binary_report()).encode())
    page = assert_html(api.get(approval_id, sig), 200)
    assert "ROC curve" in svg_titles(page) and "Confusion matrix" in svg_titles(page)
    assert page.index("<h2>Pictures</h2>") < page.index('name="decision" value="approve"')
