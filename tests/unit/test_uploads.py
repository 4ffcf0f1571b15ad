"""Uploads ResolveRun refuses from the S3 event alone, and how such a failure is recorded;
plus the bad-input corpus in tests/data/bad is complete and documented."""

from __future__ import annotations

import json

import boto3
import pytest

from stepml.lineage import from_dynamo, record_failure, resolve_run
from stepml.uploads import SUPPORTED_EXTENSIONS, BadUploadError, check_upload
from tests.helpers import REPO_ROOT, load_handler

CORPUS = REPO_ROOT / "tests/data/bad"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:"


def _upload(uri: str, size: int) -> dict[str, object]:
    return {"uri": uri, "size": size}


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("data.xlsx", 10, "unsupported file type: 'data.xlsx' has extension '.xlsx'; upload a .csv or .parquet file"),
        ("data.csv.gz", 10, "has extension '.gz'"),
        ("README", 10, "'README' has no extension"),
        ("data.csv", 0, "the file is empty (0 bytes)"),
    ],
)
def test_unreadable_uploads_are_refused_with_the_object_named(name, size, message):
    uri = f"s3://uploads/incoming/churn/{name}"
    with pytest.raises(BadUploadError) as caught:
        check_upload(_upload(uri, size))
    assert str(caught.value).startswith(f"{uri}: ") and message in str(caught.value)


@pytest.mark.parametrize("name", ["data.csv", "DATA.CSV", "part.parquet"])
def test_readable_uploads_pass(name):
    check_upload(_upload(f"s3://uploads/incoming/churn/{name}", 1))


def test_the_glue_job_reads_the_same_file_types():
    assert load_handler("glue_jobs/preprocess.py").SUPPORTED_EXTENSIONS == SUPPORTED_EXTENSIONS


def test_the_corpus_is_documented_file_by_file():
    files = sorted(p.name for p in CORPUS.iterdir() if p.name not in ("README.md", "expected.json"))
    assert files == sorted(EXPECTED)
    assert len(files) >= 12
    readme = (CORPUS / "README.md").read_text()
    for name in files:
        assert f"| `{name}` |" in readme, name
    assert {case["step"] for case in EXPECTED.values()} == {"resolve", "preprocess"}


# --- a failure in ResolveRun is recorded in lineage ----------------------------------------


@pytest.fixture
def env(resolve_run_env):
    return resolve_run_env


def _event(env, name: str) -> dict[str, object]:
    return env.upload(f"incoming/churn/{name}", (CORPUS / name).read_bytes())


def _resolve(env, event, execution):
    return resolve_run(
        event,
        execution,
        table=env["table"],
        s3_client=env["s3"],
        sfn_client=boto3.client("stepfunctions"),
        settings=env["settings"],
    )


def _caught(event: dict[str, object], exc: Exception) -> dict[str, object]:
    """The state the Catch of "Resolve run" hands to "Record failure": the input plus $.error and $.failed_step."""
    cause = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": ['  File "app.py"']}
    return {**event, "error": {"Error": type(exc).__name__, "Cause": json.dumps(cause)}, "failed_step": "resolve"}


@pytest.mark.parametrize("name", [name for name, case in EXPECTED.items() if case["step"] == "resolve"])
def test_a_refused_upload_fails_its_run_in_lineage_and_the_alert_says_why(env, name):
    event = _event(env, name)
    with pytest.raises(BadUploadError) as caught:
        _resolve(env, event, EXECUTION + "one")
    failure = record_failure(
        _caught(event, caught.value),
        EXECUTION + "one",
        table=env["table"],
        sagemaker_client=None,
        settings=env["settings"],
    )
    run_id = failure["run_id"]
    assert failure["step"] == "resolve" and failure["test_endpoint"] is None
    for fragment in EXPECTED[name]["message"]:
        assert fragment in failure["cause"] and fragment in failure["message"]
    assert "failed at Resolve run: BadUploadError" in failure["subject"] and run_id in failure["subject"]
    assert "stackTrace" not in failure["message"] and "app.py" not in failure["message"]
    run = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "RUN"})["Item"])
    assert run["status"] == "FAILED" and run["failed_step"] == "resolve" and run["ended_at"]
    assert EXPECTED[name]["message"][0] in run["error"]["cause"]
    step = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "STEP#resolve"})["Item"])
    assert step["status"] == "FAILED" and step["error"]["error"] == "BadUploadError"


def test_a_duplicate_that_fails_does_not_fail_the_run_another_execution_owns(env):
    event = _event(env, "one-row.csv")
    run_id = _resolve(env, event, EXECUTION + "owner")["run"]["run_id"]
    failure = record_failure(
        {**event, "error": {"Error": "ValueError", "Cause": "x"}, "failed_step": "resolve"},
        EXECUTION + "duplicate",
        table=env["table"],
        sagemaker_client=None,
        settings=env["settings"],
    )
    assert failure["run_id"] == run_id
    run = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "RUN"})["Item"])
    assert run["status"] == "RUNNING" and "failed_step" not in run
