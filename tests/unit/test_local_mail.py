"""SNS email subscriptions deliver to the local outbox."""

from __future__ import annotations

import boto3
import pytest

from stepml.local.mail import Outbox, install_moto_hooks


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox")
    restore = install_moto_hooks(box)
    yield box
    restore()


def test_a_message_to_the_approval_topic_lands_in_the_outbox(stack, outbox):
    sns = boto3.client("sns")
    topic = stack.physical_id("ApprovalTopic")
    sns.publish(
        TopicArn=topic,
        Subject="[stepml] Approve churn?",
        Message="Review: https://abc.execute-api.local/approvals/xyz?sig=s1\nThanks",
    )
    messages = outbox.messages()
    assert len(messages) == 1
    message = messages[0]
    assert message.to == "approver@example.com"
    assert message.subject == "[stepml] Approve churn?"
    assert message.links == ["https://abc.execute-api.local/approvals/xyz?sig=s1"]
    assert message.topic_arn == topic
    assert message.path.suffix == ".eml" and "Review:" in message.body


def test_messages_keep_send_order_and_go_only_to_the_topic_subscribers(stack, outbox):
    sns = boto3.client("sns")
    sns.publish(TopicArn=stack.physical_id("AlertTopic"), Subject="first", Message="1")
    sns.publish(TopicArn=stack.physical_id("ApprovalTopic"), Subject="second", Message="2")
    assert [(m.subject, m.to) for m in outbox.messages()] == [
        ("first", "alerts@example.com"),
        ("second", "approver@example.com"),
    ]


def test_an_empty_outbox_lists_nothing(tmp_path):
    assert Outbox(tmp_path / "none").messages() == []
