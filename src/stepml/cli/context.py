"""Where the CLI's AWS is: the local cloud (``.stepml/cloud.json``) or a deployed stack."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

STATE_DIR_ENV = "STEPML_STATE_DIR"


class CliError(RuntimeError):
    """A one-line error for the user; the CLI prints it and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def state_dir(explicit: str | None = None) -> Path:
    """The local cloud's folder: ``--state-dir``, ``$STEPML_STATE_DIR`` or ``./.stepml``."""
    return Path(explicit or os.environ.get(STATE_DIR_ENV) or ".stepml").resolve()


_LOCAL_CONFIG = Config(inject_host_prefix=False)


@dataclass
class Target:
    """Clients and resource names of the pipeline the CLI talks to."""

    session: boto3.Session
    endpoint_url: str | None
    outputs: dict[str, str]
    local_state: Path | None = None

    def client(self, service: str) -> Any:
        if self.endpoint_url is None:
            return self.session.client(service)
        # Calls such as TestState and StartSyncExecution go to a "sync-" host prefix in AWS; the
        # local cloud is one host, so the prefix stays off.
        return self.session.client(service, endpoint_url=self.endpoint_url, config=_LOCAL_CONFIG)

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            raise CliError(f"the stack has no output {name}; is it a stepml stack?") from None

    def lineage_table(self) -> Any:
        """The stack's lineage table (a boto3 DynamoDB ``Table``)."""
        return self.session.resource("dynamodb", endpoint_url=self.endpoint_url).Table(self.output("LineageTableName"))

    @property
    def outbox_dir(self) -> Path | None:
        return self.local_state / "outbox" if self.local_state else None


def connect(stack_name: str | None = None, explicit_state_dir: str | None = None) -> Target:
    """Connect to a deployed stack (``--stack-name``) or to the running local cloud."""
    if stack_name:
        session = boto3.Session()
        try:
            stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except (ClientError, BotoCoreError) as exc:
            raise CliError(f"cannot read stack {stack_name}: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return Target(session=session, endpoint_url=None, outputs=outputs)
    folder = state_dir(explicit_state_dir)
    path = folder / "cloud.json"
    if not path.exists():
        raise CliError(
            f"no local cloud is running ({path} not found); start one with `stepml local up --detach` "
            "or pass --stack-name for a deployed stack"
        )
    state = json.loads(path.read_text())
    # Only this local path needs the local cloud (and moto): a deployed stack's commands never load it.
    from stepml.local.cloud import CREDENTIALS

    session = boto3.Session(
        region_name=state["region"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return Target(session=session, endpoint_url=state["endpoint_url"], outputs=state["outputs"], local_state=folder)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table (no colour, fits a terminal and a log file alike)."""
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row.get(c, "") or "").ljust(widths[c]) for c in columns).rstrip())
