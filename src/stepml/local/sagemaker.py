"""The local cloud's SageMaker: real training jobs, real endpoints, real data capture.

moto answers SageMaker's control plane with canned data (a training job is Completed and an
endpoint InService the moment it is created, and nothing runs). ``LocalSageMaker`` does the
work instead, and ``install_moto_hooks`` wires it under moto's SageMaker and
sagemaker-runtime backends, so the state machine, the Lambdas and the CLI call the usual APIs
and get AWS's behaviour:

* Training with the built-in XGBoost image (``<account>.dkr.ecr.<region>.amazonaws.com/
  sagemaker-xgboost:1.7-1``): channels are downloaded from S3 (every object under the
  S3Prefix except empty objects and ``_SUCCESS``), the hyperparameters are typed and checked
  as the container's algorithm mode does, the ``xgboost`` package (1.7.6, the container's
  version) trains with ``train`` and ``validation`` in the watchlist, and ``model.tar.gz``
  holds ``xgboost-model`` in the format the container writes (``Booster.save_model``), at
  ``<S3OutputPath>/<TrainingJobName>/output/model.tar.gz``. DescribeTrainingJob reports
  InProgress with the secondary statuses, then Completed with ``FinalMetricDataList`` (e.g.
  ``validation:auc``), or Failed with a FailureReason that names the problem.
* Script mode (hyperparameters ``sagemaker_program`` and ``sagemaker_submit_directory``):
  the user's entry point runs in a subprocess with the ``SM_*`` environment contract and an
  ``/opt/ml``-shaped directory tree; ``SM_MODEL_DIR`` becomes ``model.tar.gz``.
* ``StoppingCondition.MaxRuntimeInSeconds`` and StopTrainingJob stop a job (status Stopped,
  secondary status MaxRuntimeExceeded or Stopped).
* Hosting: each endpoint variant is a ``stepml.local.model_server.ModelServer`` on
  127.0.0.1; the endpoint is Creating until the server answers ``/ping``, then InService
  (or Failed with a FailureReason). UpdateEndpoint starts the new servers, waits until they
  are healthy, switches routing atomically, drains and stops the old ones: no request fails
  in between. DeleteEndpoint stops the servers.
* InvokeEndpoint forwards Body, ContentType, Accept and CustomAttributes to the endpoint's
  current model server; model errors come back as ``ModelError`` (424) as in AWS.
* Data capture files in SageMaker's JSON Lines format under
  ``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/``.
* Every request is checked against botocore's SageMaker service model (required members,
  types, lengths and ranges, enums, patterns), so a typo in the state machine fails as it
  would in AWS.
* Telemetry under the execution role, as SageMaker writes it: a training job's log in
  ``/aws/sagemaker/TrainingJobs`` (stream ``<job>/algo-1-<epoch>``) and its final metrics in the
  CloudWatch namespace ``/aws/sagemaker/TrainingJobs`` (dimension ``Host=<job>/algo-1``); each
  endpoint instance's log in ``/aws/sagemaker/Endpoints/<endpoint>`` (stream
  ``<variant>/<instance id>``). A role that may not write them loses them.
* A blue/green UpdateEndpoint with ``DeploymentConfig.AutoRollbackConfiguration.Alarms`` reads
  the alarms (DescribeAlarms, under the model's execution role) during the baking period after
  traffic moved to the new fleet, and rolls back to the old fleet when one is in ALARM or
  cannot be read.

The engine knows nothing about moto: it takes API-shaped request dicts and a boto3 session
for S3 (pointing at the local cloud's endpoint), so it can be driven directly too.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import http.client
import io
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import botocore_models, faults, telemetry
from stepml.local.iam import hooks as iam_hooks
from stepml.local.iam.gate import AccessDeniedError
from stepml.local.iam.model import AuthorizationRequest
from stepml.local.model_server import ModelServer, ModelServerError

LOGGER = logging.getLogger(__name__)

#: The built-in algorithm image this engine emulates; any registry account and region.
#: The session name of SageMaker's calls under an execution role.
SAGEMAKER_SESSION = "SageMaker"
BUILTIN_XGBOOST_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/sagemaker-xgboost:(?P<tag>[^/]+)$"
)
SUPPORTED_XGBOOST_TAGS = ("1.7-1", "1.7-1-cpu-py3")
#: SageMaker truncates FailureReason to this many characters.
FAILURE_REASON_LIMIT = 1024
#: InvokeEndpoint's request payload limit.
MAX_INVOCATION_BYTES = 6 * 1024 * 1024
#: How long SageMaker waits for a container to answer /invocations.
INVOCATION_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_RUNTIME_SECONDS = 86400
TERMINAL_TRAINING_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
#: Where SageMaker writes training jobs' logs and metrics, and endpoints' logs.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
#: The host name of a single-instance training job.
TRAINING_HOST = "algo-1"


# --------------------------------------------------------------------------- errors


class LocalSageMakerError(RuntimeError):
    """Base class of the engine's errors."""


class SageMakerValidationError(LocalSageMakerError):
    """A request AWS would reject with ValidationException; the message names the field."""


class ResourceInUseError(LocalSageMakerError):
    """A resource with this name already exists (AWS: ResourceInUse)."""


class EndpointNotFoundError(LocalSageMakerError):
    """InvokeEndpoint on an endpoint that does not exist or is not in service."""


class ModelInvocationError(LocalSageMakerError):
    """The model container answered an invocation with an error status (AWS: ModelError)."""

    def __init__(self, message: str, *, original_status: int, original_message: str, log_stream_arn: str):
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn


class _TrainingFailure(Exception):
    """Ends a training job as Failed; the message is the FailureReason."""


class _TrainingInterrupted(Exception):
    """Ends a training job as Stopped; the message is the secondary status."""


class _DeploymentFailure(Exception):
    """A model server could not be started or did not become healthy; the message is the FailureReason."""


# --------------------------------------------------------------------------- request validation


def validate_request(operation: str, params: Mapping[str, Any], service: str = "sagemaker") -> None:
    """Check ``params`` against the input shape of ``operation``; ``SageMakerValidationError`` names each problem."""
    problems = botocore_models.request_problems(service, operation, params)
    if problems:
        raise SageMakerValidationError(botocore_models.validation_message(operation, problems))


# --------------------------------------------------------------------------- small helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _arn(kind: str, name: str, account_id: str, region: str) -> str:
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    return f"arn:{partition}:sagemaker:{region}:{account_id}:{kind}/{name}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; ``LocalSageMakerError`` for anything else."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri or "")
    if not match:
        raise LocalSageMakerError(f"{uri!r} is not an s3:// URI")
    return match.group(1), match.group(2)


def _truncate_reason(reason: str) -> str:
    return reason if len(reason) <= FAILURE_REASON_LIMIT else reason[: FAILURE_REASON_LIMIT - 3] + "..."


