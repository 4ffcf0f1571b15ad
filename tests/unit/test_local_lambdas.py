"""The local Lambda engine: warm workers, Lambda's error and timeout payloads, moto routing."""

from __future__ import annotations

import io
import json
import os
import textwrap
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stepml import packaging
from stepml.local.lambdas import (
    INVOKE,
    WARM_ON_START,
    FunctionSpec,
    FunctionThrottledError,
    LambdaEngine,
    LambdaEngineError,
)
from stepml.local.lambdas.adapter import invoked_functions
from stepml.local.template import load_template
from tests.helpers import REPO_ROOT
from tests.unit.stepfunctions.support import EXECUTE_STATE_MACHINES

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


def test_moto_lambda_invoke_is_routed_to_the_engine(engine, aws_credentials, apply_patch):
    apply_patch(INVOKE, engine)
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


def test_prewarm_imports_one_function_after_the_other_and_an_invocation_waits_for_its_worker(engine, tmp_path):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "app.py").write_text(
        "import os, time\ntime.sleep(1)  # a long import\nPID = os.getpid()\ndef handler(e, c): return PID\n"
    )
    engine.register(FunctionSpec(name="slow", handler="app.handler", code_dir=slow, timeout_seconds=5))
    warming = ThreadPoolExecutor(max_workers=1).submit(engine.prewarm, ["slow", "echo", "nope"])
    deadline = time.monotonic() + 5
    while engine.workers_started("slow") == 0:
        assert time.monotonic() < deadline, "prewarm started no worker"
        time.sleep(0.01)
    assert engine.workers_started("echo") == 0, "echo waits until slow's handler is imported"
    first = engine.invoke("slow", "{}")  # while slow's worker imports: it waits for that worker
    assert first.function_error is None and engine.workers_started("slow") == 1
    assert warming.result(timeout=10) == ["slow", "echo"]  # "nope" is not a function of the engine
    assert engine.workers_started("echo") == 1
    assert engine.invoke("echo", "{}").json()["event"] == {}
    assert engine.workers_started("echo") == 1, "the invocation used the warmed worker"
    assert engine.prewarm(["slow", "echo"]) == [], "functions with a worker get no other"


def _ended(sfn, execution_arn: str) -> dict:
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)
    return described


def test_an_execution_start_warms_the_functions_its_definition_invokes(engine, aws_credentials, apply_patch):
    apply_patch(INVOKE, engine)
    apply_patch(WARM_ON_START, engine)
    with mock_aws(config=EXECUTE_STATE_MACHINES):
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("app.py", "def handler(e, c): return 1\n")
        function = boto3.client("lambda").create_function(
            FunctionName="echo",
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": archive.getvalue()},
        )["FunctionArn"]
        task = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "ResultSelector": {"pid.$": "$.Payload.pid"},
        }
        definition = {
            "StartAt": "Pause",
            "States": {
                "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Call"},
                "Call": {**task, "Parameters": {"FunctionName": function, "Payload": {}}, "End": True},
            },
        }
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
        assert engine.workers_started("echo") == 0
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        deadline = time.monotonic() + 3
        while engine.workers_started("echo") == 0:
            assert time.monotonic() < deadline, "no worker started with the execution"
            time.sleep(0.01)
        # Started while the execution waits, before its task; "broken" is not in the definition.
        events = sfn.get_execution_history(executionArn=execution)["events"]
        assert not [e for e in events if e["type"].startswith("TaskStateEntered")], events
        assert _ended(sfn, execution)["status"] == "SUCCEEDED"
        assert engine.workers_started("broken") == 0
        assert engine.workers_started("echo") == 1, "the task used the worker the start warmed"
        engine.invoke("echo", "{}")  # a function with a worker gets no other at the next start
        again = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        assert engine.workers_started("echo") == 1
        assert _ended(sfn, again)["status"] == "SUCCEEDED"
    pipeline = json.loads((REPO_ROOT / "statemachine" / "pipeline.asl.json").read_text())
    assert invoked_functions(pipeline) == [
        "${ResolveRunFunctionArn}",
        "${RecordStepFunctionArn}",
        "${EvaluateFunctionArn}",
        "${RequestApprovalFunctionArn}",
    ]


