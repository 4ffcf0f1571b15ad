"""The local SageMaker engine behind moto: real XGBoost training, script mode, model servers, capture."""

from __future__ import annotations

import io
import json
import re
import socket
import tarfile
import textwrap
import threading
import time
from datetime import datetime, timedelta

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from scipy.stats import rankdata

from stepml.config import parse_dataset_config
from stepml.lineage import artifact_paths, resource_names
from stepml.local.sagemaker import (
    LocalSageMaker,
    SageMakerValidationError,
    parse_xgboost_hyperparameters,
    validate_request,
)
from stepml.local.sagemaker.adapter import PATCHES
from stepml.local.stepfunctions.sagemaker_integration import error_name
from tests.helpers import CHURN_CONFIG, REPO_ROOT
from tests.unit.sagemaker_helpers import (
    ACCOUNT,
    CONTAINER_STATEMENTS,
    FEATURES,
    REGION,
    ROLE,
    XGBOOST_IMAGE,
    XGBOOST_REPOSITORY,
    capture_records,
    deploy,
    endpoint_config,
    expected_csv,
    make_rows,
    model_tarball,
    to_csv,
    wait_for,
)

CUSTOM_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/my-trainer:latest"


# ----------------------------------------------------------------------------- helpers
# The fixtures (s3_stack, make_engine, engine, bucket, s3, sagemaker, runtime) are in
# tests/unit/conftest.py, the helpers shared with the engine's other test modules in sagemaker_helpers.py.


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = rankdata(scores)  # ties share their average rank, as in xgboost's AUC
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def training_request(name: str, bucket: str, prefix: str, hyperparameters: dict, **overrides) -> dict:
    """A CreateTrainingJob request shaped like the state machine's Train step."""
    request = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/{prefix}/{channel}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in ("train", "validation")
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models/test/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "EnableNetworkIsolation": True,
    }
    request.update(overrides)
    return request


BINARY_HYPERPARAMETERS = {
    "num_round": "10",
    "max_depth": "3",
    "eta": "0.3",
    "objective": "binary:logistic",
    "eval_metric": "auc",
}


def put_training_data(s3, bucket: str, prefix: str, train_rows: int = 300, validation_rows: int = 100) -> tuple:
    train_x, train_y = make_rows(1, train_rows)
    validation_x, validation_y = make_rows(2, validation_rows)
    half = train_rows // 2
    # Two part files, an empty part and a _SUCCESS marker, as Spark writes them.
    s3.put_object(Bucket=bucket, Key=f"{prefix}/train/part-00000.csv", Body=to_csv(train_x[:half], train_y[:half]))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/train/part-00001.csv", Body=to_csv(train_x[half:], train_y[half:]))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/train/part-00002.csv", Body=b"")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/train/_SUCCESS", Body=b"")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/validation/part-00000.csv", Body=to_csv(validation_x, validation_y))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/validation/_SUCCESS", Body=b"")
    return validation_x, validation_y


def wait_for_training(sagemaker, name: str, timeout: float = 30.0) -> dict:
    return wait_for(
        lambda: sagemaker.describe_training_job(TrainingJobName=name),
        lambda d: d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout,
    )


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# ----------------------------------------------------------------------------- training: built-in XGBoost


def test_builtin_xgboost_trains_on_s3_csv_and_writes_the_containers_model(engine, sagemaker, s3, bucket):
    validation_x, validation_y = put_training_data(s3, bucket, "processed/test/run1")

    created = sagemaker.create_training_job(
        **training_request("stepml-test-a1", bucket, "processed/test/run1", BINARY_HYPERPARAMETERS)
    )
    assert created["TrainingJobArn"].endswith(":training-job/stepml-test-a1")
    job = wait_for_training(sagemaker, "stepml-test-a1")

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["SecondaryStatus"] == "Completed"
    transitions = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert transitions == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{bucket}/models/test/stepml-test-a1/output/model.tar.gz"

    key = artifact.removeprefix(f"s3://{bucket}/")
    assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        assert tar.getnames() == ["xgboost-model"]
        model_bytes = tar.extractfile("xgboost-model").read()
    assert model_bytes.startswith(b"binf"), "the 1.7-1 container writes xgboost's binary format"
    booster = xgb.Booster()
    booster.load_model(bytearray(model_bytes))
    assert booster.num_boosted_rounds() == 10
    assert booster.num_features() == FEATURES

    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(metrics) == {"train:auc", "validation:auc"}
    # The reported validation AUC is the model's AUC on the validation channel.
    predictions = booster.predict(xgb.DMatrix(np.round(validation_x, 6).astype(np.float32)))
    assert metrics["validation:auc"] == pytest.approx(auc(validation_y, predictions), abs=1e-3)
    assert metrics["validation:auc"] > 0.85


def log_messages(group: str, stream: str) -> list[str]:
    events = boto3.client("logs", region_name=REGION).get_log_events(
        logGroupName=group, logStreamName=stream, startFromHead=True
    )
    return [event["message"] for event in events["events"]]


def log_streams(group: str) -> list[str]:
    answer = boto3.client("logs", region_name=REGION).describe_log_streams(logGroupName=group)
    return [stream["logStreamName"] for stream in answer["logStreams"]]


