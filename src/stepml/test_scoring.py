"""How a run scores its test split: through a test endpoint in memory, or with Batch Transform.

The Evaluate function scores the test split in memory through a test endpoint: it holds every
row, sends them in batches and keeps the predictions. A Lambda function has at most 10 GB and 15
minutes, so past some size the run scores the split with SageMaker Batch Transform jobs instead
(the challenger's and, when production serves one, the champion's model), and Evaluate reads the
jobs' outputs in chunks (``stepml.evaluation_batch``). The decision is made once, when the
preprocessing is recorded (the Glue job's manifest counts the test rows), from the dataset
config's ``evaluation.batch_transform_above_rows``; the state machine branches on it
(``$.steps.preprocess.test_scoring.mode``) and lineage keeps it with the preprocessing record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepml.config import DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS

#: The two ways of scoring the test split (``$.steps.preprocess.test_scoring.mode``).
ENDPOINT = "endpoint"
BATCH = "batch"


class TestScoringError(ValueError):
    """The test split's size or the threshold is not known; the message names the field."""


def _threshold(config: Mapping[str, Any]) -> int:
    """The dataset config's threshold; a run config from before the setting takes the default."""
    evaluation = config.get("evaluation") or {}
    value = evaluation.get("batch_transform_above_rows", DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TestScoringError(
            f"run.config.evaluation.batch_transform_above_rows must be an integer >= 0, got {value!r}"
        )
    return value


def decide(row_counts: Mapping[str, Any] | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"mode", "test_rows", "threshold"}``: ``batch`` when the test split (the manifest's
    ``row_counts.test``) has more rows than the threshold, else ``endpoint``."""
    rows = (row_counts or {}).get("test")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise TestScoringError(f"the Glue job's manifest: field 'row_counts.test' must be a row count, got {rows!r}")
    threshold = _threshold(config)
    return {"mode": BATCH if rows > threshold else ENDPOINT, "test_rows": rows, "threshold": threshold}


def mode_of(state: Mapping[str, Any]) -> str:
    """The mode a run's state took (``endpoint`` for a run recorded before the decision existed)."""
    steps = state.get("steps") if isinstance(state.get("steps"), Mapping) else {}
    preprocess = steps.get("preprocess") if isinstance(steps.get("preprocess"), Mapping) else {}
    scoring = preprocess.get("test_scoring") if isinstance(preprocess.get("test_scoring"), Mapping) else {}
    return BATCH if scoring.get("mode") == BATCH else ENDPOINT
