"""EventBridge delivery under moto: the patches that send S3's notifications and PutEvents to it.

The delivery itself (``engine``) imports no moto; ``MotoBackends`` answers what it asks of the
services from moto's backends, where the rules, targets and queues live. This module is the only
one of the package that imports or changes moto.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from stepml.local.events import engine
from stepml.local.events.engine import s3_object_created_event
from stepml.local.events.errors import EventDeliveryError
from stepml.local.patching import Patch, register

Result = TypeVar("Result")


def _service_error(call: Callable[[], Result]) -> Result:
    """Run ``call``; a moto service error (either of moto's two kinds) becomes an EventDeliveryError."""
    from moto.core.exceptions import ServiceException, _RESTError

    try:
        return call()
    except _RESTError as exc:
        raise EventDeliveryError(exc.error_type, exc.message) from exc
    except ServiceException as exc:  # the Step Functions interpreter's backend raises these
        raise EventDeliveryError(exc.code, exc.message) from exc


class MotoBackends:
    """The engine's ``Backends``, answered from moto's in-process backends."""

    def rules(self, account_id: str, region: str, bus: str) -> list[Any]:
        """The rules of ``bus`` in moto's EventBridge (none when the bus does not exist)."""
        from moto.events.models import events_backends

        event_bus = events_backends[account_id][region].event_buses.get(bus)
        return list(event_bus.rules.values()) if event_bus is not None else []

    def bus_name(self, account_id: str, region: str, name: str | None) -> str:
        """The bus an entry names; an unknown bus raises moto's error, which fails the call as AWS does."""
        from moto.events.models import events_backends

        backend = events_backends[account_id][region]
        bus = backend._normalize_event_bus_arn(name)
        backend.describe_event_bus(bus)
        return bus

    def start_execution(self, account_id: str, region: str, state_machine_arn: str, execution_input: str) -> None:
        """Start an execution in moto's Step Functions (its interpreter runs it)."""
        from moto.stepfunctions.responses import get_backend

        backend = get_backend(account_id, region)
        _service_error(
            lambda: backend.start_execution(
                state_machine_arn=state_machine_arn, name=str(uuid.uuid4()), execution_input=execution_input
            )
        )

    def send_to_target(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        """moto's own sending, to this one target (a rule with several targets sends each once)."""
        single = copy.copy(rule)
        single.targets = [target]
        _service_error(lambda: single.send_to_targets(event, transform_input=True))

    def send_message(self, queue_arn: str, body: str, attributes: dict[str, str]) -> None:
        """SendMessage to moto's SQS queue ``queue_arn``."""
        from moto.sqs.models import sqs_backends

        _, _, _, region, account_id, name = queue_arn.split(":", 5)
        typed = {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}
        _service_error(lambda: sqs_backends[account_id][region].send_message(name, body, message_attributes=typed))

    def transform_input(self, transformer: dict[str, Any], event: dict[str, Any]) -> Any:
        """The event rendered by moto's InputTransformer template parser."""
        from moto.events.utils import EventTemplateParser

        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )

    def function_policy(self, function_arn: str) -> str | None:
        """The function's policy text, as GetPolicy's ``Policy`` (None without a function or a statement)."""
        from moto.awslambda.models import lambda_backends

        _, _, _, region, account_id, rest = function_arn.split(":", 5)
        try:
            answer = lambda_backends[account_id][region].get_policy(rest.split(":")[1])
        except Exception:  # moto's not-found errors: nothing allows the invocation
            return None
        return str(json.loads(answer)["Policy"])  # GetPolicy's answer holds the policy as JSON text

    def invoke_function(self, function_arn: str, payload: str) -> None:
        """An Event invocation through moto's Lambda, which the ``lambda.invoke`` patch hands to the
        local Lambda engine (queued, as Lambda queues asynchronous invocations)."""
        from moto.awslambda.models import lambda_backends

        _, _, _, region, account_id, rest = function_arn.split(":", 5)
        function = _service_error(lambda: lambda_backends[account_id][region].get_function(rest.split(":")[1]))
        _service_error(lambda: function.invoke(payload, {"X-Amz-Invocation-Type": "Event"}, {}))


BACKENDS = MotoBackends()


def deliver_to_rules(account_id: str, region: str, event: dict[str, Any], bus: str = "default") -> list[str]:
    """Send ``event`` to every matching rule's targets on ``bus`` in moto; returns those targets' ARNs
    (``engine.deliver_to_rules``)."""
    return engine.deliver_to_rules(BACKENDS, account_id, region, event, bus)


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
        if event_name.endswith(":Put") and getattr(key, "multipart", None) is not None:
            # moto's CompleteMultipartUpload writes the object with put_object, which notifies a
            # Put, then notifies CompleteMultipartUpload: S3 sends only the second.
            return None
        reason = _OBJECT_CREATED_REASONS.get(event_name.split(":")[-1], "PutObject")
        event = s3_object_created_event(
            account_id, bucket.region_name, bucket.name, key.name, key.size, key.etag, key.version_id, reason
        )
        # S3 notifies after the write returns; so does the local cloud.
        threading.Thread(target=deliver_to_rules, args=(account_id, bucket.region_name, event), daemon=True).start()
        return None

    patch.replace(notifications, "_send_event_bridge_message", send)


def _install_put_events(patch: Patch) -> None:
    from moto.events.exceptions import ValidationException
    from moto.events.models import EventsBackend

    def put_events_hook(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return engine.put_events(BACKENDS, self.account_id, self.region_name, events)
        except EventDeliveryError as exc:
            raise ValidationException(exc.message) from exc

    patch.replace(EventsBackend, "put_events", put_events_hook)


S3_NOTIFICATIONS = register(
    Patch(
        name="events.s3-object-created",
        why=(
            "moto sends S3's EventBridge notifications synchronously, in a shape unlike AWS's (eTag, a numeric "
            "time), and its rules cannot deliver to a Step Functions target; a multipart upload notifies twice "
            "(Put, then CompleteMultipartUpload). The local cloud builds AWS's Object Created event, once per "
            "object, and delivers it to the matching rules after the write returns, starting a state machine "
            "target's execution."
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
