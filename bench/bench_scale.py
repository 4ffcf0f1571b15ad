"""Benchmark: how the preprocessing job and the whole pipeline scale with the rows (issue 13).

    .venv/bin/python bench/bench_scale.py [--sizes 50000,500000,5000000] [--wide-rows 50000]
                                          [--no-pipeline] [--pipeline-only] [--wide-in-pipeline]
                                          [--idle-timeout 120]

For each size, and for a wide dataset (the churn columns plus 193 noise columns: 200
features), in one run:

* ``glue``: ``glue_jobs/preprocess.py`` on the file in the local Glue engine's own worker
  (``stepml.local.glue.worker``, warmed up first as the local cloud warms it): wall time,
  rows/s and the peak RSS of the worker's process tree (Python driver and JVM);
* ``pandas``: the same transform as a plain pandas script (``bench/pandas_preprocess.py``) on
  the same file, in a new process each time: wall time, peak RSS, and its time over Glue's;
* ``pipeline``: the file (the wide one only with ``--wide-in-pipeline``) uploaded to the local
  cloud, upload to approval email, with the Glue job run's and the training job's own seconds,
  and the peak RSS of the whole local cloud (this process and every process under it), and
  where the seconds went (the upload, its event, each state of the execution's history); each
  run is then rejected and waited for, so runs do not overlap. The cloud's idle RSS, and the
  processes holding it: before the first upload (the Glue warm-up done), right after the last
  run ends, and once the idle reaper (``--idle-timeout``, as ``stepml local up``'s) stopped the
  warm workers (waited for at most the timeout and a minute, its time printed).

Then the exponent b of time = a * rows^b (least squares on log-log, the churn sizes) for each
column, and the size where Spark overtakes pandas (measured, or where the two fitted lines cross).
Data comes from ``stepml.sample_data.stream_churn_csv``, written a chunk at a time. RSS is
sampled from /proc every 0.2 s. A benchmark that prints numbers, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from stepml.cli.context import print_table  # noqa: E402
from stepml.config import dataset_config_key, parse_dataset_config  # noqa: E402
from stepml.local.idle import DEFAULT_IDLE_TIMEOUT_SECONDS  # noqa: E402
from stepml.sample_data import extra_feature_names, stream_churn_csv  # noqa: E402

SCRIPT = ROOT / "glue_jobs" / "preprocess.py"
PANDAS_SCRIPT = ROOT / "bench" / "pandas_preprocess.py"
CHURN = json.loads((ROOT / "examples/datasets/churn.json").read_text())
WIDE_EXTRA = 193  # + the 7 churn features = 200
GOAL_EMAIL_500K = 30.0
GOAL_5M_SECONDS = 300.0
GOAL_PEAK_BYTES = 8 << 30
GOAL_IDLE_BYTES = 1.5 * (1 << 30)


# -- process-tree memory --------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree_pages(root: int) -> Iterator[tuple[int, int]]:
    """(pid, resident pages) of ``root`` and every process under it that is still there."""
    tree, stack = _children(), [root]
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
                yield pid, int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and every process under it."""
    return sum(pages for _, pages in _tree_pages(root)) * os.sysconf("SC_PAGE_SIZE")


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().split(b"\0")
    except OSError:
        return "?"
    # The JVM's class name, the Python module or script: what the process is, not its whole line.
    for marker in (b"org.apache.spark.deploy.SparkSubmit", b"-m", b"-P"):
        if marker in words:
            at = words.index(marker)
            return b" ".join(words[at : at + 2] if marker != b"-P" else words[at + 1 : at + 2]).decode(errors="replace")
    return b" ".join(words[:2]).decode(errors="replace")[-60:]


