"""The local Glue engine: real script runs, s3:// staging, states and error messages."""

from __future__ import annotations

import textwrap
import time

import boto3
import pytest

from stepml.local.glue import GlueEngine, error_message_from_log, install_moto_hooks

SCRIPT = textwrap.dedent(
    """
    import argparse, pathlib, sys
    parser = argparse.ArgumentParser()
    for name in ("--JOB_NAME", "--JOB_RUN_ID", "--input_uri", "--output_uri", "--TempDir", "--mode"):
        parser.add_argument(name)
    parser.add_argument("--input_version_id")
    args = parser.parse_args()
    text = pathlib.Path(args.input_uri).read_text()
    if args.mode == "exit":
        print("exiting on purpose")
        sys.exit(3)
    if args.mode == "crash":
        import os
        os._exit(9)
    if args.mode == "fail":
        class PreprocessError(Exception):
            pass
        raise PreprocessError(f"{args.input_uri}: the label column 'churned' is missing")
    out = pathlib.Path(args.output_uri)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train" / "part-0.csv").write_text(text.upper())
    (out / "manifest.json").write_text('{"rows": 1}')
    import os
    (out / "pid.txt").write_text(str(os.getpid()))
    pathlib.Path(args.input_uri).write_text("the script must not be able to change the upload")
    """
)


@pytest.fixture
def glue(stack, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    engine = GlueEngine(lambda: boto3.client("s3"), tmp_path / "runs")
    engine.register_job("prep", script)
    restore = install_moto_hooks(engine)
    client = boto3.client("glue")
    client.create_job(
        Name="prep",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": str(script)},
        DefaultArguments={"--TempDir": f"s3://{stack.physical_id('ArtifactBucket')}/glue-temp/", "--mode": "ok"},
        ExecutionProperty={"MaxConcurrentRuns": 5},
    )
    yield engine, client
    restore()
    engine.close()


def _wait(client, run_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = client.get_job_run(JobName="prep", RunId=run_id)["JobRun"]
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            return run
        time.sleep(0.1)
    raise AssertionError("job run did not finish")


def test_a_run_executes_the_script_and_uploads_what_it_wrote(stack, glue):
    _, client = glue
    s3 = boto3.client("s3")
    upload, artifacts = stack.physical_id("UploadBucket"), stack.physical_id("ArtifactBucket")
    put = s3.put_object(Bucket=upload, Key="incoming/churn/data.csv", Body=b"a,b\n")
    run_id = client.start_job_run(
        JobName="prep",
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/data.csv",
            "--output_uri": f"s3://{artifacts}/processed/churn/r1/",
        },
    )["JobRunId"]
    run = _wait(client, run_id)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert "CompletedOn" in run and run["ExecutionTime"] >= 0
    body = s3.get_object(Bucket=artifacts, Key="processed/churn/r1/train/part-0.csv")["Body"].read()
    assert body == b"A,B\n"
    assert s3.get_object(Bucket=artifacts, Key="processed/churn/r1/manifest.json")["ServerSideEncryption"] == "AES256"
    head = s3.head_object(Bucket=upload, Key="incoming/churn/data.csv")
    assert head["ETag"] == put["ETag"] and head["VersionId"] == put["VersionId"], "the upload is never modified"
    listed = s3.list_objects_v2(Bucket=artifacts, Prefix="glue-temp/").get("KeyCount", 0)
    assert listed == 0, "scratch space is not uploaded"


def test_a_failing_script_fails_the_run_with_its_error(stack, glue):
    _, client = glue
    upload = stack.physical_id("UploadBucket")
    boto3.client("s3").put_object(Bucket=upload, Key="incoming/churn/bad.csv", Body=b"x\n")
    run_id = client.start_job_run(
        JobName="prep",
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/bad.csv",
            "--output_uri": f"s3://{upload}/out/",
            "--mode": "fail",
        },
    )["JobRunId"]
    run = _wait(client, run_id)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"].startswith("PreprocessError: ")
    assert "incoming/churn/bad.csv: the label column 'churned' is missing" in run["ErrorMessage"]


def test_error_message_is_the_last_exception_line():
    log = "INFO starting\nTraceback (most recent call last):\n  File x\n__main__.PreprocessError: bad label\n"
    assert error_message_from_log(log) == "PreprocessError: bad label"
    assert error_message_from_log("just died") == "just died"


