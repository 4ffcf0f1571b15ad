"""How a run scores its test split: through a test endpoint in memory, or with Batch Transform.

The Evaluate function scores the test split in memory through a test endpoint: it holds every
row, sends them in batches and keeps the predictions. A Lambda function has at most 10 GB and 15
minutes, so past some size the run scores the split with SageMaker Batch Transform jobs instead
(the challenger's and, when production serves one, the champion's model), and Evaluate reads the
jobs' outputs in chunks (``stepml.evaluation_batch``). The decision is made once, when the
preprocessing is recorded (the Glue job's manifest counts the test rows), from the dataset
config's ``evaluation.batch_transform_above_rows``; the state machine branches on it
(``$.steps.preprocess.test_scoring.mode``) and lineage keeps it with the preprocessing record.

The transform jobs run on the run's ``hosting.instance_type``, and Batch Transform accepts fewer
types than endpoints do (ml.t2.medium hosts an endpoint but runs no transform job). A batch
decision on such a type fails here, before training, with what to change, instead of at
CreateTransformJob after training; ``stepml preflight`` warns of such configs before a deploy
(and refuses one whose threshold is 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from stepml.config import DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS

#: The two ways of scoring the test split (``$.steps.preprocess.test_scoring.mode``).
ENDPOINT = "endpoint"
BATCH = "batch"

#: The instance types a transform job takes: botocore's ``TransformInstanceType`` enum (the
#: sagemaker model of botocore 1.43.127; a unit test keeps the two equal). A constant rather than
#: the model read at run time: reading it parses 2.5 MB of JSON (0.07-0.12 s measured on a warm
#: disk, more in a cold Lambda) for one enum, and the Lambda runtime's botocore may be older than
#: the one the product is tested with, and so refuse types its own API accepts.
_TRANSFORM_TYPES_BY_FAMILY = """
    ml.m4.xlarge ml.m4.2xlarge ml.m4.4xlarge ml.m4.10xlarge ml.m4.16xlarge
    ml.c4.xlarge ml.c4.2xlarge ml.c4.4xlarge ml.c4.8xlarge
    ml.p2.xlarge ml.p2.8xlarge ml.p2.16xlarge
    ml.p3.2xlarge ml.p3.8xlarge ml.p3.16xlarge
    ml.c5.xlarge ml.c5.2xlarge ml.c5.4xlarge ml.c5.9xlarge ml.c5.18xlarge
    ml.m5.large ml.m5.xlarge ml.m5.2xlarge ml.m5.4xlarge ml.m5.12xlarge ml.m5.24xlarge
    ml.m6i.large ml.m6i.xlarge ml.m6i.2xlarge ml.m6i.4xlarge ml.m6i.8xlarge
    ml.m6i.12xlarge ml.m6i.16xlarge ml.m6i.24xlarge ml.m6i.32xlarge
    ml.c6i.large ml.c6i.xlarge ml.c6i.2xlarge ml.c6i.4xlarge ml.c6i.8xlarge
    ml.c6i.12xlarge ml.c6i.16xlarge ml.c6i.24xlarge ml.c6i.32xlarge
    ml.r6i.large ml.r6i.xlarge ml.r6i.2xlarge ml.r6i.4xlarge ml.r6i.8xlarge
    ml.r6i.12xlarge ml.r6i.16xlarge ml.r6i.24xlarge ml.r6i.32xlarge
    ml.m7i.large ml.m7i.xlarge ml.m7i.2xlarge ml.m7i.4xlarge ml.m7i.8xlarge
    ml.m7i.12xlarge ml.m7i.16xlarge ml.m7i.24xlarge ml.m7i.48xlarge
    ml.c7i.large ml.c7i.xlarge ml.c7i.2xlarge ml.c7i.4xlarge ml.c7i.8xlarge
    ml.c7i.12xlarge ml.c7i.16xlarge ml.c7i.24xlarge ml.c7i.48xlarge
    ml.r7i.large ml.r7i.xlarge ml.r7i.2xlarge ml.r7i.4xlarge ml.r7i.8xlarge
    ml.r7i.12xlarge ml.r7i.16xlarge ml.r7i.24xlarge ml.r7i.48xlarge
    ml.g4dn.xlarge ml.g4dn.2xlarge ml.g4dn.4xlarge ml.g4dn.8xlarge ml.g4dn.12xlarge ml.g4dn.16xlarge
    ml.g5.xlarge ml.g5.2xlarge ml.g5.4xlarge ml.g5.8xlarge ml.g5.12xlarge ml.g5.16xlarge ml.g5.24xlarge ml.g5.48xlarge
    ml.trn1.2xlarge ml.trn1.32xlarge
    ml.inf2.xlarge ml.inf2.8xlarge ml.inf2.24xlarge ml.inf2.48xlarge
    ml.g6.xlarge ml.g6.2xlarge ml.g6.4xlarge ml.g6.8xlarge ml.g6.12xlarge ml.g6.16xlarge ml.g6.24xlarge ml.g6.48xlarge
    ml.g6e.xlarge ml.g6e.2xlarge ml.g6e.4xlarge ml.g6e.8xlarge
    ml.g6e.12xlarge ml.g6e.16xlarge ml.g6e.24xlarge ml.g6e.48xlarge
