"""IAM on the local cloud: calls under a template role pass its policies or fail as AWS fails them.

Each test signs its calls as one of the template's roles (the credentials the local cloud hands
that role's Lambda workers, Glue runs, SageMaker jobs or Step Functions tasks) and asserts the
error code and AWS's wording of the denial, or that the call passes.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.local.iam.gate import RECORDER


def _local(cloud, service):
    return cloud.client_factory(service)()


def _role_arn(cloud, logical_id):
    """The ARN of a template role, or of the role SAM makes for a function."""
    iam = _local(cloud, "iam")
    name = cloud.stack.resolved.physical_ids[logical_id]
    role_name = name if logical_id.endswith("Role") else f"{name}-role"[:64]
    return iam.get_role(RoleName=role_name)["Role"]["Arn"]


def _as_role(cloud, logical_id, service, session="test"):
    credentials = cloud.authorizer.principals.credentials(_role_arn(cloud, logical_id), session)
    return boto3.client(
        service, endpoint_url=cloud.endpoint_url, region_name="us-east-1", **credentials.client_kwargs()
    )


def _session_arn(cloud, logical_id, session="test"):
    return f"arn:aws:sts::123456789012:assumed-role/{_role_arn(cloud, logical_id).rsplit('/', 1)[1]}/{session}"


def _run_to_its_end(sfn, machine: str, timeout: float) -> tuple[dict, list[dict]]:
    """Start ``machine`` with ``{}`` and wait for the execution to leave RUNNING; (described, history)."""
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.2)
    return described, sfn.get_execution_history(executionArn=execution)["events"]


def _states_role_without_policies(cloud, name):
    """A role Step Functions may assume that grants nothing."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    return _local(cloud, "iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def test_a_function_role_reads_what_its_policy_allows(cloud):
    outputs = cloud.outputs()
    _local(cloud, "s3").put_object(Bucket=outputs["ArtifactBucketName"], Key="datasets/x/config.json", Body=b"{}")
    s3 = _as_role(cloud, "ResolveRunFunction", "s3")
    body = s3.get_object(Bucket=outputs["ArtifactBucketName"], Key="datasets/x/config.json")["Body"].read()
    assert body == b"{}"


def test_s3_refuses_a_write_the_role_has_no_statement_for_with_access_denied(cloud):
    bucket = cloud.outputs()["UploadBucketName"]
    s3 = _as_role(cloud, "ResolveRunFunction", "s3")
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=bucket, Key="incoming/churn/forged.csv", Body=b"a,b\n1,2\n")
    error = denied.value.response["Error"]
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == (
        f"User: {_session_arn(cloud, 'ResolveRunFunction')} is not authorized to perform: s3:PutObject on resource: "
        f"arn:aws:s3:::{bucket}/incoming/churn/forged.csv "
        "because no identity-based policy allows the s3:PutObject action"
    )
    with pytest.raises(ClientError):
        _local(cloud, "s3").head_object(Bucket=bucket, Key="incoming/churn/forged.csv")


def test_dynamodb_refuses_a_table_the_role_does_not_name(cloud):
    approvals = cloud.outputs()["ApprovalTableName"]
    dynamodb = _as_role(cloud, "RecordStepFunction", "dynamodb")
    with pytest.raises(ClientError) as denied:
        dynamodb.get_item(TableName=approvals, Key={"approval_id": {"S": "x"}})
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert (
        "is not authorized to perform: dynamodb:GetItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/"
        in (error["Message"])
    )
    assert error["Message"].endswith("because no identity-based policy allows the dynamodb:GetItem action")


def test_kms_key_policy_delegates_to_iam_and_iam_decides(cloud):
    key_id = cloud.stack.physical_id("ApprovalSigningKey")
    signer = _as_role(cloud, "RequestApprovalFunction", "kms")
    mac = signer.generate_mac(KeyId=key_id, Message=b"approval", MacAlgorithm="HMAC_SHA_256")["Mac"]
    with pytest.raises(ClientError) as denied:
        signer.verify_mac(KeyId=key_id, Message=b"approval", MacAlgorithm="HMAC_SHA_256", Mac=mac)
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "kms:VerifyMac" in error["Message"] and "because no identity-based policy allows" in error["Message"]
    checker = _as_role(cloud, "ApprovalApiFunction", "kms")
    assert checker.verify_mac(KeyId=key_id, Message=b"approval", MacAlgorithm="HMAC_SHA_256", Mac=mac)["MacValid"]


