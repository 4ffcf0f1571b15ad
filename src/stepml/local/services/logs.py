"""CloudWatch Logs patches: AssociateKmsKey, which moto lacks, with the key policy check Logs makes."""

from __future__ import annotations

from typing import Any

from stepml.local.patching import Patch, register
from stepml.local.services.service_principals import service_may

_TESTS = "tests/unit/test_service_patches.py::"
#: What CloudWatch Logs must be allowed to do with a log group's key.
_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")


def logs_may_use_key(account: str, region: str, group: str, key_id: str) -> bool:
    """Whether the key's policy lets ``logs.<region>.amazonaws.com`` use it for the log group."""
    from moto.kms.models import kms_backends

    from stepml.local.iam.model import AuthorizationRequest, Principal

    backend = kms_backends[account][region]
    try:
        key = backend.keys[backend.any_id_to_key_id(key_id)]
    except Exception:  # an unknown id, alias or ARN
        return False
    service = f"logs.{region}.amazonaws.com"
    principal = Principal(arn=service, account=account, service=service)
    context = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account}:log-group:{group}"}
    return all(
        service_may(
            principal, AuthorizationRequest(action, key.arn, context), key.policy, key_policy=True, service="logs"
        )
        for action in _KEY_ACTIONS
    )


def _install_associate_kms_key(patch: Patch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.logs.exceptions import ResourceNotFoundException
    from moto.logs.responses import LogsResponse

    def associate_kms_key(self: Any) -> str:
        group = self._get_param("logGroupName")
        key_id = self._get_param("kmsKeyId")
        backend = self.logs_backend
        if group not in backend.groups:
            raise ResourceNotFoundException("The specified log group does not exist.")
        if not logs_may_use_key(self.current_account, self.region, group, key_id):
            arn = f"arn:aws:logs:{self.region}:{self.current_account}:log-group:{group}"
            raise JsonRESTError(
                "AccessDeniedException",
                f"The specified KMS key does not exist or is not allowed to be used with Arn '{arn}'",
            )
        backend.groups[group].kms_key_id = key_id
        return ""

    patch.replace(LogsResponse, "associate_kms_key", associate_kms_key)


register(
    Patch(
        name="logs-associate-kms-key",
        why=(
            "moto 5.2.5 has no CloudWatch Logs AssociateKmsKey. Glue calls it, as the job role, for the log "
            "groups of a job whose security configuration encrypts CloudWatch Logs (SSE-KMS). The patch "
            "associates the key after checking, as CloudWatch Logs does, that the key policy lets "
            "logs.<region>.amazonaws.com use it for that group (else AccessDeniedException 'The specified KMS "
            "key does not exist or is not allowed to be used with Arn ...')."
        ),
        test=_TESTS + "test_associate_kms_key_checks_the_key_policy_as_cloudwatch_logs_does",
        install=_install_associate_kms_key,
    )
)
