"""Create the template's resources in an AWS endpoint (moto, in-process or server).

Each supported resource type has one creator that reads the template's properties, so the
local resources carry the same keys, indexes, encryption and TTL settings as the deployed
ones. A type or property the local cloud cannot honour is a ``ProvisionError`` that names it,
never a silent skip; callers that only need part of the stack (unit tests) pass ``types``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError

from stepml import packaging
from stepml.local.apigateway import Route
from stepml.local.lambdas import FunctionSpec
from stepml.local.template import ResolvedTemplate, TemplateError, load_template


class ProvisionError(RuntimeError):
    """A resource of the template could not be created locally."""


class LocalRuntime(Protocol):
    """What the local cloud does beyond moto for compute resources (see stepml.local.cloud)."""

    def register_function(self, spec: FunctionSpec) -> None: ...

    def register_routes(self, api_logical_id: str, routes: list[Route]) -> None: ...

    def register_glue_job(self, name: str, script_path: Path) -> None: ...

    def layer_dir(self, logical_id: str) -> Path:
        """A folder for the contents of a layer built for the local workers (emptied by provisioning)."""
        ...


#: The account the local cloud provisions into (moto's default account).
ACCOUNT_ID = "123456789012"
#: The resource types whose data-plane state the Lambdas use directly.
DATA_RESOURCE_TYPES = frozenset(
    {
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::KMS::Key",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Logs::LogGroup",
        "AWS::IAM::Role",
    }
)


#: The local stand-in of the bucket of SAM's managed stack (``aws-sam-cli-managed-default``), where
#: ``sam package`` uploads the template's local artifacts.
SAM_MANAGED_BUCKET = "aws-sam-cli-managed-default-samclisourcebucket-local"


def sam_managed_bucket(s3: Any) -> str:
    """Create the stand-in of SAM's managed bucket if missing, configured as ``sam`` creates it
    (samcli/lib/bootstrap/bootstrap.py): versioned, SSE-KMS with the AWS managed key, public
    access blocked, TLS only; returns its name."""
    try:
        s3.head_bucket(Bucket=SAM_MANAGED_BUCKET)
        return SAM_MANAGED_BUCKET
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    kwargs: dict[str, Any] = {"Bucket": SAM_MANAGED_BUCKET}
    region = s3.meta.region_name
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=SAM_MANAGED_BUCKET,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=SAM_MANAGED_BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    s3.put_bucket_versioning(Bucket=SAM_MANAGED_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    arn = f"arn:aws:s3:::{SAM_MANAGED_BUCKET}"
    s3.put_bucket_policy(
        Bucket=SAM_MANAGED_BUCKET,
        Policy=json.dumps(
            {
                "Statement": [
                    {
                        "Action": ["s3:GetObject"],
                        "Effect": "Allow",
                        "Resource": f"{arn}/*",
                        "Principal": {"Service": "serverlessrepo.amazonaws.com"},
                        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}},
                    },
                    {
                        "Action": ["s3:*"],
                        "Effect": "Deny",
                        "Resource": [arn, f"{arn}/*"],
                        "Principal": "*",
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ]
            }
        ),
    )
    return SAM_MANAGED_BUCKET


def package_artifact(s3: Any, path: Path, prefix: str) -> str:
    """Upload a local file as ``sam package`` does (samcli/lib/package: ``upload_with_dedup``): to
    SAM's managed bucket, key ``<s3_prefix>/<MD5 of the file>`` (no extension for a single file),
    SSE AES256; returns its ``s3://`` URI."""
    bucket = sam_managed_bucket(s3)
    body = path.read_bytes()
    key = f"{prefix}/{hashlib.md5(body).hexdigest()}"  # noqa: S324 - SAM's content address, not security
    s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    return f"s3://{bucket}/{key}"


@dataclass
class ProvisionedStack:
    """The result of provisioning: names and ARNs by logical id, and the resolved template."""

    resolved: ResolvedTemplate
    root: Path
    created: list[str]

    def physical_id(self, logical_id: str) -> str:
        """What ``Ref`` gives for the resource: a bucket or table name, topic ARN, key id."""
        return self.resolved.ref(logical_id)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The function's resolved environment variables, as Lambda would see them."""
        return self.resolved.function_environment(logical_id)