"""
TRANSFORM_INSTANCE_TYPES: Final[frozenset[str]] = frozenset(_TRANSFORM_TYPES_BY_FAMILY.split())
#: A type to name when one must be picked: the template's default, which both hosts and transforms.
SUGGESTED_TRANSFORM_TYPE: Final = "ml.m5.large"


class TestScoringError(ValueError):
    """The test split's size or the threshold is not known, or the split cannot be scored as
    decided; the message names the field and what to change."""


class TransformInstanceTypeError(TestScoringError):
    """The split goes to Batch Transform, whose jobs do not take the run's hosting instance type."""


def transform_accepts(instance_type: str) -> bool:
    """Whether a SageMaker transform job takes ``instance_type`` (``TRANSFORM_INSTANCE_TYPES``)."""
    return instance_type in TRANSFORM_INSTANCE_TYPES


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
    if rows <= threshold:
        return {"mode": ENDPOINT, "test_rows": rows, "threshold": threshold}
    _require_transform_type(config, rows, threshold)
    return {"mode": BATCH, "test_rows": rows, "threshold": threshold}


def _require_transform_type(config: Mapping[str, Any], rows: int, threshold: int) -> None:
    """Refuse a batch decision whose transform jobs would be refused at CreateTransformJob."""
    hosting = config.get("hosting") if isinstance(config.get("hosting"), Mapping) else {}
    instance_type = hosting.get("instance_type")
    # A run config always names the type (ResolveRun fills the stack's default); without one
    # there is nothing to check here.
    if not isinstance(instance_type, str) or transform_accepts(instance_type):
        return
    raise TransformInstanceTypeError(
        f"the test split has {rows:,} rows, more than evaluation.batch_transform_above_rows ({threshold:,}), "
        f"so Batch Transform jobs must score it on hosting.instance_type, but {instance_type} is not a type "
        "SageMaker Batch Transform accepts; set hosting.instance_type in the dataset config (or the stack's "
        f"HostingInstanceType parameter, which a config with hosting.instance_type null takes) to one it "
        f"accepts, such as {SUGGESTED_TRANSFORM_TYPE}, or raise evaluation.batch_transform_above_rows to at "
        f"least {rows} to score the split through a test endpoint"
    )


def mode_of(state: Mapping[str, Any]) -> str:
    """The mode a run's state took (``endpoint`` for a run recorded before the decision existed)."""
    steps = state.get("steps") if isinstance(state.get("steps"), Mapping) else {}
    preprocess = steps.get("preprocess") if isinstance(steps.get("preprocess"), Mapping) else {}
    scoring = preprocess.get("test_scoring") if isinstance(preprocess.get("test_scoring"), Mapping) else {}
    return BATCH if scoring.get("mode") == BATCH else ENDPOINT
