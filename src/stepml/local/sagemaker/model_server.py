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

Per request the server keeps http.server's and the container's behaviour but skips their slow
parts where the answer is certain to be the same: an ordinary request line and plain headers
are parsed without the email parser (``_Handler.parse_request``), a response leaves in one
write, and CSV rows the C API takes as a DMatrix would are scored without one (``DensePredictor``).
``bench/bench_endpoint.py`` measures it; docs/measured.md says what each part saved.
"""

from __future__ import annotations

import csv
import ctypes
import email.parser
import http.client
import json
import logging
import math
import re
import threading
import time
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
        #: Each booster's ``DensePredictor``, or None where the self-check failed: the DMatrix path then.
        self._dense = DensePredictor.for_boosters(boosters)

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
                rows = parse_csv_payload(payload.decode("utf-8"))
                predictions = self._predict_dense(rows)
                if predictions is not None:
                    return predictions
                matrix = xgb.DMatrix(rows, nthread=1)
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

    def _predict_dense(self, rows: np.ndarray) -> np.ndarray | None:
        """The predictions of ``rows`` without a DMatrix, or None where the DMatrix path must answer.

        The C API's dense predict scores the same float32 values with the same trees as a DMatrix
        of them, but it refuses a row narrower than the model, which a DMatrix takes as missing
        features, and it takes infinities, which a DMatrix refuses: those requests (and any
        error) go the container's way, so its answers and error messages stay what they were."""
        dense = self._dense
        if dense is None or len(rows) == 0 or np.isinf(rows).any():
            return None
        if any(predictor.features != rows.shape[1] for predictor in dense):
            return None
        try:
            with self._lock:
                predictions = [predictor(rows) for predictor in dense]
        except Exception:  # the DMatrix path reports it as the container does
            return None
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


class DensePredictor:
    """One booster's predictions of a dense float32 matrix through XGBoost's C API
    (``XGBoosterPredictFromDense``, what ``Booster.inplace_predict`` calls for a numpy array).

    A single-row request spent most of its server time in the Python of building a ``DMatrix``
    and of ``Booster.predict`` around two short C calls; this makes the one C call with its
    configuration encoded once. ``for_boosters`` checks it against ``Booster.predict`` on a
    DMatrix before use and answers None (the DMatrix path) if they differ or the API is missing.
    """

    def __init__(self, booster):
        from xgboost import core

        self._library, self._check, self._handle = core._LIB, core._check_call, booster.handle
        self.features = booster.num_features()
        # Booster.inplace_predict's arguments for a plain prediction: every tree, NaN missing.
        arguments = {"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 0}
        arguments |= {"missing": math.nan, "strict_shape": False, "cache_id": 0}
        self._config = json.dumps(arguments).encode("utf-8")

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The predictions of ``rows`` (a 2-D float32 matrix of ``features`` columns), as ``Booster.predict``'s."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        shape, dimensions = ctypes.POINTER(ctypes.c_uint64)(), ctypes.c_uint64()
        output = ctypes.POINTER(ctypes.c_float)()
        self._check(
            self._library.XGBoosterPredictFromDense(
                self._handle,
                json.dumps(rows.__array_interface__).encode("utf-8"),
                self._config,
                None,  # no proxy DMatrix: no base margin
                ctypes.byref(shape),
                ctypes.byref(dimensions),
                ctypes.byref(output),
            )
        )
        # The buffer belongs to the booster's thread-local store until its next call: copy it out.
        return np.ctypeslib.as_array(output, shape=tuple(shape[i] for i in range(dimensions.value))).copy()

    @classmethod
    def for_boosters(cls, boosters: list) -> list[DensePredictor] | None:
        """Each booster's predictor if all of them score a probe as ``Booster.predict`` does, else None."""
        import xgboost as xgb

        try:
            predictors = [cls(booster) for booster in boosters]
            for predictor, booster in zip(predictors, boosters, strict=True):
                probe = np.arange(2 * predictor.features, dtype=np.float32).reshape(2, -1)
                probe[1, ::2] = np.nan
                expected = booster.predict(xgb.DMatrix(probe, nthread=1), validate_features=False)
                if not np.array_equal(predictor(probe), expected):
                    return None
        except Exception:  # any doubt means the container's own path
            LOGGER.debug("dense predict unavailable; using DMatrix", exc_info=True)
            return None
        return predictors


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


#: A request line http.server would split into exactly these three words (ASCII, single spaces).
_REQUEST_LINE = re.compile(rb"([A-Z]+) (/[!-~]*) (HTTP/1\.[01])\r?\n")
#: A header line the email parser reads as (name, value without leading blanks or line end).
_PLAIN_HEADER = re.compile(rb"([!-9;-~]+):[ \t]*([\t -~]*?)\r?\n")
#: http.client's limits on a header line and on the number of header lines.
_MAX_LINE, _MAX_HEADERS = 65536, 100


def _read_headers(rfile, message_class: type[http.client.HTTPMessage]) -> http.client.HTTPMessage:
    """``http.client.parse_headers``'s message (the same limits and errors), parsed without the
    email parser when every line is a plain header; otherwise by it, as before."""
    lines = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    plain = [_PLAIN_HEADER.fullmatch(line) for line in lines[:-1]]
    if lines[-1] != b"" and all(plain):
        message = message_class()
        for match in plain:
            message[match[1].decode("ascii")] = match[2].decode("ascii")
        message.set_payload("")
        # The email parser reads an (empty) multipart or message body after such headers.
        if message.get_content_maintype() not in ("multipart", "message"):
            return message
    return email.parser.Parser(_class=message_class).parsestr(b"".join(lines).decode("iso-8859-1"))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Were the headers and the body two writes, with Nagle's algorithm on the body would wait for
    # the client's delayed ACK of the headers (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    # A response up to this size goes out in one write, flushed by handle_one_request: two writes
    # woke the client twice (once for the headers alone) and cost both processes a system call.
    wbufsize = 64 * 1024

    #: The Date header's (second, text): formatting it took a twentieth of a request's server time.
    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header's text, formatted once a second (``formatdate`` reads whole seconds)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached = _Handler._date
        if cached[0] != second:
            cached = _Handler._date = (second, super().date_time_string(second))
        return cached[1]

    def handle_expect_100(self) -> bool:
        """Send ``100 Continue`` now: the client waits for it before it sends the body."""
        answer = super().handle_expect_100()
        self.wfile.flush()
        return answer

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request``, faster for an ordinary request.

        A request line ``METHOD /path HTTP/1.x`` and header lines of the plain ``Name: value`` form
        are parsed here (the email parser took a fifth of a single-row request's server time);
        anything else goes to the standard library, which answers it as before."""
        line = _REQUEST_LINE.fullmatch(self.raw_requestline)
        if line is None:
            return super().parse_request()
        command, path, version = (part.decode("iso-8859-1") for part in line.groups())
        self.command, self.request_version = command, version
        self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        self.close_connection = not (version == "HTTP/1.1" and self.protocol_version >= "HTTP/1.1")
        try:
            self.headers = _read_headers(self.rfile, self.MessageClass)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        # From here as the standard library: Connection and Expect.
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if (
            self.headers.get("Expect", "").lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

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
        self._load_ended = threading.Event()

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
        finally:
            self._load_ended.set()

    def wait_loaded(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the model's load to end, loaded or failed; whether it has."""
        return self._load_ended.wait(timeout)

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
