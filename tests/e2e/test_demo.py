"""`stepml demo` as `make demo` runs it: it prints the approval link and waits for a person.

The person is played by this test: it reads the link from the demo's output and approves it
over HTTP, as a browser's form post would. The demo must then show the production endpoint
answering, point at the run in the console (which answers) and at its lineage commands, keep
the local cloud up, and exit 0 when the person presses Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from stepml.cli.runs import approve_link
from tests.helpers import REPO_ROOT, free_port

pytestmark = pytest.mark.e2e


def test_demo_waits_for_a_person_then_serves_predictions(tmp_path):
    command = [
        sys.executable, "-m", "stepml.cli.main", "demo", "--rows", "1000",
        "--state-dir", str(tmp_path / "state"), "--port", str(free_port()), "--api-port", str(free_port()),
        "--console-port", str(free_port()),
    ]  # fmt: skip
    demo = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True).start()
    output: list[str] = []
    link = None
    try:
        deadline = time.monotonic() + 300
        while link is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert demo.poll() is None, "".join(output)
                continue
            output.append(line)
            if "Open this link in a browser" in line:
                link = lines.get(timeout=10).strip()
                output.append(link)
        assert link and link.startswith("http://127.0.0.1:"), "".join(output)
        # The demo has seen the execution enter the approval task, and the approval is still open
        # (its review page offers the decision): the demo is waiting for the person, not gone.
        if "Request approval" not in "".join(output):  # the history poll may come after the email's
            _read_until(lines, output, demo, "waiting for a decision", deadline=time.monotonic() + 30)
        assert re.search(r"Request approval\s+waiting for a decision", "".join(output)), "".join(output)
        with urllib.request.urlopen(link, timeout=30) as review:
            assert review.status == 200 and "Approve the " in review.read().decode()
        assert demo.poll() is None, "the demo waits for the person"
        status, title = approve_link(link, decision="approve", comment="looks good")
        assert status == 200 and title.startswith("Approved"), title
        _read_until(lines, output, demo, "press Ctrl-C to stop it", deadline=time.monotonic() + 240)
        console = re.search(r"console:  (http://127\.0\.0\.1:\d+/execution\?arn=\S+)", "".join(output))
        assert console, "".join(output)
        with urllib.request.urlopen(console.group(1), timeout=30) as page:  # the cloud is still up
            assert page.status == 200 and 'data-state="Model deployed" data-status="succeeded"' in page.read().decode()
        assert demo.poll() is None, "the demo keeps the local cloud up"
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(timeout=60)
    time.sleep(0.5)
    while not lines.empty():
        output.append(lines.get())
    text = "".join(output)
    assert code == 0, text
    assert "[6/6] production endpoint" in text
    predictions = re.findall(r"-> churn probability (\d\.\d{3})", text)
    assert len(predictions) == 5 and all(0.0 <= float(p) <= 1.0 for p in predictions), text
    for state in ("Preprocess data", "Train model", "Evaluate model", "Request approval"):
        assert re.search(rf"ok   {state}\s+\d+\.\ds", text), state
    run_id = re.search(r"lineage:  stepml lineage show (\S+)", text)
    assert run_id and f"stepml runs show {run_id.group(1)}" in text, text
    assert "stopping the local cloud..." in text and "Traceback" not in text, text


def _read_until(
    lines: queue.Queue[str], output: list[str], demo: subprocess.Popen, needle: str, deadline: float
) -> None:
    """Collect the demo's output lines until one contains ``needle``."""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert demo.poll() is None, "".join(output)
            continue
        output.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} in the demo's output: {''.join(output)}")
