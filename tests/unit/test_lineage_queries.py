"""Lineage questions (``stepml.lineage_queries``) and ``stepml lineage`` against the template's
lineage table in moto, filled by the same functions the pipeline's Lambdas call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from stepml.cli.main import main
from stepml.lineage import record_failure, record_step, resolve_run
from stepml.lineage_queries import (
    LineageQueryError,
    NotInLineageError,
    dataset_lineage,
    model_lineage,
    parse_object_uri,
    run_tree,
)
from tests.helpers import put_encoding

ACCOUNT_EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PRODUCTION = "stepml-production"


@pytest.fixture
def env(resolve_run_env):
    return resolve_run_env


class Clock:
    """Each call is one minute later, so records have distinct, ordered times."""

    def __init__(self, start: datetime = START):
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(minutes=1)
        return self.moment


def _upload(env, name: str, body: bytes) -> dict[str, Any]:
    return env.upload(f"incoming/churn/{name}", body)


def _record(env, run, step, result, clock, status="SUCCEEDED"):
    return record_step(
        run,
        step,
        status,
        result,
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=env["sagemaker"],
        settings=env["settings"],
        now=clock,
    )


def _train_job(env, run) -> dict[str, Any]:
    """A training job in moto's SageMaker under the run's name, as the Train step makes it."""
    names, paths = run["names"], run["paths"]
    created = env["sagemaker"].create_training_job(
        TrainingJobName=names["training_job"],
        AlgorithmSpecification={"TrainingImage": "xgboost:1.7-1", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/stepml-sagemaker",
        OutputDataConfig={"S3OutputPath": paths["model_output"]},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        HyperParameters=run["hyperparameters"],
    )
    return {
        "job_name": names["training_job"],
        "job_arn": created["TrainingJobArn"],
        "model_data": f"{paths['model_output']}{names['training_job']}/output/model.tar.gz",
        "started_on": int(START.timestamp() * 1000) + 120_000,
        "completed_on": int(START.timestamp() * 1000) + 180_000,
    }


def complete_run(
    env, name: str, body: bytes, *, approver: str = "ana", deploy: bool = True, day: int = 0
) -> dict[str, Any]:
    """One upload through every recorded step, as the state machine records it, ``day`` days after START."""
    clock = Clock(START + timedelta(days=day))
    event = _upload(env, name, body)
    run = resolve_run(
        event,
        ACCOUNT_EXECUTION + name,
        table=env["table"],
        s3_client=env["s3"],
        sfn_client=boto3.client("stepfunctions"),
        settings=env["settings"],
        now=clock,
    )["run"]
    bucket, _, key = run["paths"]["manifest"].removeprefix("s3://").partition("/")
    manifest = {"fingerprint": f"sha256:{name}", "row_counts": {"input": 100, "train": 70, "test": 15}}
    env["s3"].put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    put_encoding(env["s3"], run)
    started = int(START.timestamp() * 1000)
    glue = {
        "job_name": "stepml-local-preprocess",
        "job_run_id": f"jr_{name}",
        "state": "SUCCEEDED",
        "started_on": started + 60_000,
        "completed_on": started + 100_500,
    }
    _record(env, run, "preprocess", glue, clock)
    _record(env, run, "train", _train_job(env, run), clock)
    evaluation = {
        "passed": True,
        "reason": "auc 0.91 >= 0.7",
        "metric": "auc",
        "value": 0.91,
        "threshold": 0.7,
        "metrics": {"auc": 0.91, "accuracy": 0.85},
        "report_uri": f"{run['paths']['evaluation']}report.json",
        "started_at": "2026-03-02T09:05:00.000Z",
        "ended_at": "2026-03-02T09:05:03.250Z",
    }
    _record(env, run, "evaluate", evaluation, clock)
    decision = {
        "decision": "approve" if deploy else "reject",
        "approver": approver,
        "comment": "looks right" if deploy else "not now",
        "decided_at": "2026-03-02T10:00:00.000Z",
        "approval_id": f"ap-{name}",
    }
    _record(env, run, "approval", decision, clock)
    if deploy:
        _record(env, run, "deploy", {"status": "InService"}, clock)
    outcome = "SUCCEEDED" if deploy else "REJECTED"
    _record(env, run, "run", {"approval": decision, "evaluate": evaluation, "reason": "not now"}, clock, outcome)
    return {"run": run, "event": event}


def test_run_tree_lists_every_step_with_jobs_timings_and_the_approval(env):
    run = complete_run(env, "a.csv", b"x,y\n1,2\n")["run"]
    tree = run_tree(env["table"], run["run_id"])
    assert tree["status"] == "SUCCEEDED" and tree["input"]["uri"].endswith("/incoming/churn/a.csv")
    assert [s["step"] for s in tree["steps"]] == ["preprocess", "train", "evaluate", "approval", "deploy"]
    steps = {s["step"]: s for s in tree["steps"]}
    glue = steps["preprocess"]
    assert glue["job"] == {
        "type": "glue",
        "name": "stepml-local-preprocess",
        "run_id": "jr_a.csv",
        "arn": "arn:aws:glue:us-east-1:123456789012:job/stepml-local-preprocess",
    }
    assert glue["seconds"] == 40.5 and glue["status"] == "SUCCEEDED" and not glue["reused"]
    assert glue["outputs"]["fingerprint"] == "sha256:a.csv"
    assert glue["parameters"]["dataset_config"]["label"] == "churned"
    assert steps["train"]["job"]["arn"].endswith(f":training-job/{run['names']['training_job']}")
    assert steps["train"]["parameters"]["hyperparameters"]["max_depth"] == "4"
    assert steps["train"]["seconds"] == 60.0
    assert steps["evaluate"]["outputs"]["metrics"] == {"auc": 0.91, "accuracy": 0.85}
    assert steps["evaluate"]["seconds"] == 3.25
    assert tree["approval"] == {
        "decision": "approve",
        "approver": "ana",
        "decided_at": "2026-03-02T10:00:00.000Z",
        "comment": "looks right",
        "approval_id": "ap-a.csv",
    }
    assert steps["deploy"]["outputs"]["endpoint"] == PRODUCTION
    assert tree["resources"]["model"] == run["names"]["model"]


def test_run_tree_of_a_resumed_run_marks_reused_steps_and_the_failure(env):
    clock = Clock()
    event = _upload(env, "b.csv", b"x\n")
    resolve = {
        "table": env["table"],
        "s3_client": env["s3"],
        "sfn_client": boto3.client("stepfunctions"),
        "settings": env["settings"],
        "now": clock,
    }
    run = resolve_run(event, ACCOUNT_EXECUTION + "one", **resolve)["run"]
    bucket, _, key = run["paths"]["manifest"].removeprefix("s3://").partition("/")
    env["s3"].put_object(Bucket=bucket, Key=key, Body=b'{"fingerprint": "sha256:b", "row_counts": {"test": 15}}')
    put_encoding(env["s3"], run)
    glue = {"job_name": "stepml-local-preprocess", "job_run_id": "jr_1", "started_on": 1, "completed_on": 2}
    _record(env, run, "preprocess", glue, clock)
    record_failure(
        {
            "run": run,
            "steps": {"preprocess": glue},
            "error": {"Error": "States.TaskFailed", "Cause": "capacity"},
            "failed_step": "train",
        },
        ACCOUNT_EXECUTION + "one",
        table=env["table"],
        sagemaker_client=env["sagemaker"],
        settings=env["settings"],
        now=clock,
    )
    failed = run_tree(env["table"], run["run_id"])
    assert failed["status"] == "FAILED" and failed["failed_step"] == "train"
    assert failed["error"] == {"error": "States.TaskFailed", "cause": "capacity"}
    assert {s["step"]: s["status"] for s in failed["steps"]} == {"preprocess": "SUCCEEDED", "train": "FAILED"}

    resumed = resolve_run({"resume_run_id": run["run_id"]}, ACCOUNT_EXECUTION + "two", **resolve)["run"]
    _record(env, resumed, "train", _train_job(env, resumed), clock)
    tree = run_tree(env["table"], run["run_id"])
    steps = {s["step"]: s for s in tree["steps"]}
    assert tree["attempt"] == 2 and len(tree["executions"]) == 2
    assert steps["preprocess"]["reused"] and steps["preprocess"]["attempt"] == 1
    assert not steps["train"]["reused"] and steps["train"]["attempt"] == 2
    assert [a["status"] for a in steps["train"]["attempts"]] == ["FAILED", "SUCCEEDED"]


def test_model_lineage_by_model_name(env):
    run = complete_run(env, "c.csv", b"c\n")["run"]
    found = model_lineage(env["table"], run["names"]["model"])
    assert found["run_id"] == run["run_id"] and found["endpoint"] is None
    assert found["data"]["uri"] == run["input"]["uri"] and found["data"]["version_id"] == run["input"]["version_id"]
    assert found["data"]["fingerprint"] == "sha256:c.csv"
    assert found["code_version"] == run["code_version"]
    assert found["hyperparameters"]["objective"] == "binary:logistic"
    assert found["training"]["job"]["name"] == run["names"]["training_job"]
    assert found["training"]["model_data"].endswith("/output/model.tar.gz")
    # The Model Monitor baseline the Glue job wrote, recorded with the model (a schedule's input).
    processed = run["paths"]["processed"]
    baseline = {"statistics": f"{processed}statistics.json", "constraints": f"{processed}constraints.json"}
    assert found["baseline"] == baseline
    assert found["evaluation"]["metrics"]["auc"] == 0.91
    assert found["approval"]["approver"] == "ana" and found["deployed_to"] == PRODUCTION


def test_model_lineage_of_a_model_created_by_a_resumed_attempt(env):
    """A resumed run's model is named after the new attempt but trained in the first."""
    run = complete_run(env, "d.csv", b"d\n")["run"]
    later_model = run["names"]["model"].replace("-a1", "-a2")
    found = model_lineage(env["table"], later_model)
    assert found["run_id"] == run["run_id"] and found["model"] == later_model
    assert found["training"]["job"]["name"] == run["names"]["training_job"]


