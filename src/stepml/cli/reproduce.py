"""``stepml runs reproduce RUN``: train the same model again and say whether it is the same.

The reproduction is a new run (its own id, ``reproduction_of`` RUN) that ResolveRun starts on
RUN's upload version with RUN's recorded dataset config and hyperparameters (seed included);
the state machine evaluates it and ends it ``REPRODUCED`` before the approval, so it never
reaches production. The command refuses when RUN's data version is gone, and when the code the
pipeline runs now is not the code that made RUN unless ``--force`` is given (then the report
names the code difference). It waits with a line per recorded step, then compares the two
runs (``stepml.reproduce.compare``): the model file's hash, the metrics, and every lineage
field that differs.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from stepml.cli.context import CliError, Target, connect, print_json
from stepml.lineage_queries import LineageQueryError, run_records
from stepml.lineage_runs import reproduction_run_id
from stepml.lineage_table import FINISHED_STATUSES
from stepml.reproduce import ReproduceError, compare
from stepml.version import code_version


def _current_code(target: Target, table: Any) -> str | None:
    """The code version the pipeline runs now: this checkout's for the local cloud (its Lambdas
    and Glue job run from it); for a deployed stack, the one its newest run recorded."""
    if target.endpoint_url is not None:
        return code_version()
    runs, kwargs = [], {"FilterExpression": Attr("sk").eq("RUN") & Attr("code_version").exists()}
    while True:
        page = table.scan(**kwargs)
        runs += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    newest = max(runs, key=lambda run: str(run.get("started_at", "")), default=None)
    return str(newest["code_version"]) if newest else None


def _check_reproducible(target: Target, table: Any, run: dict[str, Any], steps: dict[str, Any], force: bool) -> None:
    run_id = run["run_id"]
    if (steps.get("evaluate") or {}).get("status") != "SUCCEEDED":
        raise CliError(f"run {run_id} has no evaluated model to compare with (status {run.get('status')})")
    upload = run["input"]
    try:
        target.client("s3").head_object(Bucket=upload["bucket"], Key=upload["key"], VersionId=upload["version_id"])
    except ClientError as exc:
        raise CliError(
            f"run {run_id}'s data version is gone: {upload['uri']} version {upload['version_id']} "
            f"({exc.response['Error'].get('Code')}); it cannot be reproduced"
        ) from exc
    recorded = (steps.get("train") or {}).get("code_version") or run.get("code_version")
    current = _current_code(target, table)
    if recorded != current and not force:
        raise CliError(
            f"run {run_id} was made by code version {recorded}; the pipeline now runs {current}: a reproduction "
            "would not hold the code equal (pass --force to run it anyway; the report names the difference)"
        )


def _start(target: Target, run: dict[str, Any]) -> tuple[str, str]:
    request_id = uuid.uuid4().hex[:16]
    new_run = reproduction_run_id(run["run_id"], run["dataset"], request_id)
    execution = target.client("stepfunctions").start_execution(
        stateMachineArn=target.output("StateMachineArn"),
        name=f"reproduce-{run['run_id']}-{request_id}",
        input=json.dumps({"reproduce_run_id": run["run_id"], "reproduce_request_id": request_id}),
    )
    return new_run, execution["executionArn"]


def wait_for_run(
    target: Target, table: Any, run_id: str, execution_arn: str, *, timeout: float, poll: float, say: Any = print
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lineage of ``run_id`` once it finished; a line per step as lineage records it."""
    sfn = target.client("stepfunctions")
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        try:
            run, steps = run_records(table, run_id)
        except LineageQueryError:
            run, steps = {}, {}
        for name, step in steps.items():
            if (name, step.get("status")) not in seen:
                seen.add((name, step.get("status")))
                say(f"  {name}: {step.get('status')}")
        if run.get("status") in (*FINISHED_STATUSES, "FAILED"):
            return run, steps
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        if status != "RUNNING" and not run:
            raise CliError(f"the reproduction's execution ended {status} before it recorded run {run_id}")
        time.sleep(poll)
    raise CliError(f"run {run_id} did not finish within {timeout:g} s; see `stepml runs show {run_id}`")


def _print_report(report: dict[str, Any]) -> None:
    original, again = report["original"], report["reproduction"]
    print(f"model hash   {original['run_id']}: {original['model_hash']}")
    print(f"             {again['run_id']}: {again['model_hash']}")
    print(f"model identical: {'yes' if report['model_identical'] else 'no'}")
    print(
        f"metrics equal:   {'yes' if report['metrics_equal'] else 'no'}  ({original['metrics']} / {again['metrics']})"
    )
    for difference in report["differences"]:
        print(f"  differs: {difference['field']}: {difference['original']!r} -> {difference['reproduction']!r}")
    print(report["explanation"])


def reproduce(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    table = target.lineage_table()
    try:
        original = run_records(table, args.run_id)
    except LineageQueryError as exc:
        raise CliError(str(exc)) from exc
    _check_reproducible(target, table, *original, force=args.force)
    say = (lambda _line: None) if args.json else print
    new_run, execution_arn = _start(target, original[0])
    say(f"reproducing run {args.run_id} as run {new_run}: {execution_arn}")
    poll = args.poll_seconds or (1.0 if target.endpoint_url else 15.0)
    run, steps = wait_for_run(target, table, new_run, execution_arn, timeout=args.timeout, poll=poll, say=say)
    if run.get("status") != "REPRODUCED":
        error = (run.get("error") or {}).get("cause")
        raise CliError(f"reproduction {new_run} ended {run.get('status')}" + (f": {error}" if error else ""))
    try:
        report = compare(original, (run, steps), target.client("s3"))
    except ReproduceError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    return 0 if report["model_identical"] and report["metrics_equal"] else 1


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "reproduce",
        parents=[common],
        help="run a finished run again (same data version, config, seed) and compare model hash and metrics",
    )
    parser.add_argument("run_id")
    parser.add_argument("--force", action="store_true", help="run even when the code version differs from the run's")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default 3600)")
    parser.add_argument("--poll-seconds", type=float, help="seconds between checks (default 1 locally, 15 in AWS)")
    parser.set_defaults(handler=reproduce)