def rss_by_process(root: int) -> list[tuple[int, str, int]]:
    """(pid, what it runs, bytes resident) of ``root`` and every process under it, largest first."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = [(pid, _command(pid), pages * page) for pid, pages in _tree_pages(root)]
    return sorted(found, key=lambda row: -row[2])


def print_processes(root: int) -> None:
    rows = rss_by_process(root)
    table = [{"pid": str(pid), "process": what, "MiB": _mib(rss) or "0"} for pid, what, rss in rows]
    print_table(table, ["pid", "process", "MiB"])


class PeakRss:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds while in the ``with`` block."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


# -- datasets ------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    rows: int
    path: Path
    config: dict
    wide: bool = False
    results: dict[str, float] = field(default_factory=dict)


def wide_config() -> dict:
    features = [*CHURN["features"], *({"name": n, "type": "numeric"} for n in extra_feature_names(WIDE_EXTRA))]
    return {**CHURN, "name": "churnwide", "features": features}


def make_datasets(folder: Path, sizes: list[int], wide_rows: int) -> list[Dataset]:
    datasets = []
    for rows in sizes:
        path = stream_churn_csv(folder / f"churn-{rows}.csv", rows, seed=21)
        datasets.append(Dataset(f"churn {rows:,}", rows, path, CHURN))
    if wide_rows:
        path = stream_churn_csv(folder / f"wide-{wide_rows}.csv", wide_rows, seed=22, extra_numeric=WIDE_EXTRA)
        datasets.append(Dataset(f"wide {wide_rows:,} x 200", wide_rows, path, wide_config(), wide=True))
    return datasets


# -- the Glue job and the pandas script, outside the cloud ----------------------------------


def run_glue(datasets: list[Dataset], folder: Path) -> None:
    """Each dataset through the Glue job in one warm local Glue worker (as the cloud runs it)."""
    from stepml.local.glue.worker import ScriptWorker

    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), environment.get("PYTHONPATH", "")])
    worker = ScriptWorker(environment, folder / "glue" / "driver.log")
    try:
        warm = stream_churn_csv(folder / "glue" / "warm.csv", 400, seed=1)
        _glue_once(worker, warm, CHURN, folder / "glue" / "warm-out")
        for dataset in datasets:
            with PeakRss(worker.process.pid) as memory:
                seconds = _glue_once(worker, dataset.path, dataset.config, folder / "glue" / f"out-{dataset.rows}")
            dataset.results.update(glue_s=seconds, glue_peak=memory.peak)
            print(f"  glue   {dataset.name}: {seconds:.1f}s, peak {memory.peak / 2**20:.0f} MiB", flush=True)
    finally:
        worker.stop()


def _glue_once(worker, path: Path, config: dict, output: Path) -> float:
    dumped = parse_dataset_config(config, "bench").model_dump(mode="json")
    argv = ["--run_id", "bench", "--input_uri", str(path), "--output_uri", f"{output}/"]
    argv += ["--dataset_config", json.dumps(dumped)]
    started = time.monotonic()
    code = worker.run(SCRIPT, argv, output.parent, output.parent / f"{output.name}.log", timeout_seconds=3600)
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"the Glue job failed on {path}: see {output.parent / f'{output.name}.log'}")
    return seconds


def run_pandas(datasets: list[Dataset], folder: Path) -> None:
    for dataset in datasets:
        config = folder / f"{dataset.config['name']}.json"
        config.write_text(json.dumps(dataset.config))
        command = [sys.executable, str(PANDAS_SCRIPT), str(dataset.path), str(folder / "pandas"), str(config)]
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        with PeakRss(process.pid) as memory:
            out, _ = process.communicate()
        seconds = time.monotonic() - started
        if process.returncode != 0:
            raise SystemExit(f"the pandas script failed on {dataset.path}")
        dataset.results.update(pandas_s=seconds, pandas_peak=memory.peak, pandas_own_s=float(out.split()[-1]))
        print(f"  pandas {dataset.name}: {seconds:.1f}s, peak {memory.peak / 2**20:.0f} MiB", flush=True)


# -- the whole pipeline on the local cloud --------------------------------------------------


def idle_rss(pid: int, seconds: float = 10.0) -> int:
    """The most ``pid``'s tree holds over ``seconds`` with nothing running."""
    peak, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        peak = max(peak, tree_rss(pid))
        time.sleep(0.5)
    return peak


