"""A finished run's measured usage: what ``stepml cost --run`` prices instead of estimates.

Pure: the CLI gathers a ``MeasuredRun`` (the run's lineage items, its execution history, the Glue
job run and the training job as AWS describes them) and ``measured_usage`` reads it. Each
quantity takes the most direct measure there is and says which in ``RunUsage.sources``:
Glue GetJobRun's ``DPUSeconds`` or ``ExecutionTime``, then the lineage record's start and end;
DescribeTrainingJob's ``BillableTimeInSeconds``, then the lineage record; the execution history's
entered states (each a billed transition, each retry another) and their times, else the
definition's path. What no record measures (S3 requests, reads) stays estimated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stepml.cli.cost_flow import (
    POLLING,
    StackSettings,
    count_resource,
    endpoint_instances,
    endpoint_span,
    estimated_usage,
    flat_states,
    lambda_uses,
    serverless_use,
    state_function,
    termination_wait,
    transform_use,
)
from stepml.cli.cost_model import CostError, RunUsage
from stepml.config import DatasetConfig, DatasetConfigError, parse_dataset_config

_KB = 1024


@dataclass
class MeasuredRun:
    """What AWS (or the local cloud) recorded of one run."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    history: list[dict[str, Any]] | None = None
    glue_run: dict[str, Any] | None = None
    training_job: dict[str, Any] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)  # the run's lineage items as stored


@dataclass(frozen=True)
class HistoryPath:
    """The states an execution entered, in order, when each was entered, and its retries."""

    names: list[str]
    entered: list[datetime]
    retries: int
    ended: datetime

    @property
    def transitions(self) -> int:
        """Billed state transitions: every state entered, and every retry of a task."""
        return len(self.names) + self.retries

    def seconds(self, index: int) -> float:
        """How long the ``index``-th entered state lasted (to the next entry, or the execution's end)."""
        until = self.entered[index + 1] if index + 1 < len(self.entered) else self.ended
        return max(0.0, (until - self.entered[index]).total_seconds())

    def between(self, start: int, end: int) -> float:
        """Seconds from the ``start``-th entry to the ``end``-th (or the execution's end)."""
        until = self.entered[end] if end < len(self.entered) else self.ended
        return max(0.0, (until - self.entered[start]).total_seconds())


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def history_path(events: list[Mapping[str, Any]]) -> HistoryPath:
    """Read GetExecutionHistory's events: entered states, their times, and task retries (a task
    scheduled again within one entry of its state)."""
    names, entered, retries, scheduled = [], [], 0, 0
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            names.append(event["stateEnteredEventDetails"]["name"])
            entered.append(_moment(event["timestamp"]))
            scheduled = 0
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled"):
            scheduled += 1
            retries += 1 if scheduled > 1 else 0
    if not names:
        raise CostError("the execution history has no entered state")
    return HistoryPath(names, entered, retries, _moment(events[-1]["timestamp"]))


def _lineage_seconds(step: Mapping[str, Any] | None) -> float | None:
    if not step or not step.get("started_at") or not step.get("ended_at"):
        return None
    return max(0.0, (_moment(step["ended_at"]) - _moment(step["started_at"])).total_seconds())


def _write_units(items: list[Mapping[str, Any]]) -> float:
    """Write units to put each item once (1 per KB started), twice when a GSI indexes it."""
    units = 0
    for item in items:
        size = len(json.dumps(item, default=str).encode())
        units += math.ceil(size / _KB) * (2 if item.get("gsi1pk") else 1)
    return float(units)


def _glue_seconds(measured: MeasuredRun, dpus: float, steps: Mapping[str, Any]) -> tuple[float, str] | None:
    job = measured.glue_run or {}
    if job.get("DPUSeconds"):
        return float(job["DPUSeconds"]) / dpus, "Glue GetJobRun DPUSeconds"
    if job.get("ExecutionTime"):
        return float(job["ExecutionTime"]), "Glue GetJobRun ExecutionTime"
    seconds = _lineage_seconds(steps.get("preprocess"))
    return None if seconds is None else (seconds, "lineage: the preprocess record's start and end")


def _training(measured: MeasuredRun, steps: Mapping[str, Any]) -> tuple[float, str] | None:
    job = measured.training_job or {}
    if job.get("BillableTimeInSeconds"):
        return float(job["BillableTimeInSeconds"]), "DescribeTrainingJob BillableTimeInSeconds"
    seconds = _lineage_seconds(steps.get("train"))
    return None if seconds is None else (seconds, "lineage: the train record's start and end")


