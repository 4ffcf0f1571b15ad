"""Duplicates and concurrency on the local cloud.

The same S3 event delivered three times and the same bytes uploaded again are one run (one
Glue run, one training job, one approval email); eight different uploads at once are eight
runs that share nothing. One local cloud serves the module; every upload happens at the
start so the local Glue engine (two Spark jobs at a time) is never idle.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from stepml.cli.runs import approve_link
from stepml.local.events import deliver_to_rules, s3_object_created_event
from stepml.sample_data import churn_csv
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e
ROWS = 800
ACCOUNT, REGION = "123456789012", "us-east-1"
DUPLICATED = "dup"
MANY = "many"
PARALLEL = 8


@pytest.fixture(scope="module")
def uploads(pipeline):
    pipeline.onboard(DUPLICATED, promote_only_if_better=False)
    # The gate turns these runs down at once: their test endpoints do not wait for anyone.
    pipeline.onboard(MANY, threshold=0.99, promote_only_if_better=False)
    body = churn_csv(ROWS, seed=41)
    original = pipeline.upload(DUPLICATED, "data.csv", body)
    event = s3_object_created_event(
        ACCOUNT,
        REGION,
        original["bucket"],
        original["key"],
        len(body),
        original["etag"],
        original["version"],
    )
    for _ in range(2):  # EventBridge delivers at least once: the same event twice more
        assert deliver_to_rules(ACCOUNT, REGION, event)
    # Once the first upload's run exists (it runs for a while yet), the same bytes again.
    wait_until(lambda: pipeline.run_record(original["run_id"]).get("RUN"))
    copy = pipeline.upload(DUPLICATED, "data.csv", body)
    with ThreadPoolExecutor(PARALLEL) as pool:
        many = list(
            pool.map(
                lambda index: pipeline.upload(MANY, f"part-{index}.csv", churn_csv(ROWS, seed=100 + index)),
                range(PARALLEL),
            )
        )
    return {"original": original, "copy": copy, "body": body, "many": many}


def test_the_same_event_three_times_and_an_unchanged_reupload_are_one_run(pipeline, uploads):
    original, copy = uploads["original"], uploads["copy"]
    run_id = original["run_id"]
    assert copy["version"] != original["version"] and copy["etag"] == original["etag"]

    email = pipeline.wait_for_approval_email(run_id)
    status, _ = approve_link(email.links[0], decision="reject", comment="duplicates checked")
    assert status == 200
    records = pipeline.wait_for_status(run_id, ("REJECTED", "FAILED", "SUCCEEDED"))
    assert records["RUN"]["status"] == "REJECTED"
    # The two repeated events and the re-upload's execution each found the run already claimed.
    assert len(records["RUN"]["duplicate_executions"]) == 3, records["RUN"]
    assert records["RUN"]["duplicates"] == [copy["run_id"]]

    duplicate = pipeline.run_record(copy["run_id"])["RUN"]
    assert duplicate["status"] == "DUPLICATE" and duplicate["duplicate_of"] == run_id
    assert duplicate["input"]["version_id"] == copy["version"]

    # Once the run has ended, the same bytes again are still the same run.
    late = pipeline.upload(DUPLICATED, "data.csv", uploads["body"])
    wait_until(lambda: pipeline.run_record(late["run_id"]).get("RUN", {}).get("status") == "DUPLICATE")

    def ended() -> list[dict]:
        found = pipeline.executions_for(original["key"])
        return found if len(found) == 5 and all(e["status"] != "RUNNING" for e in found) else []

    assert [e["status"] for e in wait_until(ended)] == ["SUCCEEDED"] * 5

    assert len(pipeline.glue_runs(run_id)) == 1
    assert pipeline.glue_runs(copy["run_id"]) == pipeline.glue_runs(late["run_id"]) == []
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1"]
    assert pipeline.training_jobs(copy["run_id"]) == pipeline.training_jobs(late["run_id"]) == []
    assert len([m for m in pipeline.cloud.outbox.messages() if f"Approve {DUPLICATED} model" in m.subject]) == 1
    final = pipeline.run_record(run_id)["RUN"]
    assert final["duplicates"] == [copy["run_id"], late["run_id"]] and len(final["duplicate_executions"]) == 4


def test_eight_uploads_at_once_are_eight_runs_that_share_nothing(pipeline, uploads):
    many = uploads["many"]
    assert len({u["run_id"] for u in many}) == PARALLEL
    runs = [pipeline.wait_for_status(u["run_id"], ("REJECTED_BY_GATE", "FAILED", "SUCCEEDED")) for u in many]
    for upload, records in zip(many, runs, strict=True):
        run = records["RUN"]
        assert run["status"] == "REJECTED_BY_GATE", run
        assert run["input"]["key"] == upload["key"] and run["input"]["version_id"] == upload["version"]
        for step in ("preprocess", "train", "evaluate"):
            assert records[f"STEP#{step}"]["status"] == "SUCCEEDED", (run["run_id"], step)
        glue_runs = pipeline.glue_runs(run["run_id"])
        assert len(glue_runs) == 1 and glue_runs[0]["Arguments"]["--input_uri"] == run["input"]["uri"]
        assert records["STEP#preprocess"]["job"]["run_id"] == glue_runs[0]["Id"]
        assert pipeline.training_jobs(run["run_id"]) == [run["names"]["training_job"]]
        assert records["STEP#train"]["outputs"]["model_data"].startswith(run["paths"]["model_output"])
        assert records["STEP#evaluate"]["inputs"]["test"] == run["paths"]["test"]

    def distinct(values: list) -> bool:
        return len(set(values)) == PARALLEL

    assert distinct([r["STEP#preprocess"]["job"]["run_id"] for r in runs])
    assert distinct([r["STEP#preprocess"]["outputs"]["fingerprint"] for r in runs])
    assert distinct([r["STEP#train"]["outputs"]["model_data"] for r in runs])
    for field in ("training_job", "model", "test_endpoint", "test_endpoint_config"):
        assert distinct([r["RUN"]["names"][field] for r in runs]), field
    for field in ("processed", "model_output", "evaluation"):
        assert distinct([r["RUN"]["paths"][field] for r in runs]), field
    prefixes = [r["RUN"]["paths"]["processed"] for r in runs]
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes), "no prefix inside another"
    endpoints = pipeline.client("sagemaker").list_endpoints(NameContains=f"-{MANY}-")["Endpoints"]
    assert endpoints == [], "every test endpoint is deleted"