def idle_after_reaping(idle_timeout: float) -> int:
    """Wait (at most the timeout and a minute more) until the reaper stopped every warm worker
    (no process under this one holds memory), print how long that took, then the idle RSS."""
    started, pid = time.monotonic(), os.getpid()

    def workers_gone() -> bool:
        return all(rss < 1 << 20 for child, _, rss in rss_by_process(pid) if child != pid)

    until = started + idle_timeout + 60
    while not workers_gone() and time.monotonic() < until:
        time.sleep(1)
    seconds = time.monotonic() - started
    state = "every warm worker stopped" if workers_gone() else "warm workers still running"
    value = idle_rss(pid)
    print(f"  cloud idle {seconds:.0f} s after the runs ({state}): {value / 2**20:.0f} MiB", flush=True)
    print_processes(pid)
    return value


def _wait(condition, timeout: float, what: str):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"{what} did not happen within {timeout:.0f} s")


def run_pipeline(datasets: list[Dataset], folder: Path, timeout: float, idle_timeout: float) -> dict[str, int]:
    """Each dataset uploaded to one local cloud, one run at a time; returns the idle RSS."""
    from tests.helpers import local_cloud

    cloud = local_cloud(folder / "cloud")
    # As `stepml local up` runs it (the test session turns the reaper off).
    cloud.idle_timeout_seconds = idle_timeout or None
    cloud.start()
    try:
        warm_up = Path(cloud.state_dir) / "glue" / "warm-up"
        _wait(lambda: any(warm_up.glob("*/manifest.json")), 600, "the Glue warm-up")
        idle = {"before the runs": idle_rss(os.getpid())}
        print(f"  cloud idle before the first upload: {idle['before the runs'] / 2**20:.0f} MiB", flush=True)
        print_processes(os.getpid())
        outputs = cloud.outputs()
        s3 = cloud.client_factory("s3")()
        for config in {d.config["name"]: d.config for d in datasets}.values():
            body = json.dumps({**config, "promote_only_if_better": False}).encode()
            s3.put_object(Bucket=outputs["ArtifactBucketName"], Key=dataset_config_key(config["name"]), Body=body)
        for dataset in datasets:
            with PeakRss(os.getpid()) as memory:
                dataset.results.update(_one_run(cloud, outputs, dataset, timeout))
            dataset.results["cloud_peak"] = memory.peak
            print(
                f"  pipeline {dataset.name}: email after {dataset.results['pipeline_s']:.1f}s, "
                f"peak {memory.peak / 2**20:.0f} MiB",
                flush=True,
            )
        idle["right after the runs"] = idle_rss(os.getpid())
        print(f"  cloud idle right after the runs: {idle['right after the runs'] / 2**20:.0f} MiB", flush=True)
        print_processes(os.getpid())
        if idle_timeout:
            idle["after the idle timeout"] = idle_after_reaping(idle_timeout)
        return idle
    finally:
        cloud.stop()


def _one_run(cloud, outputs: dict, dataset: Dataset, timeout: float) -> dict[str, float]:
    """Upload, wait for the approval email, reject, wait for the execution's end."""
    from stepml.cli.runs import approve_link
    from stepml.lineage import make_run_id

    s3, sfn = cloud.client_factory("s3")(), cloud.client_factory("stepfunctions")()
    bucket, key = outputs["UploadBucketName"], f"incoming/{dataset.config['name']}/bench-{dataset.rows}.csv"
    started, uploaded_at = time.monotonic(), time.time()
    s3.upload_file(str(dataset.path), bucket, key)
    put_at = time.time()
    run_id = make_run_id(bucket, key, s3.head_object(Bucket=bucket, Key=key)["VersionId"])
    email = _wait(
        lambda: next((m for m in cloud.outbox.messages() if f"model {run_id}?" in m.subject), None),
        timeout,
        f"the approval email of {run_id}",
    )
    email_seconds, email_at = time.monotonic() - started, time.time()
    approve_link(email.links[0], decision="reject", comment="benchmark")
    arn = outputs["StateMachineArn"]

    def ended():
        # The executions this upload's events started (their input names the object's key): an
        # upload may send more than one event, and the extra executions end early as duplicates.
        # The run is the one with the longest history, once none is running.
        mine = [
            execution
            for execution in sfn.list_executions(stateMachineArn=arn)["executions"]
            if key in sfn.describe_execution(executionArn=execution["executionArn"]).get("input", "")
        ]
        if not mine or any(execution["status"] == "RUNNING" for execution in mine):
            return None
        return max(mine, key=lambda execution: len(_history(sfn, execution)))

    execution = _wait(ended, 600, f"the end of {run_id}'s execution")
    history = _history(sfn, execution)
    print_breakdown(history, (uploaded_at, put_at), email_at)
    return {"pipeline_s": email_seconds, **_step_seconds(cloud, history, run_id)}


