"""Every patch stepml applies to moto, named and explained.

moto is pinned exactly (pyproject.toml) because these patches reach into its internals;
``apply()`` checks the version first so an upgrade fails loudly instead of half-working.
Each patch fixes a gap where moto behaves differently from AWS for something this app uses,
and each has a test in tests/unit/test_moto_patches.py that fails without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import moto

PINNED_MOTO_VERSION = "5.2.5"


class MotoPatchError(RuntimeError):
    """moto is not the version these patches were written for."""


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    apply: Callable[[], None]


def _bool_condition_on_secure_transport() -> None:
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

    TrustCondition.verify_condition = verify_condition


def _statements_whose_condition_fails_do_not_apply() -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    @functools.wraps(original)
    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):  # type: ignore[no-untyped-def]
        if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
            return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted


PATCHES: tuple[Patch, ...] = (
    Patch(
        name="bool-condition-secure-transport",
        why=(
            "moto skips condition operators it does not know, so a statement with "
            "`Bool: {aws:SecureTransport: false}` always applies: the template's TLS-only bucket "
            "policy (Deny when the request is not TLS) denied every PutObject. The patch evaluates "
            "aws:SecureTransport as true, since the local endpoint stands in for AWS's TLS endpoint."
        ),
        apply=_bool_condition_on_secure_transport,
    ),
    Patch(
        name="failed-condition-means-not-applicable",
        why=(
            "moto answers DENIED when a statement's Condition does not hold, even for a Deny "
            "statement, so a Deny-unless-TLS statement denied TLS requests too. In AWS a statement "
            "whose condition does not hold does not apply (NEUTRAL)."
        ),
        apply=_statements_whose_condition_fails_do_not_apply,
    ),
)

_applied = False


def apply() -> None:
    """Apply every patch once; raise ``MotoPatchError`` on an unexpected moto version."""
    global _applied
    if _applied:
        return
    if moto.__version__ != PINNED_MOTO_VERSION:
        raise MotoPatchError(
            f"stepml's moto patches are for moto {PINNED_MOTO_VERSION}, found {moto.__version__}; "
            "reinstall with `make install`"
        )
    for patch in PATCHES:
        patch.apply()
    _applied = True
