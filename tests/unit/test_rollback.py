"""What `stepml rollback` picks and refuses (``stepml.rollback``), and a reproduction's run
(``lineage_runs.resolve_run`` with a reproduce request), on lineage as the pipeline records it."""

# ruff: noqa: F811 - the env fixture imported from test_lineage_queries is a parameter here
from __future__ import annotations

import json

import boto3
import pytest

from stepml import config
from stepml.cli.lineage import render_model
from stepml.lineage import resolve_run
from stepml.lineage_queries import model_lineage
from stepml.rollback import RollbackError, deployment_config, finish_rollback, plan_rollback, record_rollback
from tests.helpers import CHURN_CONFIG, REPO_ROOT
from tests.unit.test_lineage_queries import ACCOUNT_EXECUTION, PRODUCTION, complete_run, env  # noqa: F401

ROLE = "arn:aws:iam::123456789012:role/stepml-sagemaker"
CALLER = "arn:aws:sts::123456789012:assumed-role/ops/ana"


def _host(env, run: dict) -> None:
    """The model and production endpoint config the run's Create model / deploy states made."""
    names = run["names"]
    env["sagemaker"].create_model(
        ModelName=names["model"],
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "xgboost:1.7-1", "ModelDataUrl": "s3://bucket/model.tar.gz"},
    )
    env["sagemaker"].create_endpoint_config(
        EndpointConfigName=names["production_endpoint_config"],
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": names["model"], "InstanceType": "ml.m5.large"}
            | {"InitialInstanceCount": 1}
        ],
    )


@pytest.fixture
def two_deploys(env):
    """Run a deployed, then run b; production serves b."""
    first = complete_run(env, "a.csv", b"x,y\n1,2\n", day=0)["run"]
    second = complete_run(env, "b.csv", b"x,y\n3,4\n", day=1)["run"]
    for run in (first, second):
        _host(env, run)
    env["sagemaker"].create_endpoint(
        EndpointName=PRODUCTION, EndpointConfigName=second["names"]["production_endpoint_config"]
    )
    return first, second


def test_the_previous_approved_model_is_the_target_and_lineage_follows_the_rollback(env, two_deploys):
    first, second = two_deploys
    plan = plan_rollback(env["table"], env["sagemaker"], PRODUCTION)
    assert (plan.current_model, plan.current_run) == (second["names"]["model"], second["run_id"])
    assert (plan.target_model, plan.target_run) == (first["names"]["model"], first["run_id"])
    assert plan.target_config == first["names"]["production_endpoint_config"] and plan.recreate_config is None

    key = record_rollback(env["table"], plan, who=CALLER, reason="latency doubled")
    # moto has no UpdateEndpoint: the endpoint is made anew on the config the update ends on.
    env["sagemaker"].delete_endpoint(EndpointName=PRODUCTION)
    env["sagemaker"].create_endpoint(EndpointName=PRODUCTION, EndpointConfigName=plan.target_config)
    finish_rollback(env["table"], key, "SUCCEEDED")

    found = model_lineage(env["table"], PRODUCTION, sagemaker_client=env["sagemaker"])
    assert (found["run_id"], found["model"]) == (first["run_id"], first["names"]["model"])
    rollback = found["endpoint"]["deployments"][-1]
    assert rollback["kind"] == "rollback" and rollback["status"] == "SUCCEEDED"
    assert (rollback["who"], rollback["reason"]) == (CALLER, "latency doubled")
    assert (rollback["previous_model"], rollback["model"]) == (second["names"]["model"], first["names"]["model"])
    shown = render_model(found)
    assert (
        f"by {CALLER}: {second['names']['model']} -> {first['names']['model']} (SUCCEEDED), reason 'latency doubled'"
    ) in shown

    # Back on the first model, the second was rolled back from: nothing earlier remains.
    with pytest.raises(RollbackError) as refused:
        plan_rollback(env["table"], env["sagemaker"], PRODUCTION)
    assert str(refused.value) == (
        f"no previous approved model to roll back to on {PRODUCTION}: lineage records deployments of "
        f"{', '.join(sorted([first['names']['model'], second['names']['model']]))}, serving now "
        f"{first['names']['model']}, rolled back from {second['names']['model']} (name one with --to RUN)"
    )


def test_a_rejected_run_a_missing_model_and_a_busy_endpoint_are_refused(env, two_deploys):
    first, _ = two_deploys
    rejected = complete_run(env, "c.csv", b"x,y\n5,6\n", deploy=False, day=2)["run"]
    with pytest.raises(RollbackError, match=rf"^run {rejected['run_id']} was never approved \(status REJECTED, "):
        plan_rollback(env["table"], env["sagemaker"], PRODUCTION, rejected["run_id"])

    env["sagemaker"].delete_model(ModelName=first["names"]["model"])
    with pytest.raises(RollbackError) as missing:
        plan_rollback(env["table"], env["sagemaker"], PRODUCTION, first["run_id"])
    assert str(missing.value).startswith(
        f"model {first['names']['model']} of run {first['run_id']} no longer exists in SageMaker"
    )

    with pytest.raises(RollbackError, match=r"^endpoint stepml-nowhere does not exist"):
        plan_rollback(env["table"], env["sagemaker"], "stepml-nowhere")

    class Updating:
        def describe_endpoint(self, EndpointName: str) -> dict:
            return {"EndpointStatus": "Updating", "EndpointConfigName": "stepml-x"}

    with pytest.raises(RollbackError, match=f"^endpoint {PRODUCTION} is Updating: an update is already in progress"):
        plan_rollback(env["table"], Updating(), PRODUCTION)


