"""The condition operators (``String*``, ``Numeric*``, ``Date*``, ``Bool``, ``BinaryEquals``,
``IpAddress``, ``Arn*``, ``Null``), their ``IfExists`` and ``ForAllValues``/``ForAnyValue`` forms,
their validation, and whether the ``Condition`` of a statement holds for a request context."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from stepml.local.iam.matching import PolicyError, as_text, expand_variables, glob_pattern


def check_condition(condition: Any, where: str) -> None:
    """Refuse (``PolicyError``) a ``Condition`` element IAM would refuse: unknown operators, unreadable values."""
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


def _string_equals(ignore_case: bool) -> Callable[[Any, str], Callable[[Any], bool]]:
    def compile_(policy_value: Any, where: str) -> Callable[[Any], bool]:
        expected = as_text(policy_value) or ""
        if ignore_case:
            expected = expected.casefold()
            return lambda v: (text := as_text(v)) is not None and text.casefold() == expected
        return lambda v: as_text(v) == expected

    return compile_


def _string_like(policy_value: Any, where: str) -> Callable[[Any], bool]:
    pattern = glob_pattern(as_text(policy_value) or "")
    return lambda v: (text := as_text(v)) is not None and pattern.fullmatch(text) is not None


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
    text = as_text(value)
    if text is None or text.lower() not in ("true", "false"):
        raise PolicyError(f"{where}: {value!r} is not true or false")
    return text.lower() == "true"


def _bool(policy_value: Any, where: str) -> Callable[[Any], bool]:
    expected = _bool_value(policy_value, where)

    def test(value: Any) -> bool:
        text = as_text(value)
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
    segments = [glob_pattern(part) for part in (as_text(policy_value) or "").split(":", 5)]

    def test(value: Any) -> bool:
        text = as_text(value)
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


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any], variables: bool, where: str) -> bool:
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
        text = expand_variables(value, context, variables) if base.variables and isinstance(value, str) else value
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
