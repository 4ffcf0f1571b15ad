"""``stepml``: the command line of the pipeline (one module per command group)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.cli import asl, cost, data, lineage, monitor, preflight, rollback, runs
from stepml.cli.context import CliError

#: Command groups of the local cloud: name -> (module, one-line help). Their modules import the
#: local cloud (and so moto), which a command against a deployed stack must not load: each is
#: imported only when its command is parsed (``_CommandParser``).
LOCAL_CLOUD_COMMANDS = {
    "local": ("stepml.cli.local", "the local cloud"),
    "demo": ("stepml.cli.demo", "the whole pipeline on the local cloud"),
}


def _package_version() -> str:
    try:
        return version("stepml")
    except PackageNotFoundError:
        return "unknown"


class _CommandParser(argparse.ArgumentParser):
    """A command's parser; given a ``module``, a local-cloud group that loads when it is parsed.

    The group is listed in ``stepml --help`` with its one-line help; parsing it (``--help``
    included) is handed to its real parser, built on first use by the module's own ``register``,
    so each group is still defined in one place.
    """

    def __init__(
        self, *args: Any, module: str | None = None, common: argparse.ArgumentParser | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._module = module
        self._common = common
        self._real: argparse.ArgumentParser | None = None

    def _real_parser(self) -> argparse.ArgumentParser | None:
        if self._module is None:
            return None
        if self._real is None:
            root_prog, name = self.prog.rsplit(" ", 1)
            commands = argparse.ArgumentParser(prog=root_prog).add_subparsers()
            importlib.import_module(self._module).register(commands, self._common)
            self._real = commands.choices[name]
        return self._real

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        real = self._real_parser()
        if real is None:
            return super().parse_known_args(args, namespace)
        return real.parse_known_args(args, namespace)

    def format_help(self) -> str:
        real = self._real_parser()
        return super().format_help() if real is None else real.format_help()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--stack-name", help="a deployed stack instead of the local cloud")
    common.add_argument("--state-dir", help="the local cloud's folder (default ./.stepml or $STEPML_STATE_DIR)")

    parser = argparse.ArgumentParser(
        prog="stepml", description="Serverless MLOps pipeline for AWS, and its local cloud."
    )
    parser.add_argument("--version", action="version", version=f"stepml {_package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    _register_local_cloud(commands, common, "local")
    data.register(commands, common)
    runs.register(commands, common)
    lineage.register(commands, common)
    monitor.register(commands, common)
    rollback.register(commands, common)
    _register_local_cloud(commands, common, "demo")
    preflight.register(commands, common)
    asl.register(commands, common)
    cost.register(commands, common)
    return parser


def _register_local_cloud(commands: argparse._SubParsersAction, common: argparse.ArgumentParser, name: str) -> None:
    module, help_text = LOCAL_CLOUD_COMMANDS[name]
    commands.add_parser(name, help=help_text, module=module, common=common)


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
