"""``stepml rollback ENDPOINT [--to RUN] [--reason TEXT]``: production back on an earlier approved model.

The target comes from ``stepml.rollback.plan_rollback`` (lineage and SageMaker); the update is
the pipeline's own blue/green UpdateEndpoint, with the DeploymentConfig read from the deployed
state machine's "Update production endpoint" state, so the alarms that guard a deploy guard the
rollback too. The command records who (STS GetCallerIdentity's ARN) and why in lineage before
it updates, waits for the endpoint with a line per status change, and records how it ended.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from botocore.exceptions import ClientError

from stepml.cli.context import CliError, Target, connect, print_json
from stepml.lineage_queries import LineageQueryError
from stepml.rollback import RollbackError, deployment_config, finish_rollback, plan_rollback, record_rollback

#: Recorded when no --reason is given, so the record says plainly that none was.
DEFAULT_REASON = "no reason given (stepml rollback without --reason)"


def _pipeline_deployment_config(target: Target) -> dict[str, Any]:
    definition = target.client("stepfunctions").describe_state_machine(
        stateMachineArn=target.output("StateMachineArn")
    )["definition"]
    return deployment_config(definition)


def wait_for_update(
    sagemaker: Any, endpoint: str, *, poll_seconds: float, timeout: float, say: Any = print
) -> dict[str, Any]:
    """DescribeEndpoint until the update ends (InService or Failed); one line per status change."""
    started = time.monotonic()
    last = None
    while True:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        elapsed = time.monotonic() - started
        if status != last:
            say(f"  {elapsed:6.1f}s  {endpoint} {status} (config {described['EndpointConfigName']})")
            last = status
        if status in ("InService", "Failed") and elapsed > 0:
            return described
        if elapsed > timeout:
            return {**described, "TimedOut": True}
        time.sleep(poll_seconds)


def _outcome(described: dict[str, Any], config: str) -> tuple[str, str | None]:
    if described.get("TimedOut"):
        return "TIMED_OUT", f"still {described['EndpointStatus']} when stepml stopped waiting"
    if described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == config:
        return "SUCCEEDED", None
    if described["EndpointStatus"] == "InService":
        return "ROLLED_BACK", described.get("FailureReason") or "the endpoint stayed on its previous config"
    return "FAILED", described.get("FailureReason")


def rollback(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    table, sagemaker = target.lineage_table(), target.client("sagemaker")
    try:
        plan = plan_rollback(table, sagemaker, args.endpoint, args.to)
        config = _pipeline_deployment_config(target)
    except (RollbackError, LineageQueryError) as exc:
        raise CliError(str(exc)) from exc
    who = target.client("sts").get_caller_identity()["Arn"]
    reason = args.reason or DEFAULT_REASON
    say = (lambda _line: None) if args.json else print
    say(
        f"rolling {plan.endpoint} back: {plan.current_model} (run {plan.current_run}) -> {plan.target_model} "
        f"(run {plan.target_run}), config {plan.target_config}; by {who}; reason: {reason}"
    )
    for note in plan.notes:
        say(f"note: {note}")
    if plan.recreate_config is not None:
        sagemaker.create_endpoint_config(**plan.recreate_config)
    key = record_rollback(table, plan, who=who, reason=reason)
    try:
        sagemaker.update_endpoint(
            EndpointName=plan.endpoint, EndpointConfigName=plan.target_config, DeploymentConfig=config
        )
    except ClientError as exc:
        message = exc.response["Error"].get("Message", str(exc))
        finish_rollback(table, key, "FAILED", message)
        raise CliError(f"UpdateEndpoint {plan.endpoint} refused: {message}") from exc
    poll = args.poll_seconds or (1.0 if target.endpoint_url else 15.0)
    described = wait_for_update(sagemaker, plan.endpoint, poll_seconds=poll, timeout=args.timeout, say=say)
    status, detail = _outcome(described, plan.target_config)
    finish_rollback(table, key, status, detail)
    result = {
        "endpoint": plan.endpoint,
        "status": status,
        "detail": detail,
        "who": who,
        "reason": reason,
        "previous": {"model": plan.current_model, "run_id": plan.current_run, "endpoint_config": plan.current_config},
        "serving": {"model": plan.target_model, "run_id": plan.target_run, "endpoint_config": plan.target_config},
        "lineage_key": key,
    }
    if args.json:
        print_json(result)
    elif status == "SUCCEEDED":
        print(f"{plan.endpoint} serves {plan.target_model} (run {plan.target_run}); recorded in lineage")
    else:
        print(f"rollback {status}: {detail}")
    return 0 if status == "SUCCEEDED" else 1


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "rollback",
        parents=[common],
        help="put a production endpoint back on the previous approved model (blue/green, recorded in lineage)",
    )
    parser.add_argument("endpoint")
    parser.add_argument("--to", metavar="RUN", help="the run whose model to serve (default: the previous approved)")
    parser.add_argument("--reason", help=f"why, recorded in lineage (default: {DEFAULT_REASON!r})")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait for InService (default 7200)")
    parser.add_argument("--poll-seconds", type=float, help="seconds between checks (default 1 locally, 15 in AWS)")
    parser.set_defaults(handler=rollback)
