"""Script mode: the user's entry point runs as a framework container would run it.

A training job with hyperparameters ``sagemaker_program`` and ``sagemaker_submit_directory``
downloads the code archive, writes ``/opt/ml/input/config``, and runs the entry point in a
subprocess (its own process group) with the ``SM_*`` environment contract of the SageMaker
training toolkit. The job's stop and MaxRuntime end the process group; the job's metrics are
the last matches of its MetricDefinitions in the script's output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local.sagemaker.context import EngineContext
from stepml.local.sagemaker.errors import LocalSageMakerError, TrainingFailedError, TrainingStoppedError
from stepml.local.sagemaker.files import JobLayout, safe_extract
from stepml.local.sagemaker.validation import arn
from stepml.utils import S3UriError, utc_now

if TYPE_CHECKING:
    from stepml.local.sagemaker.jobs import TrainingJob


def is_script_mode(request: Mapping[str, Any]) -> bool:
    """Whether a CreateTrainingJob request runs a user script instead of the built-in algorithm."""
    return "sagemaker_program" in (request.get("HyperParameters") or {})


def _decode_hyperparameter(value: str) -> Any:
    # The SDK JSON-encodes script-mode hyperparameters; the training toolkit decodes them.
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _as_env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_script(context: EngineContext, job: TrainingJob, layout: JobLayout) -> None:
    """Run the job's entry point to its end; ``TrainingFailedError`` with the toolkit's reason when it fails."""
    raw = job.request.get("HyperParameters") or {}
    decoded = {name: _decode_hyperparameter(value) for name, value in raw.items()}
    program = str(decoded["sagemaker_program"])
    submit_directory = decoded.get("sagemaker_submit_directory")
    if not submit_directory:
        raise TrainingFailedError(
            "ClientError: script mode needs hyperparameter sagemaker_submit_directory (an s3:// tar.gz of the code)"
        )
    entry_point = _fetch_code(context, job, layout, program, str(submit_directory))
    user_hyperparameters = {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}
    user_args: list[str] = []
    for name, value in user_hyperparameters.items():
        user_args += [f"--{name}", _as_env_value(value)]
    write_job_config(job.request, layout, raw)
    environment = script_environment(job, layout, program, str(submit_directory), user_hyperparameters, user_args)
    if program.endswith(".py"):
        command = [context.settings.python_executable, program, *user_args]
    elif program.endswith(".sh"):
        command = ["/bin/sh", program, *user_args]
    else:
        command = [str(entry_point), *user_args]
    returncode, stdout_text, stderr_text = _run_process(job, layout, command, environment, program)
    with job.lock:
        job.final_metrics = script_metrics(
            (job.request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or [],
            stdout_text + "\n" + stderr_text,
        )
    if returncode != 0:
        failure_file = layout.output_dir / "failure"
        if failure_file.is_file() and failure_file.read_text(errors="replace").strip():
            raise TrainingFailedError(failure_file.read_text(errors="replace").strip())
        tail = "\n".join(stderr_text.strip().splitlines()[-20:])[-600:]
        raise TrainingFailedError(
            f'AlgorithmError: ExecuteUserScriptError:\nExitCode {returncode}\nErrorMessage "{tail}"\n'
            f'Command "{" ".join([Path(command[0]).name, *command[1:]])}"'
        )


def _fetch_code(context: EngineContext, job: TrainingJob, layout: JobLayout, program: str, submit: str) -> Path:
    """Download and extract sagemaker_submit_directory; the entry point's path in it."""
    archive = layout.root.parent / "sourcedir.tar.gz"
    try:
        context.download(submit, archive, job.request.get("RoleArn"))
        safe_extract(archive, layout.code_dir)
    except (ClientError, BotoCoreError, LocalSageMakerError, S3UriError, tarfile.TarError, OSError) as exc:
        raise TrainingFailedError(f"ClientError: could not get sagemaker_submit_directory {submit}: {exc}") from exc
    entry_point = (layout.code_dir / program).resolve()
    if layout.code_dir.resolve() not in entry_point.parents or not entry_point.is_file():
        raise TrainingFailedError(
            f"ClientError: sagemaker_program {program} is not in sagemaker_submit_directory {submit}"
        )
    return entry_point


def _run_process(
    job: TrainingJob, layout: JobLayout, command: list[str], environment: dict[str, str], program: str
) -> tuple[int, str, str]:
    """Run ``command`` until it exits or the job is stopped; its exit code, stdout and stderr."""
    stdout_path, stderr_path = layout.root.parent / "stdout.log", layout.root.parent / "stderr.log"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        try:
            process = subprocess.Popen(
                command, cwd=layout.code_dir, env=environment, stdout=stdout, stderr=stderr, start_new_session=True
            )
        except OSError as exc:
            raise TrainingFailedError(f"AlgorithmError: could not start {program}: {exc}") from exc
        job.process = process
        try:
            while process.poll() is None:
                try:
                    job.check()
                except TrainingStoppedError:
                    terminate(process)
                    raise
                time.sleep(0.05)
        finally:
            job.process = None
    return (
        process.returncode,
        stdout_path.read_text(encoding="utf-8", errors="replace"),
        stderr_path.read_text(encoding="utf-8", errors="replace"),
    )


