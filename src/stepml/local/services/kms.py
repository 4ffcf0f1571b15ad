"""KMS patches: the key policy lockout safety check of CreateKey and PutKeyPolicy; no RSA key pair
made for keys that never use one."""

from __future__ import annotations

import functools
import json
from typing import Any

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"
KEY_POLICY_LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."


def caller_may_update_key_policy(response: Any, key_arn: str) -> bool:
    """Whether the caller of a KMS request (a role, or the local user as an administrator) may then
    call kms:PutKeyPolicy on the key, asked of a running local cloud's IAM gate (without one: yes)."""
    from stepml.local.iam import gate as iam_gate
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam.model import AuthorizationRequest

    authorizer = iam_hooks.active()
    if authorizer is None:
        return True
    principals = authorizer.principals
    principal = principals.principal_of(response.get_access_key())
    identity = None
    if principal is None:
        principal, identity = principals.administrator(), [iam_gate.ADMINISTRATOR_POLICY]
    request = AuthorizationRequest("kms:PutKeyPolicy", key_arn)
    return authorizer.check(principal, request, service="kms", identity=identity).allowed


def _lockout() -> Exception:
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError("MalformedPolicyDocumentException", KEY_POLICY_LOCKOUT_MESSAGE)


def _install_key_policy_lockout_check(patch: Patch) -> None:
    from moto.kms.responses import KmsResponse

    original_create = KmsResponse.create_key
    original_put = KmsResponse.put_key_policy

    def create_key(self: Any) -> str:
        answer = original_create(self)
        if not self._get_param("Policy") or self._get_param("BypassPolicyLockoutSafetyCheck"):
            return answer
        metadata = json.loads(answer)["KeyMetadata"]
        if not caller_may_update_key_policy(self, metadata["Arn"]):
            self.kms_backend.keys.pop(metadata["KeyId"], None)
            raise _lockout()
        return answer

    def put_key_policy(self: Any) -> str:
        key_id = self._get_param("KeyId")
        try:
            key = self.kms_backend.describe_key(key_id)
            previous, key_arn = key.policy, key.arn
        except Exception:  # moto's own answer for an unknown key
            return original_put(self)
        answer = original_put(self)
        if not self._get_param("BypassPolicyLockoutSafetyCheck") and not caller_may_update_key_policy(self, key_arn):
            key.policy = previous
            raise _lockout()
        return answer

    patch.replace(KmsResponse, "create_key", create_key)
    patch.replace(KmsResponse, "put_key_policy", put_key_policy)


register(
    Patch(
        name="kms-key-policy-lockout-check",
        why=(
            "moto accepts any key policy at CreateKey and PutKeyPolicy. KMS refuses one that would not let "
            "the caller update it later (its policy lockout safety check, unless BypassPolicyLockoutSafetyCheck): "
            f"MalformedPolicyDocumentException '{KEY_POLICY_LOCKOUT_MESSAGE}'. In a local cloud the patch asks "
            "its IAM gate whether the caller (a role, or the local user as an administrator) may then call "
            "kms:PutKeyPolicy on the key, and refuses the policy as KMS does if not."
        ),
        test=_TESTS + "test_a_key_policy_that_locks_the_caller_out_is_refused_as_kms_refuses_it",
        install=_install_key_policy_lockout_check,
    )
)


def _install_shared_unused_key_pair(patch: Patch) -> None:
    import moto.kms.models as kms_models

    original = kms_models.generate_private_key

    @functools.cache
    def unused_pair() -> Any:
        return original("RSA_2048")

    def generate_private_key(key_spec: str) -> Any:
        if key_spec == "SYMMETRIC_DEFAULT" or key_spec.startswith("HMAC_"):
            return unused_pair()
        return original(key_spec)

    patch.replace(kms_models, "generate_private_key", generate_private_key)


register(
    Patch(
        name="kms-no-key-pair-for-symmetric-keys",
        why=(
            "moto generates an RSA-2048 key pair for every key it creates, about 0.1 s each, symmetric and "
            "HMAC keys included, which never use it (their encryption uses the key material). Those keys "
            "share one pair; asymmetric keys keep their own. The stack's four keys are created at every "
            "local cloud start and in every unit test that provisions the template."
        ),
        test=_TESTS + "test_symmetric_and_hmac_keys_make_no_key_pair_of_their_own",
        install=_install_shared_unused_key_pair,
    )
)
