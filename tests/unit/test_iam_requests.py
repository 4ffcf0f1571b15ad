"""What one AWS API request asks IAM for: parse_call on the requests boto3 really sends, then
the actions, resources and condition keys authorization_requests derives from them."""

from __future__ import annotations

import base64
import datetime
import functools
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.config
import botocore.exceptions
import botocore.loaders
import pytest
from botocore.awsrequest import AWSPreparedRequest
from botocore.model import ListShape, MapShape, StructureShape
from werkzeug.test import EnvironBuilder

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests import (
    _SIGNING_NAME_SERVICES,
    ParsedCall,
    UnknownCallError,
    authorization_requests,
    iam_prefix,
    parse_call,
    parse_environ,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
AKID = "AKIAIOSFODNN7EXAMPLE"
ENDPOINT = "http://127.0.0.1:1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stepml-sagemaker"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:stepml-pipeline"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:stepml-alerts"


class _Captured(Exception):  # a signal, not an error
    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("captured")
        self.request = request


@functools.cache
def _session(region: str = REGION) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=AKID, aws_secret_access_key="secret", region_name=region)


@functools.cache
def _client(service: str, endpoint_url: str | None, region: str, config: botocore.config.Config | None) -> Any:
    return _session(region).client(service, endpoint_url=endpoint_url, config=config)


def _capture(request: AWSPreparedRequest, **_kwargs: Any) -> None:
    raise _Captured(request)


def send(
    service: str,
    operation: str,
    *,
    endpoint_url: str | None = ENDPOINT,
    config: botocore.config.Config | None = None,
    region: str = REGION,
    **params: Any,
) -> AWSPreparedRequest:
    """The request boto3 prepares for one call, caught before it leaves (before-send)."""
    client = _client(service, endpoint_url, region, config)
    client.meta.events.register("before-send", _capture, unique_id="capture")
    with pytest.raises(_Captured) as caught:
        getattr(client, operation)(**params)
    return caught.value.request


def _body(request: AWSPreparedRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if hasattr(body, "read"):
        position = body.tell()
        data = body.read()
        body.seek(position)
        return data if isinstance(data, bytes) else data.encode()
    return body if isinstance(body, bytes) else body.encode()


def parse_request(request: AWSPreparedRequest) -> ParsedCall:
    url = urlsplit(request.url)
    headers = {
        key: value.decode() if isinstance(value, bytes) else str(value) for key, value in request.headers.items()
    }
    return parse_call(request.method, url.path, url.query, headers, _body(request), url.netloc)


def parse_url(url: str, method: str = "GET") -> ParsedCall:
    parts = urlsplit(url)
    return parse_call(method, parts.path, parts.query, {"host": parts.netloc}, b"", parts.netloc)


class Resolver:
    """The cloud's state as the tests set it."""

    def __init__(self, **optional: Any) -> None:
        self.keys = {
            "alias/stepml-approvals": KEY_ARN,
            f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/stepml-approvals": KEY_ARN,
            KEY_ARN: KEY_ARN,
            KEY_ARN.rsplit("/", 1)[1]: KEY_ARN,
        }
        self.tokens = {"token-of-the-pipeline": MACHINE}
        for name, value in optional.items():
            setattr(self, name, value)

    def kms_key_arn(self, key_id: str) -> str | None:
        return self.keys.get(key_id)

    def state_machine_of_task_token(self, token: str) -> str | None:
        return self.tokens.get(token)

    def lambda_function_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        if ":function:" in name_or_arn:
            account, _, name = name_or_arn.partition(":function:")
            return f"arn:aws:lambda:{REGION}:{account}:function:{name}"
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name_or_arn}"


def authz(call: ParsedCall, resolver: Resolver | None = None) -> list[AuthorizationRequest]:
    return authorization_requests(call, account=ACCOUNT, region=REGION, resolver=resolver or Resolver())


def pairs(call: ParsedCall, resolver: Resolver | None = None) -> list[tuple[str, str]]:
    return [(request.action, request.resource) for request in authz(call, resolver)]


def only(call: ParsedCall, resolver: Resolver | None = None) -> AuthorizationRequest:
    requests = authz(call, resolver)
    assert len(requests) == 1, requests
    return requests[0]


def call_of(service: str, operation: str, **params: Any) -> ParsedCall:
    return parse_request(send(service, operation, **params))


def assert_context(request: AuthorizationRequest, expected: Mapping[str, Any]) -> None:
    for key, value in expected.items():
        assert request.context.get(key) == value, (key, request.context)


# ---------------------------------------------------------------------------------------------
# parse_call
# ---------------------------------------------------------------------------------------------


def test_the_signature_gives_access_key_region_and_service():
    call = call_of("dynamodb", "describe_table", TableName="t", region="eu-west-1")
    assert (call.service, call.operation, call.access_key_id, call.region) == (
        "dynamodb",
        "DescribeTable",
        AKID,
        "eu-west-1",
    )
    assert (call.auth_type, call.signature_version) == ("REST-HEADER", "AWS4-HMAC-SHA256")


def test_path_style_s3_keys_with_slashes_and_encoded_characters_are_decoded_once():
    key = "incoming/churn/2024 Q1/a+b%c/ü.csv"
    request = send("s3", "get_object", Bucket="stepml-data", Key=key)
    assert "%25c" in request.url and "%20Q1" in request.url  # what the wire carries
    call = parse_request(request)
    assert (call.operation, call.params["Bucket"], call.params["Key"]) == ("GetObject", "stepml-data", key)
    assert only(call).resource == f"arn:aws:s3:::stepml-data/{key}"


def test_a_wsgi_environ_is_read_from_its_raw_request_target():
    request = send("s3", "get_object", Bucket="stepml-data", Key="a%2Fb/c d", VersionId="v1")
    url = urlsplit(request.url)
    headers = {key: value.decode() if isinstance(value, bytes) else value for key, value in request.headers.items()}
    environ = EnvironBuilder(
        method="GET", path=url.path, query_string=url.query, headers=headers, base_url=ENDPOINT
    ).get_environ()
    # PATH_INFO is decoded once already; decoding it again (as a path must be) would read a/b.
    assert environ["PATH_INFO"] == "/stepml-data/a%2Fb/c d"
    assert environ["RAW_URI"] == "/stepml-data/a%252Fb/c%20d"
    call = parse_environ(environ, b"")
    assert (call.operation, call.params["Key"], call.params["VersionId"], call.access_key_id) == (
        "GetObject",
        "a%2Fb/c d",
        "v1",
        AKID,
    )


def test_a_key_with_a_double_slash_keeps_it():
    call = call_of("s3", "put_object", Bucket="b", Key="/leading//double", Body=b"x")
    assert call.params["Key"] == "/leading//double"
    assert authz(call)[0].resource == "arn:aws:s3:::b//leading//double"


