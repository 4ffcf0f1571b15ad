"""DynamoDB patches: conditional writes are atomic, as DynamoDB makes them."""

from __future__ import annotations

import functools
import threading

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"
_WRITE_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def _install_writes_are_atomic(patch: Patch) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            with _WRITE_LOCK:
                return _original(self, *args, **kwargs)

        patch.replace(DynamoDBBackend, name, functools.wraps(original)(locked))


register(
    Patch(
        name="dynamodb-writes-atomic",
        why=(
            "moto checks a ConditionExpression and then writes without a lock, so under the threaded "
            "server two concurrent conditional writes can both succeed. DynamoDB makes each conditional "
            "write atomic; the approval API's exactly-once decision and ResolveRun's claim rely on it."
        ),
        test=_TESTS + "test_concurrent_conditional_writes_have_exactly_one_winner",
        install=_install_writes_are_atomic,
    )
)