def _history(sfn, execution: dict) -> list[dict]:
    # Paged, as AWS pages a long history (the local cloud answers it in one page).
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
    return [event for page in pages for event in page["events"]]


def _step_seconds(cloud, history: list[dict], run_id: str) -> dict[str, float]:
    glue, sagemaker = cloud.client_factory("glue")(), cloud.client_factory("sagemaker")()
    runs = [
        run
        for job in glue.list_jobs()["JobNames"]
        for run in glue.get_job_runs(JobName=job)["JobRuns"]
        if run_id in json.dumps(run.get("Arguments", {}))
    ]
    # The history names a task's resource as AWS does ("createTrainingJob.sync", its type
    # "sagemaker"); match on the API's name wherever it stands.
    training = [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["TrainingJobName"]
        for event in history
        if "createTrainingJob" in event.get("taskScheduledEventDetails", {}).get("resource", "")
    ]
    result = {}
    if runs:
        result["glue_run_s"] = (runs[0]["CompletedOn"] - runs[0]["StartedOn"]).total_seconds()
    if training:
        job = sagemaker.describe_training_job(TrainingJobName=training[0])
        result["training_s"] = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
    return result


def state_breakdown(history: list[dict], upload: tuple[float, float], email_at: float) -> list[tuple[str, float]]:
    """Seconds from the upload's start to the approval email, by where they went: the upload
    (``upload``: its start and end), its event to the execution's start, each state (entered to
    exited, summed over repeats, in first-entered order), the gaps between states, and Request
    approval until the email."""
    rows: dict[str, float] = {}
    start = history[0]["timestamp"].timestamp()
    rows["upload (the client's PutObject, multipart)"] = upload[1] - upload[0]
    rows["S3 event -> execution start (EventBridge rule)"] = start - upload[1]
    entered: dict[str, float] = {}
    last_exit = start
    for event in history:
        at = event["timestamp"].timestamp()
        if at > email_at:
            break
        if event["type"].endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = at
            rows["(between states)"] = rows.get("(between states)", 0.0) + max(0.0, at - last_exit)
            rows.setdefault(name, 0.0)
        elif event["type"].endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            rows[name] = rows.get(name, 0.0) + at - entered.pop(name, at)
            last_exit = at
    for name, at in entered.items():  # still running at the email: Request approval
        rows[name] = rows.get(name, 0.0) + email_at - at
    return list(rows.items())


def print_breakdown(history: list[dict], upload: tuple[float, float], email_at: float) -> None:
    rows = state_breakdown(history, upload, email_at)
    total = email_at - upload[0]
    table = [
        {"state": name, "s": f"{seconds:.2f}", "%": f"{100 * seconds / total:.0f}"}
        for name, seconds in rows
        if seconds >= 0.05
    ]
    table.append({"state": "total (upload -> email)", "s": f"{total:.2f}", "%": "100"})
    print_table(table, ["state", "s", "%"])


# -- the summary ----------------------------------------------------------------------------


def fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """(a, b) of seconds = a * rows^b, least squares on the logarithms; None under two points."""
    points = [(n, s) for n, s in points if s and s > 0]
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(s) for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - b * mx), b


def crossover(churn: list[Dataset]) -> str:
    """The size where the Glue job gets faster than the pandas script."""
    measured = [d.rows for d in churn if "glue_s" in d.results and d.results["glue_s"] < d.results["pandas_s"]]
    if measured:
        return f"measured: Spark is faster from {min(measured):,} rows on"
    glue = fit([(d.rows, d.results.get("glue_s")) for d in churn])
    pandas = fit([(d.rows, d.results.get("pandas_s")) for d in churn])
    if not glue or not pandas:
        return "not measured (fewer than two sizes)"
    if pandas[1] <= glue[1]:
        return "pandas stays faster at every size on these fits (its exponent is not larger than Spark's)"
    rows = (glue[0] / pandas[0]) ** (1 / (pandas[1] - glue[1]))
    return f"not within the measured sizes; the fitted lines cross at about {rows:,.0f} rows"


