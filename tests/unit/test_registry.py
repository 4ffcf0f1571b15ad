"""The model registry: a version per evaluated run, its status following the decision.

Resources come from template.yaml (the ``stack`` fixture) in moto in-process, with the local
cloud's SageMaker patches; the IAM tests evaluate the template's own statements, and one sends
the calls through the IAM gate as the Evaluate function's role.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml import config, preprocessor
from stepml.approval_links import form_token
from stepml.evaluation import EvaluationError, Evaluator
from stepml.lineage import LineageStore
from stepml.lineage_table import run_key, step_key
from stepml.local.template import ResolvedTemplate, load_template
from stepml.registry import (
    APPROVED,
    PENDING,
    REJECTED,
    ModelRegistry,
    RegistryError,
    group_name,
    registration_context,
)
from tests.conftest import REGION, TEMPLATE, new_session
from tests.helpers import load_handler, set_function_environment
from tests.unit.test_approvals import NOW, approval_env, create_approval
from tests.unit.test_evaluate import RUN_ID, Env, make_data, strong_rule

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
MODEL_DATA = f"s3://artifacts/models/churn/{RUN_ID}/stepml-{RUN_ID}-a1/output/model.tar.gz"
TRAINING_JOB = f"stepml-{RUN_ID}-a1"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PREPROCESSOR_DATA = f"s3://artifacts/processed/churn/{RUN_ID}/preprocessor/model.tar.gz"


class Registry:
    """The Evaluate function's settings, its lineage table with a run that trained, and clients."""

    def __init__(self, stack: Any, monkeypatch: pytest.MonkeyPatch):
        set_function_environment(monkeypatch, stack, "EvaluateFunction")
        self.settings = config.load_settings(load_handler("lambdas/evaluate/app.py").REQUIRED_SETTINGS)
        self.stack = stack
        self.session = new_session()
        self.sagemaker = self.session.client("sagemaker")
        self.table = self.session.resource("dynamodb").Table(self.settings.lineage_table)
        self.registry = ModelRegistry(self.sagemaker, self.settings.model_package_group_prefix)
        self.group = group_name(self.settings.model_package_group_prefix, "churn")
        self.evaluation = Env(stack)

    def trained(self, run_id: str = RUN_ID) -> None:
        """The lineage a run has once its training is recorded: the run item and the train step."""
        self.table.put_item(Item={**run_key(run_id), "run_id": run_id, "started_at": "2026-11-22T11:00:00.000Z"})
        self.table.put_item(
            Item={
                **step_key(run_id, "train"),
                "run_id": run_id,
                "step": "train",
                "status": "SUCCEEDED",
                "job": {"type": "sagemaker-training", "name": TRAINING_JOB},
                "parameters": {"training_image": IMAGE},
                "outputs": {"model_data": MODEL_DATA},
            }
        )

    def evaluator(self, registry: ModelRegistry | None = None) -> tuple[Evaluator, dict[str, Any]]:
        """The Evaluate service with a test split on S3 and a runtime that scores it, and the run."""
        features, labels = make_data()
        self.evaluation.put_binary_split(features, labels)
        runtime = self.evaluation.runtime(strong_rule)
        evaluator = Evaluator(
            settings=self.settings,
            session=self.session,
            runtime_client=runtime,
            s3_client=self.evaluation.s3,
            registry=registry or self.registry,
            lineage_table=self.table,
        )
        return evaluator, self.evaluation.run()

    def store(self, monkeypatch: pytest.MonkeyPatch) -> LineageStore:
        """RecordStep's lineage store (its environment, its clients)."""
        environment = self.stack.function_environment("RecordStepFunction")
        settings = config.load_settings([config.LINEAGE_TABLE, config.LINEAGE_RETENTION_DAYS], environment)
        return LineageStore.connect(settings, self.session)

    def versions(self) -> list[dict[str, Any]]:
        return self.sagemaker.list_model_packages(ModelPackageGroupName=self.group)["ModelPackageSummaryList"]

    def describe(self, arn: str) -> dict[str, Any]:
        return self.sagemaker.describe_model_package(ModelPackageName=arn)


