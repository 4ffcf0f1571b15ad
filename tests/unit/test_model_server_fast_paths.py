"""The model server's fast paths answer exactly as the slow ones they stand in for.

* headers: ``_read_headers`` against ``http.client.parse_headers`` (the email parser);
* the request line, ``Expect: 100-continue``, HTTP/1.0 and ``Connection: close`` over a real socket;
* predictions: ``DensePredictor`` against ``Booster.predict`` on a DMatrix, and every request it
  does not take (narrow rows, infinities, wide rows) answered by the container's path.
"""

from __future__ import annotations

import io
import json
import socket
from http.client import HTTPException, HTTPMessage, LineTooLong, parse_headers

import numpy as np
import pytest
import xgboost as xgb

from stepml.local.sagemaker.model_server import DensePredictor, InferenceError, ModelServer, XGBoostModel, _read_headers

BASE = b"Host: 127.0.0.1:8080\r\nAccept-Encoding: identity\r\nContent-Length: 23\r\nContent-Type: text/csv\r\n"


@pytest.mark.parametrize(
    "block",
    [
        BASE + b"\r\n",
        b"\r\n",
        BASE.replace(b"\r\n", b"\n") + b"\n",
        BASE + b"Accept: application/json\r\naccept: text/csv\r\n\r\n",
        BASE + b"X-Empty:\r\nX-Blank:   \r\nX-Tab:\t a\tb  \r\n\r\n",
        BASE + b"X-Folded: one\r\n two\r\n\r\n",
        b"From nobody\r\n" + BASE + b"\r\n",
        BASE + b"X-Latin: caf\xe9\r\nX-Nel: a\x85b\r\n\r\n",
        BASE + b"X-Cr: a\rb\r\n\r\n",
        BASE + b"Bad Name: x\r\n: empty name\r\nnot a header\r\n\r\n",
        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        BASE,  # the connection closed before the blank line
    ],
)
def test_headers_parse_as_the_email_parser_parses_them(block):
    fast_file, slow_file = io.BytesIO(block + b"1,2,3"), io.BytesIO(block + b"1,2,3")
    fast, slow = _read_headers(fast_file, HTTPMessage), parse_headers(slow_file)
    assert _state(fast) == _state(slow)
    assert fast_file.read() == slow_file.read()  # the body is left where it was


def _state(message) -> dict:
    """A message's attributes, comparable: defects by type, sub-messages by their state."""
    state = {**vars(message), "type": type(message), "defects": [type(d) for d in message.defects]}
    if isinstance(message.get_payload(), list):
        state["_payload"] = [_state(part) for part in message.get_payload()]
    return state


def test_header_limits_raise_as_http_client_does():
    too_long = b"X-Long: " + b"a" * 70000 + b"\r\n\r\n"
    too_many = b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
    for block, error in ((too_long, LineTooLong), (too_many, HTTPException)):
        with pytest.raises(error) as fast:
            _read_headers(io.BytesIO(block), HTTPMessage)
        with pytest.raises(error) as slow:
            parse_headers(io.BytesIO(block))
        assert str(fast.value) == str(slow.value)


def _train(folder, objective: str = "binary:logistic", name: str = "xgboost-model", **params):
    rng = np.random.default_rng(5)
    features = rng.normal(size=(400, 5)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32)
    if objective.startswith("multi"):
        labels = np.digitize(features[:, 0], [-0.5, 0.5]).astype(np.float32)
        params["num_class"] = 3
    booster = xgb.train({"objective": objective, "max_depth": 3, **params}, xgb.DMatrix(features, label=labels), 8)
    folder.mkdir(exist_ok=True)
    booster.save_model(str(folder / name))
    return folder


