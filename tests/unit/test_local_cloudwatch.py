"""DescribeAlarms in the local cloud applies its filters together, as AWS does
(``stepml.local.services.cloudwatch``, patch ``cloudwatch.describe-alarms-filters``)."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
from moto import mock_aws

from stepml.local.cloud import REGION
from stepml.local.services import cloudwatch as alarms


def _put_alarm(cloudwatch, name: str, actions: list[str]) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="stepml/test",
        MetricName=name,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=actions,
    )


def _names(answer: dict) -> list[str]:
    return sorted(a["AlarmName"] for a in answer["MetricAlarms"])


def test_describe_alarms_applies_every_filter_it_is_given(aws_credentials, apply_patch):
    with mock_aws():
        apply_patch(alarms.DESCRIBE_ALARMS_FILTERS)
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        topic = f"arn:aws:sns:{REGION}:123456789012:alerts"
        for name in ("drift-a", "drift-b", "drift-c", "latency"):
            _put_alarm(cloudwatch, name, [topic] if name != "drift-c" else [])
        for name in ("drift-a", "latency"):
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")

        # Without the patch moto answered every drift-* alarm here, in whatever state.
        assert _names(cloudwatch.describe_alarms(AlarmNamePrefix="drift-", StateValue="ALARM")) == ["drift-a"]
        assert _names(cloudwatch.describe_alarms(AlarmNamePrefix="drift-", StateValue="OK")) == ["drift-b", "drift-c"]
        assert _names(cloudwatch.describe_alarms(ActionPrefix="arn:aws:sns:", AlarmNamePrefix="drift-")) == [
            "drift-a",
            "drift-b",
        ]
        assert _names(cloudwatch.describe_alarms(AlarmNames=["drift-b", "latency"], StateValue="ALARM")) == ["latency"]
        assert _names(cloudwatch.describe_alarms(StateValue="ALARM")) == ["drift-a", "latency"]


def test_composite_alarms_are_listed_only_when_alarm_types_asks_for_them():
    metric = SimpleNamespace(name="drift-a", rule=None, state_value="OK", alarm_actions=[])
    composite = SimpleNamespace(name="drift-any", rule='ALARM("drift-a")', state_value="OK", alarm_actions=[])
    both = [metric, composite]
    assert alarms.described_alarms(both, name_prefix="drift-") == {"MetricAlarms": [metric], "CompositeAlarms": []}
    assert alarms.described_alarms(both, alarm_types=["CompositeAlarm"]) == {
        "MetricAlarms": [],
        "CompositeAlarms": [composite],
    }
    assert alarms.described_alarms(both, alarm_types=["MetricAlarm", "CompositeAlarm"], state_value="ALARM") == {
        "MetricAlarms": [],
        "CompositeAlarms": [],
    }