def _coerce(value: Any, shape: Any) -> Any:
    """Convert template values (parameters arrive as strings) to the API's types, as CloudFormation does."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: _coerce(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_coerce(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _coerce(v, shape.value) for k, v in value.items()}
    if isinstance(value, str):
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("double", "float"):
            return float(value)
        if kind == "boolean":
            return value.lower() == "true"
    return value


def api_parameters(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each value converted to the type the operation's input shape declares."""
    operation_model = client.meta.service_model.operation_model(operation)
    return _coerce(params, operation_model.input_shape)


def _tags(props: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", [])]


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


class _Provisioner:
    def __init__(
        self, resolved: ResolvedTemplate, session: boto3.Session, root: Path, runtime: LocalRuntime | None = None
    ):
        self.resolved = resolved
        self.session = session
        self.root = root
        self.runtime = runtime
        self._clients: dict[str, Any] = {}
        #: What each of the template's layers puts on a worker's path, by logical id.
        self._layer_dirs: dict[str, Path] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.resolved.region)
        return self._clients[service]

    # -- creators --------------------------------------------------------------------------

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
        self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))

    def table(self, logical_id: str, props: dict[str, Any]) -> None:
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
        sns = self.client("sns")
        for topic_arn in props["Topics"]:
            sns.set_topic_attributes(
                TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
            )

    def key(self, logical_id: str, props: dict[str, Any]) -> None:
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
        sqs = self.client("sqs")
        for url in props["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})

    def log_group(self, logical_id: str, props: dict[str, Any]) -> None:
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

    def role(self, logical_id: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        name = self.resolved.ref(logical_id)
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            Tags=_tags(props),
        )
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )

    # -- compute (needs the local runtime) ------------------------------------------------

    def _require_runtime(self, logical_id: str) -> LocalRuntime:
        if self.runtime is None:
            raise ProvisionError(f"{logical_id}: provisioning compute resources needs the local cloud's runtime")
        return self.runtime

    def _local_path(self, logical_id: str, prop: str, value: Any) -> Path:
        if not isinstance(value, str) or value.startswith("s3://"):
            raise ProvisionError(f"{logical_id}.{prop}: the local cloud needs a path in the repository, got {value!r}")
        path = (self.root / value).resolve()
        if not path.exists():
            raise ProvisionError(f"{logical_id}.{prop}: {value} does not exist")
        return path

    def layer(self, logical_id: str, props: dict[str, Any]) -> None:
        """A layer's contents for the local workers' path.

        A ``makefile`` layer is this repository's library layer (scripts/build_layer.py): its
        workers get what that build ships of the ContentUri, the stepml modules the layer's
        functions import, decided by the same function (stepml.packaging); their third-party
        packages come from the local venv. Any other layer puts its ContentUri on the path.
        """
        source = self._local_path(logical_id, "ContentUri", props["ContentUri"])
        build = self.resolved.resource(logical_id).get("Metadata", {}).get("BuildMethod")
        if build == "makefile":
            runtime = self._require_runtime(logical_id)
            entries = packaging.layer_entry_files(self.root, self.resolved.template, logical_id)
            files = packaging.layer_files(source, packaging.runtime_modules(entries, source))
            target = runtime.layer_dir(logical_id)
            packaging.stage_layer(source, files, target, link=True)
            self._layer_dirs[logical_id] = target
        elif build in (None, "python3.11"):
            self._layer_dirs[logical_id] = source
        else:
            raise ProvisionError(f"{logical_id}: BuildMethod {build} is not supported by the local cloud")

    def function(self, logical_id: str, props: dict[str, Any]) -> None:
        runtime = self._require_runtime(logical_id)
        if props.get("Runtime") != "python3.11":
            raise ProvisionError(
                f"{logical_id}: Runtime {props.get('Runtime')!r} is not supported locally (python3.11)"
            )
        for unsupported in ("FunctionUrlConfig", "VpcConfig", "ImageUri"):
            if unsupported in props:
                raise ProvisionError(f"{logical_id}: property {unsupported} is not supported by the local cloud")
        reserved = props.get("ReservedConcurrentExecutions")
        if reserved is not None and (not str(reserved).isdigit() or int(reserved) > 1000):
            raise ProvisionError(f"{logical_id}: ReservedConcurrentExecutions must be an integer from 0 to 1000")
        code_dir = self._local_path(logical_id, "CodeUri", props["CodeUri"])
        layer_dirs = []
        layer_parts = []
        for layer in props.get("Layers", []):
            local = next(
                (
                    lid
                    for lid in self.resolved.resources
                    if self.resolved.resources[lid]["Type"] == "AWS::Serverless::LayerVersion"
                    and self.resolved.ref(lid) == layer
                ),
                None,
            )
            if local is not None:
                layer_dirs.append(self._layer_dirs[local])
                layer_parts.append(packaging.Part(local, packaging.unzipped_size(self._layer_dirs[local])))
                continue
            # A layer of another account: the local venv provides its packages; its size is known.
            known = packaging.known_layer(str(layer))
            if known is None:
                raise ProvisionError(
                    f"{logical_id}: layer {layer} is neither a layer of this template nor one the local cloud "
                    f"provides (the AWS SDK for pandas {packaging.AWS_SDK_PANDAS_VERSION} layer)"
                )
            layer_parts.append(known)
        try:
            packaging.FunctionPackage(logical_id, packaging.measure_code("code", code_dir), tuple(layer_parts)).check()
        except packaging.PackageLimitError as exc:
            raise ProvisionError(str(exc)) from exc
        name = self.resolved.physical_ids[logical_id]
        environment = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
        role = self.function_role(logical_id, props)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for file in packaging.package_files(code_dir):
                bundle.write(file, file.relative_to(code_dir))
        created = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler=props["Handler"],
            Code={"ZipFile": archive.getvalue()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": environment},
        )
        self.resolved.runtime_attributes[(logical_id, "Arn")] = created["FunctionArn"]
        if reserved is not None:
            self.client("lambda").put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(reserved)
            )
        runtime.register_function(
            FunctionSpec(
                name=name,
                handler=props["Handler"],
                code_dir=code_dir,
                layer_dirs=tuple(layer_dirs),
                environment=environment,
                timeout_seconds=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                arn=created["FunctionArn"],
                role_arn=role,
                reserved_concurrency=None if reserved is None else int(reserved),
            )
        )
        routes: dict[str, list[Route]] = {}
        for event_name, event in props.get("Events", {}).items():
            if event.get("Type") != "HttpApi":
                raise ProvisionError(
                    f"{logical_id}: event {event_name} of type {event.get('Type')} is not supported "
                    "locally (HttpApi only)"
                )
            api = self._api_logical_id(event["Properties"].get("ApiId"), logical_id)
            routes.setdefault(api, []).append(
                Route(event["Properties"]["Method"].upper(), event["Properties"]["Path"], name)
            )
        for api, api_routes in routes.items():
            runtime.register_routes(api, api_routes)

    def function_role(self, logical_id: str, props: dict[str, Any]) -> str:
        """The function's execution role, as SAM makes it: ``Role`` if given, else a role
        ``<LogicalId>Role`` with AWSLambdaBasicExecutionRole (and AWSXrayWriteOnlyAccess under
        active tracing), each ``Policies`` document inline as ``<LogicalId>RolePolicy<N>`` and each
        policy named by ARN or AWS managed name attached."""
        if props.get("Role"):
            return str(props["Role"])
        iam = self.client("iam")
        name = self.resolved.physical_ids[logical_id]
        role_name = f"{name}-role"[:64]
        arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        managed = ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
        if props.get("Tracing") == "Active":
            managed.append("arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess")
        policies = props.get("Policies", [])
        if isinstance(policies, (str, dict)):
            policies = [policies]
        for index, policy in enumerate(policies):
            if isinstance(policy, str):
                managed.append(policy if policy.startswith("arn:") else f"arn:aws:iam::aws:policy/{policy}")
            elif isinstance(policy, dict) and "Statement" in policy:
                iam.put_role_policy(
                    RoleName=role_name, PolicyName=f"{logical_id}RolePolicy{index}", PolicyDocument=json.dumps(policy)
                )
            else:
                raise ProvisionError(
                    f"{logical_id}.Policies[{index}]: SAM policy templates ({', '.join(map(str, policy))}) are not "
                    "supported by the local cloud; write the statements out as a policy document"
                )
        for policy_arn in managed:
            try:
                iam.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
            except iam.exceptions.NoSuchEntityException as exc:
                raise ProvisionError(f"{logical_id}: managed policy {policy_arn} does not exist") from exc
        return arn

    def _api_logical_id(self, api_ref: Any, logical_id: str) -> str:
        for lid, spec in self.resolved.resources.items():
            if spec["Type"] == "AWS::Serverless::HttpApi" and self.resolved.ref(lid) == api_ref:
                return lid
        raise ProvisionError(f"{logical_id}: HttpApi event needs ApiId referring to an AWS::Serverless::HttpApi")

    def http_api(self, logical_id: str, props: dict[str, Any]) -> None:
        self._require_runtime(logical_id)
        for unsupported in ("Auth", "Domain", "CorsConfiguration", "DefinitionBody", "DefinitionUri"):
            if unsupported in props:
                raise ProvisionError(f"{logical_id}: property {unsupported} is not supported by the local cloud")

    def state_machine(self, logical_id: str, props: dict[str, Any]) -> None:
        if props.get("Type", "STANDARD") != "STANDARD":
            raise ProvisionError(f"{logical_id}: only STANDARD state machines run locally")
        if props.get("Events"):
            raise ProvisionError(
                f"{logical_id}: Events on the state machine are not supported locally; use an AWS::Events::Rule"
            )
        definition = self.resolved.state_machine_definition(logical_id, self.root)
        options: dict[str, Any] = {}
        if "Logging" in props:
            logging = props["Logging"]
            options["loggingConfiguration"] = {
                "level": logging.get("Level", "OFF"),
                "includeExecutionData": bool(logging.get("IncludeExecutionData", False)),
                "destinations": [
                    {"cloudWatchLogsLogGroup": {"logGroupArn": d["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                    for d in logging.get("Destinations", [])
                ],
            }
        if "Tracing" in props:
            options["tracingConfiguration"] = {"enabled": bool(props["Tracing"].get("Enabled", False))}
        try:
            arn = self.client("stepfunctions").create_state_machine(
                name=self.resolved.physical_ids[logical_id],
                definition=json.dumps(definition),
                roleArn=props["Role"],
                type="STANDARD",
                **options,
            )["stateMachineArn"]
        except ClientError as exc:
            error = exc.response["Error"]
            raise ProvisionError(
                f"{logical_id}: CreateStateMachine failed: {error['Code']}: {error['Message']}"
            ) from exc
        self.resolved.runtime_refs[logical_id] = arn

    def glue_security_configuration(self, logical_id: str, props: dict[str, Any]) -> None:
        # CloudFormation says S3Encryptions where the Glue API says S3Encryption.
        encryption = {
            ("S3Encryption" if key == "S3Encryptions" else key): value
            for key, value in props["EncryptionConfiguration"].items()
        }
        self.client("glue").create_security_configuration(Name=props["Name"], EncryptionConfiguration=encryption)

    def glue_job(self, logical_id: str, props: dict[str, Any]) -> None:
        runtime = self._require_runtime(logical_id)
        command = dict(props["Command"])
        script = self._local_path(logical_id, "Command.ScriptLocation", command["ScriptLocation"])
        # As after `sam package`: the job reads its script from SAM's bucket; the prefix is the
        # samconfig s3_prefix, which is the stack name.
        command["ScriptLocation"] = package_artifact(self.client("s3"), script, self.resolved.stack_name)
        kwargs = {
            k: props[k]
            for k in (
                "Description",
                "Role",
                "GlueVersion",
                "WorkerType",
                "NumberOfWorkers",
                "Timeout",
                "MaxRetries",
                "SecurityConfiguration",
                "ExecutionProperty",
                "DefaultArguments",
            )
            if k in props
        }
        glue = self.client("glue")
        glue.create_job(**api_parameters(glue, "CreateJob", {"Name": props["Name"], "Command": command, **kwargs}))
        runtime.register_glue_job(props["Name"], script)

    def rule(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = self.resolved.physical_ids[logical_id]
        arn = events.put_rule(
            Name=name,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
            Description=props.get("Description", ""),
        )["RuleArn"]
        self.resolved.runtime_attributes[(logical_id, "Arn")] = arn
        events.put_targets(Rule=name, Targets=props["Targets"])

    def alarm(self, logical_id: str, props: dict[str, Any]) -> None:
        cloudwatch = self.client("cloudwatch")
        params = {**props, "AlarmName": self.resolved.ref(logical_id)}
        cloudwatch.put_metric_alarm(**api_parameters(cloudwatch, "PutMetricAlarm", params))

    def creators(self) -> dict[str, Callable[[str, dict[str, Any]], None]]:
        return {
            "AWS::Serverless::LayerVersion": self.layer,
            "AWS::Serverless::Function": self.function,
            "AWS::Serverless::HttpApi": self.http_api,
            "AWS::Serverless::StateMachine": self.state_machine,
            "AWS::Glue::SecurityConfiguration": self.glue_security_configuration,
            "AWS::Glue::Job": self.glue_job,
            "AWS::Events::Rule": self.rule,
            "AWS::CloudWatch::Alarm": self.alarm,
            "AWS::S3::Bucket": self.bucket,
            "AWS::S3::BucketPolicy": self.bucket_policy,
            "AWS::DynamoDB::Table": self.table,
            "AWS::SNS::Topic": self.topic,
            "AWS::SNS::TopicPolicy": self.topic_policy,
            "AWS::KMS::Key": self.key,
            "AWS::SQS::Queue": self.queue,
            "AWS::SQS::QueuePolicy": self.queue_policy,
            "AWS::Logs::LogGroup": self.log_group,
            "AWS::IAM::Role": self.role,
        }


def referenced_resources(value: Any, resources: Iterable[str]) -> set[str]:
    """Logical ids of ``resources`` that an unresolved value refers to through Ref, GetAtt or
    Sub (``${!Literal}`` in a Sub is text, not a reference)."""
    names = set(resources)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, arg in node.items():
                if key == "Ref" and isinstance(arg, str) and arg in names:
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    logical = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                    if logical in names:
                        found.add(logical)
                elif key == "Fn::Sub":
                    text = arg[0] if isinstance(arg, list) else arg
                    for part in str(text).split("${")[1:]:
                        name = part.split("}", 1)[0].split(".", 1)[0]
                        if not name.startswith("!") and name in names:
                            found.add(name)
                    if isinstance(arg, list):
                        walk(arg[1])
                else:
                    walk(arg)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


def creation_order(resolved: ResolvedTemplate, logical_ids: Iterable[str]) -> list[str]:
    """Order resources so each comes after what it refers to (as CloudFormation does)."""
    wanted = list(logical_ids)
    resources = resolved.resources
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(logical: str, path: tuple[str, ...]) -> None:
        if state.get(logical) == "done":
            return
        if state.get(logical) == "visiting":
            raise ProvisionError(f"circular reference: {' -> '.join((*path, logical))}")
        state[logical] = "visiting"
        spec = resources[logical]
        deps = referenced_resources(spec.get("Properties", {}), resources)
        depends_on = spec.get("DependsOn", [])
        deps |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        for dep in sorted(deps):
            if dep in wanted:
                visit(dep, (*path, logical))
        state[logical] = "done"
        order.append(logical)

    for logical in wanted:
        visit(logical, ())
    return order


def provision(
    template_path: Path | str,
    session: boto3.Session,
    *,
    stack_name: str = "stepml-local",
    region: str = "us-east-1",
    parameter_overrides: Mapping[str, str] | None = None,
    types: Iterable[str] | None = None,
    runtime: LocalRuntime | None = None,
) -> ProvisionedStack:
    """Create the template's resources (or only those of ``types``) through ``session``."""
    template_path = Path(template_path)
    account_id = ACCOUNT_ID
    resolved = ResolvedTemplate(
        load_template(template_path),
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameter_overrides=dict(parameter_overrides or {}),
        source=str(template_path),
    )
    provisioner = _Provisioner(resolved, session, template_path.parent, runtime)
    creators = provisioner.creators()
    wanted_types = set(types) if types is not None else None
    selected = []
    for logical, spec in resolved.resources.items():
        if not resolved.is_enabled(logical):
            continue
        if wanted_types is not None and spec["Type"] not in wanted_types:
            continue
        if spec["Type"] not in creators:
            raise ProvisionError(
                f"{template_path}: resource {logical} has type {spec['Type']}, which the local cloud cannot provision"
            )
        selected.append(logical)
    created = []
    for logical in creation_order(resolved, selected):
        try:
            props = resolved.resolved_properties(logical)
            creators[resolved.resources[logical]["Type"]](logical, props)
        except TemplateError as exc:
            raise ProvisionError(f"{template_path}: {logical}: {exc}") from exc
        except Exception as exc:
            raise ProvisionError(f"{template_path}: creating {logical} failed: {exc}") from exc
        created.append(logical)
    return ProvisionedStack(resolved=resolved, root=template_path.parent, created=created)
