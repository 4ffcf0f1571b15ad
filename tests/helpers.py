"""Helpers shared by the test tiers: events, handler loading, the example dataset config."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CHURN_CONFIG: dict[str, Any] = json.loads((REPO_ROOT / "examples/datasets/churn.json").read_text())


def load_handler(relative_path: str) -> ModuleType:
    """Import a Lambda's ``app.py`` under a unique module name (every handler is called ``app``)."""
    path = REPO_ROOT / relative_path
    name = "handler_" + "_".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def s3_object_created_event(bucket: str, key: str, version_id: str, etag: str, size: int) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object: the local cloud's own builder."""
    from stepml.local.events import s3_object_created_event as build

    return build("123456789012", "us-east-1", bucket, key, size, etag, version_id)


def set_function_environment(monkeypatch: Any, stack: Any, logical_id: str) -> dict[str, str]:
    """Set a provisioned function's environment (as Lambda would see it) for this test; return it."""
    environment = stack.function_environment(logical_id)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return environment


def local_cloud(state_dir: Path) -> Any:
    """A LocalCloud of this repository on free ports, not started (tests and benchmarks)."""
    from stepml.local.cloud import LocalCloud

    # Tests start monitoring executions themselves (run_now): no periodic one may take their data first.
    # No idle reaper: the session hands warm Spark drivers from one module's cloud to the next
    # (conftest's glue_idle_workers), and a test's pause must not turn its next step into a cold start.
    return LocalCloud(
        root=REPO_ROOT,
        state_dir=state_dir,
        port=free_port(),
        api_port=free_port(),
        console_port=free_port(),
        monitor_period_seconds=3600,
        idle_timeout_seconds=None,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def logs_key_policy(account: str = "123456789012", region: str = "us-east-1") -> dict:
    """The template's LogKey policy as ``account`` in ``region`` would get it: the account
    administers, CloudWatch Logs encrypts this account's groups (read from template.yaml)."""
    from stepml.local.template import ResolvedTemplate, load_template

    resolved = ResolvedTemplate(load_template(REPO_ROOT / "template.yaml"), region=region, account_id=account)
    return resolved.resolved_properties("LogKey")["KeyPolicy"]


def put_encoding(s3, run) -> None:
    """The Glue job's encoding.json, which recording the preprocessing step packages."""
    bucket, _, key = run["paths"]["encoding"].removeprefix("s3://").partition("/")
    document = {"features": [], "categories": {}, "missing_category": "__missing__", "medians": {}}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({**document, "number_pattern": "^$"}).encode())