def test_a_training_job_writes_its_log_and_final_metrics_to_cloudwatch(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/telemetry")
    sagemaker.create_training_job(
        **training_request("stepml-test-logs", bucket, "processed/test/telemetry", BINARY_HYPERPARAMETERS)
    )
    job = wait_for_training(sagemaker, "stepml-test-logs")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    stream = f"stepml-test-logs/algo-1-{int(job['TrainingStartTime'].timestamp())}"
    assert log_streams("/aws/sagemaker/TrainingJobs") == [stream]
    messages = log_messages("/aws/sagemaker/TrainingJobs", stream)
    rounds = [m for m in messages if re.match(r"\[\d+\]#011", m)]
    assert len(rounds) == 10 and rounds[0].startswith("[0]#011train-auc:")
    final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    # The last round's line is what the built-in algorithm's metric regex reads.
    found = re.search(r"#011validation-auc:([-+]?[0-9]*\.?[0-9]+)", rounds[-1])
    assert found and float(found.group(1)) == pytest.approx(final["validation:auc"], abs=1e-5)
    assert messages[-1] == "Training job stepml-test-logs completed"

    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    listed = cloudwatch.list_metrics(Namespace="/aws/sagemaker/TrainingJobs")["Metrics"]
    assert {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in listed} == {
        (name, (("Host", "stepml-test-logs/algo-1"),)) for name in ("train:auc", "validation:auc")
    }
    points = cloudwatch.get_metric_statistics(
        Namespace="/aws/sagemaker/TrainingJobs",
        MetricName="validation:auc",
        Dimensions=[{"Name": "Host", "Value": "stepml-test-logs/algo-1"}],
        StartTime=job["TrainingStartTime"] - timedelta(minutes=1),
        EndTime=job["TrainingEndTime"] + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in points] == [pytest.approx(final["validation:auc"])]


BAD_INPUTS = {
    "non-numeric": r"Non-numeric value 'abc' in channel train, file part-00001\.csv, line 7, column 3",
    "empty-validation": r"No data in validation channel path .*/validation",
    "unknown-hyperparameter": r"Extraneous hyperparameter found: max_dept\b",
    "missing-prefix": r"no S3 objects found under S3 URL \"s3://.*/nothing-here/validation/\"",
    "bad-label": r"XGB train call failed with exception:\n label must be in \[0,1\] for logistic regression$",
}


def test_bad_training_input_fails_each_job_with_a_reason_that_names_it(engine, sagemaker, s3, bucket):
    for case in BAD_INPUTS:  # all at once: jobs run concurrently, each on its own data
        prefix = f"processed/test/{case}"
        put_training_data(s3, bucket, prefix)
        hyperparameters = dict(BINARY_HYPERPARAMETERS)
        request = training_request(f"stepml-bad-{case}", bucket, prefix, hyperparameters)
        if case == "non-numeric":
            key = f"{prefix}/train/part-00001.csv"
            lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().split("\n")
            cells = lines[6].split(",")
            cells[2] = "abc"
            lines[6] = ",".join(cells)
            s3.put_object(Bucket=bucket, Key=key, Body="\n".join(lines))
        elif case == "empty-validation":
            s3.delete_object(Bucket=bucket, Key=f"{prefix}/validation/part-00000.csv")
        elif case == "unknown-hyperparameter":
            hyperparameters["max_dept"] = hyperparameters.pop("max_depth")
        elif case == "bad-label":
            s3.put_object(Bucket=bucket, Key=f"{prefix}/train/part-00002.csv", Body="2,0.1,0.2,0.3,0.4\n")
        elif case == "missing-prefix":
            source = request["InputDataConfig"][1]["DataSource"]["S3DataSource"]
            source["S3Uri"] = f"s3://{bucket}/nothing-here/validation/"
        sagemaker.create_training_job(**request)

    for case, expected in BAD_INPUTS.items():
        job = wait_for_training(sagemaker, f"stepml-bad-{case}")
        assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Failed", "Failed"), case
        assert job["FailureReason"].startswith("ClientError: "), job["FailureReason"]
        assert re.search(expected, job["FailureReason"]), job["FailureReason"]
        assert "TrainingEndTime" in job
    assert s3.list_objects_v2(Bucket=bucket, Prefix="models/test/")["KeyCount"] == 0


def test_max_runtime_stops_a_job_that_runs_too_long(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/long", train_rows=2000)
    hyperparameters = {**BINARY_HYPERPARAMETERS, "num_round": "1000000", "max_depth": "6"}
    request = training_request(
        "stepml-test-long", bucket, "processed/test/long", hyperparameters, StoppingCondition={"MaxRuntimeInSeconds": 1}
    )

    started = time.monotonic()
    sagemaker.create_training_job(**request)
    assert time.monotonic() - started < 1, "CreateTrainingJob must return before training ends"
    assert sagemaker.describe_training_job(TrainingJobName="stepml-test-long")["TrainingJobStatus"] == "InProgress"
    job = wait_for_training(sagemaker, "stepml-test-long", timeout=15)

    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    runtime_seconds = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
    assert 1 <= runtime_seconds < 5


def test_stop_training_job_stops_a_running_job(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/stop", train_rows=2000)
    hyperparameters = {**BINARY_HYPERPARAMETERS, "num_round": "1000000"}
    sagemaker.create_training_job(
        **training_request("stepml-test-stop", bucket, "processed/test/stop", hyperparameters)
    )

    sagemaker.stop_training_job(TrainingJobName="stepml-test-stop")
    job = wait_for_training(sagemaker, "stepml-test-stop", timeout=15)

    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert "Stopping" in [t["Status"] for t in job["SecondaryStatusTransitions"]]
    with pytest.raises(ClientError) as error:
        sagemaker.stop_training_job(TrainingJobName="stepml-test-stop")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "in status Stopped" in error.value.response["Error"]["Message"]


def test_requests_are_checked_against_the_sagemaker_service_model(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/v")
    request = training_request("stepml-test-v", bucket, "processed/test/v", {**BINARY_HYPERPARAMETERS, "num_round": 10})
    with pytest.raises(ClientError) as error:
        sagemaker.create_training_job(**request)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "HyperParameters.num_round" in error.value.response["Error"]["Message"]

    request = training_request("stepml-test-v", bucket, "processed/test/v", BINARY_HYPERPARAMETERS)
    request["ResourceConfig"]["InstanceType"] = "ml.m5.hugee"
    with pytest.raises(ClientError) as error:
        sagemaker.create_training_job(**request)
    assert "'ml.m5.hugee' at 'resourceConfig.instanceType'" in error.value.response["Error"]["Message"]
    assert "enum value set" in error.value.response["Error"]["Message"]

    sagemaker.create_training_job(
        **training_request("stepml-test-v", bucket, "processed/test/v", BINARY_HYPERPARAMETERS)
    )
    with pytest.raises(ClientError) as error:
        sagemaker.create_training_job(
            **training_request("stepml-test-v", bucket, "processed/test/v", BINARY_HYPERPARAMETERS)
        )
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    assert wait_for_training(sagemaker, "stepml-test-v")["TrainingJobStatus"] == "Completed"


def test_request_validation_names_missing_members_and_bad_names():
    with pytest.raises(SageMakerValidationError, match=r"Missing required parameter in input: \"EndpointConfigName\""):
        validate_request("CreateEndpoint", {"EndpointName": "e"})
    with pytest.raises(SageMakerValidationError, match=r"'invalid name!' at 'endpointName'.*regular expression"):
        validate_request("CreateEndpoint", {"EndpointName": "invalid name!", "EndpointConfigName": "c"})
    validate_request("CreateEndpoint", {"EndpointName": "stepml-churn-3f2a9c1b7d4e-test-a1", "EndpointConfigName": "c"})


def _resolve(template, state):
    """Fill an ASL Parameters block from ``state`` (plain ``$.a.b`` paths are all SageMaker tasks use)."""
    if isinstance(template, dict):
        resolved = {}
        for key, value in template.items():
            literal = re.fullmatch(r"States\.StringToJson\('([^']*)'\)", value) if key.endswith(".$") else None
            if literal:  # a number the template fills in (the baking period)
                resolved[key[:-2]] = json.loads(literal.group(1))
            elif key.endswith(".$"):
                node = state
                for part in value.removeprefix("$.").split("."):
                    node = node[part]
                resolved[key[:-2]] = node
            else:
                resolved[key] = _resolve(value, state)
        return resolved
    if isinstance(template, list):
        return [_resolve(item, state) for item in template]
    return template


def test_the_state_machines_sagemaker_requests_pass_the_service_model():
    substitutions = {
        "SageMakerRoleArn": ROLE,
        "TrainingImage": XGBOOST_IMAGE,
        "ProductionEndpointName": "stepml-prod",
        "ModelMonitorRoleArn": "arn:aws:iam::123456789012:role/stepml-model-monitor",
        "MonitoringOutputUri": "s3://stepml-artifacts/monitoring",
        "DeploymentBakingSeconds": "600",
    }
    text = re.sub(
        r"\$\{(\w+)\}",
        lambda m: substitutions.get(m.group(1), f"stepml-{m.group(1)}"),
        (REPO_ROOT / "statemachine/pipeline.asl.json").read_text(),
    )
    dataset = parse_dataset_config(CHURN_CONFIG, "examples/datasets/churn.json")
    config = dataset.model_dump(mode="json")
    config["training"]["instance_type"] = "ml.m5.xlarge"
    config["hosting"]["instance_type"] = "ml.m5.large"
    config["hosting"]["test_endpoint_serverless"] = {"memory_mb": 2048, "max_concurrency": 5}
    run_id = "churn-3f2a9c1b7d4e"
    run = {
        "run_id": run_id,
        "dataset": "churn",
        "config": config,
        "hyperparameters": dataset.training_hyperparameters(),
        "names": resource_names(run_id, 1, "stepml-prod"),
        "paths": artifact_paths("stepml-artifacts", "churn", run_id),
    }
    state = {
        "run": run,
        "steps": {"train": {"model_data": f"s3://stepml-artifacts/models/churn/{run_id}/m.tar.gz"}},
        "failure": dict(run["names"]),  # the failure path cleans up by the run's names
        # what production serves, served again by the test endpoint's champion variant
        "champion": {
            "in_service": True,
            "endpoint": "stepml-prod",
            "endpoint_config": "stepml-churn-00aa11bb22cc-prod-a1",
            "model": "stepml-churn-00aa11bb22cc-a1",
        },
    }

    checked = []
    for definition in json.loads(text)["States"].values():
        resource = definition.get("Resource", "")
        match = re.fullmatch(r"arn:aws:states:::(?:aws-sdk:)?sagemaker:(\w+?)(?:\.sync)?", resource)
        if not match:
            continue
        operation = match.group(1)[0].upper() + match.group(1)[1:]
        validate_request(operation, _resolve(definition.get("Parameters", {}), state))
        checked.append(operation)
        if operation == "CreateTrainingJob":
            parse_xgboost_hyperparameters(_resolve(definition["Parameters"], state)["HyperParameters"])

    assert {"CreateTrainingJob", "CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint"} <= set(
        checked
    )


def test_hyperparameters_are_typed_as_the_container_types_them():
    config = parse_xgboost_hyperparameters(
        {
            "num_round": "25",
            "max_depth": "4",
            "learning_rate": "0.2",
            "objective": "multi:softprob",
            "num_class": "3",
            "eval_metric": "mlogloss,merror",
            "early_stopping_rounds": "5",
        }
    )
    assert config.num_round == 25 and config.early_stopping_rounds == 5
    assert config.params == {
        "max_depth": 4,
        "eta": 0.2,
        "objective": "multi:softprob",
        "num_class": 3,
        "eval_metric": ["mlogloss", "merror"],
    }
    with pytest.raises(ValueError, match="Missing required hyperparameter: num_round"):
        parse_xgboost_hyperparameters({"max_depth": "3"})
    with pytest.raises(ValueError, match=r"Hyperparameter subsample: 1.5 is not in \(0, 1\]"):
        parse_xgboost_hyperparameters({"num_round": "3", "subsample": "1.5"})
    with pytest.raises(ValueError, match="Require input for parameter 'num_class'"):
        parse_xgboost_hyperparameters({"num_round": "3", "objective": "multi:softmax"})
    with pytest.raises(ValueError, match="Metric 'auc' can only be applied for classification"):
        parse_xgboost_hyperparameters({"num_round": "3", "objective": "reg:squarederror", "eval_metric": "auc"})


# ----------------------------------------------------------------------------- training: script mode

SCRIPT = textwrap.dedent(
    """
    import argparse, json, os, sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int)
    parser.add_argument("--tag")
    args = parser.parse_args()
    if args.tag == "explode":
        print("about to fail", flush=True)
        sys.stderr.write("Traceback (most recent call last):\\nValueError: the tag asked for a failure\\n")
        sys.exit(3)
    train_dir = os.environ["SM_CHANNEL_TRAIN"]
    rows = sum(len(open(os.path.join(train_dir, f)).read().splitlines()) for f in os.listdir(train_dir))
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as out:
        json.dump({
            "depth": args.depth,
            "hps": json.loads(os.environ["SM_HPS"]),
            "hp_depth": os.environ["SM_HP_DEPTH"],
            "rows": rows,
            "hosts": json.loads(os.environ["SM_HOSTS"]),
            "current_host": os.environ["SM_CURRENT_HOST"],
            "channels": json.loads(os.environ["SM_CHANNELS"]),
            "cwd_has_helper": os.path.exists("helper.py"),
            "num_cpus": int(os.environ["SM_NUM_CPUS"]),
        }, out)
    os.makedirs(os.environ["SM_OUTPUT_DATA_DIR"], exist_ok=True)
    open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w").write("done")
    print(f"validation-accuracy={0.5 + rows / 1000}")
    """
)


def put_source_dir(s3, bucket: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in {"train.py": SCRIPT, "helper.py": "VALUE = 1\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    return f"s3://{bucket}/code/sourcedir.tar.gz"


def script_request(name: str, bucket: str, source: str, tag: str) -> dict:
    # The SDK JSON-encodes every hyperparameter value.
    hyperparameters = {
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(source),
        "depth": json.dumps(4),
        "tag": json.dumps(tag),
    }
    return training_request(
        name,
        bucket,
        "processed/test/script",
        hyperparameters,
        AlgorithmSpecification={
            "TrainingImage": CUSTOM_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": r"validation-accuracy=([0-9.]+)"}],
        },
    )


def test_script_mode_runs_the_entry_point_with_the_sm_contract(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/script")
    source = put_source_dir(s3, bucket)

    sagemaker.create_training_job(**script_request("stepml-script-ok", bucket, source, "fine"))
    job = wait_for_training(sagemaker, "stepml-script-ok")

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{bucket}/")
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        assert tar.getnames() == ["model.json"]
        model = json.loads(tar.extractfile("model.json").read())
    assert model == {
        "depth": 4,
        "hps": {"depth": 4, "tag": "fine"},
        "hp_depth": "4",
        "rows": 300,
        "hosts": ["algo-1"],
        "current_host": "algo-1",
        "channels": ["train", "validation"],
        "cwd_has_helper": True,
        "num_cpus": model["num_cpus"],
    }
    assert model["num_cpus"] >= 1
    output_key = key.replace("model.tar.gz", "output.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=output_key)["Body"].read())) as tar:
        assert tar.extractfile("report.txt").read() == b"done"
    assert job["FinalMetricDataList"][0]["MetricName"] == "validation:accuracy"
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.8)
    (stream,) = log_streams("/aws/sagemaker/TrainingJobs")
    assert "validation-accuracy=0.8" in log_messages("/aws/sagemaker/TrainingJobs", stream)


def test_a_failing_script_fails_the_job_with_the_tail_of_stderr(engine, sagemaker, s3, bucket):
    put_training_data(s3, bucket, "processed/test/script")
    source = put_source_dir(s3, bucket)

    sagemaker.create_training_job(**script_request("stepml-script-bad", bucket, source, "explode"))
    job = wait_for_training(sagemaker, "stepml-script-bad")

    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError")
    assert "ExitCode 3" in reason
    assert "ValueError: the tag asked for a failure" in reason
    assert "about to fail" not in reason, "stdout is not the error message"
    (stream,) = log_streams("/aws/sagemaker/TrainingJobs")
    messages = log_messages("/aws/sagemaker/TrainingJobs", stream)
    assert "about to fail" in messages and "ValueError: the tag asked for a failure" in messages
    assert messages[-1] == "Training job stepml-script-bad failed"


# ----------------------------------------------------------------------------- hosting


def test_endpoint_serves_the_model_and_writes_capture_files(engine, sagemaker, s3, runtime, bucket):
    features, labels = make_rows(3, 200)
    tarball, booster = model_tarball(features, labels)
    deploy(sagemaker, s3, bucket, "stepml-test-ep", tarball, capture=True)

    sagemaker.create_endpoint(EndpointName="stepml-test-ep", EndpointConfigName="stepml-test-ep")
    # Creating until the model servers answer their first ping, which comes once the model has loaded.
    assert sagemaker.describe_endpoint(EndpointName="stepml-test-ep")["EndpointStatus"] in ("Creating", "InService")
    described = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-test-ep"),
        lambda d: d["EndpointStatus"] != "Creating",
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/data-capture/test/",
    }
    listed = sagemaker.list_endpoints(NameContains="stepml-test-ep")["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [("stepml-test-ep", "InService")]

    rows = features[:5]
    payload = to_csv(rows)
    answer = runtime.invoke_endpoint(
        EndpointName="stepml-test-ep", Body=payload, ContentType="text/csv", Accept="text/csv"
    )
    body = answer["Body"].read().decode()
    assert answer["ContentType"] == "text/csv"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert body == expected_csv(booster, rows)
    probabilities = [float(value) for value in body.split(",")]
    assert len(probabilities) == 5 and all(0 < p < 1 for p in probabilities)
    as_json = runtime.invoke_endpoint(
        EndpointName="stepml-test-ep", Body=payload, ContentType="text/csv", Accept="application/json"
    )
    assert json.loads(as_json["Body"].read()) == pytest.approx(probabilities)

    records = wait_for(lambda: capture_records(s3, bucket, "data-capture/test/"), lambda found: len(found) >= 2)
    for key, _ in records:
        assert re.fullmatch(
            r"data-capture/test/stepml-test-ep/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl",
            key,
        ), key
    key, first = records[0]
    assert first["eventVersion"] == "0"
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": payload,
        "encoding": "CSV",
    }
    assert first["captureData"]["endpointOutput"] == {
        "observedContentType": "text/csv",
        "mode": "OUTPUT",
        "data": body,
        "encoding": "CSV",
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", first["eventMetadata"]["eventId"])
    inference_time = datetime.strptime(first["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert f"/AllTraffic/{inference_time:%Y/%m/%d/%H}/" in key
    assert {r["captureData"]["endpointOutput"]["observedContentType"] for _, r in records} == {
        "text/csv",
        "application/json",
    }


def test_invocation_errors_come_back_as_aws_errors(engine, sagemaker, s3, runtime, bucket):
    features, labels = make_rows(4, 100)
    tarball, _ = model_tarball(features, labels)
    deploy(sagemaker, s3, bucket, "stepml-test-err", tarball)
    sagemaker.create_endpoint(EndpointName="stepml-test-err", EndpointConfigName="stepml-test-err")
    engine.wait_for_endpoint("stepml-test-err", account_id=ACCOUNT, region=REGION)

    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName="stepml-test-err", Body="1.0,abc,3.0,4.0\n", ContentType="text/csv")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error.value.response["OriginalStatusCode"] == 415
    assert "Received client error (415) from primary" in error.value.response["Error"]["Message"]
    assert "'abc' is not a number" in error.value.response["OriginalMessage"]
    # The error names the endpoint instance's log stream, which has the error.
    stream_arn = error.value.response["LogStreamArn"]
    group, stream = stream_arn.split(":log-group:", 1)[1].split(":log-stream:")
    assert group == "/aws/sagemaker/Endpoints/stepml-test-err" and re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", stream)
    assert log_streams(group) == [stream]
    messages = wait_for(lambda: log_messages(group, stream), lambda found: any("answered 415" in m for m in found))
    assert messages[0].startswith("Starting the model server of model stepml-test-err")
    assert "Model loaded: the container answers GET /ping with 200" in messages

    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName="stepml-nowhere", Body="1,2,3,4\n", ContentType="text/csv")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert error.value.response["Error"]["Message"] == f"Endpoint stepml-nowhere of account {ACCOUNT} not found."


def test_an_endpoint_whose_model_cannot_load_fails_with_a_reason(engine, sagemaker, s3, bucket):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"not a gbm"))
    deploy(sagemaker, s3, bucket, "stepml-test-broken", buffer.getvalue())

    sagemaker.create_endpoint(EndpointName="stepml-test-broken", EndpointConfigName="stepml-test-broken")
    described = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-test-broken"),
        lambda d: d["EndpointStatus"] != "Creating",
    )

    assert described["EndpointStatus"] == "Failed"
    assert "did not pass the ping health check" in described["FailureReason"]
    assert "xgboost-model is not an XGBoost model" in described["FailureReason"]


def test_update_endpoint_switches_models_with_no_failed_request(engine, sagemaker, s3, runtime, bucket):
    features, labels = make_rows(5, 200)
    tarball_a, booster_a = model_tarball(features, labels)
    tarball_b, booster_b = model_tarball(features, 1 - labels)
    deploy(sagemaker, s3, bucket, "stepml-blue", tarball_a)
    deploy(sagemaker, s3, bucket, "stepml-green", tarball_b)
    sagemaker.create_endpoint(EndpointName="stepml-prod", EndpointConfigName="stepml-blue")
    blue_url = engine.wait_for_endpoint("stepml-prod", account_id=ACCOUNT, region=REGION).addresses["AllTraffic"]
    probe = features[:3]
    answer_a, answer_b = expected_csv(booster_a, probe), expected_csv(booster_b, probe)
    assert answer_a != answer_b

    results: list[tuple[float, str]] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def hammer():
        for _ in range(5000):  # bounded even if the test fails to stop it
            if stop.is_set():
                return
            issued = time.monotonic()
            try:
                answer = runtime.invoke_endpoint(
                    EndpointName="stepml-prod", Body=to_csv(probe), ContentType="text/csv", Accept="text/csv"
                )
                results.append((issued, answer["Body"].read().decode()))
            except Exception as exc:  # any failure is what this test looks for
                failures.append(exc)

    loops = [threading.Thread(target=hammer, name=f"invoke-loop-{i}") for i in range(2)]
    for loop in loops:
        loop.start()
    try:
        wait_for(lambda: len(results), lambda count: count >= 10)
        sagemaker.update_endpoint(EndpointName="stepml-prod", EndpointConfigName="stepml-green")
        updating = sagemaker.describe_endpoint(EndpointName="stepml-prod")
        assert (updating["EndpointStatus"], updating["EndpointConfigName"]) == ("Updating", "stepml-blue")
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
            sagemaker.update_endpoint(EndpointName="stepml-prod", EndpointConfigName="stepml-green")
        wait_for(
            lambda: sagemaker.describe_endpoint(EndpointName="stepml-prod"),
            lambda d: d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "stepml-green",
        )
        switched = time.monotonic()
        count_at_switch = len(results)
        wait_for(lambda: len(results), lambda count: count >= count_at_switch + 10)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)

    assert failures == []
    assert {body for _, body in results} <= {answer_a, answer_b}
    assert any(body == answer_a for _, body in results), "the blue model served before the switch"
    assert all(body == answer_b for issued, body in results if issued > switched), "only green after the switch"
    wait_for(lambda: refused(blue_url), bool, timeout=10)


def rollback_config(alarms: list[str], baking_seconds: int = 0) -> dict:
    """The state machine's DeploymentConfig: blue/green, all at once, auto-rollback alarms."""
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": baking_seconds},
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": 600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


def put_alarms(*names: str) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )


def blue_and_green(sagemaker, s3, bucket, name: str) -> tuple[str, str, np.ndarray]:
    """An endpoint ``name`` InService on config ``<name>-blue``; ``<name>-green`` ready to update to;
    the answers of both models to the returned probe rows."""
    features, labels = make_rows(8, 120)
    tarball_blue, booster_blue = model_tarball(features, labels)
    tarball_green, booster_green = model_tarball(features, 1 - labels)
    deploy(sagemaker, s3, bucket, f"{name}-blue", tarball_blue)
    deploy(sagemaker, s3, bucket, f"{name}-green", tarball_green)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-blue")
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"], lambda s: s == "InService")
    probe = features[:3]
    return expected_csv(booster_blue, probe), expected_csv(booster_green, probe), probe


def answer_of(runtime, name: str, probe: np.ndarray) -> str:
    answer = runtime.invoke_endpoint(EndpointName=name, Body=to_csv(probe), ContentType="text/csv", Accept="text/csv")
    return answer["Body"].read().decode()


def test_an_alarm_in_alarm_rolls_a_blue_green_update_back(engine, sagemaker, s3, runtime, bucket):
    blue, green, probe = blue_and_green(sagemaker, s3, bucket, "stepml-rb")
    put_alarms("stepml-rb-latency", "stepml-rb-5xx")
    boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
        AlarmName="stepml-rb-5xx", StateValue="ALARM", StateReason="5XX errors on the new fleet"
    )
    config = rollback_config(["stepml-rb-latency", "stepml-rb-5xx"])

    sagemaker.update_endpoint(EndpointName="stepml-rb", EndpointConfigName="stepml-rb-green", DeploymentConfig=config)
    rolled_back = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-rb"), lambda d: d["EndpointStatus"] != "Updating"
    )

    assert (rolled_back["EndpointStatus"], rolled_back["EndpointConfigName"]) == ("InService", "stepml-rb-blue")
    assert rolled_back["FailureReason"] == (
        "Endpoint update rolled back: the auto-rollback alarm(s) stepml-rb-5xx went into ALARM state during the "
        "deployment; all traffic was shifted back to the previous endpoint configuration."
    )
    assert answer_of(runtime, "stepml-rb", probe) == blue

    boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
        AlarmName="stepml-rb-5xx", StateValue="OK", StateReason="recovered"
    )
    sagemaker.update_endpoint(EndpointName="stepml-rb", EndpointConfigName="stepml-rb-green", DeploymentConfig=config)
    updated = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-rb"), lambda d: d["EndpointStatus"] != "Updating"
    )
    assert (updated["EndpointStatus"], updated["EndpointConfigName"]) == ("InService", "stepml-rb-green")
    assert "FailureReason" not in updated
    assert answer_of(runtime, "stepml-rb", probe) == green


