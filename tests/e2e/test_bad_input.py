"""Every broken upload of tests/data/bad fails before training, says why, and changes nothing.

The module uploads the whole corpus at once to one local cloud (so the Glue runs overlap)
and waits for every run to end; each test then checks one guarantee for every file: the
run FAILED at the expected step with the message in lineage, the alert email carries it,
no training job and no endpoint exist for the run, and the uploaded object is unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e

CORPUS = REPO_ROOT / "tests/data/bad"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())
FILES = sorted(EXPECTED)


def dataset_of(name: str) -> str:
    """``churn``, or for a file with config changes its own dataset (``churn-`` and the file's stem)."""
    return f"churn-{name.rsplit('.', 1)[0].lower()}" if "config" in EXPECTED[name] else "churn"


#: Thirteen of the files need a Glue run each; the local Glue engine runs two at a time.
WAIT_SECONDS = 420


@pytest.fixture(scope="module")
def outcomes(pipeline) -> dict[str, dict[str, Any]]:
    """Upload every file at once, then wait until every run has ended."""
    for name in FILES:
        pipeline.onboard(dataset_of(name), **EXPECTED[name].get("config", {}))
    uploads = {name: pipeline.upload(dataset_of(name), name, (CORPUS / name).read_bytes()) for name in FILES}
    deadline = time.monotonic() + WAIT_SECONDS
    records: dict[str, dict[str, Any]] = {}
    while len(records) < len(uploads) and time.monotonic() < deadline:
        for name, upload in uploads.items():
            if name not in records:
                found = pipeline.run_record(upload["run_id"])
                if found.get("RUN", {}).get("status") not in (None, "RUNNING"):
                    records[name] = found
        time.sleep(1)
    unfinished = sorted(set(uploads) - set(records))
    assert not unfinished, f"runs still going after {WAIT_SECONDS} s: {unfinished}"
    return {name: {"upload": uploads[name], "records": records[name]} for name in FILES}


@pytest.fixture(scope="module")
def alerts(pipeline, outcomes) -> dict[str, Any]:
    """The alert email of each file's run (the alert is sent after lineage is written)."""
    return {name: pipeline.wait_for_email(f"Run {outcomes[name]['upload']['run_id']} failed", 60) for name in FILES}


@pytest.mark.parametrize("name", FILES)
def test_lineage_says_failed_at_the_step_with_the_message(outcomes, name):
    records = outcomes[name]["records"]
    run, step = records["RUN"], EXPECTED[name]["step"]
    assert run["status"] == "FAILED" and run["failed_step"] == step, run
    assert records[f"STEP#{step}"]["status"] == "FAILED"
    cause = records[f"STEP#{step}"]["error"]["cause"]
    assert cause == run["error"]["cause"]
    assert f"incoming/{dataset_of(name)}/{name}" in cause
    for fragment in EXPECTED[name]["message"]:
        assert fragment in cause
    assert not {"STEP#train", "STEP#evaluate", "STEP#deploy"} & set(records), "nothing after preprocessing ran"


@pytest.mark.parametrize("name", FILES)
def test_the_alert_email_names_the_run_step_and_problem(alerts, outcomes, name):
    email, run_id = alerts[name], outcomes[name]["upload"]["run_id"]
    assert email.to == "alerts@example.com"
    title = "Resolve run" if EXPECTED[name]["step"] == "resolve" else "Preprocess data"
    assert title in email.subject and f"Step:      {title}" in email.body
    assert f"Run:       {run_id}" in email.body
    for fragment in EXPECTED[name]["message"]:
        assert fragment in email.body
    assert "Traceback" not in email.body and "stackTrace" not in email.body


@pytest.mark.parametrize("name", FILES)
def test_no_training_job_and_no_endpoint_exist_for_the_run(pipeline, outcomes, name):
    run_id = outcomes[name]["upload"]["run_id"]
    sagemaker = pipeline.client("sagemaker")
    assert sagemaker.list_training_jobs(NameContains=run_id)["TrainingJobSummaries"] == []
    assert sagemaker.list_models(NameContains=run_id)["Models"] == []
    assert sagemaker.list_endpoints(NameContains=run_id)["Endpoints"] == []
    assert pipeline.wait_for_execution_end(outcomes[name]["upload"]["key"]) == "FAILED"


@pytest.mark.parametrize("name", FILES)
def test_the_uploaded_object_is_unchanged(pipeline, outcomes, name):
    upload = outcomes[name]["upload"]
    s3 = pipeline.client("s3")
    head = s3.head_object(Bucket=upload["bucket"], Key=upload["key"])
    assert head["ETag"] == upload["etag"] and head["VersionId"] == upload["version"]
    versions = s3.list_object_versions(Bucket=upload["bucket"], Prefix=upload["key"])
    assert [v["VersionId"] for v in versions.get("Versions", []) if v["Key"] == upload["key"]] == [upload["version"]]
    assert s3.get_object(Bucket=upload["bucket"], Key=upload["key"])["Body"].read() == (CORPUS / name).read_bytes()


def test_the_stack_has_no_endpoint_and_ran_no_training_at_all(pipeline, outcomes):
    sagemaker = pipeline.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
