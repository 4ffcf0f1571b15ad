"""Patches to moto's own policy conditions (the bucket policies moto's S3 evaluates).

moto evaluates a bucket's policy on object requests with its IAM statement model; these patches
make a TLS-only statement (``Bool: {aws:SecureTransport: false}``) behave as in AWS.
"""

from __future__ import annotations

import functools

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"


def _install_bool_condition_on_secure_transport(patch: Patch) -> None:
    from moto.iam.policy_conditions import TrustCondition

    original = TrustCondition.verify_condition

    @functools.wraps(original)
    def verify_condition(self, actual_values):  # type: ignore[no-untyped-def]
        if self._condition != "Bool":
            return original(self, actual_values)
        for key, expected in zip(self._expected_value_source, self._expected_value, strict=True):
            if key.lower() != "aws:securetransport":
                continue  # other Bool keys: keep moto's behaviour (not evaluated)
            allowed = [expected] if isinstance(expected, str) else expected
            if "true" not in [str(value).lower() for value in allowed]:
                return False
        return True

    patch.replace(TrustCondition, "verify_condition", verify_condition)


def _install_failed_condition_means_not_applicable(patch: Patch) -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    @functools.wraps(original)
    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):  # type: ignore[no-untyped-def]
        if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
            return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    patch.replace(IAMPolicyStatement, "is_action_permitted", is_action_permitted)


register(
    Patch(
        name="bool-condition-secure-transport",
        why=(
            "moto skips condition operators it does not know, so a statement with "
            "`Bool: {aws:SecureTransport: false}` always applies: the template's TLS-only bucket "
            "policy (Deny when the request is not TLS) denied every PutObject. The patch evaluates "
            "aws:SecureTransport as true, since the local endpoint stands in for AWS's TLS endpoint."
        ),
        test=_TESTS + "test_a_tls_only_bucket_policy_lets_objects_be_written",
        install=_install_bool_condition_on_secure_transport,
    )
)
register(
    Patch(
        name="failed-condition-means-not-applicable",
        why=(
            "moto answers DENIED when a statement's Condition does not hold, even for a Deny "
            "statement, so a Deny-unless-TLS statement denied TLS requests too. In AWS a statement "
            "whose condition does not hold does not apply (NEUTRAL)."
        ),
        test=_TESTS + "test_a_tls_only_bucket_policy_lets_objects_be_written",
        install=_install_failed_condition_means_not_applicable,
    )
)
