"""CloudWatch metric alarms that change state and act, as AWS's do.

moto stores alarms and metric data but never evaluates an alarm: it stays OK whatever the
metric does, and nothing reaches its actions. The ``cloudwatch.alarm-evaluation`` patch
evaluates, after each PutMetricData, the metric alarms that watch one of the metrics it
wrote: the alarm's ``Statistic`` over each of its last ``EvaluationPeriods`` periods (ending
now), ``DatapointsToAlarm`` breaching ones of them put it in ALARM, ``TreatMissingData`` decides
what an empty period counts as. A state change is recorded (DescribeAlarms, DescribeAlarmHistory)
and, with actions enabled, published to the SNS topics of the new state's actions in
CloudWatch's notification format, which the local outbox receives by email, when the topic's
policy (and, for an encrypted topic, its key's policy) lets ``cloudwatch.amazonaws.com`` publish.
SetAlarmState's changes run their actions too, as on AWS. Every state change also goes to
EventBridge's default bus as AWS's ``CloudWatch Alarm State Change`` event
(``alarm_state_change_event``), after the call returns.

The ``cloudwatch.describe-alarms-filters`` patch makes DescribeAlarms apply every filter it is
given, as AWS does: moto takes only the first of ``ActionPrefix``, ``AlarmNamePrefix``,
``AlarmNames`` and ``StateValue``, so a prefix with ``StateValue=ALARM`` answered every alarm of
the prefix whatever its state; and without ``AlarmTypes`` only metric alarms are listed.

What is local: alarms are evaluated when data arrives, not every minute, so an alarm goes back to
OK on the next data of its metric rather than when its periods age out; alarms on metric math
(``Metrics``) or extended statistics (percentiles) are left as they are.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from stepml.local.patching import Patch, register
from stepml.local.services.service_principals import service_may

_COMPARISONS = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _values(datum: Any) -> tuple[float, float, float, float]:
    """(sample count, sum, minimum, maximum) of one stored datum."""
    if hasattr(datum, "value"):
        return 1.0, datum.value, datum.value, datum.value
    return datum.sample_count, datum.sum, datum.min, datum.max


def statistic(data: Iterable[Any], name: str) -> float | None:
    """The ``name`` statistic (SampleCount, Sum, Minimum, Maximum, Average) of the data; None when empty."""
    parts = [_values(d) for d in data]
    if not parts:
        return None
    count, total = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return {
        "SampleCount": count,
        "Sum": total,
        "Minimum": min(p[2] for p in parts),
        "Maximum": max(p[3] for p in parts),
        "Average": total / count if count else 0.0,
    }[name]


def _watches(alarm: Any, datum: Any) -> bool:
    dimensions = {(d.name, d.value) for d in alarm.dimensions}
    return (
        alarm.namespace == datum.namespace
        and alarm.metric_name == datum.name
        and dimensions == {(d.name, d.value) for d in datum.dimensions}
    )


def evaluate(alarm: Any, metric_data: Iterable[Any], now: datetime) -> tuple[str, str] | None:
    """The state ``alarm`` should be in, with the reason; None when it cannot be evaluated here."""
    if alarm.metric_data_queries or not alarm.metric_name or alarm.statistic is None:
        return None
    compare = _COMPARISONS.get(alarm.comparison_operator)
    if compare is None:
        return None
    period, periods = int(alarm.period), int(alarm.evaluation_periods)
    needed = int(alarm.datapoints_to_alarm or periods)
    watched = [d for d in metric_data if _watches(alarm, d)]
    now = _naive(now)
    points: list[float | None] = []
    for index in range(periods):
        end = now - timedelta(seconds=index * period)
        inside = [d for d in watched if end - timedelta(seconds=period) < _naive(d.timestamp) <= end]
        points.append(statistic(inside, alarm.statistic))
    treatment = alarm.treat_missing_data or "missing"
    present = [p for p in points if p is not None]
    if not present and treatment in ("missing", "ignore"):
        return None if treatment == "ignore" else ("INSUFFICIENT_DATA", "Insufficient Data: no datapoints")
    breaching = sum(1 for p in present if compare(p, float(alarm.threshold)))
    if treatment == "breaching":
        breaching += len(points) - len(present)
    shown = ", ".join(f"{p:g}" for p in present[:5])
    threshold = float(alarm.threshold)
    if breaching >= needed:
        verb = "was" if breaching == 1 else "were"
        return "ALARM", (
            f"Threshold Crossed: {breaching} out of the last {periods} datapoints [{shown}] {verb} "
            f"{alarm.comparison_operator} the threshold ({threshold})"
        )
    return "OK", f"Threshold Crossed: no {needed} of the last {periods} datapoints [{shown}] crossed the threshold"


def region_description(region: str) -> str:
    """AWS's name of a region as alarm notifications give it (``US East (N. Virginia)``)."""
    from stepml.local.botocore_models import loader

    for partition in loader().load_data("endpoints")["partitions"]:
        described = partition.get("regions", {}).get(region)
        if described:
            return str(described.get("description", region))
    return region


