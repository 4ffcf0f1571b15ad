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
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from stepml.local.iam.model import AuthorizationRequest, Decision, PolicyDocument, Principal, StatementRef


class PolicyError(ValueError):
    """A policy IAM would refuse (malformed, unknown element or operator, unreadable value)."""


class _UnresolvedVariable(Exception):
    """A policy variable the request context cannot fill: its statement does not apply."""


_VERSION_WITH_VARIABLES = "2012-10-17"
_VERSIONS = ("2012-10-17", "2008-10-17")
_DOCUMENT_ELEMENTS = {"Version", "Id", "Statement"}
_STATEMENT_ELEMENTS = {
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
}
_PRINCIPAL_TYPES = {"AWS", "Service", "Federated", "CanonicalUser"}
_ACCOUNT_ID = re.compile(r"\d{12}")
_ACCOUNT_ROOT = re.compile(r"arn:[a-z-]+:iam::(\d{12}):root")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


# --- documents and statements ------------------------------------------------------------


def statements(document: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The statements of a policy document with their positions (``Statement`` may be one or a list)."""
    return _statements(document, "policy")


def _statements(document: Mapping[str, Any], source: str) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(document, Mapping):
        raise PolicyError(f"{source}: a policy document is a JSON object, not {type(document).__name__}")
    unknown = set(document) - _DOCUMENT_ELEMENTS
    if unknown:
        raise PolicyError(f"{source}: unknown policy element(s) {sorted(unknown)}")
    if "Statement" not in document:
        raise PolicyError(f"{source}: the policy has no Statement")
    body = document["Statement"]
    listed = [body] if isinstance(body, Mapping) else body
    if not isinstance(listed, list):
        raise PolicyError(f"{source}: Statement is an object or a list of objects")
    for index, statement in enumerate(listed):
        if not isinstance(statement, Mapping):
            raise PolicyError(f"{source}: statement {index} is not a JSON object")
    return [(index, dict(statement)) for index, statement in enumerate(listed)]


def _version(document: Mapping[str, Any], source: str) -> str:
    version = document.get("Version", "2008-10-17")
    if version not in _VERSIONS:
        raise PolicyError(f"{source}: unsupported policy Version {version!r} (use 2012-10-17)")
    return version


def without_statement(doc: PolicyDocument, index: int) -> PolicyDocument:
    """A copy of ``doc`` without statement ``index`` (later statements move up one position)."""
    listed = _statements(doc.document, doc.source)
    if not 0 <= index < len(listed):
        raise PolicyError(f"{doc.source}: no statement {index} (the policy has {len(listed)})")
    document = copy.deepcopy(dict(doc.document))
    document["Statement"] = [copy.deepcopy(s) for i, s in listed if i != index]
    return PolicyDocument(source=doc.source, document=document)


def without_action(doc: PolicyDocument, index: int, action: str) -> PolicyDocument:
    """A copy of ``doc`` whose statement ``index`` no longer lists ``action`` in its ``Action``.

    Removing the statement's last action removes the statement. Only ``Action`` can lose an entry:
    removing one from ``NotAction`` would widen the statement, which is no mutation test's aim.
    """
    return _without_entry(doc, index, "Action", action)


def without_resource(doc: PolicyDocument, index: int, resource: str) -> PolicyDocument:
    """A copy of ``doc`` whose statement ``index`` no longer lists ``resource`` in its ``Resource``.

    Removing the statement's last resource removes the statement.
    """
    return _without_entry(doc, index, "Resource", resource)


def _without_entry(doc: PolicyDocument, index: int, element: str, entry: str) -> PolicyDocument:
    listed = _statements(doc.document, doc.source)
    if not 0 <= index < len(listed):
        raise PolicyError(f"{doc.source}: no statement {index} (the policy has {len(listed)})")
    statement = copy.deepcopy(listed[index][1])
    if element not in statement:
        raise PolicyError(f"{doc.source}: statement {index} has no {element} element")
    entries = _strings(statement[element], f"{doc.source}: statement {index} {element}")
    remaining = [e for e in entries if e != entry]
    if len(remaining) == len(entries):
        raise PolicyError(f"{doc.source}: statement {index} does not list {entry!r} in {element}")
    if not remaining:
        return without_statement(doc, index)
    statement[element] = remaining[0] if len(remaining) == 1 else remaining
    document = copy.deepcopy(dict(doc.document))
    document["Statement"] = [statement if i == index else copy.deepcopy(s) for i, s in listed]
    return PolicyDocument(source=doc.source, document=document)


def _strings(value: Any, where: str) -> list[str]:
    """A string-or-list element as a list of strings."""
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed or not all(isinstance(v, str) for v in listed):
        raise PolicyError(f"{where}: expected a string or a non-empty list of strings, got {value!r}")
    return list(listed)


# --- validation ----------------------------------------------------------------------------


def _check_statement(statement: Mapping[str, Any], where: str, resource_based: bool) -> None:
    """Refuse what IAM refuses at policy creation, whether or not this request reaches the statement."""
    unknown = set(statement) - _STATEMENT_ELEMENTS
    if unknown:
        raise PolicyError(f"{where}: unknown statement element(s) {sorted(unknown)}")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        raise PolicyError(f"{where}: Sid must be a string")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny, got {effect!r}")
    _exactly_one(statement, "Action", "NotAction", where)
    for action in _strings(statement.get("Action", statement.get("NotAction")), f"{where} Action"):
        if action != "*" and not re.fullmatch(r"[A-Za-z0-9*?-]+:[A-Za-z0-9*?_-]+", action):
            raise PolicyError(f"{where}: action {action!r} must be prefixed by its service (service:Action)")
    _exactly_one(statement, "Resource", "NotResource", where)
    for resource in _strings(statement.get("Resource", statement.get("NotResource")), f"{where} Resource"):
        if resource != "*" and (not resource.startswith("arn:") or len(resource.split(":", 5)) < 6):
            raise PolicyError(f'{where}: resource {resource!r} must be "*" or an ARN (arn:partition:service:...)')
    has_principal = "Principal" in statement or "NotPrincipal" in statement
    if not resource_based and has_principal:
        raise PolicyError(f"{where}: an identity-based policy cannot name a Principal or NotPrincipal")
    if resource_based:
        _exactly_one(statement, "Principal", "NotPrincipal", where)
        if "NotPrincipal" in statement and effect == "Allow":
            raise PolicyError(f"{where}: NotPrincipal is supported only with Effect Deny")
        _check_principal(statement.get("Principal", statement.get("NotPrincipal")), where)
    _check_condition(statement.get("Condition", {}), where)


def _exactly_one(statement: Mapping[str, Any], name: str, negation: str, where: str) -> None:
    present = [element for element in (name, negation) if element in statement]
    if len(present) != 1:
        raise PolicyError(f"{where}: a statement needs exactly one of {name} or {negation}, has {present or 'none'}")


def _check_principal(element: Any, where: str) -> None:
    if element == "*":
        return
    if not isinstance(element, Mapping) or not element:
        raise PolicyError(f'{where}: Principal must be "*" or an object such as {{"AWS": ...}}, got {element!r}')
    unknown = set(element) - _PRINCIPAL_TYPES
    if unknown:
        raise PolicyError(f"{where}: unknown principal type(s) {sorted(unknown)}")
    for kind, values in element.items():
        for value in _strings(values, f"{where} Principal {kind}"):
            # IAM has no partial wildcards in principals: "*" alone, or a whole name or ARN.
            if value != "*" and ("*" in value or "?" in value):
                raise PolicyError(f"{where}: invalid principal {value!r}: a wildcard cannot match part of a principal")
            if kind == "AWS" and value != "*" and not (_ACCOUNT_ID.fullmatch(value) or value.startswith("arn:")):
                raise PolicyError(f"{where}: invalid principal {value!r}: an AWS principal is an account id or an ARN")


def _check_condition(condition: Any, where: str) -> None:
    if not isinstance(condition, Mapping):
        raise PolicyError(f"{where}: Condition must be an object of operators")
    for operator_name, block in condition.items():
        operator = _operator(operator_name, where)
        if not isinstance(block, Mapping) or not block:
            raise PolicyError(f"{where}: condition {operator_name} must map condition keys to values")
        for key, values in block.items():
            listed = _condition_values(values, f"{where} {operator_name} {key}")
            if operator.base.name == "Null":
                for value in listed:
                    _bool_value(value, f"{where} Null {key}")
            else:
                # Values are read now (those holding a policy variable once it is filled in): IAM
                # refuses an unreadable value at creation, and one that silently never matched
                # would make a negated operator true.
                for value in listed:
                    if not (operator.base.variables and isinstance(value, str) and "${" in value):
                        operator.base.compile(value, f"{where} {operator_name} {key}")


def _condition_values(values: Any, where: str) -> list[Any]:
    listed = values if isinstance(values, list) else [values]
    if not listed or not all(isinstance(v, str | bool | int | float) for v in listed):
        raise PolicyError(f"{where}: condition values are strings, numbers or booleans, got {values!r}")
    return listed


# --- matching actions and resources --------------------------------------------------------


def _action_matches(pattern: str, action: str) -> bool:
    # Action names are case-insensitive; * and ? run over the whole name, service prefix included.
    return _glob(pattern, ignore_case=True).fullmatch(action) is not None


def _glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _resource_matches(pattern: str, resource: str, context: Mapping[str, Any], variables: bool) -> bool:
    """IAM's ARN matching: ``*`` within a segment, across colons when it ends its segment."""
    tokens = _tokens(pattern, context, variables)
    parts: list[str] = []
    for position, (char, wild) in enumerate(tokens):
        if not wild:
            parts.append(re.escape(char))
        elif char == "?":
            parts.append("[^:]")
        else:
            ends_segment = position + 1 == len(tokens) or tokens[position + 1] == (":", False)
            parts.append(".*" if ends_segment else "[^:]*")
    return re.fullmatch("".join(parts), resource, re.DOTALL) is not None


def _tokens(text: str, context: Mapping[str, Any], variables: bool) -> list[tuple[str, bool]]:
    """``text`` as characters, each marked wildcard or literal, with policy variables filled in.

    A variable's value is literal, and so are ``${*}``, ``${?}`` and ``${$}``.
    """
    tokens: list[tuple[str, bool]] = []

    def add(chunk: str) -> None:
        tokens.extend((c, c in "*?") for c in chunk)

    if not variables:
        add(text)
        return tokens
    position = 0
    for match in _VARIABLE.finditer(text):
        add(text[position : match.start()])
        tokens.extend((c, False) for c in _variable_value(match.group(1), context))
        position = match.end()
    add(text[position:])
    return tokens


def _variable_value(body: str, context: Mapping[str, Any]) -> str:
    name, _, default = body.partition(",")
    name = name.strip()
    if name in ("*", "?", "$"):
        return name
    value = context.get(name.lower())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        return default[1:-1]
    raise _UnresolvedVariable(name)


def _expand(text: str, context: Mapping[str, Any], variables: bool) -> str:
    """A condition value with its policy variables filled in (wildcards left as written)."""
    if not variables:
        return text
    return _VARIABLE.sub(lambda m: _variable_value(m.group(1), context), text)


# --- principals ----------------------------------------------------------------------------

_DIRECT, _ACCOUNT = "direct", "account"


def _principal_match(element: Any, principal: Principal) -> str | None:
    """How a Principal element names this principal: itself (``direct``), its ``account``, or not."""
    if element == "*":
        return _DIRECT
    found: str | None = None
    for kind, values in element.items():
        for value in _strings(values, "Principal"):
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
    if _ACCOUNT_ID.fullmatch(value):
        return value
    root = _ACCOUNT_ROOT.fullmatch(value)
    return root.group(1) if root else None


def _not_principal_exempts(element: Any, principal: Principal) -> bool:
    """Whether a NotPrincipal lists this principal, so the Deny passes it over.

    AWS may check the account, then the role, then the session: a session is exempt only if the
    statement lists its account as well as the session's or the role's ARN.
    """
    if element == "*":
        return True
    listed: dict[str, list[str]] = {kind: _strings(values, "NotPrincipal") for kind, values in element.items()}
    if principal.service is not None:
        return principal.service.lower() in {v.lower() for v in listed.get("Service", [])}
    aws = listed.get("AWS", [])
    if "*" in aws:
        return True
    account_listed = any(_account_of(value) == principal.account for value in aws)
    identity_listed = principal.arn in aws or (principal.role_arn is not None and principal.role_arn in aws)
    return account_listed and identity_listed


# --- condition operators -------------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    """A condition operator family member: how to read a policy value and test a request value."""

    name: str
    #: Reads one policy value (already variable-expanded) into a test of one request value.
    compile: Callable[[Any, str], Callable[[Any], bool]]
    negated: bool = False
    variables: bool = False


@dataclass(frozen=True)
class _Operator:
    base: _Base
    qualifier: str | None  # "ForAllValues", "ForAnyValue" or None
    if_exists: bool


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _string_equals(ignore_case: bool) -> Callable[[Any, str], Callable[[Any], bool]]:
    def compile_(policy_value: Any, where: str) -> Callable[[Any], bool]:
        expected = _as_text(policy_value) or ""
        if ignore_case:
            expected = expected.casefold()
            return lambda v: (text := _as_text(v)) is not None and text.casefold() == expected
        return lambda v: _as_text(v) == expected

    return compile_


def _string_like(policy_value: Any, where: str) -> Callable[[Any], bool]:
    pattern = _glob(_as_text(policy_value) or "")
    return lambda v: (text := _as_text(v)) is not None and pattern.fullmatch(text) is not None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _numeric(compare: Callable[[Decimal, Decimal], bool]) -> Callable[[Any, str], Callable[[Any], bool]]:
    def compile_(policy_value: Any, where: str) -> Callable[[Any], bool]:
        expected = _number(policy_value)
        if expected is None:
            raise PolicyError(f"{where}: {policy_value!r} is not a number")
        return lambda v: (actual := _number(v)) is not None and compare(actual, expected)

    return compile_


_W3C_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def _instant(value: Any) -> float | None:
    """A date condition value as epoch seconds: epoch (UNIX) time or a W3C ISO 8601 date/time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text) and not re.fullmatch(r"\d{4}", text):
        return float(text)
    if _W3C_DATE.fullmatch(text):
        # YYYY, YYYY-MM and YYYY-MM-DD mean the first instant of that year, month or day (UTC).
        padded = text + "-01-01"[len(text) - 4 :] if len(text) < 10 else text
        text = padded + "T00:00:00+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _date(compare: Callable[[float, float], bool]) -> Callable[[Any, str], Callable[[Any], bool]]:
    def compile_(policy_value: Any, where: str) -> Callable[[Any], bool]:
        expected = _instant(policy_value)
        if expected is None:
            raise PolicyError(f"{where}: {policy_value!r} is not an ISO 8601 date or epoch time")
        return lambda v: (actual := _instant(v)) is not None and compare(actual, expected)

    return compile_


def _bool_value(value: Any, where: str) -> bool:
    text = _as_text(value)
    if text is None or text.lower() not in ("true", "false"):
        raise PolicyError(f"{where}: {value!r} is not true or false")
    return text.lower() == "true"


def _bool(policy_value: Any, where: str) -> Callable[[Any], bool]:
    expected = _bool_value(policy_value, where)

    def test(value: Any) -> bool:
        text = _as_text(value)
        return text is not None and text.lower() in ("true", "false") and (text.lower() == "true") == expected

    return test


def _binary(policy_value: Any, where: str) -> Callable[[Any], bool]:
    try:
        expected = base64.b64decode(str(policy_value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PolicyError(f"{where}: {policy_value!r} is not base64") from exc

    def test(value: Any) -> bool:
        if isinstance(value, bytes | bytearray):
            return bytes(value) == expected
        try:
            return base64.b64decode(str(value), validate=True) == expected
        except (binascii.Error, ValueError):
            return False

    return test


def _ip(policy_value: Any, where: str) -> Callable[[Any], bool]:
    try:
        # An address without a prefix means the one address (/32, /128).
        network = ipaddress.ip_network(str(policy_value).strip(), strict=False)
    except ValueError as exc:
        raise PolicyError(f"{where}: {policy_value!r} is not an IP address or CIDR range") from exc

    def test(value: Any) -> bool:
        try:
            return ipaddress.ip_address(str(value).strip()) in network
        except ValueError:
            return False

    return test


def _arn_like(policy_value: Any, where: str) -> Callable[[Any], bool]:
    # Each of the six colon-delimited components is matched on its own; the last (the resource)
    # may itself contain colons.
    segments = [_glob(part) for part in (_as_text(policy_value) or "").split(":", 5)]

    def test(value: Any) -> bool:
        text = _as_text(value)
        if text is None:
            return False
        parts = text.split(":", 5)
        return len(parts) == 6 == len(segments) and all(s.fullmatch(p) for s, p in zip(segments, parts, strict=True))

    return test


def _family() -> dict[str, _Base]:
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, b: a == b,
        "LessThan": lambda a, b: a < b,
        "LessThanEquals": lambda a, b: a <= b,
        "GreaterThan": lambda a, b: a > b,
        "GreaterThanEquals": lambda a, b: a >= b,
    }
    bases = [
        _Base("StringEquals", _string_equals(False), variables=True),
        _Base("StringNotEquals", _string_equals(False), negated=True, variables=True),
        _Base("StringEqualsIgnoreCase", _string_equals(True), variables=True),
        _Base("StringNotEqualsIgnoreCase", _string_equals(True), negated=True, variables=True),
        _Base("StringLike", _string_like, variables=True),
        _Base("StringNotLike", _string_like, negated=True, variables=True),
        _Base("NumericNotEquals", _numeric(comparisons["Equals"]), negated=True),
        _Base("DateNotEquals", _date(comparisons["Equals"]), negated=True),
        _Base("Bool", _bool, variables=True),
        _Base("BinaryEquals", _binary),
        _Base("IpAddress", _ip),
        _Base("NotIpAddress", _ip, negated=True),
        _Base("ArnEquals", _arn_like, variables=True),
        _Base("ArnLike", _arn_like, variables=True),
        _Base("ArnNotEquals", _arn_like, negated=True, variables=True),
        _Base("ArnNotLike", _arn_like, negated=True, variables=True),
        _Base("Null", _bool),
    ]
    for suffix, compare in comparisons.items():
        bases.append(_Base(f"Numeric{suffix}", _numeric(compare)))
        bases.append(_Base(f"Date{suffix}", _date(compare)))
    return {base.name: base for base in bases}


_OPERATORS = _family()


def _operator(name: Any, where: str) -> _Operator:
    """Parse ``[ForAllValues:|ForAnyValue:]Base[IfExists]``; an unknown operator is a PolicyError."""
    if not isinstance(name, str):
        raise PolicyError(f"{where}: condition operator {name!r} is not a string")
    qualifier, _, rest = name.rpartition(":")
    if qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise PolicyError(f"{where}: unknown condition set operator {qualifier!r} in {name!r}")
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    base_name = rest[: -len("IfExists")] if if_exists else rest
    base = _OPERATORS.get(base_name)
    if base is None or (base_name == "Null" and (if_exists or qualifier)):
        raise PolicyError(f"{where}: unknown condition operator {name!r}")
    return _Operator(base, qualifier or None, if_exists)


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any], variables: bool, where: str) -> bool:
    """Operators AND-ed, keys AND-ed, the values of one key OR-ed (NOR-ed when negated)."""
    for operator_name, block in condition.items():
        operator = _operator(operator_name, where)
        for key, policy_values in block.items():
            if not _key_holds(operator, str(key), _condition_values(policy_values, where), context, variables, where):
                return False
    return True


def _key_holds(
    operator: _Operator, key: str, policy_values: list[Any], context: Mapping[str, Any], variables: bool, where: str
) -> bool:
    present = context.get(key.lower())
    request_values = list(present) if isinstance(present, list | tuple | set | frozenset) else [present]
    request_values = [v for v in request_values if v is not None]
    base = operator.base
    if base.name == "Null":
        missing = not request_values
        return any(_bool_value(v, where) == missing for v in policy_values)
    # Variables first: one the context cannot fill voids the statement, whatever the key holds.
    tests = []
    for value in policy_values:
        text = _expand(value, context, variables) if base.variables and isinstance(value, str) else value
        tests.append(base.compile(text, f"{where} {operator.base.name} {key}"))
    if not request_values:
        if operator.if_exists:
            return True
        if operator.qualifier == "ForAllValues":
            return True
        if operator.qualifier == "ForAnyValue":
            return False
        return base.negated

    def matches(request_value: Any) -> bool:
        return any(test(request_value) for test in tests)

    if operator.qualifier == "ForAllValues":
        return all(matches(v) != base.negated for v in request_values)
    if operator.qualifier == "ForAnyValue":
        return any(matches(v) != base.negated for v in request_values)
    hit = any(matches(v) for v in request_values)
    return not hit if base.negated else hit


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
    listed = _statements(doc.document, doc.source)
    variables = _version(doc.document, doc.source) == _VERSION_WITH_VARIABLES
    for index, statement in listed:
        where = f"{doc.source}: statement {index}" + (f" ({statement['Sid']})" if statement.get("Sid") else "")
        _check_statement(statement, where, resource_based)
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
        except _UnresolvedVariable:
            # AWS: a variable it cannot resolve makes the statement invalid; it neither allows nor denies.
            continue
        yield _Hit(StatementRef(doc.source, index, statement.get("Sid")), statement["Effect"], reach)


def _statement_applies(
    statement: Mapping[str, Any], request: AuthorizationRequest, context: Mapping[str, Any], variables: bool, where: str
) -> bool:
    """Whether the statement's action, resource and condition all cover the request."""
    if "Action" in statement:
        if not any(_action_matches(a, request.action) for a in _strings(statement["Action"], where)):
            return False
    elif any(_action_matches(a, request.action) for a in _strings(statement["NotAction"], where)):
        return False
    listed = "Resource" in statement
    patterns = _strings(statement["Resource" if listed else "NotResource"], where)
    if any(_resource_matches(p, request.resource, context, variables) for p in patterns) != listed:
        return False
    return _condition_holds(statement.get("Condition", {}), context, variables, where)


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

    identity_allow = next((hit.ref for hit in identity_hits if hit.effect == "Allow"), None)
    direct = next((hit.ref for hit in resource_hits if hit.effect == "Allow" and hit.reach == _DIRECT), None)
    to_account = next((hit.ref for hit in resource_hits if hit.effect == "Allow" and hit.reach == _ACCOUNT), None)

    if principal.service is not None:
        # A service principal has no identity policies: the resource policy alone decides.
        if direct is not None:
            return Decision("allowed", direct, resource_type)
        return Decision("implicit-deny", None, resource_type)

    cross_account = owner != principal.account
    if key_policy:
        # The key policy must allow the principal itself, or the account (which then passes the
        # permission on through identity policies); across accounts the identity side must allow too.
        if direct is not None and not cross_account:
            return Decision("allowed", direct, "key")
        if direct is None and to_account is None:
            return Decision("implicit-deny", None, "key")
        if identity_allow is not None:
            return Decision("allowed", identity_allow, "identity-based")
        return Decision("implicit-deny", None, "identity-based")

    if cross_account:
        if identity_allow is None:
            return Decision("implicit-deny", None, "identity-based")
        if direct is None and to_account is None:
            return Decision("implicit-deny", None, "resource-based")
        return Decision("allowed", identity_allow, "identity-based")

    if identity_allow is not None:
        return Decision("allowed", identity_allow, "identity-based")
    if direct is not None:
        return Decision("allowed", direct, "resource-based")
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
