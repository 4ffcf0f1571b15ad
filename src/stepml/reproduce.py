"""Reproducing a run: what a reproduction must match, the model's hash, and why two runs differ.

A reproduction (``stepml runs reproduce``) is a new run of the same upload version with the
original's recorded config and hyperparameters (``lineage_runs.resolve_run`` pins them). This
module compares the two runs from lineage:

- the **model hash** is the SHA-256 of the model file inside ``model.tar.gz`` (``xgboost-model``
  for the built-in algorithm), not of the archive, whose gzip header and tar entries carry
  times that differ between two identical trainings;
- the **metrics** are the evaluation's, compared exactly (a reproduction on the same inputs
  scores the same rows with the same model);
- when either differs, ``differences`` names every lineage field that differs between the runs
  (data version and ETag, the data fingerprint, code version, dataset config, hyperparameters,
  seed, training image, the Glue job's PySpark version, row counts) so the report says why.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

from stepml.lineage_table import LineageError
from stepml.utils import S3ReadError, read_s3_object

#: The model file of the built-in XGBoost's model.tar.gz.
MODEL_FILE = "xgboost-model"
#: XGBoost's own default seed, which the built-in algorithm uses when ``seed`` is not set.
DEFAULT_SEED = "0"


class ReproduceError(LineageError):
    """A run that cannot be reproduced or compared; the message names what is missing."""


def _s3_bytes(s3: Any, uri: str) -> bytes:
    try:
        return read_s3_object(s3, uri)
    except S3ReadError as exc:
        raise ReproduceError(str(exc)) from exc


def model_hash(s3: Any, model_data: str | None) -> str:
    """SHA-256 of the model file in the run's model.tar.gz (see the module docstring)."""
    if not model_data:
        raise ReproduceError("the run recorded no model data (its training did not succeed)")
    archive = _s3_bytes(s3, model_data)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./") == MODEL_FILE), None)
            if member is None:
                raise ReproduceError(f"{model_data} holds no {MODEL_FILE}")
            extracted = tar.extractfile(member)
            return hashlib.sha256(extracted.read() if extracted else b"").hexdigest()
    except tarfile.TarError as exc:
        raise ReproduceError(f"{model_data} is not a gzipped tar archive: {exc}") from exc


def _manifest(s3: Any, steps: Mapping[str, Any]) -> dict[str, Any]:
    uri = ((steps.get("preprocess") or {}).get("outputs") or {}).get("manifest")
    if not uri:
        return {}
    try:
        return json.loads(_s3_bytes(s3, uri))
    except (ReproduceError, ValueError):
        return {}


def fingerprint(run: Mapping[str, Any], steps: Mapping[str, Any], s3: Any = None) -> dict[str, Any]:
    """What a reproduction must hold equal, each as lineage recorded it for the run."""
    upload = run.get("input") or {}
    preprocess = (steps.get("preprocess") or {}).get("outputs") or {}
    train = steps.get("train") or {}
    hyperparameters = dict(run.get("hyperparameters") or {})
    manifest = _manifest(s3, steps) if s3 is not None else {}
    return {
        "data object": upload.get("uri"),
        "data version": upload.get("version_id"),
        "data ETag": upload.get("etag"),
        "data fingerprint": preprocess.get("fingerprint"),
        "row counts": preprocess.get("row_counts"),
        "code version": train.get("code_version") or run.get("code_version"),
        "dataset config": run.get("config"),
        "hyperparameters": hyperparameters,
        "seed": str(hyperparameters.get("seed", f"{DEFAULT_SEED} (the algorithm's default)")),
        "training image": (train.get("parameters") or {}).get("training_image"),
        "PySpark version (Glue job)": manifest.get("pyspark_version"),
    }


def differences(original: Mapping[str, Any], reproduction: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every field of two ``fingerprint``s that differs: ``{"field", "original", "reproduction"}``."""
    return [
        {"field": name, "original": original.get(name), "reproduction": reproduction.get(name)}
        for name in original
        if original.get(name) != reproduction.get(name)
    ]


def metrics_of(steps: Mapping[str, Any]) -> dict[str, Any] | None:
    """The evaluation's metrics a run recorded (None when it was not evaluated)."""
    return ((steps.get("evaluate") or {}).get("outputs") or {}).get("metrics")


def compare(
    original: tuple[Mapping[str, Any], Mapping[str, Any]],
    reproduction: tuple[Mapping[str, Any], Mapping[str, Any]],
    s3: Any,
) -> dict[str, Any]:
    """The report of a reproduction: each run's model hash and metrics, whether they are equal,
    and the lineage fields that differ (the reasons when they are not)."""
    (run_a, steps_a), (run_b, steps_b) = original, reproduction
    hashes = [
        model_hash(s3, ((steps.get("train") or {}).get("outputs") or {}).get("model_data"))
        for steps in (steps_a, steps_b)
    ]
    metrics = [metrics_of(steps_a), metrics_of(steps_b)]
    changed = differences(fingerprint(run_a, steps_a, s3), fingerprint(run_b, steps_b, s3))
    identical = hashes[0] == hashes[1]
    same_metrics = metrics[0] is not None and metrics[0] == metrics[1]
    return {
        "original": {"run_id": run_a["run_id"], "model_hash": hashes[0], "metrics": metrics[0]},
        "reproduction": {"run_id": run_b["run_id"], "model_hash": hashes[1], "metrics": metrics[1]},
        "model_identical": identical,
        "metrics_equal": same_metrics,
        "differences": changed,
        "explanation": _explanation(identical, same_metrics, changed),
    }


def _explanation(identical: bool, same_metrics: bool, changed: list[dict[str, Any]]) -> str:
    if identical and same_metrics:
        return "reproduced: the same model file, byte for byte, and the same metrics"
    if changed:
        return "not reproduced; what differs between the runs: " + ", ".join(d["field"] for d in changed)
    return (
        "not reproduced although every recorded input is equal: the training is not deterministic on this "
        "platform (e.g. multi-threaded tree building with a different thread count or instance type)"
    )
