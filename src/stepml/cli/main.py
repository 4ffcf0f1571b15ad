"""``stepml``: the command line of the pipeline (one module per command group)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from stepml.cli import data, demo, lineage, local, preflight, runs
from stepml.cli.context import CliError
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--stack-name", help="a deployed stack instead of the local cloud")
    common.add_argument("--state-dir", help="the local cloud's folder (default ./.stepml or $STEPML_STATE_DIR)")

    parser = argparse.ArgumentParser(
        prog="stepml", description="Serverless MLOps pipeline for AWS, and its local cloud."
    )
    parser.add_argument("--version", action="version", version=f"stepml {_package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    local.register(commands, common)
    data.register(commands, common)
    datasets = commands.choices["datasets"]
    dataset_commands = next(a for a in datasets._actions if isinstance(a, argparse._SubParsersAction))
    validate = dataset_commands.add_parser("validate", parents=[common], help="check a config against the schema")
    validate.add_argument("config", help="path to the dataset config JSON")
    validate.set_defaults(handler=_validate_config)
    runs.register(commands, common)
    lineage.register(commands, common)
    demo.register(commands, common)
    preflight.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stepml`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ClientError, BotoCoreError) as exc:
        print(f"error: AWS call failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
