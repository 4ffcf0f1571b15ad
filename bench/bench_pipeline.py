"""Benchmark: one whole pipeline run on the local cloud, with the numbers issue 3 asks for.

    .venv/bin/python bench/bench_pipeline.py --rows 50000

Prints: upload to approval email (s), approval to production InService (s), the steps' own
compute (Glue job, training job, Evaluate Lambda) and the orchestration overhead, i.e. the
wall time from upload to approval email minus that compute, as a share of the wall time.
This is a benchmark that prints numbers, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stepml.cli.runs import approve_link  # noqa: E402
from stepml.config import dataset_config_key  # noqa: E402
from stepml.lineage import make_run_id  # noqa: E402
from stepml.local.cloud import LocalCloud  # noqa: E402
from stepml.sample_data import churn_csv  # noqa: E402
from tests.helpers import local_cloud  # noqa: E402


def _client(cloud: LocalCloud, service: str):
    return cloud.client_factory(service)()


def _state_seconds(history: list[dict], names: tuple[str, ...]) -> float:
    """Seconds spent in the named states (entered to exited), summed."""
    entered: dict[str, float] = {}
    total = 0.0
    for event in history:
        if event["type"].endswith("StateEntered"):
            entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"].timestamp()
        elif event["type"].endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            if name in names and name in entered:
                total += event["timestamp"].timestamp() - entered[name]
    return total


def _compute_seconds(cloud: LocalCloud, outputs: dict, history: list[dict], until: float) -> dict[str, float]:
    """The steps' own work up to the approval email, as the services report it: the Glue job
    run, the training job and the Lambda tasks. What is left of the wall time is orchestration
    (rules, state transitions, polling, waits) and the test endpoint's start-up, which this
    benchmark counts against the pipeline rather than as compute."""
    glue = _client(cloud, "glue")
    run = next(
        job_run
        for job_name in glue.list_jobs()["JobNames"]
        for job_run in glue.get_job_runs(JobName=job_name)["JobRuns"]
    )
    sagemaker = _client(cloud, "sagemaker")
    training_job = next(
        json.loads(event["taskScheduledEventDetails"]["parameters"])["TrainingJobName"]
        for event in history
        if event.get("taskScheduledEventDetails", {}).get("resource", "").startswith("createTrainingJob")
    )
    job = sagemaker.describe_training_job(TrainingJobName=training_job)
    # Lambda tasks up to the approval email (Request approval then waits for the person).
    lambda_states: set[str] = set()
    state = ""
    for event in history:
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        elif event.get("taskScheduledEventDetails", {}).get("resourceType") == "lambda":
            lambda_states.add(state)
    lambda_states.discard("Request approval")
    asked = next(
        (
            event["timestamp"].timestamp()
            for event in history
            if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "Request approval"
        ),
        until,
    )
    return {
        "Request approval Lambda (until the email)": max(0.0, until - asked),
        "Glue job run": (run["CompletedOn"] - run["StartedOn"]).total_seconds(),
        "training job": (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds(),
        "Lambda tasks (resolve, record, evaluate)": _state_seconds(
            [e for e in history if e["timestamp"].timestamp() <= until], tuple(lambda_states)
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()

    cloud = local_cloud(Path(tempfile.mkdtemp(prefix="stepml-bench-")))
    started = time.monotonic()
    cloud.start()
    print(f"local cloud started in {time.monotonic() - started:.1f}s")
    try:
        outputs = cloud.outputs()
        s3 = _client(cloud, "s3")
        config = json.loads((ROOT / "examples/datasets/churn.json").read_text())
        s3.put_object(
            Bucket=outputs["ArtifactBucketName"],
            Key=dataset_config_key("churn"),
            Body=json.dumps({**config, "promote_only_if_better": False}).encode(),
        )
        body = churn_csv(args.rows, seed=21)
        key = f"incoming/churn/bench-{args.rows}.csv"
        uploaded_at = time.monotonic()
        put = s3.put_object(Bucket=outputs["UploadBucketName"], Key=key, Body=body)
        run_id = make_run_id(outputs["UploadBucketName"], key, put["VersionId"])
        email = None
        while email is None and time.monotonic() - uploaded_at < 900:
            email = next((m for m in cloud.outbox.messages() if f"model {run_id}?" in m.subject), None)
            time.sleep(0.1)
        if email is None:
            print("no approval email within 900 s")
            return 1
        to_email = time.monotonic() - uploaded_at
        email_wall_time = time.time()
        approved_at = time.monotonic()
        approve_link(email.links[0], decision="approve", comment="")
        sagemaker = _client(cloud, "sagemaker")
        endpoint = outputs["ProductionEndpointName"]
        while time.monotonic() - approved_at < 300:
            try:
                if sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService":
                    break
            except sagemaker.exceptions.ClientError:
                pass
            time.sleep(0.05)
        to_in_service = time.monotonic() - approved_at

        sfn = _client(cloud, "stepfunctions")
        execution = sfn.list_executions(stateMachineArn=outputs["StateMachineArn"])["executions"][0]
        # Every page: a run that waits long enough for its endpoints has more than one page of history.
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
        history = [event for page in pages for event in page["events"]]
        compute = _compute_seconds(cloud, outputs, history, email_wall_time)
        overhead = max(0.0, to_email - sum(compute.values()))
        print(f"rows:                                  {args.rows}")
        print(f"upload -> approval email:              {to_email:.1f}s   (goal 30 s)")
        print(f"approval -> production InService:      {to_in_service:.1f}s   (goal 5 s)")
        print(f"steps' own compute before the email:   {sum(compute.values()):.1f}s")
        for name, seconds in compute.items():
            print(f"  {name:<36} {seconds:.1f}s")
        print(
            f"orchestration overhead:                {overhead:.1f}s = {100 * overhead / to_email:.0f}% of the wall "
            "time (goal < 15%)"
        )
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
