"""EventBridge delivery under moto: the patches that send S3's notifications and PutEvents to it.

The delivery itself (``engine``) reads moto's backends, where the rules, targets and queues live;
this module is the only one that changes moto's code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from stepml.local.events.engine import deliver_to_rules, put_events, s3_object_created_event
from stepml.local.patching import Patch, register

_OBJECT_CREATED_REASONS = {
    "Put": "PutObject",
    "Post": "PostObject",
    "Copy": "CopyObject",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _install_s3_notifications(patch: Patch) -> None:
    import moto.s3.notifications as notifications

    original = notifications._send_event_bridge_message

    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        if "ObjectCreated" not in event_name:
            return original(account_id, bucket, event_name, key)
        reason = _OBJECT_CREATED_REASONS.get(event_name.split(":")[-1], "PutObject")
        event = s3_object_created_event(
            account_id, bucket.region_name, bucket.name, key.name, key.size, key.etag, key.version_id, reason
        )
        # S3 notifies after the write returns; so does the local cloud.
        threading.Thread(target=deliver_to_rules, args=(account_id, bucket.region_name, event), daemon=True).start()
        return None

    patch.replace(notifications, "_send_event_bridge_message", send)


def _install_put_events(patch: Patch) -> None:
    from moto.events.models import EventsBackend

    def put_events_hook(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return put_events(self, events)

    patch.replace(EventsBackend, "put_events", put_events_hook)


S3_NOTIFICATIONS = register(
    Patch(
        name="events.s3-object-created",
        why=(
            "moto sends S3's EventBridge notifications synchronously, in a shape unlike AWS's (eTag, a numeric "
            "time), and its rules cannot deliver to a Step Functions target. The local cloud builds AWS's "
            "Object Created event and delivers it to the matching rules after the write returns, starting a "
            "state machine target's execution."
        ),
        test="tests/unit/test_local_events.py::test_an_upload_under_incoming_starts_one_execution_with_the_aws_event",
        install=_install_s3_notifications,
        scope="cloud",
    )
)
PUT_EVENTS = register(
    Patch(
        name="events.put-events",
        why=(
            "moto delivers PutEvents inside the call and raises NotImplementedError (HTTP 500) for a target it "
            "cannot send to, a state machine among them. The local cloud answers every entry as AWS does (a "
            "reserved aws.* source is a failed entry) and delivers accepted ones after the call returns, an "
            "unreachable target's event going to its dead-letter queue."
        ),
        test=(
            "tests/unit/test_local_events.py::"
            "test_put_events_delivers_a_custom_event_to_a_state_machine_target_in_the_aws_shape"
        ),
        install=_install_put_events,
        scope="cloud",
    )
)


def install_moto_hooks() -> Callable[[], None]:
    """Replace moto's S3 EventBridge notification and PutEvents with AWS-shaped, asynchronous delivery
    (the ``events.s3-object-created`` and ``events.put-events`` patches); returns the undo."""
    undos = [S3_NOTIFICATIONS.apply(), PUT_EVENTS.apply()]

    def restore() -> None:
        for undo in reversed(undos):
            undo()

    return restore
