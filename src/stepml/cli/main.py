"""``stepml``: the command line of the pipeline (one module per command group)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from stepml.config import DatasetConfigError, parse_dataset_config


def _package_version() -> str:
    try:
        return version("stepml")
    except PackageNotFoundError:
        return "unknown"


def _validate_config(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"error: {path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        config = parse_dataset_config(raw, str(path))
    except DatasetConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {"dataset": config.name, "valid": True, "hyperparameters": config.training_hyperparameters()}, indent=2
            )
        )
    else:
        print(
            f"{path}: valid config for dataset {config.name!r} ({config.problem_type}, "
            f"gate {config.metric} {'>=' if config.higher_is_better else '<='} {config.threshold})"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepml", description="Serverless MLOps pipeline for AWS, and its local cloud."
    )
    parser.add_argument("--version", action="version", version=f"stepml {_package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    datasets = commands.add_parser("datasets", help="dataset configs")
    dataset_commands = datasets.add_subparsers(dest="datasets_command", metavar="COMMAND")
    validate = dataset_commands.add_parser("validate", help="check a dataset config against the schema")
    validate.add_argument("config", help="path to the dataset config JSON")
    validate.add_argument("--json", action="store_true", help="machine-readable output")
    validate.set_defaults(handler=_validate_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stepml`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
