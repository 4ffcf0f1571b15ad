"""What an S3 call asks IAM for: object and bucket actions, the condition keys of its headers,
copies (a read of the source and a write of the target), and SSE-KMS on the caller's behalf.

Most of the module is tables (operation -> action, header -> condition key): data, not logic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, kms_via_service, need, tag_map

# Sources: Service Authorization Reference "Actions, resources, and condition keys for Amazon S3";
# S3 API Reference, the Permissions section of each operation (GetObject/HeadObject with
# versionId -> s3:GetObjectVersion; DeleteObject with versionId -> s3:DeleteObjectVersion;
# multipart upload parts -> s3:PutObject; PutObject with x-amz-tagging -> s3:PutObjectTagging,
# with ACL headers -> s3:PutObjectAcl; ListObjects(V2) -> s3:ListBucket; HeadBucket ->
# s3:ListBucket; DeleteObjects -> s3:DeleteObject per key).

_S3_OBJECT_ACTIONS: dict[str, tuple[str, str | None]] = {
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "SelectObjectContent": ("s3:GetObject", None),
    "GetObjectAcl": ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "GetObjectTorrent": ("s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"),
    "GetObjectRetention": ("s3:GetObjectRetention", None),
    "PutObjectRetention": ("s3:PutObjectRetention", None),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", None),
    "PutObjectLegalHold": ("s3:PutObjectLegalHold", None),
    "RestoreObject": ("s3:RestoreObject", None),
    "UploadPart": ("s3:PutObject", None),
    "CompleteMultipartUpload": ("s3:PutObject", None),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "ListParts": ("s3:ListMultipartUploadParts", None),
}

_S3_BUCKET_ACTIONS: dict[str, str] = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketNotification": "s3:GetBucketNotification",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotification": "s3:PutBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketCors": "s3:GetBucketCORS",
    "PutBucketCors": "s3:PutBucketCORS",
    "DeleteBucketCors": "s3:PutBucketCORS",
    "GetBucketLifecycle": "s3:GetLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycle": "s3:PutLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketWebsite": "s3:GetBucketWebsite",
    "PutBucketWebsite": "s3:PutBucketWebsite",
    "DeleteBucketWebsite": "s3:DeleteBucketWebsite",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetBucketLogging": "s3:GetBucketLogging",
    "PutBucketLogging": "s3:PutBucketLogging",
    "GetBucketReplication": "s3:GetReplicationConfiguration",
    "PutBucketReplication": "s3:PutReplicationConfiguration",
    "DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "GetBucketRequestPayment": "s3:GetBucketRequestPayment",
    "PutBucketRequestPayment": "s3:PutBucketRequestPayment",
    "GetBucketAccelerateConfiguration": "s3:GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "s3:PutAccelerateConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetBucketAnalyticsConfiguration": "s3:GetAnalyticsConfiguration",
    "ListBucketAnalyticsConfigurations": "s3:GetAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "GetBucketInventoryConfiguration": "s3:GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "s3:GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "GetBucketMetricsConfiguration": "s3:GetMetricsConfiguration",
    "ListBucketMetricsConfigurations": "s3:GetMetricsConfiguration",
    "PutBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "GetBucketIntelligentTieringConfiguration": "s3:GetIntelligentTieringConfiguration",
    "ListBucketIntelligentTieringConfigurations": "s3:GetIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
}

_S3_GLOBAL_ACTIONS: dict[str, str] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "ListDirectoryBuckets": "s3express:ListAllMyDirectoryBuckets",
    "WriteGetObjectResponse": "s3-object-lambda:WriteGetObjectResponse",
}

_S3_WRITE_HEADER_KEYS = {
    # request header -> condition key, for the writes that create an object
    "x-amz-acl": "s3:x-amz-acl",
    "x-amz-grant-read": "s3:x-amz-grant-read",
    "x-amz-grant-read-acp": "s3:x-amz-grant-read-acp",
    "x-amz-grant-write-acp": "s3:x-amz-grant-write-acp",
    "x-amz-grant-full-control": "s3:x-amz-grant-full-control",
    "x-amz-server-side-encryption": "s3:x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-storage-class": "s3:x-amz-storage-class",
    "x-amz-website-redirect-location": "s3:x-amz-website-redirect-location",
    "x-amz-object-lock-mode": "s3:object-lock-mode",
    "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold": "s3:object-lock-legal-hold",
    "x-amz-copy-source": "s3:x-amz-copy-source",
    "x-amz-metadata-directive": "s3:x-amz-metadata-directive",
}

#: Members of the object-writing operations by the header they come from.
_S3_WRITE_MEMBERS = {
    "ACL": "x-amz-acl",
    "GrantRead": "x-amz-grant-read",
    "GrantReadACP": "x-amz-grant-read-acp",
    "GrantWriteACP": "x-amz-grant-write-acp",
    "GrantFullControl": "x-amz-grant-full-control",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "StorageClass": "x-amz-storage-class",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
    "ObjectLockMode": "x-amz-object-lock-mode",
    "ObjectLockRetainUntilDate": "x-amz-object-lock-retain-until-date",
    "ObjectLockLegalHoldStatus": "x-amz-object-lock-legal-hold",
    "CopySource": "x-amz-copy-source",
    "MetadataDirective": "x-amz-metadata-directive",
}


def _s3_common_context(env: CallEnv) -> dict[str, Any]:
    call = env.call
    # Every bucket of the local cloud belongs to its one account.
    context: dict[str, Any] = {"s3:ResourceAccount": env.account}
    if call.auth_type:
        context["s3:authType"] = call.auth_type
    if call.signature_version:
        context["s3:signatureversion"] = "AWS" if call.signature_version == "AWS" else call.signature_version
    return context


def _s3_tag_set(value: Any) -> dict[str, str]:
    """Object tags from ``x-amz-tagging`` (``k=v&k2=v2``) or a ``Tagging`` body."""
    if isinstance(value, str):
        return dict(parse_qsl(value, keep_blank_values=True))
    if isinstance(value, Mapping):
        return tag_map(value.get("TagSet")) or {}
    return {}


def _s3_object_tag_context(tags: Mapping[str, str]) -> dict[str, Any]:
    if not tags:
        return {}
    context: dict[str, Any] = {f"s3:RequestObjectTag/{key}": value for key, value in tags.items()}
    context["s3:RequestObjectTagKeys"] = list(tags)
    return context


def _s3_write(env: CallEnv, bucket: str, key: str, *, copy: bool) -> list[AuthorizationRequest]:
    """s3:PutObject (PutObject, CopyObject's target, CreateMultipartUpload) with the condition
    keys of its headers, and the extra actions its headers ask for."""
    params = env.params
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    context = _s3_common_context(env)
    for member, header in _S3_WRITE_MEMBERS.items():
        if member in params and (copy or member not in ("CopySource", "MetadataDirective")):
            value = params[member]
            context[_S3_WRITE_HEADER_KEYS[header]] = value
    tags = _s3_tag_set(params.get("Tagging"))
    if copy and params.get("TaggingDirective") != "REPLACE":
        tags = {}
    context.update(_s3_object_tag_context(tags))
    requests = [need("s3:PutObject", object_arn, context)]
    if tags:
        requests.append(need("s3:PutObjectTagging", object_arn, _s3_object_tag_context(tags)))
    if any(member in params for member in ("ACL", "GrantRead", "GrantReadACP", "GrantWriteACP", "GrantFullControl")):
        requests.append(
            need(
                "s3:PutObjectAcl", object_arn, {k: v for k, v in context.items() if "grant" in k or k == "s3:x-amz-acl"}
            )
        )
    if "ObjectLockMode" in params or "ObjectLockRetainUntilDate" in params:
        requests.append(need("s3:PutObjectRetention", object_arn))
    if "ObjectLockLegalHoldStatus" in params:
        requests.append(need("s3:PutObjectLegalHold", object_arn))
    requests.extend(_s3_kms_for_write(env, bucket, object_arn))
    return requests


def _s3_kms_for_write(env: CallEnv, bucket: str, object_arn: str) -> list[AuthorizationRequest]:
    """SSE-KMS writes: S3 asks KMS for a data key as the caller (kms:GenerateDataKey on the key,
    via s3), for the key named in the request or else the bucket's default key. Multipart
    uploads also need kms:Decrypt (S3 API Reference, CreateMultipartUpload)."""
    params = env.params
    encryption = params.get("ServerSideEncryption")
    key_id = params.get("SSEKMSKeyId")
    if encryption is None and key_id is None:
        key_id = env.optional("s3_bucket_kms_key", bucket)
    elif not str(encryption or "aws:kms").startswith("aws:kms"):
        return []
    if not key_id:
        return []  # the AWS managed key aws/s3, whose key policy allows the account via S3
    extra = {"kms:EncryptionContext:aws:s3:arn": object_arn, "kms:EncryptionContextKeys": ["aws:s3:arn"]}
    requests = [kms_via_service(env, "kms:GenerateDataKey", key_id, "s3", extra)]
    if env.call.operation == "CreateMultipartUpload":
        requests.append(kms_via_service(env, "kms:Decrypt", key_id, "s3", extra))
    return requests


def _s3_kms_for_read(env: CallEnv, bucket: str, key: str, version: str | None) -> list[AuthorizationRequest]:
    """kms:Decrypt via S3 for a stored SSE-KMS object, when the resolver knows its key."""
    kms_key = env.optional("s3_object_kms_key", bucket, key, version)
    if not kms_key:
        return []
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    extra = {"kms:EncryptionContext:aws:s3:arn": object_arn, "kms:EncryptionContextKeys": ["aws:s3:arn"]}
    return [kms_via_service(env, "kms:Decrypt", kms_key, "s3", extra)]


def _s3_copy_source(value: str) -> tuple[str, str | None]:
    """(source ARN, version id) of ``x-amz-copy-source`` (``bucket/key[?versionId=v]``, URL-encoded,
    or an access point ARN)."""
    path, _, query = value.partition("?")
    version = dict(parse_qsl(query)).get("versionId")
    path = unquote(path).lstrip("/")
    if path.startswith("arn:"):
        return path, version
    return f"arn:aws:s3:::{path}", version


def s3_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an S3 call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    bucket = params.get("Bucket")
    key = params.get("Key")
    common = _s3_common_context(env)
    if operation in _S3_GLOBAL_ACTIONS:
        return [need(_S3_GLOBAL_ACTIONS[operation], "*", common)]
    if bucket is None:
        return None
    if key is not None:
        return _s3_object(env, bucket, key, common)
    if operation == "DeleteObjects":
        return _s3_delete_objects(env, bucket, common)
    if operation in _S3_BUCKET_ACTIONS:
        return _s3_bucket(env, bucket, common)
    return None


def _s3_object(env: CallEnv, bucket: str, key: str, common: dict[str, Any]) -> list[AuthorizationRequest] | None:
    """An operation on one object (``Key`` given); None for one outside the tables."""
    operation = env.call.operation
    params = env.params
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    version = params.get("VersionId")
    if operation in ("PutObject", "CreateMultipartUpload"):
        return _s3_write(env, bucket, key, copy=False)
    if operation in ("CopyObject", "UploadPartCopy"):
        return _s3_copy(env, bucket, key, common)
    if operation == "GetObjectAttributes":
        if version:
            version_context = {**common, "s3:versionid": version}
            return [
                need("s3:GetObjectVersion", object_arn, version_context),
                need("s3:GetObjectVersionAttributes", object_arn, version_context),
            ]
        return [
            need("s3:GetObject", object_arn, common),
            need("s3:GetObjectAttributes", object_arn, common),
        ]
    if operation not in _S3_OBJECT_ACTIONS:
        return None
    action, versioned = _S3_OBJECT_ACTIONS[operation]
    context = dict(common)
    if version and versioned:
        action = versioned
        context["s3:versionid"] = version
    if operation == "PutObjectTagging":
        context.update(_s3_object_tag_context(_s3_tag_set(params.get("Tagging"))))
    requests = [need(action, object_arn, context)]
    if operation in ("GetObject", "SelectObjectContent"):
        # Reading an SSE-KMS object decrypts its data key as the caller (HEAD does not).
        requests += _s3_kms_for_read(env, bucket, key, version)
    return requests


def _s3_copy(env: CallEnv, bucket: str, key: str, common: dict[str, Any]) -> list[AuthorizationRequest]:
    """CopyObject and UploadPartCopy: a read of the source (its version, its SSE-KMS key) and a
    write of the target."""
    source_arn, source_version = _s3_copy_source(str(env.params.get("CopySource", "")))
    if source_version:
        read = need("s3:GetObjectVersion", source_arn, {**common, "s3:versionid": source_version})
    else:
        read = need("s3:GetObject", source_arn, common)
    source_bucket, _, source_key = source_arn.removeprefix("arn:aws:s3:::").partition("/")
    source_kms = _s3_kms_for_read(env, source_bucket, source_key, source_version)
    if env.call.operation == "UploadPartCopy":
        return [read, *source_kms, need("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", common)]
    return [read, *source_kms, *_s3_write(env, bucket, key, copy=True)]


def _s3_delete_objects(env: CallEnv, bucket: str, common: dict[str, Any]) -> list[AuthorizationRequest]:
    """DeleteObjects: s3:DeleteObject (or DeleteObjectVersion) on each key of the batch."""
    requests = []
    for item in (env.params.get("Delete") or {}).get("Objects", []):
        item_arn = f"arn:aws:s3:::{bucket}/{item.get('Key', '')}"
        if item.get("VersionId"):
            requests.append(need("s3:DeleteObjectVersion", item_arn, {**common, "s3:versionid": item["VersionId"]}))
        else:
            requests.append(need("s3:DeleteObject", item_arn, common))
    return requests or [need("s3:DeleteObject", f"arn:aws:s3:::{bucket}/*", common)]


def _s3_bucket(env: CallEnv, bucket: str, common: dict[str, Any]) -> list[AuthorizationRequest]:
    """An operation of the bucket table, on the bucket (listings with their prefix condition keys)."""
    operation = env.call.operation
    params = env.params
    bucket_arn = f"arn:aws:s3:::{bucket}"
    context = dict(common)
    if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        context.update(
            {
                "s3:prefix": params.get("Prefix"),
                "s3:delimiter": params.get("Delimiter"),
                "s3:max-keys": params.get("MaxKeys"),
            }
        )
    if operation == "CreateBucket":
        return _s3_create_bucket(env, bucket_arn, context)
    return [need(_S3_BUCKET_ACTIONS[operation], bucket_arn, context)]


def _s3_create_bucket(env: CallEnv, bucket_arn: str, context: dict[str, Any]) -> list[AuthorizationRequest]:
    """CreateBucket and the actions its options ask for (S3 API Reference, CreateBucket
    Permissions: object lock -> s3:PutBucketObjectLockConfiguration and s3:PutBucketVersioning;
    x-amz-object-ownership -> s3:PutBucketOwnershipControls; ACL headers -> s3:PutBucketAcl)."""
    params = env.params
    configuration = params.get("CreateBucketConfiguration") or {}
    context = {
        **context,
        "s3:LocationConstraint": configuration.get("LocationConstraint"),
        "s3:x-amz-acl": params.get("ACL"),
        "s3:x-amz-object-ownership": params.get("ObjectOwnership"),
    }
    requests = [need("s3:CreateBucket", bucket_arn, context)]
    if params.get("ObjectLockEnabledForBucket"):
        requests.append(need("s3:PutBucketObjectLockConfiguration", bucket_arn))
        requests.append(need("s3:PutBucketVersioning", bucket_arn))
    if params.get("ObjectOwnership"):
        requests.append(need("s3:PutBucketOwnershipControls", bucket_arn))
    if any(
        member in params
        for member in ("ACL", "GrantRead", "GrantReadACP", "GrantWrite", "GrantWriteACP", "GrantFullControl")
    ):
        requests.append(need("s3:PutBucketAcl", bucket_arn))
    return requests
