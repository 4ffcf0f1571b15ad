"""The local Lambda engine: warm workers, Lambda's error and timeout payloads, moto routing."""

from __future__ import annotations

import io
import json
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from stepml.local.lambdas import FunctionSpec, LambdaEngine, LambdaEngineError, install_moto_hooks

HANDLER = textwrap.dedent(
    """
    import os, time

    COLD_START_PID = os.getpid()

    def handler(event, context):
        action = event.get("action")
        print("this print must not break the protocol")
        if action == "fail":
            raise ValueError("bad input: " + event.get("why", ""))
        if action == "sleep":
            time.sleep(event["seconds"])
        if action == "unserializable":
            return {"value": object()}
        return {"pid": COLD_START_PID, "greeting": os.environ["GREETING"], "event": event,
                "function": context.function_name, "remaining_ms": context.get_remaining_time_in_millis()}
    """
)


@pytest.fixture
def engine(tmp_path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    engine = LambdaEngine({"PATH": "/usr/bin:/bin"}, max_workers_per_function=3, log_dir=tmp_path / "logs")
    engine.register(
        FunctionSpec(
            name="echo", handler="app.handler", code_dir=code, environment={"GREETING": "hello"}, timeout_seconds=2
        )
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "app.py").write_text("import not_a_module_anywhere\n")
    engine.register(FunctionSpec(name="broken", handler="app.handler", code_dir=tmp_path / "broken"))
    yield engine
    engine.close()


def test_a_warm_worker_serves_repeated_invocations_with_the_function_environment(engine):
    first = engine.invoke("echo", json.dumps({"n": 1}))
    second = engine.invoke("echo", json.dumps({"n": 2}))
    assert first.function_error is None
    assert first.json()["greeting"] == "hello" and first.json()["event"] == {"n": 1}
    assert first.json()["function"] == "echo" and 0 < first.json()["remaining_ms"] <= 2000
    assert first.json()["pid"] == second.json()["pid"], "the second call reuses the warm worker"
    assert engine.workers_started("echo") == 1


def test_a_handler_exception_comes_back_as_lambdas_unhandled_error(engine):
    result = engine.invoke("echo", json.dumps({"action": "fail", "why": "label missing"}))
    assert result.function_error == "Unhandled"
    body = result.json()
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad input: label missing"
    assert body["stackTrace"], "the stack trace is in the payload, as Lambda returns it"
    assert engine.invoke("echo", "{}").function_error is None, "the worker survives a handler error"


def test_a_timeout_kills_the_worker_and_reports_sandbox_timedout(engine):
    result = engine.invoke("echo", json.dumps({"action": "sleep", "seconds": 30}))
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in result.json()["errorMessage"]
    assert result.duration_ms < 6000
    assert engine.invoke("echo", "{}").function_error is None, "a fresh worker replaces the killed one"


def test_import_errors_and_unserializable_results_are_named(engine):
    broken = engine.invoke("broken", "{}")
    assert broken.function_error == "Unhandled" and broken.json()["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_anywhere" in broken.json()["errorMessage"]
    marshal = engine.invoke("echo", json.dumps({"action": "unserializable"}))
    assert marshal.json()["errorType"] == "Runtime.MarshalError"


def test_concurrent_invocations_run_in_parallel_up_to_the_pool_size(engine):
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda _: engine.invoke("echo", json.dumps({"action": "sleep", "seconds": 0.5})), range(3))
        )
    assert all(r.function_error is None for r in results)
    assert len({r.json()["pid"] for r in results}) == 3
    assert engine.workers_started("echo") <= 3


def test_unknown_function_is_named(engine):
    with pytest.raises(LambdaEngineError, match="function 'nope' is not registered"):
        engine.invoke("nope", "{}")


def test_moto_lambda_invoke_is_routed_to_the_engine(engine, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    restore = install_moto_hooks(engine)
    try:
        with mock_aws():
            iam = boto3.client("iam")
            role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("app.py", "def handler(e, c): return 1\n")
            client = boto3.client("lambda")
            client.create_function(
                FunctionName="echo",
                Runtime="python3.11",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": archive.getvalue()},
            )
            ok = client.invoke(FunctionName="echo", Payload=json.dumps({"n": 3}))
            assert json.loads(ok["Payload"].read())["event"] == {"n": 3}
            assert "FunctionError" not in ok
            failed = client.invoke(FunctionName="echo", Payload=json.dumps({"action": "fail"}))
            assert failed["FunctionError"] == "Unhandled"
            assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"
    finally:
        restore()
