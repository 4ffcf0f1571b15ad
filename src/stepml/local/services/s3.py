"""S3 patches: PutBucketLogging's check of the target bucket's policy."""

from __future__ import annotations

from typing import Any

from stepml.local.patching import Patch, register
from stepml.local.services.service_principals import service_may

_TESTS = "tests/unit/test_service_patches.py::"
_LOGGING_SERVICE = "logging.s3.amazonaws.com"


def log_permissions_enabled_policy(source_bucket: Any, target_bucket: Any, target_prefix: str | None) -> bool:
    """Whether the target's bucket policy lets S3's log delivery put the source's logs there,
    evaluated as AWS evaluates it (conditions on the source account and bucket included)."""
    from stepml.local.iam.model import AuthorizationRequest, Principal

    if not target_bucket.policy:
        return False
    account = source_bucket.account_id
    principal = Principal(arn=_LOGGING_SERVICE, account=account, service=_LOGGING_SERVICE)
    request = AuthorizationRequest(
        "s3:PutObject",
        f"arn:{target_bucket.partition}:s3:::{target_bucket.name}/{target_prefix or ''}",
        {
            "aws:SourceAccount": account,
            "aws:SourceArn": f"arn:{source_bucket.partition}:s3:::{source_bucket.name}",
            "aws:SecureTransport": "true",
        },
    )
    return service_may(principal, request, target_bucket.policy, service="s3")


def _install_log_delivery_policy_check(patch: Patch) -> None:
    from moto.s3.models import FakeBucket

    # moto calls it as a static method; a plain function gets the source bucket as well.
    patch.replace(FakeBucket, "_log_permissions_enabled_policy", log_permissions_enabled_policy)


register(
    Patch(
        name="s3-log-delivery-policy-any-statement",
        why=(
            "PutBucketLogging checks that the target bucket's policy lets logging.s3.amazonaws.com PutObject; "
            'moto\'s check crashed (AttributeError, HTTP 500) on any statement whose Principal is "*", such as '
            "the TLS-only Deny every bucket of the template has, and matched Action and Resource only as single "
            "strings. The patch evaluates the target's policy with stepml's IAM evaluator for "
            "logging.s3.amazonaws.com's s3:PutObject under the prefix, with aws:SourceAccount and aws:SourceArn of "
            "the source bucket, as S3 does (so an explicit Deny or an unmet condition refuses the logging)."
        ),
        test=_TESTS + "test_bucket_logging_reads_a_target_policy_with_a_principal_star_statement",
        install=_install_log_delivery_policy_check,
    )
)
