"""What an SNS, SQS or SES (v1 and v2) call asks IAM for."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, first_at, kms_via_service, need, with_tag_on_create

# --- SNS, SQS ---


def sns_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an SNS call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"sns:{operation}"
    if operation == "CreateTopic":
        return with_tag_on_create(env, [need(action, env.arn("sns", str(params.get("Name", ""))))])
    if operation == "Publish":
        if not params.get("TopicArn") and not params.get("TargetArn"):
            return [need(action, "*")]  # SMS to a phone number
        topic = params.get("TopicArn") or params.get("TargetArn")
        return [need(action, topic), *_sns_kms(env, topic)]
    if operation == "PublishBatch":
        topic = params.get("TopicArn", "")
        return [need("sns:Publish", topic), *_sns_kms(env, topic)]
    if operation == "Subscribe":
        context = {"sns:Protocol": params.get("Protocol"), "sns:Endpoint": params.get("Endpoint")}
        return [need(action, params.get("TopicArn", ""), context)]
    for member in ("TopicArn", "SubscriptionArn", "ResourceArn", "PlatformApplicationArn", "EndpointArn"):
        if params.get(member):
            return [need(action, params[member])]
    return None


def _sns_kms(env: CallEnv, topic_arn: str) -> list[AuthorizationRequest]:
    """Publishing to an SSE-KMS topic: the publisher needs kms:GenerateDataKey and kms:Decrypt
    on the topic's key (SNS Developer Guide, "Encryption at rest", key management)."""
    key = env.optional("sns_topic_kms_key", topic_arn)
    if not key:
        return []
    return [
        kms_via_service(env, "kms:GenerateDataKey", key, "sns"),
        kms_via_service(env, "kms:Decrypt", key, "sns"),
    ]


_SQS_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _sqs_queue_arn(env: CallEnv, url: str) -> str:
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if len(parts) >= 2:
        return env.arn("sqs", parts[-1], account=parts[-2])
    return env.arn("sqs", parts[-1] if parts else url)


def sqs_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an SQS call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = _SQS_ACTIONS.get(operation, f"sqs:{operation}")
    if operation in ("ListQueues",):
        return [need(action, "*")]
    if operation in ("CreateQueue", "GetQueueUrl"):
        account = params.get("QueueOwnerAWSAccountId") or env.account
        requests = [need(action, env.arn("sqs", str(params.get("QueueName", "")), account=account))]
        return with_tag_on_create(env, requests)
    if params.get("QueueUrl"):
        queue = _sqs_queue_arn(env, str(params["QueueUrl"]))
        requests = [need(action, queue)]
        if action in ("sqs:SendMessage", "sqs:ReceiveMessage"):
            key = env.optional("sqs_queue_kms_key", queue)
            if key:
                # SQS Developer Guide, "Key management": producers need GenerateDataKey and
                # Decrypt, consumers Decrypt.
                if action == "sqs:SendMessage":
                    requests.append(kms_via_service(env, "kms:GenerateDataKey", key, "sqs"))
                requests.append(kms_via_service(env, "kms:Decrypt", key, "sqs"))
        return requests
    return None


# --- SES ---

# What SES checks when sending (SES Developer Guide "Identity and access management in Amazon
# SES" and "Using sending authorization"; the resource of denials seen from AWS):
# - ses:SendEmail (v2; ses:SendEmail/SendRawEmail in v1) on the sending identity's ARN,
#   arn:aws:ses:R:A:identity/<identity>: the identity is the From address's own verified
#   identity, else its domain's (a verified address identity takes precedence over its domain);
#   FromEmailAddressIdentityArn (v2) or SourceArn (v1) names it for sending authorization;
# - also on the configuration set's ARN, arn:aws:ses:R:A:configuration-set/<name>, when one is
#   named (SES v2 SendEmail resource types: identity and configuration-set);
# - in the sandbox, recipients must be verified identities and SES authorizes the send on each
#   recipient identity too (AWS's denials name identity/<recipient>: aws-sdk-js issue 3641);
# - condition keys ses:FromAddress (the bare From address), ses:FromDisplayName, ses:Recipients
#   (To, Cc and Bcc addresses), ses:FeedbackAddress (the Return-Path / feedback forwarding
#   address) and ses:ApiVersion ("2" for SES v2, "1" for the v1 API).
# One request per resource: IAM authorizes each resource the request names, not the first one
# that some statement allows.


def _addresses(values: Iterable[str]) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(list(values)) if address]


def _ses_identity(env: CallEnv, address: str) -> str:
    identity = env.optional("ses_sending_identity", address)
    return identity or address


