"""Provisioning the whole template into moto, with a recording stand-in for the local runtime."""

from __future__ import annotations

import hashlib
import json
import re

import boto3
import pytest
from moto import mock_aws

from stepml import packaging
from stepml.local.cloud import resource_policy_owners
from stepml.local.iam.gate import MotoPolicies
from stepml.local.provision import ProvisionError, provision
from stepml.local.template import ResolvedTemplate, TemplateError, load_template
from tests.conftest import TEMPLATE, new_session
from tests.helpers import REPO_ROOT


class RecordingRuntime:
    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.functions = {}
        self.routes = {}
        self.glue_jobs = {}

    def register_function(self, spec):
        self.functions[spec.name] = spec

    def register_routes(self, api_logical_id, routes):
        self.routes.setdefault(api_logical_id, []).extend(routes)

    def register_glue_job(self, name, script_path):
        self.glue_jobs[name] = script_path

    def layer_dir(self, logical_id):
        return self.work_dir / "layers" / logical_id


def test_every_resource_of_the_template_is_created(aws_credentials, tmp_path):
    runtime = RecordingRuntime(tmp_path)
    # SAM's function roles attach AWS managed policies (AWSLambdaBasicExecutionRole), which moto
    # in-process knows only when asked to load them.
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        stack = provision(
            TEMPLATE,
            new_session(),
            stack_name="stepml-test",
            # The sign-in on: its conditional resources (the Cognito user pool) are created too.
            parameter_overrides={"ApprovalBaseUrl": "http://127.0.0.1:9999", "ApprovalSignIn": "cognito"},
            runtime=runtime,
        )
        template = load_template(TEMPLATE)
        assert set(stack.created) == set(template["Resources"])
        sfn = boto3.client("stepfunctions")
        machine = sfn.describe_state_machine(stateMachineArn=stack.physical_id("PipelineStateMachine"))
        definition = json.loads(machine["definition"])
        resolve = definition["States"]["Resolve run"]["Parameters"]["FunctionName"]
        assert resolve == runtime.functions[stack.resolved.physical_ids["ResolveRunFunction"]].arn
        job = boto3.client("glue").get_job(JobName="stepml-test-preprocess")["Job"]
        assert job["GlueVersion"] == "5.0"
        # Every resource-based policy the gate will read is named after the template resource defining it.
        owners = resource_policy_owners(stack.resolved)
        policies = MotoPolicies(account=stack.resolved.account_id)
        for logical_id, arn in (
            ("UploadBucketPolicy", f"arn:aws:s3:::{stack.physical_id('UploadBucket')}/incoming/x.csv"),
            ("AccessLogBucketPolicy", f"arn:aws:s3:::{stack.physical_id('AccessLogBucket')}"),
            ("TopicPolicy", stack.physical_id("AlertTopic")),
            ("TopicPolicy", stack.physical_id("ApprovalTopic")),
            ("UploadEventDeadLetterQueuePolicy", stack.resolved.get_att("UploadEventDeadLetterQueue", "Arn")),
            ("LogKey", stack.resolved.get_att("LogKey", "Arn")),
        ):
            document, _ = policies.resource_policy(arn)
            assert document is not None, arn
            assert owners[document.source] == logical_id
        # As after `sam package`: the script is in SAM's managed bucket, <s3_prefix>/<MD5 of the file>.
        script = (TEMPLATE.parent / "glue_jobs" / "preprocess.py").read_bytes()
        bucket = "aws-sam-cli-managed-default-samclisourcebucket-local"
        key = f"stepml-test/{hashlib.md5(script).hexdigest()}"
        assert job["Command"]["ScriptLocation"] == f"s3://{bucket}/{key}"
        s3 = boto3.client("s3")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == script
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        targets = boto3.client("events").list_targets_by_rule(Rule=stack.resolved.physical_ids["UploadRule"])
        assert targets["Targets"][0]["Arn"] == stack.physical_id("PipelineStateMachine")
        alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
        assert {"stepml-test-production-model-latency", "stepml-test-production-invocation-5xx"} <= {
            a["AlarmName"] for a in alarms
        }
        # The logging, key and concurrency settings the template asks for are in force.
        s3 = boto3.client("s3")
        logging = s3.get_bucket_logging(Bucket=stack.physical_id("UploadBucket"))["LoggingEnabled"]
        assert logging == {"TargetBucket": stack.physical_id("AccessLogBucket"), "TargetPrefix": "upload-bucket/"}
        rules = s3.get_bucket_lifecycle_configuration(Bucket=stack.physical_id("AccessLogBucket"))["Rules"]
        assert rules[0]["Expiration"] == {"Days": 90}
        groups = boto3.client("logs").describe_log_groups()["logGroups"]
        log_key = stack.resolved.get_att("LogKey", "Arn")
        assert {g["logGroupName"]: g.get("kmsKeyId") for g in groups} == {
            stack.physical_id("ApprovalApiAccessLogs"): log_key,
            stack.physical_id("PipelineLogGroup"): log_key,
        }
        api_function = stack.resolved.physical_ids["ApprovalApiFunction"]
        concurrency = boto3.client("lambda").get_function_concurrency(FunctionName=api_function)
        assert concurrency["ReservedConcurrentExecutions"] == 20
        glue_security = boto3.client("glue").get_security_configuration(Name="stepml-test-preprocess")
        encryption = glue_security["SecurityConfiguration"]["EncryptionConfiguration"]
        assert encryption["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": log_key}
    assert runtime.functions[api_function].reserved_concurrency == 20
    approval = runtime.functions[stack.resolved.physical_ids["RequestApprovalFunction"]]
    assert approval.environment["STEPML_APPROVAL_BASE_URL"] == "http://127.0.0.1:9999"
    # The library layer's workers get the runtime modules only, linked from src/stepml.
    (layer,) = approval.layer_dirs
    assert layer == tmp_path / "layers" / "StepmlLibraryLayer"
    shipped = sorted(p.relative_to(layer).as_posix() for p in layer.rglob("*.py"))
    assert "stepml/approvals.py" in shipped and "stepml/lineage.py" in shipped
    assert not [p for p in shipped if p.startswith(("stepml/local/", "stepml/cli/"))]
    assert "stepml/sample_data.py" not in shipped and "stepml/packaging.py" not in shipped
    assert (layer / "stepml/approvals.py").resolve() == REPO_ROOT / "src/stepml/approvals.py"
    assert [r.route_key for r in runtime.routes["ApprovalHttpApi"]] == [
        "GET /approvals/{approval_id}",
        "HEAD /approvals/{approval_id}",
        "POST /approvals/{approval_id}",
        "GET /auth/callback",
    ]
    assert "stepml/approval_signin.py" in shipped
    assert runtime.glue_jobs["stepml-test-preprocess"].name == "preprocess.py"


