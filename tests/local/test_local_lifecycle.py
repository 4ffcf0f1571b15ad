"""`stepml local up/down` as a user runs them, and the one-line errors of issue 3.

These start their own clouds (or fail to), so they do not use the module's ``cloud`` fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from stepml.cli.main import main
from stepml.local.cloud import port_is_free
from tests.helpers import REPO_ROOT, free_port


def _stepml(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stepml.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=env or dict(os.environ),
        check=False,
    )


def test_up_detached_serves_aws_then_refuses_a_second_up_and_down_stops_it(tmp_path):
    state = str(tmp_path / "state")
    port, api_port, console_port = free_port(), free_port(), free_port()
    started = _stepml(
        "local", "up", "--detach", "--state-dir", state, "--port", str(port), "--api-port", str(api_port),
        "--console-port", str(console_port), "--glue-warm-workers", "0",
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"AWS endpoint: http://127.0.0.1:{port}" in started.stdout
    assert f"console:      http://127.0.0.1:{console_port}/" in started.stdout
    try:
        cloud_state = json.loads((tmp_path / "state" / "cloud.json").read_text())
        s3 = boto3.client(
            "s3",
            endpoint_url=cloud_state["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        buckets = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
        assert cloud_state["outputs"]["UploadBucketName"] in buckets

        again = _stepml("local", "up", "--detach", "--state-dir", state, "--port", str(port))
        assert again.returncode == 1
        assert again.stderr.strip() == (
            f"error: a local cloud is already running (pid {cloud_state['pid']}, {tmp_path / 'state'}); "
            "`stepml local down` stops it"
        )
    finally:
        stopped = _stepml("local", "down", "--state-dir", state)
    assert stopped.returncode == 0 and "local cloud stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not (tmp_path / "state" / "cloud.json").exists()
    assert port_is_free("127.0.0.1", console_port), "down stops the console too"
    assert _stepml("local", "down", "--state-dir", state).stdout.strip() == "no local cloud is running"


def test_a_port_in_use_is_a_one_line_error(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            ["local", "up", "--state-dir", str(tmp_path), "--port", str(port), "--api-port", str(free_port()),
             "--console-port", str(free_port())]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().startswith(f"error: port {port} on 127.0.0.1 is in use;") and "--port" in err
    assert err.strip().count("\n") == 0


def test_missing_java_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # A PATH with Python but no java on it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("java") is None
    code = main(["local", "up", "--state-dir", str(tmp_path / "state"), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().startswith("error: Java is missing: the local Glue engine (PySpark 3.5) needs a Java 17")
    assert err.strip().count("\n") == 0


@pytest.fixture
def repository_with_a_stream(tmp_path: Path) -> Path:
    """A copy of the repository's template with a resource type the local cloud cannot run."""
    repository = tmp_path / "app"
    repository.mkdir()
    shutil.copy(REPO_ROOT / "samconfig.toml", repository)
    template = (REPO_ROOT / "template.yaml").read_text()
    stream = "\n  ClickStream:\n    Type: AWS::Kinesis::Stream\n    Properties:\n      ShardCount: 1\n"
    template = template.replace("\nResources:\n", "\nResources:" + stream, 1)
    (repository / "template.yaml").write_text(template)
    return repository


def test_a_template_the_local_cloud_cannot_provision_is_a_one_line_error(repository_with_a_stream, tmp_path):
    result = _stepml(
        "local", "up", "--state-dir", str(tmp_path / "state"), "--port", str(free_port()),
        "--api-port", str(free_port()), "--glue-warm-workers", "0",
        cwd=repository_with_a_stream,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip()
    assert error.count("\n") == 0, error
    assert error.startswith("error: ") and "ClickStream" in error and "AWS::Kinesis::Stream" in error
    assert "Traceback" not in result.stderr
