"""SNS email subscriptions and SES v2 SendEmail deliver to the local outbox."""

from __future__ import annotations

import email
import email.policy

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.local.mail import Outbox


def test_a_message_to_the_approval_topic_lands_in_the_outbox(stack, mail_outbox):
    sns = boto3.client("sns")
    topic = stack.physical_id("ApprovalTopic")
    sns.publish(
        TopicArn=topic,
        Subject="[stepml] Approve churn?",
        Message="Review: https://abc.execute-api.local/approvals/xyz?sig=s1\nThanks",
    )
    messages = mail_outbox.messages()
    assert len(messages) == 1
    message = messages[0]
    assert message.to == "approver@example.com"
    assert message.subject == "[stepml] Approve churn?"
    assert message.links == ["https://abc.execute-api.local/approvals/xyz?sig=s1"]
    assert message.topic_arn == topic
    assert message.path.suffix == ".eml" and "Review:" in message.body


def test_messages_keep_send_order_and_go_only_to_the_topic_subscribers(stack, mail_outbox):
    sns = boto3.client("sns")
    sns.publish(TopicArn=stack.physical_id("AlertTopic"), Subject="first", Message="1")
    sns.publish(TopicArn=stack.physical_id("ApprovalTopic"), Subject="second", Message="2")
    assert [(m.subject, m.to) for m in mail_outbox.messages()] == [
        ("first", "alerts@example.com"),
        ("second", "approver@example.com"),
    ]


def test_an_empty_outbox_lists_nothing(tmp_path):
    assert Outbox(tmp_path / "none").messages() == []


def simple_email(sender: str, text: str | None, html: str | None) -> dict:
    body = {}
    if text is not None:
        body["Text"] = {"Data": text, "Charset": "UTF-8"}
    if html is not None:
        body["Html"] = {"Data": html, "Charset": "UTF-8"}
    return {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": ["approver@example.com"]},
        "Content": {"Simple": {"Subject": {"Data": "[stepml] Approve churn?"}, "Body": body}},
    }


def test_an_ses_email_with_text_and_html_is_one_multipart_message(stack, mail_outbox):
    ses = boto3.client("sesv2")
    ses.create_email_identity(EmailIdentity="stepml@example.com")
    link = "https://abc.execute-api.local/approvals/xyz?sig=s1"
    sent = ses.send_email(
        **simple_email("stepml@example.com", f"Review: {link}\n", f'<p><a href="{link}">Review</a> &amp; decide</p>')
    )

    [message] = mail_outbox.messages()
    assert (message.sender, message.to, message.subject) == (
        "stepml@example.com",
        "approver@example.com",
        "[stepml] Approve churn?",
    )
    assert message.body == f"Review: {link}\n"
    assert message.html == f'<p><a href="{link}">Review</a> &amp; decide</p>\n'
    assert message.links == [link] and message.topic_arn == ""
    parsed = email.message_from_bytes(message.path.read_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Message-ID"] == f"<{sent['MessageId']}@email.amazonses.com>"


def test_a_sender_of_a_verified_domain_may_send_html_only(stack, mail_outbox):
    ses = boto3.client("sesv2")
    ses.create_email_identity(EmailIdentity="example.com")
    ses.send_email(**simple_email("noreply@example.com", None, "<p>only html</p>"))
    [message] = mail_outbox.messages()
    assert message.body == "" and message.html == "<p>only html</p>\n"


def test_an_unverified_sender_is_refused_and_nothing_is_delivered(stack, mail_outbox):
    ses = boto3.client("sesv2")
    with pytest.raises(ClientError) as raised:
        ses.send_email(**simple_email("stranger@elsewhere.example", "hello", None))
    assert raised.value.response["Error"]["Code"] == "MessageRejected"
    assert "stranger@elsewhere.example" in raised.value.response["Error"]["Message"]
    assert mail_outbox.messages() == []


def test_a_raw_ses_email_is_delivered_as_sent(stack, mail_outbox):
    ses = boto3.client("sesv2")
    ses.create_email_identity(EmailIdentity="stepml@example.com")
    raw = (
        b"From: stepml@example.com\r\nTo: approver@example.com\r\nSubject: raw one\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee https://example.com/x\r\n"
    )
    ses.send_email(
        FromEmailAddress="stepml@example.com",
        Destination={"ToAddresses": ["approver@example.com"]},
        Content={"Raw": {"Data": raw}},
    )
    [message] = mail_outbox.messages()
    assert message.path.read_bytes() == raw
    assert (message.subject, message.links) == ("raw one", ["https://example.com/x"])
