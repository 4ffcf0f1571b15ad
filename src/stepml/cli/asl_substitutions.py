"""The Workflow Studio round trip's substitutions: fill a definition's ``${Placeholder}``s as a stack
fills them, and put them back into a definition exported from the console.

Tooling for ``stepml asl``; it imports neither the local cloud nor moto, so ``export`` and ``import``
against a deployed stack stay light. The stack's values are learnt by aligning the repository's
definition (placeholders) with the stack's own (DescribeStateMachine: already filled), so the
values are exactly those the stack was deployed with.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_ARN_ACCOUNT = re.compile(r"arn:[\w-]+:[\w-]*:[\w-]*:(\d{12}):")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Resource names shorter than this are too likely to be ordinary words in a Comment.
_MIN_NAME_LENGTH = 8


class AslSubstitutionError(RuntimeError):
    """A definition cannot be filled or restored (a placeholder without a value, invalid JSON)."""


class UnmappableValueError(AslSubstitutionError):
    """A concrete value of the stack's account that no substitution maps back to a placeholder."""

    def __init__(self, value: str, path: str, reason: str):
        super().__init__(f"{path}: {value!r} {reason}; no substitution of the stack has this value")
        self.value = value
        self.path = path


def format_definition(definition: Any) -> str:
    """The repository's format of an ASL file: 2-space indent, keys as given, trailing newline."""
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"


def parse_definition(text: str, source: str) -> Any:
    """The definition in ``text`` (keys in their order); a one-line error naming ``source`` if not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AslSubstitutionError(f"{source} is not valid JSON: {exc}") from exc


def json_path(parent: str, key: str | int) -> str:
    """``parent`` extended by a key or index, as a JSONPath (brackets for names that need them)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENTIFIER.fullmatch(key) else f"{parent}[{json.dumps(key)}]"


def placeholders(definition: Any) -> set[str]:
    """Every placeholder name used in the definition's string values."""
    found: set[str] = set()
    for _path, text in _strings(definition, "$"):
        found.update(PLACEHOLDER.findall(text))
    return found


