"""A local stand-in for SageMaker's XGBoost 1.7-1 inference container, one per model container.

(The server also hosts a script-mode container's model, ``script_server``, given its ``loader``.)

The server speaks the container contract on 127.0.0.1 and an OS-chosen port: ``GET /ping``
answers 200 once the model is loaded, ``POST /invocations`` scores ``text/csv`` (or libsvm)
rows. Loading, parsing, status codes and the response encoding follow the container's
algorithm-mode handler (sagemaker-xgboost-container, ``algorithm_mode/handler_service.py``):

* every top-level file of the model directory is an XGBoost model loaded with
  ``Booster.load_model`` (the 1.7-1 training container writes ``xgboost-model`` with
  ``Booster.save_model``); several files are averaged, as the container's ensemble does;
* an empty body is 204, a payload that does not parse is 415, a failed prediction is 400;
* ``Accept: text/csv`` joins the predictions with commas on one line (the container keeps
  this for backwards compatibility; with ``SAGEMAKER_BATCH`` set, one prediction per line),
  ``application/json`` is a JSON array; no ``Accept`` (or ``*/*``) means the model's
  ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, else ``application/json``.

Pickled models (containers before 1.3-1) are not loaded: unpickling runs arbitrary code.
"""

from __future__ import annotations

import csv
import http.client
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import numpy as np

LOGGER = logging.getLogger(__name__)

CSV = "text/csv"
JSON = "application/json"
LIBSVM_TYPES = ("text/libsvm", "text/x-libsvm")
#: The container's request size limit (``MAX_CONTENT_LENGTH``), as InvokeEndpoint's.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class ModelServerError(RuntimeError):
    """The model server could not start or stop."""


