"""Creators of the stack's data resources: S3 buckets, DynamoDB tables, SNS topics, KMS keys,
SQS queues, log groups and their policies."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from typing import Any

from stepml.local.provision.base import ProvisionerBase, ProvisionError


def _lifecycle_rule(logical_id: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape (the subset the local cloud applies)."""
    supported = {"Id", "Status", "Prefix", "ExpirationInDays", "NoncurrentVersionExpiration"}
    unsupported = sorted(set(rule) - supported)
    if unsupported:
        raise ProvisionError(f"{logical_id}: lifecycle rule property {', '.join(unsupported)} is not supported locally")
    converted: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        converted["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        days = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        converted["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(days)}
    return converted


def _logs_context_matches(condition: Mapping[str, Any], log_group_arn: str) -> bool:
    """Whether a key policy statement's condition admits CloudWatch Logs' encryption context for the group."""
    key = "kms:EncryptionContext:aws:logs:arn"
    for operator, clauses in condition.items():
        if key not in clauses:
            return False  # a condition the local check cannot evaluate admits nothing
        patterns = clauses[key] if isinstance(clauses[key], list) else [clauses[key]]
        if operator in ("ArnLike", "StringLike"):
            if not any(fnmatch.fnmatchcase(log_group_arn, p) for p in patterns):
                return False
        elif operator in ("ArnEquals", "StringEquals"):
            if log_group_arn not in patterns:
                return False
        else:
            return False
    return True