def test_a_deleted_endpoint_config_is_recreated_from_the_runs_lineage(env, two_deploys):
    first, _ = two_deploys
    env["sagemaker"].delete_endpoint_config(EndpointConfigName=first["names"]["production_endpoint_config"])
    plan = plan_rollback(env["table"], env["sagemaker"], PRODUCTION, first["run_id"])
    request = plan.recreate_config
    assert plan.target_config == request["EndpointConfigName"]
    assert request["EndpointConfigName"].startswith(first["names"]["production_endpoint_config"] + "-rollback-")
    assert request["ProductionVariants"][0]["ModelName"] == first["names"]["model"]
    assert request["ProductionVariants"][0]["InstanceType"] == first["config"]["hosting"]["instance_type"]
    assert request["DataCaptureConfig"]["DestinationS3Uri"] == first["paths"]["data_capture"]
    assert "no longer exists" in plan.notes[0]
    env["sagemaker"].create_endpoint_config(**request)  # a request SageMaker accepts


def test_the_deployment_config_is_the_pipelines_once_its_substitutions_are_filled():
    text = (REPO_ROOT / "statemachine" / "pipeline.asl.json").read_text()
    with pytest.raises(RollbackError, match="unfilled substitutions"):
        deployment_config(text)
    filled = (
        text.replace("${ModelLatencyAlarmName}", "latency")
        .replace("${Invocation5xxAlarmName}", "5xx")
        .replace("${Invocation4xxAlarmName}", "4xx")
        .replace("${DeploymentBakingSeconds}", "600")
    )
    config = deployment_config(filled)
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    # The baking period is the template's number, evaluated as Step Functions evaluates StringToJson.
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert config["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "latency"},
        {"AlarmName": "5xx"},
        {"AlarmName": "4xx"},
    ]
    from_input = filled.replace('"TerminationWaitInSeconds": 300', '"TerminationWaitInSeconds.$": "$.run.wait"')
    with pytest.raises(RollbackError, match=r"takes TerminationWaitInSeconds\.\$ from a run's input"):
        deployment_config(from_input)
    with pytest.raises(RollbackError, match="no 'Update production endpoint' state"):
        deployment_config(json.dumps({"States": {}}))


def _resolve(env, event: dict, execution: str) -> dict:
    return resolve_run(
        event,
        ACCOUNT_EXECUTION + execution,
        table=env["table"],
        s3_client=env["s3"],
        sfn_client=boto3.client("stepfunctions"),
        settings=env["settings"],
    )


def test_a_reproduction_is_a_new_run_on_the_same_version_with_the_recorded_config(env):
    original = complete_run(env, "a.csv", b"x,y\n1,2\n")["run"]
    # The dataset's config changed since: the reproduction must not pick it up.
    changed = {**CHURN_CONFIG, "hyperparameters": {**CHURN_CONFIG["hyperparameters"], "max_depth": 9}}
    env["s3"].put_object(
        Bucket=env["settings"].artifact_bucket,
        Key=config.dataset_config_key("churn"),
        Body=json.dumps(changed).encode(),
    )
    request = {"reproduce_run_id": original["run_id"], "reproduce_request_id": "0123456789abcdef"}
    resolved = _resolve(env, request, "reproduce-1")
    run = resolved["run"]
    assert resolved["action"] == "start" and run["run_id"] != original["run_id"]
    assert run["run_id"].startswith("churn-") and run["reproduction_of"] == original["run_id"]
    assert run["input"] == original["input"]
    assert run["hyperparameters"] == original["hyperparameters"] and run["hyperparameters"]["max_depth"] == "4"
    assert run["config"] == original["config"]

    # The same request delivered again is the same run (its owner is gone here, so it resumes);
    # a resume keeps what the reproduction was started with; a new request is a new run.
    repeated = _resolve(env, request, "reproduce-2")
    assert (repeated["action"], repeated["run"]["run_id"]) == ("resume", run["run_id"])
    resumed = _resolve(env, {"resume_run_id": run["run_id"]}, "resume-1")["run"]
    assert resumed["reproduction_of"] == original["run_id"] and resumed["hyperparameters"]["max_depth"] == "4"
    again = _resolve(env, {**request, "reproduce_request_id": "fedcba9876543210"}, "reproduce-3")["run"]
    assert again["run_id"] not in (run["run_id"], original["run_id"])

    with pytest.raises(Exception, match="is not in lineage table"):
        _resolve(env, {**request, "reproduce_run_id": "churn-000000000000"}, "reproduce-4")


def test_against_a_stack_the_current_code_is_the_newest_runs(env):
    from stepml.cli.context import Target
    from stepml.cli.reproduce import _current_code

    complete_run(env, "a.csv", b"x,y\n1,2\n", day=0)
    newest = complete_run(env, "b.csv", b"x,y\n3,4\n", day=1)["run"]
    env["table"].update_item(
        Key={"pk": f"RUN#{newest['run_id']}", "sk": "RUN"},
        UpdateExpression="SET code_version = :v",
        ExpressionAttributeValues={":v": "abc123"},
    )
    target = Target(session=boto3.Session(), endpoint_url=None, outputs={})
    assert _current_code(target, env["table"]) == "abc123"
