"""``stepml asl export | import | validate``: the Workflow Studio round trip, one command each.

``export`` prints the repository's definition filled as the stack fills it (paste it into
Workflow Studio); ``import`` turns a definition exported from the console back into
``statemachine/pipeline.asl.json`` with its placeholders; ``validate`` runs AWS's checks and the
project's lints (``make test`` runs it). The stack's values come from its own state machine
(DescribeStateMachine), aligned with the repository's file (``stepml.cli.asl_substitutions``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.cli.asl_substitutions import (
    AslSubstitutionError,
    fill,
    format_definition,
    parse_definition,
    restore,
    stack_account,
    stack_names,
    substitutions_from_definitions,
    unified_diff,
)
from stepml.cli.context import CliError, Target, connect

DEFINITION = Path("statemachine/pipeline.asl.json")
TEMPLATE = Path("template.yaml")
#: Exit code of a refused import and of a definition with problems.
PROBLEMS_EXIT = 2


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


def _deployed_definition(target: Target) -> Any:
    arn = target.output("StateMachineArn")
    try:
        text = target.client("stepfunctions").describe_state_machine(stateMachineArn=arn)["definition"]
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read the state machine {arn}: {exc}") from exc
    return parse_definition(text, arn)


def stack_substitutions(target: Target, ours: Any) -> dict[str, str]:
    """The value of each of ``ours``' placeholders as the stack's state machine has it."""
    return substitutions_from_definitions(ours, _deployed_definition(target))


def _stack_resource_names(target: Target, stack_name: str | None) -> list[str]:
    names = [str(value) for value in target.outputs.values()]
    if stack_name:
        try:
            pages = target.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=stack_name)
            names += [r.get("PhysicalResourceId", "") for page in pages for r in page["StackResourceSummaries"]]
        except (ClientError, BotoCoreError):
            pass  # the outputs and the ARNs' names still catch most leftovers
    return names


def export(args: argparse.Namespace) -> int:
    """Print (or write to ``--out``) the definition filled as the stack fills it."""
    definition_path = Path(args.definition)
    ours = parse_definition(_read(definition_path), str(definition_path))
    target = connect(args.stack_name, args.state_dir)
    try:
        text = format_definition(fill(ours, stack_substitutions(target, ours)))
    except AslSubstitutionError as exc:
        raise CliError(str(exc)) from exc
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: paste it into Workflow Studio (Edit > Import definition)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def import_(args: argparse.Namespace) -> int:
    """Show the diff the exported definition makes to the repository's file; write it with ``--write``."""
    definition_path = Path(args.definition)
    before = _read(definition_path)
    ours = parse_definition(before, str(definition_path))
    exported = parse_definition(_read(Path(args.exported)), args.exported)
    target = connect(args.stack_name, args.state_dir)
    substitutions = stack_substitutions(target, ours)
    try:
        restored = restore(
            exported,
            substitutions,
            ours,
            account_id=stack_account(substitutions),
            names=stack_names(substitutions, _stack_resource_names(target, args.stack_name)),
        )
    except AslSubstitutionError as exc:
        raise CliError(f"refused: {exc}", exit_code=PROBLEMS_EXIT) from exc
    after = format_definition(restored)
    diff = unified_diff(before, after, definition_path.as_posix())
    if not diff:
        print(f"no changes to {definition_path}")
        return 0
    sys.stdout.write(diff)
    if args.write:
        definition_path.write_text(after, encoding="utf-8")
        print(f"wrote {definition_path}; run `stepml asl validate`", file=sys.stderr)
    else:
        print(f"(not written: pass --write to update {definition_path})", file=sys.stderr)
    return 0


def validate(args: argparse.Namespace) -> int:
    """Print each problem of the definition with its state's path; exit 2 if there is any."""
    # The checks need the local cloud's Step Functions tables (botocore models, no moto).
    from stepml.cli.asl_lint import AslLintError, template_facts
    from stepml.cli.asl_lint import validate as lint

    definition_path = Path(args.file)
    definition = parse_definition(_read(definition_path), str(definition_path))
    try:
        problems = lint(definition, template_facts(Path(args.template), definition_path))
    except (AslLintError, AslSubstitutionError) as exc:
        raise CliError(str(exc)) from exc
    for problem in problems:
        print(f"{definition_path}: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) in {definition_path}", file=sys.stderr)
        return PROBLEMS_EXIT
    print(f"{definition_path}: OK")
    return 0


def _guard(handler: Any) -> Any:
    """The handler with the substitution module's errors shown as one-line CLI errors."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except AslSubstitutionError as exc:
            raise CliError(str(exc)) from exc

    run.__doc__ = handler.__doc__
    return run


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``stepml asl`` and its three subcommands."""
    parser = commands.add_parser("asl", help="the Workflow Studio round trip: export, import, validate")
    sub = parser.add_subparsers(dest="asl_command", metavar="COMMAND", required=True)
    definition_help = f"the repository's definition (default {DEFINITION})"
    export_parser = sub.add_parser("export", parents=[common], help="the definition filled as the stack fills it")
    export_parser.add_argument("--out", help="write to this file instead of standard output")
    export_parser.add_argument("--definition", default=str(DEFINITION), help=definition_help)
    export_parser.set_defaults(handler=_guard(export))
    import_parser = sub.add_parser(
        "import", parents=[common], help="a definition exported from the console, placeholders restored"
    )
    import_parser.add_argument("exported", metavar="EXPORTED.json")
    import_parser.add_argument("--write", action="store_true", help="update the definition (default: show the diff)")
    import_parser.add_argument("--definition", default=str(DEFINITION), help=definition_help)
    import_parser.set_defaults(handler=_guard(import_))
    validate_parser = sub.add_parser("validate", help="AWS's definition checks and the project's lints")
    validate_parser.add_argument("file", nargs="?", default=str(DEFINITION), metavar="FILE")
    validate_parser.add_argument("--template", default=str(TEMPLATE), help=f"the SAM template (default {TEMPLATE})")
    validate_parser.set_defaults(handler=_guard(validate))