def test_the_alarms_are_watched_for_the_whole_baking_period(make_engine, sagemaker, s3, runtime, bucket):
    make_engine(alarm_poll_seconds=0.1)
    blue, green, probe = blue_and_green(sagemaker, s3, bucket, "stepml-bake")
    put_alarms("stepml-bake-5xx")
    config = rollback_config(["stepml-bake-5xx"], baking_seconds=600)

    sagemaker.update_endpoint(
        EndpointName="stepml-bake", EndpointConfigName="stepml-bake-green", DeploymentConfig=config
    )
    # While baking, the new fleet takes all the traffic and the update is not done.
    wait_for(lambda: answer_of(runtime, "stepml-bake", probe), lambda answer: answer == green)
    baking = sagemaker.describe_endpoint(EndpointName="stepml-bake")
    assert (baking["EndpointStatus"], baking["EndpointConfigName"]) == ("Updating", "stepml-bake-blue")

    boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
        AlarmName="stepml-bake-5xx", StateValue="ALARM", StateReason="5XX errors on the new fleet"
    )
    rolled_back = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-bake"), lambda d: d["EndpointStatus"] != "Updating"
    )
    assert (rolled_back["EndpointStatus"], rolled_back["EndpointConfigName"]) == ("InService", "stepml-bake-blue")
    assert "stepml-bake-5xx went into ALARM state" in rolled_back["FailureReason"]
    assert answer_of(runtime, "stepml-bake", probe) == blue