def test_sns_refuses_a_publisher_without_a_statement_with_authorization_error(cloud):
    topic = cloud.stack.physical_id("AlertTopic")
    sns = _as_role(cloud, "EvaluateFunction", "sns")
    with pytest.raises(ClientError) as denied:
        sns.publish(TopicArn=topic, Message="not mine to send")
    error = denied.value.response["Error"]
    assert error["Code"] == "AuthorizationError"
    assert f"is not authorized to perform: sns:Publish on resource: {topic}" in error["Message"]


def test_publishing_to_an_encrypted_topic_needs_the_key_too(cloud):
    """The state machine role may publish, and SNS then uses its rights on the topic's key."""
    topic = cloud.stack.physical_id("AlertTopic")
    sns = _as_role(cloud, "PipelineStateMachineRole", "sns")
    assert sns.publish(TopicArn=topic, Message="allowed")["MessageId"]
    checked = [r for r in RECORDER.snapshot() if r.action in ("kms:GenerateDataKey", "kms:Decrypt") and r.allowed]
    assert any(r.resource.endswith(cloud.stack.physical_id("NotificationKey")) for r in checked), checked[-3:]


def test_an_explicit_deny_in_a_bucket_policy_beats_the_role_policy(cloud):
    bucket = cloud.outputs()["ArtifactBucketName"]
    s3_admin = _local(cloud, "s3")
    original = s3_admin.get_bucket_policy(Bucket=bucket)["Policy"]
    document = json.loads(original)
    role = _role_arn(cloud, "EvaluateFunction")
    document["Statement"].append(
        {
            "Sid": "NoReportsFromEvaluate",
            "Effect": "Deny",
            "Principal": {"AWS": role},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/evaluation/*",
        }
    )
    s3_admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
    try:
        with pytest.raises(ClientError) as denied:
            _as_role(cloud, "EvaluateFunction", "s3").put_object(
                Bucket=bucket, Key="evaluation/x/report.json", Body=b"{}"
            )
        assert denied.value.response["Error"]["Message"].endswith("with an explicit deny in a resource-based policy")
    finally:
        s3_admin.put_bucket_policy(Bucket=bucket, Policy=original)


@pytest.mark.parametrize(
    ("policy_logical_id", "caller", "action", "resource"),
    [
        ("UploadBucketPolicy", "PreprocessJobRole", "s3:GetObjectVersion", "upload:incoming/churn/a.csv"),
        ("ArtifactBucketPolicy", "EvaluateFunction", "s3:GetObject", "artifact:processed/run/test.csv"),
        ("AccessLogBucketPolicy", "logging.s3.amazonaws.com", "s3:PutObject", "access-log:upload-bucket/log"),
        ("TopicPolicy", "PipelineStateMachineRole", "sns:Publish", "AlertTopic"),
        ("TopicPolicy", "PipelineStateMachineRole", "sns:Publish", "ApprovalTopic"),
        ("UploadEventDeadLetterQueuePolicy", "events.amazonaws.com", "sqs:SendMessage", "UploadEventDeadLetterQueue"),
    ],
)
def test_every_tls_only_resource_policy_denies_a_request_marked_insecure(
    cloud, policy_logical_id, caller, action, resource
):
    """The loopback endpoint stands for AWS's TLS endpoint, so no client of the local cloud can send
    a plain-HTTP request; a request the policies allow over TLS meets each policy's Deny when marked
    insecure."""
    from stepml.local.iam.model import AuthorizationRequest, Principal

    outputs = cloud.outputs()
    stack = cloud.stack.resolved
    buckets = {
        "upload": outputs["UploadBucketName"],
        "artifact": outputs["ArtifactBucketName"],
        "access-log": stack.ref("AccessLogBucket"),
    }
    if ":" in resource:
        bucket, key = resource.split(":", 1)
        arn = f"arn:aws:s3:::{buckets[bucket]}/{key}"
    else:
        arn = stack.get_att(resource, "Arn") if resource.endswith("Queue") else stack.ref(resource)
    context = {}
    if caller.endswith(".amazonaws.com"):  # a service delivering for this stack, as the statement requires
        principal = Principal(arn=caller, service=caller)
        source = (
            stack.get_att("UploadRule", "Arn") if caller.startswith("events") else f"arn:aws:s3:::{buckets['upload']}"
        )
        context = {"aws:SourceAccount": stack.account_id, "aws:SourceArn": source}
    else:
        principal = cloud.authorizer.principals.session(_role_arn(cloud, caller), "test")
    over_tls = cloud.authorizer.check(principal, AuthorizationRequest(action, arn, context))
    assert over_tls.allowed, over_tls
    insecure = cloud.authorizer.check(
        principal, AuthorizationRequest(action, arn, {**context, "aws:SecureTransport": "false"})
    )
    assert insecure.kind == "explicit-deny" and insecure.policy_type == "resource-based", insecure
    assert insecure.statement.sid == "DenyInsecureTransport"
    assert cloud.authorizer.recorder.resource_policy_owners[insecure.statement.source] == policy_logical_id


def test_the_local_user_is_not_checked(cloud):
    bucket = cloud.outputs()["UploadBucketName"]
    before = len(RECORDER.snapshot())
    _local(cloud, "s3").put_object(Bucket=bucket, Key="notes/readme.txt", Body=b"hello")
    assert len(RECORDER.snapshot()) == before


def test_a_state_machine_whose_role_cannot_invoke_its_lambda_fails_its_task_with_lambdas_error(cloud):
    """Under a role without lambda:InvokeFunction the Task fails as in AWS, with the denial."""
    role = _states_role_without_policies(cloud, "no-invoke")
    function = next(
        f for f in _local(cloud, "lambda").list_functions()["Functions"] if "RecordStep" in f["FunctionName"]
    )
    sfn = _local(cloud, "stepfunctions")
    machine = sfn.create_state_machine(
        name="no-invoke",
        roleArn=role,
        definition=json.dumps(
            {
                "StartAt": "Call",
                "States": {
                    "Call": {"Type": "Task", "Resource": function["FunctionArn"], "TimeoutSeconds": 30, "End": True}
                },
            }
        ),
    )["stateMachineArn"]
    described, history = _run_to_its_end(sfn, machine, timeout=60)
    assert described["status"] == "FAILED"
    failed = next(e for e in history if e["type"] == "LambdaFunctionFailed")["lambdaFunctionFailedEventDetails"]
    assert failed["error"] == "Lambda.AWSLambdaException"
    assert "lambda:InvokeFunction" in failed["cause"] and "AccessDeniedException" in failed["cause"]


def test_create_state_machine_with_logging_refuses_a_role_that_cannot_deliver_logs(cloud):
    role = _states_role_without_policies(cloud, "no-logs")
    group = f"arn:aws:logs:us-east-1:123456789012:log-group:{cloud.stack.physical_id('PipelineLogGroup')}:*"
    with pytest.raises(ClientError) as denied:
        _local(cloud, "stepfunctions").create_state_machine(
            name="no-logs",
            roleArn=role,
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            loggingConfiguration={"level": "ALL", "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group}}]},
        )
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"].startswith("The state machine IAM Role is not authorized to access the Log Destination")
    assert "logs:CreateLogDelivery" in error["Message"]


def test_an_event_whose_target_role_cannot_start_the_pipeline_goes_to_the_dead_letter_queue(cloud):
    from stepml.local import events

    rule = cloud.stack.physical_id("UploadRule")
    iam = _local(cloud, "iam")
    role_name = _role_arn(cloud, "UploadRuleRole").rsplit("/", 1)[1]
    [policy_name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    original = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    iam.delete_role_policy(RoleName=role_name, PolicyName=policy_name)
    sqs = _local(cloud, "sqs")
    queue_url = sqs.get_queue_url(QueueName=cloud.stack.physical_id("UploadEventDeadLetterQueue").rsplit("/", 1)[-1])[
        "QueueUrl"
    ]
    try:
        bucket = cloud.outputs()["UploadBucketName"]
        event = events.s3_object_created_event("123456789012", "us-east-1", bucket, "incoming/x/y.csv", 3, "e", "v1")
        assert events.deliver_to_rules("123456789012", "us-east-1", event)
        entry = next(e for e in reversed(events.DELIVERY_LOG) if e["event_id"] == event["id"])
        assert "states:StartExecution" in entry["error"] and entry["rule"] == rule.split("|")[-1]
        messages = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1)
        [message] = messages["Messages"]
        assert json.loads(message["Body"])["id"] == event["id"]
        assert "states:StartExecution" in message["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]
    finally:
        iam.put_role_policy(
            RoleName=role_name,
            PolicyName=policy_name,
            PolicyDocument=original if isinstance(original, str) else json.dumps(original),
        )


def test_a_missing_object_is_not_found_only_for_a_role_that_may_list_its_bucket(cloud):
    """S3 answers GetObject/HeadObject of a missing key with 404 only when the caller has s3:ListBucket
    (for that key as s3:prefix); otherwise with 403, so a caller cannot probe which keys exist."""
    bucket = cloud.outputs()["ArtifactBucketName"]
    resolve = _as_role(cloud, "ResolveRunFunction", "s3")
    for call in (resolve.get_object, resolve.head_object):
        with pytest.raises(ClientError) as missing:
            call(Bucket=bucket, Key="datasets/never-onboarded/config.json")
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert missing.value.response["Error"]["Code"] in ("NoSuchKey", "404")

    record = _as_role(cloud, "RecordStepFunction", "s3")  # may read processed/*, list nothing
    with pytest.raises(ClientError) as denied:
        record.get_object(Bucket=bucket, Key="processed/none/manifest.json")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.response["Error"]["Message"] == (
        f"User: {_session_arn(cloud, 'RecordStepFunction')} is not authorized to perform: s3:ListBucket on "
        f"resource: arn:aws:s3:::{bucket} because no identity-based policy allows the s3:ListBucket action"
    )
    with pytest.raises(ClientError) as head:
        record.head_object(Bucket=bucket, Key="processed/none/manifest.json")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    _local(cloud, "s3").put_object(Bucket=bucket, Key="processed/none/manifest.json", Body=b"{}")
    assert record.get_object(Bucket=bucket, Key="processed/none/manifest.json")["Body"].read() == b"{}"


def _training_task_role(cloud, name: str, without: str) -> str:
    """A states role with what AWS documents for createTrainingJob.sync, less the action ``without``."""
    role = _states_role_without_policies(cloud, name)
    execution_role = _role_arn(cloud, "SageMakerExecutionRole")
    statements = [
        {
            "Effect": "Allow",
            "Action": [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            "Resource": "arn:aws:sagemaker:us-east-1:123456789012:training-job/*",
        },
        {
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": "arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        },
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": execution_role,
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
    ]
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != without]
    statements = [s for s in statements if s["Action"]]
    _local(cloud, "iam").put_role_policy(
        RoleName=name,
        PolicyName="train",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return role


@pytest.mark.parametrize("without", ["iam:PassRole", "sagemaker:ListTags", "events:PutRule"])
def test_a_training_task_whose_role_lacks_a_documented_right_fails_with_the_denial(cloud, without):
    """createTrainingJob.sync needs iam:PassRole for the execution role (to SageMaker only) and what
    AWS documents for the pattern. Without the managed EventBridge rule's rights the state machine is
    refused (Step Functions creates the rule at CreateStateMachine); without PassRole the Task fails
    and no training job exists; without ListTags the Task fails once the job started."""
    bucket = cloud.outputs()["ArtifactBucketName"]
    name = f"no-{without.split(':')[1].lower()}"
    role = _training_task_role(cloud, name, without)
    job = f"stepml-{name}-job"
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
        "Parameters": {
            "TrainingJobName": job,
            "RoleArn": _role_arn(cloud, "SageMakerExecutionRole"),
            "AlgorithmSpecification": {
                "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                "TrainingInputMode": "File",
            },
            "HyperParameters": {"num_round": "2", "objective": "binary:logistic"},
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "ContentType": "text/csv",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/processed/{name}/train/"}
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models/{name}/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
        "TimeoutSeconds": 120,
        "End": True,
    }
    sfn = _local(cloud, "stepfunctions")
    definition = json.dumps({"StartAt": "Train", "States": {"Train": task}})
    if without.startswith("events:"):
        with pytest.raises(ClientError) as refused:
            sfn.create_state_machine(name=name, roleArn=role, definition=definition)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert refused.value.response["Error"]["Message"] == f"'{role}' is not authorized to create managed-rule."
        assert name not in [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
        return
    machine = sfn.create_state_machine(name=name, roleArn=role, definition=definition)["stateMachineArn"]
    described, history = _run_to_its_end(sfn, machine, timeout=120)
    assert described["status"] == "FAILED"
    failed = next(e for e in history if e["type"] == "TaskFailed")["taskFailedEventDetails"]
    assert failed["error"] == "SageMaker.AmazonSageMakerException", failed
    assert f"is not authorized to perform: {without}" in failed["cause"], failed["cause"]
    assert "AccessDeniedException" in failed["cause"]
    jobs = _local(cloud, "sagemaker").list_training_jobs(NameContains=job)["TrainingJobSummaries"]
    assert (jobs == []) is (without == "iam:PassRole"), jobs
