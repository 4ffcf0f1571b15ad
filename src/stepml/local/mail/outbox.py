"""The local cloud's outbox: the email SNS and SES would have sent, one ``.eml`` file each.

moto accepts email subscriptions and SES sends but delivers nothing. Here each SNS message to
an ``email`` or ``email-json`` subscription becomes one plain-text ``.eml`` file (RFC 5322, as
SNS would mail it), and each SES v2 ``SendEmail`` becomes one ``.eml`` file as SES would mail
it: ``multipart/alternative`` with the text and HTML parts for Simple content, the message
itself for Raw content. moto still checks the request first (a sender that is not a verified
identity is refused with MessageRejected, as in SES). ``stepml outbox`` lists the files and a
browser test follows their links.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

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
    sender: str = ""
    html: str | None = None

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
            "from": self.sender,
            "body": self.body,
            "html": self.html,
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
        return self._write(message.as_bytes(policy=email.policy.SMTP))

    def deliver_ses(
        self,
        *,
        sender: str,
        to: list[str],
        subject: str,
        text: str | None,
        html: str | None,
        message_id: str,
    ) -> Path:
        """Write one SES Simple-content message: text and HTML as ``multipart/alternative``."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<{message_id}@email.amazonses.com>"
        message["MIME-Version"] = "1.0"
        if text is not None:
            message.set_content(text)
            if html is not None:
                message.add_alternative(html, subtype="html")
        elif html is not None:
            message.set_content(html, subtype="html")
        return self._write(message.as_bytes(policy=email.policy.SMTP))

    def deliver_raw(self, raw: bytes) -> Path:
        """Write an SES Raw-content message as it was sent."""
        return self._write(raw)

    def _write(self, data: bytes) -> Path:
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
                path = self.folder / name
                path.write_bytes(data)
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
            html = parsed.get_body(preferencelist=("html",))
            out.append(
                OutboxMessage(
                    path=path,
                    to=str(parsed["To"]).strip(),
                    subject=str(parsed["Subject"]).strip(),
                    body=_text(body.get_content()) if body is not None else "",
                    sent_at=str(parsed["Date"]),
                    topic_arn=str(parsed["X-Amz-Sns-Topic-Arn"] or "").strip(),
                    sender=str(parsed["From"] or "").strip(),
                    html=_text(html.get_content()) if html is not None else None,
                )
            )
        return out


def _text(content: str) -> str:
    """A part's text with the SMTP line endings (CRLF) of the file turned back into newlines."""
    return content.replace("\r\n", "\n")
