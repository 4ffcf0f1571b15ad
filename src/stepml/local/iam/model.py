"""The types the IAM pieces share: who asks, for what, and the answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The account the local cloud runs as (moto's default account).
LOCAL_ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Principal:
    """Who makes a call: a role's session (``arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION``)
    or, for calls AWS services make themselves, a service principal (``service`` set)."""

    arn: str
    account: str = LOCAL_ACCOUNT
    #: The role's ARN (``arn:aws:iam::ACCOUNT:role/NAME``) when ``arn`` is a role session.
    role_arn: str | None = None
    #: A service principal such as ``cloudwatch.amazonaws.com``.
    service: str | None = None


@dataclass(frozen=True)
class AuthorizationRequest:
    """One action on one resource, with the condition keys the request carries.

    ``resource`` is an ARN, or ``"*"`` for actions with no resource-level permissions.
    ``context`` maps condition keys (``s3:prefix``, ``iam:PassedToService``,
    ``ses:FromAddress`` ...) to a string, a list of strings, a bool or a number.
    """

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDocument:
    """A policy and where it comes from (``RoleName/PolicyName``, ``bucket policy of NAME`` ...)."""

    source: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class StatementRef:
    """One statement of a policy: its source, position and Sid."""

    source: str
    index: int
    sid: str | None = None


@dataclass(frozen=True)
class Decision:
    """The evaluator's answer.

    ``kind`` is ``allowed``, ``explicit-deny`` or ``implicit-deny``; ``statement`` is the
    statement that allowed or explicitly denied; ``policy_type`` says which kind of policy
    decided (``identity-based``, ``resource-based``, ``key``) for AWS's wording of a denial.
    """

    kind: Literal["allowed", "explicit-deny", "implicit-deny"]
    statement: StatementRef | None = None
    policy_type: Literal["identity-based", "resource-based", "key"] | None = None

    @property
    def allowed(self) -> bool:
        return self.kind == "allowed"
