"""TestState of an HTTP Task: a real HTTPS call to a server of the test's, and TRACE's request and response.

The server echoes what it received; its certificate is one the test makes and trusts (SSL_CERT_FILE),
so the Task's TLS is verified as in AWS. The expected shapes follow the developer guide's TRACE
example ("Using TestState", example 3).
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.helpers import free_port
from tests.unit.stepfunctions.support import REGION, ROLE_ARN
from tests.unit.stepfunctions.test_test_state import test_state

DATE = "Tue, 21 Nov 2023 00:06:17 GMT"


class _Echo(BaseHTTPRequestHandler):
    """Answers what it received as JSON; /missing answers 404."""

    def version_string(self) -> str:
        return "echo"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return DATE

    def log_message(self, *args: Any) -> None:
        return None

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = {
            "method": self.command,
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": self.rfile.read(length).decode(),
        }
        body = json.dumps(received).encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


def _certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(tz=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS echo server on localhost whose certificate the local cloud trusts; its base URL."""
    cert_path, key_path = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def connection(sfn_moto: None) -> str:
    return boto3.client("events", region_name=REGION).create_connection(
        Name="echo",
        AuthorizationType="API_KEY",
        AuthParameters={
            "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "secret-key"},
            "InvocationHttpParameters": {
                "HeaderParameters": [{"Key": "CustomHeader1", "Value": "CustomHeaderValue1", "IsValueSecret": False}],
                "QueryStringParameters": [{"Key": "QueryParam1", "Value": "QueryParamValue1", "IsValueSecret": False}],
                "BodyParameters": [{"Key": "BodyKey1", "Value": "BodyValue1", "IsValueSecret": False}],
            },
        },
    )["ConnectionArn"]


def http_task(endpoint: str, connection_arn: str, **parameters: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {
            "ApiEndpoint": endpoint,
            "Method": "POST",
            "Authentication": {"ConnectionArn": connection_arn},
            "Headers": {"definitionHeader": "h1"},
            "QueryParameters": {"queryParam": "q1"},
            "RequestBody": {"message": "Hello from Step Functions!"},
            **parameters,
        },
        "ResultSelector": {"status.$": "$.StatusCode", "received.$": "$.ResponseBody"},
        "End": True,
    }


def test_trace_shows_the_http_request_and_response_with_the_connections_secrets_revealed(
    api: str, connection: str
) -> None:
    response = test_state(
        http_task(f"{api}/echo", connection), {}, roleArn=ROLE_ARN, inspectionLevel="TRACE", revealSecrets=True
    )

    inspection = response.pop("inspectionData")
    echoed_path = "/echo?queryParam=q1&QueryParam1=QueryParamValue1"
    received = json.loads(inspection["response"].pop("body"))
    assert response == {
        "status": "SUCCEEDED",
        "output": json.dumps({"status": 200, "received": received}, separators=(",", ":")),
    }
    assert received["path"] == echoed_path
    assert received["headers"]["x-api-key"] == "secret-key"
    assert received["headers"]["customheader1"] == "CustomHeaderValue1"
    assert received["headers"]["user-agent"] == f"Amazon|StepFunctions|HttpInvoke|{REGION}"
    assert received["headers"]["content-type"] == "application/json; charset=UTF-8"
    assert received["body"] == '{"message":"Hello from Step Functions!","BodyKey1":"BodyValue1"}'
    assert inspection["request"] == {
        "protocol": "https",
        "method": "POST",
        "url": f"{api}{echoed_path}",
        "headers": (
            "[definitionHeader: h1, x-api-key: secret-key, CustomHeader1: CustomHeaderValue1, "
            f"User-Agent: Amazon|StepFunctions|HttpInvoke|{REGION}, Range: bytes=0-262144]"
        ),
        "body": '{"message":"Hello from Step Functions!","BodyKey1":"BodyValue1"}',
    }
    length = len(json.dumps(received))
    assert inspection["response"] == {
        "protocol": "https",
        "statusCode": "200",
        "statusMessage": "OK",
        "headers": f"[Server: echo, Date: {DATE}, Content-Type: application/json, Content-Length: {length}]",
    }
    result = json.loads(inspection["result"])
    assert result == {
        "Headers": {
            "Server": ["echo"],
            "Date": [DATE],
            "Content-Type": ["application/json"],
            "Content-Length": [str(length)],
        },
        "ResponseBody": received,
        "StatusCode": 200,
        "StatusText": "OK",
    }


def test_without_reveal_secrets_trace_leaves_out_what_the_connection_adds(api: str, connection: str) -> None:
    response = test_state(http_task(f"{api}/echo", connection), {}, roleArn=ROLE_ARN, inspectionLevel="TRACE")

    request = response["inspectionData"]["request"]
    assert request == {
        "protocol": "https",
        "method": "POST",
        "url": f"{api}/echo?queryParam=q1",
        "headers": (
            f"[definitionHeader: h1, User-Agent: Amazon|StepFunctions|HttpInvoke|{REGION}, Range: bytes=0-262144]"
        ),
        "body": '{"message":"Hello from Step Functions!"}',
    }
    # The API still received them, and what the response holds is shown as it is.
    received = json.loads(response["inspectionData"]["response"]["body"])
    assert received["headers"]["x-api-key"] == "secret-key"


def test_debug_shows_no_http_request(api: str, connection: str) -> None:
    response = test_state(http_task(f"{api}/echo", connection), {}, roleArn=ROLE_ARN, inspectionLevel="DEBUG")

    assert response["status"] == "SUCCEEDED"
    assert "request" not in response["inspectionData"] and "response" not in response["inspectionData"]


def test_an_error_status_fails_the_task_with_its_code(api: str, connection: str) -> None:
    response = test_state(http_task(f"{api}/missing", connection), {}, roleArn=ROLE_ARN, inspectionLevel="TRACE")

    assert (response["status"], response["error"]) == ("FAILED", "States.Http.StatusCode.404")
    cause = json.loads(response["cause"])
    assert (cause["StatusCode"], cause["StatusText"]) == (404, "Not Found")
    assert response["inspectionData"]["response"]["statusCode"] == "404"


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [("http://localhost:1/echo", "States.Runtime"), ("https://localhost:1/echo", "States.Http.Socket")],
    ids=["not-https", "nothing-listens"],
)
def test_an_endpoint_that_cannot_be_called_fails_the_task(connection: str, endpoint: str, error: str) -> None:
    response = test_state(http_task(endpoint, connection), {}, roleArn=ROLE_ARN)

    assert (response["status"], response["error"]) == ("FAILED", error)