def test_model_lineage_by_endpoint_follows_what_it_serves_now(env):
    first = complete_run(env, "e1.csv", b"1\n", approver="ana")["run"]
    second = complete_run(env, "e2.csv", b"2\n", approver="ben", day=1)["run"]
    sagemaker = env["sagemaker"]
    # The endpoint serves the first run's model (the second deployment rolled back, say).
    sagemaker.create_model(
        ModelName=first["names"]["model"],
        ExecutionRoleArn="arn:aws:iam::123456789012:role/stepml-sagemaker",
        PrimaryContainer={"Image": "xgboost:1.7-1", "ModelDataUrl": "s3://b/model.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="prod-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": first["names"]["model"],
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=PRODUCTION, EndpointConfigName="prod-config")
    found = model_lineage(env["table"], PRODUCTION, sagemaker_client=sagemaker)
    assert found["run_id"] == first["run_id"] and found["approval"]["approver"] == "ana"
    assert found["endpoint"]["source"] == "sagemaker" and found["endpoint"]["model"] == first["names"]["model"]
    assert [d["run_id"] for d in found["endpoint"]["deployments"]] == [first["run_id"], second["run_id"]]
    # Without SageMaker (the endpoint deleted, or no access) lineage's last deployment answers.
    sagemaker.delete_endpoint(EndpointName=PRODUCTION)
    found = model_lineage(env["table"], PRODUCTION, sagemaker_client=sagemaker)
    assert found["run_id"] == second["run_id"] and found["endpoint"]["source"] == "lineage"
    assert found["model"] == second["names"]["model"]


def test_unknown_model_or_endpoint_is_named(env):
    with pytest.raises(NotInLineageError, match="no model or endpoint named 'nothing-here' in lineage table"):
        model_lineage(env["table"], "nothing-here", sagemaker_client=env["sagemaker"])


def test_dataset_lineage_lists_every_run_of_an_object_and_filters_a_version(env):
    first = complete_run(env, "f.csv", b"version one\n", approver="ana")
    second = complete_run(env, "f.csv", b"version two\n", approver="ben", deploy=False, day=1)
    complete_run(env, "other.csv", b"another object\n")
    uri = first["run"]["input"]["uri"]
    everything = dataset_lineage(env["table"], uri)
    assert everything["uri"] == uri and everything["version_id"] is None
    runs = {r["run_id"]: r for r in everything["runs"]}
    assert set(runs) == {first["run"]["run_id"], second["run"]["run_id"]}
    one = runs[first["run"]["run_id"]]
    assert one["status"] == "SUCCEEDED" and one["model"] == first["run"]["names"]["model"]
    assert one["approver"] == "ana" and one["deployed_to"] == PRODUCTION and one["metrics"]["auc"] == 0.91
    two = runs[second["run"]["run_id"]]
    assert two["status"] == "REJECTED" and two["decision"] == "reject" and two["deployed_to"] is None
    version = second["run"]["input"]["version_id"]
    only = dataset_lineage(env["table"], f"{uri}?versionId={version}")
    assert [r["run_id"] for r in only["runs"]] == [second["run"]["run_id"]]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://bucket/key.csv", "is not an S3 object URI"),
        ("s3://bucket", "is not an S3 object URI"),
        ("s3://bucket/key.csv?version=1", "the only query parameter an object URI takes is one versionId"),
    ],
)
def test_object_uris_are_checked(uri, message):
    with pytest.raises(LineageQueryError, match=message):
        parse_object_uri(uri)