def _csv(rows: np.ndarray) -> bytes:
    return "\n".join(",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in rows).encode()


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror", "multi:softprob"])
def test_dense_predictions_equal_the_dmatrix_path(tmp_path, objective):
    model = XGBoostModel.load(_train(tmp_path / "m", objective))
    assert model._dense is not None
    rows = np.random.default_rng(9).normal(size=(300, 5)).astype(np.float32)
    rows[np.random.default_rng(10).random(rows.shape) < 0.2] = np.nan
    booster = model._boosters[0]
    for batch in (rows[:1], rows[1:2], rows):
        expected = booster.predict(xgb.DMatrix(batch, nthread=1), validate_features=False)
        served = model.predict(_csv(batch), "text/csv")
        assert served.shape == expected.shape and np.array_equal(served, expected)


def test_an_ensemble_averages_the_dense_predictions(tmp_path):
    folder = _train(tmp_path / "m", name="a")
    _train(folder, name="b", eta=0.1)
    model = XGBoostModel.load(folder)
    rows = np.random.default_rng(3).normal(size=(20, 5)).astype(np.float32)
    dmatrix = xgb.DMatrix(rows, nthread=1)
    expected = np.mean([b.predict(dmatrix, validate_features=False) for b in model._boosters], axis=0)
    assert len(model._dense) == 2
    assert np.array_equal(model.predict(_csv(rows), "text/csv"), expected)


def test_requests_the_dense_path_does_not_take_are_answered_as_the_container_answers(tmp_path):
    model = XGBoostModel.load(_train(tmp_path / "m"))
    booster = model._boosters[0]
    # Narrow rows: the container takes the missing columns as missing values.
    narrow = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    assert np.array_equal(
        model.predict(b"0.5,-1,2", "text/csv"), booster.predict(xgb.DMatrix(narrow), validate_features=False)
    )
    with pytest.raises(InferenceError) as wide:
        model.predict(b"1,2,3,4,5,6", "text/csv")
    assert wide.value.status == 400
    assert wide.value.message.startswith("Unable to evaluate payload provided: ")
    assert "Number of columns does not match number of features in booster" in wide.value.message
    with pytest.raises(InferenceError) as infinite:
        model.predict(b"1,2,inf,4,5", "text/csv")
    assert infinite.value.status == 415
    assert infinite.value.message.startswith("Loading text/csv data failed with Exception")
    assert "Input data contains `inf`" in infinite.value.message


def test_a_dense_predictor_that_disagrees_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(DensePredictor, "__call__", lambda self, rows: np.zeros(len(rows), dtype=np.float32))
    model = XGBoostModel.load(_train(tmp_path / "m"))
    assert model._dense is None
    rows = np.ones((1, 5), dtype=np.float32)
    expected = model._boosters[0].predict(xgb.DMatrix(rows), validate_features=False)
    assert np.array_equal(model.predict(b"1,1,1,1,1", "text/csv"), expected)


@pytest.fixture
def server(tmp_path):
    served = ModelServer(_train(tmp_path / "m"), name="fast-paths").start()
    try:
        # Wait for the model to load: ping answers 503 until it has.
        while served.ping() != 200:
            assert served.load_error is None
        yield served
    finally:
        served.stop()


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response on ``sock``: its head and its body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    return sock.recv(1) == b""


def test_expect_100_continue_is_sent_before_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 9\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"1,2,3,4,5")
        head, body = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and len(json.loads(body)) == 1


@pytest.mark.parametrize(
    ("request_line", "headers", "status", "closes"),
    [
        (b"POST /invocations HTTP/1.1", b"", b"200", False),
        (b"POST //invocations HTTP/1.1", b"", b"200", False),
        (b"POST /invocations HTTP/1.1", b"Connection: close\r\n", b"200", True),
        (b"POST /invocations HTTP/1.0", b"", b"200", True),
        (b"POST /invocations HTTP/1.0", b"Connection: keep-alive\r\n", b"200", False),
        (b"POST /other HTTP/1.1", b"", b"404", False),
        (b"post /invocations HTTP/1.1", b"", b"501", True),
        (b"POST  /invocations HTTP/1.1", b"X-Odd : value\r\n", b"200", False),
        (b"POST /invocations HTTP/1.2", b"", b"200", False),
    ],
)
def test_request_lines_and_connection_headers_behave_as_http_server(server, request_line, headers, status, closes):
    body = b"1,2,3,4,5"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\nContent-Length: 9\r\n" + headers + b"\r\n" + body)
        head, _ = _read_response(sock)
        assert head.split(b" ")[1] == status
        if closes:
            assert _closed(sock)
        else:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock)[0].startswith(b"HTTP/1.1 200")


def test_a_response_is_one_write(server, monkeypatch):
    """Headers and body leave in one send, so the client wakes once for the whole response."""
    sent: list[bytes] = []
    original = socket.socket.send

    def send(self, data, *args):
        sent.append(bytes(data))
        return original(self, data, *args)

    monkeypatch.setattr(socket.socket, "send", send)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n1,2,3,4,5")
        head, body = _read_response(sock)
    assert sent == [head + b"\r\n\r\n" + body]


def test_the_date_header_is_the_standard_librarys():
    """The Date text is cached per second; it is what http.server formats for that second."""
    import email.utils
    import time

    from stepml.local.sagemaker.model_server import _Handler

    handler = _Handler.__new__(_Handler)
    assert handler.date_time_string(1_700_000_000.75) == email.utils.formatdate(1_700_000_000.75, usegmt=True)
    before = int(time.time())
    first, second = handler.date_time_string(), handler.date_time_string()
    after = int(time.time())
    expected = {email.utils.formatdate(moment, usegmt=True) for moment in range(before, after + 1)}
    assert first in expected and second in expected


def test_a_response_larger_than_the_write_buffer_arrives_whole(server):
    import http.client

    rows = np.random.default_rng(4).normal(size=(30_000, 5)).astype(np.float32)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(2):  # and the keep-alive connection still serves the next request
            connection.request("POST", "/invocations", body=_csv(rows), headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200 and len(body) > 64 * 1024
            assert json.loads(body) == server.model.predict(_csv(rows), "text/csv").tolist()
    finally:
        connection.close()
