"""Run the test tiers as two pytest processes at once: ``tests/unit``, and ``tests/local`` with ``tests/e2e``.

``make test`` calls this. The unit tier is one busy Python process (moto in-process); the local-cloud
tiers spend much of their time in the local cloud's own processes (Spark, model servers, Lambda
workers) and waiting on them, so on a 2-core machine the two overlap well. They share nothing: each
tier's fixtures start their own clouds on free ports, and the IAM mutation test, which must run after
every end-to-end run, stays last inside the second process.

Each line a tier prints is shown as it comes, prefixed with the tier's name; at the end, a line per
tier with its exit code and wall time, then the FAILED and ERROR lines of pytest's short summary of
each tier that failed, so that the last lines of a long log (all a CI page may show) name the failing
tests. The exit code is the first non-zero one. ``--serial`` runs the
tiers one after the other (a machine with one core, or to read one tier's output alone).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tier:
    """One pytest process: its name (the output prefix) and its arguments."""

    name: str
    arguments: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = field(default=None, repr=False)


TIERS = (
    Tier("unit", ["tests/unit", "--durations=10"]),
    Tier("cloud", ["tests/local", "tests/e2e", "--durations=15"]),
)

_print_lock = threading.Lock()

# pytest's short test summary (-ra) starts each failed test's line with one of these.
_FAILURE_PREFIXES = ("FAILED ", "ERROR ")
# At most this many failure lines per tier are repeated at the end; the full list is above them.
MAX_REPEATED_FAILURES = 20


def _say(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def _relay(tier: Tier, started: float) -> None:
    """Print the tier's output a line at a time, then record how it ended."""
    assert tier.process is not None and tier.process.stdout is not None
    for line in tier.process.stdout:
        _say(f"[{tier.name}] {line}")
        if line.startswith(_FAILURE_PREFIXES):
            tier.failures.append(line.rstrip("\n"))
    tier.returncode = tier.process.wait()
    tier.seconds = time.monotonic() - started


def _start(tier: Tier, python: str, extra: Sequence[str]) -> threading.Thread:
    started = time.monotonic()
    _say(f"==> pytest {' '.join(tier.arguments + list(extra))} [{tier.name}]\n")
    tier.process = subprocess.Popen(
        [python, "-m", "pytest", *tier.arguments, *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    relay = threading.Thread(target=_relay, args=(tier, started), name=f"relay-{tier.name}", daemon=True)
    relay.start()
    return relay


def run(tiers: Sequence[Tier], *, serial: bool, python: str = sys.executable, extra: Sequence[str] = ()) -> int:
    """Run ``tiers`` (at once unless ``serial``); the first non-zero exit code, or 0."""
    try:
        if serial:
            for tier in tiers:
                _start(tier, python, extra).join()
        else:
            for relay in [_start(tier, python, extra) for tier in tiers]:
                relay.join()
    except KeyboardInterrupt:
        for tier in tiers:
            if tier.process is not None and tier.process.poll() is None:
                tier.process.terminate()
        raise
    for tier in tiers:
        _say(f"==> {tier.name}: exit {tier.returncode} after {duration(tier.seconds)}\n")
    for tier in tiers:
        if tier.returncode:
            _say_failures(tier)
    return next((tier.returncode for tier in tiers if tier.returncode), 0) or 0


def duration(seconds: float) -> str:
    """``seconds`` as whole minutes and seconds ("9 min 40 s"), rounded to the second."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _say_failures(tier: Tier) -> None:
    shown = tier.failures[:MAX_REPEATED_FAILURES]
    more = len(tier.failures) - len(shown)
    _say(f"==> {tier.name} failed: {len(tier.failures) or 'no'} failed test(s) in its short summary\n")
    for line in shown:
        _say(f"    {line}\n")
    if more:
        _say(f"    ... and {more} more above\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the tiers; arguments after ``--`` go to every pytest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", action="store_true", help="run the tiers one after the other")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    options = parser.parse_args(argv)
    return run(TIERS, serial=options.serial, extra=options.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
