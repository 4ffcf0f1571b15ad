"""``stepml datasets``, ``stepml upload`` and ``stepml sample-data``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from botocore.exceptions import ClientError

from stepml.cli.context import CliError, connect, print_json, print_table
from stepml.config import DATASET_CONFIG_PREFIX, DatasetConfigError, dataset_config_key, parse_dataset_config
from stepml.lineage import make_run_id
from stepml.sample_data import SampleDataError, write_churn_csv

SUPPORTED_UPLOADS = (".csv", ".parquet")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from exc


def datasets_put(args: argparse.Namespace) -> int:
    path = Path(args.config)
    raw = _read(path)
    try:
        config = parse_dataset_config(raw, str(path))
    except DatasetConfigError as exc:
        raise CliError(str(exc)) from exc
    if config.name != args.name:
        raise CliError(f"{path}: the config is for dataset {config.name!r}, not {args.name!r}")
    target = connect(args.stack_name, args.state_dir)
    bucket = target.output("ArtifactBucketName")
    target.client("s3").put_object(
        Bucket=bucket,
        Key=dataset_config_key(args.name),
        Body=raw,
        ContentType="application/json",
        ServerSideEncryption="AES256",
    )
    print(f"dataset {args.name}: config stored at s3://{bucket}/{dataset_config_key(args.name)}")
    return 0


def datasets_list(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    bucket = target.output("ArtifactBucketName")
    s3 = target.client("s3")
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DATASET_CONFIG_PREFIX):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/config.json"):
                continue
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            name = item["Key"].removeprefix(DATASET_CONFIG_PREFIX).removesuffix("/config.json")
            try:
                config = parse_dataset_config(body, f"s3://{bucket}/{item['Key']}")
                row = {
                    "dataset": name,
                    "problem_type": config.problem_type,
                    "label": config.label,
                    "gate": f"{config.metric} {'>=' if config.higher_is_better else '<='} {config.threshold}",
                    "valid": True,
                }
            except DatasetConfigError as exc:
                row = {"dataset": name, "valid": False, "error": str(exc)}
            row["updated"] = item["LastModified"].isoformat()
            rows.append(row)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["dataset", "problem_type", "label", "gate", "updated"])
    return 0


def upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    if path.suffix.lower() not in SUPPORTED_UPLOADS:
        print(
            f"warning: {path.name}: the pipeline reads {' and '.join(SUPPORTED_UPLOADS)} files; "
            "this upload will fail validation and be reported"
        )
    target = connect(args.stack_name, args.state_dir)
    bucket = target.output("UploadBucketName")
    key = f"incoming/{args.dataset}/{path.name}"
    s3 = target.client("s3")
    try:
        s3.head_object(Bucket=target.output("ArtifactBucketName"), Key=dataset_config_key(args.dataset))
    except ClientError:
        print(
            f"warning: dataset {args.dataset!r} has no config yet; the run will fail until "
            f"`stepml datasets put {args.dataset} CONFIG.json`"
        )
    response = s3.put_object(Bucket=bucket, Key=key, Body=_read(path))
    version = response.get("VersionId") or "null"
    result = {
        "uri": f"s3://{bucket}/{key}",
        "version_id": version,
        "etag": response["ETag"].strip('"'),
        "run_id": make_run_id(bucket, key, version),
    }
    if args.json:
        print_json(result)
    else:
        print(f"uploaded {path} to {result['uri']} (version {version}); run {result['run_id']}")
    return 0


def sample_data(args: argparse.Namespace) -> int:
    try:
        path = write_churn_csv(args.out, args.rows, seed=args.seed, drift=args.drift)
    except SampleDataError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.rows} rows to {path}")
    return 0


def datasets_validate(args: argparse.Namespace) -> int:
    """Check a dataset config file against the schema, offline."""
    path = Path(args.config)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}", exit_code=2) from exc
    try:
        config = parse_dataset_config(raw, str(path))
    except DatasetConfigError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(
            json.dumps(
                {"dataset": config.name, "valid": True, "hyperparameters": config.training_hyperparameters()}, indent=2
            )
        )
    else:
        gate = f"{config.metric} {'>=' if config.higher_is_better else '<='} {config.threshold}"
        print(f"{path}: valid config for dataset {config.name!r} ({config.problem_type}, gate {gate})")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    datasets = commands.add_parser("datasets", help="dataset configs the pipeline reads")
    sub = datasets.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True)
    put = sub.add_parser("put", parents=[common], help="validate and store a dataset config")
    put.add_argument("name")
    put.add_argument("config", help="the dataset config JSON (see examples/datasets/churn.json)")
    put.set_defaults(handler=datasets_put)
    listing = sub.add_parser("list", parents=[common], help="the onboarded datasets")
    listing.set_defaults(handler=datasets_list)
    validate = sub.add_parser("validate", parents=[common], help="check a config against the schema")
    validate.add_argument("config", help="path to the dataset config JSON")
    validate.set_defaults(handler=datasets_validate)

    up = commands.add_parser("upload", parents=[common], help="upload a data file; this starts a run")
    up.add_argument("file")
    up.add_argument("--dataset", required=True)
    up.set_defaults(handler=upload)

    sample = commands.add_parser("sample-data", help="write the deterministic churn sample dataset")
    sample.add_argument("--rows", type=int, default=5000)
    sample.add_argument("--out", default="churn.csv")
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--drift", action="store_true", help="a drifted population")
    sample.set_defaults(handler=sample_data)
