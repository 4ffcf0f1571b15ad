"""The IAM policy evaluator of the local cloud: AWS's policy evaluation logic, as documented.

``evaluate`` decides one request (a principal, an action, a resource, the request's condition keys)
against the principal's identity-based policies and, when the resource has one, its resource-based
policy (a bucket, topic or queue policy) or KMS key policy. What it evaluates:

- the policy grammar: ``Version``, ``Statement`` as one statement or a list, ``Sid``, ``Effect``,
  ``Action``/``NotAction``, ``Resource``/``NotResource``, ``Principal``/``NotPrincipal``,
  ``Condition``; a malformed document, an unknown element or condition operator, or a value an
  operator cannot read raises ``PolicyError`` naming the policy, as IAM refuses such a policy
  when it is created (``MalformedPolicyDocument``);
- actions: case-insensitive, ``*`` and ``?`` wildcards (``s3:Get*``, ``kms:*``, ``*``);
- resources: case-sensitive ARNs with ``*`` and ``?``; a ``*`` stays inside its colon-delimited
  segment unless it is the segment's last character, where it may run across colons (so
  ``arn:aws:s3:::bucket/*`` matches every key, slashes included); ``?`` is one character other
  than a colon;
- principals in resource policies: ``"*"`` and ``{"AWS": "*"}`` (everyone), an account id or its
  ``arn:aws:iam::ACCOUNT:root`` (a grant to the account, which its identity policies must pass on),
  a role ARN (that role's sessions), a session, user or other principal ARN, a service principal
  (``{"Service": "states.amazonaws.com"}``); ``NotPrincipal`` with ``Deny``, where a principal is
  exempt only if the statement lists its account and its own or its role's ARN;
- conditions: every documented operator (``String*``, ``Numeric*``, ``Date*``, ``Bool``,
  ``BinaryEquals``, ``IpAddress``/``NotIpAddress``, ``Arn*``, ``Null``), the ``...IfExists``
  suffix, the ``ForAllValues:``/``ForAnyValue:`` set operators; case-insensitive keys; values
  of one key OR-ed (NOR-ed for a negated operator), keys and operators AND-ed; a key missing from
  the request makes a positive operator false and a negated one true, ``IfExists`` true,
  ``ForAllValues`` true, ``ForAnyValue`` false;
- policy variables (``${aws:username}``, ``${aws:PrincipalTag/team}``, ``${*}``, defaults as in
  ``${aws:username, 'none'}``) in ``Resource``/``NotResource`` and in string and ARN condition
  values of ``2012-10-17`` policies, filled from the request context; a variable the context
  cannot fill makes its statement not apply, as AWS documents;
- the decision: an explicit ``Deny`` in any policy wins; in the same account an ``Allow`` in an
  identity policy, or one in the resource policy naming this principal, allows; across accounts
  both sides must allow; for a KMS key (``key_policy=True``) the key policy must allow the principal
  itself, or the account, and then an identity policy must allow too;
- global condition keys the evaluator adds when the caller's context lacks them:
  ``aws:PrincipalArn`` (a session's role ARN), ``aws:PrincipalAccount``, ``aws:PrincipalType``,
  ``aws:username`` (IAM users), ``aws:PrincipalIsAWSService``, ``aws:PrincipalServiceName``,
  ``aws:CurrentTime`` and ``aws:EpochTime``. Request facts such as ``aws:SecureTransport`` or
  ``aws:SourceIp`` come only from the caller: a key the caller does not set is missing.

What it does not evaluate: AWS Organizations SCPs and RCPs, permissions boundaries, session
policies, ACLs, VPC endpoint policies, the root user's implicit full access, and ``aws:userid``
(no unique ids here). Evaluation takes the documents as given on every call (nothing is cached),
so a mutation test can pass a copy without one statement or action (``without_statement``,
``without_action``, ``without_resource``).

The parts: ``documents`` (the grammar, its validation, the mutation copies), ``matching``
(actions, resources, policy variables), ``conditions`` (the operators); this module holds
principals, the request context, the decision and AWS's wording of a denial.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stepml.local.iam.conditions import condition_holds
from stepml.local.iam.documents import (
    ACCOUNT_ID,
    ACCOUNT_ROOT,
    VERSION_WITH_VARIABLES,
    check_statement,
    policy_version,
    statements,
    statements_of,
    strings,
    without_action,
    without_resource,
    without_statement,
)
from stepml.local.iam.matching import PolicyError, UnresolvedVariableError, action_matches, resource_matches
from stepml.local.iam.model import AuthorizationRequest, Decision, PolicyDocument, Principal, StatementRef

__all__ = [
    "PolicyError",
    "denial_message",
    "evaluate",
    "statements",
    "without_action",
    "without_resource",
    "without_statement",
]

# --- principals ----------------------------------------------------------------------------

_DIRECT, _ACCOUNT = "direct", "account"


def _principal_match(element: Any, principal: Principal) -> str | None:
    """How a Principal element names this principal: itself (``direct``), its ``account``, or not."""
    if element == "*":
        return _DIRECT
    found: str | None = None
    for kind, values in element.items():
        for value in strings(values, "Principal"):
            if kind == "Service":
                if principal.service is not None and value.lower() == principal.service.lower():
                    return _DIRECT
            elif kind == "AWS":
                if value == "*" or value in (principal.arn, principal.role_arn):
                    return _DIRECT
                if principal.service is None and _account_of(value) == principal.account:
                    found = _ACCOUNT
            # Federated and CanonicalUser name principals this evaluator never sees.
    return found


def _account_of(value: str) -> str | None:
    if ACCOUNT_ID.fullmatch(value):
        return value
    root = ACCOUNT_ROOT.fullmatch(value)
    return root.group(1) if root else None


def _not_principal_exempts(element: Any, principal: Principal) -> bool:
    """Whether a NotPrincipal lists this principal, so the Deny passes it over.

    AWS may check the account, then the role, then the session: a session is exempt only if the
    statement lists its account as well as the session's or the role's ARN.
    """
    if element == "*":
        return True
    listed: dict[str, list[str]] = {kind: strings(values, "NotPrincipal") for kind, values in element.items()}
    if principal.service is not None:
        return principal.service.lower() in {v.lower() for v in listed.get("Service", [])}
    aws = listed.get("AWS", [])
    if "*" in aws:
        return True
    account_listed = any(_account_of(value) == principal.account for value in aws)
    identity_listed = principal.arn in aws or (principal.role_arn is not None and principal.role_arn in aws)
    return account_listed and identity_listed


# --- the request context -------------------------------------------------------------------


def _request_context(principal: Principal, request: AuthorizationRequest) -> dict[str, Any]:
    """The request's condition keys, lower-cased, with the global keys the principal implies."""
    context = {str(key).lower(): value for key, value in request.context.items()}
    implied: dict[str, Any] = {}
    if principal.service is not None:
        implied["aws:principalisawsservice"] = "true"
        implied["aws:principalservicename"] = principal.service
    else:
        implied["aws:principalisawsservice"] = "false"
        implied["aws:principalarn"] = principal.role_arn or principal.arn
        implied["aws:principalaccount"] = principal.account
        kind = _principal_type(principal.arn)
        if kind:
            implied["aws:principaltype"] = kind
        if kind == "User":
            implied["aws:username"] = principal.arn.rsplit("/", 1)[-1]
    now = datetime.now(UTC)
    implied["aws:currenttime"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    implied["aws:epochtime"] = str(int(now.timestamp()))
    for key, value in implied.items():
        context.setdefault(key, value)
    return context


def _principal_type(arn: str) -> str | None:
    if ":assumed-role/" in arn:
        return "AssumedRole"
    if ":federated-user/" in arn:
        return "FederatedUser"
    if arn.endswith(":root"):
        return "Account"
    if ":user/" in arn:
        return "User"
    return None


# --- evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """A statement that applies to the request."""

    ref: StatementRef
    effect: str
    #: For resource-based statements, how the Principal names the caller (``direct``/``account``).
    reach: str | None = None


def _applicable(
    doc: PolicyDocument,
    principal: Principal,
    request: AuthorizationRequest,
    context: Mapping[str, Any],
    resource_based: bool,
) -> Iterator[_Hit]:
    """The statements of ``doc`` that apply to this request, in order."""
    listed = statements_of(doc.document, doc.source)
    variables = policy_version(doc.document, doc.source) == VERSION_WITH_VARIABLES
    for index, statement in listed:
        where = f"{doc.source}: statement {index}" + (f" ({statement['Sid']})" if statement.get("Sid") else "")
        check_statement(statement, where, resource_based)
        reach = None
        if resource_based:
            if "Principal" in statement:
                reach = _principal_match(statement["Principal"], principal)
                if reach is None:
                    continue
            elif _not_principal_exempts(statement["NotPrincipal"], principal):
                continue
            else:
                reach = _DIRECT
        try:
            if not _statement_applies(statement, request, context, variables, where):
                continue
        except UnresolvedVariableError:
            # AWS: a variable it cannot resolve makes the statement invalid; it neither allows nor denies.
            continue
        yield _Hit(StatementRef(doc.source, index, statement.get("Sid")), statement["Effect"], reach)


def _statement_applies(
    statement: Mapping[str, Any], request: AuthorizationRequest, context: Mapping[str, Any], variables: bool, where: str
) -> bool:
    """Whether the statement's action, resource and condition all cover the request."""
    if "Action" in statement:
        if not any(action_matches(a, request.action) for a in strings(statement["Action"], where)):
            return False
    elif any(action_matches(a, request.action) for a in strings(statement["NotAction"], where)):
        return False
    listed = "Resource" in statement
    patterns = strings(statement["Resource" if listed else "NotResource"], where)
    if any(resource_matches(p, request.resource, context, variables) for p in patterns) != listed:
        return False
    return condition_holds(statement.get("Condition", {}), context, variables, where)


def evaluate(
    principal: Principal,
    request: AuthorizationRequest,
    identity_policies: Sequence[PolicyDocument],
    resource_policy: PolicyDocument | None = None,
    *,
    resource_account: str | None = None,
    key_policy: bool = False,
) -> Decision:
    """Decide ``request`` by ``principal`` as AWS would, from the documents as given.

    ``identity_policies`` are the principal's policies (none for a service principal);
    ``resource_policy`` is the resource's policy, a KMS key policy when ``key_policy`` is true;
    ``resource_account`` owns the resource (default: the principal's account).

    The decision names the explicit-deny statement, or the statement that allowed: the identity-based
    one when identity-based permission was needed (across accounts, through a key policy's grant to
    the account) or was there (same account), otherwise the resource-based or key policy statement.
    A denial's ``policy_type`` is the kind of policy that denied or that failed to allow.
    """
    context = _request_context(principal, request)
    owner = resource_account or principal.account
    resource_type = "key" if key_policy else "resource-based"

    identity_hits = [
        hit for doc in identity_policies for hit in _applicable(doc, principal, request, context, resource_based=False)
    ]
    resource_hits = (
        list(_applicable(resource_policy, principal, request, context, resource_based=True)) if resource_policy else []
    )

    for hits, policy_type in ((identity_hits, "identity-based"), (resource_hits, resource_type)):
        deny = next((hit for hit in hits if hit.effect == "Deny"), None)
        if deny is not None:
            return Decision("explicit-deny", deny.ref, policy_type)

    allows = _Allows(
        identity=next((hit.ref for hit in identity_hits if hit.effect == "Allow"), None),
        direct=next((hit.ref for hit in resource_hits if hit.effect == "Allow" and hit.reach == _DIRECT), None),
        to_account=next((hit.ref for hit in resource_hits if hit.effect == "Allow" and hit.reach == _ACCOUNT), None),
    )
    if principal.service is not None:
        # A service principal has no identity policies: the resource policy alone decides.
        if allows.direct is not None:
            return Decision("allowed", allows.direct, resource_type)
        return Decision("implicit-deny", None, resource_type)
    cross_account = owner != principal.account
    if key_policy:
        return _key_policy_decision(allows, cross_account)
    return _identity_decision(allows, cross_account)


@dataclass(frozen=True)
class _Allows:
    """The first allowing statement of each kind: identity-based, resource-based naming the
    principal (``direct``), resource-based granting the principal's account (``to_account``)."""

    identity: StatementRef | None
    direct: StatementRef | None
    to_account: StatementRef | None


def _key_policy_decision(allows: _Allows, cross_account: bool) -> Decision:
    """A KMS key: the key policy must allow the principal itself, or the account (which then passes
    the permission on through identity policies); across accounts the identity side must allow too."""
    if allows.direct is not None and not cross_account:
        return Decision("allowed", allows.direct, "key")
    if allows.direct is None and allows.to_account is None:
        return Decision("implicit-deny", None, "key")
    if allows.identity is not None:
        return Decision("allowed", allows.identity, "identity-based")
    return Decision("implicit-deny", None, "identity-based")


def _identity_decision(allows: _Allows, cross_account: bool) -> Decision:
    """A resource with an optional resource-based policy: across accounts both sides must allow; in
    the account an identity policy, or a resource policy naming the principal, allows."""
    if cross_account:
        if allows.identity is None:
            return Decision("implicit-deny", None, "identity-based")
        if allows.direct is None and allows.to_account is None:
            return Decision("implicit-deny", None, "resource-based")
        return Decision("allowed", allows.identity, "identity-based")
    if allows.identity is not None:
        return Decision("allowed", allows.identity, "identity-based")
    if allows.direct is not None:
        return Decision("allowed", allows.direct, "resource-based")
    # A grant to the account alone still needs an identity policy: nothing allowed it.
    return Decision("implicit-deny", None, "identity-based")


def denial_message(
    principal: Principal, request: AuthorizationRequest, decision: Decision, *, with_resource: bool = True
) -> str:
    """AWS's wording of a denial.

    ``User: ARN is not authorized to perform: ACTION on resource: RESOURCE because no identity-based
    policy allows the ACTION action`` (or ``... with an explicit deny in a resource-based policy``).
    A key policy is a resource-based policy in AWS's wording. Some services leave ``on resource: ...``
    out for actions without resource-level permissions (CloudWatch's PutMetricData): pass
    ``with_resource=False`` for those.
    """
    if decision.allowed:
        raise ValueError("denial_message needs a denial, and this decision allowed the request")
    kind = "identity-based" if decision.policy_type == "identity-based" else "resource-based"
    head = f"User: {principal.arn} is not authorized to perform: {request.action}"
    if with_resource:
        head += f" on resource: {request.resource}"
    if decision.kind == "explicit-deny":
        article = "an" if kind == "identity-based" else "a"
        return f"{head} with an explicit deny in {article} {kind} policy"
    return f"{head} because no {kind} policy allows the {request.action} action"
