"""Benchmark: the local model server against raw xgboost predict, and a soak under 8 clients.

    .venv/bin/python bench/bench_endpoint.py [--seconds 3] [--soak 60]

Trains a churn-sized model (7 features, the example dataset's hyperparameters) and measures,
for single rows and 1,000-row batches, with 1 and 8 concurrent clients, p50/p99 latency and
requests/s of:

* ``raw predict``: ``Booster.predict`` on a new DMatrix of the parsed rows in this process (the
  floor the goal names; the server also sets ``nthread`` 1 per booster);
* ``raw inplace predict``: ``Booster.inplace_predict`` of the parsed rows, no DMatrix (the floor
  of the server's own path, which calls the same C function for rows it can take; the goal is
  also printed against it);
* ``bare HTTP``: the same request bodies POSTed to a trivial HTTP/1.1 server that answers ``0``
  (what "plus HTTP" costs: Python's http.server and http.client, a keep-alive round trip, Nagle
  off as in the model server);
* ``model server``: ``POST /invocations`` on ``stepml.local.sagemaker.model_server`` (CSV in,
  JSON out: parsing, predict, encoding).

Both servers run in a child process each, as the model server does in the local cloud's
process, so the clients' threads do not share the servers' interpreter lock. Then a soak: 8
clients send single rows for ``--soak`` seconds; any non-200 answer or connection error counts.
Prints one table and the goal: model server p50 per single-row request <= 2 x raw predict p50
+ bare HTTP p50 (and the same with raw inplace predict, the stricter floor). A benchmark that
prints numbers, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from stepml.cli.context import print_table  # noqa: E402
from stepml.local.sagemaker.model_server import ModelServer, parse_csv_payload  # noqa: E402

FEATURES = 7
HYPERPARAMETERS = {"max_depth": 4, "eta": 0.3, "subsample": 0.9, "objective": "binary:logistic", "nthread": 1}
ROUNDS = 60
BATCHES = (1, 1000)
CLIENTS = (1, 8)


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def train_model(folder: Path) -> Path:
    """A model like the pipeline's: 7 churn-like features, 60 rounds of depth 4."""
    import xgboost as xgb

    rng = np.random.default_rng(7)
    features = _rows(rng, 5000)
    score = 0.04 * features[:, 1] - 0.05 * features[:, 0] + 0.6 * features[:, 3] - features[:, 4]
    labels = (score + rng.normal(0, 1, len(score)) > np.median(score)).astype(np.float32)
    booster = xgb.train(HYPERPARAMETERS, xgb.DMatrix(features, label=labels), num_boost_round=ROUNDS)
    model_dir = folder / "model"
    model_dir.mkdir()
    booster.save_model(str(model_dir / "xgboost-model"))
    return model_dir


def _rows(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.integers(0, 72, count),
            rng.uniform(20, 120, count).round(2),
            rng.uniform(20, 8000, count).round(2),
            rng.integers(0, 8, count),
            rng.integers(0, 3, count),
            rng.integers(0, 4, count),
            rng.integers(0, 3, count),
        ]
    ).astype(np.float32)


def _csv(matrix: np.ndarray) -> bytes:
    return "\n".join(",".join(f"{v:g}" for v in row) for row in matrix).encode()


# -- servers, each in its own process -------------------------------------------------------


class _Trivial(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as the model server: no delayed-ACK wait between headers and body

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"0")


def _serve(kind: str, model_dir: str, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    if kind == "model server":
        server = ModelServer(Path(model_dir), name="bench").start()
        while server.ping() != 200:
            time.sleep(0.05)
        ports.put(server.port)
        stop.wait()
        server.stop()
        return
    trivial = ThreadingHTTPServer(("127.0.0.1", 0), _Trivial)
    trivial.daemon_threads = True
    threading.Thread(target=trivial.serve_forever, daemon=True).start()
    ports.put(trivial.server_address[1])
    stop.wait()
    trivial.shutdown()


class ServerProcess:
    """A server of ``kind`` in a child process; ``port`` once it answers."""

    def __init__(self, kind: str, model_dir: Path):
        context = multiprocessing.get_context("spawn")
        self._ports, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_serve, args=(kind, str(model_dir), self._ports, self._stop))

    def __enter__(self) -> int:
        self._process.start()
        return self._ports.get(timeout=120)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(timeout=10)


# -- load ---------------------------------------------------------------------------------


class Result:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.lock = threading.Lock()


def _http_call(port: int, body: bytes) -> Callable[[], Callable[[], bool]]:
    """Per client: a keep-alive connection and a call that POSTs ``body`` and says if it was a 200."""

    def client() -> Callable[[], bool]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "text/csv", "Accept": "application/json"}

        def call() -> bool:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status == 200

        return call

    return client


