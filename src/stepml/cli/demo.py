"""``stepml demo``: the whole pipeline on the local cloud, followed state by state.

Starts the local cloud (or uses the running one), onboards the example dataset, uploads a
generated sample, prints a line per state as the execution moves, shows the approval email
from the outbox and waits for a person to approve in a browser (``--approve`` posts the
approval over HTTP exactly as a browser would), then asks the production endpoint for
predictions. It ends by pointing at the run in the local cloud's web console and at the lineage
commands for it; with a person (no ``--approve``) it keeps the cloud it started up until Ctrl-C,
so the run can be explored.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from stepml.cli.context import CliError, Target, connect, state_dir
from stepml.cli.local import add_console_port_argument, add_fault_argument, find_repository, start_cloud
from stepml.cli.runs import approve_link
from stepml.config import dataset_config_key
from stepml.evaluation import parse_predictions
from stepml.local.cloud import LocalCloud
from stepml.local.console import execution_url
from stepml.local.console.data import run_id_of
from stepml.local.mail import Outbox
from stepml.sample_data import write_churn_csv
from stepml.utils import csv_line

DATASET = "churn"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class ExecutionFollower:
    """Prints one line per state as it exits, from the execution history."""

    def __init__(self, sfn: Any, execution_arn: str):
        self.sfn = sfn
        self.execution_arn = execution_arn
        self.seen = 0
        self.entered: dict[str, float] = {}
        self.started = time.monotonic()

    def poll(self) -> str:
        events = self.sfn.get_execution_history(executionArn=self.execution_arn, maxResults=1000)["events"]
        for event in events[self.seen :]:
            kind = event["type"]
            stamp = event["timestamp"].timestamp()
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                self.entered[name] = stamp
                if name == "Request approval":
                    print(f"  ..   {name:<42} waiting for a decision", flush=True)
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                seconds = stamp - self.entered.get(name, stamp)
                print(f"  ok   {name:<42} {seconds:6.1f}s", flush=True)
            elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"):
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                print(f"  FAIL {details.get('error', kind)}: {str(details.get('cause', ''))[:300]}", flush=True)
        self.seen = len(events)
        return self.sfn.describe_execution(executionArn=self.execution_arn)["status"]


def _find_execution(target: Target, key: str, started_after: float, timeout: float = 60) -> str:
    sfn = target.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=target.output("StateMachineArn"))["executions"]:
            if execution["startDate"].timestamp() < started_after - 1:
                continue
            event = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
            if event.get("detail", {}).get("object", {}).get("key") == key:
                return execution["executionArn"]
        time.sleep(0.2)
    raise CliError(f"no execution started for {key} within {timeout:.0f}s; is the upload rule provisioned?")


def _test_rows(target: Target, run_id: str, count: int = 5) -> list[list[str]]:
    """A few rows of the run's test split, raw features only (categories as text, blanks for
    missing values), to ask the production endpoint about."""
    s3 = target.client("s3")
    bucket = target.output("ArtifactBucketName")
    prefix = f"processed/{DATASET}/{run_id}/test/"
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        if o["Size"] > 0 and o["Key"].endswith(".csv")
    ]
    if not keys:
        raise CliError(f"no test split under s3://{bucket}/{prefix}")
    text = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(text)))[1 : count + 1]
    return [row[1:] for row in rows]


def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cloud: LocalCloud | None = None
    folder = state_dir(args.state_dir)
    if not (folder / "cloud.json").exists():
        print("[1/6] starting the local cloud...", flush=True)
        cloud = start_cloud(args)
    elif args.fault:
        raise CliError(
            f"--fault applies to a local cloud the demo starts, and one is running ({folder}); "
            "stop it with `stepml local down` or start it with `stepml local up --fault ...`"
        )
    else:
        print(f"[1/6] using the running local cloud ({folder})", flush=True)
    try:
        target = connect(None, str(folder))
        code, execution_arn, run_id = _run(args, target, started)
        console = cloud.console_url if cloud is not None else _running_console(folder)
        _point_at_run(console, execution_arn, run_id, target)
        if cloud is not None and not args.approve:
            _stay_up_until_interrupted(cloud)
        return code
    finally:
        if cloud is not None:
            cloud.stop()


def _running_console(folder: Path) -> str | None:
    """The console of the local cloud running in ``folder`` (None for one that predates it)."""
    return json.loads((folder / "cloud.json").read_text()).get("console_url")


def _point_at_run(console: str | None, execution_arn: str, run_id: str | None, target: Target) -> None:
    """Where to explore the run: its page in the console and the lineage commands for it."""
    print("\nexplore the run:", flush=True)
    if console:
        print(f"  console:  {execution_url(console, execution_arn)}")
    if run_id:
        print(f"  lineage:  stepml lineage show {run_id}")
        print(f"            stepml runs show {run_id}")
        print(f"            stepml lineage model {target.output('ProductionEndpointName')}")
    print(flush=True)


def _stay_up_until_interrupted(cloud: LocalCloud) -> None:
    """Keep the cloud (and so the console) up until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    print(f"the local cloud stays up for that (console {cloud.console_url}); press Ctrl-C to stop it", flush=True)
    try:
        stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("stopping the local cloud...", flush=True)


