"""The local Glue engine: real script runs, s3:// staging, states and error messages."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from stepml.local.glue import JOB_RUNS, GlueEngine, IdleWorkers, error_message_from_log
from stepml.local.provision import package_artifact
from tests.helpers import logs_key_policy

SCRIPT = textwrap.dedent(
    """
    import argparse, pathlib, sys
    parser = argparse.ArgumentParser()
    for name in ("--JOB_NAME", "--JOB_RUN_ID", "--input_uri", "--output_uri", "--TempDir", "--mode"):
        parser.add_argument(name)
    parser.add_argument("--input_version_id")
    args = parser.parse_known_args()[0]  # Glue passes its own arguments too
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
def glue(stack, tmp_path, apply_patch):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    engine = GlueEngine(lambda: boto3.client("s3"), tmp_path / "runs")
    engine.register_job("prep", script)
    apply_patch(JOB_RUNS, engine)
    client = boto3.client("glue")
    client.create_job(
        Name="prep",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": package_artifact(boto3.client("s3"), script, "stepml-test")},
        DefaultArguments={"--TempDir": f"s3://{stack.physical_id('ArtifactBucket')}/glue-temp/", "--mode": "ok"},
        ExecutionProperty={"MaxConcurrentRuns": 5},
    )
    yield engine, client
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


def test_a_closed_engines_idle_worker_serves_the_next_engine_with_that_engines_endpoint(tmp_path):
    """Tests start a cloud per module: the next cloud's engine reuses the warm driver process, and
    its runs see their own cloud's endpoint, not the one the process was started for."""
    script = tmp_path / "job.py"
    script.write_text(
        "import argparse, os, pathlib\n"
        "parser = argparse.ArgumentParser(); parser.add_argument('--output_uri')\n"
        "out = pathlib.Path(parser.parse_known_args()[0].output_uri); out.mkdir(parents=True)\n"
        "(out / 'seen.txt').write_text(f\"{os.getpid()} {os.environ['AWS_ENDPOINT_URL']}\")\n"
    )
    idle = IdleWorkers()
    seen = []
    try:
        for name in ("first", "second"):
            engine = GlueEngine(
                lambda: None,
                tmp_path / name,
                environment={"AWS_ENDPOINT_URL": f"http://{name}.invalid"},
                idle_workers=idle,
            )
            engine.register_job("prep", script)
            engine.warm_up("prep", {"output_uri": f"{tmp_path}/{name}-{{n}}/"}, workers=1).join(60)
            engine.close()
            seen.append((tmp_path / f"{name}-0" / "seen.txt").read_text().split())
    finally:
        idle.close()
    (first_pid, first_url), (second_pid, second_url) = seen
    assert second_pid == first_pid, "the second engine reused the first one's worker"
    assert (first_url, second_url) == ("http://first.invalid", "http://second.invalid")
    assert idle.take() is None, "closing the pool stopped the worker"


# ----------------------------------------------------------------------------- as Glue runs it: script, logs, metrics


def log_messages(group: str, stream: str) -> list[str]:
    events = boto3.client("logs").get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    return [event["message"] for event in events["events"]]


def _job(client, engine, script, name: str, **options) -> None:
    engine.register_job(name, script)
    client.create_job(
        Name=name,
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": package_artifact(boto3.client("s3"), script, "stepml-test")},
        ExecutionProperty={"MaxConcurrentRuns": 5},
        **options,
    )


def test_a_run_reads_its_script_from_the_jobs_script_location_in_s3(stack, glue, tmp_path):
    _, client = glue
    s3 = boto3.client("s3")
    location = client.get_job(JobName="prep")["Job"]["Command"]["ScriptLocation"]
    bucket, key = location.removeprefix("s3://").split("/", 1)
    assert bucket == "aws-sam-cli-managed-default-samclisourcebucket-local" and key.startswith("stepml-test/")
    # What S3 holds is what runs, not the file registered for warm-up.
    s3.put_object(Bucket=bucket, Key=key, Body=SCRIPT.replace("text.upper()", "'from s3: ' + text"))
    run_id = _start(client, stack, "ok", "from-s3")
    assert _wait(client, run_id)["JobRunState"] == "SUCCEEDED"
    part = s3.get_object(Bucket=stack.physical_id("ArtifactBucket"), Key="from-s3/train/part-0.csv")["Body"].read()
    assert part == b"from s3: a\n"

    s3.delete_object(Bucket=bucket, Key=key)
    missing = _wait(client, _start(client, stack, "ok", "no-script"))
    assert missing["JobRunState"] == "FAILED"
    assert missing["ErrorMessage"] == (
        "Error downloading script: fatal error: An error occurred (404) when calling the GetObject operation: "
        "The specified key does not exist."
    )


