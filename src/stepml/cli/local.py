"""``stepml local up`` and ``stepml local down``: the local cloud's lifecycle."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from stepml.cli.context import CliError, state_dir
from stepml.local.cloud import (
    DEFAULT_API_PORT,
    DEFAULT_BAKING_PERIOD,
    DEFAULT_CONSOLE_PORT,
    DEFAULT_MONITOR_PERIOD,
    DEFAULT_PORT,
    LocalCloud,
    LocalCloudError,
    port_is_free,
)
from stepml.local.faults import ENVIRONMENT_VARIABLE as FAULTS_VARIABLE
from stepml.local.faults import OPERATIONS as FAULT_OPERATIONS
from stepml.local.faults import FaultSpecError
from stepml.local.idle import DEFAULT_IDLE_TIMEOUT_SECONDS
from stepml.local.provision import ProvisionError
from stepml.local.template import TemplateError


def find_repository(start: Path | None = None) -> Path:
    """The folder holding template.yaml: the current folder or one of its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").is_file() and (folder / "samconfig.toml").is_file():
            return folder
    raise CliError(f"no template.yaml and samconfig.toml in {here} or its parents; run stepml from the repository")


def check_java() -> None:
    if shutil.which("java") is None:
        raise CliError(
            "Java is missing: the local Glue engine (PySpark 3.5) needs a Java 17 runtime; install it "
            "(e.g. apt-get install openjdk-17-jre-headless) and retry"
        )


def start_cloud(args: argparse.Namespace) -> LocalCloud:
    check_java()
    cloud = LocalCloud(
        root=find_repository(),
        state_dir=state_dir(args.state_dir),
        port=args.port,
        api_port=args.api_port,
        console_port=getattr(args, "console_port", DEFAULT_CONSOLE_PORT),
        glue_warm_workers=getattr(args, "glue_warm_workers", 1),
        monitor_period_seconds=getattr(args, "monitor_period", DEFAULT_MONITOR_PERIOD),
        baking_period_seconds=getattr(args, "baking_period", DEFAULT_BAKING_PERIOD),
        idle_timeout_seconds=getattr(args, "idle_timeout", DEFAULT_IDLE_TIMEOUT_SECONDS) or None,
    )
    try:
        cloud.faults.load(getattr(args, "fault", None) or [])
    except FaultSpecError as exc:
        raise CliError(str(exc)) from exc
    try:
        return cloud.start()
    except FaultSpecError as exc:
        cloud.stop()
        raise CliError(f"${FAULTS_VARIABLE}: {exc}") from exc
    except (LocalCloudError, ProvisionError, TemplateError) as exc:
        cloud.stop()
        raise CliError(f"{exc}. Fix the template (or the port) and run the command again.") from exc


def _running_pid(folder: Path) -> int | None:
    path = folder / "cloud.json"
    if not path.exists():
        return None
    pid = json.loads(path.read_text()).get("pid")
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return None
    return pid


def up(args: argparse.Namespace) -> int:
    folder = state_dir(args.state_dir)
    pid = _running_pid(folder)
    if pid is not None:
        raise CliError(f"a local cloud is already running (pid {pid}, {folder}); `stepml local down` stops it")
    if args.detach:
        return _detach(args, folder)
    started = time.monotonic()
    print("starting the local cloud (moto server, Lambda workers, Glue and SageMaker engines)...", flush=True)
    cloud = start_cloud(args)
    outputs = cloud.outputs()
    print(f"local cloud up in {time.monotonic() - started:.1f}s", flush=True)
    print(f"  AWS endpoint:   {cloud.endpoint_url}   (export AWS_ENDPOINT_URL={cloud.endpoint_url})")
    print(f"  approval API:   {cloud.api_url}")
    print(f"  console:        {cloud.console_url}")
    if cloud.signin_url:
        print(f"  sign-in:        {cloud.signin_url} (ApprovalSignIn=cognito)")
    print(f"  upload bucket:  s3://{outputs['UploadBucketName']}/incoming/<dataset>/")
    print(f"  state folder:   {cloud.state_dir}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    print("stopping the local cloud...", flush=True)
    cloud.stop()
    return 0


def _detach(args: argparse.Namespace, folder: Path) -> int:
    for port in (args.port, args.api_port, args.console_port):
        if not port_is_free("127.0.0.1", port):
            raise CliError(
                f"port {port} on 127.0.0.1 is in use; stop what uses it (stepml local down) or pick "
                "another with --port/--api-port/--console-port"
            )
    check_java()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "cloud.log"
    command = [
        sys.executable,
        "-m",
        "stepml.cli.main",
        "local",
        "up",
        "--state-dir",
        str(folder),
        "--port",
        str(args.port),
        "--api-port",
        str(args.api_port),
        "--console-port",
        str(args.console_port),
        "--glue-warm-workers",
        str(args.glue_warm_workers),
        "--monitor-period",
        str(args.monitor_period),
        "--baking-period",
        str(args.baking_period),
        "--idle-timeout",
        str(args.idle_timeout),
    ]
    for fault in args.fault or []:
        command += ["--fault", fault]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=find_repository()
        )
    deadline = time.monotonic() + args.timeout
    print(f"starting the local cloud in the background (log: {log})", end="", flush=True)
    while time.monotonic() < deadline:
        if (folder / "cloud.json").exists():
            print(" ready", flush=True)
            state = json.loads((folder / "cloud.json").read_text())
            print(f"  AWS endpoint: {state['endpoint_url']}\n  approval API: {state['api_url']}")
            print(f"  console:      {state['console_url']}")
            return 0
        if process.poll() is not None:
            print(flush=True)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise CliError(f"the local cloud did not start: {tail[0]}")
        print(".", end="", flush=True)
        time.sleep(1)
    process.terminate()
    raise CliError(f"the local cloud did not start within {args.timeout}s; see {log}")