def _run(args: argparse.Namespace, target: Target, started: float) -> tuple[int, str, str | None]:
    """Steps 2 to 6; (exit code, the execution, its lineage run)."""
    execution_arn = _onboard_and_upload(args, target)
    print(f"[4/6] following {execution_arn.rsplit(':', 1)[-1]}", flush=True)
    follower = ExecutionFollower(target.client("stepfunctions"), execution_arn)
    status = _follow(args, target, follower)
    elapsed = time.monotonic() - started
    described = target.client("stepfunctions").describe_execution(executionArn=execution_arn)
    # The run the execution resolved (its output), else the one its upload names (a failed run).
    run_id = json.loads(described.get("output") or "{}").get("run", {}).get("run_id") or run_id_of(described["input"])
    if status != "SUCCEEDED":
        print(f"pipeline ended {status} after {elapsed:.0f}s; see `stepml runs` and `stepml outbox`")
        return 1, execution_arn, run_id
    if "Model deployed" not in follower.entered:
        print(f"the model was not promoted (rejected, or below the gate) after {elapsed:.0f}s; production is untouched")
        print(f"see `stepml runs show {run_id}`")
        return 1, execution_arn, run_id
    _show_predictions(target, run_id)
    print(f"done in {elapsed:.0f}s")
    return 0, execution_arn, run_id


def _onboard_and_upload(args: argparse.Namespace, target: Target) -> str:
    """Steps 2 and 3: the dataset config, then a generated upload; the execution it started."""
    root = find_repository()
    s3 = target.client("s3")
    print(f"[2/6] onboarding dataset {DATASET!r} from examples/datasets/{DATASET}.json", flush=True)
    s3.put_object(
        Bucket=target.output("ArtifactBucketName"),
        Key=dataset_config_key(DATASET),
        Body=(root / "examples" / "datasets" / f"{DATASET}.json").read_bytes(),
        ServerSideEncryption="AES256",
    )
    sample = write_churn_csv(
        Path(target.local_state or ".") / "demo" / f"churn-{args.rows}.csv", args.rows, seed=args.seed
    )
    key = f"incoming/{DATASET}/{sample.name}"
    print(f"[3/6] uploading {args.rows} generated rows to s3://{target.output('UploadBucketName')}/{key}", flush=True)
    upload_time = time.time()
    s3.put_object(Bucket=target.output("UploadBucketName"), Key=key, Body=sample.read_bytes())
    return _find_execution(target, key, upload_time)


def _follow(args: argparse.Namespace, target: Target, follower: ExecutionFollower) -> str:
    """Step 5: poll the execution to its end, showing (and with --approve, using) the approval email."""
    outbox = Outbox(target.outbox_dir) if target.outbox_dir else None
    already = len(outbox.messages()) if outbox else 0
    approval_shown = False
    status = "RUNNING"
    while status not in TERMINAL:
        status = follower.poll()
        if not approval_shown and outbox is not None:
            fresh = [m for m in outbox.messages()[already:] if m.links]
            if fresh:
                approval_shown = True
                _show_approval(args, fresh[-1])
        time.sleep(0.3)
    follower.poll()
    return status


def _show_approval(args: argparse.Namespace, message: Any) -> None:
    print(
        f"\n[5/6] approval email (outbox {message.path.name})\n  To: {message.to}\n  Subject: "
        f"{message.subject}\n" + "\n".join(f"  | {line}" for line in message.body.splitlines()[:14]),
        flush=True,
    )
    link = message.links[0]
    if args.approve:
        code, title = approve_link(link, decision="approve", comment="approved by make demo ARGS=--approve")
        print(f"  approved over HTTP as a browser would: HTTP {code}: {title}\n", flush=True)
    else:
        print(f"\n  Open this link in a browser and click Approve (or Reject):\n  {link}\n", flush=True)


def _show_predictions(target: Target, run_id: str | None) -> None:
    """Step 6: the production endpoint answers raw rows of the run's test split (its inference
    pipeline encodes them as training did)."""
    endpoint = target.output("ProductionEndpointName")
    print(f"[6/6] production endpoint {endpoint} answering:", flush=True)
    rows = _test_rows(target, run_id) if run_id else []
    runtime = target.client("sagemaker-runtime")
    body = "\n".join(csv_line(row) for row in rows)
    answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Accept="text/csv", Body=body)
    predictions = parse_predictions(answer["Body"].read().decode(), len(rows), 1, f"endpoint {endpoint}")
    for row, prediction in zip(rows, predictions, strict=True):
        print(f"  features {csv_line(row)[:60]:<60} -> churn probability {prediction:.3f}")


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("demo", parents=[common], help="the whole pipeline on the local cloud")
    run.add_argument("--approve", action="store_true", help="approve over HTTP instead of waiting for a person")
    run.add_argument("--rows", type=int, default=5000, help="rows of generated sample data")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--port", type=int, default=4566)
    run.add_argument("--api-port", type=int, default=4567)
    add_console_port_argument(run)
    add_fault_argument(run)
    run.set_defaults(handler=demo)
