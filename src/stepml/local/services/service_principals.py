"""Whether an AWS service principal may act under a resource's policy: one decision for the patches.

S3's log delivery (a bucket policy) and CloudWatch Logs' use of a KMS key (a key policy) are
decided here, so both go the same way: through a running local cloud's IAM gate, which records
the check for the mutation test, or, without one, by stepml's evaluator alone.
"""

from __future__ import annotations

import json
from typing import Any


def service_may(
    principal: Any, request: Any, document_text: str | bytes, *, key_policy: bool = False, service: str
) -> bool:
    """Whether ``principal`` (a service) may make ``request`` under the resource's policy (the text moto holds)."""
    from stepml.local.iam import hooks as iam_hooks
    from stepml.local.iam import policy
    from stepml.local.iam.gate import resource_policy_source
    from stepml.local.iam.model import PolicyDocument

    authorizer = iam_hooks.active()
    if authorizer is not None:
        return authorizer.check(principal, request, service=service).allowed
    document = PolicyDocument(resource_policy_source(request.resource) or request.resource, json.loads(document_text))
    return policy.evaluate(
        principal, request, [], document, resource_account=principal.account, key_policy=key_policy
    ).allowed
