"""Benchmark: 20 uploads over a minute to the local cloud, the pipeline under load.

    .venv/bin/python bench/bench_load.py [--uploads 20] [--seconds 60] [--rows 1000]

Uploads ``--uploads`` different generated files, evenly spread over ``--seconds``, to one
onboarded dataset, then follows every run. As soon as a run's approval email arrives the
benchmark rejects the model through the email's link (as an approver's browser would), so
test endpoints do not pile up and production is never touched. Prints the completed runs,
the failures, and the p50/p95 time from upload to approval email. A benchmark that prints
numbers, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stepml.cli.runs import approve_link  # noqa: E402
from stepml.sample_data import churn_csv  # noqa: E402
from tests.e2e.conftest import Pipeline  # noqa: E402
from tests.helpers import local_cloud  # noqa: E402

DATASET = "load"
FINAL = ("SUCCEEDED", "REJECTED", "REJECTED_BY_GATE", "APPROVAL_TIMED_OUT", "FAILED")


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="spread the uploads over this many seconds")
    parser.add_argument("--rows", type=int, default=1000, help="rows per generated file")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on runs after this many seconds")
    args = parser.parse_args()

    cloud = local_cloud(Path(tempfile.mkdtemp(prefix="stepml-bench-")))
    started = time.monotonic()
    cloud.start()
    print(f"local cloud started in {time.monotonic() - started:.1f}s")
    try:
        pipeline = Pipeline(cloud)
        pipeline.onboard(DATASET, promote_only_if_better=False)
        bodies = [churn_csv(args.rows, seed=500 + index) for index in range(args.uploads)]
        uploaded_at: dict[str, float] = {}

        def upload_all() -> None:
            gap = args.seconds / max(1, args.uploads - 1)
            first = time.monotonic()
            for index, body in enumerate(bodies):
                time.sleep(max(0.0, first + index * gap - time.monotonic()))
                uploaded_at[pipeline.upload(DATASET, f"part-{index:02d}.csv", body)["run_id"]] = time.monotonic()

        uploader = threading.Thread(target=upload_all, daemon=True)
        load_started = time.monotonic()
        uploader.start()

        to_email: dict[str, float] = {}
        status: dict[str, str] = {}
        deadline = load_started + args.timeout
        while time.monotonic() < deadline and (uploader.is_alive() or len(status) < len(uploaded_at)):
            for message in cloud.outbox.messages():
                for run_id, at in list(uploaded_at.items()):
                    if run_id not in to_email and f"model {run_id}?" in message.subject:
                        to_email[run_id] = time.monotonic() - at
                        approve_link(message.links[0], decision="reject", comment="load test")
            for run_id in list(uploaded_at):
                if run_id in status:
                    continue
                run = pipeline.run_record(run_id).get("RUN", {})
                if run.get("status") in FINAL:
                    status[run_id] = run["status"]
            time.sleep(0.5)
        wall = time.monotonic() - load_started

        completed = [r for r, s in status.items() if s != "FAILED"]
        failed = {r: s for r, s in status.items() if s == "FAILED"}
        unfinished = [r for r in uploaded_at if r not in status]
        waits = list(to_email.values())
        print(f"uploads:                       {len(uploaded_at)} over {args.seconds:.0f}s ({args.rows} rows each)")
        print(f"completed runs:                {len(completed)}")
        print(f"failed runs:                   {len(failed)}")
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(Counter(status.values()).items()))
        print(f"outcomes:                      {outcomes or '-'} (approval emails: {len(to_email)})")
        print(f"unfinished after {args.timeout:.0f}s:        {len(unfinished)}")
        print(f"upload -> approval email p50:  {_percentile(waits, 0.50):.1f}s")
        print(f"upload -> approval email p95:  {_percentile(waits, 0.95):.1f}s")
        mean = statistics.mean(waits) if waits else float("nan")
        print(f"upload -> approval email mean/max: {mean:.1f}s / {max(waits, default=float('nan')):.1f}s")
        print(f"wall time, first upload to last run ended: {wall:.1f}s")
        for run_id in failed:
            run = pipeline.run_record(run_id)["RUN"]
            print(f"  FAILED {run_id} at {run.get('failed_step')}: {(run.get('error') or {}).get('cause')}")
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