def test_an_alarm_the_execution_role_may_not_read_fails_the_update(gated_moto, tmp_path, sagemaker_engines):
    """Under the IAM gate: SageMaker reads the alarms as the model's execution role."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="stepml-gated")
    role = gated_moto.role(
        "sagemaker-without-alarms",
        "sagemaker.amazonaws.com",
        [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/models/*"},
            *CONTAINER_STATEMENTS,
        ],
    )
    session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    engine = sagemaker_engines(session, endpoint_url=gated_moto.url, work_dir=tmp_path / "sagemaker")
    try:
        sagemaker = gated_moto.client("sagemaker")
        features, labels = make_rows(9, 100)
        for name, rows in (("stepml-gated-blue", labels), ("stepml-gated-green", 1 - labels)):
            tarball, _ = model_tarball(features, rows)
            s3.put_object(Bucket="stepml-gated", Key=f"models/{name}/model.tar.gz", Body=tarball)
            sagemaker.create_model(
                ModelName=name,
                ExecutionRoleArn=role,
                PrimaryContainer={
                    "Image": XGBOOST_IMAGE,
                    "ModelDataUrl": f"s3://stepml-gated/models/{name}/model.tar.gz",
                },
            )
            sagemaker.create_endpoint_config(**endpoint_config(name))
        sagemaker.create_endpoint(EndpointName="stepml-gated", EndpointConfigName="stepml-gated-blue")
        wait_for(
            lambda: sagemaker.describe_endpoint(EndpointName="stepml-gated")["EndpointStatus"],
            lambda s: s == "InService",
        )
        gated_moto.client("cloudwatch").put_metric_alarm(
            AlarmName="stepml-gated-5xx",
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )

        sagemaker.update_endpoint(
            EndpointName="stepml-gated",
            EndpointConfigName="stepml-gated-green",
            DeploymentConfig=rollback_config(["stepml-gated-5xx"]),
        )
        failed = wait_for(
            lambda: sagemaker.describe_endpoint(EndpointName="stepml-gated"),
            lambda d: d["EndpointStatus"] != "Updating",
        )
    finally:
        engine.shutdown()  # before the checks: no engine thread may record more

    assert (failed["EndpointStatus"], failed["EndpointConfigName"]) == ("InService", "stepml-gated-blue")
    alarm = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:stepml-gated-5xx"
    assert failed["FailureReason"].startswith(
        f"Endpoint update failed: the auto-rollback alarms stepml-gated-5xx could not be read with the execution "
        f"role {role}, which needs cloudwatch:DescribeAlarms on them (AccessDenied"
    )
    assert f"not authorized to perform: cloudwatch:DescribeAlarms on resource: {alarm}" in failed["FailureReason"]
    records = gated_moto.authorizer.recorder.snapshot()
    assert [(r.action, r.resource) for r in records if not r.allowed] == [("cloudwatch:DescribeAlarms", alarm)]
    # The endpoint instances' logs, written as the execution role.
    allowed = {r.action for r in records if r.allowed and r.role_arn == role}
    assert {"logs:DescribeLogStreams", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"} <= allowed
    groups = gated_moto.client("logs").describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/")
    assert [g["logGroupName"] for g in groups["logGroups"]] == ["/aws/sagemaker/Endpoints/stepml-gated"]


def test_delete_endpoint_stops_the_server_and_flushes_captured_data(make_engine, sagemaker, s3, runtime, bucket):
    engine = make_engine(capture_flush_seconds=3600)  # only the delete can have written the capture file
    features, labels = make_rows(6, 100)
    tarball, _ = model_tarball(features, labels)
    deploy(sagemaker, s3, bucket, "stepml-test-del", tarball, capture=True)
    sagemaker.create_endpoint(EndpointName="stepml-test-del", EndpointConfigName="stepml-test-del")
    url = engine.wait_for_endpoint("stepml-test-del", account_id=ACCOUNT, region=REGION).addresses["AllTraffic"]
    runtime.invoke_endpoint(EndpointName="stepml-test-del", Body=to_csv(features[:2]), ContentType="text/csv")
    assert s3.list_objects_v2(Bucket=bucket, Prefix="data-capture/test/stepml-test-del/")["KeyCount"] == 0

    sagemaker.delete_endpoint(EndpointName="stepml-test-del")

    assert refused(url)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="data-capture/test/stepml-test-del/")["KeyCount"] == 1
    with pytest.raises(ClientError) as error:
        sagemaker.describe_endpoint(EndpointName="stepml-test-del")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName="stepml-test-del", Body=to_csv(features[:2]), ContentType="text/csv")
    assert error.value.response["Error"]["Code"] == "ValidationError"


def test_after_the_undo_the_patched_moto_answers_as_before(aws_credentials, tmp_path):
    engine = LocalSageMaker(boto3.Session(region_name=REGION), work_dir=tmp_path / "sagemaker")
    undos = [patch.apply(engine) for patch in PATCHES]
    for undo in reversed(undos):
        undo()
    engine.shutdown()
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": XGBOOST_IMAGE})
        sagemaker.create_endpoint_config(
            EndpointConfigName="c",
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large"}],
        )
        sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="c")
        assert sagemaker.describe_endpoint(EndpointName="e")["EndpointStatus"] == "InService"
        answer = boto3.client("sagemaker-runtime", region_name=REGION).invoke_endpoint(EndpointName="e", Body=b"1,2")
        assert answer["Body"].read() == b"body"  # moto's canned answer


def test_the_hooks_work_behind_moto_in_server_mode(aws_credentials, tmp_path, sagemaker_engines):
    """The local cloud runs moto as an HTTP server: raw bodies, headers and errors cross the wire."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    session = boto3.Session(region_name=REGION)
    engine = sagemaker_engines(session, endpoint_url=url, work_dir=tmp_path / "sagemaker")
    try:
        s3 = session.client("s3", endpoint_url=url)
        sagemaker = session.client("sagemaker", endpoint_url=url)
        runtime = session.client("sagemaker-runtime", endpoint_url=url)
        s3.create_bucket(Bucket="stepml-server-mode")
        features, labels = make_rows(7, 100)
        tarball, booster = model_tarball(features, labels)
        deploy(sagemaker, s3, "stepml-server-mode", "stepml-srv", tarball)
        sagemaker.create_endpoint(EndpointName="stepml-srv", EndpointConfigName="stepml-srv")
        wait_for(
            lambda: sagemaker.describe_endpoint(EndpointName="stepml-srv")["EndpointStatus"],
            lambda status: status == "InService",
        )

        answer = runtime.invoke_endpoint(
            EndpointName="stepml-srv", Body=to_csv(features[:4]).encode(), ContentType="text/csv", Accept="text/csv"
        )
        assert answer["Body"].read().decode() == expected_csv(booster, features[:4])
        with pytest.raises(ClientError) as error:
            runtime.invoke_endpoint(EndpointName="stepml-srv", Body=b"\xff\xfe\x00", ContentType="image/png")
        assert error.value.response["Error"]["Code"] == "ModelError"
        assert error.value.response["OriginalStatusCode"] == 415
        assert "Content-type image/png not supported" in error.value.response["OriginalMessage"]
    finally:
        engine.shutdown()
        server.stop()


