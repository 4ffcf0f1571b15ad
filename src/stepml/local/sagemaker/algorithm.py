"""The built-in XGBoost algorithm (sagemaker-xgboost 1.7-1's algorithm mode), pure.

Folders and dicts in, a booster and metrics out: the hyperparameters are typed and checked
as the container does, the channels' CSV or LIBSVM files are read as the container reads
them, and ``xgboost`` (1.7.6, the container's version) trains with ``train`` and
``validation`` in the watchlist. Nothing here talks to S3, moto or threads; the training job
(``training``) downloads the channels, calls ``train`` and uploads the model. Every input
problem is a ``TrainingFailedError`` whose message is the job's FailureReason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepml.local.sagemaker.errors import TrainingFailedError, TrainingStoppedError
from stepml.utils import utc_now

# --------------------------------------------------------------------------- hyperparameters


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


# --------------------------------------------------------------------------- data


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

    from stepml.local.sagemaker import numeric_csv  # pandas: loaded when a job reads CSV

    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        return None
    delimiter = _csv_delimiter(lines[0][1])
    matrix = numeric_csv.read_matrix(text, delimiter, lines, label)
    first_feature = 2 if csv_weights == 1 else 1
    if matrix.shape[1] <= first_feature:
        raise TrainingFailedError(
            f"ClientError: {label} has {matrix.shape[1]} column(s): a label and features are needed"
        )
    labels = matrix[:, 0]
    missing = np.flatnonzero(np.isnan(labels))
    if missing.size:
        raise TrainingFailedError(f"ClientError: Missing label (column 1) in {label}, line {lines[missing[0]][0]}")
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
            raise TrainingFailedError(
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
            raise TrainingFailedError(
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


# --------------------------------------------------------------------------- training

#: xgboost errors that name data the customer can fix: the container reports them as ClientError.
_CUSTOMER_ERROR_HINTS = ("label must be", "Label must be", "num_class", "base_score", "feature", "Invalid Parameter")


def _nothing() -> None:
    return None


def _ignore(message: str) -> None:
    return None


@dataclass(frozen=True)
class TrainingResult:
    """What the algorithm produced: the booster (saved as ``xgboost-model``) and the final metrics."""

    booster: Any
    metrics: list[dict[str, Any]]


def train(
    channels: Mapping[str, Mapping[str, Any]],
    data_dir: Path,
    hyperparameters: Mapping[str, str],
    *,
    log: Callable[[str], None] = _ignore,
    check: Callable[[], None] = _nothing,
) -> TrainingResult:
    """Train as the container's algorithm mode does.

    ``channels`` maps each channel name to its InputDataConfig entry (``ContentType``), whose
    files are under ``data_dir/<channel>``; ``log`` receives the container's log lines and
    ``check`` is called between steps and boosting rounds (it raises ``TrainingStoppedError``
    to stop). Input problems raise ``TrainingFailedError`` with the container's reason.
    """
    try:
        config = parse_xgboost_hyperparameters(hyperparameters)
    except ValueError as exc:
        raise TrainingFailedError(f"ClientError: {exc}") from exc
    train_set, validation = _load_datasets(channels, data_dir, config.csv_weights, check)
    log(container_line("Single node training."))
    log(container_line(f"Train matrix has {train_set.rows} rows and {train_set.columns} columns"))
    if validation is not None:
        log(container_line(f"Validation matrix has {validation.rows} rows"))
    booster, results = _boost(config, train_set, validation, log, check)
    check()
    timestamp = utc_now()
    metrics = [
        {"MetricName": f"{data_name}:{metric}", "Value": float(values[-1]), "Timestamp": timestamp}
        for data_name, per_metric in results.items()
        for metric, values in per_metric.items()
        if values and math.isfinite(values[-1])
    ]
    return TrainingResult(booster, metrics)


def _load_datasets(
    channels: Mapping[str, Mapping[str, Any]], data_dir: Path, csv_weights: int, check: Callable[[], None]
) -> tuple[_Dataset, _Dataset | None]:
    extraneous = sorted(set(channels) - {"train", "validation"})
    if extraneous:
        raise TrainingFailedError(
            f"ClientError: Extraneous channel found: {extraneous[0]} (the algorithm reads train and validation)"
        )
    if "train" not in channels:
        raise TrainingFailedError("ClientError: Missing required channel: train")
    datasets: dict[str, _Dataset] = {}
    for name in ("train", "validation"):
        if name not in channels:
            continue
        try:
            content_format = _content_format(channels[name].get("ContentType"))
        except ValueError as exc:
            raise TrainingFailedError(f"ClientError: {exc}") from exc
        dataset = load_channel(data_dir / name, name, content_format, csv_weights)
        if dataset is None:
            label = "training" if name == "train" else "validation"
            raise TrainingFailedError(f"ClientError: No data in {label} channel path {data_dir / name}")
        datasets[name] = dataset
        check()
    train_set, validation = datasets["train"], datasets.get("validation")
    if validation is not None and validation.columns != train_set.columns and not hasattr(train_set.features, "tocsr"):
        raise TrainingFailedError(
            f"ClientError: Feature shape mismatch: the train channel has {train_set.columns} feature columns, the "
            f"validation channel {validation.columns}"
        )
    return train_set, validation


def _boost(
    config: XGBoostTrainingConfig,
    train_set: _Dataset,
    validation: _Dataset | None,
    log: Callable[[str], None],
    check: Callable[[], None],
) -> tuple[Any, dict[str, dict[str, list[float]]]]:
    import xgboost as xgb

    dtrain = xgb.DMatrix(train_set.features, label=train_set.labels, weight=train_set.weights)
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
            callbacks=[_stop_check(check), _round_logger(log)],
            verbose_eval=False,
        )
    except TrainingStoppedError:
        raise
    except xgb.core.XGBoostError as exc:
        message = _xgboost_message(exc)
        # As the container does: data the customer can fix is a ClientError, the rest AlgorithmError.
        kind = "ClientError" if any(hint in message for hint in _CUSTOMER_ERROR_HINTS) else "AlgorithmError"
        raise TrainingFailedError(f"{kind}: XGB train call failed with exception:\n {message}") from exc
    return booster, results


def container_line(message: str, level: str = "INFO") -> str:
    """A log line in the format of the XGBoost container's Python logging."""
    return f"[{utc_now():%Y-%m-%d %H:%M:%S.%f}:{level}:root] {message}"


def _round_logger(log: Callable[[str], None]) -> Any:
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
            log("#011".join([f"[{epoch}]", *parts]))
            return False

    return RoundLogger()


def _xgboost_message(exc: Exception) -> str:
    """xgboost's error without the native stack trace and the ``[time] file:line:`` prefix."""
    first = str(exc).split("Stack trace:")[0].strip()
    return re.sub(r"^\[[0-9:]+\] [^ ]+:\d+: ", "", first)


def _stop_check(check: Callable[[], None]) -> Any:
    """An xgboost callback that stops between boosting rounds when ``check`` raises."""
    import xgboost as xgb

    class StopCheck(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            check()
            return False

    return StopCheck()