def write_job_config(request: Mapping[str, Any], layout: JobLayout, hyperparameters: Mapping[str, str]) -> None:
    """``/opt/ml/input/config``: hyperparameters.json, resourceconfig.json, inputdataconfig.json."""
    resource = request.get("ResourceConfig") or {}
    (layout.config_dir / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
    (layout.config_dir / "resourceconfig.json").write_text(json.dumps(resource_config(resource)))
    (layout.config_dir / "inputdataconfig.json").write_text(json.dumps(input_data_config(request)))


def script_environment(
    job: TrainingJob,
    layout: JobLayout,
    program: str,
    submit_directory: str,
    user_hyperparameters: Mapping[str, Any],
    user_args: list[str],
) -> dict[str, str]:
    """The entry point's environment: the caller's, the request's Environment and the ``SM_*`` contract."""
    request = job.request
    account_id, region, name = job.key
    channels = sorted(c["ChannelName"] for c in request.get("InputDataConfig") or [])
    resource = resource_config(request.get("ResourceConfig") or {})
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    environment.update({str(k): str(v) for k, v in (request.get("Environment") or {}).items()})
    python_path = [str(layout.code_dir), *filter(None, [environment.get("PYTHONPATH")])]
    environment.update(
        {
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONUNBUFFERED": "1",
            "TRAINING_JOB_NAME": name,
            "TRAINING_JOB_ARN": arn("training-job", name, account_id, region),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(request)),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": json.dumps(dict(user_hyperparameters)),
            "SM_USER_ARGS": json.dumps(user_args),
            "SM_USER_ENTRY_POINT": program,
            "SM_MODULE_NAME": Path(program).stem,
            "SM_MODULE_DIR": submit_directory,
            **_directories(layout),
            **_host_environment(resource),
        }
    )
    for channel in channels:
        environment[f"SM_CHANNEL_{channel.upper()}"] = str(layout.channel_dir(channel))
    for hp_name, value in user_hyperparameters.items():
        environment[f"SM_HP_{hp_name.upper()}"] = _as_env_value(value)
    environment["SM_TRAINING_ENV"] = json.dumps(
        {
            "job_name": name,
            "channel_input_dirs": {c: str(layout.channel_dir(c)) for c in channels},
            "hyperparameters": dict(user_hyperparameters),
            "model_dir": str(layout.model_dir),
            "output_data_dir": str(layout.output_data_dir),
            "current_host": resource["current_host"],
            "hosts": resource["hosts"],
            "user_entry_point": program,
            "module_dir": submit_directory,
            "num_cpus": os.cpu_count() or 1,
            "num_gpus": 0,
        }
    )
    return environment


def _directories(layout: JobLayout) -> dict[str, str]:
    return {
        "SM_MODEL_DIR": str(layout.model_dir),
        "SM_INPUT_DIR": str(layout.input_dir),
        "SM_INPUT_CONFIG_DIR": str(layout.config_dir),
        "SM_OUTPUT_DIR": str(layout.output_dir),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data_dir),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.intermediate_dir),
    }


def _host_environment(resource: Mapping[str, Any]) -> dict[str, str]:
    return {
        "SM_FRAMEWORK_MODULE": "",
        "SM_FRAMEWORK_PARAMS": "{}",
        "SM_LOG_LEVEL": "20",
        "SM_CURRENT_HOST": resource["current_host"],
        "SM_HOSTS": json.dumps(resource["hosts"]),
        "SM_NETWORK_INTERFACE_NAME": resource["network_interface_name"],
        "SM_CURRENT_INSTANCE_TYPE": resource["current_instance_type"],
        "SM_CURRENT_INSTANCE_GROUP": resource["current_group_name"],
        "SM_CURRENT_INSTANCE_GROUP_HOSTS": json.dumps(resource["hosts"]),
        "SM_INSTANCE_GROUPS": json.dumps([resource["current_group_name"]]),
        "SM_IS_HETERO": "false",
        "SM_RESOURCE_CONFIG": json.dumps(resource),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_NUM_NEURONS": "0",
    }


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM the process group (as SageMaker does when it stops a job), SIGKILL after 2 s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def resource_config(resource: Mapping[str, Any]) -> dict[str, Any]:
    """resourceconfig.json of a (single-instance) job, as the toolkit reads it."""
    count = int(resource.get("InstanceCount", 1) or 1)
    hosts = [f"algo-{index}" for index in range(1, count + 1)]
    return {
        "current_host": "algo-1",
        "hosts": hosts,
        "network_interface_name": "eth0",
        "current_instance_type": resource.get("InstanceType", "local"),
        "current_group_name": "homogeneousCluster",
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": resource.get("InstanceType", "local"),
                "hosts": hosts,
            }
        ],
    }


def input_data_config(request: Mapping[str, Any]) -> dict[str, Any]:
    """inputdataconfig.json: each channel's input mode, distribution and content type."""
    mode = (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File")
    config = {}
    for channel in request.get("InputDataConfig") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        entry = {
            "TrainingInputMode": channel.get("InputMode", mode),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if channel.get("ContentType"):
            entry["ContentType"] = channel["ContentType"]
        config[channel["ChannelName"]] = entry
    return config


def script_metrics(definitions: list[Mapping[str, str]], logs: str) -> list[dict[str, Any]]:
    """SageMaker's metric extraction: the last match of each MetricDefinitions regex in the job's logs."""
    metrics = []
    timestamp = utc_now()
    for definition in definitions:
        try:
            pattern = re.compile(definition["Regex"])
        except (KeyError, re.error):
            continue
        value = None
        for match in pattern.finditer(logs):
            with contextlib.suppress(IndexError, TypeError, ValueError):
                value = float(match.group(1))
        if value is not None and math.isfinite(value):
            metrics.append({"MetricName": definition["Name"], "Value": value, "Timestamp": timestamp})
    return metrics