def _mib(value: float | None) -> str:
    return f"{value / 2**20:,.0f}" if value else ""


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def report(datasets: list[Dataset], idle: dict[str, int]) -> None:
    table = []
    for d in datasets:
        r = d.results
        table.append(
            {
                "dataset": d.name,
                "MB": f"{d.path.stat().st_size / 1e6:,.0f}",
                "glue s": _s(r.get("glue_s")),
                "glue rows/s": f"{d.rows / r['glue_s']:,.0f}" if r.get("glue_s") else "",
                "glue peak MiB": _mib(r.get("glue_peak")),
                "pandas s": _s(r.get("pandas_s")),
                "pandas peak MiB": _mib(r.get("pandas_peak")),
                "glue/pandas": f"{r['glue_s'] / r['pandas_s']:.1f}x" if r.get("glue_s") and r.get("pandas_s") else "",
                "upload->email s": _s(r.get("pipeline_s")),
                "glue run s": _s(r.get("glue_run_s")),
                "training s": _s(r.get("training_s")),
                "cloud peak MiB": _mib(r.get("cloud_peak")),
            }
        )
    print_table(table, list(table[0]))
    churn = [d for d in datasets if not d.wide]
    for label, key in (("glue job", "glue_s"), ("pandas script", "pandas_s"), ("upload->email", "pipeline_s")):
        found = fit([(d.rows, d.results.get(key)) for d in churn])
        if found:
            print(f"time ~ rows^b, {label}: b = {found[1]:.2f}")
    print(f"Spark overtakes pandas: {crossover(churn)}")
    for when, value in idle.items():
        met = "met" if value < GOAL_IDLE_BYTES else "missed"
        print(f"local cloud idle {when}: {_mib(value)} MiB (goal < 1,536 MiB: {met})")
    goals(churn)


def goals(churn: list[Dataset]) -> None:
    by_rows = {d.rows: d.results for d in churn}
    if by_rows.get(500_000, {}).get("pipeline_s"):
        seconds = by_rows[500_000]["pipeline_s"]
        print(f"goal 500k upload->email <= 30 s: {seconds:.1f}s, {'met' if seconds <= GOAL_EMAIL_500K else 'missed'}")
    if by_rows.get(5_000_000, {}).get("pipeline_s"):
        seconds, peak = by_rows[5_000_000]["pipeline_s"], by_rows[5_000_000].get("cloud_peak", 0)
        met = seconds <= GOAL_5M_SECONDS and peak <= GOAL_PEAK_BYTES
        print(f"goal 5M <= 5 min within 8 GiB: {seconds:.0f}s, peak {_mib(peak)} MiB, {'met' if met else 'missed'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,500000,5000000", help="churn row counts, comma-separated")
    parser.add_argument("--wide-rows", type=int, default=50_000, help="rows of the 200-feature dataset (0: none)")
    parser.add_argument("--no-pipeline", action="store_true", help="only the Glue job and the pandas script")
    parser.add_argument("--pipeline-only", action="store_true", help="only the pipeline (no Glue job, no pandas)")
    parser.add_argument(
        "--wide-in-pipeline", action="store_true", help="upload the wide dataset too (its Glue job takes minutes)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for one approval email")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_SECONDS,
        help="the cloud's idle reaper timeout; the idle RSS is measured again once it stopped the warm workers "
        f"(default {DEFAULT_IDLE_TIMEOUT_SECONDS:g} s, as `stepml local up`; 0: no reaper)",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    with tempfile.TemporaryDirectory(prefix="stepml-bench-scale-") as temp:
        folder = Path(temp)
        started = time.monotonic()
        datasets = make_datasets(folder, sizes, args.wide_rows)
        print(f"data written in {time.monotonic() - started:.1f}s", flush=True)
        if not args.pipeline_only:
            run_glue(datasets, folder)
            run_pandas(datasets, folder)
        uploaded = [d for d in datasets if args.wide_in_pipeline or not d.wide]
        idle = {} if args.no_pipeline else run_pipeline(uploaded, folder, args.timeout, args.idle_timeout)
        print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        report(datasets, idle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
