"""SNS email subscriptions for the local cloud: every message lands in an outbox folder.

moto accepts email subscriptions but delivers nothing. Here each SNS message to an ``email``
or ``email-json`` subscription becomes one ``.eml`` file (RFC 5322, as SNS would mail it),
which ``stepml outbox`` lists and a browser-like test can follow.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from stepml.local import faults

_LINK = re.compile(r"https?://[^\s<>\"']+")
SENDER = "no-reply@sns.amazonaws.com"


class OutboxError(RuntimeError):
    """The outbox folder cannot be written or read."""


@dataclass(frozen=True)
class OutboxMessage:
    """One delivered email."""

    path: Path
    to: str
    subject: str
    body: str
    sent_at: str
    topic_arn: str

    @property
    def links(self) -> list[str]:
        """Links in the message body, in order (the unsubscribe footer excluded)."""
        return [link.rstrip(".,)") for link in _LINK.findall(self.body) if "Action=Unsubscribe" not in link]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "to": self.to,
            "subject": self.subject,
            "sent_at": self.sent_at,
            "topic_arn": self.topic_arn,
            "body": self.body,
            "links": self.links,
        }


class Outbox:
    """A folder of ``.eml`` files, written in send order."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def deliver(self, *, to: str, subject: str | None, body: str, topic_arn: str, message_id: str) -> Path:
        """Write one message as SNS's email delivery would look; returns the file."""
        message = EmailMessage()
        message["From"] = f"AWS Notifications <{SENDER}>"
        message["To"] = to
        message["Subject"] = subject or "AWS Notification Message"
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain="sns.local")
        message["X-Amz-Sns-Message-Id"] = message_id
        message["X-Amz-Sns-Topic-Arn"] = topic_arn
        footer = (
            "\n\n--\nIf you wish to stop receiving notifications from this topic, please click or visit the link "
            f"below to unsubscribe:\nhttps://sns.local/unsubscribe.html?SubscriptionArn={topic_arn}&Action=Unsubscribe\n"
        )
        message.set_content(body + footer)
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
                path = self.folder / name
                path.write_bytes(message.as_bytes(policy=email.policy.SMTP))
            except OSError as exc:
                raise OutboxError(f"{self.folder}: cannot write the outbox: {exc}") from exc
        return path

    def messages(self) -> list[OutboxMessage]:
        """Every delivered message, oldest first."""
        if not self.folder.exists():
            return []
        out = []
        for path in sorted(self.folder.glob("*.eml")):
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = parsed.get_body(preferencelist=("plain",))
            out.append(
                OutboxMessage(
                    path=path,
                    to=str(parsed["To"]).strip(),
                    subject=str(parsed["Subject"]).strip(),
                    body=body.get_content() if body is not None else "",
                    sent_at=str(parsed["Date"]),
                    topic_arn=str(parsed["X-Amz-Sns-Topic-Arn"]).strip(),
                )
            )
        return out


def install_moto_hooks(outbox: Outbox) -> Callable[[], None]:
    """Deliver moto's SNS email and email-json subscriptions to ``outbox``; returns the undo.

    Publish also honours the ``sns:Publish`` fault (Throttled, before anything is delivered).
    """
    from moto.sns.exceptions import SNSException
    from moto.sns.models import SNSBackend, Subscription

    class Throttled(SNSException):
        code = "Throttled"

    original = Subscription.publish
    original_backend_publish = SNSBackend.publish

    def backend_publish(self: Any, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        if throttled := faults.trigger("sns:Publish", f"{arn} {kwargs.get('subject')} {message}"):
            raise Throttled(throttled)
        return original_backend_publish(self, message, arn, *args, **kwargs)

    def publish(
        self: Any, message: str, message_id: str, subject: str | None = None, *args: Any, **kwargs: Any
    ) -> None:
        if self.protocol == "email":
            outbox.deliver(
                to=self.endpoint, subject=subject, body=message, topic_arn=self.topic.arn, message_id=message_id
            )
            return None
        if self.protocol == "email-json":
            post = self.get_post_data(message, message_id, subject)
            outbox.deliver(
                to=self.endpoint,
                subject=subject,
                body=json.dumps(post, indent=2),
                topic_arn=self.topic.arn,
                message_id=message_id,
            )
            return None
        return original(self, message, message_id, subject, *args, **kwargs)

    Subscription.publish = publish
    SNSBackend.publish = backend_publish

    def restore() -> None:
        Subscription.publish = original
        SNSBackend.publish = original_backend_publish

    return restore