def _safe_extract(archive: Path, destination: Path) -> None:
    """Extract a tar.gz, refusing members that would land outside ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if target != root and root not in target.parents:
                raise LocalSageMakerError(f"{archive.name}: member {member.name!r} points outside the archive")
            if member.issym() or member.islnk():
                raise LocalSageMakerError(f"{archive.name}: links are not allowed (member {member.name!r})")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 also strips odd modes and devices
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)  # noqa: S202 - every member was checked above


def _tar_directory(directory: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)


# --------------------------------------------------------------------------- built-in XGBoost: hyperparameters


@dataclass(frozen=True)
class _Hyperparameter:
    kind: str  # "int", "float", "choice", "text", "list"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def describe_range(self) -> str:
        if self.choices:
            return "[" + ", ".join(self.choices) + "]"
        low = "(-inf" if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        high = "+inf)" if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        return f"{low}, {high}"

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _int(low: float | None = None, high: float | None = None, **kw: Any) -> _Hyperparameter:
    return _Hyperparameter("int", low, high, **kw)


def _float(low: float | None = None, high: float | None = None, **kw: Any) -> _Hyperparameter:
    return _Hyperparameter("float", low, high, **kw)


def _choice(*choices: str) -> _Hyperparameter:
    return _Hyperparameter("choice", choices=choices)


_UNIT_OPEN_LOW = {"low": 0, "high": 1, "low_open": True}
_OBJECTIVES = (
    "binary:logistic",
    "binary:logitraw",
    "binary:hinge",
    "count:poisson",
    "multi:softmax",
    "multi:softprob",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
    "reg:linear",
    "reg:squarederror",
    "reg:logistic",
    "reg:gamma",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:tweedie",
    "reg:absoluteerror",
    "survival:aft",
    "survival:cox",
)
_EVAL_METRICS = (
    "rmse",
    "rmsle",
    "mae",
    "mape",
    "mphe",
    "logloss",
    "error",
    "merror",
    "mlogloss",
    "auc",
    "aucpr",
    "ndcg",
    "map",
    "poisson-nloglik",
    "gamma-nloglik",
    "gamma-deviance",
    "tweedie-nloglik",
    "cox-nloglik",
    "aft-nloglik",
    "interval-regression-accuracy",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "mse",
    "r2",
)

#: The hyperparameters of the 1.7-1 container's algorithm mode, with their types and ranges
#: (sagemaker-xgboost-container, algorithm_mode/hyperparameter_validation.py). Anything else
#: is "Extraneous hyperparameter found", as in the container.
XGBOOST_HYPERPARAMETERS: dict[str, _Hyperparameter] = {
    "num_round": _int(1),
    "csv_weights": _int(0, 1),
    "early_stopping_rounds": _int(1),
    "booster": _choice("gbtree", "gblinear", "dart"),
    "verbosity": _int(0, 3),
    "nthread": _int(1),
    "eta": _float(0, 1),
    "gamma": _float(0),
    "max_depth": _int(0),
    "min_child_weight": _float(0),
    "max_delta_step": _float(0),
    "subsample": _float(**_UNIT_OPEN_LOW),
    "colsample_bytree": _float(**_UNIT_OPEN_LOW),
    "colsample_bylevel": _float(**_UNIT_OPEN_LOW),
    "colsample_bynode": _float(**_UNIT_OPEN_LOW),
    "lambda": _float(0),
    "alpha": _float(0),
    "tree_method": _choice("auto", "exact", "approx", "hist", "gpu_hist"),
    "sketch_eps": _float(0, 1, low_open=True, high_open=True),
    "scale_pos_weight": _float(0, low_open=True),
    "updater": _Hyperparameter("text"),
    "dsplit": _choice("row", "col"),
    "refresh_leaf": _int(0, 1),
    "process_type": _choice("default", "update"),
    "grow_policy": _choice("depthwise", "lossguide"),
    "max_leaves": _int(0),
    "max_bin": _int(0),
    "predictor": _choice("auto", "cpu_predictor", "gpu_predictor"),
    "monotone_constraints": _Hyperparameter("text"),
    "interaction_constraints": _Hyperparameter("text"),
    "sample_type": _choice("uniform", "weighted"),
    "normalize_type": _choice("tree", "forest"),
    "rate_drop": _float(0, 1),
    "one_drop": _int(0, 1),
    "skip_drop": _float(0, 1),
    "lambda_bias": _float(0, 1),
    "tweedie_variance_power": _float(1, 2, low_open=True, high_open=True),
    "objective": _choice(*_OBJECTIVES),
    "num_class": _int(2),
    "base_score": _float(0),
    "_kfold": _int(2),
    "_num_cv_round": _int(1),
    "_tuning_objective_metric": _Hyperparameter("text"),
    "eval_metric": _Hyperparameter("list", choices=_EVAL_METRICS),
    "seed": _int(-(2**31), 2**31 - 1, low_open=True, high_open=True),
    "num_parallel_tree": _int(1),
    "save_model_on_termination": _choice("true", "false"),
    "aft_loss_distribution": _choice("normal", "logistic", "extreme"),
    "aft_loss_distribution_scale": _float(0),
    "deterministic_histogram": _choice("true", "false"),
    "single_precision_histogram": _choice("true", "false"),
    "sampling_method": _choice("uniform", "gradient_based"),
    "prob_buffer_row": _float(1, low_open=True),
}
_ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"}
#: Hyperparameters the container consumes itself instead of passing them to xgboost.
_CONTAINER_ONLY = frozenset(
    {
        "num_round",
        "csv_weights",
        "early_stopping_rounds",
        "save_model_on_termination",
        "_kfold",
        "_num_cv_round",
        "_tuning_objective_metric",
    }
)


@dataclass(frozen=True)
class XGBoostTrainingConfig:
    """Typed hyperparameters: xgboost ``params`` plus what the container itself consumes."""

    params: dict[str, Any]
    num_round: int
    early_stopping_rounds: int | None = None
    csv_weights: int = 0


def parse_xgboost_hyperparameters(raw: Mapping[str, str]) -> XGBoostTrainingConfig:
    """Type and check HyperParameters as the 1.7-1 container does; ``ValueError`` says what is wrong."""
    typed: dict[str, Any] = {}
    for given_name, value in raw.items():
        name = _ALIASES.get(given_name, given_name)
        spec = XGBOOST_HYPERPARAMETERS.get(name)
        if spec is None:
            raise ValueError(f"Extraneous hyperparameter found: {given_name}")
        text = str(value).strip()
        try:
            if spec.kind == "int":
                parsed: Any = int(text)
            elif spec.kind == "float":
                parsed = float(text)
            elif spec.kind == "list":
                parsed = [item.strip() for item in text.split(",") if item.strip()]
            else:
                parsed = text
        except ValueError:
            raise ValueError(f"Hyperparameter {given_name}: could not parse value {value!r}") from None
        if spec.kind in ("int", "float") and not spec.contains(parsed):
            raise ValueError(f"Hyperparameter {given_name}: {value} is not in {spec.describe_range()}")
        if spec.kind == "choice" and parsed not in spec.choices:
            raise ValueError(f"Hyperparameter {given_name}: {value} is not in {spec.describe_range()}")
        if spec.kind == "list":
            for metric in parsed:
                base, _, threshold = metric.partition("@")
                if base not in spec.choices:
                    raise ValueError(f"Hyperparameter {given_name}: value {metric} not in range {list(spec.choices)}")
                if threshold:
                    try:
                        float(threshold)
                    except ValueError:
                        raise ValueError(f"Threshold value 't' in '{base}@t' expects float input.") from None
        typed[name] = parsed
    if "num_round" not in typed:
        raise ValueError("Missing required hyperparameter: num_round")
    objective = typed.get("objective")
    if objective in ("multi:softmax", "multi:softprob") and "num_class" not in typed:
        raise ValueError("Require input for parameter 'num_class' for multi-classification")
    if "num_class" in typed and not str(objective or "").startswith("multi:"):
        raise ValueError(
            "Do not need to setup parameter 'num_class' for learning task other than multi-classification."
        )
    metrics = typed.get("eval_metric") or []
    if any(m.split("@")[0] == "auc" for m in metrics) and not str(objective or "").startswith(("binary:", "rank:")):
        raise ValueError("Metric 'auc' can only be applied for classification and ranking problems.")
    if "_kfold" in typed:
        raise ValueError("Hyperparameter _kfold: cross-validation training is not supported by the local cloud")
    params = {name: value for name, value in typed.items() if name not in _CONTAINER_ONLY}
    return XGBoostTrainingConfig(
        params=params,
        num_round=typed["num_round"],
        early_stopping_rounds=typed.get("early_stopping_rounds"),
        csv_weights=typed.get("csv_weights", 0),
    )


# --------------------------------------------------------------------------- built-in XGBoost: data


def _content_format(content_type: str | None) -> str:
    """The container's ``get_content_type``: None means libsvm; csv may carry ``label_size=1``."""
    if content_type is None:
        return "libsvm"
    media, *parameters = [part.strip().lower() for part in content_type.split(";")]
    if media in ("csv", "text/csv"):
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() == "label_size" and value.strip() != "1":
                raise ValueError(
                    f"{content_type} is not an accepted csv ContentType. "
                    "Optional parameter label_size must be equal to 1"
                )
        return "csv"
    if media in ("libsvm", "text/libsvm", "text/x-libsvm"):
        return "libsvm"
    raise ValueError(
        f"{content_type} is not an accepted ContentType for the local cloud: text/csv, text/libsvm, text/x-libsvm."
    )


def _data_files(directory: Path) -> list[Path]:
    # The container ignores hidden files and files starting with "_" (e.g. _SUCCESS markers).
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not path.name.startswith((".", "_")) and path.stat().st_size > 0
    )


@dataclass
class _Dataset:
    features: Any
    labels: Any
    weights: Any | None
    rows: int
    columns: int


def _load_csv_file(path: Path, label: str, csv_weights: int) -> _Dataset | None:
    import numpy as np
    import pandas as pd

    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        return None
    delimiter = _csv_delimiter(lines[0][1])
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            header=None,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise _TrainingFailure(f"ClientError: Failed to load csv data from {label}: {exc}") from exc
    stripped = raw.apply(lambda column: column.str.strip())
    numeric = stripped.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & stripped.ne("") & stripped.apply(lambda column: column.str.lower()).ne("nan")
    if bad.to_numpy().any():
        row, column = (int(index) for index in np.argwhere(bad.to_numpy())[0])
        value = stripped.iat[row, column]
        line_number = lines[row][0] if row < len(lines) else row + 1
        raise _TrainingFailure(
            f"ClientError: Non-numeric value {value!r} in {label}, line {line_number}, column {column + 1}: "
            "the built-in XGBoost algorithm reads CSV of numbers only, label first, no header"
        )
    matrix = numeric.to_numpy(dtype=np.float32)
    first_feature = 2 if csv_weights == 1 else 1
    if matrix.shape[1] <= first_feature:
        raise _TrainingFailure(f"ClientError: {label} has {matrix.shape[1]} column(s): a label and features are needed")
    labels = matrix[:, 0]
    missing = np.flatnonzero(np.isnan(labels))
    if missing.size:
        raise _TrainingFailure(f"ClientError: Missing label (column 1) in {label}, line {lines[missing[0]][0]}")
    return _Dataset(
        features=matrix[:, first_feature:],
        labels=labels,
        weights=matrix[:, 1] if csv_weights == 1 else None,
        rows=matrix.shape[0],
        columns=matrix.shape[1] - first_feature,
    )


def _csv_delimiter(first_line: str) -> str:
    import csv

    try:
        delimiter = csv.Sniffer().sniff(first_line[:512], delimiters=",;\t| ").delimiter
    except csv.Error:
        return ","
    return "," if delimiter.isalnum() else delimiter


def _load_libsvm_file(path: Path, label: str) -> _Dataset | None:
    import numpy as np
    from scipy.sparse import csr_matrix

    labels, weights, data, indices, indptr = [], [], [], [], [0]
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        head, *features = tokens
        try:
            label_text, _, weight_text = head.partition(":")
            labels.append(float(label_text))
            weights.append(float(weight_text) if weight_text else 1.0)
            for token in features:
                index, _, value = token.partition(":")
                indices.append(int(index))
                data.append(float(value))
        except ValueError:
            raise _TrainingFailure(
                f"ClientError: {label}, line {number} is not LIBSVM (<label>[:<weight>] <index>:<value> ...): "
                f"{line[:50]!r}"
            ) from None
        indptr.append(len(indices))
    if not labels:
        return None
    matrix = csr_matrix((data, indices, indptr), dtype=np.float32)
    return _Dataset(
        matrix,
        np.asarray(labels, dtype=np.float32),
        np.asarray(weights, dtype=np.float32),
        len(labels),
        matrix.shape[1],
    )


def load_channel(directory: Path, channel: str, content_format: str, csv_weights: int = 0) -> _Dataset | None:
    """Read every data file of a downloaded channel; None when it holds no data."""
    import numpy as np
    from scipy.sparse import csr_matrix, vstack

    parts: list[_Dataset] = []
    for path in _data_files(directory):
        label = f"channel {channel}, file {path.relative_to(directory)}"
        part = _load_csv_file(path, label, csv_weights) if content_format == "csv" else _load_libsvm_file(path, label)
        if part is None:
            continue
        if parts and content_format == "csv" and part.columns != parts[0].columns:
            raise _TrainingFailure(
                f"ClientError: {label} has {part.columns} feature columns but the first file of channel {channel} "
                f"has {parts[0].columns}"
            )
        parts.append(part)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if content_format == "libsvm":
        width = max(p.columns for p in parts)
        features = vstack([csr_matrix(p.features, shape=(p.rows, width)) for p in parts]).tocsr()
    else:
        features = np.vstack([p.features for p in parts])
    weights = None if parts[0].weights is None else np.concatenate([p.weights for p in parts])
    return _Dataset(
        features, np.concatenate([p.labels for p in parts]), weights, sum(p.rows for p in parts), features.shape[1]
    )


# --------------------------------------------------------------------------- training jobs


@dataclass(frozen=True)
class TrainingJobView:
    """What DescribeTrainingJob reports for a job at one moment (API member names via ``as_api``)."""

    name: str
    status: str
    secondary_status: str
    transitions: tuple[dict[str, Any], ...]
    failure_reason: str | None
    start_time: datetime | None
    end_time: datetime | None
    final_metrics: tuple[dict[str, Any], ...]
    model_artifacts: str

    def as_api(self) -> dict[str, Any]:
        """DescribeTrainingJob members for the job's state."""
        response: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts},
            "FinalMetricDataList": [dict(m) for m in self.final_metrics],
        }
        if self.failure_reason:
            response["FailureReason"] = self.failure_reason
        if self.start_time:
            response["TrainingStartTime"] = self.start_time
        if self.end_time:
            response["TrainingEndTime"] = self.end_time
        if self.start_time and self.end_time:
            seconds = max(1, int((self.end_time - self.start_time).total_seconds()))
            response["TrainingTimeInSeconds"] = seconds
            response["BillableTimeInSeconds"] = seconds
        return response


_PHASE_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped because it exceeded MaxRuntimeInSeconds",
}