def _from_history(
    usage: RunUsage,
    settings: StackSettings,
    history: HistoryPath,
    config: DatasetConfig,
    estimates: Mapping[str, float],
) -> None:
    states = flat_states(settings.definition)
    unknown = sorted({n for n in history.names if n not in states})
    if unknown:
        raise CostError(f"the execution entered states the definition does not have: {', '.join(unknown)}")
    usage.transitions = history.transitions
    usage.sources["transitions"] = f"execution history ({len(history.names)} states, {history.retries} retries)"
    # The path the run took: with or without a champion variant, an approval, a blue/green update.
    usage.test_endpoint_instances = endpoint_instances(history.names, states, "test_endpoint_config", config)
    usage.emails = count_resource(history.names, states, ".waitForTaskToken")
    usage.sns_publishes = usage.sns_email_notifications = count_resource(history.names, states, "sns:publish")
    seconds_of = {}
    for index, name in enumerate(history.names):
        waiting = str(states[name].get("Resource", "")).endswith(".waitForTaskToken")
        seconds_of[index] = estimates["lambda_seconds"] if waiting else history.seconds(index)
    approval_api = [use for use in usage.lambdas if use.function.startswith("ApprovalApi")]
    usage.lambdas = lambda_uses(history.names, settings, seconds_of) + approval_api
    usage.transform_jobs, usage.transform_seconds = transform_use(history.names, states, seconds_of)
    if usage.transform_jobs:
        usage.sources["batch transform"] = "execution history: each transform task's time"
    usage.sources["lambda"] = "execution history: each Lambda task's time (an upper bound of its billed duration)"
    span = endpoint_span(history.names, states, "test_endpoint")
    if span is not None:
        usage.test_endpoint_seconds = history.between(*span)
        usage.sources["test endpoint"] = "execution history: CreateEndpoint to DeleteEndpoint"
    evaluations = [i for i, n in enumerate(history.names) if "Evaluate" in (state_function(states[n], settings) or "")]
    inference = sum(history.seconds(i) for i in evaluations) if evaluations else estimates["evaluate_seconds"]
    usage.test_endpoint_serverless = serverless_use(
        history.names, states, config, inference, estimates["evaluation_gb"]
    )
    if usage.test_endpoint_serverless is not None:
        usage.sources["test endpoint"] = "execution history: serverless, billed for the Evaluate task's time"
    usage.blue_green_seconds = 0.0
    usage.sources["blue/green"] = "execution history: no blue/green update on this run's path"
    if termination_wait(history.names, states) is not None:
        update = next(
            i for i, n in enumerate(history.names) if str(states[n].get("Resource", "")).endswith(":updateEndpoint")
        )
        ready = [i for i, n in enumerate(history.names) if n in POLLING and i > update]
        if ready:
            usage.blue_green_seconds = history.between(update, ready[-1]) + termination_wait(history.names, states)
            usage.sources["blue/green"] = "execution history: the update's wait, plus TerminationWaitInSeconds"


def measured_usage(settings: StackSettings, measured: MeasuredRun, estimates: Mapping[str, float]) -> RunUsage:
    """A finished run's usage: measured where a record measures it, estimated elsewhere."""
    try:
        config = parse_dataset_config(measured.run.get("config") or {}, f"run {measured.run.get('run_id')}")
    except DatasetConfigError as exc:
        raise CostError(f"the run's dataset config cannot be read: {exc}") from exc
    usage, _ = estimated_usage(settings, config, estimates)
    usage.sources = {}
    steps = {s.get("step"): s for s in measured.steps}
    glue = _glue_seconds(measured, settings.glue_dpus, steps)
    if glue is not None:
        usage.glue_seconds, usage.sources["glue"] = glue
    training = _training(measured, steps)
    if training is not None:
        usage.training_seconds, usage.sources["training"] = training
    resources = (measured.training_job or {}).get("ResourceConfig") or {}
    if resources.get("InstanceType"):
        usage = replace(usage, training_instance_type=resources["InstanceType"])
        usage.training_instances = int(resources.get("InstanceCount", usage.training_instances))
    if measured.history:
        _from_history(usage, settings, history_path(measured.history), config, estimates)
    else:
        usage.sources["transitions"] = "estimated: the definition's path (no execution history)"
        # The definition deletes the test endpoint right after evaluation; a run that failed
        # before evaluation ended kept it until the failure path deleted it, at the run's end.
        train, evaluated = steps.get("train") or {}, (steps.get("evaluate") or {}).get("ended_at")
        end = evaluated or measured.run.get("ended_at")
        if train.get("ended_at") and end:
            usage.test_endpoint_seconds = (_moment(end) - _moment(train["ended_at"])).total_seconds()
            until = "evaluation's end" if evaluated else "the run's end"
            usage.sources["test endpoint"] = f"lineage: training's end to {until}"
    if measured.items:
        usage.dynamodb_write_units = _write_units(measured.items)
        usage.sources["dynamodb"] = f"lineage: the run's {len(measured.items)} items' sizes, written once each"
    return usage
