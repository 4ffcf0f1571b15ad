"""Matching the actions and resources of a statement to a request: ``*`` and ``?`` wildcards, policy
variables (``${aws:username}``), and the two errors every part of the evaluator raises."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class PolicyError(ValueError):
    """A policy IAM would refuse (malformed, unknown element or operator, unreadable value)."""


class UnresolvedVariableError(Exception):
    """A policy variable the request context cannot fill: its statement does not apply."""


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


# --- matching actions and resources --------------------------------------------------------


def action_matches(pattern: str, action: str) -> bool:
    """Whether an ``Action`` pattern covers ``action`` (case-insensitive, ``*`` and ``?``)."""
    # Action names are case-insensitive; * and ? run over the whole name, service prefix included.
    return glob_pattern(pattern, ignore_case=True).fullmatch(action) is not None


def glob_pattern(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """A policy wildcard pattern (``*``, ``?``) as a compiled regular expression."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def resource_matches(pattern: str, resource: str, context: Mapping[str, Any], variables: bool) -> bool:
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


def as_text(value: Any) -> str | None:
    """A context value as IAM reads it as text (``true``/``false``, numbers as written); None for
    a value that has no text form (a list, a missing key)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _variable_value(body: str, context: Mapping[str, Any]) -> str:
    name, _, default = body.partition(",")
    name = name.strip()
    if name in ("*", "?", "$"):
        return name
    value = as_text(context.get(name.lower()))
    if value is not None:
        return value
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        return default[1:-1]
    raise UnresolvedVariableError(name)


def expand_variables(text: str, context: Mapping[str, Any], variables: bool) -> str:
    """A condition value with its policy variables filled in (wildcards left as written)."""
    if not variables:
        return text
    return _VARIABLE.sub(lambda m: _variable_value(m.group(1), context), text)
