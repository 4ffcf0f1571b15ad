"""moto with stepml's service patches (stepml.local.services): each test fails on unpatched moto 5.2.5.

moto runs in-process (``mock_aws``); the SES route test runs moto's server in this process, as
the local cloud does, and the KMS test runs it behind the IAM gate (``gated_moto``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stepml.local.services.kms import KEY_POLICY_LOCKOUT_MESSAGE
from tests.helpers import free_port, logs_key_policy

REGION = "us-east-1"


@pytest.fixture
def moto_server(aws_credentials: None) -> Iterator[str]:
    """moto's server in this process, as the local cloud runs it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


# -- DynamoDB ---------------------------------------------------------------------------------


def test_concurrent_conditional_writes_have_exactly_one_winner(aws_credentials):
    """Without the lock moto lets two of twenty racing conditional updates both succeed."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for round_number in range(15):
            key = {"k": {"S": f"r{round_number}"}}
            client.put_item(TableName="t", Item={**key, "status": {"S": "PENDING"}})
            winners = []
            barrier = threading.Barrier(20)

            def decide(who: int, key=key, winners=winners, barrier=barrier) -> None:
                barrier.wait()
                try:
                    client.update_item(
                        TableName="t",
                        Key=key,
                        UpdateExpression="SET #s = :done, who = :who",
                        ConditionExpression="#s = :pending",
                        ExpressionAttributeNames={"#s": "status"},
                        ExpressionAttributeValues={
                            ":done": {"S": "DONE"},
                            ":pending": {"S": "PENDING"},
                            ":who": {"N": str(who)},
                        },
                    )
                    winners.append(who)
                except client.exceptions.ConditionalCheckFailedException:
                    pass

            threads = [threading.Thread(target=decide, args=(i,)) for i in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(winners) == 1, f"round {round_number}: {len(winners)} winners"


# -- what stepml preflight asks (SES, quotas, layers, ECR) -----------------------------------


def test_ses_get_account_answers_and_the_sandbox_refuses_unverified_recipients(aws_credentials: None) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sesv2.models import sesv2_backends

    from stepml.local.account_defaults import ses_account

    with mock_aws():
        sesv2 = boto3.client("sesv2", region_name=REGION)
        account = sesv2.get_account()
        assert account["ProductionAccessEnabled"] is True
        assert account["SendingEnabled"] is True
        sesv2.create_email_identity(EmailIdentity="sender@example.com")
        message = {
            "FromEmailAddress": "sender@example.com",
            "Destination": {"ToAddresses": ["approver@example.org"]},
            "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        }
        sesv2.send_email(**message)  # production access: any recipient

        ses_account(sesv2_backends[DEFAULT_ACCOUNT_ID][REGION]).production_access_enabled = False
        assert sesv2.get_account()["ProductionAccessEnabled"] is False
        assert sesv2.get_account()["SendQuota"]["Max24HourSend"] == 200.0
        with pytest.raises(ClientError) as refused:
            sesv2.send_email(**message)
        assert refused.value.response["Error"]["Code"] == "MessageRejected"
        message_text = refused.value.response["Error"]["Message"]
        assert "failed the check in region US-EAST-1: approver@example.org" in message_text
        sesv2.create_email_identity(EmailIdentity="example.org")
        sesv2.send_email(**message)


def test_ses_get_account_answers_in_server_mode(moto_server: str) -> None:
    sesv2 = boto3.client("sesv2", region_name=REGION, endpoint_url=moto_server)
    assert sesv2.get_account()["EnforcementStatus"] == "HEALTHY"


def test_an_identity_moto_lets_send_is_verified_for_sending(aws_credentials: None) -> None:
    with mock_aws():
        sesv2 = boto3.client("sesv2", region_name=REGION)
        sesv2.create_email_identity(EmailIdentity="example.com")
        identity = sesv2.get_email_identity(EmailIdentity="example.com")
        assert identity["VerificationStatus"] == "SUCCESS"
        assert identity["VerifiedForSendingStatus"] is True


def test_sagemaker_service_quotas_are_listed_and_read_by_code(aws_credentials: None) -> None:
    from stepml.local.account_defaults import SAGEMAKER_QUOTAS

    with mock_aws():
        quotas = boto3.client("service-quotas", region_name=REGION)
        applied = [
            quota
            for page in quotas.get_paginator("list_service_quotas").paginate(
                ServiceCode="sagemaker", PaginationConfig={"PageSize": 4}
            )
            for quota in page["Quotas"]
        ]
        assert len(applied) == len(SAGEMAKER_QUOTAS)
        [training] = [q for q in applied if q["QuotaName"] == "ml.m5.xlarge for training job usage"]
        assert training["QuotaArn"] == f"arn:aws:servicequotas:{REGION}:123456789012:sagemaker/{training['QuotaCode']}"
        assert quotas.get_service_quota(ServiceCode="sagemaker", QuotaCode=training["QuotaCode"])["Quota"] == training
        default = quotas.get_aws_default_service_quota(ServiceCode="sagemaker", QuotaCode=training["QuotaCode"])
        assert default["Quota"]["Value"] == training["Value"]
        defaults = quotas.list_aws_default_service_quotas(ServiceCode="sagemaker")["Quotas"]
        assert {q["QuotaName"] for q in defaults} == {q.name for q in SAGEMAKER_QUOTAS}
        with pytest.raises(ClientError) as missing:
            quotas.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-00000000")
        assert missing.value.response["Error"]["Code"] == "NoSuchResourceException"


def test_get_layer_version_by_arn_finds_a_layer_of_another_account(aws_credentials: None) -> None:
    from moto.awslambda.models import lambda_backends

    with mock_aws():
        publisher = lambda_backends["336392948345"][REGION]
        published = publisher.publish_layer_version(
            {"LayerName": "Shared", "Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}
        )
        client = boto3.client("lambda", region_name=REGION)
        answer = client.get_layer_version_by_arn(Arn=published.arn)
        assert answer["LayerVersionArn"] == published.arn
        assert answer["Version"] == 1
        with pytest.raises(ClientError) as missing:
            client.get_layer_version_by_arn(Arn=published.arn.rsplit(":", 1)[0] + ":7")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_ecr_describe_images_reads_the_registry_that_registry_id_names(aws_credentials: None) -> None:
    from stepml.local import account_defaults

    with mock_aws():
        account_defaults.seed(REGION, "123456789012")
        ecr = boto3.client("ecr", region_name=REGION)
        [image] = ecr.describe_images(
            registryId="683313688378", repositoryName="sagemaker-xgboost", imageIds=[{"imageTag": "1.7-1"}]
        )["imageDetails"]
        assert image["registryId"] == "683313688378"
        assert image["imageTags"] == ["1.7-1"]
        assert ecr.describe_repositories()["repositories"] == []  # not the caller's own registry
        with pytest.raises(ClientError) as missing:
            ecr.describe_images(registryId="683313688378", repositoryName="sagemaker-nope")
        assert missing.value.response["Error"]["Code"] == "RepositoryNotFoundException"


# -- policies: S3, CloudWatch Logs, KMS -------------------------------------------------------


def test_a_tls_only_bucket_policy_lets_objects_be_written(aws_credentials: None) -> None:
    """moto's own bucket policy check: a Deny-unless-TLS statement must not deny (the endpoint stands for TLS)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="tls-only")
        deny_plain_http = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        s3.put_bucket_policy(
            Bucket="tls-only", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny_plain_http]})
        )
        s3.put_object(Bucket="tls-only", Key="a.txt", Body=b"a")
        assert s3.get_object(Bucket="tls-only", Key="a.txt")["Body"].read() == b"a"


