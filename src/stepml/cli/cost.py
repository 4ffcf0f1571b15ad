"""``stepml cost``: what a run and a month cost in AWS, beside MWAA and SageMaker Pipelines.

The numbers come from the template bound to a samconfig environment (``cost_flow``), a dataset
config (the example's, or a finished run's own), the price table of the environment's region
(``cost_model``), and, with ``--run``, the run's records (``cost_measure``): its lineage items,
its execution history, its Glue job run and its training job, from the local cloud or a deployed
stack. The arithmetic lives in ``cost_model``; this module reads files and AWS and prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stepml.cli.context import CliError, Target, connect, print_json, print_table
from stepml.cli.cost_flow import (
    DEPLOYED_RUN,
    ESTIMATES,
    StackSettings,
    batch_decisions,
    estimated_usage,
    first_run_decisions,
    stack_settings,
    standing_usage,
)
from stepml.cli.cost_measure import MeasuredRun, measured_usage
from stepml.cli.cost_model import MWAA_CLASS, CostError, CostReport, LineItem, RunUsage, cost_report, load_prices
from stepml.cli.preflight.inputs import load_samconfig
from stepml.cli.preflight.report import PreflightError
from stepml.config import DatasetConfig, DatasetConfigError, parse_dataset_config

DEFINITION = Path("statemachine") / "pipeline.asl.json"
EXAMPLE_CONFIG = Path("examples") / "datasets" / "churn.json"
#: The measurement (``RunUsage.sources`` key) that replaces each estimate on a finished run.
_MEASURED_BY = {
    "glue_seconds": "glue",
    "training_seconds": "training",
    "endpoint_create_seconds": "test endpoint",
    "endpoint_update_seconds": "blue/green",
    "evaluate_seconds": "lambda",
    "transform_seconds": "batch transform",
    "lambda_seconds": "lambda",
    "dynamodb_write_units": "dynamodb",
}


def _dataset_config(path: Path) -> DatasetConfig:
    try:
        return parse_dataset_config(path.read_bytes(), str(path))
    except OSError as exc:
        raise CliError(f"{path}: cannot read the dataset config: {exc.strerror}") from exc
    except DatasetConfigError as exc:
        raise CliError(str(exc)) from exc


def gather_run(target: Target, run_id: str) -> MeasuredRun:
    """A finished run's lineage items, execution history, Glue job run and training job."""
    from stepml.cli.runs import run_steps

    run, steps = run_steps(target, run_id)
    if run.get("status") == "RUNNING":
        raise CliError(f"run {run_id} is still running; its cost is known once it ends")
    # The run's record and its step records are every item lineage writes under the run's key.
    measured = MeasuredRun(run=run, steps=steps, items=[run, *steps])
    if run.get("execution_arn"):
        measured.history = _history(target.client("stepfunctions"), run["execution_arn"])
    jobs = {s.get("step"): s.get("job") or {} for s in steps}
    glue = jobs.get("preprocess", {})
    if glue.get("name") and glue.get("run_id"):
        measured.glue_run = _describe(
            lambda: target.client("glue").get_job_run(JobName=glue["name"], RunId=glue["run_id"])["JobRun"]
        )
    if jobs.get("train", {}).get("name"):
        name = jobs["train"]["name"]
        measured.training_job = _describe(
            lambda: target.client("sagemaker").describe_training_job(TrainingJobName=name)
        )
    return measured


def _describe(call: Any) -> dict[str, Any] | None:
    """A description, or None when AWS no longer has it (the lineage record's times stand in)."""
    try:
        return call()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("EntityNotFoundException", "ValidationException", "ResourceNotFound"):
            return None
        raise


def _history(client: Any, execution_arn: str) -> list[dict[str, Any]] | None:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    try:
        while True:
            page = client.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None  # expired (90 days): the definition's path stands in
        raise


def build_report(args: argparse.Namespace) -> CostReport:
    """The report ``stepml cost`` prints, from the arguments."""
    root = Path(args.root)
    try:
        samconfig = load_samconfig(root, args.env)
    except PreflightError as exc:
        raise CliError(str(exc)) from exc
    region = args.region or samconfig.region or "us-east-1"
    estimates = {name: estimate.value for name, estimate in ESTIMATES.items()}
    if args.approval_wait is not None:
        estimates["approval_wait_seconds"] = float(args.approval_wait)
    try:
        definition = json.loads((root / DEFINITION).read_text(encoding="utf-8"))
        settings = stack_settings(root, region, samconfig.parameters, definition)
        prices = load_prices(region)
        if args.run:
            measured = gather_run(connect(args.stack_name, args.state_dir), args.run)
            usage = measured_usage(settings, measured, estimates)
            config = parse_dataset_config(measured.run["config"], f"run {args.run}")
        else:
            config = _dataset_config(Path(args.dataset_config) if args.dataset_config else root / EXAMPLE_CONFIG)
            decisions = first_run_decisions(config) if getattr(args, "first_run", False) else DEPLOYED_RUN
            if getattr(args, "batch_scoring", False):
                decisions = batch_decisions(decisions)
            usage, _ = estimated_usage(settings, config, estimates, decisions)
        assumptions = describe_assumptions(args, settings, usage, estimates, region)
        return cost_report(
            usage,
            standing_usage(settings, config, estimates),
            prices,
            args.runs_per_month,
            processing_instance=args.processing_instance,
            assumptions=assumptions,
        )
    except (CostError, OSError, json.JSONDecodeError) as exc:
        raise CliError(str(exc)) from exc


