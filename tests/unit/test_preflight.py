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
    transform_type_problems,
)
from stepml.cli.preflight.capacity import check_quotas, check_transform_types
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
    assert hosting.quota_name == "ml.m5.large for endpoint usage" and hosting.above_rows is None
    transform = needs[("transform job usage", "ml.m5.large")]
    assert transform.quota_name == "ml.m5.large for transform job usage"
    assert (transform.count, transform.above_rows) == (2, 250_000)  # challenger and champion, past the threshold
    assert len(needs) == 4


def _config(name: str, hosting_type: str | None, threshold: int = 250_000):
    raw = {
        **CHURN_CONFIG,
        "name": name,
        "hosting": {"instance_type": hosting_type},
        "evaluation": {"batch_transform_above_rows": threshold},
    }
    return parse_dataset_config(raw, f"{name}.json")


def test_a_config_that_sends_every_run_to_batch_transform_needs_its_quota_on_every_run():
    needs = {
        (n.usage, n.instance_type): n
        for n in instance_needs("ml.m5.xlarge", "ml.m5.large", [_config("a", None, 1_000), _config("b", None, 0)])
    }
    transform = needs[("transform job usage", "ml.m5.large")]
    assert transform.above_rows is None and transform.count == 2
    assert transform.reason == "dataset b: challenger 1 + champion 1 transform jobs at once on every run"
    lower = {
        (n.usage, n.instance_type): n
        for n in instance_needs("ml.m5.xlarge", "ml.m5.large", [_config("a", None, 1_000)])
    }
    assert lower[("transform job usage", "ml.m5.large")].reason == (
        "dataset a: challenger 1 + champion 1 transform jobs at once, for a run whose test split passes "
        "evaluation.batch_transform_above_rows (1,000 rows)"
    )
    assert lower[("transform job usage", "ml.m5.large")].above_rows == 1_000


def test_types_batch_transform_refuses_get_no_transform_quota_but_a_problem_naming_them():
    configs = [_config("small", "ml.c5.large"), _config("churn", None)]
    usages = {(n.usage, n.instance_type) for n in instance_needs("ml.m5.xlarge", "ml.t2.medium", configs)}
    assert ("transform job usage", "ml.t2.medium") not in usages and ("endpoint usage", "ml.t2.medium") in usages
    assert not any(usage == "transform job usage" for usage, _ in usages)

    problems = transform_type_problems("ml.t2.medium", configs)

    assert problems == [
        (
            "the stack's HostingInstanceType ml.t2.medium is not a type Batch Transform accepts, and every dataset "
            "config with hosting.instance_type null scores a large test split on it",
            "set HostingInstanceType to a type Batch Transform accepts, such as ml.m5.large (samconfig.toml "
            "parameter_overrides, or --parameter-overrides)",
            False,
        ),
        (
            "dataset small: hosting.instance_type ml.c5.large is not a type Batch Transform accepts, and a run whose "
            "test split passes evaluation.batch_transform_above_rows (250,000 rows) scores it with transform jobs on "
            "that type",
            "set hosting.instance_type of dataset small to a type Batch Transform accepts, such as ml.m5.large",
            False,
        ),
    ]
    assert transform_type_problems("ml.m5.large", [_config("churn", None), _config("gpu", "ml.g5.xlarge")]) == []


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


# --- batch-transform and the transform job quota -------------------------------------------------


def _context(tmp_path: Path, configs=(), **overrides: str) -> preflight.CheckContext:
    paths = []
    for config in configs:
        path = tmp_path / f"{config['name']}.json"
        path.write_text(json.dumps(config))
        paths.append(path)
    context = preflight.CheckContext(
        root=REPO_ROOT,
        session=None,
        config_env="dev",
        stack_name="stepml-dev",
        region=REGION,
        samconfig_region=REGION,
        parameters=overrides,
        dataset_config_paths=paths,
        rerun="stepml preflight",
    )
    context.resolved = resolved(**overrides)
    return context


