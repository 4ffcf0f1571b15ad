"""``stepml runs``, ``stepml outbox``, ``stepml approve`` and ``stepml predict``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from stepml.cli import reproduce
from stepml.cli.context import CliError, Target, connect, print_json, print_table
from stepml.lineage import STEP_ORDER, STEP_TITLES, from_dynamo


def list_runs(target: Target) -> list[dict[str, Any]]:
    """Every run in lineage, newest first."""
    table = target.lineage_table()
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += [i for i in page.get("Items", []) if i.get("sk") == "RUN"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    runs = [from_dynamo(i) for i in items]
    return sorted(runs, key=lambda r: r.get("started_at", ""), reverse=True)


def run_steps(target: Target, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's record and its step records in pipeline order."""
    table = target.lineage_table()
    items = from_dynamo(table.query(KeyConditionExpression=Key("pk").eq(f"RUN#{run_id}"))["Items"])
    run = next((i for i in items if i["sk"] == "RUN"), None)
    if run is None:
        raise CliError(f"run {run_id} is not in lineage (see `stepml runs`)")
    steps = [i for i in items if i["sk"].startswith("STEP#")]
    order = {step: index for index, step in enumerate(STEP_ORDER)}
    steps.sort(key=lambda s: order.get(s["step"], 99))
    return run, steps


def runs(args: argparse.Namespace) -> int:
    rows = [
        {
            "run_id": r["run_id"],
            "dataset": r.get("dataset"),
            "status": r.get("status"),
            "attempt": r.get("attempt"),
            "started": r.get("started_at"),
            "ended": r.get("ended_at"),
        }
        for r in list_runs(connect(args.stack_name, args.state_dir))
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["run_id", "dataset", "status", "attempt", "started", "ended"])
    return 0


