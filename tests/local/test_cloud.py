"""The local cloud from template.yaml: provisioning, the approval API, S3 -> EventBridge -> the pipeline."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3
import pytest

from stepml import config
from stepml.local.cloud import LocalCloud, LocalCloudError
from tests.helpers import CHURN_CONFIG, REPO_ROOT, free_port


def _client(cloud, service):
    return boto3.client(
        service,
        endpoint_url=cloud.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_the_template_is_provisioned_with_the_dev_parameters(cloud):
    outputs = cloud.outputs()
    assert outputs["ProductionEndpointName"] == "stepml-dev-production"
    names = [f["FunctionName"] for f in _client(cloud, "lambda").list_functions()["Functions"]]
    kinds = ("ResolveRun", "RecordStep", "Evaluate", "RequestApproval", "ApprovalApi", "DriftRetrain")
    assert sorted(next((k for k in kinds if f"-{k}Function-" in n), n) for n in names) == sorted(kinds), names
    machine = _client(cloud, "stepfunctions").describe_state_machine(stateMachineArn=outputs["StateMachineArn"])
    assert json.loads(machine["definition"])["StartAt"] == "Resolve run"
    state = json.loads((cloud.state_dir / "cloud.json").read_text())
    assert state["endpoint_url"] == cloud.endpoint_url and state["outputs"]["UploadBucketName"]


def test_the_approval_api_answers_over_http_through_the_lambda(cloud):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{cloud.api_url}/approvals/not-a-real-id?sig=forged", timeout=10)
    assert error.value.code == 403
    assert "This link is not valid" in error.value.read().decode()


def test_an_upload_starts_the_pipeline_and_resolve_run_claims_it_in_lineage(cloud):
    outputs = cloud.outputs()
    s3 = _client(cloud, "s3")
    s3.put_object(
        Bucket=outputs["ArtifactBucketName"],
        Key=config.dataset_config_key("churn"),
        Body=json.dumps(CHURN_CONFIG).encode(),
    )
    s3.put_object(Bucket=outputs["UploadBucketName"], Key="incoming/churn/probe.csv", Body=b"customer_id\nC1\n")
    sfn = _client(cloud, "stepfunctions")
    table = _client(cloud, "dynamodb")
    deadline = time.monotonic() + 60
    items = []
    while time.monotonic() < deadline:
        items = table.scan(TableName=outputs["LineageTableName"])["Items"]
        if any(item["sk"]["S"] == "RUN" for item in items):
            break
        time.sleep(0.2)
    runs = [item for item in items if item["sk"]["S"] == "RUN"]
    assert len(runs) == 1, "ResolveRun ran in a Lambda worker and claimed the run"
    assert runs[0]["input"]["M"]["key"]["S"] == "incoming/churn/probe.csv"
    executions = sfn.list_executions(stateMachineArn=outputs["StateMachineArn"])["executions"]
    assert len(executions) == 1


def test_a_port_in_use_is_a_clear_error(cloud, tmp_path):
    other = LocalCloud(root=REPO_ROOT, state_dir=tmp_path, port=cloud.port, api_port=cloud.api_port)
    with pytest.raises(LocalCloudError, match=f"port {cloud.port} on 127.0.0.1 is in use"):
        other.start()


def test_a_console_port_in_use_is_a_clear_error(cloud, tmp_path):
    other = LocalCloud(
        root=REPO_ROOT, state_dir=tmp_path, port=free_port(), api_port=free_port(), console_port=cloud.console_port
    )
    with pytest.raises(LocalCloudError, match=f"port {cloud.console_port} on 127.0.0.1 is in use.*--console-port$"):
        other.start()


def test_the_console_is_served_on_its_own_port_and_named_in_the_state_file(cloud):
    state = json.loads((cloud.state_dir / "cloud.json").read_text())
    assert state["console_url"] == cloud.console_url == f"http://127.0.0.1:{cloud.console_port}/"
    with urllib.request.urlopen(cloud.console_url + "endpoints", timeout=30) as page:
        assert page.status == 200 and "<h1>Endpoints</h1>" in page.read().decode()
    arn = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:run-1"
    assert cloud.execution_console_url(arn) == (
        f"http://127.0.0.1:{cloud.console_port}/execution?arn={arn.replace(':', '%3A')}"
    )


def test_stopping_the_cloud_aborts_the_executions_still_running(cloud, monkeypatch):
    """An execution left running by a stopped cloud would go on calling the next cloud started in
    the same process; stop() aborts it as StopExecution would and waits for its thread to end, also
    when its thread has not begun the program yet (moto drops a stop that comes that early)."""
    import threading

    from moto.stepfunctions.parser.asl.component.program.program import Program

    from stepml.local.cloud import abort_running_executions

    # Hold the execution's thread before its program runs, as a busy machine may, until the abort began.
    release = threading.Event()
    evaluate = Program.eval

    def held_eval(self, env):  # type: ignore[no-untyped-def]
        release.wait(30)
        return evaluate(self, env)

    monkeypatch.setattr(Program, "eval", held_eval)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = _client(cloud, "iam").create_role(RoleName="waits-an-hour", AssumeRolePolicyDocument=json.dumps(trust))
    sfn = _client(cloud, "stepfunctions")
    machine = sfn.create_state_machine(
        name="waits-an-hour",
        roleArn=role["Role"]["Arn"],
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="left-running")["executionArn"]
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    aborted: list[list[str]] = []
    aborting = threading.Thread(target=lambda: aborted.append(abort_running_executions()))
    aborting.start()
    release.set()
    aborting.join(timeout=90)
    assert aborted and execution in aborted[0]

    assert sfn.describe_execution(executionArn=execution)["status"] == "ABORTED"
    history = sfn.get_execution_history(executionArn=execution)["events"]
    assert history[-1]["type"] == "ExecutionAborted"
    assert abort_running_executions() == []