def test_virtual_hosted_s3_names_the_bucket_from_the_host(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    request = send(
        "s3",
        "get_object",
        endpoint_url=None,
        config=botocore.config.Config(s3={"addressing_style": "virtual"}),
        Bucket="stepml-data",
        Key="a/b.csv",
    )
    assert urlsplit(request.url).netloc == "stepml-data.s3.amazonaws.com"
    call = parse_request(request)
    assert (call.operation, call.params["Bucket"], call.params["Key"]) == ("GetObject", "stepml-data", "a/b.csv")


def test_a_bucket_dot_localhost_host_is_virtual_hosted():
    call = parse_call(
        "GET",
        "/",
        "list-type=2&prefix=x%2F",
        {"Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/s3/aws4_request, Signature=0"},
        b"",
        "stepml-data.localhost:4566",
    )
    assert (call.operation, call.params["Bucket"], call.params["Prefix"]) == ("ListObjectsV2", "stepml-data", "x/")


def test_s3_subresources_pick_the_operation():
    cases = {
        ("get_bucket_versioning", ()): "GetBucketVersioning",
        ("get_bucket_policy", ()): "GetBucketPolicy",
        ("get_bucket_location", ()): "GetBucketLocation",
        ("get_bucket_encryption", ()): "GetBucketEncryption",
        ("get_bucket_notification_configuration", ()): "GetBucketNotificationConfiguration",
        ("get_bucket_tagging", ()): "GetBucketTagging",
        ("list_objects", ()): "ListObjects",
        ("list_objects_v2", ()): "ListObjectsV2",
        ("list_object_versions", ()): "ListObjectVersions",
        ("list_multipart_uploads", ()): "ListMultipartUploads",
        ("head_bucket", ()): "HeadBucket",
        ("delete_bucket", ()): "DeleteBucket",
        ("delete_bucket_policy", ()): "DeleteBucketPolicy",
        ("get_object_tagging", (("Key", "k"),)): "GetObjectTagging",
        ("get_object_acl", (("Key", "k"),)): "GetObjectAcl",
        ("head_object", (("Key", "k"),)): "HeadObject",
        ("list_parts", (("Key", "k"), ("UploadId", "u"))): "ListParts",
        ("abort_multipart_upload", (("Key", "k"), ("UploadId", "u"))): "AbortMultipartUpload",
        ("create_multipart_upload", (("Key", "k"),)): "CreateMultipartUpload",
        ("delete_object", (("Key", "k"),)): "DeleteObject",
    }
    for (operation, extra), expected in cases.items():
        call = call_of("s3", operation, Bucket="b", **dict(extra))
        assert call.operation == expected, (operation, call.operation)


def test_multipart_parts_and_copies_are_told_apart_by_their_required_members():
    part = call_of("s3", "upload_part", Bucket="b", Key="k", UploadId="u1", PartNumber=3, Body=b"x")
    assert (part.operation, part.params["UploadId"], part.params["PartNumber"]) == ("UploadPart", "u1", 3)
    complete = call_of(
        "s3",
        "complete_multipart_upload",
        Bucket="b",
        Key="k",
        UploadId="u1",
        MultipartUpload={"Parts": [{"ETag": '"e"', "PartNumber": 1}]},
    )
    assert complete.operation == "CompleteMultipartUpload"
    assert complete.params["MultipartUpload"]["Parts"][0]["PartNumber"] == 1
    copy = call_of("s3", "copy_object", Bucket="b", Key="k2", CopySource="src/k 1")
    assert (copy.operation, copy.params["CopySource"]) == ("CopyObject", "src/k%201")
    part_copy = call_of("s3", "upload_part_copy", Bucket="b", Key="k", UploadId="u", PartNumber=1, CopySource="s/k")
    assert part_copy.operation == "UploadPartCopy"


def test_sagemaker_runtime_shares_the_sagemaker_signing_name():
    call = call_of("sagemaker-runtime", "invoke_endpoint", EndpointName="stepml-test-1", Body=b"1,2,3")
    assert (call.service, call.operation, call.params["EndpointName"]) == (
        "sagemaker-runtime",
        "InvokeEndpoint",
        "stepml-test-1",
    )
    assert call.params["Body"] == b"1,2,3"
    control = call_of("sagemaker", "describe_endpoint", EndpointName="e")
    assert (control.service, control.operation) == ("sagemaker", "DescribeEndpoint")


def test_sesv2_and_ses_share_the_ses_signing_name():
    v2 = call_of("sesv2", "get_email_identity", EmailIdentity="example.com")
    assert (v2.service, v2.operation, v2.params) == ("sesv2", "GetEmailIdentity", {"EmailIdentity": "example.com"})
    v1 = call_of("ses", "get_send_quota")
    assert (v1.service, v1.operation) == ("ses", "GetSendQuota")


def test_sesv2_send_email_members_come_from_the_body():
    call = call_of(
        "sesv2",
        "send_email",
        FromEmailAddress="a@example.com",
        Destination={"ToAddresses": ["b@example.com"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
    )
    assert call.operation == "SendEmail"
    assert call.params["FromEmailAddress"] == "a@example.com"
    assert call.params["Destination"] == {"ToAddresses": ["b@example.com"]}


def test_lambda_function_name_and_qualifier_come_from_the_uri_and_query():
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stepml-evaluate"
    call = call_of("lambda", "invoke", FunctionName=arn, Qualifier="live", Payload=b"{}")
    assert (call.operation, call.params["FunctionName"], call.params["Qualifier"]) == ("Invoke", arn, "live")


def test_query_protocol_members_are_decoded_by_shape():
    call = call_of(
        "sns",
        "publish",
        TopicArn=TOPIC,
        Message="m",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "alert"}},
    )
    assert call.operation == "Publish"
    assert call.params["TopicArn"] == TOPIC
    assert call.params["MessageAttributes"] == {"kind": {"DataType": "String", "StringValue": "alert"}}
    tagged = call_of(
        "iam", "create_role", RoleName="r", AssumeRolePolicyDocument="{}", Tags=[{"Key": "k", "Value": "v"}]
    )
    assert tagged.params["Tags"] == [{"Key": "k", "Value": "v"}]


def test_json_protocols_come_from_the_target_header():
    call = call_of("stepfunctions", "start_execution", stateMachineArn=MACHINE, input="{}")
    assert (call.service, call.operation, call.params["stateMachineArn"]) == (
        "stepfunctions",
        "StartExecution",
        MACHINE,
    )
    metric = call_of("cloudwatch", "put_metric_data", Namespace="stepml", MetricData=[{"MetricName": "m", "Value": 1}])
    assert (metric.service, metric.operation, metric.params["Namespace"]) == ("cloudwatch", "PutMetricData", "stepml")


def test_rpc_v2_cbor_calls_are_decoded():
    # {"Namespace": "stepml"} in CBOR, as the smithy-rpc-v2-cbor protocol sends it.
    body = bytes([0xA1, 0x69]) + b"Namespace" + bytes([0x66]) + b"stepml"
    call = parse_call(
        "POST",
        "/service/GraniteServiceVersion20100801/operation/PutMetricData",
        "",
        {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/monitoring/aws4_request",
            "Content-Type": "application/cbor",
            "Smithy-Protocol": "rpc-v2-cbor",
        },
        body,
        "127.0.0.1:5000",
    )
    assert (call.service, call.operation, call.params) == ("cloudwatch", "PutMetricData", {"Namespace": "stepml"})


def test_a_sigv4_presigned_url_carries_the_credential_in_the_query():
    client = _session().client("s3", endpoint_url=ENDPOINT, config=botocore.config.Config(signature_version="s3v4"))
    url = client.generate_presigned_url("get_object", Params={"Bucket": "stepml-data", "Key": "reports/a b.html"})
    call = parse_url(url)
    assert (call.operation, call.params["Key"], call.access_key_id, call.region) == (
        "GetObject",
        "reports/a b.html",
        AKID,
        REGION,
    )
    request = only(call)
    assert (request.action, request.resource) == ("s3:GetObject", "arn:aws:s3:::stepml-data/reports/a b.html")
    assert_context(request, {"s3:authType": "REST-QUERY-STRING", "s3:signatureversion": "AWS4-HMAC-SHA256"})


def test_a_sigv2_presigned_url_is_s3():
    url = (
        _session()
        .client("s3", endpoint_url=ENDPOINT)
        .generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    )
    call = parse_url(url)
    assert "AWSAccessKeyId=" in url
    assert (call.service, call.operation, call.access_key_id, call.region) == ("s3", "GetObject", AKID, None)
    assert_context(only(call), {"s3:signatureversion": "AWS", "s3:authType": "REST-QUERY-STRING"})


def test_a_request_no_service_operation_matches_is_refused():
    signed = {"Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/s3/aws4_request, Signature=0"}
    with pytest.raises(UnknownCallError, match="no operation of s3, s3control matches PATCH /b"):
        parse_call("PATCH", "/b", "", signed, b"", "127.0.0.1:5000")
    with pytest.raises(UnknownCallError, match="no botocore service signs as 'nosuchservice'"):
        parse_call(
            "POST",
            "/",
            "",
            {"Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/nosuchservice/aws4_request"},
            b"{}",
            "127.0.0.1:5000",
        )
    dynamodb = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/dynamodb/aws4_request",
        "X-Amz-Target": "DynamoDB_20120810.NoSuchOperation",
    }
    with pytest.raises(UnknownCallError, match=r"no operation 'DynamoDB_20120810\.NoSuchOperation' in dynamodb"):
        parse_call("POST", "/", "", dynamodb, b"{}", "127.0.0.1:5000")
    with pytest.raises(UnknownCallError, match="no SigV4 credential scope"):
        parse_call("GET", "/", "", {}, b"", "127.0.0.1:5000")


