"""The policies as moto holds them (a role's inline and attached policies; bucket, topic, key and
queue policies), and the running cloud's state the request table asks for
(``requests.ResourceResolver``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from stepml.local.iam.model import (
    LOCAL_ACCOUNT,
    PolicyDocument,
)


@lru_cache(maxsize=4096)
def _parsed(document: str) -> Mapping[str, Any]:
    return json.loads(document)


def _as_document(value: Any) -> Mapping[str, Any]:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return _parsed(value)
    return value


def resource_policy_source(resource_arn: str) -> str | None:
    """The name the gate gives the resource-based policy that governs ``resource_arn`` (a bucket's,
    topic's, key's, queue's or function's), or None for a resource with no such policy."""
    if resource_arn.startswith("arn:aws:s3:::"):
        return f"bucket policy of {resource_arn[len('arn:aws:s3:::') :].split('/', 1)[0]}"
    parts = resource_arn.split(":", 5)
    if len(parts) < 6:
        return None
    service, name = parts[2], parts[5]
    if service == "sns":
        return f"topic policy of {name}"
    if service == "kms" and name.startswith("key/"):
        return f"key policy of {name}"
    if service == "sqs":
        return f"queue policy of {name}"
    if service == "lambda" and name.startswith("function:"):
        return f"function policy of {name.split(':')[1]}"
    return None


class MotoPolicies:
    """The policies as moto holds them: a role's inline and attached policies, and the resource
    policies of buckets, topics, keys, queues and functions."""

    def __init__(self, account: str = LOCAL_ACCOUNT, region: str = "us-east-1"):
        self.account = account
        self.region = region

    def identity_policies(self, role_arn: str) -> list[PolicyDocument]:
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account]["global"]
        try:
            role = backend.get_role_by_arn(role_arn)
        except Exception:
            return []
        documents = [
            PolicyDocument(f"{role.name}/{name}", _as_document(text)) for name, text in sorted(role.policies.items())
        ]
        for arn, managed in sorted(role.managed_policies.items()):
            version = next((v for v in managed.versions if v.is_default), None)
            if version is not None:
                documents.append(PolicyDocument(f"{role.name}/{arn}", _as_document(version.document)))
        return documents

    def resource_policy(self, resource_arn: str) -> tuple[PolicyDocument | None, bool]:
        """The resource-based policy that governs ``resource_arn`` and whether it is a key policy."""
        source = resource_policy_source(resource_arn)
        if source is None:
            return None, False
        if resource_arn.startswith("arn:aws:s3:::"):
            from moto.s3.models import s3_backends

            bucket_name = resource_arn[len("arn:aws:s3:::") :].split("/", 1)[0]
            bucket = s3_backends[self.account]["aws"].buckets.get(bucket_name)
            if bucket is not None and bucket.policy:
                return PolicyDocument(source, _as_document(bucket.policy)), False
            return None, False
        parts = resource_arn.split(":", 5)
        service, region = parts[2], parts[3]
        if service == "sns":
            from moto.sns.models import sns_backends

            topic = sns_backends[self.account][region].topics.get(resource_arn)
            if topic is not None:
                return PolicyDocument(source, _as_document(topic.policy)), False
        elif service == "kms":
            from moto.kms.models import kms_backends

            key = kms_backends[self.account][region].keys.get(parts[5][len("key/") :])
            if key is not None:
                return PolicyDocument(source, _as_document(key.policy)), True
        elif service == "sqs":
            from moto.sqs.models import sqs_backends

            queue = sqs_backends[self.account][region].queues.get(parts[5])
            if queue is not None and queue.policy:
                return PolicyDocument(source, _as_document(queue.policy)), False
        elif service == "lambda":
            return self._function_policy(source, region, parts[5].split(":")[1]), False
        return None, False

    def _function_policy(self, source: str, region: str, function_name: str) -> PolicyDocument | None:
        """A function's resource-based policy (its AddPermission statements), or None without one."""
        from moto.awslambda.models import lambda_backends

        try:
            answer = lambda_backends[self.account][region].get_policy(function_name)
        except Exception:  # no such function, or no statement yet (moto raises its not-found error)
            return None
        # GetPolicy answers {"Policy": "<the policy as JSON text>", "RevisionId": ...}.
        return PolicyDocument(source, _as_document(json.loads(answer)["Policy"]))

    def ses_sending_identity(self, address: str) -> str | None:
        """The verified SES identity a From address sends as: the address, else its domain."""
        from moto.sesv2.models import sesv2_backends

        backend = sesv2_backends[self.account][self.region]
        identities = backend.core_backend.email_identities
        if address in identities:
            return address
        domain = address.rsplit("@", 1)[-1]
        return domain if domain in identities else None

    def iam_role_arn(self, name: str) -> str | None:
        from moto.iam.models import iam_backends

        try:
            return iam_backends[self.account]["global"].get_role(name).arn
        except Exception:
            return None

    def sns_topic_kms_key(self, topic_arn: str) -> str | None:
        """requests.ResourceResolver: the KMS key a topic encrypts with (SNS then needs the
        publisher's kms rights)."""
        from moto.sns.models import sns_backends

        region = topic_arn.split(":")[3]
        topic = sns_backends[self.account][region].topics.get(topic_arn)
        if topic is None or not topic.kms_master_key_id:
            return None
        return self.kms_key_arn(topic.kms_master_key_id, region)

    # -- requests.ResourceResolver --------------------------------------------------------

    def kms_key_arn(self, key_id: str, region: str | None = None) -> str | None:
        from moto.kms.models import kms_backends

        if key_id.startswith("arn:aws:kms:"):
            region = key_id.split(":")[3]
        region = region or self.region
        backend = kms_backends[self.account][region]
        try:
            resolved = backend.any_id_to_key_id(key_id)
        except Exception:
            return None
        if resolved not in backend.keys:
            return None
        return f"arn:aws:kms:{region}:{self.account}:key/{resolved}"

    def state_machine_of_task_token(self, token: str) -> str | None:
        """The state machine whose running execution waits for ``token`` (SendTask* authorize
        on it), or None for a token no execution holds."""
        from moto.stepfunctions.responses import get_backend

        # The backend that runs executions (moto's interpreter when execution is on).
        backend = get_backend(self.account, self.region)
        for machine in list(backend.state_machines):
            for execution in list(getattr(machine, "executions", [])):
                worker = getattr(execution, "exec_worker", None)
                environment = getattr(worker, "env", None)
                manager = getattr(environment, "callback_pool_manager", None)
                if manager is not None and manager.get(token) is not None:
                    return machine.arn
        return None

    def lambda_function_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name_or_arn}"
