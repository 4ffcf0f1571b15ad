"""The policy grammar: documents and their statements (one or a list, by position), copies
without one statement, action or resource (the mutation test), and the validation IAM applies
when a policy is created (``PolicyError``)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from stepml.local.iam.conditions import check_condition
from stepml.local.iam.matching import PolicyError
from stepml.local.iam.model import PolicyDocument

VERSION_WITH_VARIABLES = "2012-10-17"
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
ACCOUNT_ID = re.compile(r"\d{12}")
ACCOUNT_ROOT = re.compile(r"arn:[a-z-]+:iam::(\d{12}):root")


# --- documents and statements ------------------------------------------------------------


def statements(document: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The statements of a policy document with their positions (``Statement`` may be one or a list)."""
    return statements_of(document, "policy")


def statements_of(document: Mapping[str, Any], source: str) -> list[tuple[int, dict[str, Any]]]:
    """The statements of ``document`` with their positions; ``PolicyError`` naming ``source`` when malformed."""
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


def policy_version(document: Mapping[str, Any], source: str) -> str:
    """The document's ``Version`` (``2008-10-17`` when absent); ``PolicyError`` for another."""
    version = document.get("Version", "2008-10-17")
    if version not in _VERSIONS:
        raise PolicyError(f"{source}: unsupported policy Version {version!r} (use 2012-10-17)")
    return version


def without_statement(doc: PolicyDocument, index: int) -> PolicyDocument:
    """A copy of ``doc`` without statement ``index`` (later statements move up one position)."""
    listed = statements_of(doc.document, doc.source)
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
    listed = statements_of(doc.document, doc.source)
    if not 0 <= index < len(listed):
        raise PolicyError(f"{doc.source}: no statement {index} (the policy has {len(listed)})")
    statement = copy.deepcopy(listed[index][1])
    if element not in statement:
        raise PolicyError(f"{doc.source}: statement {index} has no {element} element")
    entries = strings(statement[element], f"{doc.source}: statement {index} {element}")
    remaining = [e for e in entries if e != entry]
    if len(remaining) == len(entries):
        raise PolicyError(f"{doc.source}: statement {index} does not list {entry!r} in {element}")
    if not remaining:
        return without_statement(doc, index)
    statement[element] = remaining[0] if len(remaining) == 1 else remaining
    document = copy.deepcopy(dict(doc.document))
    document["Statement"] = [statement if i == index else copy.deepcopy(s) for i, s in listed]
    return PolicyDocument(source=doc.source, document=document)


def strings(value: Any, where: str) -> list[str]:
    """A string-or-list element as a list of strings."""
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed or not all(isinstance(v, str) for v in listed):
        raise PolicyError(f"{where}: expected a string or a non-empty list of strings, got {value!r}")
    return list(listed)


# --- validation ----------------------------------------------------------------------------


def check_statement(statement: Mapping[str, Any], where: str, resource_based: bool) -> None:
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
    for action in strings(statement.get("Action", statement.get("NotAction")), f"{where} Action"):
        if action != "*" and not re.fullmatch(r"[A-Za-z0-9*?-]+:[A-Za-z0-9*?_-]+", action):
            raise PolicyError(f"{where}: action {action!r} must be prefixed by its service (service:Action)")
    _exactly_one(statement, "Resource", "NotResource", where)
    for resource in strings(statement.get("Resource", statement.get("NotResource")), f"{where} Resource"):
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
    check_condition(statement.get("Condition", {}), where)


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
        for value in strings(values, f"{where} Principal {kind}"):
            # IAM has no partial wildcards in principals: "*" alone, or a whole name or ARN.
            if value != "*" and ("*" in value or "?" in value):
                raise PolicyError(f"{where}: invalid principal {value!r}: a wildcard cannot match part of a principal")
            if kind == "AWS" and value != "*" and not (ACCOUNT_ID.fullmatch(value) or value.startswith("arn:")):
                raise PolicyError(f"{where}: invalid principal {value!r}: an AWS principal is an account id or an ARN")
