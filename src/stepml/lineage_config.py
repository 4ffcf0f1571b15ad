"""The dataset config a run is configured with: read from the artifact bucket, validated by
``stepml.config``'s schema, and completed with the stack's default instance types.

ResolveRun reads it once per run and the run carries it (and lineage records it), so every
later step sees the same config even if the dataset's config changes mid-run.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stepml.config import DatasetConfigError, Settings, dataset_config_key, parse_dataset_config
from stepml.lineage_table import LineageError


class DatasetNotOnboardedError(DatasetConfigError):
    """The upload's dataset has no config in the artifact bucket."""


class DatasetConfigDeniedError(LineageError):
    """S3 refused to show the dataset config (403): missing permissions, or a key policy."""


def load_dataset_config(s3_client: Any, bucket: str, dataset: str) -> dict[str, Any]:
    """Read and validate a dataset's config from the artifact bucket."""
    key = dataset_config_key(dataset)
    source = f"s3://{bucket}/{key}"
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("NoSuchKey", "404"):
            raise DatasetNotOnboardedError(
                f"dataset {dataset!r} is not onboarded: its config {source} does not exist; "
                f"onboard it with `stepml datasets put {dataset} CONFIG.json`, then upload the file again"
            ) from exc
        if code in ("AccessDenied", "403", "Forbidden"):
            # S3 answers 403 both for a key the caller may not read and, without s3:ListBucket,
            # for a key that does not exist; the template grants the listing, so this is access.
            raise DatasetConfigDeniedError(
                f"dataset {dataset!r}: permission denied reading its config {source} (S3 {code}): ResolveRun "
                "needs s3:GetObject on it, and s3:ListBucket on the bucket to tell a missing config from a "
                "denied one"
            ) from exc
        raise LineageError(f"{source}: cannot read the dataset config: {code}: {exc}") from exc
    return parse_dataset_config(body, source).model_dump(mode="json")


def run_config(s3_client: Any, settings: Settings, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataset's config with the stack's default instance types filled in, and the
    training hyperparameters it gives."""
    config = load_dataset_config(s3_client, settings.artifact_bucket, dataset)
    config["training"]["instance_type"] = config["training"]["instance_type"] or settings.default_training_instance_type
    config["hosting"]["instance_type"] = config["hosting"]["instance_type"] or settings.default_hosting_instance_type
    hyperparameters = parse_dataset_config(config, f"dataset {dataset}").training_hyperparameters()
    return config, hyperparameters