WAIT_FOR_RELEASE = textwrap.dedent(
    """
    import os, pathlib, time

    def handler(event, context):
        pathlib.Path(event["started"]).touch()
        while not os.path.exists(event["release"]):  # the test creates it once it has checked
            time.sleep(0.01)
        return event["n"]
    """
)


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_reserved_concurrency_throttles_a_call_over_it_as_lambda_does(engine, tmp_path, monkeypatch, apply_patch):
    code = tmp_path / "capped"
    code.mkdir()
    (code / "app.py").write_text(WAIT_FOR_RELEASE)
    engine.register(
        FunctionSpec(name="capped", handler="app.handler", code_dir=code, timeout_seconds=30, reserved_concurrency=1)
    )
    started, release = tmp_path / "started", tmp_path / "release"
    event = {"started": str(started), "release": str(release)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(engine.invoke, "capped", json.dumps({**event, "n": 1}))
        _wait_for_file(started)
        with pytest.raises(FunctionThrottledError) as throttled:
            engine.invoke("capped", json.dumps({**event, "n": 2}))
        assert (throttled.value.code, throttled.value.message) == ("TooManyRequestsException", "Rate Exceeded.")
        assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"

        for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
            monkeypatch.setenv(name, value)
        apply_patch(INVOKE, engine)
        with mock_aws():
            client = _moto_function(boto3.client("lambda", region_name="us-east-1"), "capped")
            with pytest.raises(ClientError) as refused:
                client.invoke(FunctionName="capped", Payload=json.dumps({**event, "n": 3}))
            assert refused.value.response["Error"] == {
                "Code": "TooManyRequestsException",
                "Message": "Rate Exceeded.",
            }
            assert refused.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        # An asynchronous invocation is queued, as Lambda queues a throttled event, not dropped.
        queued = pool.submit(engine.invoke, "capped", json.dumps({**event, "n": 4}), queue=True)
        release.touch()
        assert first.result(timeout=30).json() == 1
        assert queued.result(timeout=30).json() == 4
    assert engine.invoke("capped", json.dumps({**event, "n": 5})).json() == 5, "the slot is free again"


def _moto_function(client, name):
    role = boto3.client("iam", region_name="us-east-1").create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", "def handler(e, c): return 1\n")
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    return client


LIBRARY_PROBE = textwrap.dedent(
    """
    import importlib

    def handler(event, context):
        found = {}
        for name in event["modules"]:
            try:
                importlib.import_module(name)
                found[name] = "imported"
            except ImportError as exc:
                found[name] = type(exc).__name__
        return {"found": found, "stepml": list(importlib.import_module("stepml").__path__)}
    """
)


def test_a_worker_with_the_library_layer_imports_its_modules_but_not_the_local_cloud(engine, tmp_path, monkeypatch):
    source = REPO_ROOT / "src"
    entries = packaging.layer_entry_files(REPO_ROOT, load_template(REPO_ROOT / "template.yaml"), "StepmlLibraryLayer")
    layer = tmp_path / "layer"
    packaging.stage_layer(
        source, packaging.layer_files(source, packaging.runtime_modules(entries, source)), layer, link=True
    )
    code = tmp_path / "probe"
    code.mkdir()
    (code / "app.py").write_text(LIBRARY_PROBE)
    # The caller's PYTHONPATH holds the whole library; the worker must not inherit it.
    monkeypatch.setenv("PYTHONPATH", f"{source}{os.pathsep}{REPO_ROOT}")
    engine.register(
        FunctionSpec(name="probe", handler="app.handler", code_dir=code, layer_dirs=(layer,), timeout_seconds=30)
    )
    modules = [
        "stepml.approvals",
        "stepml.lineage",
        "stepml.local",
        "stepml.local.lambdas",
        "stepml.cli",
        "stepml.sample_data",
        "stepml.packaging",
        "lambdas",
    ]
    result = engine.invoke("probe", json.dumps({"modules": modules}))
    assert result.function_error is None, result.json()
    assert result.json()["stepml"] == [str(layer / "stepml")]
    assert result.json()["found"] == {
        "stepml.approvals": "imported",
        "stepml.lineage": "imported",
        "stepml.local": "ModuleNotFoundError",
        "stepml.local.lambdas": "ModuleNotFoundError",
        "stepml.cli": "ModuleNotFoundError",
        "stepml.sample_data": "ModuleNotFoundError",
        "stepml.packaging": "ModuleNotFoundError",
        "lambdas": "ModuleNotFoundError",
    }