@dataclass
class _TrainingJob:
    key: tuple[str, str, str]
    request: dict[str, Any]
    model_artifacts: str
    status: str = "InProgress"
    secondary_status: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    final_metrics: list[dict[str, Any]] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    deadline: float = math.inf
    #: The job's log stream (``telemetry.LogStream``) while it runs.
    log: Any = None

    @property
    def name(self) -> str:
        return self.key[2]

    def phase(self, secondary: str, status: str | None = None) -> None:
        now = _now()
        with self.lock:
            if self.transitions:
                self.transitions[-1]["EndTime"] = now
            self.transitions.append(
                {"Status": secondary, "StartTime": now, "StatusMessage": _PHASE_MESSAGES[secondary]}
            )
            self.secondary_status = secondary
            if status:
                self.status = status

    def check(self) -> None:
        """Raise ``_TrainingInterrupted`` when the job was stopped or ran out of time."""
        if self.stop_requested.is_set():
            raise _TrainingInterrupted("Stopped")
        if time.monotonic() > self.deadline:
            raise _TrainingInterrupted("MaxRuntimeExceeded")

    def view(self) -> TrainingJobView:
        with self.lock:
            return TrainingJobView(
                name=self.name,
                status=self.status,
                secondary_status=self.secondary_status,
                transitions=tuple(dict(t) for t in self.transitions),
                failure_reason=self.failure_reason,
                start_time=self.start_time,
                end_time=self.end_time,
                final_metrics=tuple(dict(m) for m in self.final_metrics),
                model_artifacts=self.model_artifacts,
            )


@dataclass(frozen=True)
class _Layout:
    """An /opt/ml-shaped tree for one job."""

    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    def channel_dir(self, channel: str) -> Path:
        return self.root / "input" / "data" / channel

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def intermediate_dir(self) -> Path:
        return self.root / "output" / "intermediate"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    def create(self) -> _Layout:
        for directory in (self.config_dir, self.model_dir, self.output_data_dir, self.intermediate_dir, self.code_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return self


def _decode_hyperparameter(value: str) -> Any:
    # The SDK JSON-encodes script-mode hyperparameters; the training toolkit decodes them.
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _as_env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --------------------------------------------------------------------------- hosting


@dataclass(frozen=True)
class _CaptureSettings:
    destination: str
    sampling_percentage: float
    modes: frozenset[str]
    csv_types: tuple[str, ...]
    json_types: tuple[str, ...]
    kms_key_id: str | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> _CaptureSettings | None:
        if not config or not config.get("EnableCapture", True):
            return None
        modes: set[str] = set()
        for option in config.get("CaptureOptions") or []:
            mode = option.get("CaptureMode")
            modes.update(
                {"Input": {"INPUT"}, "Output": {"OUTPUT"}, "InputAndOutput": {"INPUT", "OUTPUT"}}.get(mode, set())
            )
        headers = config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination=str(config.get("DestinationS3Uri", "")),
            sampling_percentage=float(config.get("InitialSamplingPercentage", 0)),
            modes=frozenset(modes),
            csv_types=tuple(t.lower() for t in headers.get("CsvContentTypes") or ()),
            json_types=tuple(t.lower() for t in headers.get("JsonContentTypes") or ()),
            kms_key_id=config.get("KmsKeyId"),
        )

    def summary(self) -> dict[str, Any]:
        summary = {
            "EnableCapture": True,
            "CaptureStatus": "Started",
            "CurrentSamplingPercentage": int(self.sampling_percentage),
            "DestinationS3Uri": self.destination,
        }
        if self.kms_key_id:
            summary["KmsKeyId"] = self.kms_key_id
        return summary

    def encode(self, mode: str, content_type: str | None, body: bytes) -> dict[str, str]:
        media = (content_type or "").split(";")[0].strip().lower()
        encoding = "CSV" if media in self.csv_types else "JSON" if media in self.json_types else "BASE64"
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                encoding = "BASE64"
        if encoding == "BASE64":
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


