"""The local EventBridge delivery: AWS-shaped events, delivered to rules' targets after the call.

moto sends S3's EventBridge notifications to rules, but in a shape that differs from AWS's
(``eTag`` instead of ``etag``, a numeric ``time``) and its rules cannot deliver to a Step
Functions target. Here an object created in a bucket with EventBridge notifications produces
the AWS "Object Created" event, rules match it by their event pattern (moto's matcher), and a
state machine target starts an execution with the event as input, asynchronously as in AWS.

``PutEvents`` goes the same way. moto delivers a put event synchronously inside the call and
raises ``NotImplementedError`` for a target it cannot send to (a state machine among them), so
the caller got HTTP 500 for an event AWS would have accepted. AWS answers every entry: a
reserved ``aws.*`` source is a failed entry (only AWS services publish those), an accepted
entry is delivered after the call returns, and a target that cannot be reached never reaches
the caller (its event goes to the target's dead-letter queue, when it has one).

A Lambda function target is invoked asynchronously, as EventBridge does, when the function's
resource-based policy lets ``events.amazonaws.com`` invoke it for the rule (``aws:SourceArn``);
else the delivery fails with AccessDenied and the event is dead-lettered like any other.

The engine imports no moto: what it reads and calls in the emulated services (a bus's rules, a
state machine, a queue) it asks of a ``Backends``, which the adapter answers from moto's backends.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from stepml.local.events.errors import EventDeliveryError


class Backends(Protocol):
    """What delivery needs of the emulated services. A service's error is raised as an
    ``EventDeliveryError`` with that service's code, except in ``bus_name``, whose error is the
    PutEvents call's own answer."""

    def rules(self, account_id: str, region: str, bus: str) -> list[Any]:
        """The rules of event bus ``bus`` (none when the bus does not exist)."""

    def bus_name(self, account_id: str, region: str, name: str | None) -> str:
        """The name of the bus a PutEvents entry names (``None``: the default bus)."""

    def start_execution(self, account_id: str, region: str, state_machine_arn: str, execution_input: str) -> None:
        """Start an execution of ``state_machine_arn`` with ``execution_input``."""

    def send_to_target(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        """Send ``event`` to ``target`` of ``rule`` (a log group, a queue, a bus); a target kind the
        services cannot send to raises ``NotImplementedError``."""

    def send_message(self, queue_arn: str, body: str, attributes: dict[str, str]) -> None:
        """Put ``body`` on the queue with string message attributes."""

    def transform_input(self, transformer: dict[str, Any], event: dict[str, Any]) -> Any:
        """The event as a target's ``InputTransformer`` renders it."""

    def function_policy(self, function_arn: str) -> str | None:
        """The function's resource-based policy text (None: no function, or no statement)."""

    def invoke_function(self, function_arn: str, payload: str) -> None:
        """Invoke the function asynchronously (an Event invocation) with ``payload``."""


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


#: What AWS answers, per entry, for a customer's PutEvents with a source AWS services reserve.
RESERVED_SOURCE_ERROR = {
    "ErrorCode": "NotAuthorizedForSourceException",
    "ErrorMessage": "Not authorized for the source.",
}
RESERVED_SOURCE_PREFIX = "aws."


def _target_input(backends: Backends, target: dict[str, Any], event: dict[str, Any]) -> Any:
    """What a target receives: the event, or its ``Input``, ``InputPath`` or ``InputTransformer``."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        found = [match.value for match in parse(target["InputPath"]).find(event)]
        return found[0] if found else None
    if "InputTransformer" in target:
        return backends.transform_input(target["InputTransformer"], event)
    return event


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


def _function_denial(backends: Backends, account_id: str, rule: Any, function_arn: str) -> str | None:
    """AWS's reason when the function's resource-based policy does not let EventBridge, for this
    rule, invoke it (a Lambda target takes no RoleArn: its policy alone decides), else None."""
    from stepml.local.iam.model import AuthorizationRequest, Principal
    from stepml.local.services.service_principals import service_may

    service = Principal(arn="events.amazonaws.com", account=account_id, service="events.amazonaws.com")
    request = AuthorizationRequest(
        "lambda:InvokeFunction", function_arn, {"aws:SourceArn": rule.arn, "aws:SourceAccount": account_id}
    )
    policy = backends.function_policy(function_arn)
    if policy is not None and service_may(service, request, policy, service="lambda"):
        return None
    return (
        f"events.amazonaws.com is not authorized to perform: lambda:InvokeFunction on resource: {function_arn} "
        f"because no resource-based policy allows the lambda:InvokeFunction action from rule {rule.arn}"
    )


def _send_to_target(
    backends: Backends, account_id: str, region: str, rule: Any, target: dict[str, Any], event: dict[str, Any]
) -> None:
    arn = target["Arn"]
    if ":lambda:" in arn and ":function:" in arn:
        denial = _function_denial(backends, account_id, rule, arn)
        if denial is not None:
            raise EventDeliveryError("AccessDeniedException", denial)
        backends.invoke_function(arn, json.dumps(_target_input(backends, target, event)))
        return
    if ":states:" in arn and ":stateMachine:" in arn:
        denial = _target_role_denial(target, "states:StartExecution", arn)
        if denial is not None:
            raise EventDeliveryError("AccessDeniedException", denial)
        execution_input = json.dumps(_target_input(backends, target, event))
        backends.start_execution(account_id, region, arn, execution_input)
        return
    try:
        backends.send_to_target(rule, target, event)
    except NotImplementedError as exc:
        raise EventDeliveryError("NotSupportedLocally", f"the local cloud cannot deliver to {arn}") from exc


def _dead_letter(
    backends: Backends, account_id: str, rule: Any, target: dict[str, Any], event: Any, error: EventDeliveryError
) -> bool:
    """Put an undeliverable event on the target's dead-letter queue, with AWS's attributes, as
    EventBridge (its service principal, with the rule as aws:SourceArn) does if the queue's
    policy lets it."""
    queue_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
    if not queue_arn:
        return False
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam.model import AuthorizationRequest, Principal

    authorizer = iam_hooks.active()
    if authorizer is not None:
        service = Principal(arn="events.amazonaws.com", account=account_id, service="events.amazonaws.com")
        request = AuthorizationRequest(
            "sqs:SendMessage", queue_arn, {"aws:SourceArn": rule.arn, "aws:SourceAccount": account_id}
        )
        if not authorizer.check(service, request, service="sqs").allowed:
            return False
    attributes = {
        "RULE_ARN": rule.arn,
        "TARGET_ARN": target["Arn"],
        "ERROR_CODE": error.code,
        "ERROR_MESSAGE": error.message[:1000],
        "RETRY_ATTEMPTS": "0",
    }
    try:
        backends.send_message(queue_arn, json.dumps(event), attributes)
    except EventDeliveryError:
        return False  # EventBridge drops an event whose dead-letter queue is gone too
    return True


def deliver_to_rules(
    backends: Backends, account_id: str, region: str, event: dict[str, Any], bus: str = "default"
) -> list[str]:
    """Send ``event`` to every matching rule's targets on ``bus``; returns those targets' ARNs.

    A target that cannot take the event is logged (``error``) and its event dead-lettered, as
    EventBridge does after its retries; it never fails the delivery to the other targets.
    """
    reached = []
    for rule in backends.rules(account_id, region, bus):
        if rule.state != "ENABLED" or not rule.event_pattern.matches_event(event):
            continue
        for target in list(rule.targets):
            arn = target["Arn"]
            record: dict[str, Any] = {"rule": rule.name, "target": arn, "event_id": event["id"]}
            reached.append(arn)
            try:
                _send_to_target(backends, account_id, region, rule, target, event)
            except EventDeliveryError as error:
                record["error"] = str(error)
                record["dead_lettered"] = _dead_letter(backends, account_id, rule, target, event, error)
            with _DELIVERY_LOCK:
                DELIVERY_LOG.append(record)
    return reached


def _entry_error(entry: dict[str, Any]) -> dict[str, str] | None:
    """The failed-entry answer AWS gives for ``entry``, or None when it is accepted."""
    for field in ("Source", "DetailType", "Detail"):
        if not entry.get(field):
            return {
                "ErrorCode": "InvalidArgument",
                "ErrorMessage": f"Parameter {field} is not valid. Reason: {field} is a required argument.",
            }
    if entry["Source"].startswith(RESERVED_SOURCE_PREFIX):
        return dict(RESERVED_SOURCE_ERROR)
    try:
        json.loads(entry["Detail"])
    except ValueError:
        return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    return None


def _event_time(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def put_events(backends: Backends, account_id: str, region: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PutEvents as AWS answers it: one result per entry, accepted events delivered afterwards.

    The events of one call are delivered in order on one thread, so a test that waits for the
    last accepted event's delivery knows the earlier ones have been delivered too. More than ten
    entries raise ``EventDeliveryError("ValidationException", ...)``, AWS's answer to the call.
    """
    if len(entries) > 10:
        raise EventDeliveryError(
            "ValidationException",
            "1 validation error detected: Value '[PutEventsRequestEntry]' at 'entries' failed to satisfy "
            "constraint: Member must have length less than or equal to 10",
        )
    results: list[dict[str, Any]] = []
    accepted: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        error = _entry_error(entry)
        if error is not None:
            results.append(error)
            continue
        bus = backends.bus_name(account_id, region, entry.get("EventBusName"))
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": account_id,
            "time": _event_time(entry.get("Time")),
            "region": region,
            "resources": entry.get("Resources", []),
            "detail": json.loads(entry["Detail"]),
        }
        results.append({"EventId": event["id"]})
        accepted.append((bus, event))

    def deliver() -> None:
        for bus, event in accepted:
            deliver_to_rules(backends, account_id, region, event, bus)

    if accepted:
        threading.Thread(target=deliver, name="put-events-delivery", daemon=True).start()
    return results
