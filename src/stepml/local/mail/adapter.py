"""The outbox under moto: the one module of the local email that reaches into moto.

moto accepts email subscriptions and SES sends but delivers nothing. The ``sns.email-delivery``
and ``ses.send-email`` patches write them into an ``Outbox``; ``sns.publish-fault`` lets Publish
honour the ``sns:Publish`` fault.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from stepml.local import faults
from stepml.local.mail.outbox import Outbox
from stepml.local.patching import Patch, register


def _install_ses_send_email(patch: Patch, outbox: Outbox) -> None:
    from moto.sesv2.responses import SESV2Response

    original = SESV2Response.send_email

    def send_email(self: Any) -> str:
        # moto first: it refuses unverified senders and bad addresses, and returns the id.
        answer = original(self)
        message_id = json.loads(answer)["MessageId"]
        params = json.loads(self.body)
        content = params.get("Content") or {}
        if "Raw" in content:
            outbox.deliver_raw(base64.b64decode(content["Raw"]["Data"]))
            return answer
        simple = content.get("Simple") or {}
        body = simple.get("Body") or {}
        destination = params.get("Destination") or {}
        outbox.deliver_ses(
            sender=params.get("FromEmailAddress", ""),
            to=[*destination.get("ToAddresses", []), *destination.get("CcAddresses", [])],
            subject=(simple.get("Subject") or {}).get("Data", ""),
            text=(body.get("Text") or {}).get("Data"),
            html=(body.get("Html") or {}).get("Data"),
            message_id=message_id,
        )
        return answer

    patch.replace(SESV2Response, "send_email", send_email)


def _install_sns_email(patch: Patch, outbox: Outbox) -> None:
    from moto.sns.models import Subscription

    original = Subscription.publish

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

    patch.replace(Subscription, "publish", publish)


def _install_sns_publish_fault(patch: Patch) -> None:
    from moto.sns.exceptions import SNSException
    from moto.sns.models import SNSBackend

    class Throttled(SNSException):
        code = "Throttled"

    original_backend_publish = SNSBackend.publish

    def backend_publish(self: Any, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        if throttled := faults.trigger("sns:Publish", f"{arn} {kwargs.get('subject')} {message}"):
            raise Throttled(throttled)
        return original_backend_publish(self, message, arn, *args, **kwargs)

    patch.replace(SNSBackend, "publish", backend_publish)


SNS_EMAIL = register(
    Patch(
        name="sns.email-delivery",
        why=(
            "moto accepts email and email-json subscriptions but delivers nothing to them. The local cloud "
            "writes each message to such a subscription into its outbox as the .eml SNS would mail."
        ),
        test="tests/unit/test_local_mail.py::test_a_message_to_the_approval_topic_lands_in_the_outbox",
        install=_install_sns_email,
        scope="cloud",
    )
)
SNS_PUBLISH_FAULT = register(
    Patch(
        name="sns.publish-fault",
        why=(
            "moto's Publish cannot be made to fail. The local cloud's sns:Publish fault makes it answer "
            "Throttled before anything is delivered, as SNS does under throttling, so the state machine's "
            "retries of SNS tasks can be exercised."
        ),
        test="tests/unit/test_local_faults.py::test_sns_publish_throttles_and_delivers_nothing",
        install=_install_sns_publish_fault,
        scope="cloud",
    )
)
SES_SEND_EMAIL = register(
    Patch(
        name="ses.send-email",
        why=(
            "moto's SES v2 SendEmail checks the request (a sender that is not a verified identity is refused) "
            "and returns a message id, but delivers nothing. The local cloud writes the message into its "
            "outbox as SES would mail it (multipart text and HTML, or the Raw message as sent)."
        ),
        test="tests/unit/test_local_mail.py::test_an_ses_email_with_text_and_html_is_one_multipart_message",
        install=_install_ses_send_email,
        scope="cloud",
    )
)