def _minimal(shape: Any, depth: int = 0) -> Any:
    """The smallest input botocore accepts for a shape: required members only."""
    if isinstance(shape, StructureShape):
        if depth > 6:
            return {}
        return {
            name: _minimal(member, depth + 1)
            for name, member in shape.members.items()
            if name in shape.required_members
        }
    if isinstance(shape, ListShape):
        return [_minimal(shape.member, depth + 1)] * max(1, shape.metadata.get("min", 1))
    if isinstance(shape, MapShape):
        return {"k": _minimal(shape.value, depth + 1)}
    kind = shape.type_name
    if kind == "string":
        return shape.enum[0] if shape.enum else "a" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    return {"boolean": True, "blob": b"x", "timestamp": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}.get(
        kind, "a"
    )


#: Deprecated S3 operations that send exactly what their successors send (and need the same
#: IAM action): the request cannot tell them apart.
_WIRE_IDENTICAL = {
    ("s3", "GetBucketLifecycle"): "GetBucketLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutBucketLifecycleConfiguration",
    ("s3", "GetBucketNotification"): "GetBucketNotificationConfiguration",
    ("s3", "PutBucketNotification"): "PutBucketNotificationConfiguration",
}


@pytest.mark.parametrize("service", ["s3", "lambda", "sesv2", "sagemaker-runtime", "sns", "stepfunctions", "kms"])
def test_every_operation_of_a_service_is_identified_from_what_boto3_sends(service):
    model = _client(service, ENDPOINT, REGION, None).meta.service_model
    checked = 0
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        try:
            request = send(service, botocore.xform_name(name), **(_minimal(shape) if shape else {}))
        except botocore.exceptions.ParamValidationError:
            continue  # a tagged union the generator cannot fill
        call = parse_request(request)
        assert (call.service, call.operation) == (service, _WIRE_IDENTICAL.get((service, name), name))
        checked += 1
    assert checked >= len(model.operation_names) * 0.9


def test_unsigned_query_calls_are_found_by_action_and_version():
    call = parse_call(
        "POST",
        "/",
        "",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn="
        + ROLE.encode()
        + b"&RoleSessionName=s1&WebIdentityToken=t",
        "127.0.0.1:5000",
    )
    assert (call.service, call.operation, call.access_key_id) == ("sts", "AssumeRoleWithWebIdentity", None)
    assert pairs(call) == [("sts:AssumeRoleWithWebIdentity", ROLE)]