def runs_show(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    run, steps = run_steps(target, args.run_id)
    skipped = {
        s["step"] for s in steps if s.get("attempt", 1) < run.get("attempt", 1) and s.get("status") == "SUCCEEDED"
    }
    rows = [
        {
            "step": STEP_TITLES.get(s["step"], s["step"]),
            "status": s.get("status"),
            "start": s.get("started_at"),
            "end": s.get("ended_at") or s.get("recorded_at"),
            "skipped": "yes" if s["step"] in skipped else "",
            "retries": s.get("retries") or "",
            "error": (s.get("error") or {}).get("cause", ""),
        }
        for s in steps
    ]
    if args.json:
        print_json({"run": run, "steps": steps})
        return 0
    print(
        f"run {run['run_id']}  dataset {run.get('dataset')}  status {run.get('status')}  attempt {run.get('attempt')}"
    )
    print(f"input {run['input']['uri']} (version {run['input'].get('version_id')})")
    print_table(rows, ["step", "status", "start", "end", "skipped", "retries", "error"])
    package = run.get("model_package")
    if isinstance(package, dict) and package.get("arn"):
        print(f"model package {package['arn']}  status {package.get('status')}")
        if package.get("status_description"):
            print(f"  {package['status_description']}")
    return 0


def runs_resume(args: argparse.Namespace) -> int:
    target = connect(args.stack_name, args.state_dir)
    run, _ = run_steps(target, args.run_id)
    if run.get("status") not in ("FAILED", "RUNNING"):
        raise CliError(f"run {args.run_id} is {run.get('status')}; only a failed run can be resumed")
    execution = target.client("stepfunctions").start_execution(
        stateMachineArn=target.output("StateMachineArn"),
        # Named after the run (at most 80 characters); moto would otherwise give every unnamed execution one name.
        name=f"resume-{args.run_id}-{uuid.uuid4().hex[:12]}",
        input=json.dumps({"resume_run_id": args.run_id}),
    )
    print(f"resuming run {args.run_id}: {execution['executionArn']}")
    return 0


def outbox(args: argparse.Namespace) -> int:
    from stepml.local.mail import Outbox  # the local cloud's outbox: loaded on this local path only

    target = connect(None, args.state_dir)
    messages = Outbox(target.outbox_dir).messages() if target.outbox_dir else []
    if args.json:
        print_json([m.as_dict() for m in messages])
        return 0
    if not messages:
        print("(the outbox is empty)")
    for message in messages:
        print(f"--- {message.sent_at}\nTo: {message.to}\nSubject: {message.subject}\n\n{message.body.strip()}\n")
        for link in message.links:
            print(f"link: {link}")
    return 0


class _FormReader(HTMLParser):
    """The review page's form: hidden fields and the page heading."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action") or ""
        elif tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _fetch(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the link is http(s)
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        raise CliError(f"cannot open {request.full_url}: {exc.reason}") from exc


def approve_link(link: str, *, decision: str, comment: str) -> tuple[int, str]:
    """Open a review link and submit its form exactly as a browser would; returns (status, page title).
    The decision is recorded under the address the link was issued to."""
    if not link.startswith(("https://", "http://")):
        raise CliError(f"{link!r} is not an approval link (copy it from `stepml outbox`)")
    status, page = _fetch(urllib.request.Request(link, headers={"User-Agent": "stepml-cli"}))  # noqa: S310 - scheme checked above
    form = _FormReader()
    form.feed(page)
    if status != 200 or form.action is None:
        raise CliError(f"the review page answered {status}: {form.title.strip() or 'no form on the page'}")
    if "csrf" not in form.fields:
        # The link went on to another page with a form: the stack's sign-in (ApprovalSignIn=cognito).
        raise CliError(
            f"the link opened a sign-in page ({form.title.strip() or 'no title'}): this stack puts the review page "
            "behind a sign-in; open the link in a browser, sign in as the approver and decide there"
        )
    target = urllib.parse.urljoin(link, form.action)
    origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(link))
    body = urllib.parse.urlencode({**form.fields, "decision": decision, "comment": comment})
    request = urllib.request.Request(  # noqa: S310 - same origin as the checked link
        target,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": origin, "User-Agent": "stepml-cli"},
    )
    status, page = _fetch(request)
    result = _FormReader()
    result.feed(page)
    return status, result.title.strip()


def approve(args: argparse.Namespace) -> int:
    decision = "reject" if args.reject else "approve"
    status, title = approve_link(args.link, decision=decision, comment=args.comment or "")
    print(f"{decision}: HTTP {status}: {title}")
    return 0 if status == 200 else 1


def read_feature_rows(path: Path, feature_names: list[str] | None = None) -> list[list[str]]:
    """CSV rows of raw feature values (categories as text, blanks for missing values). A first
    row naming the features is a header and skipped: the dataset's ``feature_names`` when
    lineage knows them, else a row of names alone (no cell a number or blank)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if rows and _is_header(rows[0], feature_names):
        rows = rows[1:]
    if not rows:
        raise CliError(f"{path}: no rows to predict")
    return rows


def _is_header(row: list[str], feature_names: list[str] | None) -> bool:
    cells = [cell.strip() for cell in row]
    if feature_names:
        return cells == list(feature_names)
    return all(cell and not _is_number(cell) for cell in cells)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _served_model(target: Target, endpoint: str) -> dict[str, Any] | None:
    """The model ``endpoint`` serves and its run's problem type and classes, from lineage; None
    when lineage has no record of it (an endpoint stepml did not make)."""
    from stepml.lineage_queries import LineageQueryError, NotInLineageError, model_lineage, run_records

    table = target.lineage_table()
    try:
        found = model_lineage(table, endpoint, sagemaker_client=target.client("sagemaker"))
        run, _ = run_records(table, found["run_id"])
    except NotInLineageError:
        return None
    except LineageQueryError as exc:
        raise CliError(str(exc)) from exc
    config = run.get("config") or {}
    return {
        "model": found.get("model"),
        "problem_type": config.get("problem_type"),
        "classes": config.get("classes"),
        "features": [str(feature.get("name")) for feature in config.get("features") or []] or None,
    }


def _values_per_row(body: str, rows: int) -> int:
    """How many values the endpoint answered per row, for a model lineage cannot describe."""
    values = [token for token in re.split(r"[,\s\[\]]+", body) if token]
    return max(1, len(values) // rows) if values and len(values) % rows == 0 else 1


def prediction_entries(predictions: Any, problem_type: str | None, classes: list[Any] | None) -> list[dict[str, Any]]:
    """One entry per input row: ``label`` and ``score`` (binary: the positive class's probability;
    multiclass: the top class's, with every class's in ``scores``), ``prediction`` for regression,
    the raw ``prediction``/``scores`` when the problem type is unknown."""
    from stepml.metrics import predicted_classes

    entries: list[dict[str, Any]] = []
    if problem_type in ("binary", "multiclass"):
        names = list(classes) if classes else [0, 1]
        picked = predicted_classes(problem_type, predictions)
        for number, (values, index) in enumerate(zip(predictions.tolist(), picked.tolist(), strict=True), start=1):
            if problem_type == "binary":
                entries.append({"row": number, "label": names[index], "score": values})
            else:
                scores = dict(zip(names, values, strict=True))
                entries.append({"row": number, "label": names[index], "score": values[index], "scores": scores})
        return entries
    for number, values in enumerate(predictions.tolist(), start=1):
        entries.append({"row": number, "scores" if isinstance(values, list) else "prediction": values})
    return entries


def _entry_line(entry: dict[str, Any]) -> str:
    if "label" in entry:
        scores = list(entry["scores"].values()) if "scores" in entry else [entry["score"]]
        return ",".join(map(str, [entry["label"], *scores]))
    values = entry.get("scores", [entry.get("prediction")])
    return ",".join(map(str, values))


def predict(args: argparse.Namespace) -> int:
    from stepml.evaluation import EvaluationError, parse_predictions
    from stepml.utils import csv_line

    target = connect(args.stack_name, args.state_dir)
    served = _served_model(target, args.endpoint)
    if served is None:
        print(f"note: endpoint {args.endpoint} is not in lineage; values are unlabelled", file=sys.stderr)
        served = {"model": None, "problem_type": None, "classes": None, "features": None}
    rows = read_feature_rows(Path(args.file), served["features"])
    runtime = target.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=args.endpoint,
            ContentType="text/csv",
            Accept="text/csv",
            # Quoted where a category holds a comma: the endpoint's preprocessor reads RFC 4180 CSV.
            Body="\n".join(csv_line(row) for row in rows),
        )
        body = response["Body"].read().decode("utf-8")
    except ClientError as exc:
        raise CliError(f"endpoint {args.endpoint}: {exc.response['Error'].get('Message', exc)}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"endpoint {args.endpoint}: the answer is not UTF-8 text") from exc
    problem_type, classes = served["problem_type"], served["classes"]
    width = len(classes) if problem_type == "multiclass" and classes else 1
    if problem_type is None:
        width = _values_per_row(body, len(rows))
    try:
        predictions = parse_predictions(body, len(rows), width, f"endpoint {args.endpoint}")
    except EvaluationError as exc:
        raise CliError(str(exc)) from exc
    entries = prediction_entries(predictions, problem_type, classes)
    for entry, row in zip(entries, rows, strict=True):
        # The raw values sent, by feature name when lineage knows the dataset's features.
        names = served["features"]
        entry["features"] = dict(zip(names, row, strict=False)) if names and len(names) == len(row) else row
    if args.json:
        print_json({"endpoint": args.endpoint, **served, "predictions": entries})
    else:
        for entry in entries:
            print(_entry_line(entry))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run_parser = commands.add_parser("runs", parents=[common], help="pipeline runs from lineage")
    run_parser.set_defaults(handler=runs)
    sub = run_parser.add_subparsers(dest="runs_command", metavar="COMMAND")
    show = sub.add_parser("show", parents=[common], help="each step of a run")
    show.add_argument("run_id")
    show.set_defaults(handler=runs_show)
    resume = sub.add_parser("resume", parents=[common], help="resume a failed run, skipping finished steps")
    resume.add_argument("run_id")
    resume.set_defaults(handler=runs_resume)
    reproduce.register(sub, common)

    box = commands.add_parser("outbox", parents=[common], help="emails the local cloud has sent")
    box.set_defaults(handler=outbox)

    decide = commands.add_parser("approve", help="approve (or reject) through a review link, as a browser would")
    decide.add_argument("link")
    decide.add_argument("--reject", action="store_true")
    decide.add_argument("--comment", default="")
    decide.set_defaults(handler=approve)

    score = commands.add_parser(
        "predict",
        parents=[common],
        help="send CSV rows of raw feature values (categories as text, blanks for missing) to an endpoint",
    )
    score.add_argument("--endpoint", required=True)
    score.add_argument("file")
    score.set_defaults(handler=predict)
