"""The local EventBridge delivery's errors."""

from __future__ import annotations


class EventDeliveryError(RuntimeError):
    """A rule's target could not take the event; ``code`` is the target service's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
