"""The local HTTP API: routes from the template, payload format 2.0, response mapping."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from dataclasses import dataclass

import pytest

from stepml.local.apigateway import HttpApiServer, Route, build_event, response_from_result
from stepml.local.lambdas import FunctionThrottledError


@dataclass
class Result:
    payload: bytes
    function_error: str | None = None


class RecordingEngine:
    def __init__(self, answer):
        self.answer = answer
        self.events = []

    def invoke(self, name, payload):
        event = json.loads(payload)
        self.events.append((name, event))
        if self.answer == "error":
            return Result(b'{"errorType":"KeyError","errorMessage":"x"}', "Unhandled")
        if self.answer == "throttled":
            raise FunctionThrottledError(name)
        return Result(json.dumps(self.answer).encode())


@pytest.fixture
def server_factory():
    servers = []

    def make(answer):
        engine = RecordingEngine(answer)
        routes = [
            Route("GET", "/approvals/{approval_id}", "ApprovalApi"),
            Route("POST", "/approvals/{approval_id}", "ApprovalApi"),
        ]
        server = HttpApiServer(routes, engine, api_id="local123").start()
        servers.append(server)
        return server, engine

    yield make
    for server in servers:
        server.stop()


def _request(server, method, path, body=None, headers=None):
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_routes_from_the_template_reach_the_function_with_a_2_0_event(server_factory):
    page = {"statusCode": 200, "headers": {"Content-Type": "text/html"}, "body": "<p>ok</p>"}
    server, engine = server_factory(page)
    status, headers, body = _request(
        server, "GET", "/approvals/abc?sig=s1&x=1&x=2", headers={"User-Agent": "Scanner/1"}
    )
    assert status == 200 and body == b"<p>ok</p>" and headers["Content-Type"] == "text/html"
    name, event = engine.events[0]
    assert name == "ApprovalApi"
    assert event["version"] == "2.0" and event["routeKey"] == "GET /approvals/{approval_id}"
    assert event["pathParameters"] == {"approval_id": "abc"}
    assert event["queryStringParameters"] == {"sig": "s1", "x": "1,2"}
    assert event["rawQueryString"] == "sig=s1&x=1&x=2"
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["http"]["userAgent"] == "Scanner/1"
    assert event["requestContext"]["stage"] == "$default"
    assert event["headers"]["user-agent"] == "Scanner/1"


@pytest.mark.parametrize(
    ("content_type", "as_text"),
    [
        ("text/plain; charset=utf-8", True),
        ("application/json", True),
        ("application/xml", True),
        ("application/javascript", True),
        # HTTP APIs base64-encode everything else, form posts and untyped bodies included.
        ("application/x-www-form-urlencoded", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_bodies_arrive_as_text_only_for_text_content_types_as_in_http_apis(server_factory, content_type, as_text):
    server, engine = server_factory({"statusCode": 303, "headers": {"Location": "/x"}})
    headers = {"Content-Type": content_type} if content_type else {}
    status, answered, _ = _request(server, "POST", "/approvals/abc", body=b"decision=approve", headers=headers)
    assert status == 303 and answered["Location"] == "/x"
    event = engine.events[0][1]
    assert event["isBase64Encoded"] is (not as_text)
    assert (event["body"] if as_text else base64.b64decode(event["body"])) in ("decision=approve", b"decision=approve")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (bytes(range(256)) * 4096, "application/x-www-form-urlencoded"),
        (b"decision=\xff\xfe", "text/plain"),
        ("decision=approve".encode("utf-16"), "text/plain; charset=utf-16"),
    ],
    ids=["1MiB-random-form", "bad-utf8-text", "utf16-text"],
)
def test_a_body_that_is_not_utf8_reaches_the_function_base64_encoded_and_is_answered(
    server_factory, body, content_type
):
    server, engine = server_factory({"statusCode": 400, "body": "refused"})
    status, _, answer = _request(server, "POST", "/approvals/abc", body=body, headers={"Content-Type": content_type})
    assert (status, answer) == (400, b"refused")
    event = engine.events[0][1]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body


def test_a_body_over_api_gateways_10_mb_is_413_and_never_reaches_the_function(server_factory):
    server, engine = server_factory({"statusCode": 200})
    status, _, answer = _request(server, "POST", "/approvals/abc", body=b"a" * (10 * 1024 * 1024 + 1))
    assert status == 413 and answer == b"HTTP content length exceeded 10485760 bytes."
    assert engine.events == []


def test_an_event_over_lambdas_6_mb_invoke_limit_is_413_request_too_long(server_factory):
    server, engine = server_factory({"statusCode": 200})
    # 5 MB of binary is 6.7 MB of base64 in the event: within API Gateway's 10 MB, over Lambda's 6 MB.
    status, _, answer = _request(server, "POST", "/approvals/abc", body=b"\x00" * (5 * 1024 * 1024))
    assert status == 413 and json.loads(answer) == {"message": "Request Too Long"}
    assert engine.events == []


def test_a_chunked_body_is_read_whole(server_factory):
    server, engine = server_factory({"statusCode": 200})
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "POST", "/approvals/abc", body=iter([b"decision=", b"reject"]), headers={"Content-Type": "text/plain"}
    )
    assert connection.getresponse().status == 200
    assert engine.events[0][1]["body"] == "decision=reject"


@pytest.mark.parametrize("length", ["-1", "ten", "1, 2"])
def test_a_malformed_content_length_is_400_bad_request(server_factory, length):
    server, engine = server_factory({"statusCode": 200})
    status, _, answer = _request(server, "POST", "/approvals/abc", body=b"x", headers={"Content-Length": length})
    assert status == 400 and json.loads(answer) == {"message": "Bad Request"}
    assert engine.events == []


def test_an_engine_that_raises_is_still_answered_as_api_gateway_does(server_factory):
    server, engine = server_factory({"statusCode": 200})

    def broken(name, payload):
        raise RuntimeError("worker pipe closed")

    engine.invoke = broken
    status, _, answer = _request(server, "GET", "/approvals/abc")
    assert status == 500 and json.loads(answer) == {"message": "Internal Server Error"}


def test_unknown_routes_and_methods_get_api_gateways_not_found(server_factory):
    server, engine = server_factory({"statusCode": 200})
    assert _request(server, "GET", "/nope")[0] == 404
    status, _, body = _request(server, "DELETE", "/approvals/abc")
    assert status == 404 and json.loads(body) == {"message": "Not Found"}
    assert engine.events == []


def test_a_function_error_is_an_internal_server_error_without_details(server_factory):
    server, _ = server_factory("error")
    status, _, body = _request(server, "GET", "/approvals/abc")
    assert status == 500 and json.loads(body) == {"message": "Internal Server Error"}


def test_a_throttled_function_is_an_internal_server_error_as_api_gateway_answers_it(server_factory):
    server, _ = server_factory("throttled")
    status, _, body = _request(server, "GET", "/approvals/abc")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})


def test_a_burst_of_concurrent_connections_is_answered_without_resets(server_factory):
    server, engine = server_factory({"statusCode": 200, "body": "ok"})
    slow = engine.invoke

    def invoke(name, payload):
        time.sleep(0.2)  # requests pile up in the listen backlog while the first ones run
        return slow(name, payload)

    engine.invoke = invoke
    start = threading.Barrier(40)
    statuses = []

    def call():
        start.wait()
        statuses.append(_request(server, "POST", "/approvals/abc", body=b"decision=reject")[0])

    threads = [threading.Thread(target=call) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 40


def test_a_head_route_answers_head_without_a_body(server_factory):
    server, engine = server_factory({"statusCode": 200, "body": ""})
    server.routes.append(Route("HEAD", "/approvals/{approval_id}", "ApprovalApi"))
    status, headers, body = _request(server, "HEAD", "/approvals/abc?sig=s1")
    assert (status, body) == (200, b"") and headers["Content-Length"] == "0"
    assert engine.events[0][1]["requestContext"]["http"]["method"] == "HEAD"


def test_response_mapping_covers_plain_values_cookies_and_base64():
    assert response_from_result({"a": 1})[0] == 200
    status, headers, raw = response_from_result(
        {"statusCode": 201, "cookies": ["a=1"], "body": base64.b64encode(b"bin").decode(), "isBase64Encoded": True}
    )
    assert status == 201 and ("Set-Cookie", "a=1") in headers and raw == b"bin"


def test_event_cookies_are_split_like_api_gateway():
    route = Route("GET", "/x", "F")
    event = build_event(
        route,
        {},
        method="GET",
        raw_path="/x",
        raw_query="",
        headers={"Cookie": "a=1; b=2"},
        body=b"",
        api_id="id",
        source_ip="127.0.0.1",
    )
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