def _raw_call(booster, features: np.ndarray) -> Callable[[], Callable[[], bool]]:
    import xgboost as xgb

    def client() -> Callable[[], bool]:
        def call() -> bool:
            # A new one-thread DMatrix each call, as the server makes (the same one would hit xgboost's cache).
            booster.predict(xgb.DMatrix(features, nthread=1), validate_features=False)
            return True

        return call

    return client


def _inplace_call(booster, features: np.ndarray) -> Callable[[], Callable[[], bool]]:
    def client() -> Callable[[], bool]:
        def call() -> bool:
            booster.inplace_predict(features, validate_features=False)
            return True

        return call

    return client


def drive(make_client: Callable[[], Callable[[], bool]], clients: int, seconds: float) -> tuple[Result, float]:
    """``clients`` threads call as fast as they can for ``seconds``; the result and the wall time."""
    result = Result()
    start_at = time.monotonic() + 0.2
    end_at = start_at + seconds

    def worker() -> None:
        call = make_client()
        call()  # warm the connection and the code path outside the measurement
        latencies, errors = [], 0
        time.sleep(max(0.0, start_at - time.monotonic()))
        while (now := time.perf_counter()) and time.monotonic() < end_at:
            try:
                ok = call()
            except (OSError, http.client.HTTPException):
                ok = False
                call = make_client()
            latencies.append(time.perf_counter() - now)
            errors += 0 if ok else 1
        with result.lock:
            result.latencies += latencies
            result.errors += errors

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result, seconds


def _row(what: str, batch: int, clients: int, result: Result, seconds: float) -> dict[str, str]:
    lat = result.latencies
    return {
        "what": what,
        "rows/request": f"{batch:,}",
        "clients": str(clients),
        "requests": f"{len(lat):,}",
        "p50 ms": f"{_percentile(lat, 0.5) * 1000:.3f}",
        "p99 ms": f"{_percentile(lat, 0.99) * 1000:.3f}",
        "requests/s": f"{len(lat) / seconds:,.0f}",
        "errors": str(result.errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measured cell")
    parser.add_argument("--soak", type=float, default=60.0, help="seconds of the 8-client soak")
    args = parser.parse_args()
    import xgboost as xgb

    folder = Path(tempfile.mkdtemp(prefix="stepml-bench-endpoint-"))
    model_dir = train_model(folder)
    booster = xgb.Booster()
    booster.load_model(str(model_dir / "xgboost-model"))
    booster.set_param("nthread", 1)
    rng = np.random.default_rng(11)
    bodies = {batch: _csv(_rows(rng, batch)) for batch in BATCHES}
    # Raw predict gets the parsed features: parsing the CSV is part of what the server adds.
    matrices = {batch: parse_csv_payload(body.decode()) for batch, body in bodies.items()}

    table, p50 = [], {}
    for label, call in (("raw predict", _raw_call), ("raw inplace predict", _inplace_call)):
        for batch in BATCHES:
            for clients in CLIENTS:
                result, seconds = drive(call(booster, matrices[batch]), clients, args.seconds)
                table.append(_row(label, batch, clients, result, seconds))
                p50[label, batch, clients] = _percentile(result.latencies, 0.5)
    for kind, label in (("trivial", "bare HTTP"), ("model server", "model server")):
        with ServerProcess(kind, model_dir) as port:
            for batch in BATCHES:
                for clients in CLIENTS:
                    result, seconds = drive(_http_call(port, bodies[batch]), clients, args.seconds)
                    table.append(_row(label, batch, clients, result, seconds))
                    p50[label, batch, clients] = _percentile(result.latencies, 0.5)
            if kind == "model server":
                result, seconds = drive(_http_call(port, bodies[1]), 8, args.soak)
                table.append(_row(f"model server soak {args.soak:.0f} s", 1, 8, result, seconds))
    print_table(table, list(table[0]))
    served = p50["model server", 1, 1]
    for label, name in (("raw predict", "goal"), ("raw inplace predict", "the same against inplace predict")):
        budget = 2 * p50[label, 1, 1] + p50["bare HTTP", 1, 1]
        verdict = "met" if served <= budget else "missed"
        print(
            f"{name} (1 client, single row): model server p50 {served * 1000:.3f} ms <= 2 x {label}"
            f" {p50[label, 1, 1] * 1000:.3f} ms + bare HTTP {p50['bare HTTP', 1, 1] * 1000:.3f} ms"
            f" = {budget * 1000:.3f} ms: {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