def notification(alarm: Any, old_state: str, account_id: str, region: str) -> tuple[str, str]:
    """(subject, message) of the SNS notification CloudWatch publishes on a state change."""
    where = region_description(region)
    trigger = {
        "MetricName": alarm.metric_name,
        "Namespace": alarm.namespace,
        "StatisticType": "Statistic",
        "Statistic": str(alarm.statistic).upper(),
        "Unit": alarm.unit,
        "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
        "Period": int(alarm.period),
        "EvaluationPeriods": int(alarm.evaluation_periods),
        "DatapointsToAlarm": int(alarm.datapoints_to_alarm or alarm.evaluation_periods),
        "ComparisonOperator": alarm.comparison_operator,
        "Threshold": float(alarm.threshold),
        "TreatMissingData": alarm.treat_missing_data or "missing",
        "EvaluateLowSampleCountPercentile": "",
    }
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": f"{alarm.configuration_updated_timestamp:%Y-%m-%dT%H:%M:%S.000+0000}",
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": f"{alarm.state_updated_timestamp:%Y-%m-%dT%H:%M:%S.000+0000}",
        "Region": where,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
        "OKActions": list(alarm.ok_actions),
        "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions),
        "Trigger": trigger,
    }
    subject = f'{alarm.state_value}: "{alarm.name}" in {where}'
    return subject[:100], json.dumps(message)


def cloudwatch_may_publish(topic: Any, alarm_arn: str, account_id: str, region: str) -> bool:
    """Whether the topic's policy lets CloudWatch publish this alarm's notification to it and, for an
    encrypted topic, the key's policy lets CloudWatch encrypt with its key (AWS drops the action if not)."""
    from moto.kms.models import kms_backends

    from stepml.local.iam.model import AuthorizationRequest, Principal

    service = "cloudwatch.amazonaws.com"
    principal = Principal(arn=service, account=account_id, service=service)
    # CloudWatch acts for the alarm's account: SNS's default topic policy names it as AWS:SourceOwner.
    context = {
        "aws:SourceAccount": account_id,
        "aws:SourceOwner": account_id,
        "aws:SourceArn": alarm_arn,
        "aws:SecureTransport": "true",
    }
    publish = AuthorizationRequest("sns:Publish", topic.arn, context)
    if not service_may(principal, publish, topic.policy, service="sns"):
        return False
    key_id = getattr(topic, "kms_master_key_id", None)
    if not key_id:
        return True
    backend = kms_backends[account_id][region]
    try:
        key = backend.keys[backend.any_id_to_key_id(key_id)]
    except Exception:  # an unknown key: SNS cannot encrypt the message
        return False
    return all(
        service_may(
            principal, AuthorizationRequest(action, key.arn, context), key.policy, key_policy=True, service="kms"
        )
        for action in ("kms:Decrypt", "kms:GenerateDataKey")
    )