def _strings(node: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, json_path(path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, json_path(path, index))
    elif isinstance(node, str):
        yield path, node


def _map_strings(node: Any, path: str, change: Any) -> Any:
    """A copy of ``node`` with each string value replaced by ``change(path, text)``; keys kept in order."""
    if isinstance(node, dict):
        return {key: _map_strings(value, json_path(path, key), change) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_strings(value, json_path(path, index), change) for index, value in enumerate(node)]
    if isinstance(node, str):
        return change(path, node)
    return node


def _template_pattern(text: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """A regex matching ``text`` filled in, with a group per placeholder (a repeat must repeat it)."""
    parts = PLACEHOLDER.split(text)
    groups: dict[str, str] = {}
    pattern = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            pattern.append(re.escape(part))
        elif part in groups:
            pattern.append(f"(?P={groups[part]})")
        else:
            groups[part] = f"g{len(groups)}"
            pattern.append(f"(?P<{groups[part]}>.+?)")
    return re.compile("".join(pattern), re.DOTALL), groups


def substitutions_from_definitions(template: Any, filled: Any) -> dict[str, str]:
    """The value of each placeholder of ``template`` that ``filled`` (the same definition as a
    stack filled it) shows at the same place; placeholders where the two differ are left out."""
    found: dict[str, str] = {}

    def walk(ours: Any, theirs: Any) -> None:
        if isinstance(ours, dict) and isinstance(theirs, dict):
            for key, value in ours.items():
                if key in theirs:
                    walk(value, theirs[key])
        elif isinstance(ours, list) and isinstance(theirs, list):
            for mine, other in zip(ours, theirs, strict=False):
                walk(mine, other)
        elif isinstance(ours, str) and isinstance(theirs, str) and PLACEHOLDER.search(ours):
            pattern, groups = _template_pattern(ours)
            match = pattern.fullmatch(theirs)
            if match:
                for name, group in groups.items():
                    found.setdefault(name, match.group(group))

    walk(template, filled)
    _align_moved(template, filled, found)
    return found


def _align_moved(template: Any, filled: Any, found: dict[str, str]) -> None:
    """Values of placeholders whose place differs between the two (a state renamed or moved since
    the deploy): a string of ``template`` with literal text around its placeholders that matches
    strings of ``filled`` elsewhere with one value only."""
    theirs = {text for _path, text in _strings(filled, "$")}
    for _path, text in _strings(template, "$"):
        names = set(PLACEHOLDER.findall(text))
        if not names or names <= set(found) or len(PLACEHOLDER.sub("", text)) < 3:
            continue
        pattern, groups = _template_pattern(text)
        matches = {tuple(m.group(g) for g in groups.values()) for t in theirs if (m := pattern.fullmatch(t))}
        if len(matches) == 1:
            for name, value in zip(groups, matches.pop(), strict=True):
                found.setdefault(name, value)


def fill(definition: Any, substitutions: Mapping[str, str]) -> Any:
    """The definition with every placeholder replaced by its value, as CloudFormation does.

    Raises AslSubstitutionError naming every placeholder the substitutions do not define.
    """
    missing = sorted(placeholders(definition) - set(substitutions))
    if missing:
        raise AslSubstitutionError(
            "no value for " + ", ".join("${" + name + "}" for name in missing) + " in the stack "
            "(a placeholder added since the last deploy? deploy, or export from the stack that has it)"
        )
    return _map_strings(definition, "$", lambda _path, text: PLACEHOLDER.sub(lambda m: substitutions[m[1]], text))


def stack_account(substitutions: Mapping[str, str]) -> str | None:
    """The account id of the stack: the one its substitutions' ARNs name most."""
    accounts = Counter(account for value in substitutions.values() for account in _ARN_ACCOUNT.findall(value))
    return accounts.most_common(1)[0][0] if accounts else None


def stack_names(substitutions: Mapping[str, str], other_values: Iterable[str] = ()) -> set[str]:
    """Names that belong to the stack and must not stay concrete in the repository's file: the
    resource names at the end of the substitutions' ARNs and the stack's other values (outputs,
    physical resource ids) that are no substitution's value."""
    values = set(substitutions.values())
    names = {re.split(r"[:/]", value)[-1] for value in values if value.startswith("arn:")}
    names |= {value for value in other_values if value and value not in values}
    return {name for name in names if len(name) >= _MIN_NAME_LENGTH}


def restore(
    exported: Any,
    substitutions: Mapping[str, str],
    current: Any = None,
    *,
    account_id: str | None = None,
    names: Iterable[str] = (),
) -> Any:
    """The exported definition with each concrete value of a substitution back as ``${Name}``.

    Values are replaced longest first, also inside longer strings (a qualified function ARN, a
    ``States.Format`` template). Two substitutions with the same value take the one ``current``
    (the repository's file) has at that path. A remaining ARN or id of ``account_id`` or one of
    ``names`` raises UnmappableValueError naming the value and its path.
    """
    by_value: dict[str, list[str]] = {}
    for name, value in sorted(substitutions.items()):
        if value:
            by_value.setdefault(value, []).append(name)
    alternation = "|".join(re.escape(value) for value in sorted(by_value, key=len, reverse=True))
    pattern = re.compile(alternation) if alternation else None
    current_strings = dict(_strings(current, "$")) if current is not None else {}
    forbidden = sorted(set(names), key=len, reverse=True)

    def placeholder_for(value: str, path: str) -> str:
        current_text = current_strings.get(path)
        # A short value (a number such as the baking period's 600) also occurs as ordinary text:
        # it goes back only where the repository's file has its placeholder at that path.
        short = len(value) < _MIN_NAME_LENGTH and current is not None
        if short and not set(PLACEHOLDER.findall(current_text or "")) & set(by_value[value]):
            return value
        return "${" + _choose(by_value[value], current_text) + "}"

    def change(path: str, text: str) -> str:
        restored = text
        if pattern is not None:
            restored = pattern.sub(lambda m: placeholder_for(m[0], path), text)
        _refuse_leftovers(restored, path, account_id, forbidden)
        return restored

    return _map_strings(exported, "$", change)


def _choose(candidates: list[str], current_text: str | None) -> str:
    if len(candidates) > 1 and current_text:
        used = set(PLACEHOLDER.findall(current_text))
        for name in candidates:
            if name in used:
                return name
    return candidates[0]


def _refuse_leftovers(text: str, path: str, account_id: str | None, names: list[str]) -> None:
    concrete = PLACEHOLDER.sub("", text)
    if account_id and account_id in concrete:
        arn = re.search(r"arn:[^\s\"']*" + account_id + r"[^\s\"']*", concrete)
        shown = arn.group(0) if arn else account_id
        raise UnmappableValueError(shown, path, f"names the stack's account {account_id}")
    for name in names:
        if name in concrete:
            raise UnmappableValueError(name, path, "is a resource of the stack")


def unified_diff(before: str, after: str, path: str) -> str:
    """The unified diff of a file's text ``before`` and ``after`` (empty when equal)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)
