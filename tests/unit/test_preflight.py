"""The pure parts of ``stepml preflight`` and the local cloud's account defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stepml.cli import preflight
from stepml.cli.preflight import (
    FAIL,
    OK,
    WARN,
    Check,
    InstanceNeed,
    PreflightError,
    Report,
    bind_stack_resources,
    external_layers,
    format_diagnostic,
    glue_version_offered,
    instance_needs,
    load_samconfig,
    named_at_deploy,
    parse_parameter_overrides,
)
from stepml.config import parse_dataset_config
from stepml.local import account_defaults
from stepml.local.provision import referenced_resources
from stepml.local.template import ResolvedTemplate, load_template
from tests.helpers import CHURN_CONFIG, REPO_ROOT

REGION = "us-east-1"
ACCOUNT = "111122223333"


def resolved(**overrides: str) -> ResolvedTemplate:
    return ResolvedTemplate(
        load_template(REPO_ROOT / "template.yaml"),
        stack_name="stepml-dev",
        region=REGION,
        account_id=ACCOUNT,
        parameter_overrides=overrides,
    )


def test_samconfig_environments_give_stack_region_and_parameters():
    dev = load_samconfig(REPO_ROOT, "dev")
    prod = load_samconfig(REPO_ROOT, "prod")

    assert (dev.stack_name, dev.region) == ("stepml-dev", "us-east-1")
    assert dev.parameters["ApprovalSenderEmail"] == "stepml-dev@example.com"
    assert dev.parameters["TrainingInstanceType"] == "ml.m5.large"
    assert prod.stack_name == "stepml-prod" and prod.parameters["TrainingInstanceType"] == "ml.m5.xlarge"
    with pytest.raises(PreflightError, match=r"no \[staging\] environment \(known: .*dev.*prod"):
        load_samconfig(REPO_ROOT, "staging")


def test_parameter_overrides_are_read_as_sam_deploy_takes_them():
    assert parse_parameter_overrides('A=1 B="two words" C=x=y') == {"A": "1", "B": "two words", "C": "x=y"}
    assert parse_parameter_overrides("") == {}
    with pytest.raises(PreflightError, match="KEY=VALUE"):
        parse_parameter_overrides("JustAName")


def test_instance_needs_count_the_test_endpoint_and_a_blue_green_deployment():
    churn = parse_dataset_config(CHURN_CONFIG, "churn.json")
    big = parse_dataset_config(
        {
            **CHURN_CONFIG,
            "name": "big",
            "training": {"instance_type": "ml.c5.xlarge", "instance_count": 3},
            "hosting": {"instance_type": None, "instance_count": 2},
        },
        "big.json",
    )

    needs = {(n.usage, n.instance_type): n for n in instance_needs("ml.m5.large", "ml.m5.large", [churn, big])}

    assert needs[("training job usage", "ml.m5.large")].count == 1
    assert needs[("training job usage", "ml.c5.xlarge")] == InstanceNeed(
        "training job usage", "ml.c5.xlarge", 3, "dataset big: training"
    )
    hosting = needs[("endpoint usage", "ml.m5.large")]
    assert hosting.count == 1 + 2 * 2  # the largest need of one run, not the sum over datasets
    assert hosting.quota_name == "ml.m5.large for endpoint usage"
    assert len(needs) == 3


def test_glue_regions_table_answers_only_for_the_versions_it_was_checked_for():
    assert glue_version_offered("5.0", "us-east-1") is True
    assert glue_version_offered("5.0", "eu-central-2") is True
    assert glue_version_offered("5.0", "xx-nowhere-1") is False
    assert glue_version_offered("9.9", "us-east-1") is None


def test_placeholders_that_cloudformation_names_at_deploy_are_recognised():
    template = resolved()
    substitutions = template.properties("PipelineStateMachine")["DefinitionSubstitutions"]

    assert referenced_resources(substitutions["ResolveRunFunctionArn"], template.resources) == {"ResolveRunFunction"}
    assert referenced_resources(substitutions["TrainingImage"], template.resources) == set()
    assert named_at_deploy(template, "ResolveRunFunction") is True  # no FunctionName
    assert named_at_deploy(template, "PreprocessJob") is False  # Name: ${AWS::StackName}-preprocess
    assert named_at_deploy(template, "ProductionModelLatencyAlarm") is False


def test_an_existing_stacks_physical_ids_fill_the_definition():
    template = resolved()
    bind_stack_resources(
        template,
        {
            "ResolveRunFunction": ("AWS::Lambda::Function", "stepml-dev-ResolveRunFunction-Ab12Cd34"),
            "SageMakerExecutionRole": ("AWS::IAM::Role", "stepml-dev-SageMakerExecutionRole-Zz9"),
            "ApprovalTopic": ("AWS::SNS::Topic", f"arn:aws:sns:{REGION}:{ACCOUNT}:stepml-dev-ApprovalTopic-Q1"),
            "NotInTheTemplate": ("AWS::SNS::Topic", "ignored"),
        },
    )

    definition = json.dumps(template.state_machine_definition("PipelineStateMachine", REPO_ROOT))

    assert f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stepml-dev-ResolveRunFunction-Ab12Cd34" in definition
    assert f"arn:aws:iam::{ACCOUNT}:role/stepml-dev-SageMakerExecutionRole-Zz9" in definition
    assert f"arn:aws:sns:{REGION}:{ACCOUNT}:stepml-dev-ApprovalTopic-Q1" in definition
    assert "${" not in definition


def test_external_layers_follow_the_pandas_layer_parameter():
    [(function, layer)] = external_layers(resolved())
    assert function == "EvaluateFunction"
    assert layer == f"{{{{resolve:ssm:{account_defaults.aws_sdk_pandas_parameter(REGION)}}}}}"

    arn = f"arn:aws:lambda:{REGION}:336392948345:layer:AWSSDKPandas-Python311:20"
    assert external_layers(resolved(AwsSdkPandasLayerArn=arn)) == [("EvaluateFunction", arn)]


def test_diagnostics_are_one_line_with_their_location():
    diagnostic = {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": "bad\n  field"}
    assert format_diagnostic({**diagnostic, "location": "/States/A"}) == (
        "ERROR SCHEMA_VALIDATION_FAILED at /States/A: bad field"
    )
    long = format_diagnostic({"severity": "WARNING", "code": "NO_DOLLAR", "message": "x" * 1000})
    assert long.startswith("WARNING NO_DOLLAR: xxx") and long.endswith("...") and len(long) < 330


def test_a_report_fails_on_any_fail_and_prints_the_fix_only_for_problems():
    report = Report(
        "s",
        "dev",
        REGION,
        ACCOUNT,
        [
            Check("a", OK, "fine", fix="never shown"),
            Check("b", WARN, "hmm", fix="look"),
            Check("c", FAIL, "broken", fix="run this", details=["where"]),
        ],
    )

    assert not report.ok
    assert report.lines() == [
        "OK    a: fine",
        "WARN  b: hmm -- fix: look",
        "FAIL  c: broken -- fix: run this",
        "      where",
        "1 OK, 1 WARN, 1 FAIL: fix the FAIL lines before deploying",
    ]
    assert report.to_dict()["checks"][2] == {
        "name": "c",
        "status": "FAIL",
        "summary": "broken",
        "fix": "run this",
        "details": ["where"],
        "data": {},
    }
    assert Report("s", "dev", REGION, ACCOUNT, [Check("a", WARN, "w")]).ok


def test_a_stack_cloudformation_cannot_update_fails_with_the_command_that_unblocks_it(aws_credentials):
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    context = preflight.CheckContext(
        root=REPO_ROOT,
        session=None,
        config_env="dev",
        stack_name="stepml-dev",
        region=REGION,
        samconfig_region=REGION,
        parameters={},
        dataset_config_paths=[],
        rerun="stepml preflight",
    )
    context._clients["cloudformation"] = cloudformation
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "stepml-dev",
                        "StackStatus": "ROLLBACK_COMPLETE",
                        "CreationTime": "2026-01-01T00:00:00Z",
                    }
                ]
            },
            {"StackName": "stepml-dev"},
        )
        stub.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": "stepml-dev"})
        check = preflight.checks.check_stack(context)

    assert check.status == FAIL
    assert "CloudFormation cannot update a stack in ROLLBACK_COMPLETE" in check.summary
    assert check.fix == "aws cloudformation delete-stack --stack-name stepml-dev --region us-east-1"


def test_missing_credentials_stop_after_the_identity_line(monkeypatch, tmp_path: Path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)

    report = preflight.run(REPO_ROOT, "dev", session=boto3.Session(region_name=REGION))

    [identity] = report.checks
    assert identity.status == FAIL and "no usable credentials" in identity.summary
    assert identity.fix == "aws configure (or aws sso login)"


def test_the_local_account_defaults_are_shaped_as_aws_publishes_them(aws_credentials):
    with mock_aws():
        account_defaults.seed(REGION, "123456789012")
        account_defaults.seed(REGION, "123456789012")  # idempotent

        parameter = boto3.client("ssm", region_name=REGION).get_parameter(
            Name="/aws/service/aws-sdk-pandas/3.17.1/us-east-1/py3.11/x86_64/layer-arn"
        )["Parameter"]
        assert re.fullmatch(
            r"arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:\d+", parameter["Value"]
        )
        layer = boto3.client("lambda", region_name=REGION).get_layer_version_by_arn(Arn=parameter["Value"])
        assert layer["CompatibleRuntimes"] == ["python3.11"]
        assert layer["CompatibleArchitectures"] == ["x86_64"]
    names = [quota.name for quota in account_defaults.SAGEMAKER_QUOTAS]
    assert "ml.m5.xlarge for training job usage" in names and "ml.m5.large for endpoint usage" in names
    assert len(set(q.code for q in account_defaults.SAGEMAKER_QUOTAS)) == len(names)
