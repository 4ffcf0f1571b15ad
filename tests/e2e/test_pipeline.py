"""The whole pipeline on the local cloud: approve, reject, gate rejection and a Glue failure.

One local cloud serves the module; each test uploads its own file, so each is its own run.
Tests are ordered: the approve path first creates the production endpoint the others must
leave untouched.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.cli.main import main
from stepml.cli.runs import approve_link
from stepml.evaluation import evaluate_model, parse_predictions
from stepml.lineage import make_run_id
from stepml.local.cloud import REGION
from stepml.sample_data import churn_csv
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e
ROWS = 1500
#: Rows as an application has them: churn's features in config order, categories as text, a blank.
RAW_ROWS = "12,70.5,846.0,2,month-to-month,electronic-check,fiber\n40,30.1,1204.0,0,two-year,,dsl"


def test_approve_path_deploys_the_approved_model_and_cleans_up(pipeline):
    pipeline.onboard("churn")
    upload = pipeline.upload("churn", "approve.csv", churn_csv(ROWS, seed=11))
    run_id = upload["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    assert email.to == "approver@example.com" and "auc" in email.subject
    status, title = approve_link(email.links[0], decision="approve", comment="ship it")
    assert status == 200 and title.startswith("Approved")
    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    for step in ("preprocess", "train", "evaluate", "approval", "deploy"):
        assert records[f"STEP#{step}"]["status"] == "SUCCEEDED", step
    # Who approved is the address the link was sent to (the stack's ApproverEmail), not a typed name.
    assert records["STEP#approval"]["outputs"]["approver"] == "approver@example.com"
    names = records["RUN"]["names"]

    sagemaker = pipeline.client("sagemaker")
    production = pipeline.outputs["ProductionEndpointName"]
    assert pipeline.endpoint_config(production) == names["production_endpoint_config"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=names["production_endpoint_config"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    # An inference pipeline: the preprocessor with the Glue job's encoding, then the trained model.
    preprocessor, xgboost = model["Containers"]
    assert preprocessor["ModelDataUrl"] == records["STEP#preprocess"]["outputs"]["preprocessor"]
    assert preprocessor["Image"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert xgboost["ModelDataUrl"] == records["STEP#train"]["outputs"]["model_data"]
    assert pipeline.endpoint_config(names["test_endpoint"]) is None, "the test endpoint is deleted"
    registered = sagemaker.describe_model_package(ModelPackageName=records["RUN"]["model_package"]["arn"])
    assert (registered["ModelApprovalStatus"], registered["ApprovalDescription"][:15]) == (
        "Approved",
        "Approved by app",
    )

    answer = pipeline.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=production, ContentType="text/csv", Body=RAW_ROWS
    )
    body = answer["Body"].read().decode()
    values = parse_predictions(body, rows=2, width=1, source=production)
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values), body
    # The registered version is the same pipeline, and a row of the wrong width is the caller's error.
    assert [c["Image"] for c in registered["InferenceSpecification"]["Containers"]] == [
        preprocessor["Image"],
        xgboost["Image"],
    ]
    with pytest.raises(ClientError) as refused:
        pipeline.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=production, ContentType="text/csv", Body="12,70.5,846.0,2,month-to-month"
        )
    assert refused.value.response["OriginalStatusCode"] == 400
    assert (
        'Received client error (400) from container_1 with message "row 1 has 5 column(s), expected 7'
        in (refused.value.response["Error"]["Message"])
    )
    assert pipeline.wait_for_email(f"model {run_id} deployed")
    head = pipeline.client("s3").head_object(Bucket=upload["bucket"], Key=upload["key"])
    assert head["ETag"] == upload["etag"] and head["VersionId"] == upload["version"]


def test_lineage_cli_traces_the_production_model_to_its_upload_and_approver(pipeline, capsys):
    """`stepml lineage` on the run the approve path deployed (production serves its model)."""

    def lineage(*args: str) -> dict:
        code = main(["lineage", *args, "--json", "--state-dir", str(pipeline.cloud.state_dir)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    model = lineage("model", pipeline.outputs["ProductionEndpointName"])
    assert model["endpoint"]["source"] == "sagemaker" and model["data"]["uri"].endswith("/incoming/churn/approve.csv")
    assert model["data"]["fingerprint"].startswith("sha256:") and model["code_version"]
    assert model["hyperparameters"]["max_depth"] == "4" and model["training"]["job"]["arn"]
    assert model["evaluation"]["metrics"]["auc"] > 0.7
    assert model["approval"]["approver"] == "approver@example.com" and model["approval"]["comment"] == "ship it"
    tree = lineage("show", model["run_id"])
    assert [s["step"] for s in tree["steps"]] == ["preprocess", "train", "evaluate", "approval", "deploy"]
    assert all(s["status"] == "SUCCEEDED" for s in tree["steps"])
    assert tree["steps"][0]["job"]["arn"].endswith(":job/" + tree["steps"][0]["job"]["name"])
    assert tree["steps"][0]["seconds"] > 0 and tree["steps"][1]["seconds"] >= 0
    produced = lineage("dataset", model["data"]["uri"])
    assert [(r["run_id"], r["model"]) for r in produced["runs"]] == [(model["run_id"], model["model"])]
    assert main(["lineage", "show", model["run_id"], "--state-dir", str(pipeline.cloud.state_dir)]) == 0
    assert "`-- Deploy to production  SUCCEEDED" in capsys.readouterr().out

    # The Model Monitor baseline the Glue job wrote, with the model; `stepml monitor` analyses
    # the rows the approve path sent to production against it.
    baseline = model["baseline"]
    assert baseline["statistics"].endswith("/statistics.json") and baseline["constraints"].endswith("/constraints.json")
    production = pipeline.outputs["ProductionEndpointName"]
    _wait_for_capture_of(pipeline, production, RAW_ROWS.splitlines()[1])
    code = main(["monitor", production, "--now", "--json", "--state-dir", str(pipeline.cloud.state_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    shown = json.loads(captured.out)
    assert shown["model"] == model["model"] and shown["baseline"] == baseline["statistics"]
    assert shown["statistics"]["dataset"]["item_count"] >= 2
    checks = {v["constraint_check_type"] for v in shown["violations"]["violations"]}
    assert not checks & {"missing_column_check", "extra_column_check"}, shown["violations"]


def test_drifted_traffic_to_production_raises_the_drift_alarm_and_emails_the_admins(pipeline, capsys):
    """The deploy put production under an hourly data-quality schedule with the served model's
    baseline; one execution over drifted traffic writes the violations where AWS writes them,
    publishes the drift metrics, and the feature's alarm emails the admins."""
    sagemaker, s3 = pipeline.client("sagemaker"), pipeline.client("s3")
    production = pipeline.outputs["ProductionEndpointName"]
    schedule = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=f"{production}-data-quality")
    assert schedule["MonitoringScheduleStatus"] == "Scheduled" and schedule["EndpointName"] == production
    config = schedule["MonitoringScheduleConfig"]
    assert config["ScheduleConfig"]["ScheduleExpression"] == "cron(0 * ? * * *)"
    definition = sagemaker.describe_data_quality_job_definition(JobDefinitionName=config["MonitoringJobDefinitionName"])
    baseline = definition["DataQualityBaselineConfig"]["ConstraintsResource"]["S3Uri"]
    assert "/processed/churn/" in baseline and baseline.endswith("/constraints.json")
    assert definition["DataQualityAppSpecification"]["ImageUri"].endswith("/sagemaker-model-monitor-analyzer")

    # Customers with ten times the tenure and charges the model was trained on.
    rows = [f"{300 + i},{400 + i}.5,{90000 + i}.0,{i % 3},month-to-month,mailed-check,fiber" for i in range(120)]
    runtime = pipeline.client("sagemaker-runtime")
    for start in range(0, len(rows), 30):
        runtime.invoke_endpoint(
            EndpointName=production, ContentType="text/csv", Body="\n".join(rows[start : start + 30])
        )
    _wait_for_capture_of(pipeline, production, rows[-1])
    account = pipeline.client("sts").get_caller_identity()["Account"]
    execution = pipeline.cloud.sagemaker_engine.monitoring.run_now(
        schedule["MonitoringScheduleName"], account_id=account, region=REGION
    )
    assert execution["MonitoringExecutionStatus"] == "CompletedWithViolations", execution

    bucket = pipeline.outputs["ArtifactBucketName"]
    folder = f"monitoring/{production}/{schedule['MonitoringScheduleName']}/{execution['ScheduledTime']:%Y/%m/%d/%H}/"
    report = json.loads(s3.get_object(Bucket=bucket, Key=folder + "constraint_violations.json")["Body"].read())
    drifted = {v["feature_name"] for v in report["violations"] if v["constraint_check_type"] == "baseline_drift_check"}
    assert {"tenure_months", "monthly_charges", "total_charges"} <= drifted, report
    listed = sagemaker.list_monitoring_executions(MonitoringScheduleName=schedule["MonitoringScheduleName"])
    assert listed["MonitoringExecutionSummaries"][0]["ProcessingJobArn"] == execution["ProcessingJobArn"]
    assert main(["monitor", production, "--json", "--state-dir", str(pipeline.cloud.state_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == f"s3://{bucket}/{folder}"

    alarm_name = f"{pipeline.cloud.stack_name}-data-drift-tenure_months"
    [alarm] = pipeline.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM" and alarm["MetricName"] == "feature_baseline_drift_tenure_months"
    email = pipeline.wait_for_email(f'ALARM: "{alarm_name}"', timeout=30)
    assert email.to == "alerts@example.com" and '"NewStateValue": "ALARM"' in email.body


def _drift_decisions_since(pipeline, since: str) -> list[str]:
    """The drift alarms whose changes after ``since`` (a state time) DriftRetrain decided on: the
    one that started churn's retrain and those noted as finding it in flight."""
    record = _retrain_record(pipeline, "churn")
    names = [n["alarm_name"] for n in record.get("alarms_ignored", []) if n["changed_at"] >= since]
    trigger = pipeline.run_record(record["run_id"]).get("RUN", {}).get("trigger") if record.get("run_id") else None
    if trigger and trigger["changed_at"] >= since:
        names.append(trigger["alarm_name"])
    return names


def _decided_alarm_events(pipeline) -> list[dict]:
    """The alarm events the DriftRetrain function decided on, whatever it decided, from its log:
    the event it logs on entry (``log_event``) of each request that then logged its decision."""
    events: dict[str, dict] = {}
    decided: list[dict] = []
    for line in pipeline.lambda_logs().splitlines():
        try:
            entry = json.loads(line[line.index("{") :])
        except ValueError:  # not a JSON log line, or one still being written
            continue
        if not isinstance(entry, dict) or entry.get("service") != "stepml-drift-retrain":
            continue
        request, message = entry.get("function_request_id"), entry.get("message")
        if isinstance(message, dict) and message.get("detail-type") == "CloudWatch Alarm State Change":
            events[request] = message
        elif message == "drift alarm decided" and request in events:
            decided.append(events[request])
    return decided


def _alarms_in_alarm(cloudwatch, prefix: str) -> set[str]:
    found = cloudwatch.describe_alarms(AlarmNamePrefix=prefix, StateValue="ALARM")["MetricAlarms"]
    return {alarm["AlarmName"] for alarm in found}


def _drift_decisions(pipeline) -> str:
    """What the drift retrain record holds, the deliveries to it and the DriftRetrain function's log."""
    from stepml.local.events import DELIVERY_LOG

    deliveries = [d for d in list(DELIVERY_LOG) if "DriftRetrain" in d["target"]]
    logs = [line for line in pipeline.lambda_logs().splitlines() if "drift" in line.lower()]
    return f"record {_retrain_record(pipeline, 'churn')}; deliveries {deliveries}; log {logs[-20:]}"


def _retrain_record(pipeline, dataset: str) -> dict:
    """The dataset's drift retrain record (``stepml.drift_retrain``): the claim and the alarms it took."""
    item = pipeline.client("dynamodb").get_item(
        TableName=pipeline.outputs["LineageTableName"],
        Key={"pk": {"S": f"RETRAIN#{dataset}"}, "sk": {"S": "RETRAIN"}},
        ConsistentRead=True,
    )
    deserialize = boto3.dynamodb.types.TypeDeserializer().deserialize
    return {key: deserialize(value) for key, value in item.get("Item", {}).items()}


def test_a_drift_alarm_retrains_an_opted_in_dataset_once_while_its_retrain_is_in_flight(pipeline):
    """Retrain on drift: with churn opted in, the drift alarms one monitoring execution raises
    start one run of churn's newest upload, recorded with the alarm as its trigger; the other
    alarms, and one raised again later, find that run in flight and start nothing."""
    cloudwatch, sfn = pipeline.client("cloudwatch"), pipeline.client("stepfunctions")
    machine, prefix = pipeline.outputs["StateMachineArn"], f"{pipeline.cloud.stack_name}-data-drift-"
    # Before opting in: no execution of the earlier tests runs (it would be churn's run in flight),
    # and DriftRetrain has decided (opted out) on every alarm the earlier tests raised, so only
    # this test's alarms can start a retrain.
    wait_until(
        lambda: not sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"],
        "end of the earlier tests' executions",
    )
    # Name by name: before this test each drift alarm entered ALARM at most once (at the deploy
    # that created it nothing had drifted; only this test resets them).
    wait_until(
        lambda: (
            _alarms_in_alarm(cloudwatch, prefix) <= {e["detail"]["alarmName"] for e in _decided_alarm_events(pipeline)}
        ),
        "decision on the earlier tests' drift alarms",
        shown=lambda: _drift_decisions(pipeline),
    )
    pipeline.onboard("churn", retrain_on_drift=True)
    # Alarm state times as alarm events give them: this test's changes come after ``since``.
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    for alarm in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]:
        cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK", StateReason="reset by the test")
    assert not _alarms_in_alarm(cloudwatch, prefix)
    production = pipeline.outputs["ProductionEndpointName"]
    # Raw feature values, as production serves them: far longer tenure and higher charges.
    rows = [f"{500 + i},{700 + i}.5,{120000 + i}.0,{i % 3},month-to-month,mailed-check,fiber" for i in range(60)]
    for start in range(0, len(rows), 30):
        pipeline.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=production, ContentType="text/csv", Body="\n".join(rows[start : start + 30])
        )
    _wait_for_capture_of(pipeline, production, rows[-1])
    account = pipeline.client("sts").get_caller_identity()["Account"]
    execution = pipeline.cloud.sagemaker_engine.monitoring.run_now(
        f"{production}-data-quality", account_id=account, region=REGION
    )
    assert execution["MonitoringExecutionStatus"] == "CompletedWithViolations", execution
    alarmed = sorted(_alarms_in_alarm(cloudwatch, prefix))
    assert {f"{prefix}tenure_months", f"{prefix}monthly_charges", f"{prefix}total_charges"} <= set(alarmed), alarmed

    # Every alarm is decided once: one starts the run, each other one is noted as finding it in flight.
    decided = wait_until(
        lambda: set(found := _drift_decisions_since(pipeline, since)) >= set(alarmed) and found,
        "a decision on every drift alarm",
        shown=lambda: _drift_decisions(pipeline),
    )
    assert sorted(decided) == alarmed, _drift_decisions(pipeline)
    record = _retrain_record(pipeline, "churn")
    run_id = record["run_id"]
    assert {noted["in_flight"] for noted in record["alarms_ignored"]} == {run_id}
    run = wait_until(
        lambda: pipeline.run_record(run_id).get("RUN", {}).get("trigger") and pipeline.run_record(run_id), "drift run"
    )
    trigger = run["RUN"]["trigger"]
    assert trigger["kind"] == "drift" and trigger["endpoint"] == production
    assert trigger["alarm_name"] in alarmed and trigger["changed_at"] >= since, trigger
    assert (
        run["RUN"]["input"]["key"] == "incoming/churn/approve.csv"
        and run["RUN"]["execution_arn"] == record["execution_arn"]
    )

    # The same alarm raised again while the retrain runs: noted, and still one retrain.
    again = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    cloudwatch.set_alarm_state(AlarmName=alarmed[0], StateValue="OK", StateReason="reset by the test")
    cloudwatch.set_alarm_state(AlarmName=alarmed[0], StateValue="ALARM", StateReason="drifted again (test)")
    assert wait_until(
        lambda: _drift_decisions_since(pipeline, again),
        "a decision on the repeated alarm",
        shown=lambda: _drift_decisions(pipeline),
    ) == [alarmed[0]]
    record = _retrain_record(pipeline, "churn")
    assert record["alarms_ignored"][-1]["alarm_name"] == alarmed[0] and record["run_id"] == run_id
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions if e["name"].startswith("drift-")] == [f"drift-{run_id}"]
    # The retrain itself is the pipeline the other tests cover: stop it so it takes no time from them
    # (opted out first, so that no late alarm retrains once it has stopped).
    pipeline.onboard("churn")
    sfn.stop_execution(executionArn=record["execution_arn"], cause="test of retrain on drift ends here")


