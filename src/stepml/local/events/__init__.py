"""S3 to EventBridge to Step Functions for the local cloud.

moto sends S3's EventBridge notifications to rules in a shape unlike AWS's, cannot deliver to a
Step Functions target, and delivers PutEvents inside the call. ``engine`` builds AWS's events and
delivers them to the matching rules' targets after the call (a state machine target starts an
execution; an unreachable target's event goes to its dead-letter queue), asking what it needs of
the services of a ``Backends``; ``adapter`` answers that from moto's backends and holds the
``events.s3-object-created`` and ``events.put-events`` patches; ``errors`` the delivery error. The
names below were importable from the former module ``stepml.local.events`` and stay so
(``deliver_to_rules`` is the adapter's, bound to moto's backends).
"""

from stepml.local.events.adapter import PUT_EVENTS, S3_NOTIFICATIONS, deliver_to_rules
from stepml.local.events.engine import (
    DELIVERY_LOG,
    EVENTS_SESSION,
    RESERVED_SOURCE_ERROR,
    RESERVED_SOURCE_PREFIX,
    Backends,
    put_events,
    s3_object_created_event,
)
from stepml.local.events.errors import EventDeliveryError

__all__ = [
    "DELIVERY_LOG",
    "EVENTS_SESSION",
    "PUT_EVENTS",
    "RESERVED_SOURCE_ERROR",
    "RESERVED_SOURCE_PREFIX",
    "S3_NOTIFICATIONS",
    "Backends",
    "EventDeliveryError",
    "deliver_to_rules",
    "put_events",
    "s3_object_created_event",
]