def _act(alarm: Any, old_state: str, account_id: str, region: str) -> None:
    from moto.sns.models import sns_backends

    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions}.get(
        alarm.state_value, alarm.insufficient_data_actions
    )
    subject, message = notification(alarm, old_state, account_id, region)
    for action in actions or []:
        parts = str(action).split(":")
        if len(parts) != 6 or parts[2] != "sns":
            continue
        backend = sns_backends[parts[4]][parts[3]]
        topic = backend.topics.get(action)
        if topic is None or not cloudwatch_may_publish(topic, alarm.alarm_arn, account_id, region):
            # AWS records the failed action in the alarm's history and sends nothing.
            alarm.history.append(
                ("Action", f"Failed to execute action {action}", "{}", alarm.state_value, alarm.state_updated_timestamp)
            )
            continue
        backend.publish(message, arn=action, subject=subject)


def _state_stamp(moment: datetime) -> str:
    """A state's time as alarm events give it (``2019-10-01T13:56:40.987+0000``)."""
    return f"{_naive(moment):%Y-%m-%dT%H:%M:%S}.{_naive(moment).microsecond // 1000:03d}+0000"


def alarm_state_change_event(alarm: Any, previous: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
    """The ``CloudWatch Alarm State Change`` event CloudWatch sends to EventBridge's default bus
    for a metric alarm's change from ``previous`` (its ``value``, ``reason``, ``reason_data``
    and ``timestamp`` before the change) to its state now, field for field."""
    metric_stat = {
        "metric": {
            "dimensions": {d.name: d.value for d in alarm.dimensions},
            "name": alarm.metric_name,
            "namespace": alarm.namespace,
        },
        "period": int(alarm.period),
        "stat": alarm.statistic,
    }
    metric = {"id": str(uuid.uuid4()), "metricStat": metric_stat, "returnData": True}
    configuration: dict[str, Any] = {"description": alarm.description} if alarm.description else {}
    configuration["metrics"] = [metric]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account_id,
        "time": f"{_naive(alarm.state_updated_timestamp):%Y-%m-%dT%H:%M:%SZ}",
        "region": region,
        "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "configuration": configuration,
            "previousState": {
                "reason": previous["reason"] or "",
                "reasonData": previous["reason_data"] or "",
                "timestamp": _state_stamp(previous["timestamp"]),
                "value": previous["value"],
            },
            "state": {
                "reason": alarm.state_reason or "",
                "reasonData": alarm.state_reason_data or "",
                "timestamp": _state_stamp(alarm.state_updated_timestamp),
                "value": alarm.state_value,
            },
        },
    }


def _previous_state(alarm: Any) -> dict[str, Any]:
    return {
        "value": alarm.state_value,
        "reason": alarm.state_reason,
        "reason_data": alarm.state_reason_data,
        "timestamp": alarm.state_updated_timestamp,
    }


def _send_state_change(alarm: Any, previous: Mapping[str, Any], account_id: str, region: str) -> None:
    """Send the change to EventBridge after the call that made it returns, as CloudWatch does
    (with or without actions enabled: events are not actions)."""
    from stepml.local.events.adapter import deliver_to_rules

    event = alarm_state_change_event(alarm, previous, account_id, region)
    threading.Thread(target=deliver_to_rules, args=(account_id, region, event), daemon=True).start()


def evaluate_alarms(backend: Any, written: Iterable[Any], now: datetime) -> list[str]:
    """Evaluate the backend's alarms on the metrics just ``written``; the names that changed state."""
    written = list(written)
    changed = []
    for alarm in list(backend.alarms.values()):
        if not any(_watches(alarm, datum) for datum in written):
            continue
        outcome = evaluate(alarm, backend.metric_data, now)
        if outcome is None or outcome[0] == alarm.state_value:
            continue
        previous = _previous_state(alarm)
        old_state = alarm.state_value
        alarm.update_state(
            outcome[1], json.dumps({"version": "1.0", "evaluatedAt": f"{now:%Y-%m-%dT%H:%M:%S}"}), outcome[0]
        )
        changed.append(alarm.name)
        _send_state_change(alarm, previous, backend.account_id, backend.region_name)
        if alarm.actions_enabled:
            _act(alarm, old_state, backend.account_id, backend.region_name)
    return changed


