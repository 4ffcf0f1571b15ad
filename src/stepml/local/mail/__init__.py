"""Email for the local cloud: SNS email subscriptions and SES v2 SendEmail land in an outbox.

The same shape as the local cloud's engines: ``outbox`` (the ``.eml`` files, as SNS and SES would
mail them) and ``adapter`` (the only module that reaches into moto: the ``sns.email-delivery``,
``sns.publish-fault`` and ``ses.send-email`` patches). The names below were importable from the
former module ``stepml.local.mail`` and stay so.
"""

from stepml.local.mail.adapter import SES_SEND_EMAIL, SNS_EMAIL, SNS_PUBLISH_FAULT
from stepml.local.mail.outbox import SENDER, Outbox, OutboxError, OutboxMessage

__all__ = [
    "SENDER",
    "SES_SEND_EMAIL",
    "SNS_EMAIL",
    "SNS_PUBLISH_FAULT",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
]