def test_an_unsupported_resource_type_is_named(aws_credentials, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  Cache:\n    Type: AWS::ElastiCache::CacheCluster\n    Properties: {}\n")
    with mock_aws(), pytest.raises(ProvisionError, match="resource Cache has type AWS::ElastiCache::CacheCluster"):
        provision(template, new_session(), runtime=RecordingRuntime(tmp_path))


def test_an_unsupported_property_is_named(aws_credentials, tmp_path):
    (tmp_path / "fn").mkdir()
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      Runtime: python3.11\n      Handler: app.handler\n      CodeUri: fn/\n"
        "      FunctionUrlConfig: {AuthType: NONE}\n"
    )
    with mock_aws(), pytest.raises(ProvisionError, match="Fn: property FunctionUrlConfig is not supported"):
        provision(template, new_session(), runtime=RecordingRuntime(tmp_path))


def test_unknown_parameters_and_bad_values_are_named():
    template = load_template(TEMPLATE)
    with pytest.raises(TemplateError, match="unknown parameter"):
        ResolvedTemplate(template, parameter_overrides={"NoSuchParameter": "1"})
    with pytest.raises(TemplateError, match="parameter LogRetentionDays='2' is not one of"):
        ResolvedTemplate(template, parameter_overrides={"LogRetentionDays": "2"})


def _function_template(tmp_path, *, layers="", extra="", resources=""):
    """A template of one function (code in fn/) with the given Layers and extra properties."""
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        + resources
        + "  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      Runtime: python3.11\n      Handler: app.handler\n      CodeUri: fn/\n"
        + (f"      Layers: {layers}\n" if layers else "")
        + extra
    )
    return template