def describe_assumptions(
    args: argparse.Namespace, settings: StackSettings, usage: RunUsage, estimates: dict[str, float], region: str
) -> list[str]:
    """The report's assumptions: where each quantity came from, in words."""
    lines = [
        f"environment {args.env} (samconfig.toml), region {region}; list prices, no free tier, no Savings Plans",
        f"Glue: {settings.glue_dpus:g} DPU ({settings.parameters.get('GlueWorkerCount')} x {settings.glue_worker}), "
        "billed per second with a 1-minute minimum",
        f"endpoints poll every {settings.poll_seconds:g} s (EndpointPollSeconds); the test endpoint lives from its "
        "CreateEndpoint to its DeleteEndpoint on the definition's path (evaluation is its last use)",
        "a month has 730 hours; the idle month still has the production endpoint once a model is deployed",
        "while production exists its monitoring schedule runs a processing job every hour (730 a month, on the "
        "job definition's ClusterConfig, billed per second), traffic or not, and one drift alarm per feature of "
        "the dataset config watches it",
        f"blue/green: the new fleet runs beside the old while it comes up, through the baking period "
        f"({settings.baking_seconds:g} s, DeploymentBakingSeconds) and the TerminationWaitInSeconds",
        f"MWAA: {MWAA_CLASS} (the smallest class the price table holds) running all month, 1 GB metadata; "
        "the same Glue, SageMaker and Lambda work; no Step Functions",
        f"SageMaker Pipelines: no orchestration charge; a processing job on 1 x {args.processing_instance} for the "
        "Glue job's time (per second, no minimum) instead of Glue",
        "not counted (each well under $0.01 a run): CloudWatch Logs and X-Ray, API Gateway requests, KMS requests, "
        "EventBridge, data transfer",
    ]
    if usage.test_endpoint_serverless is not None:
        lines.append(
            "the test endpoint is serverless (the dataset config's test_endpoint_serverless): billed per "
            "GB-second of its requests' inference and per GB in and out, nothing while it waits"
        )
    if usage.transform_jobs:
        lines.append(
            "the test split is scored by Batch Transform (above evaluation.batch_transform_above_rows): no test "
            "endpoint; each job bills one instance of hosting.instance_type from start to end at the price table's "
            "Batch Transform instance-hour of that type"
        )
    measured = {what for what, source in usage.sources.items() if not source.startswith("estimated")}
    for name, estimate in ESTIMATES.items():
        if _MEASURED_BY.get(name) not in measured:
            lines.append(f"estimate {name} = {estimates[name]:g}: {estimate.why}")
    lines += [f"source of {what}: {source}" for what, source in usage.sources.items()]
    return lines


def _money(value: float) -> str:
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


def _print_items(items: list[LineItem]) -> None:
    rows = [
        {"service": i.service, "item": i.item, "quantity": f"{i.quantity:,.4g}", "unit": i.unit, "cost": _money(i.cost)}
        for i in items
    ]
    print_table(rows, ["service", "item", "quantity", "unit", "cost"])


def print_report(report: CostReport) -> None:
    """One readable table: the run, the idle month, the month, and the alternatives."""
    print(f"One run ({report.region}, {report.currency}, prices of {report.price_date})")
    _print_items(report.run)
    print(f"run total: {_money(report.run_total)}\n")
    print("A month with no run (idle)")
    _print_items(report.standing)
    print(f"idle month total: {_money(report.idle_month_total)}")
    print(f"month with {report.runs_per_month} runs: {_money(report.month_total)}\n")
    rows = [
        {"flow": name, "run": _money(v["run"]), "idle_month": _money(v["idle_month"]), "month": _money(v["month"])}
        for name, v in report.alternatives.items()
    ]
    print(f"The same flow elsewhere ({report.runs_per_month} runs a month)")
    print_table(rows, ["flow", "run", "idle_month", "month"])
    print("\nAssumptions")
    for line in report.assumptions:
        print(f"- {line}")


def cost(args: argparse.Namespace) -> int:
    report = build_report(args)
    if args.json:
        print_json(report.as_dict())
    else:
        print_report(report)
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("cost", parents=[common], help="what a run and a month cost in AWS")
    parser.add_argument("--env", default="dev", help="the samconfig.toml environment (default dev)")
    parser.add_argument("--runs-per-month", type=int, default=4, help="runs in a month (default 4)")
    parser.add_argument("--run", help="a finished run's id: its measured durations instead of estimates")
    parser.add_argument("--region", help="price another region than samconfig's")
    parser.add_argument("--dataset-config", help="a dataset config (default examples/datasets/churn.json)")
    parser.add_argument("--approval-wait", type=float, help="seconds until the approver decides (default 3600)")
    parser.add_argument(
        "--first-run",
        action="store_true",
        help="price a dataset's first run: no champion, so the test endpoint is serverless if the config says so",
    )
    parser.add_argument(
        "--batch-scoring",
        action="store_true",
        help="price a run whose test split is above evaluation.batch_transform_above_rows: Batch Transform jobs "
        "instead of a test endpoint",
    )
    parser.add_argument(
        "--processing-instance", default="ml.m5.xlarge", help="SageMaker Pipelines' processing instance"
    )
    parser.add_argument("--root", default=".", help="the project folder with template.yaml and samconfig.toml")
    parser.set_defaults(handler=cost)
