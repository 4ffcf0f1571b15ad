"""``stepml lineage show RUN | model NAME | dataset S3URI``: what lineage knows, as text or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from stepml.cli.context import CliError, connect, print_json
from stepml.lineage_queries import LineageQueryError, dataset_lineage, model_lineage, run_tree

_INDENT = "    "


def _ballots(approval: dict[str, Any]) -> str:
    """Each approver's decision: ``ana@x approve at T; ben@x undecided``."""
    return "; ".join(
        f"{b.get('address')} {b['decision']} at {b.get('decided_at')}"
        if b.get("decision")
        else f"{b.get('address')} undecided"
        for b in approval.get("approvers") or []
    )


def _text(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return "" if value is None else str(value)


def _timing(item: Mapping[str, Any]) -> str:
    start, end, seconds = item.get("started_at"), item.get("ended_at"), item.get("seconds")
    if not start and not end:
        return ""
    shown = f"{start or '?'} -> {end or '?'}"
    return shown + (f" ({seconds:.1f} s)" if seconds is not None else "")


def _fields(lines: list[str], prefix: str, label: str, values: Mapping[str, Any]) -> None:
    if not values:
        return
    lines.append(f"{prefix}{label}:")
    for key, value in values.items():
        lines.append(f"{prefix}{_INDENT}{key}: {_text(value)}")


def render_run(tree: Mapping[str, Any]) -> str:
    upload = tree.get("input") or {}
    lines = [
        f"run {tree['run_id']}  dataset {tree.get('dataset')}  {tree.get('status')}  attempt {tree.get('attempt')}",
        f"{_INDENT}input: {upload.get('uri')} (version {upload.get('version_id')}, etag {upload.get('etag')}, "
        f"{upload.get('size')} bytes)",
        f"{_INDENT}code version: {tree.get('code_version')}",
        f"{_INDENT}time: {_timing(tree)}",
        f"{_INDENT}execution: {tree.get('execution_arn')}",
    ]
    if tree.get("error"):
        lines.append(f"{_INDENT}FAILED at {tree.get('failed_step')}: {tree['error'].get('cause')}")
    if tree.get("outcome_reason"):
        lines.append(f"{_INDENT}outcome: {tree['outcome_reason']}")
    approval = tree.get("approval")
    if approval:
        comment = f": {approval['comment']!r}" if approval.get("comment") else ""
        lines.append(
            f"{_INDENT}approval: {approval.get('decision')} by {approval.get('approver')} "
            f"at {approval.get('decided_at')}{comment}"
        )
        if len(approval.get("approvers") or []) > 1:
            lines.append(f"{_INDENT}approvers ({approval.get('required_approvals')} required): {_ballots(approval)}")
    steps = tree.get("steps") or []
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        branch, below = ("`-- ", "    ") if last else ("|-- ", "|   ")
        status = step.get("status") or ""
        if step.get("reused"):
            status += f" (reused from attempt {step.get('attempt')})"
        lines.append(f"{branch}{step['title']}  {status}  {_timing(step)}".rstrip())
        job = step.get("job")
        if job:
            shown = job.get("arn") or job.get("name")
            extra = f" run {job['run_id']}" if job.get("run_id") else ""
            lines.append(f"{below}job: {shown}{extra}")
        _fields(lines, below, "inputs", step.get("inputs") or {})
        _fields(lines, below, "parameters", step.get("parameters") or {})
        _fields(lines, below, "outputs", step.get("outputs") or {})
        if step.get("error"):
            lines.append(f"{below}error: {step['error'].get('error')}: {step['error'].get('cause')}")
    return "\n".join(lines)


def _rollback_line(entry: Mapping[str, Any]) -> str:
    return (
        f"{_INDENT * 2}rollback {entry.get('deployed_at')} by {entry.get('who')}: {entry.get('previous_model')} -> "
        f"{entry.get('model')} ({entry.get('status')}), reason {entry.get('reason')!r}"
    )


def render_model(found: Mapping[str, Any]) -> str:
    data, training, evaluation = found["data"], found["training"], found["evaluation"]
    approval = found.get("approval") or {}
    job = training.get("job") or {}
    lines = [
        f"model {found.get('model')}  run {found['run_id']}  dataset {found.get('dataset')}  {found.get('status')}"
    ]
    endpoint = found.get("endpoint")
    if endpoint:
        how = "serves it now" if endpoint["source"] == "sagemaker" else "was last deployed with it (per lineage)"
        lines.append(f"{_INDENT}endpoint {endpoint['name']} {how}; {len(endpoint['deployments'])} deployment(s)")
        lines += [_rollback_line(entry) for entry in endpoint["deployments"] if entry.get("kind") == "rollback"]
    lines += [
        f"{_INDENT}data: {data.get('uri')} (version {data.get('version_id')})",
        f"{_INDENT}fingerprint: {data.get('fingerprint')}",
        f"{_INDENT}rows: {_text(data.get('row_counts'))}",
        f"{_INDENT}code version: {found.get('code_version')}",
        f"{_INDENT}hyperparameters: {_text(found.get('hyperparameters'))}",
        f"{_INDENT}training job: {job.get('arn') or job.get('name')} ({training.get('status')})",
        f"{_INDENT}model data: {training.get('model_data')}",
        f"{_INDENT}training metrics: {_text(training.get('final_metrics'))}",
        f"{_INDENT}evaluation: {evaluation.get('metric')} threshold {evaluation.get('threshold')}, "
        f"passed {evaluation.get('passed')}, metrics {_text(evaluation.get('metrics'))}",
        f"{_INDENT}approver: {approval.get('approver')} ({approval.get('decision')} at {approval.get('decided_at')})"
        + (f": {approval['comment']!r}" if approval.get("comment") else ""),
        f"{_INDENT}deployed to: {found.get('deployed_to')}",
    ]
    return "\n".join(lines)


def render_dataset(found: Mapping[str, Any]) -> str:
    shown = found["uri"] + (f" (version {found['version_id']})" if found.get("version_id") else " (all versions)")
    lines = [f"{shown}: {len(found['runs'])} run(s)"]
    for run in found["runs"]:
        lines.append(f"run {run['run_id']}  version {run['version_id']}  {run['status']}  started {run['started_at']}")
        if run.get("model"):
            lines.append(f"{_INDENT}model {run['model']} (training job {run['training_job']})")
        if run.get("metrics"):
            lines.append(f"{_INDENT}metrics {_text(run['metrics'])}")
        if run.get("approver"):
            lines.append(f"{_INDENT}{run['decision']} by {run['approver']}")
        if run.get("deployed_to"):
            lines.append(f"{_INDENT}deployed to {run['deployed_to']}")
        if run.get("error"):
            lines.append(f"{_INDENT}failed at {run['failed_step']}: {run['error']}")
    return "\n".join(lines)


def _answer(args: argparse.Namespace, ask: Any, render: Any) -> int:
    target = connect(args.stack_name, args.state_dir)
    try:
        found = ask(target)
    except LineageQueryError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print_json(found)
    else:
        print(render(found))
    return 0


def show(args: argparse.Namespace) -> int:
    return _answer(args, lambda target: run_tree(target.lineage_table(), args.run_id), render_run)


def model(args: argparse.Namespace) -> int:
    return _answer(
        args,
        lambda target: model_lineage(target.lineage_table(), args.name, sagemaker_client=target.client("sagemaker")),
        render_model,
    )


def dataset(args: argparse.Namespace) -> int:
    return _answer(args, lambda target: dataset_lineage(target.lineage_table(), args.uri), render_dataset)


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("lineage", help="which data, code and parameters made what, and who approved it")
    sub = parser.add_subparsers(dest="lineage_command", metavar="COMMAND", required=True)
    run_parser = sub.add_parser("show", parents=[common], help="a run as a tree of its steps")
    run_parser.add_argument("run_id")
    run_parser.set_defaults(handler=show)
    model_parser = sub.add_parser("model", parents=[common], help="where a model (or an endpoint's model) came from")
    model_parser.add_argument("name", help="a model name or an endpoint name")
    model_parser.set_defaults(handler=model)
    data_parser = sub.add_parser("dataset", parents=[common], help="every run and model made from an uploaded object")
    data_parser.add_argument("uri", help="s3://BUCKET/KEY, optionally ?versionId=VERSION")
    data_parser.set_defaults(handler=dataset)
