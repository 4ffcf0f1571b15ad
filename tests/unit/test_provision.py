"""Provisioning the whole template into moto, with a recording stand-in for the local runtime."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from moto import mock_aws

from stepml.local.provision import ProvisionError, provision
from stepml.local.template import ResolvedTemplate, TemplateError, load_template
from tests.conftest import TEMPLATE


class RecordingRuntime:
    def __init__(self):
        self.functions = {}
        self.routes = {}
        self.glue_jobs = {}

    def register_function(self, spec):
        self.functions[spec.name] = spec

    def register_routes(self, api_logical_id, routes):
        self.routes.setdefault(api_logical_id, []).extend(routes)

    def register_glue_job(self, name, script_path):
        self.glue_jobs[name] = script_path


def test_every_resource_of_the_template_is_created(aws_credentials):
    runtime = RecordingRuntime()
    with mock_aws():
        stack = provision(
            TEMPLATE,
            boto3.Session(region_name="us-east-1"),
            stack_name="stepml-test",
            parameter_overrides={"ApprovalBaseUrl": "http://127.0.0.1:9999"},
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
    approval = runtime.functions[stack.resolved.physical_ids["RequestApprovalFunction"]]
    assert approval.environment["STEPML_APPROVAL_BASE_URL"] == "http://127.0.0.1:9999"
    assert approval.layer_dirs and approval.layer_dirs[0].name == "src"
    assert [r.route_key for r in runtime.routes["ApprovalHttpApi"]] == [
        "GET /approvals/{approval_id}",
        "HEAD /approvals/{approval_id}",
        "POST /approvals/{approval_id}",
    ]
    assert runtime.glue_jobs["stepml-test-preprocess"].name == "preprocess.py"


def test_an_unsupported_resource_type_is_named(aws_credentials, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  Cache:\n    Type: AWS::ElastiCache::CacheCluster\n    Properties: {}\n")
    with mock_aws(), pytest.raises(ProvisionError, match="resource Cache has type AWS::ElastiCache::CacheCluster"):
        provision(template, boto3.Session(region_name="us-east-1"), runtime=RecordingRuntime())


def test_an_unsupported_property_is_named(aws_credentials, tmp_path):
    (tmp_path / "fn").mkdir()
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      Runtime: python3.11\n      Handler: app.handler\n      CodeUri: fn/\n"
        "      FunctionUrlConfig: {AuthType: NONE}\n"
    )
    with mock_aws(), pytest.raises(ProvisionError, match="Fn: property FunctionUrlConfig is not supported"):
        provision(template, boto3.Session(region_name="us-east-1"), runtime=RecordingRuntime())


def test_unknown_parameters_and_bad_values_are_named():
    template = load_template(TEMPLATE)
    with pytest.raises(TemplateError, match="unknown parameter"):
        ResolvedTemplate(template, parameter_overrides={"NoSuchParameter": "1"})
    with pytest.raises(TemplateError, match="parameter LogRetentionDays='2' is not one of"):
        ResolvedTemplate(template, parameter_overrides={"LogRetentionDays": "2"})
