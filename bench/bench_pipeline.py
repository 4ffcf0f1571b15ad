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

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stepml.cli.runs import approve_link  # noqa: E402
from stepml.config import dataset_config_key  # noqa: E402
from stepml.lineage import make_run_id  # noqa: E402
from stepml.local.cloud import LocalCloud  # noqa: E402
from stepml.sample_data import churn_csv  # noqa: E402
from tests.helpers import free_port  # noqa: E402


def _client(cloud: LocalCloud, service: str):
    return boto3.client(
        service,
        endpoint_url=cloud.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _state_seconds(history: list[dict], names: tuple[str, ...]) -> float:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()

    cloud = LocalCloud(
        root=ROOT, state_dir=Path(tempfile.mkdtemp(prefix="stepml-bench-")), port=free_port(), api_port=free_port()
    )
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
        approved_at = time.monotonic()
        approve_link(email.links[0], decision="approve", approver="bench", comment="")
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
        history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
        compute = _state_seconds(history, ("Preprocess data", "Train model", "Evaluate model"))
        overhead = max(0.0, to_email - compute)
        print(f"rows:                                 {args.rows}")
        print(f"upload -> approval email:             {to_email:.1f}s   (goal 30 s)")
        print(f"approval -> production InService:     {to_in_service:.1f}s   (goal 5 s)")
        print(f"steps' compute (Glue, training, Eval): {compute:.1f}s")
        print(
            f"orchestration overhead:               {overhead:.1f}s = {100 * overhead / to_email:.0f}% of the wall "
            "time (goal < 15%)"
        )
        for name in ("Preprocess data", "Train model", "Evaluate model"):
            print(f"  {name:<20} {_state_seconds(history, (name,)):.1f}s")
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
