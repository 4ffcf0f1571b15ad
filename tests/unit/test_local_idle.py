"""The idle reaper: warm Glue drivers and Lambda workers idle past the timeout are stopped, busy
ones never, and the next run starts a new worker."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from stepml.local.glue import GlueEngine
from stepml.local.idle import IdleReaper, IdleReaperError
from stepml.local.lambdas import FunctionSpec, LambdaEngine

# A job script that writes its process id; with --hold it first tells the test it runs (by
# writing the `started` FIFO) and waits until the test lets it go (by writing the `release` one).
SCRIPT = textwrap.dedent(
    """
    import argparse, os, pathlib
    parser = argparse.ArgumentParser()
    for name in ("--output_uri", "--started", "--release"):
        parser.add_argument(name)
    args = parser.parse_known_args()[0]
    if args.started:
        with open(args.started, "w") as started:
            started.write("running")
        with open(args.release) as release:
            release.read()
    out = pathlib.Path(args.output_uri)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pid.txt").write_text(str(os.getpid()))
    """
)


@pytest.fixture
def glue(tmp_path: Path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    engine = GlueEngine(lambda: None, tmp_path / "runs")
    engine.register_job("prep", script)
    yield engine
    engine.close()


def _run(engine: GlueEngine, output: Path, **arguments: str) -> threading.Thread:
    """One run of the job on a local output folder (no S3): the engine's warm-up path."""
    return engine.warm_up("prep", {"output_uri": f"{output}-{{n}}/", **arguments}, workers=1)


def _pid_of_run(output: Path) -> int:
    return int((Path(f"{output}-0") / "pid.txt").read_text())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_glue_worker_idle_past_the_timeout_is_stopped_and_the_next_run_starts_a_new_one(glue, tmp_path):
    _run(glue, tmp_path / "first").join(60)
    first = _pid_of_run(tmp_path / "first")

    assert glue.reap_idle(120, now=time.monotonic() + 60) == 0, "idle for less than the timeout: kept"
    assert not _gone(first)
    assert glue.reap_idle(120, now=time.monotonic() + 121) == 1
    assert _gone(first), "the reaped worker's process is stopped"

    _run(glue, tmp_path / "second").join(60)
    second = _pid_of_run(tmp_path / "second")
    assert second != first, "the next run started a new worker"
    assert not _gone(second)


def test_a_busy_glue_worker_is_never_stopped(glue, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    os.mkfifo(started)
    os.mkfifo(release)
    run = _run(glue, tmp_path / "held", started=str(started), release=str(release))
    with open(started) as fifo:  # returns once the script runs in its worker
        assert fifo.read() == "running"

    assert glue.reap_idle(0, now=time.monotonic() + 3600) == 0

    with open(release, "w") as fifo:
        fifo.write("go")
    run.join(60)
    assert not run.is_alive()
    assert not _gone(_pid_of_run(tmp_path / "held")), "the run finished in the worker it started in"


def test_the_reaper_thread_stops_an_idle_worker_after_its_timeout(glue, tmp_path):
    _run(glue, tmp_path / "first").join(60)
    pid = _pid_of_run(tmp_path / "first")
    reaped = threading.Event()
    counts: list[int] = []

    def on_reap(count: int) -> None:
        counts.append(count)
        reaped.set()

    reaper = IdleReaper([glue.reap_idle], 0.2, on_reap=on_reap).start()
    try:
        assert reaped.wait(30), "the reaper stopped the idle worker"
    finally:
        reaper.stop()
    assert counts == [1]
    assert _gone(pid)


def test_the_reaper_refuses_a_timeout_that_is_not_positive():
    with pytest.raises(IdleReaperError, match=r"^the idle timeout must be positive, got 0$"):
        IdleReaper([], 0)


def test_a_pool_that_fails_does_not_keep_the_others_workers(glue, tmp_path):
    _run(glue, tmp_path / "first").join(60)

    def broken(idle_seconds: float) -> int:
        raise RuntimeError("this pool cannot be read")

    reaper = IdleReaper([broken, lambda seconds: glue.reap_idle(seconds, now=time.monotonic() + 3600)], 1)
    assert reaper.reap_now() == 1
    assert _gone(_pid_of_run(tmp_path / "first"))


HANDLER = textwrap.dedent(
    """
    import os

    def handler(event, context):
        return {"pid": os.getpid()}
    """
)


def test_a_lambda_worker_idle_past_the_timeout_is_stopped_and_the_next_invocation_starts_cold(tmp_path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    engine = LambdaEngine({"PATH": "/usr/bin:/bin"}, log_dir=tmp_path / "logs")
    engine.register(FunctionSpec(name="pid", handler="app.handler", code_dir=code, timeout_seconds=30))
    try:
        first = json.loads(engine.invoke("pid", b"{}").payload)["pid"]
        assert engine.reap_idle(120, now=time.monotonic() + 60) == 0
        assert json.loads(engine.invoke("pid", b"{}").payload)["pid"] == first, "still warm"

        assert engine.reap_idle(120, now=time.monotonic() + 121) == 1
        assert _gone(first)
        second = json.loads(engine.invoke("pid", b"{}").payload)["pid"]
        assert second != first
        assert engine.workers_started("pid") == 2
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("given", "expected"), [([], 120.0), (["--idle-timeout", "30"], 30.0), (["--idle-timeout", "0"], None)]
)
def test_stepml_local_up_passes_its_idle_timeout_to_the_cloud(monkeypatch, tmp_path, given, expected):
    from stepml.cli import local
    from stepml.cli.main import build_parser

    monkeypatch.setattr(local, "check_java", lambda: None)
    monkeypatch.setattr(local.LocalCloud, "start", lambda cloud: cloud)  # the options, not a running cloud
    args = build_parser().parse_args(["local", "up", "--state-dir", str(tmp_path), *given])
    assert local.start_cloud(args).idle_timeout_seconds == expected
