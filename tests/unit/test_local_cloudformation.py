"""The provisioned stack is recorded in moto's CloudFormation, as a deployed stack would be."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.local.cloudformation import register_stack
from tests.helpers import REPO_ROOT

OUTPUTS = {"UploadBucketName": "up", "ApprovalApiUrl": "http://127.0.0.1:1"}


@pytest.fixture
def registered(stack):
    body = (REPO_ROOT / "template.yaml").read_text()
    outputs = {**OUTPUTS, "UploadBucketName": stack.physical_id("UploadBucket")}
    return register_stack(stack, outputs, body, tags={"project": "stepml"}), outputs


def test_describe_stacks_lists_the_stack_complete_with_its_outputs_and_parameters(stack, registered):
    stack_id, outputs = registered
    cloudformation = boto3.client("cloudformation")
    (described,) = cloudformation.describe_stacks()["Stacks"]
    assert described["StackName"] == "stepml-local" and described["StackId"] == stack_id
    assert described["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]} == outputs
    upload = next(o for o in described["Outputs"] if o["OutputKey"] == "UploadBucketName")
    assert upload["Description"].startswith("Upload data files here")
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert parameters == {name: str(value) for name, value in stack.resolved.parameters.items()}
    assert described["Tags"] == [{"Key": "project", "Value": "stepml"}]
    assert cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackName"] == "stepml-local"
    summaries = cloudformation.list_stacks()["StackSummaries"]
    assert [(s["StackName"], s["StackStatus"]) for s in summaries] == [("stepml-local", "CREATE_COMPLETE")]


def test_stack_resources_name_each_logical_id_with_its_physical_id(stack, registered):
    cloudformation = boto3.client("cloudformation")
    listed = cloudformation.list_stack_resources(StackName="stepml-local")["StackResourceSummaries"]
    by_logical = {r["LogicalResourceId"]: r for r in listed}
    assert set(by_logical) == set(stack.created)
    bucket = by_logical["UploadBucket"]
    assert bucket["PhysicalResourceId"] == stack.physical_id("UploadBucket")
    assert bucket["ResourceType"] == "AWS::S3::Bucket" and bucket["ResourceStatus"] == "CREATE_COMPLETE"
    boto3.client("s3").head_bucket(Bucket=bucket["PhysicalResourceId"])  # the physical id is the real bucket
    described = cloudformation.describe_stack_resources(StackName="stepml-local", LogicalResourceId="LineageTable")
    (table,) = described["StackResources"]
    assert table["PhysicalResourceId"] == stack.physical_id("LineageTable")
    assert table["ResourceType"] == "AWS::DynamoDB::Table"
    assert (
        "Transform: AWS::Serverless-2016-10-31" in cloudformation.get_template(StackName="stepml-local")["TemplateBody"]
    )


def test_deleting_or_updating_the_local_stack_is_refused_and_leaves_it_in_place(stack, registered):
    cloudformation = boto3.client("cloudformation")
    with pytest.raises(ClientError) as deleting:
        cloudformation.delete_stack(StackName="stepml-local")
    assert deleting.value.response["Error"]["Code"] == "ValidationError"
    assert "stepml local down" in deleting.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as updating:
        cloudformation.update_stack(StackName="stepml-local", TemplateBody="{}", UsePreviousTemplate=False)
    assert updating.value.response["Error"]["Code"] == "ValidationError"
    assert cloudformation.describe_stacks(StackName="stepml-local")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    boto3.client("s3").head_bucket(Bucket=stack.physical_id("UploadBucket"))