def test_a_script_location_that_is_not_in_s3_fails_the_run(stack, glue, tmp_path):
    engine, client = glue
    script = tmp_path / "local.py"
    script.write_text(SCRIPT)
    engine.register_job("local-path", script)
    client.create_job(
        Name="local-path",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": str(script)},
    )
    run_id = client.start_job_run(JobName="local-path")["JobRunId"]
    run = client.get_job_run(JobName="local-path", RunId=run_id)["JobRun"]
    deadline = time.monotonic() + 30
    while run["JobRunState"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
        run = client.get_job_run(JobName="local-path", RunId=run_id)["JobRun"]
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"] == (
        f"Error downloading script: ScriptLocation {str(script)!r} is not an Amazon S3 path (s3://bucket/key)"
    )


def _run_job(client, stack, name: str, output: str, mode: str = "ok") -> tuple[str, dict]:
    upload = stack.physical_id("UploadBucket")
    boto3.client("s3").put_object(Bucket=upload, Key="incoming/churn/in.csv", Body=b"a,b\n1,2\n")
    run_id = client.start_job_run(
        JobName=name,
        Arguments={
            "--input_uri": f"s3://{upload}/incoming/churn/in.csv",
            "--output_uri": f"s3://{stack.physical_id('ArtifactBucket')}/{output}/",
            "--mode": mode,
        },
    )["JobRunId"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = client.get_job_run(JobName=name, RunId=run_id)["JobRun"]
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            return run_id, run
        time.sleep(0.1)
    raise AssertionError("job run did not finish")


def test_glue_5_writes_the_scripts_output_and_its_own_messages_to_cloudwatch_logs(stack, glue, tmp_path):
    engine, client = glue
    script = tmp_path / "job5.py"
    script.write_text(SCRIPT.replace("text = pathlib", "print('hello from the driver')\ntext = pathlib"))
    _job(
        client,
        engine,
        script,
        "prep5",
        GlueVersion="5.0",
        DefaultArguments={"--enable-continuous-cloudwatch-log": "true"},
    )
    run_id, run = _run_job(client, stack, "prep5", "logs5")
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")

    assert "hello from the driver" in log_messages("/aws-glue/jobs/output", run_id)
    system = log_messages("/aws-glue/jobs/error", run_id)
    assert any(f"Job run {run_id} of job prep5 started" in line for line in system)
    assert system[-1].endswith("INFO GlueJobRunner: Job run ended: SUCCEEDED")
    groups = {g["logGroupName"] for g in boto3.client("logs").describe_log_groups()["logGroups"]}
    assert "/aws-glue/jobs/logs-v2" not in groups, "Glue 5.0 has no continuous-logging group"

    failed_id, failed = _run_job(client, stack, "prep5", "logs5-failed", mode="fail")
    assert failed["JobRunState"] == "FAILED"
    errors = log_messages("/aws-glue/jobs/error", failed_id)
    assert any(" ERROR GlueJobRunner: PreprocessError: " in line for line in errors)
    assert any("PreprocessError" in line for line in log_messages("/aws-glue/jobs/output", failed_id))


def test_a_security_configuration_that_encrypts_logs_gives_the_job_its_own_encrypted_groups(stack, glue, tmp_path):
    engine, client = glue
    key = boto3.client("kms").create_key(Policy=json.dumps(logs_key_policy()))["KeyMetadata"]["Arn"]
    client.create_security_configuration(
        Name="prep-secure",
        EncryptionConfiguration={"CloudWatchEncryption": {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": key}},
    )
    script = tmp_path / "secure.py"
    script.write_text(SCRIPT.replace("text = pathlib", "print('encrypted line')\ntext = pathlib"))
    _job(client, engine, script, "secure", GlueVersion="5.0", SecurityConfiguration="prep-secure")
    run_id, run = _run_job(client, stack, "secure", "secure")
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")

    root = "/aws-glue/jobs/prep-secure-role/glue"  # the configuration, then the job role's name
    assert "encrypted line" in log_messages(f"{root}/output", run_id)
    groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/aws-glue/jobs")["logGroups"]
    assert {(g["logGroupName"], g.get("kmsKeyId")) for g in groups} == {(f"{root}/output", key), (f"{root}/error", key)}


def test_glue_4_continuous_logging_streams_the_driver_log_to_logs_v2(stack, glue, tmp_path):
    engine, client = glue
    script = tmp_path / "job4.py"
    script.write_text(SCRIPT.replace("text = pathlib", "print('driver line')\ntext = pathlib"))
    _job(
        client,
        engine,
        script,
        "prep4",
        GlueVersion="4.0",
        DefaultArguments={"--enable-continuous-cloudwatch-log": "true", "--continuous-log-logStreamPrefix": "prep-"},
    )
    run_id, run = _run_job(client, stack, "prep4", "logs4")
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert "driver line" in log_messages("/aws-glue/jobs/logs-v2", f"prep-{run_id}")
    assert "driver line" in log_messages("/aws-glue/jobs/output", run_id)


def test_enable_metrics_publishes_the_runs_glue_metrics(stack, glue, tmp_path):
    engine, client = glue
    script = tmp_path / "metrics.py"
    script.write_text(SCRIPT)
    _job(client, engine, script, "measured", GlueVersion="5.0", DefaultArguments={"--enable-metrics": "true"})
    run_id, run = _run_job(client, stack, "measured", "metrics")
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")

    cloudwatch = boto3.client("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace="Glue")["Metrics"]
    published = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    for run_dimension in (run_id, "ALL"):
        job = (("JobName", "measured"), ("JobRunId", run_dimension))
        assert ("glue.driver.aggregate.elapsedTime", (*job, ("Type", "count"))) in published
        assert ("glue.ALL.s3.filesystem.read_bytes", (*job, ("Type", "gauge"))) in published
        assert ("glue.ALL.s3.filesystem.write_bytes", (*job, ("Type", "gauge"))) in published
    written = sum(
        item["Size"]
        for item in boto3.client("s3").list_objects_v2(Bucket=stack.physical_id("ArtifactBucket"), Prefix="metrics/")[
            "Contents"
        ]
    )
    statistics = cloudwatch.get_metric_statistics(
        Namespace="Glue",
        MetricName="glue.ALL.s3.filesystem.write_bytes",
        Dimensions=[
            {"Name": "JobName", "Value": "measured"},
            {"Name": "JobRunId", "Value": run_id},
            {"Name": "Type", "Value": "gauge"},
        ],
        StartTime=run["StartedOn"] - timedelta(minutes=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [point["Sum"] for point in statistics] == [float(written)]
    # The default job (no --enable-metrics) publishes nothing.
    _run_job(client, stack, "prep", "quiet")
    assert not [
        m
        for m in cloudwatch.list_metrics(Namespace="Glue")["Metrics"]
        if ("JobName", "prep") in {(d["Name"], d["Value"]) for d in m["Dimensions"]}
    ]


OVERWRITE = """
if args.mode == "overwrite":
    import shutil
    shutil.rmtree(out / "train", ignore_errors=True)
"""


def test_what_an_overwrite_replaced_is_deleted_from_s3_and_nothing_else(stack, glue, tmp_path):
    engine, client = glue
    script = tmp_path / "overwrite.py"
    # Spark's mode("overwrite") deletes the path's contents before it writes the path.
    marker = "out = pathlib.Path(args.output_uri)\n"
    script.write_text(SCRIPT.replace(marker, marker + textwrap.dedent(OVERWRITE)))
    _job(client, engine, script, "rewrite")
    s3 = boto3.client("s3")
    artifacts = stack.physical_id("ArtifactBucket")
    for key in ("again/train/part-old.csv", "again/keep.json"):
        s3.put_object(Bucket=artifacts, Key=key, Body=b"stale")

    _, appended = _run_job(client, stack, "rewrite", "again", mode="ok")
    assert appended["JobRunState"] == "SUCCEEDED", appended.get("ErrorMessage")
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=artifacts, Prefix="again/")["Contents"]}
    assert {"again/train/part-old.csv", "again/train/part-0.csv", "again/keep.json"} <= listed

    _, replaced = _run_job(client, stack, "rewrite", "again", mode="overwrite")
    assert replaced["JobRunState"] == "SUCCEEDED", replaced.get("ErrorMessage")
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=artifacts, Prefix="again/")["Contents"]}
    assert "again/train/part-old.csv" not in listed, "the overwrite replaced train/"
    assert {"again/train/part-0.csv", "again/keep.json", "again/manifest.json"} <= listed


def _gated_run(gated_moto, tmp_path, role_name: str, output_resource: str, script_text: str = SCRIPT):
    """One run of a job whose role may read its script, list the bucket and read/write/delete
    ``output_resource``, under the IAM gate; (run, run id, role ARN, script location)."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="glue-gated")
    s3.put_object(Bucket="glue-gated", Key="incoming/in.csv", Body=b"a\n")
    script = tmp_path / "job.py"
    script.write_text(script_text)
    location = package_artifact(s3, script, "stepml-test")
    role = gated_moto.role(
        role_name,
        "glue.amazonaws.com",
        [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::aws-sam-cli-managed-default-*/*"},
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": output_resource,
            },
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::glue-gated"},
        ],
    )
    engine = GlueEngine(
        lambda **credentials: gated_moto.client("s3", **credentials),
        tmp_path / "runs",
        principals=gated_moto.authorizer.principals,
        client_factory=gated_moto.client,
    )
    engine.register_job("gated", script)
    undo = JOB_RUNS.apply(engine)
    try:
        glue = gated_moto.client("glue")
        glue.create_job(
            Name="gated", Role=role, GlueVersion="5.0", Command={"Name": "glueetl", "ScriptLocation": location}
        )
        run_id = glue.start_job_run(
            JobName="gated",
            Arguments={"--input_uri": "s3://glue-gated/incoming/in.csv", "--output_uri": "s3://glue-gated/out/"},
        )["JobRunId"]
        return engine.wait(run_id, timeout=60), run_id, role, location
    finally:
        undo()
        engine.close()


def test_a_role_that_may_not_write_logs_loses_them_and_the_run_goes_on(gated_moto, tmp_path):
    """Under the IAM gate: the run acts as the job role, whose denied log calls are recorded."""
    script = SCRIPT.replace("text = pathlib", "print('a line for the output group')\ntext = pathlib")
    run, run_id, role, location = _gated_run(
        gated_moto, tmp_path, "glue-without-logs", "arn:aws:s3:::glue-gated/*", script
    )

    assert run.state == "SUCCEEDED", run.error_message
    s3 = gated_moto.client("s3")
    assert s3.get_object(Bucket="glue-gated", Key="out/train/part-0.csv")["Body"].read() == b"A\n"
    assert gated_moto.client("logs").describe_log_groups(logGroupNamePrefix="/aws-glue")["logGroups"] == []
    denied = [r for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    assert {(r.role_arn, r.action) for r in denied} == {(role, "logs:CreateLogStream")}
    assert {r.resource for r in denied} == {
        f"arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/jobs/{kind}:log-stream:{run_id}"
        for kind in ("output", "error")
    }
    checked = {(r.action, r.resource) for r in gated_moto.authorizer.recorder.snapshot() if r.allowed}
    assert ("s3:GetObject", f"arn:aws:s3:::{location.removeprefix('s3://')}") in checked, "the script, as the role"


def test_a_role_that_may_not_read_the_input_fails_the_run_naming_the_denial(gated_moto, tmp_path):
    """Under the IAM gate: the run reads its input as the job role; without the right it FAILS with
    S3's AccessDenied for that object, and writes nothing."""
    run, _, role, _ = _gated_run(gated_moto, tmp_path, "glue-without-input", "arn:aws:s3:::glue-gated/out/*")

    assert run.state == "FAILED"
    assert run.error_message == (
        "GlueEngineError: s3://glue-gated/incoming/in.csv cannot be read: AccessDenied: 403 Forbidden: "
        "the job role may not read it (s3:GetObject)"
    )
    denied = [r for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    assert ("s3:GetObject", "arn:aws:s3:::glue-gated/incoming/in.csv") in {(r.action, r.resource) for r in denied}
    assert {r.role_arn for r in denied} == {role}
    assert "Contents" not in gated_moto.client("s3").list_objects_v2(Bucket="glue-gated", Prefix="out/")


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