# ----------------------------------------------------------------------------- faults


def test_training_faults_throttle_create_then_fail_the_job_with_a_reason(engine, bucket, fault_switch):
    # One attempt per call, as the state machine's client makes (the SDK would retry throttling itself).
    sagemaker = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    fault_switch.load("sagemaker:CreateTrainingJob@fault-job=1,sagemaker:TrainingJob@fault-job=1")
    request = training_request("fault-job", bucket, "nothing", BINARY_HYPERPARAMETERS)
    with pytest.raises(ClientError) as throttled:
        sagemaker.create_training_job(**request)
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert error_name("ThrottlingException") == "SageMaker.AmazonSageMakerException", "what the ASL retries"
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    sagemaker.create_training_job(**request)
    described = wait_for_training(sagemaker, "fault-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("InternalServerError: We encountered an internal error.")
    assert described["FailureReason"].endswith("(local fault sagemaker:TrainingJob)")


def test_endpoint_faults_throttle_create_then_fail_the_endpoint(engine, s3, bucket, fault_switch):
    sagemaker = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    tarball, _ = model_tarball(*make_rows(3, 100))
    deploy(sagemaker, s3, bucket, "stepml-test-fault", tarball)
    fault_switch.load("sagemaker:CreateEndpoint=1,sagemaker:Endpoint@stepml-test-fault=1")
    with pytest.raises(ClientError) as throttled:
        sagemaker.create_endpoint(EndpointName="stepml-test-fault", EndpointConfigName="stepml-test-fault")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    sagemaker.create_endpoint(EndpointName="stepml-test-fault", EndpointConfigName="stepml-test-fault")
    described = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="stepml-test-fault"),
        lambda d: d["EndpointStatus"] != "Creating",
    )
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].endswith("(local fault sagemaker:Endpoint)")