def test_an_object_without_runs_is_named(env):
    with pytest.raises(NotInLineageError, match=r"no run in lineage table .* read s3://b/incoming/churn/x.csv"):
        dataset_lineage(env["table"], "s3://b/incoming/churn/x.csv")
    run = complete_run(env, "g.csv", b"g\n")["run"]
    with pytest.raises(NotInLineageError, match=r"\(version nope\)"):
        dataset_lineage(env["table"], f"{run['input']['uri']}?versionId=nope")


# --- the CLI, through --stack-name as against a deployed stack ------------------------------


@pytest.fixture
def deployed(env):
    """A CloudFormation stack whose outputs name the lineage table, as `sam deploy` leaves it."""
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"LineageTableName": {"Value": env["settings"].lineage_table}},
    }
    with pytest.warns(UserWarning, match="WaitConditionHandle"):  # moto creates no such resource
        boto3.client("cloudformation").create_stack(StackName="stepml-dev", TemplateBody=json.dumps(template))
    return env


@pytest.fixture
def cli(deployed, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = main(["lineage", *args, "--stack-name", "stepml-dev"])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_cli_lineage_show_as_a_tree_and_as_json(cli, deployed):
    run = complete_run(deployed, "h.csv", b"h\n")["run"]
    code, out, err = cli("show", run["run_id"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run['run_id']}  dataset churn  SUCCEEDED  attempt 1")
    assert "    approval: approve by ana at 2026-03-02T10:00:00.000Z: 'looks right'" in lines
    assert any(line.startswith("|-- Preprocess data (Glue)  SUCCEEDED") and "(40.5 s)" in line for line in lines)
    assert "|   job: arn:aws:glue:us-east-1:123456789012:job/stepml-local-preprocess run jr_h.csv" in lines
    assert "|       fingerprint: sha256:h.csv" in lines
    nodes = [line.split("  ")[0] for line in lines if line.startswith(("|-- ", "`-- "))]
    assert nodes == [
        "|-- Preprocess data (Glue)",
        "|-- Train model (SageMaker)",
        "|-- Evaluate model",
        "|-- Approval",
        "`-- Deploy to production",
    ]
    code, out, _ = cli("show", run["run_id"], "--json")
    assert code == 0 and json.loads(out)["approval"]["comment"] == "looks right"


def test_cli_lineage_model_and_dataset(cli, deployed):
    run = complete_run(deployed, "i.csv", b"i\n", approver="cy")["run"]
    code, out, err = cli("model", run["names"]["model"])
    assert code == 0, err
    assert f"    data: {run['input']['uri']} (version {run['input']['version_id']})" in out
    assert "    fingerprint: sha256:i.csv" in out and "approver: cy (approve" in out
    code, out, _ = cli("model", run["names"]["model"], "--json")
    assert json.loads(out)["training"]["job"]["name"] == run["names"]["training_job"]
    code, out, _ = cli("dataset", run["input"]["uri"])
    assert code == 0 and f"run {run['run_id']}  version {run['input']['version_id']}  SUCCEEDED" in out
    code, out, _ = cli("dataset", run["input"]["uri"], "--json")
    assert json.loads(out)["runs"][0]["model"] == run["names"]["model"]


def test_cli_lineage_errors_are_one_line(cli):
    code, out, err = cli("show", "churn-000000000000")
    assert code == 1 and out == ""
    assert err.startswith("error: run churn-000000000000 is not in lineage table") and err.count("\n") == 1
    code, _, err = cli("dataset", "not-a-uri")
    assert code == 1 and "'not-a-uri' is not an S3 object URI" in err