def _install_alarm_evaluation(patch: Patch) -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.put_metric_data

    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        before = len(self.metric_data)
        original(self, namespace, metric_data)
        evaluate_alarms(self, self.metric_data[before:], datetime.now(UTC))

    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        alarm = self.alarms.get(alarm_name)
        previous = _previous_state(alarm) if alarm is not None else None
        original_set_state(self, alarm_name, reason, reason_data, state_value)
        if previous is not None and previous["value"] != state_value:
            _send_state_change(alarm, previous, self.account_id, self.region_name)
            if alarm.actions_enabled:  # AWS runs the new state's actions for SetAlarmState too
                _act(alarm, previous["value"], self.account_id, self.region_name)

    original_set_state = CloudWatchBackend.set_alarm_state
    patch.replace(CloudWatchBackend, "put_metric_data", put_metric_data)
    patch.replace(CloudWatchBackend, "set_alarm_state", set_alarm_state)


ALARM_EVALUATION = register(
    Patch(
        name="cloudwatch.alarm-evaluation",
        why=(
            "moto 5.2.5 never evaluates a metric alarm: it stays OK and its actions never run. The patch evaluates "
            "the alarms watching the metrics of each PutMetricData (statistic per period, EvaluationPeriods, "
            "DatapointsToAlarm, TreatMissingData) and publishes a state change to the SNS topics of its actions; "
            "every change, SetAlarmState's too (whose actions it runs as well), goes to EventBridge as a "
            "CloudWatch Alarm State Change event."
        ),
        test="tests/unit/test_local_monitoring.py::test_a_schedule_writes_reports_and_metrics_through_the_api",
        install=_install_alarm_evaluation,
    )
)


def described_alarms(
    alarms: Iterable[Any],
    *,
    action_prefix: str | None = None,
    name_prefix: str | None = None,
    names: Iterable[str] = (),
    state_value: str | None = None,
    alarm_types: Iterable[str] = (),
) -> dict[str, list[Any]]:
    """DescribeAlarms' answer (``MetricAlarms``, ``CompositeAlarms``) over ``alarms``: those that
    pass every filter given; without ``alarm_types`` only the metric alarms, as AWS lists them."""
    wanted = set(names)
    kept = [
        alarm
        for alarm in alarms
        if (not action_prefix or any(str(a).startswith(action_prefix) for a in alarm.alarm_actions or []))
        and (not name_prefix or alarm.name.startswith(name_prefix))
        and (not wanted or alarm.name in wanted)
        and (not state_value or alarm.state_value == state_value)
    ]
    types = set(alarm_types) or {"MetricAlarm"}
    return {
        "MetricAlarms": [a for a in kept if a.rule is None] if "MetricAlarm" in types else [],
        "CompositeAlarms": [a for a in kept if a.rule is not None] if "CompositeAlarm" in types else [],
    }


def _install_describe_alarms_filters(patch: Patch) -> None:
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core.responses import ActionResult

    def describe_alarms(self: Any) -> Any:
        answer = described_alarms(
            self.cloudwatch_backend.describe_alarms(),
            action_prefix=self._get_param("ActionPrefix"),
            name_prefix=self._get_param("AlarmNamePrefix"),
            names=self._get_param("AlarmNames", []),
            state_value=self._get_param("StateValue"),
            alarm_types=self._get_param("AlarmTypes", []),
        )
        return ActionResult(answer)

    patch.replace(CloudWatchResponse, "describe_alarms", describe_alarms)


DESCRIBE_ALARMS_FILTERS = register(
    Patch(
        name="cloudwatch.describe-alarms-filters",
        why=(
            "moto 5.2.5's DescribeAlarms applies only the first of ActionPrefix, AlarmNamePrefix, AlarmNames and "
            "StateValue (a prefix with StateValue=ALARM lists the prefix's alarms in every state) and lists composite "
            "alarms without AlarmTypes; AWS applies every filter and lists only metric alarms by default."
        ),
        test="tests/unit/test_local_cloudwatch.py::test_describe_alarms_applies_every_filter_it_is_given",
        install=_install_describe_alarms_filters,
    )
)