def down(args: argparse.Namespace) -> int:
    folder = state_dir(args.state_dir)
    pid = _running_pid(folder)
    if pid is None:
        print("no local cloud is running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print(f"local cloud stopped (pid {pid})")
            return 0
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    (folder / "cloud.json").unlink(missing_ok=True)
    print(f"local cloud killed after 30 s (pid {pid})")
    return 0


def patches(args: argparse.Namespace) -> int:
    """Print every registered patch of moto: name, scope, moto version, its test and why it exists."""
    import moto

    from stepml.local.patching import registry

    width = shutil.get_terminal_size((100, 24)).columns
    for patch in registry():
        installed = "" if patch.moto_version == moto.__version__ else f" (installed: {moto.__version__})"
        print(f"{patch.name}  [{patch.scope}]  checked against moto {patch.moto_version}{installed}")
        print(f"    test: {patch.test}")
        print(textwrap.fill(patch.why, width=max(width, 40), initial_indent="    ", subsequent_indent="    "))
        print()
    return 0


def add_fault_argument(parser: argparse.ArgumentParser) -> None:
    """``--fault OPERATION[@MATCH]=N`` (repeatable), as ``$STEPML_LOCAL_FAULTS`` takes them."""
    parser.add_argument(
        "--fault",
        action="append",
        metavar="OPERATION[@MATCH]=N",
        help=(
            f"make an operation of the local cloud fail its next N calls (whose subject contains MATCH); "
            f"repeatable, added to ${FAULTS_VARIABLE}. Operations: {', '.join(FAULT_OPERATIONS)}"
        ),
    )


def add_console_port_argument(parser: argparse.ArgumentParser) -> None:
    """``--console-port``: where the local cloud serves its web console."""
    parser.add_argument(
        "--console-port",
        type=int,
        default=DEFAULT_CONSOLE_PORT,
        help=f"web console port (default {DEFAULT_CONSOLE_PORT})",
    )


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    local = commands.add_parser("local", help="the local cloud")
    sub = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)
    start = sub.add_parser("up", parents=[common], help="start the local cloud (foreground; --detach for background)")
    start.add_argument("--detach", action="store_true", help="run in the background and return when ready")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"AWS endpoint port (default {DEFAULT_PORT})")
    start.add_argument(
        "--api-port", type=int, default=DEFAULT_API_PORT, help=f"approval API port (default {DEFAULT_API_PORT})"
    )
    add_console_port_argument(start)
    start.add_argument("--timeout", type=int, default=120, help="seconds --detach waits for the cloud")
    start.add_argument(
        "--glue-warm-workers",
        type=int,
        default=1,
        metavar="N",
        help="Spark drivers warmed up at start so the first Glue run is fast (default 1; 0 starts cold)",
    )
    start.add_argument(
        "--monitor-period",
        type=float,
        default=DEFAULT_MONITOR_PERIOD,
        metavar="SECONDS",
        help=f"how often each monitoring schedule runs (AWS: hourly; default {DEFAULT_MONITOR_PERIOD:g} s)",
    )
    start.add_argument(
        "--baking-period",
        type=float,
        default=DEFAULT_BAKING_PERIOD,
        metavar="SECONDS",
        help=(
            "the longest a blue/green update watches its rollback alarms before it completes (AWS: the "
            f"template's DeploymentBakingSeconds, 600 s; default {DEFAULT_BAKING_PERIOD:g} s; 0 completes at once)"
        ),
    )
    start.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=(
            "stop a warm Spark driver or Lambda worker idle this long, as AWS reclaims idle capacity; the next "
            f"run starts it again (default {DEFAULT_IDLE_TIMEOUT_SECONDS:g} s; 0 keeps them warm)"
        ),
    )
    add_fault_argument(start)
    start.set_defaults(handler=up)
    stop = sub.add_parser("down", parents=[common], help="stop the local cloud")
    stop.set_defaults(handler=down)
    listing = sub.add_parser(
        "patches", parents=[common], help="list how the local cloud changes moto: each patch, its test and why"
    )
    listing.set_defaults(handler=patches)