def test_an_action_form_to_a_service_that_moved_to_json_is_still_read():
    # Older SDKs send SQS and CloudWatch the query protocol.
    call = parse_call(
        "POST",
        "/",
        "",
        {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/monitoring/aws4_request",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        b"Action=PutMetricData&Version=2010-08-01&Namespace=stepml&MetricData.member.1.MetricName=m",
        "127.0.0.1:5000",
    )
    assert (call.service, call.operation, call.params["Namespace"]) == ("cloudwatch", "PutMetricData", "stepml")
    assert call.params["MetricData"] == [{"MetricName": "m"}]
    assert pairs(call) == [("cloudwatch:PutMetricData", "*")]


def test_the_signing_name_table_agrees_with_botocore():
    loader = botocore.loaders.create_loader()
    aliases = {"s3express", "s3-object-lambda"}  # S3 operations signed with another name
    for signing_name, services in _SIGNING_NAME_SERVICES.items():
        if signing_name in aliases:
            continue
        for service in services:
            metadata = loader.load_service_model(service, "service-2")["metadata"]
            assert (metadata.get("signingName") or metadata.get("endpointPrefix")) == signing_name, service


def test_a_signing_name_outside_the_table_is_found_in_the_models():
    call = parse_request(send("amp", "list_workspaces"))  # Managed Prometheus signs as "aps"
    assert (call.service, call.operation) == ("amp", "ListWorkspaces")
    assert pairs(call) == [("aps:ListWorkspaces", "*")]


def test_iam_prefixes_differ_from_service_names_where_aws_says():
    assert {
        service: iam_prefix(service)
        for service in ("stepfunctions", "sesv2", "sagemaker-runtime", "cloudwatch", "service-quotas", "s3", "kms")
    } == {
        "stepfunctions": "states",
        "sesv2": "ses",
        "sagemaker-runtime": "sagemaker",
        "cloudwatch": "cloudwatch",
        "service-quotas": "servicequotas",
        "s3": "s3",
        "kms": "kms",
    }


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------


def test_get_object_is_s3_get_object_and_with_a_version_s3_get_object_version():
    plain = only(call_of("s3", "get_object", Bucket="b", Key="k"))
    assert (plain.action, plain.resource) == ("s3:GetObject", "arn:aws:s3:::b/k")
    assert "s3:versionid" not in plain.context
    versioned = only(call_of("s3", "get_object", Bucket="b", Key="k", VersionId="v1"))
    assert (versioned.action, versioned.resource) == ("s3:GetObjectVersion", "arn:aws:s3:::b/k")
    assert_context(versioned, {"s3:versionid": "v1", "s3:authType": "REST-HEADER"})


def test_head_object_is_authorized_as_get_object():
    assert pairs(call_of("s3", "head_object", Bucket="b", Key="k")) == [("s3:GetObject", "arn:aws:s3:::b/k")]
    assert pairs(call_of("s3", "head_object", Bucket="b", Key="k", VersionId="v")) == [
        ("s3:GetObjectVersion", "arn:aws:s3:::b/k")
    ]


def test_put_object_with_tags_and_an_acl_also_needs_tagging_and_acl_permissions():
    call = call_of(
        "s3",
        "put_object",
        Bucket="b",
        Key="k",
        Body=b"x",
        Tagging="team=ml&stage=dev",
        ACL="private",
        ServerSideEncryption="AES256",
    )
    requests = authz(call)
    assert [(r.action, r.resource) for r in requests] == [
        ("s3:PutObject", "arn:aws:s3:::b/k"),
        ("s3:PutObjectTagging", "arn:aws:s3:::b/k"),
        ("s3:PutObjectAcl", "arn:aws:s3:::b/k"),
    ]
    assert_context(
        requests[0],
        {
            "s3:x-amz-acl": "private",
            "s3:x-amz-server-side-encryption": "AES256",
            "s3:RequestObjectTag/team": "ml",
            "s3:RequestObjectTagKeys": ["team", "stage"],
        },
    )


def test_put_object_with_sse_kms_asks_kms_for_a_data_key_as_the_caller():
    call = call_of(
        "s3", "put_object", Bucket="b", Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN
    )
    requests = authz(call)
    assert [(r.action, r.resource) for r in requests] == [
        ("s3:PutObject", "arn:aws:s3:::b/k"),
        ("kms:GenerateDataKey", KEY_ARN),
    ]
    assert_context(
        requests[1],
        {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/k"},
    )


def test_a_bucket_default_kms_key_from_the_resolver_is_asked_for_too():
    resolver = Resolver(s3_bucket_kms_key=lambda bucket: KEY_ARN if bucket == "enc" else None)
    assert pairs(call_of("s3", "put_object", Bucket="enc", Key="k", Body=b"x"), resolver) == [
        ("s3:PutObject", "arn:aws:s3:::enc/k"),
        ("kms:GenerateDataKey", KEY_ARN),
    ]
    assert pairs(call_of("s3", "put_object", Bucket="plain", Key="k", Body=b"x"), resolver) == [
        ("s3:PutObject", "arn:aws:s3:::plain/k")
    ]


def test_reading_an_sse_kms_object_decrypts_with_its_key_as_the_caller():
    resolver = Resolver(s3_object_kms_key=lambda bucket, key, version: KEY_ARN if key == "secret" else None)
    assert pairs(call_of("s3", "get_object", Bucket="b", Key="secret"), resolver) == [
        ("s3:GetObject", "arn:aws:s3:::b/secret"),
        ("kms:Decrypt", KEY_ARN),
    ]
    assert pairs(call_of("s3", "head_object", Bucket="b", Key="secret"), resolver) == [
        ("s3:GetObject", "arn:aws:s3:::b/secret")
    ]
    copy = call_of("s3", "copy_object", Bucket="b", Key="copy", CopySource={"Bucket": "b", "Key": "secret"})
    assert pairs(copy, resolver) == [
        ("s3:GetObject", "arn:aws:s3:::b/secret"),
        ("kms:Decrypt", KEY_ARN),
        ("s3:PutObject", "arn:aws:s3:::b/copy"),
    ]


def test_delete_object_with_a_version_is_delete_object_version():
    assert pairs(call_of("s3", "delete_object", Bucket="b", Key="k")) == [("s3:DeleteObject", "arn:aws:s3:::b/k")]
    request = only(call_of("s3", "delete_object", Bucket="b", Key="k", VersionId="v9"))
    assert (request.action, request.context["s3:versionid"]) == ("s3:DeleteObjectVersion", "v9")


def test_delete_objects_deletes_each_key_it_names():
    call = call_of(
        "s3",
        "delete_objects",
        Bucket="b",
        Delete={"Objects": [{"Key": "a/1"}, {"Key": "a/2", "VersionId": "v2"}]},
    )
    assert call.operation == "DeleteObjects"
    assert pairs(call) == [
        ("s3:DeleteObject", "arn:aws:s3:::b/a/1"),
        ("s3:DeleteObjectVersion", "arn:aws:s3:::b/a/2"),
    ]


def test_copy_object_reads_the_source_and_writes_the_target():
    call = call_of("s3", "copy_object", Bucket="dst", Key="out/k", CopySource={"Bucket": "src", "Key": "in/k 1"})
    requests = authz(call)
    assert [(r.action, r.resource) for r in requests] == [
        ("s3:GetObject", "arn:aws:s3:::src/in/k 1"),
        ("s3:PutObject", "arn:aws:s3:::dst/out/k"),
    ]
    assert_context(requests[1], {"s3:x-amz-copy-source": "src/in/k%201"})
    versioned = call_of(
        "s3", "copy_object", Bucket="dst", Key="k", CopySource={"Bucket": "src", "Key": "k", "VersionId": "v3"}
    )
    source = authz(versioned)[0]
    assert (source.action, source.resource, source.context["s3:versionid"]) == (
        "s3:GetObjectVersion",
        "arn:aws:s3:::src/k",
        "v3",
    )


def test_list_objects_v2_is_list_bucket_on_the_bucket_with_prefix_delimiter_and_max_keys():
    request = only(call_of("s3", "list_objects_v2", Bucket="b", Prefix="incoming/churn/", Delimiter="/", MaxKeys=50))
    assert (request.action, request.resource) == ("s3:ListBucket", "arn:aws:s3:::b")
    assert_context(request, {"s3:prefix": "incoming/churn/", "s3:delimiter": "/", "s3:max-keys": 50})
    bare = only(call_of("s3", "list_objects_v2", Bucket="b"))
    assert "s3:prefix" not in bare.context


def test_list_objects_and_versions_and_head_bucket():
    assert pairs(call_of("s3", "list_objects", Bucket="b", Prefix="p")) == [("s3:ListBucket", "arn:aws:s3:::b")]
    versions = only(call_of("s3", "list_object_versions", Bucket="b", Prefix="p/"))
    assert (versions.action, versions.context["s3:prefix"]) == ("s3:ListBucketVersions", "p/")
    assert pairs(call_of("s3", "head_bucket", Bucket="b")) == [("s3:ListBucket", "arn:aws:s3:::b")]


def test_multipart_uploads_are_put_object():
    for operation, extra in (
        ("create_multipart_upload", {}),
        ("upload_part", {"UploadId": "u", "PartNumber": 1, "Body": b"x"}),
        (
            "complete_multipart_upload",
            {"UploadId": "u", "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}},
        ),
    ):
        assert pairs(call_of("s3", operation, Bucket="b", Key="big/k", **extra)) == [
            ("s3:PutObject", "arn:aws:s3:::b/big/k")
        ], operation
    assert pairs(call_of("s3", "abort_multipart_upload", Bucket="b", Key="k", UploadId="u")) == [
        ("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")
    ]


@pytest.mark.parametrize(
    ("operation", "params", "action"),
    [
        ("get_bucket_location", {}, "s3:GetBucketLocation"),
        ("get_bucket_versioning", {}, "s3:GetBucketVersioning"),
        ("put_bucket_versioning", {"VersioningConfiguration": {"Status": "Enabled"}}, "s3:PutBucketVersioning"),
        ("get_bucket_policy", {}, "s3:GetBucketPolicy"),
        ("put_bucket_policy", {"Policy": "{}"}, "s3:PutBucketPolicy"),
        ("delete_bucket_policy", {}, "s3:DeleteBucketPolicy"),
        ("get_bucket_encryption", {}, "s3:GetEncryptionConfiguration"),
        (
            "put_bucket_encryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            },
            "s3:PutEncryptionConfiguration",
        ),
        ("get_bucket_notification_configuration", {}, "s3:GetBucketNotification"),
        (
            "put_bucket_notification_configuration",
            {"NotificationConfiguration": {"EventBridgeConfiguration": {}}},
            "s3:PutBucketNotification",
        ),
        ("delete_bucket", {}, "s3:DeleteBucket"),
        ("get_bucket_tagging", {}, "s3:GetBucketTagging"),
        ("delete_bucket_tagging", {}, "s3:PutBucketTagging"),
        ("get_public_access_block", {}, "s3:GetBucketPublicAccessBlock"),
        ("get_bucket_lifecycle_configuration", {}, "s3:GetLifecycleConfiguration"),
        ("get_bucket_cors", {}, "s3:GetBucketCORS"),
    ],
)
def test_bucket_operations_are_authorized_on_the_bucket(operation, params, action):
    assert pairs(call_of("s3", operation, Bucket="stepml-data", **params)) == [(action, "arn:aws:s3:::stepml-data")]


def test_create_bucket_carries_its_location_constraint():
    request = only(
        call_of(
            "s3",
            "create_bucket",
            Bucket="stepml-eu",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        )
    )
    assert (request.action, request.resource, request.context["s3:LocationConstraint"]) == (
        "s3:CreateBucket",
        "arn:aws:s3:::stepml-eu",
        "eu-west-1",
    )
    locked = call_of("s3", "create_bucket", Bucket="l", ObjectLockEnabledForBucket=True)
    assert [action for action, _ in pairs(locked)] == [
        "s3:CreateBucket",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
    ]


def test_list_buckets_is_list_all_my_buckets_on_everything():
    assert pairs(call_of("s3", "list_buckets")) == [("s3:ListAllMyBuckets", "*")]


def test_object_tagging_with_a_version():
    assert pairs(call_of("s3", "get_object_tagging", Bucket="b", Key="k", VersionId="v")) == [
        ("s3:GetObjectVersionTagging", "arn:aws:s3:::b/k")
    ]
    put = only(
        call_of("s3", "put_object_tagging", Bucket="b", Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    )
    assert (put.action, put.context["s3:RequestObjectTag/a"]) == ("s3:PutObjectTagging", "1")


# ---------------------------------------------------------------------------------------------
# DynamoDB
# ---------------------------------------------------------------------------------------------

TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/stepml-lineage"


@pytest.mark.parametrize(
    ("operation", "params", "action"),
    [
        ("get_item", {"Key": {"pk": {"S": "a"}}}, "dynamodb:GetItem"),
        ("put_item", {"Item": {"pk": {"S": "a"}}}, "dynamodb:PutItem"),
        (
            "update_item",
            {
                "Key": {"pk": {"S": "a"}},
                "UpdateExpression": "SET a = :a",
                "ExpressionAttributeValues": {":a": {"S": "1"}},
            },
            "dynamodb:UpdateItem",
        ),
        ("delete_item", {"Key": {"pk": {"S": "a"}}}, "dynamodb:DeleteItem"),
        (
            "query",
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}},
            "dynamodb:Query",
        ),
        ("scan", {}, "dynamodb:Scan"),
        ("describe_table", {}, "dynamodb:DescribeTable"),
    ],
)
def test_item_and_table_operations_are_authorized_on_the_table(operation, params, action):
    assert pairs(call_of("dynamodb", operation, TableName="stepml-lineage", **params)) == [(action, TABLE)]


def test_a_query_on_an_index_is_authorized_on_the_index():
    request = only(
        call_of(
            "dynamodb",
            "query",
            TableName="stepml-lineage",
            IndexName="by-run",
            KeyConditionExpression="run = :r",
            ExpressionAttributeValues={":r": {"S": "r1"}},
            Select="ALL_PROJECTED_ATTRIBUTES",
        )
    )
    assert (request.action, request.resource) == ("dynamodb:Query", f"{TABLE}/index/by-run")
    assert request.context["dynamodb:Select"] == "ALL_PROJECTED_ATTRIBUTES"
    scan = only(call_of("dynamodb", "scan", TableName="stepml-lineage", IndexName="by-run"))
    assert scan.resource == f"{TABLE}/index/by-run"


def test_put_item_carries_return_values():
    request = only(
        call_of("dynamodb", "put_item", TableName="stepml-lineage", Item={"pk": {"S": "a"}}, ReturnValues="ALL_OLD")
    )
    assert request.context == {"dynamodb:ReturnValues": "ALL_OLD"}


def test_batches_are_one_request_per_table():
    get = call_of(
        "dynamodb",
        "batch_get_item",
        RequestItems={"a": {"Keys": [{"pk": {"S": "1"}}]}, "b": {"Keys": [{"pk": {"S": "2"}}]}},
    )
    assert pairs(get) == [
        ("dynamodb:BatchGetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/a"),
        ("dynamodb:BatchGetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/b"),
    ]
    write = call_of("dynamodb", "batch_write_item", RequestItems={"a": [{"PutRequest": {"Item": {"pk": {"S": "1"}}}}]})
    assert pairs(write) == [("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/a")]


def test_transactions_authorize_each_item_action_per_table():
    call = call_of(
        "dynamodb",
        "transact_write_items",
        TransactItems=[
            {"Put": {"TableName": "a", "Item": {"pk": {"S": "1"}}}},
            {"Put": {"TableName": "a", "Item": {"pk": {"S": "2"}}}},
            {
                "Update": {
                    "TableName": "b",
                    "Key": {"pk": {"S": "1"}},
                    "UpdateExpression": "SET x = :x",
                    "ExpressionAttributeValues": {":x": {"N": "1"}},
                }
            },
            {
                "ConditionCheck": {
                    "TableName": "b",
                    "Key": {"pk": {"S": "2"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {"Delete": {"TableName": "c", "Key": {"pk": {"S": "3"}}}},
        ],
    )
    requests = authz(call)
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    assert [(r.action, r.resource) for r in requests] == [
        ("dynamodb:PutItem", table + "a"),
        ("dynamodb:UpdateItem", table + "b"),
        ("dynamodb:ConditionCheckItem", table + "b"),
        ("dynamodb:DeleteItem", table + "c"),
    ]
    assert all(r.context["dynamodb:EnclosingOperation"] == "TransactWriteItems" for r in requests)
    reads = authz(
        call_of(
            "dynamodb", "transact_get_items", TransactItems=[{"Get": {"TableName": "a", "Key": {"pk": {"S": "1"}}}}]
        )
    )
    assert [(r.action, r.resource, r.context["dynamodb:EnclosingOperation"]) for r in reads] == [
        ("dynamodb:GetItem", table + "a", "TransactGetItems")
    ]


# ---------------------------------------------------------------------------------------------
# SageMaker
# ---------------------------------------------------------------------------------------------

SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


def test_create_training_job_passes_its_role_and_tags_need_add_tags():
    call = call_of(
        "sagemaker",
        "create_training_job",
        TrainingJobName="stepml-train-r1",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://b/o", "KmsKeyId": KEY_ARN},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        EnableNetworkIsolation=True,
        Tags=[{"Key": "stepml:run", "Value": "r1"}],
    )
    requests = authz(call)
    assert [(r.action, r.resource) for r in requests] == [
        ("sagemaker:CreateTrainingJob", f"{SM}:training-job/stepml-train-r1"),
        ("iam:PassRole", ROLE),
        ("sagemaker:AddTags", f"{SM}:training-job/stepml-train-r1"),
    ]
    assert_context(
        requests[0],
        {
            "sagemaker:InstanceTypes": ["ml.m5.large"],
            "sagemaker:OutputKmsKey": KEY_ARN,
            "sagemaker:NetworkIsolation": True,
            "sagemaker:MaxRuntimeInSeconds": 3600,
            "aws:RequestTag/stepml:run": "r1",
            "aws:TagKeys": ["stepml:run"],
        },
    )
    assert requests[1].context == {"iam:PassedToService": "sagemaker.amazonaws.com"}


def test_create_model_passes_the_execution_role():
    call = call_of(
        "sagemaker",
        "create_model",
        ModelName="stepml-model-r1",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"},
    )
    assert pairs(call) == [("sagemaker:CreateModel", f"{SM}:model/stepml-model-r1"), ("iam:PassRole", ROLE)]


def test_a_role_nested_in_a_definition_is_passed_too():
    call = call_of(
        "sagemaker",
        "create_monitoring_schedule",
        MonitoringScheduleName="stepml-monitor",
        MonitoringScheduleConfig={
            "MonitoringJobDefinition": {
                "MonitoringInputs": [{"EndpointInput": {"EndpointName": "e", "LocalPath": "/opt/ml/input"}}],
                "MonitoringOutputConfig": {
                    "MonitoringOutputs": [{"S3Output": {"S3Uri": "s3://b/m", "LocalPath": "/opt"}}]
                },
                "MonitoringResources": {
                    "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
                },
                "MonitoringAppSpecification": {"ImageUri": "img"},
                "RoleArn": ROLE,
            }
        },
    )
    assert pairs(call) == [
        ("sagemaker:CreateMonitoringSchedule", f"{SM}:monitoring-schedule/stepml-monitor"),
        ("iam:PassRole", ROLE),
    ]


@pytest.mark.parametrize(
    ("operation", "params", "resource"),
    [
        ("describe_training_job", {"TrainingJobName": "t"}, "training-job/t"),
        ("stop_training_job", {"TrainingJobName": "t"}, "training-job/t"),
        ("describe_endpoint", {"EndpointName": "e"}, "endpoint/e"),
        ("delete_endpoint", {"EndpointName": "e"}, "endpoint/e"),
        ("describe_endpoint_config", {"EndpointConfigName": "c"}, "endpoint-config/c"),
        ("delete_endpoint_config", {"EndpointConfigName": "c"}, "endpoint-config/c"),
        ("delete_model", {"ModelName": "m"}, "model/m"),
        ("describe_processing_job", {"ProcessingJobName": "p"}, "processing-job/p"),
        ("describe_transform_job", {"TransformJobName": "x"}, "transform-job/x"),
        ("describe_model_package_group", {"ModelPackageGroupName": "g"}, "model-package-group/g"),
        ("describe_monitoring_schedule", {"MonitoringScheduleName": "s"}, "monitoring-schedule/s"),
        ("describe_data_quality_job_definition", {"JobDefinitionName": "d"}, "data-quality-job-definition/d"),
    ],
)
def test_sagemaker_operations_are_authorized_on_the_resource_they_name(operation, params, resource):
    call = call_of("sagemaker", operation, **params)
    request = only(call)
    assert (request.action, request.resource) == (f"sagemaker:{call.operation}", f"{SM}:{resource}")


def test_endpoints_are_created_and_updated_on_the_endpoint_and_its_configuration():
    for operation in ("create_endpoint", "update_endpoint"):
        call = call_of("sagemaker", operation, EndpointName="stepml-prod", EndpointConfigName="stepml-prod-c2")
        assert pairs(call) == [
            (f"sagemaker:{call.operation}", f"{SM}:endpoint/stepml-prod"),
            (f"sagemaker:{call.operation}", f"{SM}:endpoint-config/stepml-prod-c2"),
        ]


def test_create_endpoint_config_carries_its_instance_types():
    call = call_of(
        "sagemaker",
        "create_endpoint_config",
        EndpointConfigName="c1",
        ProductionVariants=[
            {"VariantName": "a", "ModelName": "m", "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1},
            {"VariantName": "b", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
        ],
    )
    request = only(call)
    assert (request.resource, request.context["sagemaker:InstanceTypes"]) == (
        f"{SM}:endpoint-config/c1",
        ["ml.m5.large", "ml.t2.medium"],
    )


def test_create_processing_job_and_transform_job():
    processing = call_of(
        "sagemaker",
        "create_processing_job",
        ProcessingJobName="p1",
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}},
        AppSpecification={"ImageUri": "img"},
        RoleArn=ROLE,
    )
    assert pairs(processing) == [("sagemaker:CreateProcessingJob", f"{SM}:processing-job/p1"), ("iam:PassRole", ROLE)]
    transform = call_of(
        "sagemaker",
        "create_transform_job",
        TransformJobName="t1",
        ModelName="m",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i"}}},
        TransformOutput={"S3OutputPath": "s3://b/o"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    assert pairs(transform) == [("sagemaker:CreateTransformJob", f"{SM}:transform-job/t1")]


def test_model_packages_by_name_or_versioned_arn():
    arn = f"{SM}:model-package/stepml-churn/3"
    assert pairs(call_of("sagemaker", "describe_model_package", ModelPackageName=arn)) == [
        ("sagemaker:DescribeModelPackage", arn)
    ]
    assert pairs(call_of("sagemaker", "create_model_package_group", ModelPackageGroupName="g")) == [
        ("sagemaker:CreateModelPackageGroup", f"{SM}:model-package-group/g")
    ]
    # A new version of a group, before it has a number: the group's package name, with its status.
    container = {"Containers": [{"Image": "i"}], "SupportedContentTypes": ["text/csv"]}
    for group in ("stepml-churn", f"{SM}:model-package-group/stepml-churn"):
        create = call_of(
            "sagemaker",
            "create_model_package",
            ModelPackageGroupName=group,
            InferenceSpecification={**container, "SupportedResponseMIMETypes": ["text/csv"]},
            ModelApprovalStatus="PendingManualApproval",
        )
        request = only(create)
        assert (request.action, request.resource) == (
            "sagemaker:CreateModelPackage",
            f"{SM}:model-package/stepml-churn",
        )
        assert_context(request, {"sagemaker:ModelApprovalStatus": "PendingManualApproval"})
    update = only(call_of("sagemaker", "update_model_package", ModelPackageArn=arn, ModelApprovalStatus="Approved"))
    assert (update.action, update.resource) == ("sagemaker:UpdateModelPackage", arn)
    assert_context(update, {"sagemaker:ModelApprovalStatus": "Approved"})


def test_lists_are_on_everything_and_tags_on_the_resource_arn():
    assert pairs(call_of("sagemaker", "list_endpoints")) == [("sagemaker:ListEndpoints", "*")]
    assert pairs(call_of("sagemaker", "list_training_jobs")) == [("sagemaker:ListTrainingJobs", "*")]
    endpoint = f"{SM}:endpoint/e"
    assert pairs(call_of("sagemaker", "list_tags", ResourceArn=endpoint)) == [("sagemaker:ListTags", endpoint)]
    add = only(call_of("sagemaker", "add_tags", ResourceArn=endpoint, Tags=[{"Key": "k", "Value": "v"}]))
    assert (add.action, add.resource, add.context["aws:TagKeys"]) == ("sagemaker:AddTags", endpoint, ["k"])


def test_invoke_endpoint_is_authorized_on_the_endpoint():
    request = only(call_of("sagemaker-runtime", "invoke_endpoint", EndpointName="stepml-test-r1", Body=b"1,2"))
    assert (request.action, request.resource) == ("sagemaker:InvokeEndpoint", f"{SM}:endpoint/stepml-test-r1")


# ---------------------------------------------------------------------------------------------
# Step Functions
# ---------------------------------------------------------------------------------------------

EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepml-pipeline:run-1"


def test_executions_are_started_on_the_state_machine_and_read_on_the_execution():
    assert pairs(call_of("stepfunctions", "start_execution", stateMachineArn=MACHINE)) == [
        ("states:StartExecution", MACHINE)
    ]
    for operation, action in (
        ("describe_execution", "states:DescribeExecution"),
        ("stop_execution", "states:StopExecution"),
        ("get_execution_history", "states:GetExecutionHistory"),
        ("redrive_execution", "states:RedriveExecution"),
    ):
        assert pairs(call_of("stepfunctions", operation, executionArn=EXECUTION)) == [(action, EXECUTION)]
    assert pairs(call_of("stepfunctions", "list_executions", stateMachineArn=MACHINE)) == [
        ("states:ListExecutions", MACHINE)
    ]


def test_task_tokens_are_authorized_on_their_state_machine():
    for operation, extra in (
        ("send_task_success", {"output": "{}"}),
        ("send_task_failure", {"error": "Rejected"}),
        ("send_task_heartbeat", {}),
    ):
        call = call_of("stepfunctions", operation, taskToken="token-of-the-pipeline", **extra)
        assert pairs(call) == [(f"states:{call.operation}", MACHINE)]
    unknown = call_of("stepfunctions", "send_task_success", taskToken="forged", output="{}")
    assert pairs(unknown) == [("states:SendTaskSuccess", "*")]


def test_test_state_needs_reveal_secrets_to_show_a_connections_secrets():
    definition = '{"Type": "Pass", "End": true}'
    assert pairs(call_of("stepfunctions", "test_state", definition=definition, roleArn=ROLE)) == [
        ("states:TestState", "*"),
        ("iam:PassRole", ROLE),
    ]
    revealing = call_of("stepfunctions", "test_state", definition=definition, roleArn=ROLE, revealSecrets=True)
    assert pairs(revealing) == [("states:TestState", "*"), ("states:RevealSecrets", "*"), ("iam:PassRole", ROLE)]


def test_state_machines_are_created_with_their_role_and_tags():
    call = call_of(
        "stepfunctions",
        "create_state_machine",
        name="stepml-pipeline",
        definition="{}",
        roleArn=ROLE,
        tags=[{"key": "app", "value": "stepml"}],
    )
    requests = authz(call)
    assert [(r.action, r.resource) for r in requests] == [
        ("states:CreateStateMachine", MACHINE),
        ("iam:PassRole", ROLE),
        ("states:TagResource", MACHINE),
    ]
    assert requests[0].context["aws:RequestTag/app"] == "stepml"
    assert requests[1].context == {"iam:PassedToService": "states.amazonaws.com"}
    assert pairs(call_of("stepfunctions", "update_state_machine", stateMachineArn=MACHINE, definition="{}")) == [
        ("states:UpdateStateMachine", MACHINE)
    ]
    assert pairs(call_of("stepfunctions", "describe_state_machine", stateMachineArn=MACHINE)) == [
        ("states:DescribeStateMachine", MACHINE)
    ]


def test_listing_and_validating_are_on_everything():
    assert pairs(call_of("stepfunctions", "list_state_machines")) == [("states:ListStateMachines", "*")]
    assert pairs(call_of("stepfunctions", "validate_state_machine_definition", definition="{}")) == [
        ("states:ValidateStateMachineDefinition", "*")
    ]


# ---------------------------------------------------------------------------------------------
# Glue, SNS, SQS
# ---------------------------------------------------------------------------------------------

JOB = f"arn:aws:glue:{REGION}:{ACCOUNT}:job/stepml-preprocess"


def test_glue_job_operations_are_on_the_job():
    cases = [
        ("start_job_run", {"JobName": "stepml-preprocess"}),
        ("get_job_run", {"JobName": "stepml-preprocess", "RunId": "jr_1"}),
        ("get_job_runs", {"JobName": "stepml-preprocess"}),
        ("batch_stop_job_run", {"JobName": "stepml-preprocess", "JobRunIds": ["jr_1"]}),
        ("get_job", {"JobName": "stepml-preprocess"}),
    ]
    for operation, params in cases:
        call = call_of("glue", operation, **params)
        assert pairs(call) == [(f"glue:{call.operation}", JOB)], operation


def test_glue_catalog_reads_are_on_the_catalog_database_and_table():
    assert pairs(call_of("glue", "get_table", DatabaseName="d", Name="t")) == [
        ("glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"),
        ("glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/d"),
        ("glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/d/t"),
    ]


def test_sns_publish_subscribe_and_list():
    assert pairs(call_of("sns", "publish", TopicArn=TOPIC, Message="m")) == [("sns:Publish", TOPIC)]
    endpoint = f"arn:aws:sns:{REGION}:{ACCOUNT}:endpoint/APNS/app/1"
    assert pairs(call_of("sns", "publish", TargetArn=endpoint, Message="m")) == [("sns:Publish", endpoint)]
    subscribe = only(call_of("sns", "subscribe", TopicArn=TOPIC, Protocol="email", Endpoint="a@example.com"))
    assert (subscribe.action, subscribe.resource, subscribe.context) == (
        "sns:Subscribe",
        TOPIC,
        {"sns:Protocol": "email", "sns:Endpoint": "a@example.com"},
    )
    assert pairs(call_of("sns", "list_topics")) == [("sns:ListTopics", "*")]


def test_publishing_to_an_encrypted_topic_needs_its_kms_key():
    resolver = Resolver(sns_topic_kms_key=lambda topic: "alias/stepml-approvals" if topic == TOPIC else None)
    requests = authz(call_of("sns", "publish", TopicArn=TOPIC, Message="m"), resolver)
    assert [(r.action, r.resource) for r in requests] == [
        ("sns:Publish", TOPIC),
        ("kms:GenerateDataKey", KEY_ARN),
        ("kms:Decrypt", KEY_ARN),
    ]
    assert requests[1].context["kms:ViaService"] == "sns.us-east-1.amazonaws.com"


def test_sqs_queue_urls_become_queue_arns():
    url = f"http://127.0.0.1:5000/{ACCOUNT}/stepml-dlq"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:stepml-dlq"
    assert pairs(call_of("sqs", "send_message", QueueUrl=url, MessageBody="x")) == [("sqs:SendMessage", queue)]
    batch = call_of("sqs", "send_message_batch", QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])
    assert pairs(batch) == [("sqs:SendMessage", queue)]
    assert pairs(call_of("sqs", "get_queue_url", QueueName="stepml-dlq")) == [("sqs:GetQueueUrl", queue)]
    created = authz(call_of("sqs", "create_queue", QueueName="stepml-dlq", tags={"app": "stepml"}))
    assert [(r.action, r.resource) for r in created] == [("sqs:CreateQueue", queue), ("sqs:TagQueue", queue)]


# ---------------------------------------------------------------------------------------------
# SES
# ---------------------------------------------------------------------------------------------

SES = f"arn:aws:ses:{REGION}:{ACCOUNT}"


def _send_email(**extra: Any) -> ParsedCall:
    params: dict[str, Any] = {
        "FromEmailAddress": '"stepml approvals" <approvals@example.com>',
        "Destination": {"ToAddresses": ["Ann <ann@example.org>"], "CcAddresses": ["bob@example.org"]},
        "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
    }
    params.update(extra)
    return call_of("sesv2", "send_email", **params)


def test_send_email_is_authorized_on_the_sending_identity_with_the_address_keys():
    request = only(_send_email(FeedbackForwardingEmailAddress="bounces@example.com"))
    assert (request.action, request.resource) == ("ses:SendEmail", f"{SES}:identity/approvals@example.com")
    assert request.context == {
        "ses:FromAddress": "approvals@example.com",
        "ses:FromDisplayName": "stepml approvals",
        "ses:Recipients": ["ann@example.org", "bob@example.org"],
        "ses:FeedbackAddress": "bounces@example.com",
        "ses:ApiVersion": "2",
    }


def test_send_email_from_an_address_of_a_verified_domain_uses_the_domain_identity():
    resolver = Resolver(ses_sending_identity=lambda address: address.split("@", 1)[1])
    assert pairs(_send_email(), resolver) == [("ses:SendEmail", f"{SES}:identity/example.com")]


def test_send_email_through_a_configuration_set_is_authorized_on_it_too():
    assert pairs(_send_email(ConfigurationSetName="stepml")) == [
        ("ses:SendEmail", f"{SES}:identity/approvals@example.com"),
        ("ses:SendEmail", f"{SES}:configuration-set/stepml"),
    ]


def test_in_the_sandbox_each_recipient_identity_is_authorized_too():
    resolver = Resolver(ses_in_sandbox=lambda: True)
    assert pairs(_send_email(), resolver) == [
        ("ses:SendEmail", f"{SES}:identity/approvals@example.com"),
        ("ses:SendEmail", f"{SES}:identity/ann@example.org"),
        ("ses:SendEmail", f"{SES}:identity/bob@example.org"),
    ]


def test_sending_authorization_names_the_identity_arn():
    other = "arn:aws:ses:us-east-1:111122223333:identity/example.com"
    assert pairs(_send_email(FromEmailAddressIdentityArn=other)) == [("ses:SendEmail", other)]


def test_a_raw_message_is_read_for_its_sender_and_recipients():
    raw = b"From: Ops <ops@example.com>\r\nTo: ann@example.org\r\nSubject: s\r\n\r\nbody"
    request = only(call_of("sesv2", "send_email", Content={"Raw": {"Data": raw}}))
    assert (request.resource, request.context["ses:FromAddress"], request.context["ses:Recipients"]) == (
        f"{SES}:identity/ops@example.com",
        "ops@example.com",
        ["ann@example.org"],
    )


def test_email_identities_are_authorized_on_the_identity():
    assert pairs(call_of("sesv2", "get_email_identity", EmailIdentity="example.com")) == [
        ("ses:GetEmailIdentity", f"{SES}:identity/example.com")
    ]
    created = authz(
        call_of("sesv2", "create_email_identity", EmailIdentity="a@example.com", Tags=[{"Key": "k", "Value": "v"}])
    )
    assert [(r.action, r.resource) for r in created] == [
        ("ses:CreateEmailIdentity", f"{SES}:identity/a@example.com"),
        ("ses:TagResource", f"{SES}:identity/a@example.com"),
    ]


def test_ses_v1_send_email_is_authorized_the_same_way():
    request = only(
        call_of(
            "ses",
            "send_email",
            Source="approvals@example.com",
            Destination={"ToAddresses": ["ann@example.org"]},
            Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}},
        )
    )
    assert (request.action, request.resource, request.context["ses:ApiVersion"]) == (
        "ses:SendEmail",
        f"{SES}:identity/approvals@example.com",
        "1",
    )


# ---------------------------------------------------------------------------------------------
# KMS
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "context"),
    [
        ("generate_mac", {"Message": b"m", "MacAlgorithm": "HMAC_SHA_256"}, {"kms:MacAlgorithm": "HMAC_SHA_256"}),
        (
            "verify_mac",
            {"Message": b"m", "Mac": b"x", "MacAlgorithm": "HMAC_SHA_256"},
            {"kms:MacAlgorithm": "HMAC_SHA_256"},
        ),
        (
            "encrypt",
            {"Plaintext": b"p", "EncryptionContext": {"run": "r1"}},
            {"kms:EncryptionContext:run": "r1", "kms:EncryptionContextKeys": ["run"]},
        ),
        ("decrypt", {"CiphertextBlob": b"c"}, {}),
        ("generate_data_key", {"KeySpec": "AES_256"}, {}),
        ("describe_key", {}, {}),
    ],
)
def test_key_operations_are_authorized_on_the_key_an_alias_names(operation, params, context):
    call = call_of("kms", operation, KeyId="alias/stepml-approvals", **params)
    request = only(call)
    assert (request.action, request.resource) == (f"kms:{call.operation}", KEY_ARN)
    assert_context(request, {"kms:RequestAlias": "alias/stepml-approvals", "kms:CallerAccount": ACCOUNT, **context})


def test_decrypt_without_a_key_id_uses_the_key_of_the_ciphertext():
    call = call_of("kms", "decrypt", CiphertextBlob=b"blob")
    assert pairs(call, Resolver(kms_key_of_ciphertext=lambda blob: KEY_ARN if blob == b"blob" else None)) == [
        ("kms:Decrypt", KEY_ARN)
    ]
    assert pairs(call) == [("kms:Decrypt", "*")]


def test_an_unknown_key_id_names_the_key_arn():
    assert pairs(call_of("kms", "describe_key", KeyId="0000-unknown")) == [
        ("kms:DescribeKey", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000-unknown")
    ]


def test_create_key_is_on_everything_with_its_spec_and_tags_need_tag_resource():
    requests = authz(
        call_of(
            "kms",
            "create_key",
            KeySpec="HMAC_256",
            KeyUsage="GENERATE_VERIFY_MAC",
            Tags=[{"TagKey": "app", "TagValue": "stepml"}],
        )
    )
    assert [(r.action, r.resource) for r in requests] == [("kms:CreateKey", "*"), ("kms:TagResource", "*")]
    assert_context(
        requests[0],
        {"kms:KeySpec": "HMAC_256", "kms:KeyUsage": "GENERATE_VERIFY_MAC", "aws:RequestTag/app": "stepml"},
    )


def test_create_alias_is_authorized_on_the_alias_and_the_key():
    assert pairs(call_of("kms", "create_alias", AliasName="alias/new", TargetKeyId=KEY_ARN)) == [
        ("kms:CreateAlias", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/new"),
        ("kms:CreateAlias", KEY_ARN),
    ]


# ---------------------------------------------------------------------------------------------
# EventBridge, Lambda, Logs, CloudWatch
# ---------------------------------------------------------------------------------------------


def test_put_events_is_authorized_per_bus_with_source_and_detail_type():
    call = call_of(
        "events",
        "put_events",
        Entries=[
            {"Source": "stepml.pipeline", "DetailType": "Run Finished", "Detail": "{}"},
            {"Source": "stepml.monitor", "DetailType": "Drift", "Detail": "{}", "EventBusName": "ops"},
        ],
    )
    requests = authz(call)
    assert [(r.action, r.resource, r.context) for r in requests] == [
        (
            "events:PutEvents",
            f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
            {"events:source": "stepml.pipeline", "events:detail-type": "Run Finished"},
        ),
        (
            "events:PutEvents",
            f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/ops",
            {"events:source": "stepml.monitor", "events:detail-type": "Drift"},
        ),
    ]


def test_rules_are_named_by_bus_and_targets_pass_their_roles():
    rule = only(
        call_of(
            "events",
            "put_rule",
            Name="on-upload",
            EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
        )
    )
    assert (rule.resource, rule.context) == (
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/on-upload",
        {"events:source": ["aws.s3"], "events:detail-type": ["Object Created"]},
    )
    targets = authz(
        call_of(
            "events",
            "put_targets",
            Rule="on-upload",
            EventBusName="ops",
            Targets=[{"Id": "1", "Arn": MACHINE, "RoleArn": ROLE}],
        )
    )
    assert [(r.action, r.resource) for r in targets] == [
        ("events:PutTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/ops/on-upload"),
        ("iam:PassRole", ROLE),
    ]
    assert targets[0].context == {"events:TargetArn": [MACHINE]}
    assert pairs(call_of("events", "describe_rule", Name="on-upload")) == [
        ("events:DescribeRule", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/on-upload")
    ]


def test_invoke_is_invoke_function_on_the_qualified_function():
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stepml-evaluate"
    assert pairs(call_of("lambda", "invoke", FunctionName="stepml-evaluate")) == [("lambda:InvokeFunction", function)]
    assert pairs(call_of("lambda", "invoke", FunctionName="stepml-evaluate", Qualifier="live")) == [
        ("lambda:InvokeFunction", f"{function}:live")
    ]
    assert pairs(call_of("lambda", "invoke", FunctionName=f"{function}:3")) == [
        ("lambda:InvokeFunction", f"{function}:3")
    ]
    assert pairs(call_of("lambda", "invoke", FunctionName=f"{ACCOUNT}:function:stepml-evaluate")) == [
        ("lambda:InvokeFunction", function)
    ]
    assert pairs(call_of("lambda", "get_function", FunctionName="stepml-evaluate")) == [
        ("lambda:GetFunction", function)
    ]


def test_log_groups_and_streams():
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/x"
    assert pairs(call_of("logs", "create_log_group", logGroupName="/aws/lambda/x")) == [
        ("logs:CreateLogGroup", f"{group}:log-stream:")
    ]
    events = call_of(
        "logs",
        "put_log_events",
        logGroupName="/aws/lambda/x",
        logStreamName="2026/01/01/[1]abc",
        logEvents=[{"timestamp": 1, "message": "m"}],
    )
    assert pairs(events) == [("logs:PutLogEvents", f"{group}:log-stream:2026/01/01/[1]abc")]
    assert pairs(call_of("logs", "describe_log_groups")) == [
        ("logs:DescribeLogGroups", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group::log-stream:")
    ]


def test_put_metric_data_carries_the_namespace_and_alarms_are_named():
    metric = only(
        call_of(
            "cloudwatch", "put_metric_data", Namespace="stepml/pipeline", MetricData=[{"MetricName": "m", "Value": 1}]
        )
    )
    assert (metric.action, metric.resource, metric.context) == (
        "cloudwatch:PutMetricData",
        "*",
        {"cloudwatch:namespace": "stepml/pipeline"},
    )
    assert pairs(call_of("cloudwatch", "describe_alarms", AlarmNames=["a", "b"])) == [
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a"),
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:b"),
    ]
    assert pairs(call_of("cloudwatch", "describe_alarms")) == [("cloudwatch:DescribeAlarms", "*")]


# ---------------------------------------------------------------------------------------------
# IAM, STS, SSM, ECR, Service Quotas, CloudFormation
# ---------------------------------------------------------------------------------------------


def test_iam_role_operations_are_on_the_role():
    role = f"arn:aws:iam::{ACCOUNT}:role/stepml-glue"
    assert pairs(call_of("iam", "get_role", RoleName="stepml-glue")) == [("iam:GetRole", role)]
    assert pairs(call_of("iam", "put_role_policy", RoleName="stepml-glue", PolicyName="p", PolicyDocument="{}")) == [
        ("iam:PutRolePolicy", role)
    ]
    created = authz(
        call_of(
            "iam",
            "create_role",
            RoleName="r",
            Path="/service/",
            AssumeRolePolicyDocument="{}",
            Tags=[{"Key": "k", "Value": "v"}],
        )
    )
    assert [(r.action, r.resource) for r in created] == [
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/service/r"),
        ("iam:TagRole", f"arn:aws:iam::{ACCOUNT}:role/service/r"),
    ]


def test_get_caller_identity_needs_no_permission():
    assert authz(call_of("sts", "get_caller_identity")) == []
    assume = authz(call_of("sts", "assume_role", RoleArn=ROLE, RoleSessionName="s1"))
    assert [(r.action, r.resource, r.context) for r in assume] == [
        ("sts:AssumeRole", ROLE, {"sts:RoleSessionName": "s1"})
    ]


def test_ssm_parameters_drop_their_leading_slash_and_selector():
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/stepml/dev/config"
    assert pairs(call_of("ssm", "get_parameter", Name="/stepml/dev/config")) == [("ssm:GetParameter", parameter)]
    assert pairs(call_of("ssm", "get_parameter", Name="/stepml/dev/config:3")) == [("ssm:GetParameter", parameter)]
    assert pairs(call_of("ssm", "get_parameters", Names=["plain", "/a/b"])) == [
        ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/plain"),
        ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/a/b"),
    ]
    assert pairs(call_of("ssm", "get_parameters_by_path", Path="/stepml/")) == [
        ("ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/stepml")
    ]


def test_ecr_service_quotas_and_cloudformation():
    assert pairs(call_of("ecr", "get_authorization_token")) == [("ecr:GetAuthorizationToken", "*")]
    assert pairs(call_of("ecr", "describe_images", repositoryName="stepml/train")) == [
        ("ecr:DescribeImages", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/stepml/train")
    ]
    assert pairs(call_of("service-quotas", "get_service_quota", ServiceCode="sagemaker", QuotaCode="L-1")) == [
        ("servicequotas:GetServiceQuota", f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:sagemaker/L-1")
    ]
    assert pairs(call_of("service-quotas", "list_service_quotas", ServiceCode="sagemaker")) == [
        ("servicequotas:ListServiceQuotas", "*")
    ]
    assert pairs(call_of("cloudformation", "describe_stacks", StackName="stepml-dev")) == [
        ("cloudformation:DescribeStacks", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/stepml-dev/*")
    ]
    assert pairs(call_of("cloudformation", "describe_stacks")) == [("cloudformation:DescribeStacks", "*")]


# ---------------------------------------------------------------------------------------------
# Anything else
# ---------------------------------------------------------------------------------------------


def test_an_operation_without_a_rule_is_its_action_on_everything():
    call = call_of("secretsmanager", "get_secret_value", SecretId="stepml/db")
    assert (call.service, call.operation, call.params) == (
        "secretsmanager",
        "GetSecretValue",
        {"SecretId": "stepml/db"},
    )
    assert pairs(call) == [("secretsmanager:GetSecretValue", "*")]
    rest = call_of("apigatewayv2", "get_apis")
    assert (rest.service, rest.operation) == ("apigatewayv2", "GetApis")
    assert pairs(rest) == [("apigateway:GetApis", "*")]


def test_each_request_is_listed_once():
    call = call_of(
        "dynamodb",
        "batch_get_item",
        RequestItems={"a": {"Keys": [{"pk": {"S": "1"}}, {"pk": {"S": "2"}}]}},
    )
    assert len(authz(call)) == 1


def test_base64_raw_message_of_ses_v1_is_decoded():
    raw = b"From: ops@example.com\r\nTo: ann@example.org\r\n\r\nhi"
    call = call_of("ses", "send_raw_email", RawMessage={"Data": raw})
    assert call.params["RawMessage"]["Data"] == base64.b64encode(raw).decode()
    request = only(call)
    assert (request.action, request.resource, request.context["ses:Recipients"]) == (
        "ses:SendRawEmail",
        f"{SES}:identity/ops@example.com",
        ["ann@example.org"],
    )