def test_a_delete_endpoint_fault_throttles_and_leaves_the_endpoint_serving(engine, s3, bucket, fault_switch):
    sagemaker = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    features, labels = make_rows(3, 100)
    tarball, _ = model_tarball(features, labels)
    deploy(sagemaker, s3, bucket, "stepml-test-keep", tarball)
    sagemaker.create_endpoint(EndpointName="stepml-test-keep", EndpointConfigName="stepml-test-keep")
    url = engine.wait_for_endpoint("stepml-test-keep", account_id=ACCOUNT, region=REGION).addresses["AllTraffic"]
    fault_switch.load("sagemaker:DeleteEndpoint@stepml-test-keep=2")
    for _ in range(2):
        with pytest.raises(ClientError) as throttled:
            sagemaker.delete_endpoint(EndpointName="stepml-test-keep")
        assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
        assert throttled.value.response["Error"]["Message"].endswith("(local fault sagemaker:DeleteEndpoint)")
    assert sagemaker.describe_endpoint(EndpointName="stepml-test-keep")["EndpointStatus"] == "InService"
    assert not refused(url), "a refused delete leaves the endpoint serving"
    sagemaker.delete_endpoint(EndpointName="stepml-test-keep")
    assert refused(url) and fault_switch.hit_count("sagemaker:DeleteEndpoint", "stepml-test-keep") == 2