def test_reject_path_leaves_production_untouched(pipeline):
    production = pipeline.outputs["ProductionEndpointName"]
    before = pipeline.endpoint_config(production)
    assert before is not None, "runs after the approve path"
    pipeline.onboard("churn-b", promote_only_if_better=False)
    upload = pipeline.upload("churn-b", "reject.csv", churn_csv(ROWS, seed=12))
    run_id = upload["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    status, title = approve_link(email.links[0], decision="reject", comment="not this one")
    assert status == 200 and title.startswith("Rejected")
    records = pipeline.wait_for_status(run_id, ("REJECTED", "SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "REJECTED"
    assert "not this one" in records["RUN"]["outcome_reason"]
    registered = pipeline.client("sagemaker").describe_model_package(
        ModelPackageName=records["RUN"]["model_package"]["arn"]
    )
    assert registered["ModelApprovalStatus"] == "Rejected" and "not this one" in registered["ApprovalDescription"]
    assert pipeline.endpoint_config(production) == before
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None
    assert pipeline.wait_for_execution_end(upload["key"]) == "SUCCEEDED"


def test_gate_rejects_a_weak_model_without_asking_anyone(pipeline, monkeypatch):
    """The run also scores in batch (threshold 0): Batch Transform jobs, the champion's too, and no test endpoint."""
    production = pipeline.outputs["ProductionEndpointName"]
    before = pipeline.endpoint_config(production)
    assert before is not None, "runs after the approve path: a champion serves"
    pipeline.onboard(
        "churn-gate",
        threshold=0.99,
        promote_only_if_better=False,
        evaluation={"batch_transform_above_rows": 0},
    )
    upload = pipeline.upload("churn-gate", "gate.csv", churn_csv(ROWS, seed=13))
    run_id = upload["run_id"]
    records = pipeline.wait_for_status(run_id, ("REJECTED_BY_GATE", "SUCCEEDED", "FAILED", "REJECTED"))
    assert records["RUN"]["status"] == "REJECTED_BY_GATE", records["RUN"]
    _assert_scored_in_batch(pipeline, upload, records, monkeypatch)
    assert "0.99" in records["RUN"]["outcome_reason"]
    registered = pipeline.client("sagemaker").describe_model_package(
        ModelPackageName=records["RUN"]["model_package"]["arn"]
    )
    assert registered["ModelApprovalStatus"] == "Rejected" and "evaluation gate" in registered["ApprovalDescription"]
    assert "STEP#approval" not in records
    assert not [m for m in pipeline.cloud.outbox.messages() if f"Approve churn-gate model {run_id}" in m.subject]
    assert pipeline.endpoint_config(production) == before
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None


def _entered_states(pipeline, key: str) -> list[str]:
    sfn = pipeline.client("stepfunctions")
    (execution,) = pipeline.executions_for(key)
    events = [
        e
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
        for e in page["events"]
    ]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def _assert_scored_in_batch(pipeline, upload, records, monkeypatch):
    """Batch Transform scored the split with both models; no test endpoint existed; the metrics are
    those of the endpoint path (Evaluate's InvokeEndpoint scoring) on the same rows and models."""
    run, sagemaker = records["RUN"], pipeline.client("sagemaker")
    names, paths = run["names"], run["paths"]
    preprocess = records["STEP#preprocess"]["outputs"]["test_scoring"]
    assert preprocess["mode"] == "batch" and preprocess["threshold"] == 0 and preprocess["test_rows"] > 100
    entered = _entered_states(pipeline, upload["key"])
    assert {"Score challenger in batch", "Score champion in batch", "Evaluate model in batch"} <= set(entered)
    assert not {"Create test endpoint", "Evaluate model", "Delete test endpoint"} & set(entered)
    jobs = [names["challenger_transform_job"], names["champion_transform_job"]]
    for job in jobs:
        assert sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "Completed"
    assert not sagemaker.list_endpoint_configs(NameContains=names["test_endpoint_config"])["EndpointConfigs"]
    evaluate = records["STEP#evaluate"]
    assert evaluate["inputs"]["endpoint"] is None
    assert [evaluate["inputs"]["scoring"][who]["job_name"] for who in ("challenger", "champion")] == jobs
    bucket = pipeline.outputs["ArtifactBucketName"]
    report_key = paths["evaluation"].removeprefix(f"s3://{bucket}/") + "report.json"
    report = json.loads(pipeline.client("s3").get_object(Bucket=bucket, Key=report_key)["Body"].read())
    assert report["preprocessing"] == "transform" and report["transform_jobs"] == jobs
    # The endpoint path on the same rows: both models as variants of an endpoint of the test's own.
    champion = report["champion"]
    check = f"stepml-{run['run_id']}-check"
    variants = [("Challenger", names["model"], 1), ("Champion", champion["model"], 0)]
    sagemaker.create_endpoint_config(
        EndpointConfigName=check,
        ProductionVariants=[
            {
                "VariantName": v,
                "ModelName": m,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": w,
            }
            for v, m, w in variants
        ],
    )
    sagemaker.create_endpoint(EndpointName=check, EndpointConfigName=check)
    try:
        wait_until(
            lambda: sagemaker.describe_endpoint(EndpointName=check)["EndpointStatus"] == "InService",
            "the check endpoint InService",
        )
        elsewhere = {**run, "paths": {**paths, "evaluation": paths["evaluation"] + "endpoint-check/"}}
        monkeypatch.setenv("AWS_ENDPOINT_URL", pipeline.cloud.endpoint_url)  # awswrangler's clients too
        session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
        scored = evaluate_model(
            elsewhere,
            check,
            runtime_client=pipeline.client("sagemaker-runtime"),
            boto3_session=session,
            champion=champion,
            s3_client=pipeline.client("s3"),
        )
    finally:
        sagemaker.delete_endpoint(EndpointName=check)
        sagemaker.delete_endpoint_config(EndpointConfigName=check)
    assert scored["rows"] == report["rows"] == preprocess["test_rows"]
    assert scored["metrics"] == pytest.approx(report["metrics"])
    assert scored["production"]["metrics"] == pytest.approx(report["production"]["metrics"])


def test_a_bad_upload_fails_in_glue_alerts_and_leaves_no_endpoint(pipeline):
    pipeline.onboard("churn")
    bad = churn_csv(50, seed=14).decode().replace("churned", "outcome").encode()
    upload = pipeline.upload("churn", "bad-header.csv", bad)
    run_id = upload["run_id"]
    records = pipeline.wait_for_status(run_id, ("FAILED", "SUCCEEDED"))
    assert records["RUN"]["status"] == "FAILED" and records["RUN"]["failed_step"] == "preprocess"
    cause = records["STEP#preprocess"]["error"]["cause"]
    assert "churned" in cause and "bad-header.csv" in cause
    alert = pipeline.wait_for_email(f"Run {run_id} failed")
    assert alert.to == "alerts@example.com"
    assert "Preprocess data" in alert.body and "churned" in alert.body and run_id in alert.body
    assert "STEP#train" not in records
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None
    head = pipeline.client("s3").head_object(Bucket=upload["bucket"], Key=upload["key"])
    assert head["ETag"] == upload["etag"] and head["VersionId"] == upload["version"]
    assert pipeline.wait_for_execution_end(upload["key"]) == "FAILED"


def test_a_run_started_by_the_aws_cli(pipeline, tmp_path):
    """`aws --endpoint-url ... s3 cp` starts a run like any other upload (the machine's AWS CLI)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    # The AWS CLI that `make install` puts beside this interpreter (awscli, a dev dependency).
    beside = Path(sys.executable).with_name("aws")
    aws = str(beside) if beside.exists() else shutil.which("aws")
    assert aws, "the AWS CLI is needed for this test: make install puts it into .venv/bin"
    pipeline.onboard("churn-cli", promote_only_if_better=False)
    data = tmp_path / "from-cli.csv"
    data.write_bytes(churn_csv(ROWS, seed=15))
    destination = f"s3://{pipeline.outputs['UploadBucketName']}/incoming/churn-cli/from-cli.csv"
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    environment.pop("AWS_PROFILE", None)
    copied = subprocess.run(
        [aws, "--endpoint-url", pipeline.cloud.endpoint_url, "s3", "cp", str(data), destination],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    head = pipeline.client("s3").head_object(
        Bucket=pipeline.outputs["UploadBucketName"], Key="incoming/churn-cli/from-cli.csv"
    )
    run_id = make_run_id(pipeline.outputs["UploadBucketName"], "incoming/churn-cli/from-cli.csv", head["VersionId"])
    production = pipeline.outputs["ProductionEndpointName"]
    before = pipeline.endpoint_config(production)
    assert before is not None, "runs after the approve path"
    email = pipeline.wait_for_approval_email(run_id)
    status, _ = approve_link(email.links[0], decision="approve", comment="cli run checked")
    assert status == 200
    records = pipeline.wait_for_status(run_id, ("REJECTED", "SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    assert records["RUN"]["input"]["uri"] == destination
    # The production endpoint existed: the run updated it (blue/green) to its own config.
    after = pipeline.endpoint_config(production)
    assert after == records["RUN"]["names"]["production_endpoint_config"] and after != before
    answer = pipeline.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=production, ContentType="text/csv", Body=RAW_ROWS.splitlines()[0]
    )
    assert 0.0 <= parse_predictions(answer["Body"].read().decode(), rows=1, width=1, source=production)[0] <= 1.0


def test_rerunning_the_glue_job_over_a_runs_output_replaces_its_splits(pipeline):
    """An operator's re-run of a finished job run (same arguments) writes the splits again with
    Spark's mode("overwrite"): the part files of the first run are deleted, as the job role, and the
    prefix holds exactly what the re-run wrote."""
    glue, s3 = pipeline.client("glue"), pipeline.client("s3")
    (job,) = glue.list_jobs()["JobNames"]
    first = next(r for r in glue.get_job_runs(JobName=job)["JobRuns"] if r["JobRunState"] == "SUCCEEDED")
    bucket, _, prefix = first["Arguments"]["--output_uri"].removeprefix("s3://").partition("/")

    def parts() -> set[str]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}train/").get("Contents", [])
        return {item["Key"] for item in listed}

    before = parts()
    assert before, "the first run wrote its train split"
    rerun = glue.start_job_run(JobName=job, Arguments=first["Arguments"])["JobRunId"]
    deadline = time.monotonic() + 180
    state = "RUNNING"
    while state in ("STARTING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
        state = glue.get_job_run(JobName=job, RunId=rerun)["JobRun"]["JobRunState"]
    assert state == "SUCCEEDED", glue.get_job_run(JobName=job, RunId=rerun)["JobRun"].get("ErrorMessage")
    after = parts()
    assert after and not before & after, "Spark names each write's part files anew; the old ones are gone"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read())
    assert manifest["run_id"] == first["Arguments"]["--run_id"]


def test_an_upload_for_a_dataset_never_onboarded_fails_at_resolve_saying_how_to_onboard(pipeline):
    upload = pipeline.upload("churn-unknown", "data.csv", churn_csv(50, seed=16))
    records = pipeline.wait_for_status(upload["run_id"], ("FAILED", "SUCCEEDED"))
    run = records["RUN"]
    key = f"s3://{pipeline.outputs['ArtifactBucketName']}/datasets/churn-unknown/config.json"
    assert run["status"] == "FAILED" and run["failed_step"] == "resolve", run
    assert run["error"]["error"] == "DatasetNotOnboardedError"
    cause = records["STEP#resolve"]["error"]["cause"]
    assert f"dataset 'churn-unknown' is not onboarded: its config {key} does not exist" in cause
    assert "`stepml datasets put churn-unknown CONFIG.json`" in cause
    alert = pipeline.wait_for_email(f"Run {upload['run_id']} failed at Resolve run: DatasetNotOnboardedError")
    assert alert.to == "alerts@example.com" and key in alert.body and "stepml datasets put churn-unknown" in alert.body
    assert pipeline.wait_for_execution_end(upload["key"]) == "FAILED"


def _capture_records(pipeline, endpoint: str) -> list[dict]:
    """Every data capture record SageMaker wrote for ``endpoint`` (any dataset's prefix)."""
    import base64

    s3, bucket = pipeline.client("s3"), pipeline.outputs["ArtifactBucketName"]
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="data-capture/"):
        for item in page.get("Contents", []):
            if f"/{endpoint}/" not in item["Key"]:
                continue
            for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines():
                record = json.loads(line)
                data = record["captureData"]["endpointInput"]
                text = base64.b64decode(data["data"]).decode() if data["encoding"] == "BASE64" else data["data"]
                records.append({**record, "input_rows": text.splitlines()})
    return records


def _wait_for_capture_of(pipeline, endpoint: str, row: str, timeout: float = 60) -> list[dict]:
    """The endpoint's capture records once ``row`` is among them (capture is written in batches)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = _capture_records(pipeline, endpoint)
        if any(row in record["input_rows"] for record in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"{endpoint}: the capture of {row!r} never arrived")


def test_evaluating_against_a_champion_sends_nothing_to_productions_data_capture(pipeline):
    """The champion is scored as a variant of the test endpoint: production's capture holds no test rows."""
    sagemaker, s3 = pipeline.client("sagemaker"), pipeline.client("s3")
    production = pipeline.outputs["ProductionEndpointName"]
    champion_config = pipeline.endpoint_config(production)
    assert champion_config is not None, "runs after an approved run: production serves a champion"
    champion_model = sagemaker.describe_endpoint_config(EndpointConfigName=champion_config)["ProductionVariants"][0]
    pipeline.onboard("churn-capture", promote_only_if_better=False)
    run_id = pipeline.upload("churn-capture", "second.csv", churn_csv(ROWS, seed=17))["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    status, _ = approve_link(email.links[0], decision="approve", comment="second model")
    assert status == 200
    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "FAILED", "REJECTED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]

    bucket, paths = pipeline.outputs["ArtifactBucketName"], records["RUN"]["paths"]
    prefix = paths["test"].removeprefix(f"s3://{bucket}/")
    test_rows = set()
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        lines = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
        test_rows |= {line.split(",", 1)[1] for line in lines if line}
    assert len(test_rows) > 100
    marker = "99,99.25,9999.0,1,one-year,mailed-check,dsl"
    pipeline.client("sagemaker-runtime").invoke_endpoint(EndpointName=production, ContentType="text/csv", Body=marker)
    captured = _wait_for_capture_of(pipeline, production, marker)
    leaked = [row for record in captured for row in record["input_rows"] if row in test_rows]
    assert leaked == [], f"{len(leaked)} evaluation rows in {production}'s data capture"

    report_key = paths["evaluation"].removeprefix(f"s3://{bucket}/") + "report.json"
    report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    assert report["endpoint_name"] == records["RUN"]["names"]["test_endpoint"]
    assert report["production"]["model"] == champion_model["ModelName"] and report["champion_variant"] == "Champion"
    assert report["champion"]["endpoint_config"] == champion_config
    challenger_rows = sum(map(sum, report["confusion_matrix"]["matrix"]))
    assert sum(map(sum, report["production_confusion_matrix"]["matrix"])) == challenger_rows == report["rows"]
    assert report["rows"] >= len(test_rows)
    assert records["STEP#evaluate"]["inputs"]["champion_model"] == champion_model["ModelName"]
    assert pipeline.endpoint_config(production) == records["RUN"]["names"]["production_endpoint_config"]
    # The deploy moved production's monitoring schedule to the new model's baseline.
    schedule = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=f"{production}-data-quality")
    job_definition = schedule["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"]
    assert job_definition == records["RUN"]["names"]["monitoring_job_definition"]
    baseline = sagemaker.describe_data_quality_job_definition(JobDefinitionName=job_definition)
    assert baseline["DataQualityBaselineConfig"]["StatisticsResource"]["S3Uri"] == paths["statistics"]
