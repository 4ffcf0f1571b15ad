"""``stepml preflight`` against a started local cloud, which answers as AWS does.

The cloud runs this repository's template with the samconfig ``dev`` parameters, so preflight
of ``--config-env dev`` checks what the cloud holds. Each test that breaks something puts it back:
the cloud is shared by the module.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from stepml.cli import preflight
from stepml.cli.main import main
from stepml.local import account_defaults
from tests.helpers import CHURN_CONFIG, REPO_ROOT

SENDER = "stepml-dev@example.com"  # samconfig.toml [dev] ApprovalSenderEmail
APPROVER = "approver@example.com"  # samconfig.toml [dev] ApproverEmail
REGION = "us-east-1"
PANDAS_PARAMETER = account_defaults.aws_sdk_pandas_parameter(REGION)


def check(report: preflight.Report, name: str) -> preflight.Check:
    return report.check(name)


@pytest.fixture
def run_cli(cloud, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = main(["preflight", "--root", str(REPO_ROOT), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def sesv2(cloud):
    return boto3.client("sesv2")


def test_every_check_is_ok_against_the_local_cloud(run_cli):
    code, out, err = run_cli()

    assert code == 0, out + err
    lines = [line for line in out.splitlines() if line[:4] in ("OK  ", "WARN", "FAIL")]
    assert [line.split(":", 1)[0].split()[-1] for line in lines] == [
        "identity",
        "stack",
        "definition",
        "ses-sender",
        "layers",
        "xgboost-image",
        "batch-transform",
        "quotas",
        "glue",
    ]
    assert all(line.startswith("OK  ") for line in lines), out
    assert "ValidateStateMachineDefinition (STANDARD) accepts statemachine/pipeline.asl.json" in out
    assert f"sender {SENDER} is verified for sending in {REGION}" in out
    assert f"{PANDAS_PARAMETER} = arn:aws:lambda:{REGION}:336392948345:layer:AWSSDKPandas-Python311:" in out
    assert "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1" in out
    assert "ml.m5.large for endpoint usage: quota 4, needs 3" in out
    assert "ml.m5.large for transform job usage: quota 4, needs 2" in out
    assert out.rstrip().endswith("9 OK, 0 WARN, 0 FAIL: ready to deploy")


def test_json_output_is_the_same_report(run_cli):
    code, out, _ = run_cli("--json")

    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["region"] == REGION and report["stack_name"] == "stepml-dev"
    definition = next(c for c in report["checks"] if c["name"] == "definition")
    assert definition["status"] == "OK"
    assert definition["data"]["result"] == "OK"
    # Nothing of the stack exists in this account, so the function ARNs are the names it will create.
    assert "ResolveRunFunctionArn" in definition["data"]["guessed_placeholders"]


def test_an_unverified_sender_fails_with_the_command_that_verifies_it(run_cli, sesv2):
    sesv2.delete_email_identity(EmailIdentity=SENDER)
    try:
        code, out, _ = run_cli()
    finally:
        sesv2.create_email_identity(EmailIdentity=SENDER)

    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert f"ses-sender: ApprovalSenderEmail {SENDER} (and its domain) is no SES identity in {REGION}" in line
    assert f"fix: aws sesv2 create-email-identity --email-identity {SENDER} --region {REGION}" in line


def test_in_the_ses_sandbox_the_approver_must_be_verified_too(cloud, sesv2):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sesv2.models import sesv2_backends

    status = account_defaults.ses_account(sesv2_backends[DEFAULT_ACCOUNT_ID][REGION])
    status.production_access_enabled = False
    try:
        refused = check(preflight.run(REPO_ROOT, "dev"), "ses-sender")
        sesv2.create_email_identity(EmailIdentity=APPROVER)
        try:
            sandboxed = check(preflight.run(REPO_ROOT, "dev"), "ses-sender")
        finally:
            sesv2.delete_email_identity(EmailIdentity=APPROVER)
    finally:
        status.production_access_enabled = True

    assert refused.status == "FAIL"
    assert "the account is in the SES sandbox" in refused.summary
    assert f"ApproverEmail {APPROVER} is not verified" in refused.summary
    assert f"aws sesv2 create-email-identity --email-identity {APPROVER} --region {REGION}" in refused.fix
    assert "aws sesv2 put-account-details --production-access-enabled" in refused.fix
    assert sandboxed.status == "WARN" and "only verified addresses receive mail" in sandboxed.summary


@pytest.fixture
def pandas_parameter_deleted(cloud) -> Iterator[None]:
    boto3.client("ssm").delete_parameter(Name=PANDAS_PARAMETER)
    yield
    from moto.core import DEFAULT_ACCOUNT_ID

    account_defaults.seed(REGION, DEFAULT_ACCOUNT_ID)


def test_a_missing_pandas_layer_parameter_fails_and_says_to_set_the_layer_arn(pandas_parameter_deleted):
    report = preflight.run(REPO_ROOT, "dev")

    layers = check(report, "layers")
    assert not report.ok and layers.status == "FAIL"
    assert f"EvaluateFunction: public SSM parameter {PANDAS_PARAMETER} does not exist in {REGION}" in layers.summary
    assert "set AwsSdkPandasLayerArn to the layer's ARN for this region" in layers.fix


def test_an_explicit_pandas_layer_arn_is_checked_with_get_layer_version_by_arn(cloud):
    published = boto3.client("ssm").get_parameter(Name=PANDAS_PARAMETER)["Parameter"]["Value"]
    missing = published.rsplit(":", 1)[0] + ":999"

    good = check(preflight.run(REPO_ROOT, "dev", parameter_overrides={"AwsSdkPandasLayerArn": published}), "layers")
    bad = check(preflight.run(REPO_ROOT, "dev", parameter_overrides={"AwsSdkPandasLayerArn": missing}), "layers")

    assert good.status == "OK" and "1 external layer(s) exist" in good.summary
    assert bad.status == "FAIL"
    assert f"EvaluateFunction: layer {missing} does not exist in {REGION}" in bad.summary
    assert "ResourceNotFoundException" in bad.summary
    assert "set AwsSdkPandasLayerArn to a layer version that exists in this region" in bad.fix


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The files preflight reads (template, samconfig, definition) in a folder of their own."""
    for name in ("template.yaml", "samconfig.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "statemachine", tmp_path / "statemachine")
    return tmp_path


def test_a_definition_step_functions_refuses_fails_with_each_diagnostic(cloud, project_copy):
    path = project_copy / "statemachine" / "pipeline.asl.json"
    definition = json.loads(path.read_text())
    definition["States"]["Train model"]["Parameters"]["ResourceConfig"]["VolumeSizeInGb"] = 10
    path.write_text(json.dumps(definition, indent=2))

    code = main(["preflight", "--root", str(project_copy)])
    report = preflight.run(project_copy, "dev")

    result = check(report, "definition")
    assert code == 1 and result.status == "FAIL"
    assert (
        "ValidateStateMachineDefinition (STANDARD) refuses statemachine/pipeline.asl.json: 1 error(s)" in result.summary
    )
    assert result.details == [
        'ERROR SCHEMA_VALIDATION_FAILED at /States/Train model/Parameters: The field "VolumeSizeInGb" '
        "is not supported by Step Functions"
    ]
    assert result.fix.startswith("edit statemachine/pipeline.asl.json at the locations below, then stepml preflight")


def test_an_unknown_state_field_is_refused_by_the_parser(cloud, project_copy):
    path = project_copy / "statemachine" / "pipeline.asl.json"
    definition = json.loads(path.read_text())
    definition["States"]["Train model"]["TimeoutSecondz"] = 60
    path.write_text(json.dumps(definition, indent=2))

    result = check(preflight.run(project_copy, "dev"), "definition")

    assert result.status == "FAIL"
    [diagnostic] = result.details
    # AWS's ValidateStateMachineDefinition answer: the code, the state's location, the field.
    assert diagnostic == (
        "ERROR SCHEMA_VALIDATION_FAILED at /States/Train model: Field 'TimeoutSecondz' is not supported"
    )


def test_a_region_without_the_xgboost_image_fails_and_names_the_mapping(cloud):
    report = preflight.run(REPO_ROOT, "dev", region="mx-central-1")

    image = check(report, "xgboost-image")
    assert image.status == "FAIL"
    assert "SageMaker's XGBoost 1.7-1 is not offered in mx-central-1" in image.summary
    assert "deploy to a region listed under template.yaml Mappings XGBoostImageRegistry" in image.fix
    definition = check(report, "definition")
    assert definition.status == "FAIL"
    assert "Fn::FindInMap has no XGBoostImageRegistry/mx-central-1/Account" in definition.summary
    identity = check(report, "identity")
    assert identity.status == "WARN" and "samconfig.toml [dev] deploys to us-east-1" in identity.summary


def test_a_zero_quota_fails_with_the_request_command(cloud):
    report = preflight.run(REPO_ROOT, "dev", parameter_overrides={"TrainingInstanceType": "ml.g5.xlarge"})

    quotas = check(report, "quotas")
    assert quotas.status == "FAIL"
    assert "'ml.g5.xlarge for training job usage' is 0 in us-east-1, a run needs 1" in quotas.summary
    assert "aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-" in quotas.fix
    assert "--desired-value 1 --region us-east-1" in quotas.fix


def test_a_dataset_config_that_needs_more_endpoint_instances_than_the_quota_fails(cloud, tmp_path):
    config = {**CHURN_CONFIG, "hosting": {"instance_type": None, "instance_count": 2}}
    path = tmp_path / "churn.json"
    path.write_text(json.dumps(config))

    quotas = check(preflight.run(REPO_ROOT, "dev", dataset_configs=[path]), "quotas")

    assert quotas.status == "FAIL"
    assert "'ml.m5.large for endpoint usage' is 4 in us-east-1, a run needs 5" in quotas.summary
    assert "dataset churn: test endpoint 1 + production 2 + blue/green replacement 2" in quotas.summary


def test_a_dataset_config_hosting_on_a_type_transform_jobs_refuse_warns_in_batch_transform(cloud, tmp_path):
    config = {**CHURN_CONFIG, "hosting": {"instance_type": "ml.t2.medium"}}
    path = tmp_path / "churn.json"
    path.write_text(json.dumps(config))

    report = preflight.run(REPO_ROOT, "dev", dataset_configs=[path])

    transform = check(report, "batch-transform")
    assert transform.status == "WARN"
    assert transform.summary == (
        "dataset churn: hosting.instance_type ml.t2.medium is not a type Batch Transform accepts, and a run whose "
        "test split passes evaluation.batch_transform_above_rows (250,000 rows) scores it with transform jobs on "
        "that type"
    )
    # The endpoints fit ml.t2.medium's endpoint quota; no transform quota is asked for a type with none.
    quotas = check(report, "quotas")
    assert quotas.status == "OK", quotas.summary
    assert not any("ml.t2.medium for transform job usage" in line for line in quotas.details)