def _ses_send(
    env: CallEnv,
    action: str,
    from_header: str | None,
    recipients: list[str],
    feedback: str | None,
    identity_arn: str | None,
    configuration_set: str | None,
    api_version: str,
) -> list[AuthorizationRequest]:
    display, address = email.utils.parseaddr(from_header or "")
    context: dict[str, Any] = {
        "ses:FromAddress": address or None,
        "ses:FromDisplayName": display or None,
        "ses:Recipients": recipients or None,
        "ses:FeedbackAddress": feedback,
        "ses:ApiVersion": api_version,
    }
    resources = []
    if identity_arn:
        resources.append(identity_arn)
    elif address:
        resources.append(env.arn("ses", f"identity/{_ses_identity(env, address)}"))
    else:
        resources.append("*")
    if configuration_set:
        resources.append(env.arn("ses", f"configuration-set/{configuration_set}"))
    if env.optional("ses_in_sandbox"):
        for recipient in recipients:
            resources.append(env.arn("ses", f"identity/{_ses_identity(env, recipient)}"))
    return [need(action, resource, context) for resource in resources]


def _raw_headers(data: Any) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes | bytearray):
        return None
    try:
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(bytes(data))
    except (ValueError, TypeError, LookupError):  # a malformed message: no headers to read
        return None


def _maybe_base64(data: Any) -> Any:
    """SES v1's RawMessage.Data arrives base64-encoded in the query form."""
    if isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            return data
    return data


def sesv2_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an SES v2 call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"ses:{operation}"
    if operation == "SendEmail":
        return _sesv2_send_email(env, action)
    if operation == "SendBulkEmail":
        recipients = []
        for entry in params.get("BulkEmailEntries") or []:
            recipients += _destination_addresses(entry.get("Destination") or {})
        return _ses_send(
            env,
            action,
            params.get("FromEmailAddress"),
            _addresses(recipients),
            params.get("FeedbackForwardingEmailAddress"),
            params.get("FromEmailAddressIdentityArn"),
            params.get("ConfigurationSetName"),
            "2",
        )
    context = {"ses:ApiVersion": "2"}
    if params.get("EmailIdentity"):
        requests = [need(action, env.arn("ses", f"identity/{params['EmailIdentity']}"), context)]
        return with_tag_on_create(env, requests)
    if params.get("ConfigurationSetName"):
        requests = [need(action, env.arn("ses", f"configuration-set/{params['ConfigurationSetName']}"), context)]
        return with_tag_on_create(env, requests)
    if params.get("TemplateName"):
        return [need(action, env.arn("ses", f"template/{params['TemplateName']}"), context)]
    if params.get("ContactListName"):
        return [need(action, env.arn("ses", f"contact-list/{params['ContactListName']}"), context)]
    return [need(action, "*", context)]


def _destination_addresses(destination: Mapping[str, Any]) -> list[str]:
    return destination.get("ToAddresses", []) + destination.get("CcAddresses", []) + destination.get("BccAddresses", [])


def _with_raw_headers(raw: Any, sender: Any, recipients: list[str]) -> tuple[Any, list[str]]:
    """A raw message's From (where the request names no sender) and To/Cc/Bcc (where it names
    no recipients): SES reads them from the message itself."""
    headers = _raw_headers(_maybe_base64(raw))
    if headers is None:
        return sender, recipients
    if not recipients:
        recipients = _addresses(headers.get_all("To", []) + headers.get_all("Cc", []) + headers.get_all("Bcc", []))
    return sender or headers.get("From"), recipients


def _sesv2_send_email(env: CallEnv, action: str) -> list[AuthorizationRequest]:
    """SES v2 SendEmail: the sender and recipients from the request, else from a raw message's headers."""
    params = env.params
    recipients = _addresses(_destination_addresses(params.get("Destination") or {}))
    from_header = params.get("FromEmailAddress")
    raw = first_at(params, "Content", "Raw", "Data")
    if raw is not None:
        from_header, recipients = _with_raw_headers(raw, from_header, recipients)
    return _ses_send(
        env,
        action,
        from_header,
        recipients,
        params.get("FeedbackForwardingEmailAddress"),
        params.get("FromEmailAddressIdentityArn"),
        params.get("ConfigurationSetName"),
        "2",
    )


def ses_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an SES (v1) call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"ses:{operation}"
    if operation in ("SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail"):
        recipients = _addresses(_destination_addresses(params.get("Destination") or {}))
        recipients += _addresses(params.get("Destinations") or [])
        from_header = params.get("Source")
        if operation == "SendRawEmail":
            raw = first_at(params, "RawMessage", "Data")
            from_header, recipients = _with_raw_headers(raw, from_header, recipients)
        return _ses_send(
            env,
            action,
            from_header,
            recipients,
            params.get("ReturnPath"),
            params.get("SourceArn") or params.get("FromArn"),
            params.get("ConfigurationSetName"),
            "1",
        )
    context = {"ses:ApiVersion": "1"}
    identity = params.get("Identity") or params.get("EmailAddress") or params.get("Domain")
    if identity:
        return [need(action, env.arn("ses", f"identity/{identity}"), context)]
    return [need(action, "*", context)]
