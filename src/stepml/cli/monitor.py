"""``stepml monitor ENDPOINT``: the endpoint's data quality against its model's training baseline.

The baseline is the one lineage recorded with the model the endpoint serves. By default the
newest report under ``--reports`` (``s3://ARTIFACT_BUCKET/monitoring/ENDPOINT/``, where a
monitoring schedule writes ``constraint_violations.json`` and ``statistics.json`` per execution)
is shown; with ``--now``, or when there is none yet, the newest ``--hours`` of the endpoint's
captured data are analysed on the spot (``stepml.monitoring.analysis``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stepml.cli.context import CliError, Target, connect, print_json
from stepml.lineage_queries import LineageQueryError, model_lineage
from stepml.monitoring.analysis import MonitoringError, analyze
from stepml.monitoring.report import feature_views, render_html, render_text
from stepml.utils import S3ReadError, read_s3_object, split_s3_uri

VIOLATIONS_FILE = "constraint_violations.json"


def _read(s3: Any, uri: str) -> bytes:
    try:
        return read_s3_object(s3, uri)
    except S3ReadError as exc:
        raise CliError(str(exc)) from exc


def _keys(s3: Any, prefix_uri: str) -> list[dict[str, Any]]:
    bucket, prefix = split_s3_uri(prefix_uri)
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend({"uri": f"s3://{bucket}/{o['Key']}", **o} for o in page.get("Contents", []))
    return objects


def _latest_report(s3: Any, prefix: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """The newest execution's folder, its statistics and its violations; None when there is none."""
    reports = [o for o in _keys(s3, prefix) if o["Key"].endswith("/" + VIOLATIONS_FILE)]
    if not reports:
        return None
    newest = max(reports, key=lambda o: (o["LastModified"], o["Key"]))
    folder = newest["uri"][: -len(VIOLATIONS_FILE)]
    violations = json.loads(_read(s3, newest["uri"]))
    return folder, json.loads(_read(s3, folder + "statistics.json")), violations


def _capture_prefix(target: Target, endpoint: str) -> str:
    try:
        described = target.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        raise CliError(f"cannot describe endpoint {endpoint}: {exc}") from exc
    destination = (described.get("DataCaptureConfig") or {}).get("DestinationS3Uri")
    if not destination:
        raise CliError(f"endpoint {endpoint} captures no data (its endpoint config has no DataCaptureConfig)")
    return f"{destination.rstrip('/')}/{endpoint}/"


def _captured_lines(s3: Any, prefix: str, hours: int) -> list[bytes]:
    """The lines of the capture files in the newest ``hours`` hour folders (``.../yyyy/mm/dd/hh/``)."""
    files = [o for o in _keys(s3, prefix) if o["Key"].endswith(".jsonl")]
    folders = sorted({"/".join(o["Key"].split("/")[-5:-1]) for o in files})[-hours:]
    chosen = sorted((o for o in files if "/".join(o["Key"].split("/")[-5:-1]) in folders), key=lambda o: o["Key"])
    if not chosen:
        raise CliError(f"no captured data under {prefix}")
    return [line for o in chosen for line in _read(s3, o["uri"]).splitlines()]


def _baseline(target: Target, endpoint: str) -> dict[str, Any]:
    """The served model's lineage and its baseline documents."""
    table = target.lineage_table()
    try:
        found = model_lineage(table, endpoint, sagemaker_client=target.client("sagemaker"))
    except LineageQueryError as exc:
        raise CliError(str(exc)) from exc
    baseline = found.get("baseline") or {}
    if not baseline.get("constraints"):
        raise CliError(f"model {found['model']} (run {found['run_id']}) has no data-quality baseline in lineage")
    s3 = target.client("s3")
    return {
        "model": found["model"],
        "run_id": found["run_id"],
        "uris": baseline,
        "statistics": json.loads(_read(s3, baseline["statistics"])),
        "constraints": json.loads(_read(s3, baseline["constraints"])),
    }


def monitor(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    s3 = target.client("s3")
    base = _baseline(target, args.endpoint)
    reports = args.reports or f"s3://{target.output('ArtifactBucketName')}/monitoring/{args.endpoint}/"
    report = None if args.now else _latest_report(s3, reports)
    if report is not None:
        source, statistics, violations = report
    else:
        if not args.now:
            print(f"no monitoring report under {reports}; analysing the newest captured data now", file=sys.stderr)
        source = args.capture or _capture_prefix(target, args.endpoint)
        try:
            # Capture holds the raw rows the endpoint's preprocessor took.
            lines = _captured_lines(s3, source, args.hours)
            found = analyze(base["statistics"], base["constraints"], lines)
        except MonitoringError as exc:
            raise CliError(f"{source}: {exc}") from exc
        statistics, violations = found.statistics, found.violations
    details = {"endpoint": args.endpoint, "model": base["model"], "run": base["run_id"], "data": source}
    details |= {"baseline": base["uris"]["statistics"]}
    views = feature_views(base["statistics"], statistics, violations)
    if args.html:
        Path(args.html).write_text(render_html(views, title=f"Data quality of {args.endpoint}", details=details))
    if args.json:
        print_json({**details, "statistics": statistics, "violations": violations})
    else:
        print(render_text(views, title=" ".join(f"{k}: {v}" for k, v in details.items())), end="")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "monitor", parents=[common], help="an endpoint's captured data against its model's baseline, and violations"
    )
    parser.add_argument("endpoint", help="the endpoint's name")
    parser.add_argument("--now", action="store_true", help="analyse the newest captured data instead of a report")
    parser.add_argument("--hours", type=int, default=1, help="the newest captured hours to analyse (default 1)")
    parser.add_argument("--reports", help="the reports' prefix (default s3://ARTIFACT_BUCKET/monitoring/ENDPOINT/)")
    parser.add_argument("--capture", help="the captured data's prefix (default: the endpoint's DataCaptureConfig)")
    parser.add_argument("--html", metavar="FILE", help="also write the report as an HTML page with SVG histograms")
    parser.set_defaults(handler=monitor)