def test_batch_transform_warns_on_a_hosting_type_transform_jobs_refuse(tmp_path: Path):
    small = {**CHURN_CONFIG, "name": "small", "hosting": {"instance_type": "ml.c5.large"}}

    check = check_transform_types(_context(tmp_path, [small], HostingInstanceType="ml.t2.medium"))

    # Only a run past the threshold would fail, so the endpoint-only runs of such a type still work.
    assert check.status == WARN and check.name == "batch-transform"
    assert check.summary.startswith(
        "the stack's HostingInstanceType ml.t2.medium is not a type Batch Transform accepts"
    )
    assert "; dataset small: hosting.instance_type ml.c5.large is not a type Batch Transform accepts" in check.summary
    assert check.fix.startswith("set HostingInstanceType to a type Batch Transform accepts, such as ml.m5.large")
    assert check.fix.endswith(
        "set hosting.instance_type of dataset small to a type Batch Transform accepts, such as ml.m5.large"
    )


def test_batch_transform_fails_when_a_config_on_such_a_type_scores_every_run_in_batch(tmp_path: Path):
    always = {
        **CHURN_CONFIG,
        "name": "always",
        "evaluation": {**CHURN_CONFIG.get("evaluation", {}), "batch_transform_above_rows": 0},
    }
    small = {**CHURN_CONFIG, "name": "small", "hosting": {"instance_type": "ml.c5.large"}}

    check = check_transform_types(_context(tmp_path, [always, small], HostingInstanceType="ml.t2.medium"))

    assert check.status == FAIL
    assert check.summary.startswith(
        "the stack's HostingInstanceType ml.t2.medium is not a type Batch Transform accepts, and every dataset config "
        "with hosting.instance_type null scores a large test split on it; dataset small:"
    )


def test_batch_transform_is_ok_for_the_template_default_and_counts_the_configs(tmp_path: Path):
    check = check_transform_types(_context(tmp_path, [CHURN_CONFIG]))
    assert check.status == OK
    assert check.summary == (
        "Batch Transform accepts the hosting type(s) of the stack default and 1 dataset config(s): ml.m5.large"
    )


def _quota(name: str, value: float, code: str) -> dict:
    return {"ServiceCode": "sagemaker", "QuotaName": name, "QuotaCode": code, "Value": value}


def _check_quotas(context: preflight.CheckContext, transform_quota: float) -> Check:
    client = boto3.client("service-quotas", region_name=REGION)
    context._clients["service-quotas"] = client
    quotas = [
        _quota("ml.m5.xlarge for training job usage", 4, "L-T"),
        _quota("ml.m5.large for endpoint usage", 4, "L-E"),
        _quota("ml.m5.large for transform job usage", transform_quota, "L-X"),
    ]
    with Stubber(client) as stub:
        stub.add_response("list_service_quotas", {"Quotas": quotas}, {"ServiceCode": "sagemaker"})
        return check_quotas(context)


def test_a_transform_quota_only_large_splits_need_warns_and_says_which_runs_fail(tmp_path: Path, aws_credentials):
    check = _check_quotas(_context(tmp_path), transform_quota=1)

    assert check.status == WARN
    assert check.summary == (
        "'ml.m5.large for transform job usage' is 1 in us-east-1, a run needs 2 (the stack's default hosting "
        "instance: challenger 1 + champion 1 transform jobs at once, for a run whose test split passes "
        "evaluation.batch_transform_above_rows (default 250,000 rows)); only such a run fails, at its transform "
        "jobs after Glue and training"
    )
    assert "--quota-code L-X --desired-value 2 --region us-east-1" in check.fix
    assert "ml.m5.large for transform job usage: quota 1, needs 2" in check.details[2]
    assert _check_quotas(_context(tmp_path), transform_quota=2).status == OK


def test_a_transform_quota_every_run_needs_fails(tmp_path: Path, aws_credentials):
    always = {**CHURN_CONFIG, "evaluation": {"batch_transform_above_rows": 0}}

    check = _check_quotas(_context(tmp_path, [always]), transform_quota=0)

    assert check.status == FAIL
    assert check.summary == (
        "'ml.m5.large for transform job usage' is 0 in us-east-1, a run needs 2 (dataset churn: challenger 1 + "
        "champion 1 transform jobs at once on every run)"
    )


def test_the_local_cloud_seeds_transform_quotas_only_for_types_transform_jobs_take():
    from stepml.test_scoring import transform_accepts

    transform = [q for q in account_defaults.SAGEMAKER_QUOTAS if q.name.endswith(" for transform job usage")]
    types = {q.name.split(" ", 1)[0]: q.value for q in transform}
    assert types["ml.m5.large"] >= 2 and types["ml.g5.xlarge"] == 0
    assert all(transform_accepts(instance_type) for instance_type in types)
