"""What one HTTP request to an AWS API asks IAM for.

Two pure steps, no moto:

- :func:`parse_call` reads a request as it arrives on the wire (method, path, query string,
  headers, body, host) and names the botocore service and operation, the operation's input
  members, and the caller's access key and region from the SigV4 signature. The operation is
  found with botocore's own service models: ``X-Amz-Target`` for the JSON protocols,
  ``Action=`` for the query protocol, the ``requestUri`` templates (path labels and
  query-string qualifiers such as ``/{Bucket}?versioning``) for rest-json and rest-xml.
- :func:`authorization_requests` turns a parsed call into the IAM actions, resources and
  condition keys AWS authorizes for it, following the Service Authorization Reference
  ("Actions, resources, and condition keys for ...") and each service's permission notes
  (sources are cited beside the rules that need them).

State that only the running cloud knows (the key an alias names, the state machine a task
token belongs to, a topic's KMS key ...) comes from a :class:`ResourceResolver` that the gate
implements against its backends.

What a call needs that is not modelled (documented where it matters): condition keys that need
stored state (``aws:ResourceTag/*``, ``s3:ExistingObjectTag/*``, ``dynamodb:LeadingKeys``, which
needs the table's key schema), and any operation outside the tables here, which is authorized as
``<prefix>:<Operation>`` on ``"*"`` because its resource is unknown.

The package, by step:

- ``call``: :class:`ParsedCall`, :class:`UnknownCallError`, :class:`ResourceResolver`;
- ``models``: botocore's service models as the parser asks them (protocols, signing names, IAM
  prefixes, JSON target prefixes);
- ``parsing``: :func:`parse_call` and :func:`parse_environ` (signature, service, then the
  operation by wire protocol), with ``shapes`` (query form, XML and JSON members), ``cbor``
  (smithy-rpc-v2-cbor) and ``rest`` (rest-json and rest-xml ``requestUri`` templates);
- ``authorization``: :func:`authorization_requests`, dispatching to the per-service resolvers
  grouped by family (``s3``, ``dynamodb``, ``sagemaker``, ``workflows``, ``messaging``,
  ``security``, ``management``) on the helpers of ``common``.

Other modules import the names below; the rest are the package's own.
"""

from __future__ import annotations

from stepml.local.iam.requests.authorization import authorization_requests
from stepml.local.iam.requests.call import ParsedCall, ResourceResolver, UnknownCallError
from stepml.local.iam.requests.models import _SIGNING_NAME_SERVICES, iam_prefix
from stepml.local.iam.requests.parsing import parse_call, parse_environ

__all__ = [
    "_SIGNING_NAME_SERVICES",
    "ParsedCall",
    "ResourceResolver",
    "UnknownCallError",
    "authorization_requests",
    "iam_prefix",
    "parse_call",
    "parse_environ",
]