class _CaptureBuffer:
    """Captured events of one endpoint variant, waiting for the next flush to S3."""

    def __init__(self, endpoint_name: str, variant_name: str, settings: _CaptureSettings, role_arn: str | None = None):
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.settings = settings
        #: The model's execution role: SageMaker writes capture files under it.
        self.role_arn = role_arn
        self._events: list[tuple[datetime, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def add(self, when: datetime, record: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((when, record))

    def drain(self) -> list[tuple[datetime, dict[str, Any]]]:
        with self._lock:
            events, self._events = self._events, []
        return events


@dataclass
class _Variant:
    name: str
    model_name: str
    weight: float
    server: ModelServer
    capture: _CaptureBuffer | None
    #: The instance's id and its log stream in /aws/sagemaker/Endpoints/<endpoint>.
    instance_id: str = ""
    log: telemetry.LogStream | None = None


def _instance_id() -> str:
    """An instance id shaped like EC2's (``i-`` and 17 hex digits), for an endpoint's log stream."""
    return "i-" + uuid.uuid4().hex[:17]


class _Deployment:
    """The model servers behind one endpoint config; counts in-flight requests so retiring can drain."""

    def __init__(self, config_name: str, variants: list[_Variant], capture: _CaptureSettings | None, work_dir: Path):
        self.config_name = config_name
        self.variants = variants
        self.capture = capture
        self.work_dir = work_dir
        self._in_flight = 0
        self._retired = False
        self._condition = threading.Condition()

    def acquire(self) -> bool:
        with self._condition:
            if self._retired:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify_all()

    def retire(self, drain_timeout: float) -> None:
        """Refuse new requests and wait (bounded) for the in-flight ones to finish."""
        with self._condition:
            self._retired = True
            self._condition.wait_for(lambda: self._in_flight == 0, timeout=drain_timeout)

    def choose(self, target_variant: str | None) -> _Variant:
        if target_variant:
            for variant in self.variants:
                if variant.name == target_variant:
                    return variant
            raise SageMakerValidationError(f"Variant {target_variant} does not exist on this endpoint.")
        weights = [variant.weight for variant in self.variants]
        if len(self.variants) == 1 or not any(weights):
            return self.variants[0]
        return random.choices(self.variants, weights=weights)[0]


@dataclass
class _Endpoint:
    key: tuple[str, str, str]
    arn: str
    config_name: str
    config: dict[str, Any]
    status: str = "Creating"
    failure_reason: str | None = None
    deployment: _Deployment | None = None
    generation: int = 0
    created: datetime = field(default_factory=_now)
    modified: datetime = field(default_factory=_now)

    @property
    def name(self) -> str:
        return self.key[2]


@dataclass(frozen=True)
class EndpointView:
    """What DescribeEndpoint reports for an endpoint at one moment."""

    name: str
    status: str
    config_name: str
    failure_reason: str | None
    production_variants: tuple[dict[str, Any], ...]
    data_capture: dict[str, Any] | None
    last_modified: datetime
    addresses: dict[str, str]


@dataclass(frozen=True)
class InvocationResult:
    """An InvokeEndpoint answer."""

    body: bytes
    content_type: str
    invoked_variant: str


# --------------------------------------------------------------------------- the engine


class LocalSageMaker:
    """SageMaker training and hosting on this machine; S3 through ``session`` (the local cloud's endpoint).

    ``capture_flush_seconds`` bounds how long a captured request waits before it is written to
    S3; ``health_check_interval`` is the gap between ``/ping`` health checks of a starting
    model server (the first check comes one interval after the server starts, as SageMaker's do).
    ``log_flush_seconds`` is how often a running training job's new log lines are sent (endpoint
    logs go with the capture flush); ``alarm_poll_seconds`` the gap between reads of the
    auto-rollback alarms during a baking period. Call ``shutdown`` to stop every job, server and
    thread.
    """

    def __init__(
        self,
        session: boto3.Session,
        *,
        endpoint_url: str | None = None,
        work_dir: Path | None = None,
        capture_flush_seconds: float = 2.0,
        health_check_interval: float = 0.1,
        health_check_timeout: float = 120.0,
        drain_timeout: float = 30.0,
        python_executable: str = sys.executable,
        log_flush_seconds: float = 2.0,
        alarm_poll_seconds: float = 5.0,
    ):
        self._session = session
        self._endpoint_url = endpoint_url
        self._owns_work_dir = work_dir is None
        self._work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="stepml-sagemaker-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self._capture_flush_seconds = capture_flush_seconds
        self._health_check_interval = health_check_interval
        self._health_check_timeout = health_check_timeout
        self._drain_timeout = drain_timeout
        self._python = python_executable
        self._log_flush_seconds = log_flush_seconds
        self._alarm_poll_seconds = alarm_poll_seconds
        self._lock = threading.RLock()
        self._s3_client: Any = None
        self._role_clients: dict[tuple[str, str], Any] = {}
        self._jobs: dict[tuple[str, str, str], _TrainingJob] = {}
        self._endpoints: dict[tuple[str, str, str], _Endpoint] = {}
        self._workers: list[threading.Thread] = []
        self._capture_buffers: set[_CaptureBuffer] = set()
        self._endpoint_logs: set[telemetry.LogStream] = set()
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()

    # ------------------------------------------------------------------ plumbing

    @property
    def _s3(self) -> Any:
        with self._lock:
            if self._s3_client is None:
                self._s3_client = self._session.client("s3", endpoint_url=self._endpoint_url)
            return self._s3_client

    def _client_as(self, service: str, role_arn: str | None) -> Any:
        """A client signed with ``role_arn``'s credentials, as SageMaker acts under the execution
        role in AWS; without a running local cloud's IAM (unit tests), the engine's own client."""
        authorizer = iam_hooks.active()
        if authorizer is None or not role_arn:
            return self._s3 if service == "s3" else self._session.client(service, endpoint_url=self._endpoint_url)
        with self._lock:
            client = self._role_clients.get((service, role_arn))
            if client is None:
                credentials = authorizer.principals.credentials(role_arn, SAGEMAKER_SESSION)
                client = self._session.client(service, endpoint_url=self._endpoint_url, **credentials.client_kwargs())
                self._role_clients[(service, role_arn)] = client
            return client

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._workers = [t for t in self._workers if t.is_alive()]
            self._workers.append(thread)
        thread.start()
        return thread

    def _download(self, uri: str, target: Path, role_arn: str | None = None) -> None:
        bucket, key = split_s3_uri(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._client_as("s3", role_arn).download_file(bucket, key, str(target))

    # ------------------------------------------------------------------ training

    def create_training_job(self, request: Mapping[str, Any], *, account_id: str, region: str) -> TrainingJobView:
        """Validate a CreateTrainingJob request and start the job in the background."""
        validate_request("CreateTrainingJob", request)
        request = copy.deepcopy(dict(request))
        name = request["TrainingJobName"]
        key = (account_id, region, name)
        output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        job = _TrainingJob(key=key, request=request, model_artifacts=f"{output_path}/{name}/output/model.tar.gz")
        with self._lock:
            if self._closing.is_set():
                raise LocalSageMakerError("the local SageMaker engine is shut down")
            if key in self._jobs:
                raise ResourceInUseError(
                    "Training job names must be unique within an AWS account and region, and a training job with "
                    f"this name already exists ({_arn('training-job', name, account_id, region)})"
                )
            self._jobs[key] = job
        job.phase("Starting")
        job.thread = self._spawn(self._run_training_job, f"stepml-sm-train-{name}", job)
        return job.view()

    def describe_training_job(self, name: str, *, account_id: str, region: str) -> TrainingJobView | None:
        """The job's current state, or None when this engine does not run it."""
        job = self._jobs.get((account_id, region, name))
        return job.view() if job else None

    def stop_training_job(self, name: str, *, account_id: str, region: str) -> None:
        """Ask a running job to stop (status Stopping, then Stopped)."""
        job = self._jobs.get((account_id, region, name))
        if job is None:
            raise SageMakerValidationError(
                f"Requested resource not found: {_arn('training-job', name, account_id, region)}"
            )
        with job.lock:
            if job.status != "InProgress":
                raise SageMakerValidationError(
                    f"The request was rejected because the training job is in status {job.status}."
                )
            job.phase("Stopping", status="Stopping")
            job.stop_requested.set()

    def wait_for_training_job(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> TrainingJobView:
        """Block until the job reaches Completed, Failed or Stopped (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.describe_training_job(name, account_id=account_id, region=region)
            if view is None:
                raise LocalSageMakerError(f"training job {name} is not run by this engine")
            if view.status in TERMINAL_TRAINING_STATUSES:
                return view
            if time.monotonic() > deadline:
                raise LocalSageMakerError(f"training job {name} still {view.status} after {timeout} s")
            time.sleep(0.05)

    def _run_training_job(self, job: _TrainingJob) -> None:
        request = job.request
        max_runtime = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
        job_dir = Path(tempfile.mkdtemp(prefix=f"train-{job.name[:40]}-", dir=self._work_dir))
        layout = _Layout(job_dir / "opt" / "ml").create()
        with job.lock:
            job.start_time = _now()
        job.deadline = time.monotonic() + max_runtime
        script_mode = "sagemaker_program" in (request.get("HyperParameters") or {})
        shipper = self._start_job_log(job, layout, script_mode)
        outcome: tuple[str, str, str | None] = ("Failed", "Failed", "InternalServerError: the job did not finish")
        try:
            if not script_mode:
                self._check_builtin_image(request)
            image = (request.get("AlgorithmSpecification") or {}).get("TrainingImage")
            if image:
                try:
                    _authorize_image_pull(request.get("RoleArn"), image)
                except AccessDeniedError as denied:
                    reason = f"ClientError: Cannot pull algorithm container {image}: {denied}"
                    raise _TrainingFailure(reason) from denied
            job.phase("Downloading")
            if failure := faults.trigger("sagemaker:TrainingJob", job.name):
                raise _TrainingFailure(failure)
            self._download_channels(job, layout)
            job.phase("Training")
            if script_mode:
                self._run_script(job, layout)
            else:
                self._train_xgboost(job, layout)
            job.check()
            job.phase("Uploading")
            self._upload_outputs(job, layout)
            outcome = ("Completed", "Completed", None)
        except _TrainingInterrupted as exc:
            outcome = ("Stopped", str(exc), None)
        except _TrainingFailure as exc:
            outcome = ("Failed", "Failed", _truncate_reason(str(exc)))
        except Exception as exc:  # the job must end Failed, never hang InProgress
            LOGGER.exception("local training job %s crashed", job.name)
            outcome = ("Failed", "Failed", _truncate_reason(f"InternalServerError: {type(exc).__name__}: {exc}"))
        finally:
            # The job's logs and metrics are written before it ends: whoever sees it end can read them.
            self._finish_job_telemetry(job, shipper, outcome)
            self._finish(job, *outcome)
            shutil.rmtree(job_dir, ignore_errors=True)

    def _start_job_log(self, job: _TrainingJob, layout: _Layout, script_mode: bool) -> telemetry.Shipper:
        """The job's log stream, ``<job>/algo-1-<epoch of the start>``, sent while the job runs."""
        assert job.start_time is not None
        stream = f"{job.name}/{TRAINING_HOST}-{int(job.start_time.timestamp())}"
        log = telemetry.LogStream(
            self._client_as("logs", job.request.get("RoleArn")), TRAINING_LOG_GROUP, stream, describe_first=True
        )
        job.log = log
        # Script mode: the container's log is the entry point's standard output and error.
        followers = (
            [telemetry.FileFollower(layout.root.parent / name, [log]) for name in ("stdout.log", "stderr.log")]
            if script_mode
            else []
        )
        return telemetry.Shipper(
            [log], followers, interval=self._log_flush_seconds, name=f"stepml-sm-logs-{job.name}"
        ).start()

    def _finish_job_telemetry(
        self, job: _TrainingJob, shipper: telemetry.Shipper, outcome: tuple[str, str, str | None]
    ) -> None:
        status, _, reason = outcome
        shipper.close()  # the script's last lines first
        if reason:
            job.log.add(reason)
        job.log.add(f"Training job {job.name} {status.lower()}")
        job.log.flush()
        with job.lock:
            metrics = list(job.final_metrics)
        if metrics:
            host = [{"Name": "Host", "Value": f"{job.name}/{TRAINING_HOST}"}]
            telemetry.put_metrics(
                self._client_as("cloudwatch", job.request.get("RoleArn")),
                TRAINING_METRICS_NAMESPACE,
                [
                    {
                        "MetricName": metric["MetricName"],
                        "Dimensions": host,
                        "Timestamp": metric["Timestamp"],
                        "Value": metric["Value"],
                        "Unit": "None",
                    }
                    for metric in metrics
                ],
            )

    def _finish(self, job: _TrainingJob, status: str, secondary: str, reason: str | None = None) -> None:
        # One step under the lock: a poller never sees a terminal status without TrainingEndTime.
        with job.lock:
            job.phase(secondary, status=status)
            job.end_time = _now()
            job.failure_reason = reason
            job.transitions[-1]["EndTime"] = job.end_time

    @staticmethod
    def _check_builtin_image(request: Mapping[str, Any]) -> None:
        specification = request.get("AlgorithmSpecification") or {}
        image = specification.get("TrainingImage")
        if not image:
            raise _TrainingFailure(
                f"ClientError: algorithm resource {specification.get('AlgorithmName')!r} cannot run locally: "
                "the local cloud runs the built-in sagemaker-xgboost:1.7-1 image and script mode"
            )
        match = BUILTIN_XGBOOST_IMAGE.match(image)
        if not match:
            raise _TrainingFailure(
                f"ClientError: training image {image} cannot run locally: the local cloud runs the built-in "
                "sagemaker-xgboost:1.7-1 image, or script mode (hyperparameters sagemaker_program and "
                "sagemaker_submit_directory)"
            )
        if match.group("tag") not in SUPPORTED_XGBOOST_TAGS:
            raise _TrainingFailure(
                f"ClientError: training image {image}: the local cloud emulates sagemaker-xgboost:1.7-1 only "
                "(xgboost 1.7.6); model files of other versions would not match"
            )

    def _download_channels(self, job: _TrainingJob, layout: _Layout) -> None:
        for channel in job.request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if source is None:
                raise _TrainingFailure(f"ClientError: channel {name}: only S3DataSource is supported locally")
            if source.get("S3DataType") != "S3Prefix":
                raise _TrainingFailure(
                    f"ClientError: channel {name}: S3DataType {source.get('S3DataType')} is not supported locally "
                    "(use S3Prefix)"
                )
            if channel.get("CompressionType", "None") != "None":
                raise _TrainingFailure(
                    f"ClientError: channel {name}: CompressionType {channel['CompressionType']} "
                    "is not supported locally"
                )
            self._download_prefix(job, name, source["S3Uri"], layout.channel_dir(name))

    def _download_prefix(self, job: _TrainingJob, channel: str, uri: str, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        bucket, prefix = split_s3_uri(uri)
        root = destination.resolve()
        found = False
        s3 = self._client_as("s3", job.request.get("RoleArn"))
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found = True
                    key = item["Key"]
                    name = PurePosixPath(key).name
                    if item["Size"] == 0 or name == "_SUCCESS" or key.endswith("/"):
                        continue
                    relative = key[len(prefix) :].lstrip("/") or name
                    target = (root / relative).resolve()
                    if root not in target.parents:
                        raise _TrainingFailure(f"ClientError: channel {channel}: S3 key {key} escapes the channel")
                    job.check()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, key, str(target))
        except ClientError as exc:
            raise _TrainingFailure(
                f"ClientError: Data download failed for channel {channel} from {uri}: "
                f"{exc.response.get('Error', {}).get('Code')}: {exc.response.get('Error', {}).get('Message')}"
            ) from exc
        if not found:
            raise _TrainingFailure(
                f'ClientError: Data download failed: no S3 objects found under S3 URL "{uri}" given in input data '
                f"source (channel {channel}). Please ensure that the S3 prefix contains data."
            )

    def _train_xgboost(self, job: _TrainingJob, layout: _Layout) -> None:
        import xgboost as xgb

        try:
            config = parse_xgboost_hyperparameters(job.request.get("HyperParameters") or {})
        except ValueError as exc:
            raise _TrainingFailure(f"ClientError: {exc}") from exc
        channels = {c["ChannelName"]: c for c in job.request.get("InputDataConfig") or []}
        extraneous = sorted(set(channels) - {"train", "validation"})
        if extraneous:
            raise _TrainingFailure(
                f"ClientError: Extraneous channel found: {extraneous[0]} (the algorithm reads train and validation)"
            )
        if "train" not in channels:
            raise _TrainingFailure("ClientError: Missing required channel: train")
        datasets: dict[str, Any] = {}
        for name in ("train", "validation"):
            if name not in channels:
                continue
            try:
                content_format = _content_format(channels[name].get("ContentType"))
            except ValueError as exc:
                raise _TrainingFailure(f"ClientError: {exc}") from exc
            dataset = load_channel(layout.channel_dir(name), name, content_format, config.csv_weights)
            if dataset is None:
                label = "training" if name == "train" else "validation"
                raise _TrainingFailure(f"ClientError: No data in {label} channel path {layout.channel_dir(name)}")
            datasets[name] = dataset
            job.check()
        train, validation = datasets["train"], datasets.get("validation")
        if validation is not None and validation.columns != train.columns and not hasattr(train.features, "tocsr"):
            raise _TrainingFailure(
                f"ClientError: Feature shape mismatch: the train channel has {train.columns} feature columns, the "
                f"validation channel {validation.columns}"
            )
        job.log.add(_container_line("Single node training."))
        job.log.add(_container_line(f"Train matrix has {train.rows} rows and {train.columns} columns"))
        if validation is not None:
            job.log.add(_container_line(f"Validation matrix has {validation.rows} rows"))
        dtrain = xgb.DMatrix(train.features, label=train.labels, weight=train.weights)
        watchlist = [(dtrain, "train")]
        if validation is not None:
            dvalidation = xgb.DMatrix(validation.features, label=validation.labels, weight=validation.weights)
            watchlist.append((dvalidation, "validation"))
        results: dict[str, dict[str, list[float]]] = {}
        try:
            booster = xgb.train(
                config.params,
                dtrain,
                num_boost_round=config.num_round,
                evals=watchlist,
                evals_result=results,
                early_stopping_rounds=config.early_stopping_rounds if validation is not None else None,
                callbacks=[_stop_check(job), _round_logger(job)],
                verbose_eval=False,
            )
        except _TrainingInterrupted:
            raise
        except xgb.core.XGBoostError as exc:
            message = _xgboost_message(exc)
            # As the container does: data the customer can fix is a ClientError, the rest AlgorithmError.
            kind = "ClientError" if any(hint in message for hint in _CUSTOMER_ERROR_HINTS) else "AlgorithmError"
            raise _TrainingFailure(f"{kind}: XGB train call failed with exception:\n {message}") from exc
        job.check()
        booster.save_model(str(layout.model_dir / "xgboost-model"))
        timestamp = _now()
        metrics = [
            {"MetricName": f"{data_name}:{metric}", "Value": float(values[-1]), "Timestamp": timestamp}
            for data_name, per_metric in results.items()
            for metric, values in per_metric.items()
            if values and math.isfinite(values[-1])
        ]
        with job.lock:
            job.final_metrics = metrics

    def _run_script(self, job: _TrainingJob, layout: _Layout) -> None:
        request = job.request
        raw = request.get("HyperParameters") or {}
        decoded = {name: _decode_hyperparameter(value) for name, value in raw.items()}
        program = str(decoded["sagemaker_program"])
        submit_directory = decoded.get("sagemaker_submit_directory")
        if not submit_directory:
            raise _TrainingFailure(
                "ClientError: script mode needs hyperparameter sagemaker_submit_directory (an s3:// tar.gz of the code)"
            )
        archive = layout.root.parent / "sourcedir.tar.gz"
        try:
            self._download(str(submit_directory), archive, job.request.get("RoleArn"))
            _safe_extract(archive, layout.code_dir)
        except (ClientError, BotoCoreError, LocalSageMakerError, tarfile.TarError, OSError) as exc:
            raise _TrainingFailure(
                f"ClientError: could not get sagemaker_submit_directory {submit_directory}: {exc}"
            ) from exc
        entry_point = (layout.code_dir / program).resolve()
        if layout.code_dir.resolve() not in entry_point.parents or not entry_point.is_file():
            raise _TrainingFailure(
                f"ClientError: sagemaker_program {program} is not in sagemaker_submit_directory {submit_directory}"
            )
        user_hyperparameters = {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}
        user_args: list[str] = []
        for name, value in user_hyperparameters.items():
            user_args += [f"--{name}", _as_env_value(value)]
        self._write_job_config(job, layout, raw)
        environment = self._script_environment(
            job, layout, program, str(submit_directory), user_hyperparameters, user_args
        )
        if program.endswith(".py"):
            command = [self._python, program, *user_args]
        elif program.endswith(".sh"):
            command = ["/bin/sh", program, *user_args]
        else:
            command = [str(entry_point), *user_args]
        stdout_path, stderr_path = layout.root.parent / "stdout.log", layout.root.parent / "stderr.log"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            try:
                process = subprocess.Popen(
                    command, cwd=layout.code_dir, env=environment, stdout=stdout, stderr=stderr, start_new_session=True
                )
            except OSError as exc:
                raise _TrainingFailure(f"AlgorithmError: could not start {program}: {exc}") from exc
            job.process = process
            try:
                while process.poll() is None:
                    try:
                        job.check()
                    except _TrainingInterrupted:
                        _terminate(process)
                        raise
                    time.sleep(0.05)
            finally:
                job.process = None
        stdout_text = stdout_path.read_text(encoding="utf-8", errors="replace")
        stderr_text = stderr_path.read_text(encoding="utf-8", errors="replace")
        with job.lock:
            job.final_metrics = _script_metrics(
                (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or [],
                stdout_text + "\n" + stderr_text,
            )
        if process.returncode != 0:
            failure_file = layout.output_dir / "failure"
            if failure_file.is_file() and failure_file.read_text(errors="replace").strip():
                raise _TrainingFailure(failure_file.read_text(errors="replace").strip())
            tail = "\n".join(stderr_text.strip().splitlines()[-20:])[-600:]
            raise _TrainingFailure(
                f'AlgorithmError: ExecuteUserScriptError:\nExitCode {process.returncode}\nErrorMessage "{tail}"\n'
                f'Command "{" ".join([Path(command[0]).name, *command[1:]])}"'
            )

    def _write_job_config(self, job: _TrainingJob, layout: _Layout, hyperparameters: Mapping[str, str]) -> None:
        request = job.request
        resource = request.get("ResourceConfig") or {}
        (layout.config_dir / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
        (layout.config_dir / "resourceconfig.json").write_text(json.dumps(_resource_config(resource)))
        (layout.config_dir / "inputdataconfig.json").write_text(json.dumps(_input_data_config(request)))

    def _script_environment(
        self,
        job: _TrainingJob,
        layout: _Layout,
        program: str,
        submit_directory: str,
        user_hyperparameters: Mapping[str, Any],
        user_args: list[str],
    ) -> dict[str, str]:
        request = job.request
        account_id, region, name = job.key
        channels = sorted(c["ChannelName"] for c in request.get("InputDataConfig") or [])
        resource = _resource_config(request.get("ResourceConfig") or {})
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        environment.update({str(k): str(v) for k, v in (request.get("Environment") or {}).items()})
        python_path = [str(layout.code_dir), *filter(None, [environment.get("PYTHONPATH")])]
        environment.update(
            {
                "PYTHONPATH": os.pathsep.join(python_path),
                "PYTHONUNBUFFERED": "1",
                "TRAINING_JOB_NAME": name,
                "TRAINING_JOB_ARN": _arn("training-job", name, account_id, region),
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "SM_MODEL_DIR": str(layout.model_dir),
                "SM_INPUT_DIR": str(layout.input_dir),
                "SM_INPUT_CONFIG_DIR": str(layout.config_dir),
                "SM_INPUT_DATA_CONFIG": json.dumps(_input_data_config(request)),
                "SM_OUTPUT_DIR": str(layout.output_dir),
                "SM_OUTPUT_DATA_DIR": str(layout.output_data_dir),
                "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.intermediate_dir),
                "SM_CHANNELS": json.dumps(channels),
                "SM_HPS": json.dumps(dict(user_hyperparameters)),
                "SM_USER_ARGS": json.dumps(user_args),
                "SM_USER_ENTRY_POINT": program,
                "SM_MODULE_NAME": Path(program).stem,
                "SM_MODULE_DIR": submit_directory,
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

    def _upload_outputs(self, job: _TrainingJob, layout: _Layout) -> None:
        output = job.request["OutputDataConfig"]
        bucket, model_key = split_s3_uri(job.model_artifacts)
        extra = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": output["KmsKeyId"]}
            if output.get("KmsKeyId")
            else {"ServerSideEncryption": "AES256"}
        )
        uploads = [(layout.model_dir, model_key)]
        if any(layout.output_data_dir.iterdir()):
            uploads.append((layout.output_data_dir, model_key.rsplit("/", 1)[0] + "/output.tar.gz"))
        for directory, key in uploads:
            archive = layout.root.parent / PurePosixPath(key).name
            _tar_directory(directory, archive)
            try:
                self._client_as("s3", job.request.get("RoleArn")).upload_file(
                    str(archive), bucket, key, ExtraArgs=extra
                )
            except (ClientError, BotoCoreError) as exc:
                raise _TrainingFailure(f"ClientError: could not upload s3://{bucket}/{key}: {exc}") from exc

    # ------------------------------------------------------------------ hosting

    def create_endpoint(
        self,
        request: Mapping[str, Any],
        endpoint_config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
        *,
        account_id: str,
        region: str,
    ) -> EndpointView:
        """Start the model servers of ``endpoint_config`` for a new endpoint (status Creating).

        ``endpoint_config`` is a DescribeEndpointConfig-shaped dict; ``models`` maps each
        variant's ModelName to its CreateModel request (``PrimaryContainer`` or ``Containers``).
        """
        validate_request("CreateEndpoint", request)
        name = request["EndpointName"]
        key = (account_id, region, name)
        with self._lock:
            if self._closing.is_set():
                raise LocalSageMakerError("the local SageMaker engine is shut down")
            if key in self._endpoints:
                raise SageMakerValidationError(
                    f'Cannot create already existing endpoint "{_arn("endpoint", name, account_id, region)}".'
                )
            endpoint = _Endpoint(
                key=key,
                arn=_arn("endpoint", name, account_id, region),
                config_name=endpoint_config["EndpointConfigName"],
                config=copy.deepcopy(dict(endpoint_config)),
            )
            self._endpoints[key] = endpoint
            generation = endpoint.generation
        self._spawn(
            self._deploy,
            f"stepml-sm-deploy-{name}",
            endpoint,
            generation,
            copy.deepcopy(dict(endpoint_config)),
            copy.deepcopy(dict(models)),
            False,
        )
        return self._view(endpoint)

    def update_endpoint(
        self,
        request: Mapping[str, Any],
        endpoint_config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
        *,
        account_id: str,
        region: str,
    ) -> EndpointView:
        """Blue/green: start the new config's servers, then switch all traffic at once (status Updating)."""
        validate_request("UpdateEndpoint", request)
        name = request["EndpointName"]
        with self._lock:
            endpoint = self._endpoints.get((account_id, region, name))
            if endpoint is None:
                raise SageMakerValidationError(
                    f'Could not find endpoint "{_arn("endpoint", name, account_id, region)}".'
                )
            if endpoint.status != "InService":
                raise SageMakerValidationError(f'Cannot update in-progress endpoint "{endpoint.arn}".')
            endpoint.status = "Updating"
            endpoint.failure_reason = None
            endpoint.modified = _now()
            endpoint.generation += 1
            generation = endpoint.generation
        self._spawn(
            self._deploy,
            f"stepml-sm-update-{name}",
            endpoint,
            generation,
            copy.deepcopy(dict(endpoint_config)),
            copy.deepcopy(dict(models)),
            True,
            copy.deepcopy(request.get("DeploymentConfig")),
        )
        return self._view(endpoint)

    def delete_endpoint(self, name: str, *, account_id: str, region: str) -> None:
        """Stop the endpoint's model servers (refusing connections) and flush its captured data."""
        with self._lock:
            endpoint = self._endpoints.pop((account_id, region, name), None)
            if endpoint is None:
                raise SageMakerValidationError(
                    f'Could not find endpoint "{_arn("endpoint", name, account_id, region)}".'
                )
            endpoint.generation += 1  # a deployment still starting sees this and stops its servers
            deployment, endpoint.deployment = endpoint.deployment, None
            endpoint.status = "Deleting"
        if deployment is not None:
            self._retire(deployment)

    def describe_endpoint(self, name: str, *, account_id: str, region: str) -> EndpointView | None:
        """The endpoint's current state, or None when this engine does not host it."""
        endpoint = self._endpoints.get((account_id, region, name))
        return self._view(endpoint) if endpoint else None

    def wait_for_endpoint(self, name: str, *, account_id: str, region: str, timeout: float = 60) -> EndpointView:
        """Block until the endpoint is InService or Failed (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.describe_endpoint(name, account_id=account_id, region=region)
            if view is None:
                raise LocalSageMakerError(f"endpoint {name} is not hosted by this engine")
            if view.status in ("InService", "Failed"):
                return view
            if time.monotonic() > deadline:
                raise LocalSageMakerError(f"endpoint {name} still {view.status} after {timeout} s")
            time.sleep(0.02)

    def _view(self, endpoint: _Endpoint) -> EndpointView:
        with self._lock:
            deployment = endpoint.deployment
            variants = endpoint.config.get("ProductionVariants") or []
            capture = _CaptureSettings.from_config(endpoint.config.get("DataCaptureConfig"))
            addresses = {v.name: v.server.url for v in deployment.variants} if deployment else {}
            production_variants = tuple(
                {
                    "VariantName": variant["VariantName"],
                    "CurrentWeight": float(variant.get("InitialVariantWeight", 1.0)),
                    "DesiredWeight": float(variant.get("InitialVariantWeight", 1.0)),
                    "CurrentInstanceCount": int(variant.get("InitialInstanceCount", 1)),
                    "DesiredInstanceCount": int(variant.get("InitialInstanceCount", 1)),
                }
                for variant in variants
            )
            return EndpointView(
                name=endpoint.name,
                status=endpoint.status,
                config_name=endpoint.config_name,
                failure_reason=endpoint.failure_reason,
                production_variants=production_variants if deployment else (),
                data_capture=capture.summary() if capture else None,
                last_modified=endpoint.modified,
                addresses=addresses,
            )

    def _is_current(self, endpoint: _Endpoint, generation: int) -> bool:
        return self._endpoints.get(endpoint.key) is endpoint and endpoint.generation == generation

    def _deploy(
        self,
        endpoint: _Endpoint,
        generation: int,
        config: dict[str, Any],
        models: dict[str, dict[str, Any]],
        is_update: bool,
        deployment_config: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            deployment = self._start_deployment(endpoint, generation, config, models)
        except _DeploymentFailure as exc:
            with self._lock:
                if self._is_current(endpoint, generation):
                    endpoint.failure_reason = _truncate_reason(str(exc))
                    endpoint.status = "InService" if is_update else "Failed"
                    endpoint.modified = _now()
            return
        alarms = _rollback_alarms(deployment_config) if is_update else []
        with self._lock:
            current = self._is_current(endpoint, generation)
            previous = None
            if current:
                # Traffic moves to the new fleet at once; with alarms to watch the update is
                # done only when the baking period passes without one in ALARM.
                previous, endpoint.deployment = endpoint.deployment, deployment
                if not alarms:
                    self._complete_update(endpoint, config)
        if not current:
            self._retire(deployment)
            return
        if alarms:
            variants = config.get("ProductionVariants") or [{}]
            role_arn = (models.get(variants[0].get("ModelName", "")) or {}).get("ExecutionRoleArn")
            reason = self._watch_alarms(endpoint, generation, alarms, role_arn, _baking_seconds(deployment_config))
            with self._lock:
                current = self._is_current(endpoint, generation)
                if current and reason is None:
                    self._complete_update(endpoint, config)
                elif current:  # roll back: the old fleet takes the traffic again
                    endpoint.deployment = previous
                    endpoint.status = "InService"
                    endpoint.failure_reason = _truncate_reason(reason)
                    endpoint.modified = _now()
            if not current:
                # Deleted while baking: the delete retired the new fleet; the old one is this thread's.
                if previous is not None:
                    self._retire(previous)
                return
            if reason is not None:
                self._retire(deployment)
                return
        if previous is not None:
            self._retire(previous)

    def _complete_update(self, endpoint: _Endpoint, config: dict[str, Any]) -> None:
        """The endpoint is InService on ``config`` (under ``self._lock``)."""
        endpoint.config_name = config["EndpointConfigName"]
        endpoint.config = config
        endpoint.status = "InService"
        endpoint.failure_reason = None
        endpoint.modified = _now()

    def _watch_alarms(
        self, endpoint: _Endpoint, generation: int, names: list[str], role_arn: str | None, seconds: float
    ) -> str | None:
        """Read the auto-rollback alarms (under the model's execution role) until the baking period
        ends; None when none was in ALARM, else why the update rolls back."""
        cloudwatch = self._client_as("cloudwatch", role_arn)
        deadline = time.monotonic() + seconds
        while True:
            try:
                answer = cloudwatch.describe_alarms(AlarmNames=names)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                return (
                    f"Endpoint update failed: the auto-rollback alarms {', '.join(names)} could not be read with the "
                    f"execution role {role_arn}, which needs cloudwatch:DescribeAlarms on them "
                    f"({error.get('Code')}: {error.get('Message')})"
                )
            except BotoCoreError as exc:
                return f"Endpoint update failed: the auto-rollback alarms could not be read: {exc}"
            found = [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
            firing = sorted(alarm["AlarmName"] for alarm in found if alarm.get("StateValue") == "ALARM")
            if firing:
                return (
                    f"Endpoint update rolled back: the auto-rollback alarm(s) {', '.join(firing)} went into ALARM "
                    "state during the deployment; all traffic was shifted back to the previous endpoint configuration."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._is_current(endpoint, generation):
                return None
            if self._closing.wait(min(self._alarm_poll_seconds, remaining)):
                return None

    def _start_deployment(
        self, endpoint: _Endpoint, generation: int, config: dict[str, Any], models: dict[str, dict[str, Any]]
    ) -> _Deployment:
        name = endpoint.name
        if failure := faults.trigger("sagemaker:Endpoint", name):
            raise _DeploymentFailure(failure)
        work_dir = Path(tempfile.mkdtemp(prefix=f"endpoint-{name[:40]}-", dir=self._work_dir))
        capture = _CaptureSettings.from_config(config.get("DataCaptureConfig"))
        variants: list[_Variant] = []
        logs: list[telemetry.LogStream] = []
        try:
            for production_variant in config.get("ProductionVariants") or []:
                variant_name = production_variant["VariantName"]
                model_name = production_variant["ModelName"]
                model_dir = work_dir / variant_name
                environment = self._prepare_model(models.get(model_name), model_name, variant_name, model_dir)
                role_arn = (models.get(model_name) or {}).get("ExecutionRoleArn")
                instance_id = _instance_id()
                log = telemetry.LogStream(
                    self._client_as("logs", role_arn),
                    ENDPOINT_LOG_GROUP_PREFIX + name,
                    f"{variant_name}/{instance_id}",
                    describe_first=True,
                )
                logs.append(log)
                log.add(f"Starting the model server of model {model_name} (sagemaker-xgboost 1.7-1) on {instance_id}")
                server = ModelServer(model_dir, environment=environment, name=f"{name}-{variant_name}")
                try:
                    server.start()
                except ModelServerError as exc:
                    log.add(f"The model server could not start: {exc}")
                    raise _DeploymentFailure(
                        f"The model server for production variant {variant_name} could not start: {exc}"
                    ) from exc
                buffer = _CaptureBuffer(name, variant_name, capture, role_arn) if capture else None
                variants.append(
                    _Variant(
                        variant_name,
                        model_name,
                        float(production_variant.get("InitialVariantWeight", 1.0)),
                        server,
                        buffer,
                        instance_id,
                        log,
                    )
                )
            if not variants:
                raise _DeploymentFailure("The endpoint configuration has no production variants.")
            self._wait_healthy(endpoint, generation, variants)
        except BaseException:
            for variant in variants:
                variant.server.stop()
            for log in logs:
                log.flush()
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        deployment = _Deployment(config["EndpointConfigName"], variants, capture, work_dir)
        for log in logs:
            log.flush()
        with self._lock:
            self._capture_buffers.update(v.capture for v in variants if v.capture)
            self._endpoint_logs.update(logs)
        self._ensure_flusher()
        return deployment

    def _prepare_model(
        self, model: Mapping[str, Any] | None, model_name: str, variant_name: str, model_dir: Path
    ) -> dict[str, str]:
        if model is None:
            raise _DeploymentFailure(f'Could not find model "{model_name}" for production variant {variant_name}.')
        containers = model.get("Containers") or []
        if len(containers) > 1:
            raise _DeploymentFailure(
                f"Model {model_name}: inference pipelines (several Containers) are not supported by the local cloud"
            )
        container = model.get("PrimaryContainer") or (containers[0] if containers else {})
        image = container.get("Image") or ""
        match = BUILTIN_XGBOOST_IMAGE.match(image)
        if not match or match.group("tag") not in SUPPORTED_XGBOOST_TAGS:
            raise _DeploymentFailure(
                f"Model {model_name}: image {image or '(none)'} cannot be served locally: the local cloud serves "
                "models of the sagemaker-xgboost:1.7-1 image"
            )
        try:
            _authorize_image_pull(model.get("ExecutionRoleArn"), image)
        except AccessDeniedError as denied:
            raise _DeploymentFailure(f"Model {model_name}: cannot pull image {image}: {denied}") from denied
        url = container.get("ModelDataUrl")
        if not url:
            raise _DeploymentFailure(f"Model {model_name} has no ModelDataUrl: there is no model to serve.")
        archive = model_dir.parent / f"{variant_name}.tar.gz"
        try:
            self._download(url, archive, model.get("ExecutionRoleArn"))
            _safe_extract(archive, model_dir)
        except (ClientError, BotoCoreError, LocalSageMakerError, tarfile.TarError, OSError) as exc:
            raise _DeploymentFailure(
                f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure '
                "that there is an object located at the URL and that the role passed to CreateModel has "
                f"permissions to download the object. ({exc})"
            ) from exc
        finally:
            archive.unlink(missing_ok=True)
        return {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}

    def _wait_healthy(self, endpoint: _Endpoint, generation: int, variants: list[_Variant]) -> None:
        deadline = time.monotonic() + self._health_check_timeout
        pending = list(variants)
        while pending:
            if self._closing.wait(self._health_check_interval) or not self._is_current(endpoint, generation):
                raise _DeploymentFailure("The endpoint was deleted or updated while it was being created.")
            for variant in list(pending):
                try:
                    status = variant.server.ping()
                except OSError:
                    status = 0
                if status == 200:
                    pending.remove(variant)
                    if variant.log is not None:
                        variant.log.add("Model loaded: the container answers GET /ping with 200")
                elif variant.server.load_error is not None:
                    if variant.log is not None:
                        variant.log.add(f"Model loading failed: {variant.server.load_error}")
                    raise _DeploymentFailure(
                        f"The primary container for production variant {variant.name} did not pass the ping health "
                        f"check. Please check CloudWatch logs for this endpoint. (local model server: "
                        f"{variant.server.load_error})"
                    )
            if pending and time.monotonic() > deadline:
                raise _DeploymentFailure(
                    f"The primary container for production variant {pending[0].name} did not pass the ping health "
                    f"check within {self._health_check_timeout:g} s."
                )

    def _retire(self, deployment: _Deployment) -> None:
        deployment.retire(self._drain_timeout)
        for variant in deployment.variants:
            variant.server.stop()
            if variant.log is not None:
                with self._lock:
                    self._endpoint_logs.discard(variant.log)
                variant.log.add("The model server stopped")
                variant.log.flush()
            if variant.capture is not None:
                with self._lock:
                    self._capture_buffers.discard(variant.capture)
                self._flush_capture(variant.capture)
        shutil.rmtree(deployment.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ invocations

    def invoke_endpoint(
        self,
        name: str,
        body: bytes,
        *,
        account_id: str,
        region: str,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
    ) -> InvocationResult:
        """Forward one request to the endpoint's current model server, capturing it if configured."""
        if len(body) > MAX_INVOCATION_BYTES:
            raise SageMakerValidationError(
                f"Value at 'body' failed to satisfy constraint: Member must have length less than or equal to "
                f"{MAX_INVOCATION_BYTES}"
            )
        endpoint = self._endpoints.get((account_id, region, name))
        while True:
            deployment = endpoint.deployment if endpoint else None
            if deployment is None:
                raise EndpointNotFoundError(f"Endpoint {name} of account {account_id} not found.")
            if deployment.acquire():
                break
            # The deployment retired between the read and the acquire: its successor is in place.
        started = _now()
        try:
            variant = deployment.choose(target_variant)
            status, response_body, response_type = _post_invocation(
                variant.server.port, body, content_type, accept, custom_attributes
            )
        finally:
            deployment.release()
        log_stream = (
            f"arn:aws:logs:{region}:{account_id}:log-group:{ENDPOINT_LOG_GROUP_PREFIX}{name}:"
            f"log-stream:{variant.name}/{variant.instance_id}"
        )
        if status >= 400 or status == 0:
            message = response_body.decode("utf-8", errors="replace")
            if variant.log is not None:
                variant.log.add(f"POST /invocations answered {status}: {message}")
            kind = "client" if 400 <= status < 500 else "server"
            raise ModelInvocationError(
                f'Received {kind} error ({status}) from primary with message "{message}". See '
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group="
                f"/aws/sagemaker/Endpoints/{name} in account {account_id} for more information.",
                original_status=status,
                original_message=message,
                log_stream_arn=log_stream,
            )
        if variant.capture is not None:
            self._capture(variant.capture, started, body, content_type, response_body, response_type, inference_id)
        return InvocationResult(response_body, response_type, variant.name)

    def _capture(
        self,
        buffer: _CaptureBuffer,
        when: datetime,
        request_body: bytes,
        request_type: str | None,
        response_body: bytes,
        response_type: str,
        inference_id: str | None,
    ) -> None:
        settings = buffer.settings
        if random.random() * 100 >= settings.sampling_percentage:
            return
        capture_data: dict[str, Any] = {}
        if "INPUT" in settings.modes:
            capture_data["endpointInput"] = settings.encode("INPUT", request_type, request_body)
        if "OUTPUT" in settings.modes:
            capture_data["endpointOutput"] = settings.encode("OUTPUT", response_type, response_body)
        metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if inference_id:
            metadata["inferenceId"] = inference_id
        buffer.add(when, {"captureData": capture_data, "eventMetadata": metadata, "eventVersion": "0"})

    def _ensure_flusher(self) -> None:
        with self._lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_loop, name="stepml-sm-capture", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closing.wait(self._capture_flush_seconds):
            with self._lock:
                buffers = list(self._capture_buffers)
                logs = list(self._endpoint_logs)
            for buffer in buffers:
                self._flush_capture(buffer)
            for log in logs:
                log.flush()

    def _flush_capture(self, buffer: _CaptureBuffer) -> None:
        events = buffer.drain()
        if not events:
            return
        settings = buffer.settings
        try:
            bucket, prefix = split_s3_uri(settings.destination)
        except LocalSageMakerError:
            LOGGER.warning(
                "data capture of %s dropped: bad DestinationS3Uri %r", buffer.endpoint_name, settings.destination
            )
            return
        by_hour: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
        for when, record in events:
            by_hour.setdefault(when.strftime("%Y/%m/%d/%H"), []).append((when, record))
        extra = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id}
            if settings.kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )
        for hour, hour_events in by_hour.items():
            first = hour_events[0][0]
            file_name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            key = "/".join(
                filter(None, [prefix.rstrip("/"), buffer.endpoint_name, buffer.variant_name, hour, file_name])
            )
            body = "".join(json.dumps(record, separators=(",", ":")) + "\n" for _, record in hour_events)
            try:
                self._client_as("s3", buffer.role_arn).put_object(
                    Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/jsonlines", **extra
                )
            except (ClientError, BotoCoreError) as exc:
                LOGGER.warning("data capture file s3://%s/%s could not be written: %s", bucket, key, exc)

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every training job, model server and background thread; flush captured data."""
        self._closing.set()
        with self._lock:
            jobs = list(self._jobs.values())
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for job in jobs:
            job.stop_requested.set()
            if job.process is not None:
                _terminate(job.process)
        for endpoint in endpoints:
            with self._lock:
                endpoint.generation += 1
                deployment, endpoint.deployment = endpoint.deployment, None
            if deployment is not None:
                self._retire(deployment)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [*self._workers, *([self._flusher] if self._flusher else [])]
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            buffers = list(self._capture_buffers)
            self._capture_buffers.clear()
        for buffer in buffers:
            self._flush_capture(buffer)
        if self._owns_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def __enter__(self) -> LocalSageMaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


_CUSTOMER_ERROR_HINTS = ("label must be", "Label must be", "num_class", "base_score", "feature", "Invalid Parameter")


_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)


def _authorize_image_pull(role_arn: str | None, image: str) -> None:
    """SageMaker pulls a job's or model's image with the execution role: the role needs ECR's
    pull actions on the repository (and GetAuthorizationToken, which has no resource)."""
    authorizer = iam_hooks.active()
    match = _ECR_IMAGE.match(image or "")
    if authorizer is None or not role_arn or not match:
        return
    repository = f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"
    authorizer.require_role(
        role_arn,
        SAGEMAKER_SESSION,
        [
            AuthorizationRequest("ecr:GetAuthorizationToken", "*"),
            AuthorizationRequest("ecr:BatchCheckLayerAvailability", repository),
            AuthorizationRequest("ecr:GetDownloadUrlForLayer", repository),
            AuthorizationRequest("ecr:BatchGetImage", repository),
        ],
        service="sagemaker",
    )


def _rollback_alarms(deployment_config: Mapping[str, Any] | None) -> list[str]:
    """The names of an UpdateEndpoint's auto-rollback alarms."""
    rollback = (deployment_config or {}).get("AutoRollbackConfiguration") or {}
    return [alarm["AlarmName"] for alarm in rollback.get("Alarms") or [] if alarm.get("AlarmName")]


def _baking_seconds(deployment_config: Mapping[str, Any] | None) -> float:
    """The baking period after traffic moved: the blue/green policy's (or rolling policy's)
    WaitIntervalInSeconds."""
    config = deployment_config or {}
    blue_green = (config.get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration") or {}
    rolling = config.get("RollingUpdatePolicy") or {}
    return float(blue_green.get("WaitIntervalInSeconds", rolling.get("WaitIntervalInSeconds", 0)) or 0)


def _container_line(message: str, level: str = "INFO") -> str:
    """A log line in the format of the XGBoost container's Python logging."""
    return f"[{_now():%Y-%m-%d %H:%M:%S.%f}:{level}:root] {message}"


def _round_logger(job: _TrainingJob) -> Any:
    """An xgboost callback that logs each round's evaluation as the container does
    (``[3]#011train-auc:0.91234#011validation-auc:0.88765``: rsyslog writes tabs as #011), the
    lines the built-in algorithm's metric regexes read."""
    import xgboost as xgb

    class RoundLogger(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            parts = [
                f"{data}-{metric}:{values[-1]:.5f}"
                for data, per_metric in evals_log.items()
                for metric, values in per_metric.items()
                if values
            ]
            job.log.add("#011".join([f"[{epoch}]", *parts]))
            return False

    return RoundLogger()


def _xgboost_message(exc: Exception) -> str:
    """xgboost's error without the native stack trace and the ``[time] file:line:`` prefix."""
    first = str(exc).split("Stack trace:")[0].strip()
    return re.sub(r"^\[[0-9:]+\] [^ ]+:\d+: ", "", first)


def _stop_check(job: _TrainingJob) -> Any:
    """An xgboost callback that stops between boosting rounds when the job is stopped or out of time."""
    import xgboost as xgb

    class StopCheck(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            job.check()
            return False

    return StopCheck()


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM the process group (as SageMaker does when it stops a job), SIGKILL after 2 s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _resource_config(resource: Mapping[str, Any]) -> dict[str, Any]:
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


def _input_data_config(request: Mapping[str, Any]) -> dict[str, Any]:
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


def _script_metrics(definitions: list[Mapping[str, str]], logs: str) -> list[dict[str, Any]]:
    """SageMaker's metric extraction: the last match of each MetricDefinitions regex in the job's logs."""
    metrics = []
    timestamp = _now()
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


def _post_invocation(
    port: int, body: bytes, content_type: str | None, accept: str | None, custom_attributes: str | None
) -> tuple[int, bytes, str]:
    headers = {"Content-Length": str(len(body))}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=INVOCATION_TIMEOUT_SECONDS)
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    except TimeoutError:
        return (
            0,
            (
                b"Your invocation timed out while waiting for a response from container primary. Review the latency "
                b"metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
            ),
            "",
        )
    except OSError as exc:
        return 503, f"the local model server is not reachable: {exc}".encode(), ""
    finally:
        connection.close()


# --------------------------------------------------------------------------- moto hooks

_active_engine: LocalSageMaker | None = None
_hooks_installed = False
_hooks_lock = threading.Lock()


def install_moto_hooks(engine: LocalSageMaker | None = None) -> Callable[[], None]:
    """Route moto's SageMaker and sagemaker-runtime backends through ``engine``; returns the undo.

    The undo detaches the engine (the patches stay, inert). Without ``engine`` the patches
    are installed but inert (moto behaves as before) until an engine is attached by a later
    call, so ``install_moto_hooks`` with no argument can also sit in ``moto_patches.PATCHES``.

    Patches (once per process; later calls only switch the engine):
    ``SageMakerModelBackend.create_training_job`` / ``describe_training_job`` /
    ``list_training_jobs`` (real jobs and their statuses), ``create_model`` /
    ``create_endpoint_config`` (request validation, duplicate names), ``create_endpoint`` /
    ``describe_endpoint`` / ``list_endpoints`` / ``delete_endpoint`` (real model servers),
    and adds ``update_endpoint`` and ``stop_training_job``, which moto 5.2.5 lacks (backend
    methods plus ``SageMakerResponse`` actions). ``SageMakerRuntimeResponse.invoke_endpoint``
    forwards to the engine's model servers. With no engine installed (``uninstall_moto_hooks``)
    every patched method falls back to moto's own behaviour.
    """
    global _active_engine, _hooks_installed
    with _hooks_lock:
        if engine is not None:
            _active_engine = engine
        if not _hooks_installed:
            _patch_moto()
            _hooks_installed = True
    return functools.partial(uninstall_moto_hooks, engine) if engine is not None else _nothing_to_undo


def _nothing_to_undo() -> None:
    return None


def uninstall_moto_hooks(engine: LocalSageMaker | None = None) -> None:
    """Detach ``engine`` (or whichever is installed): moto's canned behaviour returns."""
    global _active_engine
    with _hooks_lock:
        if engine is None or _active_engine is engine:
            _active_engine = None


def _engine() -> LocalSageMaker | None:
    return _active_engine


def _request_from_kwargs(operation: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the API request from the snake_case arguments moto's responses pass to its backend."""
    from moto.core.utils import camelcase_to_underscores

    members = botocore_models.operation_model("sagemaker", operation).input_shape.members
    request = {}
    for member in members:
        value = kwargs.get(camelcase_to_underscores(member))
        if value is not None:
            request[member] = copy.deepcopy(value)
    return request


def _naive_utc(moment: datetime) -> datetime:
    # moto keeps naive UTC datetimes and compares them in its List* filters.
    return moment.astimezone(UTC).replace(tzinfo=None)


def _sync_training_job(fake: Any, view: TrainingJobView) -> None:
    fake.training_job_status = view.status
    fake.secondary_status = view.secondary_status
    fake.secondary_status_transitions = [
        {k: _naive_utc(v) if isinstance(v, datetime) else v for k, v in t.items()} for t in view.transitions
    ]
    fake.failure_reason = view.failure_reason
    fake.training_start_time = _naive_utc(view.start_time) if view.start_time else None
    fake.training_end_time = _naive_utc(view.end_time) if view.end_time else None
    fake.final_metric_data_list = [{**m, "Timestamp": _naive_utc(m["Timestamp"])} for m in view.final_metrics]
    fake.model_artifacts = {"S3ModelArtifacts": view.model_artifacts}
    api = view.as_api()
    fake.training_time_in_seconds = api.get("TrainingTimeInSeconds")
    fake.billable_time_in_seconds = api.get("BillableTimeInSeconds")
    fake.last_modified_time = _naive_utc(view.end_time or view.start_time or _now())


def _sync_endpoint(fake: Any, view: EndpointView) -> None:
    fake.endpoint_status = view.status
    fake.failure_reason = view.failure_reason
    fake.endpoint_config_name = view.config_name
    fake.production_variants = [dict(v) for v in view.production_variants] or None
    fake.data_capture_config = view.data_capture
    fake.last_modified_time = _naive_utc(view.last_modified)


def _model_requests(backend: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from moto.sagemaker.exceptions import ValidationError as MotoValidationError

    models = {}
    for variant in config.get("ProductionVariants") or []:
        model_name = variant["ModelName"]
        model = backend._models.get(model_name)
        if model is None:
            arn = _arn("model", model_name, backend.account_id, backend.region_name)
            raise MotoValidationError(message=f'Could not find model "{arn}".')
        models[model_name] = {
            "ModelName": model_name,
            "ExecutionRoleArn": model.execution_role_arn,
            "PrimaryContainer": copy.deepcopy(model.primary_container or {}),
            "Containers": copy.deepcopy(model.containers or []),
        }
    return models


@contextlib.contextmanager
def _as_moto_errors() -> Iterator[None]:
    from moto.sagemaker.exceptions import ResourceInUseException
    from moto.sagemaker.exceptions import ValidationError as MotoValidationError

    try:
        yield
    except SageMakerValidationError as exc:
        raise MotoValidationError(message=str(exc)) from exc
    except ResourceInUseError as exc:
        raise ResourceInUseException(message=str(exc)) from exc


def _patch_moto() -> None:
    from moto.core.exceptions import JsonRESTError, ServiceException
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker.exceptions import ValidationError as MotoValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    backend_cls = SageMakerModelBackend

    def throttled(message: str) -> Exception:
        # Not an error shape of SageMaker's model: Step Functions names it SageMaker.AmazonSageMakerException.
        return JsonRESTError("ThrottlingException", message)

    def wrap(name: str, replacement: Callable[..., Any]) -> None:
        original = getattr(backend_cls, name)

        @functools.wraps(original)
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            engine = _engine()
            if engine is None:
                return original(self, *args, **kwargs)
            return replacement(engine, original, self, *args, **kwargs)

        setattr(backend_cls, name, patched)

    def create_training_job(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
        request = _request_from_kwargs("CreateTrainingJob", kwargs)
        name = request.get("TrainingJobName")
        if message := faults.trigger("sagemaker:CreateTrainingJob", str(name)):
            raise throttled(message)
        if name in backend.training_jobs:
            with _as_moto_errors():
                raise ResourceInUseError(
                    "Training job names must be unique within an AWS account and region, and a training job with "
                    f"this name already exists ({backend.training_jobs[name].arn})"
                )
        with _as_moto_errors():
            view = engine.create_training_job(request, account_id=backend.account_id, region=backend.region_name)
        fake = original(backend, **kwargs)
        # moto writes a made-up MetricDefinitions into the specification; keep the caller's.
        fake.algorithm_specification = copy.deepcopy(request["AlgorithmSpecification"])
        _sync_training_job(fake, view)
        return fake

    def describe_training_job(engine: LocalSageMaker, original: Any, backend: Any, training_job_name: str) -> Any:
        view = engine.describe_training_job(
            training_job_name, account_id=backend.account_id, region=backend.region_name
        )
        if view is not None and training_job_name in backend.training_jobs:
            _sync_training_job(backend.training_jobs[training_job_name], view)
        return original(backend, training_job_name)

    def list_training_jobs(engine: LocalSageMaker, original: Any, backend: Any, *args: Any, **kwargs: Any) -> Any:
        for name, fake in backend.training_jobs.items():
            view = engine.describe_training_job(name, account_id=backend.account_id, region=backend.region_name)
            if view is not None:
                _sync_training_job(fake, view)
        return original(backend, *args, **kwargs)

    def create_model(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
        request = _request_from_kwargs("CreateModel", kwargs)
        if request.get("ModelName") in backend._models:
            arn = backend._models[request["ModelName"]].arn
            raise MotoValidationError(message=f'Cannot create already existing model "{arn}".')
        with _as_moto_errors():
            validate_request("CreateModel", request)
        return original(backend, **kwargs)

    def create_endpoint_config(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
        request = _request_from_kwargs("CreateEndpointConfig", kwargs)
        name = request.get("EndpointConfigName")
        if name in backend.endpoint_configs:
            arn = backend.endpoint_configs[name].endpoint_config_arn
            raise MotoValidationError(message=f'Cannot create already existing endpoint configuration "{arn}".')
        with _as_moto_errors():
            validate_request("CreateEndpointConfig", request)
        return original(backend, **kwargs)

    def create_endpoint(engine: LocalSageMaker, original: Any, backend: Any, **kwargs: Any) -> Any:
        request = _request_from_kwargs("CreateEndpoint", kwargs)
        name = request.get("EndpointName")
        if message := faults.trigger("sagemaker:CreateEndpoint", str(name)):
            raise throttled(message)
        if name in backend.endpoints:
            raise MotoValidationError(
                message=f'Cannot create already existing endpoint "{backend.endpoints[name].arn}".'
            )
        with _as_moto_errors():
            validate_request("CreateEndpoint", request)
        config = backend.describe_endpoint_config(request["EndpointConfigName"])
        models = _model_requests(backend, config)
        with _as_moto_errors():
            view = engine.create_endpoint(
                request, config, models, account_id=backend.account_id, region=backend.region_name
            )
        fake = original(backend, **kwargs)
        _sync_endpoint(fake, view)
        return fake

    def describe_endpoint(engine: LocalSageMaker, original: Any, backend: Any, endpoint_name: str) -> Any:
        view = engine.describe_endpoint(endpoint_name, account_id=backend.account_id, region=backend.region_name)
        if view is not None and endpoint_name in backend.endpoints:
            _sync_endpoint(backend.endpoints[endpoint_name], view)
        return original(backend, endpoint_name)

    def list_endpoints(engine: LocalSageMaker, original: Any, backend: Any, *args: Any, **kwargs: Any) -> Any:
        for name, fake in backend.endpoints.items():
            view = engine.describe_endpoint(name, account_id=backend.account_id, region=backend.region_name)
            if view is not None:
                _sync_endpoint(fake, view)
        return original(backend, *args, **kwargs)

    def delete_endpoint(engine: LocalSageMaker, original: Any, backend: Any, endpoint_name: str) -> Any:
        if message := faults.trigger("sagemaker:DeleteEndpoint", str(endpoint_name)):
            raise throttled(message)
        if engine.describe_endpoint(endpoint_name, account_id=backend.account_id, region=backend.region_name):
            with _as_moto_errors():
                engine.delete_endpoint(endpoint_name, account_id=backend.account_id, region=backend.region_name)
        return original(backend, endpoint_name)

    for name, replacement in {
        "create_training_job": create_training_job,
        "describe_training_job": describe_training_job,
        "list_training_jobs": list_training_jobs,
        "create_model": create_model,
        "create_endpoint_config": create_endpoint_config,
        "create_endpoint": create_endpoint,
        "describe_endpoint": describe_endpoint,
        "list_endpoints": list_endpoints,
        "delete_endpoint": delete_endpoint,
    }.items():
        wrap(name, replacement)

    # --- operations moto 5.2.5 does not implement at all

    def backend_update_endpoint(backend: Any, **kwargs: Any) -> Any:
        request = _request_from_kwargs("UpdateEndpoint", kwargs)
        name = request.get("EndpointName")
        fake = backend.endpoints.get(name)
        if fake is None:
            arn = _arn("endpoint", str(name), backend.account_id, backend.region_name)
            raise MotoValidationError(message=f'Could not find endpoint "{arn}".')
        engine = _engine()
        with _as_moto_errors():
            validate_request("UpdateEndpoint", request)
        config = backend.describe_endpoint_config(request["EndpointConfigName"])
        if engine is None:  # without the engine, behave like moto: the update is done at once
            fake.endpoint_config_name = request["EndpointConfigName"]
            return fake
        models = _model_requests(backend, config)
        with _as_moto_errors():
            view = engine.update_endpoint(
                request, config, models, account_id=backend.account_id, region=backend.region_name
            )
        _sync_endpoint(fake, view)
        return fake

    def backend_stop_training_job(backend: Any, training_job_name: str) -> None:
        if training_job_name not in backend.training_jobs:
            arn = _arn("training-job", training_job_name, backend.account_id, backend.region_name)
            raise MotoValidationError(message=f"Could not find training job '{arn}'.")
        engine = _engine()
        if engine is None:
            backend.training_jobs[training_job_name].training_job_status = "Stopped"
            return
        with _as_moto_errors():
            engine.stop_training_job(training_job_name, account_id=backend.account_id, region=backend.region_name)

    backend_cls.update_endpoint = backend_update_endpoint
    backend_cls.stop_training_job = backend_stop_training_job

    def response_update_endpoint(self: Any) -> Any:
        fake = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            retain_all_variant_properties=self._get_param("RetainAllVariantProperties"),
            exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
            deployment_config=self._get_param("DeploymentConfig"),
            retain_deployment_config=self._get_param("RetainDeploymentConfig"),
        )
        return ActionResult({"EndpointArn": fake.arn})

    def response_stop_training_job(self: Any) -> Any:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    SageMakerResponse.update_endpoint = response_update_endpoint
    SageMakerResponse.stop_training_job = response_stop_training_job

    # --- sagemaker-runtime

    class RuntimeValidationError(ServiceException):
        code = "ValidationError"

    class RuntimeModelError(ServiceException):
        code = "ModelError"

    class RuntimeInternalFailure(ServiceException):
        code = "InternalFailure"

    original_invoke = SageMakerRuntimeResponse.invoke_endpoint

    @functools.wraps(original_invoke)
    def invoke_endpoint(self: Any) -> Any:
        engine = _engine()
        if engine is None:
            return original_invoke(self)
        from urllib.parse import unquote

        name = unquote(self.path.split("/")[2])
        body = self.raw_body if isinstance(self.raw_body, bytes) else (self.raw_body or "").encode("utf-8")
        headers = self.headers
        try:
            result = engine.invoke_endpoint(
                name,
                body,
                account_id=self.current_account,
                region=self.region,
                content_type=headers.get("Content-Type"),
                accept=headers.get("Accept"),
                custom_attributes=headers.get("X-Amzn-SageMaker-Custom-Attributes"),
                target_variant=headers.get("X-Amzn-SageMaker-Target-Variant"),
                inference_id=headers.get("X-Amzn-SageMaker-Inference-Id"),
            )
        except (EndpointNotFoundError, SageMakerValidationError) as exc:
            raise RuntimeValidationError(str(exc)) from exc
        except ModelInvocationError as exc:
            error = RuntimeModelError(str(exc))
            error.OriginalStatusCode = exc.original_status
            error.OriginalMessage = exc.original_message
            error.LogStreamArn = exc.log_stream_arn
            raise error from exc
        except LocalSageMakerError as exc:
            raise RuntimeInternalFailure(str(exc)) from exc
        response_headers = {
            "Content-Type": result.content_type or "application/octet-stream",
            "x-Amzn-Invoked-Production-Variant": result.invoked_variant,
        }
        return 200, response_headers, result.body

    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint
    # Payloads may be binary, which moto would fail to decode as UTF-8; moto's own
    # invoke_endpoint needs the decoded body, so raw bodies only while an engine is installed.
    SageMakerRuntimeResponse.use_raw_body = property(lambda self: _engine() is not None)
