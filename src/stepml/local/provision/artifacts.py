"""The local stand-in of SAM's managed bucket and what ``sam package`` uploads to it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stepml.local.provision.base import ACCOUNT_ID

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
