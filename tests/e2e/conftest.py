"""What every end-to-end module shares: a ``Pipeline`` driver over the module's local cloud
(the ``cloud`` fixture of tests/conftest.py), and the session's headless Chromium (``browser``).

``Pipeline`` onboards datasets, uploads files and waits on lineage, the outbox and the state
machine the way a user would watch them, with the plain AWS APIs of the local cloud.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.config import dataset_config_key
from stepml.lineage import from_dynamo, make_run_id
from stepml.local.cloud import LocalCloud
from tests.helpers import CHURN_CONFIG

#: Debian's Chromium (``make chromium``); Playwright's own browser download is never used.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_until(find: Any, what: str = "condition", timeout: float = 120, shown: Any = lambda: "") -> Any:
    """``find()``'s first truthy answer, polled every 0.5 s until ``timeout``; the failure names
    ``what`` and shows ``shown()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s: {shown()}")


class Pipeline:
    def __init__(self, cloud: LocalCloud):
        self.cloud = cloud
        self.outputs = cloud.outputs()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.cloud.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def onboard(self, dataset: str, **changes: Any) -> None:
        config = {**CHURN_CONFIG, "name": dataset, **changes}
        self.client("s3").put_object(
            Bucket=self.outputs["ArtifactBucketName"], Key=dataset_config_key(dataset), Body=json.dumps(config).encode()
        )

    def upload(self, dataset: str, name: str, body: bytes) -> dict[str, str]:
        bucket = self.outputs["UploadBucketName"]
        key = f"incoming/{dataset}/{name}"
        put = self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        return {
            "bucket": bucket,
            "key": key,
            "version": put["VersionId"],
            "etag": put["ETag"],
            "run_id": make_run_id(bucket, key, put["VersionId"]),
        }

    def run_record(self, run_id: str) -> dict[str, Any]:
        table = self.outputs["LineageTableName"]
        items = self.client("dynamodb").query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}},
        )["Items"]
        deserialize = boto3.dynamodb.types.TypeDeserializer().deserialize
        records = [from_dynamo({k: deserialize(v) for k, v in item.items()}) for item in items]
        return {record["sk"]: record for record in records}

    def wait_for_status(self, run_id: str, statuses: tuple[str, ...], timeout: float = 240) -> dict[str, Any]:
        """The run's records once lineage says one of ``statuses`` and, for a final status, once
        the executions that record the run have ended too: lineage is written before the state
        machine's last states (deleting the test endpoint, the notice), and a test that asserts on
        what those states do must not race them on a busy machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run_record(run_id).get("RUN", {})
            if run.get("status") in statuses:
                if run.get("status") != "RUNNING":
                    self.wait_for_executions(run.get("executions") or [], deadline)
                return self.run_record(run_id)
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} did not reach {statuses}; last: {self.run_record(run_id).get('RUN')}")

    def wait_for_executions(self, execution_arns: list[str], deadline: float) -> None:
        """Wait until none of ``execution_arns`` is RUNNING."""
        sfn = self.client("stepfunctions")
        while time.monotonic() < deadline:
            if all(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" for arn in execution_arns):
                return
            time.sleep(0.5)
        raise AssertionError(f"executions still running: {execution_arns}")

    def wait_for_email(self, needle: str, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.cloud.outbox.messages():
                if needle in message.subject:
                    return message
            time.sleep(0.5)
        raise AssertionError(f"no email with {needle!r} in its subject")

    def wait_for_approval_email(self, run_id: str) -> Any:
        """The approval request of a run; fails at once with the lineage if the run failed instead."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for message in self.cloud.outbox.messages():
                if f"model {run_id}?" in message.subject:
                    return message
            run = self.run_record(run_id).get("RUN", {})
            if run.get("status") not in (None, "RUNNING"):
                raise AssertionError(f"run {run_id} ended {run.get('status')} before asking for approval: {run}")
            time.sleep(0.5)
        raise AssertionError(f"no approval email for {run_id}")

    def wait_for_execution_end(self, key: str, timeout: float = 60) -> str:
        """The final status of the execution an upload under ``key`` started."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = []
            for execution in sfn.list_executions(stateMachineArn=self.outputs["StateMachineArn"])["executions"]:
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if json.loads(described["input"]).get("detail", {}).get("object", {}).get("key") == key:
                    statuses.append(described["status"])
            if statuses and "RUNNING" not in statuses:
                return statuses[-1]
            time.sleep(0.5)
        raise AssertionError(f"the execution for {key} did not end")

    def approval_item(self, run_id: str) -> dict[str, Any]:
        """The run's approval record as stored (task token included: tests look for leaks)."""
        items = self.client("dynamodb").scan(
            TableName=self.outputs["ApprovalTableName"],
            FilterExpression="run_id = :run_id",
            ExpressionAttributeValues={":run_id": {"S": run_id}},
            ConsistentRead=True,
        )["Items"]
        assert len(items) == 1, f"{len(items)} approval records for {run_id}"
        deserialize = boto3.dynamodb.types.TypeDeserializer().deserialize
        return from_dynamo({k: deserialize(v) for k, v in items[0].items()})

    def approval_outcomes(self, execution_arn: str) -> list[dict[str, Any]]:
        """What reached the execution's 'Request approval' task: the output of each TaskSucceeded
        (a decision) and the type of each TaskFailed / TaskTimedOut event."""
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            events += page["events"]
        outcomes: list[dict[str, Any]] = []
        state = None
        for event in events:
            if event["type"].endswith("StateEntered"):
                state = event["stateEnteredEventDetails"]["name"]
            elif state == "Request approval" and event["type"] == "TaskSucceeded":
                outcomes.append(json.loads(event["taskSucceededEventDetails"]["output"]))
            elif state == "Request approval" and event["type"] in ("TaskFailed", "TaskTimedOut"):
                outcomes.append({"event": event["type"]})
        return outcomes

    def lambda_logs(self) -> str:
        """Everything the local cloud's Lambda functions wrote (state_dir/logs)."""
        return "".join(path.read_text(errors="replace") for path in sorted((self.cloud.state_dir / "logs").glob("*")))

    def executions_for(self, key: str) -> list[dict[str, Any]]:
        """Every execution whose input is an upload under ``key`` (DescribeExecution answers)."""
        sfn = self.client("stepfunctions")
        found = []
        for execution in sfn.list_executions(stateMachineArn=self.outputs["StateMachineArn"])["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described["input"]).get("detail", {}).get("object", {}).get("key") == key:
                found.append(described)
        return found

    def glue_runs(self, run_id: str) -> list[dict[str, Any]]:
        """The Glue job runs (GetJobRuns) started for a run, whatever their state."""
        glue = self.client("glue")
        return [
            job_run
            for job in glue.list_jobs()["JobNames"]
            for job_run in glue.get_job_runs(JobName=job)["JobRuns"]
            if job_run.get("Arguments", {}).get("--run_id") == run_id
        ]

    def training_jobs(self, run_id: str) -> list[str]:
        """Names of the SageMaker training jobs (ListTrainingJobs) of a run, oldest first."""
        summaries = self.client("sagemaker").list_training_jobs(NameContains=f"stepml-{run_id}-", MaxResults=100)
        return sorted(s["TrainingJobName"] for s in summaries["TrainingJobSummaries"])

    def approval_emails(self, run_id: str) -> list[Any]:
        return [m for m in self.cloud.outbox.messages() if f"model {run_id}?" in m.subject]

    def endpoint_config(self, name: str) -> str | None:
        try:
            return self.client("sagemaker").describe_endpoint(EndpointName=name)["EndpointConfigName"]
        except ClientError:
            return None


@pytest.fixture(scope="module")
def pipeline(cloud: LocalCloud) -> Pipeline:
    return Pipeline(cloud)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright, one for the session: each test opens its own
    context (a fresh profile), so nothing a page stored reaches another test."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
