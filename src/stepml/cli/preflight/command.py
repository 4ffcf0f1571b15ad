"""``stepml preflight``: run the checks in order and print the report."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stepml.cli.context import CliError, print_json
from stepml.cli.preflight.capacity import check_glue, check_quotas, check_transform_types, check_xgboost_image
from stepml.cli.preflight.checks import check_definition, check_identity, check_layers, check_ses, check_stack
from stepml.cli.preflight.context import CheckContext, denied, error_message
from stepml.cli.preflight.inputs import load_samconfig, parse_parameter_overrides
from stepml.cli.preflight.report import FAIL, WARN, Check, PreflightError, Report


def run(
    root: Path | str,
    config_env: str = "dev",
    stack_name: str | None = None,
    region: str | None = None,
    session: Any = None,
    parameter_overrides: Mapping[str, str] | None = None,
    dataset_configs: Iterable[Path | str] = (),
) -> Report:
    """Run every check against the account ``session`` (default: boto3's default chain) names.

    ``stack_name``, ``region`` and the parameters default to samconfig's ``config_env``;
    ``parameter_overrides`` win over samconfig's, as ``sam deploy --parameter-overrides`` does.
    ``dataset_configs`` are config files to count in the quota check, beside the ones already
    onboarded to an existing stack.
    """
    root = Path(root)
    samconfig = load_samconfig(root, config_env)
    name = stack_name or samconfig.stack_name
    if not name:
        raise PreflightError(f"no stack name: pass --stack-name or set stack_name in samconfig.toml [{config_env}]")
    session = session or boto3.Session()
    chosen_region = region or samconfig.region or session.region_name
    if not chosen_region:
        raise PreflightError("no region: pass --region, set region in samconfig.toml, or set AWS_REGION")
    rerun = f"stepml preflight --stack-name {name} --config-env {config_env} --region {chosen_region}"
    context = CheckContext(
        root=root,
        session=session,
        config_env=config_env,
        stack_name=name,
        region=chosen_region,
        samconfig_region=samconfig.region,
        parameters={**samconfig.parameters, **(parameter_overrides or {})},
        dataset_config_paths=[Path(p) for p in dataset_configs],
        rerun=rerun,
    )
    checks = [_guard("identity", check_identity, context)]
    if checks[0].status == FAIL:
        return Report(name, config_env, chosen_region, None, checks)
    checks.append(_guard("stack", check_stack, context))
    from stepml.local.template import TemplateError  # the template reader; see CheckContext.resolve_template

    try:
        context.resolved = context.resolve_template()
    except TemplateError as exc:
        checks.append(Check("template", FAIL, str(exc), fix=f"fix the parameters, then run {rerun}"))
        return Report(name, config_env, chosen_region, context.account, checks)
    for check_name, check in (
        ("definition", check_definition),
        ("ses-sender", check_ses),
        ("layers", check_layers),
        ("xgboost-image", check_xgboost_image),
        ("batch-transform", check_transform_types),
        ("quotas", check_quotas),
        ("glue", check_glue),
    ):
        checks.append(_guard(check_name, check, context))
    return Report(name, config_env, chosen_region, context.account, checks)


def _guard(name: str, check: Callable[[CheckContext], Check], context: CheckContext) -> Check:
    """Run one check; an AWS error it did not expect becomes its line (denied: WARN, else FAIL)."""
    try:
        return check(context)
    except (ClientError, BotoCoreError) as exc:
        if denied(exc):
            return Check(name, WARN, f"cannot check: {error_message(exc)}", fix="grant the caller this read access")
        return Check(name, FAIL, f"the check failed: {error_message(exc)}", fix=context.rerun)


def preflight_command(args: argparse.Namespace) -> int:
    """``stepml preflight``: print the report (or ``--json``); exit 1 on any FAIL."""
    from stepml.local.template import TemplateError

    try:
        report = run(
            Path(args.root),
            config_env=args.config_env,
            stack_name=args.stack_name,
            region=args.region,
            parameter_overrides=parse_parameter_overrides(args.parameter_overrides or ""),
            dataset_configs=args.dataset_config or (),
        )
    except (PreflightError, TemplateError) as exc:
        raise CliError(str(exc), exit_code=2) from exc
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"preflight of stack {report.stack_name} ({report.config_env}) in {report.region}")
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "preflight",
        help="before a deploy: check what only the target AWS account can answer",
        description=(
            "Checks the account your AWS credentials name (boto3's default chain; AWS_ENDPOINT_URL is honoured): "
            "ValidateStateMachineDefinition on the filled definition, the SES sender identity, the SDK for pandas "
            "layer, the XGBoost image, the hosting types Batch Transform takes, SageMaker quotas and Glue in the "
            "region. Exits 1 on any FAIL."
        ),
    )
    parser.add_argument("--stack-name", help="the stack to deploy (default: samconfig's stack_name)")
    parser.add_argument("--config-env", default="dev", help="the samconfig.toml environment (default dev)")
    parser.add_argument("--region", help="the region to check (default: samconfig's, then AWS_REGION)")
    parser.add_argument(
        "--parameter-overrides", help='template parameters over samconfig\'s, as sam deploy takes them: "K=V K2=V2"'
    )
    parser.add_argument(
        "--dataset-config",
        action="append",
        metavar="FILE",
        help="a dataset config to count in the batch-transform and quota checks (repeatable); an existing "
        "stack's onboarded configs are counted too",
    )
    parser.add_argument("--root", default=".", help="the project folder with template.yaml and samconfig.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=preflight_command)