class InferenceError(Exception):
    """An invocation the container would answer with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ServedModel(Protocol):
    """What a container's server calls for ``POST /invocations``."""

    def invoke(self, payload: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """The response body and content type; ``InferenceError`` for an error status."""
        ...


class XGBoostModel:
    """The boosters of one model directory, loaded and queried as the 1.7-1 container does."""

    def __init__(self, boosters: list, environment: Mapping[str, str] | None = None):
        self._boosters = boosters
        self._environment = dict(environment or {})
        # One predict at a time per model: cheap here, and immune to thread-safety questions.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, environment: Mapping[str, str] | None = None) -> XGBoostModel:
        """Load every top-level model file of ``model_dir``; ``InferenceError`` (500) names the bad file."""
        import xgboost as xgb

        files = sorted(p for p in Path(model_dir).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InferenceError(500, f"Unable to load model: no model file in {model_dir} (expected xgboost-model)")
        boosters = []
        for path in files:
            try:
                booster = xgb.Booster()
                booster.load_model(str(path))
            except Exception as exc:  # xgboost raises XGBoostError or ValueError for foreign files
                raise InferenceError(
                    500, f"Unable to load model: model file {path.name} is not an XGBoost model: {exc}"
                ) from exc
            booster.set_param("nthread", 1)
            boosters.append(booster)
        return cls(boosters, environment)

    def predict(self, payload: bytes, content_type: str | None) -> np.ndarray:
        """Score a request body; ``InferenceError`` carries the container's status code."""
        import xgboost as xgb

        if not payload:
            raise InferenceError(204, "")
        media_type = (content_type or CSV).split(";")[0].strip().lower()
        if media_type not in (CSV, "csv", *LIBSVM_TYPES):
            raise InferenceError(
                415, f"Content-type {content_type} not supported. Supported content-type is text/csv, text/libsvm"
            )
        try:
            # One thread, as the boosters: an OpenMP team per request costs more than it saves on
            # a request's rows, and on a busy machine its barrier waits for a descheduled thread.
            if media_type in LIBSVM_TYPES:
                matrix = xgb.DMatrix(_parse_libsvm_payload(payload.decode("utf-8")), nthread=1)
            else:
                matrix = xgb.DMatrix(parse_csv_payload(payload.decode("utf-8")), nthread=1)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InferenceError(
                415,
                f"Loading {media_type} data failed with Exception, please ensure data is in {media_type} format: {exc}",
            ) from exc
        try:
            with self._lock:
                predictions = [booster.predict(matrix, validate_features=False) for booster in self._boosters]
        except Exception as exc:  # xgboost reports shape mismatches as XGBoostError
            raise InferenceError(400, f"Unable to evaluate payload provided: {exc}") from exc
        return predictions[0] if len(predictions) == 1 else np.mean(predictions, axis=0)

    def invoke(self, payload: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """One ``POST /invocations``: the response body and its content type."""
        return self.encode(self.predict(payload, content_type), accept)

    def encode(self, predictions: np.ndarray, accept: str | None) -> tuple[bytes, str]:
        """Encode predictions for ``accept`` as the container's ``default_output_fn`` does."""
        if not accept or accept.strip() == "*/*":
            accept = self._environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        accept_type = accept.strip().lower()
        values = predictions.tolist()
        if accept_type in (CSV, "csv"):
            if self._environment.get("SAGEMAKER_BATCH"):
                text = "\n".join(map(str, values)) + "\n"
            else:
                text = ",".join(map(str, values))
            return text.encode("utf-8"), accept
        if accept_type in (JSON, "json"):
            return json.dumps(values).encode("utf-8"), accept
        raise InferenceError(
            415, f"{accept} is not an accepted Accept type. Please choose one of the following: ['{CSV}', '{JSON}']."
        )


def _sniff_delimiter(first_line: str) -> str:
    sample = first_line[:512]
    if "," in sample and '"' not in sample and "'" not in sample:
        # What the Sniffer answers for such a line ("," leads its preferred delimiters), without
        # its frequency tables: they were half of a single-row request's time in the server.
        return ","
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t| ").delimiter
    except csv.Error:
        return ","
    return "," if delimiter.isalnum() else delimiter


def parse_csv_payload(text: str) -> np.ndarray:
    """Parse headerless CSV rows of features into a float matrix; empty fields are missing (NaN)."""
    lines = text.strip().split("\n")
    delimiter = _sniff_delimiter(lines[0])
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        row = []
        for column, cell in enumerate(line.rstrip("\r").split(delimiter), start=1):
            cell = cell.strip()
            try:
                row.append(float(cell) if cell else math.nan)
            except ValueError:
                raise ValueError(f"row {number}, column {column}: {cell!r} is not a number") from None
        if rows and len(row) != len(rows[0]):
            raise ValueError(f"row {number} has {len(row)} values but row 1 has {len(rows[0])}")
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _parse_libsvm_payload(text: str):
    from scipy.sparse import csr_matrix

    data, indices, indptr = [], [], [0]
    for number, line in enumerate(text.strip().split("\n"), start=1):
        for item in line.split():
            if ":" not in item:
                continue  # a label or weight in front of the features
            index, _, value = item.partition(":")
            try:
                indices.append(int(index))
                data.append(float(value))
            except ValueError:
                raise ValueError(f"row {number}: {item!r} is not index:value") from None
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm on, the body waits for
    # the client's delayed ACK of the headers (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        LOGGER.debug("model server %s: " + format, self.server.owner.name, *args)

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != HTTPStatus.NO_CONTENT:
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/ping":
            self._reply(404, b"not found")
            return
        owner = self.server.owner
        if owner.model is not None:
            self._reply(200)
        elif owner.load_error is not None:
            self._reply(500, owner.load_error.encode("utf-8"))
        else:
            self._reply(503, b"model is loading")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        if self.path.split("?")[0] != "/invocations":
            self._reply(404, b"not found")
            return
        model = self.server.owner.model
        if model is None:
            self._reply(500, (self.server.owner.load_error or "model is not loaded").encode("utf-8"))
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._reply(413, b"payload larger than 6 MB")
            return
        try:
            body, content_type = model.invoke(payload, self.headers.get("Content-Type"), self.headers.get("Accept"))
        except InferenceError as exc:
            self._reply(exc.status, exc.message.encode("utf-8"))
            return
        self._reply(200, body, content_type)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ModelServer


class ModelServer:
    """One model container: an HTTP server in a thread, loading its model in the background."""

    def __init__(
        self,
        model_dir: Path,
        *,
        environment: Mapping[str, str] | None = None,
        name: str = "model",
        loader: Callable[[Path, Mapping[str, str]], ServedModel] | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.environment = dict(environment or {})
        self.name = name
        #: Loads the container's model (default: the XGBoost container's); see ``script_server``.
        self._loader = loader or XGBoostModel.load
        self.model: ServedModel | None = None
        self.load_error: str | None = None
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        if self._server is None:
            raise ModelServerError(f"model server {self.name} is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServer:
        """Bind 127.0.0.1 on a free port, serve in a thread and load the model in another."""
        if self._server is not None:
            raise ModelServerError(f"model server {self.name} is already running")
        try:
            server = _Server(("127.0.0.1", 0), _Handler)
        except OSError as exc:
            raise ModelServerError(f"model server {self.name} could not bind 127.0.0.1: {exc}") from exc
        server.owner = self
        self._server = server
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name=f"stepml-sm-serve-{self.name}",
            ),
            threading.Thread(target=self._load, daemon=True, name=f"stepml-sm-load-{self.name}"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _load(self) -> None:
        try:
            self.model = self._loader(self.model_dir, self.environment)
        except InferenceError as exc:
            self.load_error = exc.message

    def ping(self, timeout: float = 2.0) -> int:
        """The status code of ``GET /ping`` (what SageMaker's health check sees)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop serving and close the port: later connections are refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
