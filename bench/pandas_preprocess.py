"""The preprocessing job's transform as a plain pandas script: what a data scientist writes first.

    .venv/bin/python bench/pandas_preprocess.py INPUT.csv OUTPUT_DIR CONFIG.json

``bench/bench_scale.py`` runs it beside the Glue job on the same files. Same steps as
``glue_jobs/preprocess.py``: drop unlabeled rows, impute each numeric feature's median of the
labeled rows, mark missing categories, encode labels and categories as ordinals, split by a
hash of the row key (70/15/15), write train and validation (headerless) and test (with a
header) as CSV, and the training split's statistics (counts, moments, percentiles, a
10-bucket histogram per numeric feature, value counts per categorical one) as JSON. Not the
same bytes (pandas' hash, not Spark's xxhash64) and without the job's checks that name a bad
line: the comparison is of the work, not of the outputs. Prints the seconds it took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

MISSING = "__missing__"


def main(source: str, output: str, config_path: str) -> None:
    started = time.monotonic()
    config = json.loads(Path(config_path).read_text())
    numeric = [f["name"] for f in config["features"] if f["type"] == "numeric"]
    categorical = [f["name"] for f in config["features"] if f["type"] == "categorical"]
    label = config["label"]

    frame = pd.read_csv(source, dtype={name: "string" for name in [*categorical, label]})
    frame = frame[frame[label].notna() & (frame[label].str.strip() != "")]
    for name in numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    for name in categorical:
        frame[name] = frame[name].str.strip().fillna(MISSING)

    bucket = pd.util.hash_pandas_object(frame[config["row_key"]], index=False) % 10_000
    split = np.where(bucket < 7000, "train", np.where(bucket < 8500, "validation", "test"))
    statistics = describe(frame[split == "train"], numeric, categorical)

    columns = {label: frame[label].map({c: i for i, c in enumerate(config["classes"])})}
    for feature in config["features"]:
        name = feature["name"]
        if feature["type"] == "numeric":
            columns[name] = frame[name].fillna(frame[name].median())
        else:
            columns[name] = frame[name].map({v: i for i, v in enumerate(sorted(frame[name].unique()))})
    encoded = pd.DataFrame(columns)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "validation", "test"):
        encoded[split == name].to_csv(out / f"{name}.csv", header=name == "test", index=False)
    (out / "statistics.json").write_text(json.dumps(statistics))
    print(f"{time.monotonic() - started:.3f}")


def describe(train: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    """The training split's statistics, as a data scientist would compute them for a baseline."""
    statistics: dict = {"rows": len(train)}
    for name in numeric:
        values = train[name].dropna()
        counts, edges = np.histogram(values, bins=10) if len(values) else ([], [])
        statistics[name] = {
            **{key: float(value) for key, value in values.describe().items()},
            "percentiles": values.quantile([i / 100 for i in range(101)]).tolist(),
            "histogram": {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]},
        }
    for name in categorical:
        statistics[name] = {str(k): int(v) for k, v in train[name].value_counts().items()}
    return statistics


if __name__ == "__main__":
    main(*sys.argv[1:4])
