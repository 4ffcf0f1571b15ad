"""What the console shows, read as any client would: boto3 against the local cloud's endpoint.

Step Functions answers the executions (ListStateMachines, ListExecutions, DescribeExecution,
GetExecutionHistory, DescribeStateMachineForExecution: the definition the execution ran),
SageMaker the endpoints, the lineage store (``stepml.lineage_queries``) a run's lineage, and
the outbox folder the email. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stepml.lineage import make_run_id, parse_upload
from stepml.lineage_queries import model_lineage, run_tree
from stepml.lineage_table import LineageError
from stepml.local.mail import Outbox, OutboxMessage


class ConsoleDataError(RuntimeError):
    """AWS refused a read; ``not_found`` when what was asked for does not exist."""

    def __init__(self, message: str, *, not_found: bool = False):
        super().__init__(message)
        self.not_found = not_found


@dataclass
class ExecutionView:
    """One execution: DescribeExecution, the definition it ran, and its history."""

    describe: dict[str, Any]
    definition: dict[str, Any]
    events: list[dict[str, Any]]
    machine_name: str


def run_id_of(execution_input: str | None) -> str | None:
    """The lineage run of an execution whose input is an S3 upload event (else None)."""
    try:
        upload = parse_upload(json.loads(execution_input or "null") or {})
    except (LineageError, ValueError, TypeError):
        return None
    return make_run_id(upload["bucket"], upload["key"], upload["version_id"])


class ConsoleData:
    """Reads for the console pages; safe to call from the server's threads."""

    def __init__(
        self, session: boto3.Session, endpoint_url: str, outputs: Callable[[], Mapping[str, str]], outbox: Path
    ):
        self._session = session
        self._endpoint_url = endpoint_url
        self._outputs = outputs
        self._outbox = Outbox(outbox)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """One client per service (clients are thread-safe; creating them is not)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(service, endpoint_url=self._endpoint_url)
            return self._clients[service]

    def _lineage_table(self) -> Any:
        with self._lock:
            resource = self._session.resource("dynamodb", endpoint_url=self._endpoint_url)
        return resource.Table(self._outputs()["LineageTableName"])

    def executions(self) -> list[dict[str, Any]]:
        """Every execution of every state machine, newest first, with its machine's name."""
        sfn = self.client("stepfunctions")
        found = []
        try:
            for page in sfn.get_paginator("list_state_machines").paginate():
                for machine in page["stateMachines"]:
                    for listed in sfn.get_paginator("list_executions").paginate(
                        stateMachineArn=machine["stateMachineArn"]
                    ):
                        found += [{**e, "machineName": machine["name"]} for e in listed["executions"]]
        except (ClientError, BotoCoreError) as exc:
            raise ConsoleDataError(f"Step Functions did not answer: {exc}") from exc
        return sorted(found, key=lambda e: e["startDate"], reverse=True)

    def execution(self, arn: str) -> ExecutionView:
        """DescribeExecution, DescribeStateMachineForExecution and the whole history."""
        sfn = self.client("stepfunctions")
        try:
            describe = sfn.describe_execution(executionArn=arn)
            machine = sfn.describe_state_machine_for_execution(executionArn=arn)
            events: list[dict[str, Any]] = []
            for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
                events += page["events"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            missing = code in ("ExecutionDoesNotExist", "InvalidArn", "ValidationException")
            raise ConsoleDataError(str(exc), not_found=missing) from exc
        except BotoCoreError as exc:
            raise ConsoleDataError(f"Step Functions did not answer: {exc}") from exc
        describe.pop("ResponseMetadata", None)
        return ExecutionView(describe, json.loads(machine["definition"]), events, machine["name"])

    def lineage(self, run_id: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """(the run's lineage tree, None), or (None, why there is none)."""
        if run_id is None:
            return None, "the execution's input is not an upload event, so it has no lineage run"
        try:
            return run_tree(self._lineage_table(), run_id), None
        except LineageError as exc:
            return None, str(exc)
        except (ClientError, BotoCoreError) as exc:
            return None, f"the lineage table did not answer: {exc}"

    def outbox(self, run_id: str | None = None) -> list[OutboxMessage]:
        """The outbox's messages, newest first; with ``run_id``, those that name the run."""
        messages = list(reversed(self._outbox.messages()))
        if run_id is None:
            return messages
        return [m for m in messages if run_id in m.subject or run_id in m.body]

    def endpoints(self) -> list[dict[str, Any]]:
        """Each SageMaker endpoint: status, its variants' model and instance, and the run
        lineage says the model came from."""
        sagemaker = self.client("sagemaker")
        try:
            listed = [e for page in sagemaker.get_paginator("list_endpoints").paginate() for e in page["Endpoints"]]
        except (ClientError, BotoCoreError) as exc:
            raise ConsoleDataError(f"SageMaker did not answer: {exc}") from exc
        return [self._endpoint(sagemaker, summary["EndpointName"]) for summary in listed]

    def _endpoint(self, sagemaker: Any, name: str) -> dict[str, Any]:
        view: dict[str, Any] = {"name": name, "status": "?", "variants": [], "run_id": None, "failure": None}
        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=name)
            view.update(status=endpoint["EndpointStatus"], failure=endpoint.get("FailureReason"))
            view["created"] = endpoint.get("CreationTime")
            config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
            view["config"] = endpoint["EndpointConfigName"]
            view["variants"] = [
                {
                    "variant": v.get("VariantName"),
                    "model": v.get("ModelName"),
                    "instance": v.get("InstanceType") or "serverless",
                    "count": v.get("InitialInstanceCount"),
                }
                for v in config.get("ProductionVariants", [])
            ]
        except ClientError as exc:
            view["failure"] = str(exc)  # deleted between the listing and the describe
            return view
        # An endpoint no run recorded (made by hand) is shown without a run.
        with contextlib.suppress(LineageError, ClientError):
            view["run_id"] = model_lineage(self._lineage_table(), name, sagemaker_client=sagemaker)["run_id"]
        return view
