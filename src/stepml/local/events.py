"""S3 to EventBridge to Step Functions for the local cloud.

moto sends S3's EventBridge notifications to rules, but in a shape that differs from AWS's
(``eTag`` instead of ``etag``, a numeric ``time``) and its rules cannot deliver to a Step
Functions target. Here an object created in a bucket with EventBridge notifications produces
the AWS "Object Created" event, rules match it by their event pattern (moto's matcher), and a
state machine target starts an execution with the event as input, asynchronously as in AWS.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

#: Filled by the hooks: (target ARN, event) of every delivery, for tests and ``stepml`` status.
DELIVERY_LOG: list[dict[str, Any]] = []
_DELIVERY_LOCK = threading.Lock()


def s3_object_created_event(
    account_id: str,
    region: str,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    reason: str = "PutObject",
) -> dict[str, Any]:
    """The event S3 sends to EventBridge for a new object, field for field."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag.strip('"'),
                **({"version-id": version_id} if version_id and version_id != "null" else {}),
                "sequencer": f"{int(datetime.now(UTC).timestamp() * 1e6):016X}",
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


def _start_execution(account_id: str, region: str, state_machine_arn: str, event: dict[str, Any]) -> None:
    from moto.stepfunctions.responses import get_backend

    backend = get_backend(account_id, region)
    backend.start_execution(
        state_machine_arn=state_machine_arn, name=str(uuid.uuid4()), execution_input=json.dumps(event)
    )


def deliver_to_rules(account_id: str, region: str, event: dict[str, Any]) -> list[str]:
    """Send ``event`` to every matching rule's targets; returns the target ARNs reached."""
    from moto.events.models import events_backends

    reached = []
    backend = events_backends[account_id][region]
    for bus in backend.event_buses.values():
        for rule in bus.rules.values():
            if rule.state != "ENABLED" or not rule.event_pattern.matches_event(event):
                continue
            for target in rule.targets:
                arn = target["Arn"]
                entry = {"rule": rule.name, "target": arn, "event_id": event["id"]}
                if ":states:" in arn and ":stateMachine:" in arn:
                    denial = _target_role_denial(target, "states:StartExecution", arn)
                    if denial is None:
                        _start_execution(account_id, region, arn, event)
                    else:
                        # EventBridge cannot invoke the target: after its retries the event goes
                        # to the target's dead-letter queue, if it has one.
                        entry["error"] = denial
                        _send_to_dead_letter_queue(account_id, region, rule.arn, target, event, denial)
                else:
                    rule.send_to_targets(event, transform_input=True)
                reached.append(arn)
                with _DELIVERY_LOCK:
                    DELIVERY_LOG.append(entry)
    return reached


#: The session name of EventBridge's calls under a target's role.
EVENTS_SESSION = "EventBridge"


def _target_role_denial(target: dict[str, Any], action: str, resource: str) -> str | None:
    """AWS's denial message when the target's role may not invoke the target, else None."""
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam.gate import AccessDeniedError
    from stepml.local.iam.model import AuthorizationRequest

    authorizer = iam_hooks.active()
    if authorizer is None:
        return None
    role_arn = target.get("RoleArn")
    if not role_arn:
        return f"the target {resource} has no RoleArn: EventBridge needs a role to call {action}"
    try:
        authorizer.require_role(role_arn, EVENTS_SESSION, [AuthorizationRequest(action, resource)], service="events")
    except AccessDeniedError as denied:
        return denied.message
    return None


def _send_to_dead_letter_queue(
    account_id: str, region: str, rule_arn: str, target: dict[str, Any], event: dict[str, Any], error: str
) -> None:
    """Put an undeliverable event on the target's DLQ, as EventBridge (its service principal,
    with the rule as aws:SourceArn) does, if the queue's policy lets it."""
    queue_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
    if not queue_arn:
        return
    from moto.sqs.models import sqs_backends

    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam.model import AuthorizationRequest, Principal

    authorizer = iam_hooks.active()
    if authorizer is not None:
        service = Principal(arn="events.amazonaws.com", account=account_id, service="events.amazonaws.com")
        request = AuthorizationRequest(
            "sqs:SendMessage", queue_arn, {"aws:SourceArn": rule_arn, "aws:SourceAccount": account_id}
        )
        if not authorizer.check(service, request, service="sqs").allowed:
            return
    queue_name = queue_arn.rsplit(":", 1)[-1]
    backend = sqs_backends[account_id][region]
    backend.send_message(
        queue_name,
        json.dumps(event),
        message_attributes={
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": error[:1000]},
            "RULE_ARN": {"DataType": "String", "StringValue": rule_arn},
            "TARGET_ARN": {"DataType": "String", "StringValue": target["Arn"]},
        },
    )


def install_moto_hooks() -> Callable[[], None]:
    """Replace moto's S3 EventBridge notification with AWS-shaped, asynchronous delivery."""
    import moto.s3.notifications as notifications

    original = notifications._send_event_bridge_message

    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        if "ObjectCreated" not in event_name:
            return original(account_id, bucket, event_name, key)
        reason = {
            "Put": "PutObject",
            "Post": "PostObject",
            "Copy": "CopyObject",
            "CompleteMultipartUpload": "CompleteMultipartUpload",
        }.get(event_name.split(":")[-1], "PutObject")
        event = s3_object_created_event(
            account_id, bucket.region_name, bucket.name, key.name, key.size, key.etag, key.version_id, reason
        )
        # S3 notifies after the write returns; so does the local cloud.
        threading.Thread(target=deliver_to_rules, args=(account_id, bucket.region_name, event), daemon=True).start()
        return None

    notifications._send_event_bridge_message = send

    def restore() -> None:
        notifications._send_event_bridge_message = original

    return restore