@pytest.fixture
def reg(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Registry:
    registry = Registry(stack, monkeypatch)
    registry.trained()
    # The run's SageMaker model, as "Create model" makes it: the preprocessor, then XGBoost.
    registry.sagemaker.create_model(
        ModelName=TRAINING_JOB,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        Containers=[
            preprocessor.container(SKLEARN_IMAGE, PREPROCESSOR_DATA),
            {"Image": IMAGE, "ModelDataUrl": MODEL_DATA},
        ],
        EnableNetworkIsolation=True,
    )
    return registry


class NoCalls:
    """A SageMaker client that must not be used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"SageMaker {name} was called")


# --- registering ------------------------------------------------------------------------


def test_an_evaluated_model_becomes_a_pending_version_of_its_datasets_group(reg: Registry) -> None:
    evaluator, run = reg.evaluator()

    result = evaluator.evaluate(run, reg.evaluation.test_endpoint)

    package = result["model_package"]
    assert reg.group == f"{reg.stack.resolved.stack_name}-churn"
    assert (package["group"], package["version"], package["status"], package["created"]) == (
        reg.group,
        1,
        PENDING,
        True,
    )
    described = reg.describe(package["arn"])
    assert described["ModelApprovalStatus"] == PENDING
    assert described["ModelPackageGroupName"] == reg.group
    assert described["ModelPackageDescription"].startswith(f"stepml run {RUN_ID}: auc ")
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": result["report_uri"],
    }
    # The version is the model the test endpoint served: the inference pipeline, preprocessor first.
    first, second = described["InferenceSpecification"]["Containers"]
    assert (first["Image"], first["ModelDataUrl"]) == (SKLEARN_IMAGE, PREPROCESSOR_DATA)
    assert first["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert (second["Image"], second["ModelDataUrl"]) == (IMAGE, MODEL_DATA)
    assert described["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert described["CustomerMetadataProperties"] == {
        "stepml:run-id": RUN_ID,
        "stepml:dataset": "churn",
        "stepml:attempt": "1",
        "stepml:data-uri": "s3://uploads/incoming/churn/data.csv",
        "stepml:data-version-id": "v-7Hq2",
        "stepml:code-version": "abc1234",
        "stepml:training-job": TRAINING_JOB,
        "stepml:execution-arn": run["execution_arn"],
    }
    assert described["MetadataProperties"] == {"CommitId": "abc1234", "GeneratedBy": run["execution_arn"]}
    tags = reg.sagemaker.list_tags(ResourceArn=f"{package['arn'].rsplit(':', 1)[0]}:model-package-group/{reg.group}")
    assert {"Key": "stepml:dataset", "Value": "churn"} in tags["Tags"]


def test_a_retried_evaluation_finds_the_version_lineage_never_recorded(reg: Registry) -> None:
    evaluator, run = reg.evaluator()
    first = evaluator.evaluate(run, reg.evaluation.test_endpoint)["model_package"]

    # The Lambda died after CreateModelPackage: lineage has nothing, the group has the version.
    again = evaluator.evaluate(run, reg.evaluation.test_endpoint)["model_package"]

    assert (again["arn"], again["created"], again["status"]) == (first["arn"], False, PENDING)
    assert [v["ModelPackageArn"] for v in reg.versions()] == [first["arn"]]


def test_a_resumed_run_reuses_the_version_lineage_recorded_without_asking_sagemaker(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator, run = reg.evaluator()
    result = evaluator.evaluate(run, reg.evaluation.test_endpoint)
    reg.store(monkeypatch).record_step(run, "evaluate", "SUCCEEDED", result)
    recorded = reg.table.get_item(Key=run_key(RUN_ID))["Item"]["model_package"]
    assert recorded["arn"] == result["model_package"]["arn"] and recorded["status"] == PENDING
    step = reg.table.get_item(Key=step_key(RUN_ID, "evaluate"))["Item"]
    assert step["outputs"]["model_package"]["arn"] == recorded["arn"]

    resumed = {**run, "attempt": 2}
    quiet, _ = reg.evaluator(ModelRegistry(NoCalls(), reg.settings.model_package_group_prefix))
    again = quiet.evaluate(resumed, reg.evaluation.test_endpoint)["model_package"]

    assert (again["arn"], again["created"]) == (recorded["arn"], False)
    assert len(reg.versions()) == 1


def test_each_run_of_a_dataset_is_the_next_version_of_its_group(reg: Registry) -> None:
    evaluator, run = reg.evaluator()
    first = evaluator.evaluate(run, reg.evaluation.test_endpoint)["model_package"]
    other = "churn-0a1b2c3d4e5f"
    reg.trained(other)

    second = evaluator.evaluate({**run, "run_id": other}, reg.evaluation.test_endpoint)["model_package"]

    assert (first["version"], second["version"]) == (1, 2)
    assert second["arn"].endswith(f"model-package/{reg.group}/2")


def test_a_registry_failure_fails_the_evaluation_naming_the_group(reg: Registry) -> None:
    reg.table.delete_item(Key=step_key(RUN_ID, "train"))
    evaluator, run = reg.evaluator()

    with pytest.raises(EvaluationError, match=f"^model registry: run {RUN_ID}: lineage has no training image"):
        evaluator.evaluate(run, reg.evaluation.test_endpoint)
    with pytest.raises(RegistryError, match="SageMaker allows 1-63 letters, digits and single dashes"):
        group_name("x" * 40, "a-dataset-name-of-thirty-chars")


def test_the_lineage_context_names_what_training_made(reg: Registry) -> None:
    context = registration_context(reg.table, RUN_ID)
    assert context.recorded is None
    assert context.training == {"job_name": TRAINING_JOB, "image": IMAGE, "model_data": MODEL_DATA}
    assert context.started_at is not None and context.started_at.isoformat() == "2026-11-22T11:00:00+00:00"


# --- the decision, the gate, an expired approval ------------------------------------------


def _registered(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], LineageStore, str]:
    evaluator, run = reg.evaluator()
    result = evaluator.evaluate(run, reg.evaluation.test_endpoint)
    store = reg.store(monkeypatch)
    store.record_step(run, "evaluate", "SUCCEEDED", result)
    return run, store, result["model_package"]["arn"]


@pytest.mark.parametrize(
    ("decision", "status", "description"),
    [
        ("approve", APPROVED, "Approved by approver@example.com at 2026-11-22T13:00:00.000Z: ship it"),
        ("reject", REJECTED, "Rejected by approver@example.com at 2026-11-22T13:00:00.000Z: ship it"),
    ],
)
def test_the_approvers_decision_is_the_versions_status_at_once_and_again_when_recorded(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, mail_outbox: Any, decision: str, status: str, description: str
) -> None:
    run, store, arn = _registered(reg, monkeypatch)
    env = approval_env(reg.stack, mail_outbox)
    approval_id, sig = create_approval(env, model_package={"arn": arn, "group": reg.group, "version": 1})
    decisions = replace(env.decisions(NOW + timedelta(hours=1)), registry=ModelRegistry(reg.sagemaker))

    record = decisions.decide(
        approval_id,
        decision=decision,
        approver="0",
        comment="ship it",
        sig=sig,
        csrf=form_token(env.kms, env.key_id, approval_id, 0),
    )

    described = reg.describe(arn)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (status, description)
    # The update keeps the lineage the version was registered with.
    assert described["CustomerMetadataProperties"]["stepml:run-id"] == RUN_ID
    # RecordStep sets the same again (it would repair an update the approval API could not make).
    reg.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=PENDING, ApprovalDescription="x")
    output = json.loads(env.sfn.calls[0]["output"])
    assert output["decision"] == record.decision == decision
    store.record_step(run, "approval", "SUCCEEDED", output)
    described = reg.describe(arn)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (status, description)
    noted = reg.table.get_item(Key=run_key(RUN_ID))["Item"]["model_package"]
    assert (noted["status"], noted["status_description"]) == (status, description)


def test_a_failed_registry_update_does_not_undo_the_delivered_decision(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, mail_outbox: Any
) -> None:
    _, _, arn = _registered(reg, monkeypatch)
    env = approval_env(reg.stack, mail_outbox)
    approval_id, sig = create_approval(env, model_package={"arn": arn + "0"})  # a version that does not exist
    decisions = replace(env.decisions(NOW + timedelta(hours=1)), registry=ModelRegistry(reg.sagemaker))

    record = decisions.decide(
        approval_id,
        decision="approve",
        approver="0",
        comment="",
        sig=sig,
        csrf=form_token(env.kms, env.key_id, approval_id, 0),
    )

    assert record.decision == "approve" and len(env.sfn.calls) == 1
    assert reg.describe(arn)["ModelApprovalStatus"] == PENDING


@pytest.mark.parametrize(
    ("outcome", "description"),
    [
        ("REJECTED_BY_GATE", "Rejected by the evaluation gate: auc 0.61 does not meet the threshold 0.7"),
        ("APPROVAL_TIMED_OUT", "Rejected: not approved before the approval link expired: auc 0.61 does not meet"),
    ],
)
def test_the_gate_and_an_expired_approval_reject_the_version(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, outcome: str, description: str
) -> None:
    run, store, arn = _registered(reg, monkeypatch)

    reason = "auc 0.61 does not meet the threshold 0.7"
    store.record_step(run, "run", outcome, {"status": outcome, "reason": reason})

    described = reg.describe(arn)
    assert described["ModelApprovalStatus"] == REJECTED
    assert described["ApprovalDescription"].startswith(description)
    assert reg.table.get_item(Key=run_key(RUN_ID))["Item"]["model_package"]["status"] == REJECTED


def test_a_failed_run_keeps_its_version_pending_for_the_resume(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    run, store, arn = _registered(reg, monkeypatch)
    state = {"run": run, "steps": {}, "error": {"Error": "States.Timeout", "Cause": "slow"}, "failed_step": "deploy"}

    store.record_failure(state, run["execution_arn"])

    assert reg.describe(arn)["ModelApprovalStatus"] == PENDING


# --- moto answers as AWS does ---------------------------------------------------------------


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


def test_moto_is_as_strict_as_aws_about_the_registry(stack: Any) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    group_arn = sagemaker.create_model_package_group(ModelPackageGroupName="g-one")["ModelPackageGroupArn"]
    with pytest.raises(ClientError) as raised:
        sagemaker.create_model_package_group(ModelPackageGroupName="g-one")
    assert _error(raised) == ("ValidationException", f"Model Package Group already exists: {group_arn}")
    with pytest.raises(ClientError) as raised:
        sagemaker.create_model_package_group(ModelPackageGroupName="not_a_name")
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "modelPackageGroupName" in raised.value.response["Error"]["Message"]

    spec = {"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}], "SupportedContentTypes": ["text/csv"]}
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="g-one",
        InferenceSpecification={**spec, "SupportedResponseMIMETypes": ["text/csv"]},
        ModelApprovalStatus=PENDING,
        CustomerMetadataProperties={"stepml:run-id": "r1"},
    )["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=APPROVED, ApprovalDescription="by ana")
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"stepml:note": "n"})
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (APPROVED, "by ana")
    assert described["CustomerMetadataProperties"] == {"stepml:run-id": "r1", "stepml:note": "n"}

    with pytest.raises(ClientError) as raised:
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Deployed")
    assert _error(raised) == (
        "ValidationException",
        "1 validation error detected in UpdateModelPackage: Value 'Deployed' at 'modelApprovalStatus' failed to "
        "satisfy constraint: Member must satisfy enum value set: [Approved, Rejected, PendingManualApproval]",
    )
    unversioned = sagemaker.create_model_package(ModelPackageName="loose", InferenceSpecification=spec)
    with pytest.raises(ClientError) as raised:
        sagemaker.update_model_package(ModelPackageArn=unversioned["ModelPackageArn"], ModelApprovalStatus=APPROVED)
    assert _error(raised) == (
        "ValidationException",
        "ModelApprovalStatus can only be set on a versioned model package.",
    )


# --- IAM: the template's statements, and the gate refusing what they leave out ---------------


def _statements(logical_id: str) -> list[dict[str, Any]]:
    resolved = ResolvedTemplate(load_template(TEMPLATE), region=REGION)
    return [s for policy in resolved.resolved_properties(logical_id)["Policies"] for s in policy["Statement"]]


def _package_calls(sagemaker: Any, group: str) -> str:
    sagemaker.create_model_package_group(ModelPackageGroupName=group, Tags=[{"Key": "stepml:dataset", "Value": "d"}])
    sagemaker.list_model_packages(ModelPackageGroupName=group)
    return sagemaker.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus=PENDING,
    )["ModelPackageArn"]


def test_the_gate_lets_the_evaluate_role_register_and_refuses_what_its_statements_leave_out(gated_moto: Any) -> None:
    statements = _statements("EvaluateFunction")
    stack_name = ResolvedTemplate(load_template(TEMPLATE), region=REGION).stack_name
    group = f"{stack_name}-churn"
    principals = gated_moto.authorizer.principals

    def as_role(name: str, kept: list[dict[str, Any]]) -> tuple[Any, str]:
        role = gated_moto.role(name, "lambda.amazonaws.com", kept)
        credentials = principals.credentials(role, name).client_kwargs()
        return gated_moto.client("sagemaker", **credentials), f"arn:aws:sts::123456789012:assumed-role/{name}/{name}"

    evaluate, _ = as_role("evaluate", statements)
    arn = _package_calls(evaluate, group)
    assert arn.endswith(f":model-package/{group}/1")
    with pytest.raises(ClientError) as raised:  # the function never approves what it registers
        evaluate.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"]},
            ModelApprovalStatus=APPROVED,
        )
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as raised:  # nor a group of another stack
        evaluate.create_model_package_group(ModelPackageGroupName="other-stack-churn")
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"

    without = [s for s in statements if s.get("Sid") != "RegisterModelVersions"]
    denied, session_arn = as_role("evaluate-without-register", without)
    with pytest.raises(ClientError) as raised:
        _package_calls(denied, f"{stack_name}-other")
    assert _error(raised) == (
        "AccessDeniedException",
        f"User: {session_arn} is not authorized to perform: sagemaker:CreateModelPackage on resource: "
        f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{stack_name}-other because no identity-based "
        "policy allows the sagemaker:CreateModelPackage action",
    )


def test_only_the_decision_makers_may_set_a_status_and_never_back_to_pending(gated_moto: Any) -> None:
    stack_name = ResolvedTemplate(load_template(TEMPLATE), region=REGION).stack_name
    group = f"{stack_name}-churn"
    arn = _package_calls(gated_moto.client("sagemaker"), group)
    principals = gated_moto.authorizer.principals
    for logical_id, allowed in (
        ("ApprovalApiFunction", (APPROVED, REJECTED)),
        ("RecordStepFunction", (APPROVED, REJECTED)),
        ("RequestApprovalFunction", ()),
    ):
        role = gated_moto.role(logical_id, "lambda.amazonaws.com", _statements(logical_id))
        client = gated_moto.client("sagemaker", **principals.credentials(role, logical_id).client_kwargs())
        for status in (APPROVED, REJECTED, PENDING):
            call = {"ModelPackageArn": arn, "ModelApprovalStatus": status, "ApprovalDescription": "d"}
            if status in allowed:
                client.update_model_package(**call)
                continue
            with pytest.raises(ClientError) as raised:
                client.update_model_package(**call)
            assert raised.value.response["Error"]["Code"] == "AccessDeniedException", (logical_id, status)


def test_runs_show_prints_the_version_and_its_status(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stepml.cli.main import main

    run, store, arn = _registered(reg, monkeypatch)
    reg.table.update_item(
        Key=run_key(RUN_ID),
        UpdateExpression="SET #i = :i",
        ExpressionAttributeNames={"#i": "input"},
        ExpressionAttributeValues={":i": run["input"]},
    )
    store.record_step(run, "run", "REJECTED_BY_GATE", {"status": "REJECTED_BY_GATE", "reason": "auc too low"})
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"LineageTableName": {"Value": reg.settings.lineage_table}},
    }
    with pytest.warns(UserWarning, match="WaitConditionHandle"):  # moto creates no such resource
        boto3.client("cloudformation").create_stack(StackName="stepml-dev", TemplateBody=json.dumps(template))

    assert main(["runs", "show", RUN_ID, "--stack-name", "stepml-dev"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"model package {arn}  status Rejected" in lines
    assert "  Rejected by the evaluation gate: auc too low" in lines