@pytest.mark.parametrize("missing", ["image", "data"])
def test_a_training_job_whose_execution_role_may_not_pull_or_read_fails_naming_the_denial(
    gated_moto, tmp_path, missing, sagemaker_engines
):
    """Under the IAM gate: the training job pulls its image and reads its channels as its execution
    role; a role without the right fails the job (Failed, ClientError) and the reason names the
    action and resource AWS refused."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="stepml-gated")
    put_training_data(s3, "stepml-gated", "processed/run")
    repository = XGBOOST_REPOSITORY
    statements = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/processed/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::stepml-gated"},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::stepml-gated/models/*"},
        *CONTAINER_STATEMENTS,
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
    ]
    if missing == "image":
        statements = [s for s in statements if s["Resource"] != repository]
    else:
        statements = [s for s in statements if s["Action"] != "s3:ListBucket"]
    role = gated_moto.role(f"sagemaker-without-{missing}", "sagemaker.amazonaws.com", statements)
    session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    engine = sagemaker_engines(session, endpoint_url=gated_moto.url, work_dir=tmp_path / "sagemaker")
    try:
        sagemaker = gated_moto.client("sagemaker")
        name = f"stepml-gated-{missing}"
        sagemaker.create_training_job(
            **training_request(name, "stepml-gated", "processed/run", BINARY_HYPERPARAMETERS, RoleArn=role)
        )
        failed = wait_for_training(sagemaker, name)
    finally:
        engine.shutdown()  # before the checks: no engine thread may record more

    assert failed["TrainingJobStatus"] == "Failed"
    assert failed["FailureReason"].startswith("ClientError: ")
    session_arn = f"arn:aws:sts::123456789012:assumed-role/sagemaker-without-{missing}/"
    denied = [r for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    if missing == "image":
        assert failed["FailureReason"].startswith(f"ClientError: Cannot pull algorithm container {XGBOOST_IMAGE}")
        assert (
            "ecr:BatchGetImage" in failed["FailureReason"]
            or "ecr:BatchCheckLayerAvailability" in failed["FailureReason"]
        )
        assert {r.resource for r in denied} == {repository}
    else:
        assert failed["FailureReason"].startswith(
            "ClientError: Data download failed for channel train from s3://stepml-gated/processed/run/train/: "
            "AccessDenied: User: " + session_arn
        )
        assert (
            "is not authorized to perform: s3:ListBucket on resource: arn:aws:s3:::stepml-gated"
            in failed["FailureReason"]
        )
        assert [(r.action, r.resource) for r in denied] == [("s3:ListBucket", "arn:aws:s3:::stepml-gated")]
    # Nothing was trained or uploaded under a role that could not do its job.
    assert "Contents" not in s3.list_objects_v2(Bucket="stepml-gated", Prefix="models/")


@pytest.mark.parametrize(
    "line",
    ["14.0,80.44,1105.77,0.0,1,4,1", "1, 2,3", ",,5", "1,2;3;4", "1;2,3", "1|2,3", "1\t2\t3,4", "1 2 3,4", "7,"],
)
def test_the_comma_shortcut_answers_as_the_sniffer_does(line):
    """The server skips csv.Sniffer for a quote-free line with a comma; the Sniffer picks "," there too."""
    import csv

    from stepml.local.sagemaker.model_server import _sniff_delimiter

    assert _sniff_delimiter(line) == csv.Sniffer().sniff(line, delimiters=",;\t| ").delimiter == ","