def test_bucket_logging_reads_a_target_policy_with_a_principal_star_statement(aws_credentials):
    """Unpatched moto fails PutBucketLogging with HTTP 500 when the target's policy has a Principal "*"."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="log-target")
        s3.create_bucket(Bucket="log-source")
        deny_plain_http = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::log-target", "arn:aws:s3:::log-target/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        logging_status = {"LoggingEnabled": {"TargetBucket": "log-target", "TargetPrefix": "log-source/"}}
        s3.put_bucket_policy(
            Bucket="log-target", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny_plain_http]})
        )
        with pytest.raises(ClientError) as refused:
            s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert refused.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
        delivery = {
            "Effect": "Allow",
            "Principal": {"Service": ["logging.s3.amazonaws.com"]},
            "Action": ["s3:PutObject"],
            "Resource": "arn:aws:s3:::log-target/*",
        }
        policy = {"Version": "2012-10-17", "Statement": [deny_plain_http, delivery]}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert s3.get_bucket_logging(Bucket="log-source")["LoggingEnabled"]["TargetBucket"] == "log-target"
        # The delivery statement's conditions are evaluated: another account's logs are refused.
        delivery["Condition"] = {"StringEquals": {"aws:SourceAccount": "210987654321"}}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        with pytest.raises(ClientError) as refused:
            s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert refused.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
        delivery["Condition"] = {"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::log-source"}}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)


def test_associate_kms_key_checks_the_key_policy_as_cloudwatch_logs_does(aws_credentials):
    """moto 5.2.5 has no AssociateKmsKey."""
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        usable = kms.create_key(Policy=json.dumps(logs_key_policy()))["KeyMetadata"]["Arn"]
        account_only = {"Version": "2012-10-17", "Statement": [logs_key_policy()["Statement"][0]]}
        unusable = kms.create_key(Policy=json.dumps(account_only))["KeyMetadata"]["Arn"]
        logs.create_log_group(logGroupName="/aws-glue/jobs/sc-role/r/output")

        logs.associate_kms_key(logGroupName="/aws-glue/jobs/sc-role/r/output", kmsKeyId=usable)
        (group,) = logs.describe_log_groups(logGroupNamePrefix="/aws-glue/jobs/sc-role/r/output")["logGroups"]
        assert group["kmsKeyId"] == usable

        with pytest.raises(ClientError) as refused:
            logs.associate_kms_key(logGroupName="/aws-glue/jobs/sc-role/r/output", kmsKeyId=unusable)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert refused.value.response["Error"]["Message"] == (
            "The specified KMS key does not exist or is not allowed to be used with Arn "
            "'arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/jobs/sc-role/r/output'"
        )
        with pytest.raises(ClientError) as missing:
            logs.associate_kms_key(logGroupName="/nowhere", kmsKeyId=usable)
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_key_policy_that_locks_the_caller_out_is_refused_as_kms_refuses_it(gated_moto):
    """KMS's policy lockout safety check, in a local cloud: the caller must be able to update the
    policy afterwards (the local user is an administrator, so the account's root delegation is enough)."""
    kms = gated_moto.client("kms")
    account = {
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    service_only = {
        "Sid": "LogsOnly",
        "Effect": "Allow",
        "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
        "Action": "kms:Decrypt*",
        "Resource": "*",
    }

    def document(*statements):
        return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})

    before = len(kms.list_keys()["Keys"])
    with pytest.raises(ClientError) as refused:
        kms.create_key(Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert refused.value.response["Error"]["Message"] == KEY_POLICY_LOCKOUT_MESSAGE
    assert len(kms.list_keys()["Keys"]) == before, "the refused key is not left behind"

    bypassed = kms.create_key(Policy=document(service_only), BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    key = kms.create_key(Policy=document(account, service_only))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as refused:
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])["Statement"][0] == account
    assert bypassed["KeyId"] in [k["KeyId"] for k in kms.list_keys()["Keys"]]

    # A role that may put the key policy under the account's delegation passes; one that may not is refused.
    keeper = gated_moto.role(
        "key-keeper", "lambda.amazonaws.com", [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]
    )
    credentials = gated_moto.authorizer.principals.credentials(keeper, "s").client_kwargs()
    as_keeper = gated_moto.client("kms", **credentials)
    assert as_keeper.create_key(Policy=document(account))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as refused:
        as_keeper.create_key(Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    checks = [r for r in gated_moto.authorizer.recorder.snapshot() if r.action == "kms:PutKeyPolicy"]
    assert {r.principal for r in checks} >= {"arn:aws:iam::123456789012:user/local"}
    assert [r.allowed for r in checks].count(False) == 3


def test_symmetric_and_hmac_keys_make_no_key_pair_of_their_own():
    import moto.kms.models as kms_models

    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        keys = [
            kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
            for spec, usage in (
                ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
                ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
                ("HMAC_256", "GENERATE_VERIFY_MAC"),
                ("RSA_2048", "SIGN_VERIFY"),
                ("RSA_2048", "SIGN_VERIFY"),
            )
        ]
        backend = kms_models.kms_backends["123456789012"]["us-east-1"]
        pairs = [backend.keys[key].private_key for key in keys]
        assert pairs[0] is pairs[1] is pairs[2]
        assert pairs[3] is not pairs[0] and pairs[4] is not pairs[3]
        # The symmetric key still encrypts and decrypts with its own material.
        blob = kms.encrypt(KeyId=keys[0], Plaintext=b"secret")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
        with pytest.raises(ClientError):
            kms.decrypt(CiphertextBlob=blob, KeyId=keys[1])