def _start(client, stack, mode: str, output: str) -> str:
    upload = stack.physical_id("UploadBucket")
    boto3.client("s3").put_object(Bucket=upload, Key="incoming/churn/in.csv", Body=b"a\n")
    return client.start_job_run(
        JobName="prep",
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/in.csv",
            "--output_uri": f"s3://{stack.physical_id('ArtifactBucket')}/{output}/",
            "--mode": mode,
        },
    )["JobRunId"]


def _pid_of(stack, output: str) -> str:
    body = boto3.client("s3").get_object(Bucket=stack.physical_id("ArtifactBucket"), Key=f"{output}/pid.txt")["Body"]
    return body.read().decode()


def test_runs_one_after_another_reuse_a_warm_worker(stack, glue):
    _, client = glue
    first, second = _start(client, stack, "ok", "first"), None
    assert _wait(client, first)["JobRunState"] == "SUCCEEDED"
    second = _start(client, stack, "ok", "second")
    assert _wait(client, second)["JobRunState"] == "SUCCEEDED"
    assert _pid_of(stack, "first") == _pid_of(stack, "second"), "the second run reuses the first run's process"


def test_a_script_that_exits_non_zero_fails_and_the_worker_serves_the_next_run(stack, glue):
    _, client = glue
    failed = _wait(client, _start(client, stack, "exit", "exit"))
    assert failed["JobRunState"] == "FAILED" and failed["ErrorMessage"] == "exiting on purpose"
    assert _wait(client, _start(client, stack, "ok", "after-exit"))["JobRunState"] == "SUCCEEDED"


def test_a_driver_that_dies_fails_its_run_and_a_new_worker_takes_the_next(stack, glue):
    _, client = glue
    crashed = _wait(client, _start(client, stack, "crash", "crash"))
    assert crashed["JobRunState"] == "FAILED"
    assert crashed["ErrorMessage"] == "RuntimeError: the job's driver process exited with code 9"
    assert _wait(client, _start(client, stack, "ok", "after-crash"))["JobRunState"] == "SUCCEEDED"


def test_warm_up_runs_the_script_without_recording_a_job_run(stack, glue, tmp_path):
    engine, client = glue
    sample = tmp_path / "sample.csv"
    sample.write_text("a\n")
    engine.warm_up("prep", {"input_uri": str(sample), "output_uri": f"{tmp_path}/warm-{{n}}/"}, workers=1).join(60)
    assert (tmp_path / "warm-0" / "train" / "part-0.csv").read_text() == "A\n"
    assert client.get_job_runs(JobName="prep")["JobRuns"] == []
    run_id = _start(client, stack, "ok", "after-warm-up")
    assert _wait(client, run_id)["JobRunState"] == "SUCCEEDED"
    assert _pid_of(stack, "after-warm-up") == (tmp_path / "warm-0" / "pid.txt").read_text()


def test_a_run_stages_the_version_it_was_given_not_the_newest(stack, glue):
    """The run recorded v1; v2 landed on the same key before the job started: the job reads v1."""
    _, client = glue
    s3 = boto3.client("s3")
    upload, artifacts = stack.physical_id("UploadBucket"), stack.physical_id("ArtifactBucket")
    v1 = s3.put_object(Bucket=upload, Key="incoming/churn/data.csv", Body=b"first,version\n")["VersionId"]
    s3.put_object(Bucket=upload, Key="incoming/churn/data.csv", Body=b"second,version\n")
    run_id = client.start_job_run(
        JobName="prep",
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/data.csv",
            "--input_version_id": v1,
            "--output_uri": f"s3://{artifacts}/processed/churn/v1/",
        },
    )["JobRunId"]
    run = _wait(client, run_id)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    body = s3.get_object(Bucket=artifacts, Key="processed/churn/v1/train/part-0.csv")["Body"].read()
    assert body == b"FIRST,VERSION\n"

    missing = client.start_job_run(
        JobName="prep",
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/data.csv",
            "--input_version_id": "no-such-version",
            "--output_uri": f"s3://{artifacts}/processed/churn/none/",
        },
    )["JobRunId"]
    run = _wait(client, missing)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"].startswith(
        f"GlueEngineError: s3://{upload}/incoming/churn/data.csv: version no-such-version cannot be read: "
    )
