"""``stepml monitor``: an endpoint's newest report, or its captured data analysed now, as text, JSON and HTML."""

from __future__ import annotations

import json

import boto3
import pytest

from stepml.cli.main import main
from stepml.monitoring import report
from stepml.monitoring.analysis import analyze
from tests.unit.test_lineage_queries import PRODUCTION, complete_run, env  # noqa: F401 (env is a fixture)
from tests.unit.test_monitoring_analysis import _baseline, capture_lines, sample


def _put(s3, uri: str, body: bytes) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
def monitored(env):  # noqa: F811 (the fixture imported above)
    """A deployed model whose run recorded a baseline, on a stack as `sam deploy` leaves it."""
    outputs = {"LineageTableName": env["settings"].lineage_table, "ArtifactBucketName": env["settings"].artifact_bucket}
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    with pytest.warns(UserWarning, match="WaitConditionHandle"):
        boto3.client("cloudformation").create_stack(StackName="stepml-dev", TemplateBody=json.dumps(template))
    run = complete_run(env, "m.csv", b"m\n")["run"]
    statistics, constraints = _baseline(sample(2000))
    _put(env["s3"], run["paths"]["statistics"], json.dumps(statistics).encode())
    _put(env["s3"], run["paths"]["constraints"], json.dumps(constraints).encode())
    return {"env": env, "run": run, "statistics": statistics, "constraints": constraints}


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["monitor", PRODUCTION, *args, "--stack-name", "stepml-dev"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_without_a_report_the_newest_captured_data_is_analysed_and_drawn(monitored, capsys, tmp_path):
    capture = f"s3://{monitored['env']['settings'].artifact_bucket}/data-capture/churn/{PRODUCTION}/"
    # Raw rows, as the endpoint's inference pipeline takes them and capture records them.
    rows = sample(300, shift=25)
    _put(monitored["env"]["s3"], f"{capture}AllTraffic/2026/03/02/09/00-00-000-a.jsonl", b"")
    body = "\n".join(capture_lines(rows, per_request=10)).encode()
    _put(monitored["env"]["s3"], f"{capture}AllTraffic/2026/03/02/10/00-00-000-b.jsonl", body)
    page = tmp_path / "report.html"
    code, out, err = _cli(capsys, "--capture", capture, "--html", str(page))
    assert code == 0, err
    assert "no monitoring report under" in err and "analysing the newest captured data now" in err
    lines = out.splitlines()
    assert any(line.startswith("! age") and "baseline |" in line for line in lines)
    assert any(line.startswith("  plan") for line in lines)
    assert "1 violation(s):" in lines
    assert any(line.startswith("  age: baseline_drift_check: Baseline drift distance: ") for line in lines)
    text = page.read_text()
    assert text.count("<svg") == 3 and "baseline_drift_check" in text and "<script" not in text


def test_the_newest_report_is_shown_as_json(monitored, capsys):
    s3 = monitored["env"]["s3"]
    reports = f"s3://{monitored['env']['settings'].artifact_bucket}/monitoring/{PRODUCTION}/"
    for hour, shift in (("09", 25), ("10", 0)):
        found = analyze(monitored["statistics"], monitored["constraints"], capture_lines(sample(200, shift=shift)))
        _put(s3, f"{reports}{hour}/statistics.json", json.dumps(found.statistics).encode())
        _put(s3, f"{reports}{hour}/constraint_violations.json", json.dumps(found.violations).encode())
    code, out, err = _cli(capsys, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["data"] == f"{reports}10/" and shown["violations"] == {"violations": []}
    assert shown["model"] == monitored["run"]["names"]["model"]


def test_missing_captured_data_is_one_line(monitored, capsys):
    capture = f"s3://{monitored['env']['settings'].artifact_bucket}/data-capture/none/"
    code, _, err = _cli(capsys, "--now", "--capture", capture)
    assert code == 1 and err == f"error: no captured data under {capture}\n"


def test_views_bin_numbers_by_the_baseline_buckets_and_list_categories():
    statistics, constraints = _baseline(sample(2000))
    found = analyze(statistics, constraints, capture_lines(sample(300, shift=25)))
    age, _, plan = report.feature_views(statistics, found.statistics, found.violations)
    assert len(age.labels) == 12 and age.labels[0].startswith("< ") and age.labels[-1].startswith("> ")
    assert sum(age.baseline) == pytest.approx(1) and sum(age.current) == pytest.approx(1, abs=0.01)
    assert age.current[-1] > age.baseline[-1]  # the shifted ages spill over the baseline's maximum
    assert [v["constraint_check_type"] for v in age.violations] == ["baseline_drift_check"]
    assert plan.labels == ["basic", "pro", "team"] and not plan.violations