def _sparse_file(path, size):
    """A file of ``size`` bytes that takes no disk space (its size is all Lambda counts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def test_a_function_whose_code_and_layers_exceed_lambdas_limit_is_refused(aws_credentials, tmp_path):
    _sparse_file(tmp_path / "big" / "blob.bin", packaging.UNZIPPED_LIMIT_BYTES - 10)
    template = _function_template(
        tmp_path,
        layers="[!Ref BigLayer]",
        resources="  BigLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: big/\n",
    )
    message = (
        "creating Fn failed: Fn: InvalidParameterValueException: "
        "Layers consume more than the available size of 262144000 bytes"
    )
    with mock_aws(), pytest.raises(ProvisionError, match=message) as refused:
        provision(template, new_session(), runtime=RecordingRuntime(tmp_path))
    assert "BigLayer 262143990" in str(refused.value)


def test_a_function_whose_own_code_exceeds_lambdas_limit_is_refused(aws_credentials, tmp_path):
    template = _function_template(tmp_path)
    _sparse_file(tmp_path / "fn" / "model.bin", packaging.UNZIPPED_LIMIT_BYTES + 1)
    message = "Fn: InvalidParameterValueException: Unzipped size must be smaller than 262144000 bytes"
    runtime = RecordingRuntime(tmp_path)
    with mock_aws(), pytest.raises(ProvisionError, match=message):
        provision(template, new_session(), runtime=runtime)
    assert runtime.functions == {}


def test_a_layer_of_another_account_is_counted_at_its_known_size_or_refused(aws_credentials, tmp_path):
    pandas = "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:22"
    _sparse_file(
        tmp_path / "fn" / "weights.bin", packaging.UNZIPPED_LIMIT_BYTES - packaging.AWS_SDK_PANDAS_UNZIPPED_BYTES
    )
    with mock_aws(), pytest.raises(ProvisionError, match="Layers consume more than the available size"):
        provision(
            _function_template(tmp_path, layers=f"[{pandas}]"),
            new_session(),
            runtime=RecordingRuntime(tmp_path),
        )
    other = "arn:aws:lambda:us-east-1:111122223333:layer:SomethingElse:3"
    with mock_aws(), pytest.raises(ProvisionError, match=f"Fn: layer {other} is neither a layer of this template"):
        provision(
            _function_template(tmp_path, layers=f"[{other}]"),
            new_session(),
            runtime=RecordingRuntime(tmp_path),
        )


def test_reserved_concurrency_must_be_lambdas_range(aws_credentials, tmp_path):
    template = _function_template(tmp_path, extra="      ReservedConcurrentExecutions: -1\n")
    with mock_aws(), pytest.raises(ProvisionError, match="Fn: ReservedConcurrentExecutions must be an integer"):
        provision(template, new_session(), runtime=RecordingRuntime(tmp_path))


def test_a_log_group_key_that_cloudwatch_logs_may_not_use_is_refused(aws_credentials, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Key:\n    Type: AWS::KMS::Key\n    Properties:\n      KeyPolicy:\n"
        '        Version: "2012-10-17"\n        Statement:\n'
        "          - Effect: Allow\n            Principal: {AWS: arn:aws:iam::123456789012:root}\n"
        '            Action: kms:*\n            Resource: "*"\n'
        "  Logs:\n    Type: AWS::Logs::LogGroup\n    Properties:\n"
        "      LogGroupName: /stepml/test\n      KmsKeyId: !GetAtt Key.Arn\n"
    )
    message = (
        "AccessDeniedException: The specified KMS key does not exist or is not allowed to be used with Arn "
        "'arn:aws:logs:us-east-1:123456789012:log-group:/stepml/test'"
    )
    with mock_aws(), pytest.raises(ProvisionError, match=re.escape(message)):
        provision(template, new_session())


def test_an_unsupported_bucket_property_is_named(aws_credentials, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n"
        "      WebsiteConfiguration: {IndexDocument: index.html}\n"
    )
    with mock_aws(), pytest.raises(ProvisionError, match="B: property WebsiteConfiguration is not supported"):
        provision(template, new_session())
