"""The parsed call, the error for a request no operation matches, and the running cloud's state
that some authorizations depend on (:class:`ResourceResolver`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ParsedCall:
    """One AWS API call as the request carries it.

    ``service`` and ``operation`` are botocore's names (``"s3"``, ``"GetObject"``); ``params``
    holds the operation's top-level input members under botocore's member names, recovered from
    the body, the URI labels, the query string and the headers. ``auth_type`` is ``REST-HEADER``
    (an ``Authorization`` header), ``REST-QUERY-STRING`` (a presigned URL) or ``None`` (unsigned);
    ``signature_version`` is ``AWS4-HMAC-SHA256`` (SigV4), ``AWS4-ECDSA-P256-SHA256`` (SigV4a) or
    ``AWS`` (SigV2).
    """

    service: str
    operation: str
    params: dict[str, Any]
    access_key_id: str | None
    region: str | None
    auth_type: str | None = None
    signature_version: str | None = None


class UnknownCallError(ValueError):
    """The request is not a call of any botocore service operation this module can name."""


class ResourceResolver(Protocol):
    """The state of the running cloud that some authorizations depend on.

    Required methods are below. A resolver may also offer these optional ones (looked up with
    ``getattr``; without them the stricter-or-unknown fallback described at each use applies):

    - ``kms_key_of_ciphertext(blob: bytes) -> str | None``: the key ARN a KMS ciphertext blob
      was made with (``Decrypt``/``ReEncrypt`` without ``KeyId``);
    - ``sns_topic_kms_key(topic_arn: str) -> str | None``: the topic's ``KmsMasterKeyId``;
    - ``sqs_queue_kms_key(queue_arn: str) -> str | None``: the queue's ``KmsMasterKeyId``;
    - ``s3_bucket_kms_key(bucket: str) -> str | None``: the bucket's default SSE-KMS key;
    - ``s3_object_kms_key(bucket: str, key: str, version_id: str | None) -> str | None``:
      the SSE-KMS key of a stored object;
    - ``ses_sending_identity(address: str) -> str | None``: the verified identity (the address
      itself, else its domain) that SES sends an address as;
    - ``ses_in_sandbox() -> bool``: whether the account is in the SES sandbox;
    - ``iam_role_arn(name: str) -> str | None``: a role's ARN with its path;
    - ``cloudformation_stack_arn(name: str) -> str | None``: a stack's ARN with its id.
    """

    def kms_key_arn(self, key_id: str) -> str | None:
        """The key ARN for a key id, key ARN, alias name or alias ARN; None when unknown."""
        ...

    def state_machine_of_task_token(self, token: str) -> str | None:
        """The ARN of the state machine (or activity) whose task a token belongs to."""
        ...

    def lambda_function_arn(self, name_or_arn: str) -> str:
        """The unqualified function ARN for a function name, partial ARN or ARN."""
        ...