class StorageCreators(ProvisionerBase):
    """The creators of the data resources the Lambdas use directly."""

    #: The AWS::S3::Bucket properties the local cloud applies; any other is refused.
    BUCKET_PROPERTIES = frozenset(
        {
            "BucketEncryption",
            "VersioningConfiguration",
            "PublicAccessBlockConfiguration",
            "OwnershipControls",
            "NotificationConfiguration",
            "LoggingConfiguration",
            "LifecycleConfiguration",
        }
    )

    def bucket(self, logical_id: str, props: dict[str, Any]) -> None:
        """An S3 bucket with the encryption, versioning, access, logging, lifecycle and notification
        settings it declares."""
        unsupported = sorted(set(props) - self.BUCKET_PROPERTIES)
        if unsupported:
            raise ProvisionError(f"{logical_id}: property {', '.join(unsupported)} is not supported by the local cloud")
        s3 = self.client("s3")
        name = self.resolved.ref(logical_id)
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.resolved.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.resolved.region}
        s3.create_bucket(**kwargs)
        if "BucketEncryption" in props:
            # CloudFormation spells the rule key differently from the S3 API.
            rules = [
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
                }
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        if "LoggingConfiguration" in props:
            # S3 (and moto) check that the target bucket lets the logging service write to it.
            log_config = props["LoggingConfiguration"]
            unsupported = sorted(set(log_config) - {"DestinationBucketName", "LogFilePrefix"})
            if unsupported:
                names = ", ".join(unsupported)
                raise ProvisionError(f"{logical_id}: LoggingConfiguration {names} is not supported locally")
            enabled = {
                "TargetBucket": log_config["DestinationBucketName"],
                "TargetPrefix": log_config.get("LogFilePrefix", ""),
            }
            s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": enabled})
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(logical_id, rule) for rule in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        notification = props.get("NotificationConfiguration")
        if notification:
            unsupported = sorted(set(notification) - {"EventBridgeConfiguration"})
            if unsupported:
                names = ", ".join(unsupported)
                raise ProvisionError(f"{logical_id}: NotificationConfiguration {names} is not supported locally")
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )

    def bucket_policy(self, logical_id: str, props: dict[str, Any]) -> None:
        """A bucket's policy."""
        self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))

    def table(self, logical_id: str, props: dict[str, Any]) -> None:
        """An on-demand DynamoDB table with its keys, indexes, encryption, TTL and point-in-time recovery."""
        dynamodb = self.client("dynamodb")
        name = self.resolved.ref(logical_id)
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            raise ProvisionError(f"{logical_id}: only BillingMode PAY_PER_REQUEST is supported locally")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("SSESpecification", {}).get("SSEEnabled"):
            kwargs["SSESpecification"] = {"Enabled": True}
        dynamodb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )

    def topic(self, logical_id: str, props: dict[str, Any]) -> None:
        """An SNS topic with its key, display name and subscriptions; ``Ref`` gives its ARN."""
        sns = self.client("sns")
        name = self.resolved.physical_ids[logical_id]
        attributes = {}
        if props.get("KmsMasterKeyId"):
            attributes["KmsMasterKeyId"] = str(props["KmsMasterKeyId"])
        if props.get("DisplayName"):
            attributes["DisplayName"] = str(props["DisplayName"])
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        self.resolved.runtime_refs[logical_id] = arn
        for subscription in props.get("Subscription", []):
            sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])

    def topic_policy(self, logical_id: str, props: dict[str, Any]) -> None:
        """The policy of each of its topics."""
        sns = self.client("sns")
        for topic_arn in props["Topics"]:
            sns.set_topic_attributes(
                TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
            )

    def key(self, logical_id: str, props: dict[str, Any]) -> None:
        """A KMS key with its policy and rotation; ``Ref`` gives its key id."""
        kms = self.client("kms")
        kwargs: dict[str, Any] = {
            "Description": props.get("Description", logical_id),
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
        }
        if "KeyPolicy" in props:
            kwargs["Policy"] = json.dumps(props["KeyPolicy"])
        metadata = kms.create_key(**kwargs)["KeyMetadata"]
        self.resolved.runtime_refs[logical_id] = metadata["KeyId"]
        self.resolved.runtime_attributes[(logical_id, "Arn")] = metadata["Arn"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])

    def queue(self, logical_id: str, props: dict[str, Any]) -> None:
        """An SQS queue with its retention and encryption; ``Ref`` gives its URL."""
        sqs = self.client("sqs")
        attributes = {}
        if "MessageRetentionPeriod" in props:
            attributes["MessageRetentionPeriod"] = str(props["MessageRetentionPeriod"])
        if props.get("SqsManagedSseEnabled"):
            attributes["SqsManagedSseEnabled"] = "true"
        name = self.resolved.physical_ids[logical_id]
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.resolved.runtime_refs[logical_id] = url

    def queue_policy(self, logical_id: str, props: dict[str, Any]) -> None:
        """The policy of each of its queues."""
        sqs = self.client("sqs")
        for url in props["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})

    def log_group(self, logical_id: str, props: dict[str, Any]) -> None:
        """A log group with its retention and its KMS key, once CloudWatch Logs may use that key."""
        logs = self.client("logs")
        name = self.resolved.ref(logical_id)
        kwargs: dict[str, Any] = {"logGroupName": name}
        if "KmsKeyId" in props:
            self._check_logs_can_use_key(name, str(props["KmsKeyId"]))
            kwargs["kmsKeyId"] = str(props["KmsKeyId"])
        logs.create_log_group(**kwargs)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))

    def _check_logs_can_use_key(self, log_group: str, key_arn: str) -> None:
        """Refuse, as CloudWatch Logs does, a key whose policy does not let the service use it for the group."""
        arn = f"arn:aws:logs:{self.resolved.region}:{self.resolved.account_id}:log-group:{log_group}"
        refusal = ProvisionError(
            f"AccessDeniedException: The specified KMS key does not exist or is not allowed to be used with Arn '{arn}'"
        )
        kms = self.client("kms")
        try:
            policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
        except kms.exceptions.NotFoundException as exc:
            raise refusal from exc
        service = f"logs.{self.resolved.region}.amazonaws.com"
        needed = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
        for statement in policy.get("Statement", []):
            principals = statement.get("Principal", {})
            services = principals.get("Service", []) if isinstance(principals, dict) else []
            services = [services] if isinstance(services, str) else services
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if statement.get("Effect") != "Allow" or service not in services:
                continue
            if not all(any(fnmatch.fnmatchcase(a, pattern) for pattern in actions) for a in needed):
                continue
            if _logs_context_matches(statement.get("Condition", {}), arn):
                return
        raise refusal
