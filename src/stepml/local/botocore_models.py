"""botocore's API models, loaded once, and the one check of a request against them.

Every engine of the local cloud that must refuse what an AWS API refuses (SageMaker's
engine, Step Functions' SageMaker integration, the IAM request table, the interpreter's
error names) asks this module, so a model is parsed once per process and a request is
checked the same way everywhere: botocore's ``ParamValidator`` (types, required members,
unknown members, minimums), then what it leaves out (enums, maximum lengths and values,
patterns) with the message AWS's own validation layer writes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import botocore.loaders
import botocore.session
from botocore.model import OperationModel, ServiceModel


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def loader() -> botocore.loaders.Loader:
    """botocore's data loader (its search paths), for reading a model file's own bytes."""
    return botocore.loaders.create_loader()


@functools.cache
def available_services() -> frozenset[str]:
    """Every service botocore has a model for (``service-2``)."""
    return frozenset(_session().get_available_services())


@functools.cache
def service_model(name: str) -> ServiceModel | None:
    """botocore's model of ``name`` (the one boto3 clients and moto use), or None if botocore has none."""
    if name not in available_services():
        return None
    return _session().get_service_model(name)


def require_service_model(name: str) -> ServiceModel:
    """botocore's model of ``name``; ``KeyError`` when botocore has none."""
    model = service_model(name)
    if model is None:
        raise KeyError(f"botocore has no model of the {name!r} service")
    return model


def operation_model(service: str, operation: str) -> OperationModel:
    """The botocore operation ``operation`` (PascalCase, e.g. ``CreateTrainingJob``) of ``service``."""
    return require_service_model(service).operation_model(operation)


def request_problems(service: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """Every way ``params`` does not fit ``operation``'s input shape, as AWS words them (empty: fits)."""
    from botocore.validate import ParamValidator

    input_shape = operation_model(service, operation).input_shape
    report = ParamValidator().validate(dict(params), input_shape)
    if report.has_errors():
        return [line for line in report.generate_report().splitlines() if line.strip()]
    problems: list[str] = []
    _check_constraints(input_shape, params, "", problems)
    return problems


def validation_message(operation: str, problems: list[str]) -> str:
    """AWS's ``ValidationException`` text for ``problems`` found in an ``operation`` request."""
    count = len(problems)
    return f"{count} validation error{'s' if count > 1 else ''} detected in {operation}: " + "; ".join(problems)


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _too_long(path: str, maximum: int, value: str | None = None) -> str:
    shown = "" if value is None else f"'{value[:80]}' "
    return (
        f"Value {shown}at '{path}' failed to satisfy constraint: Member must have length less than or "
        f"equal to {maximum}"
    )


def _check_constraints(shape: Any, value: Any, path: str, problems: list[str]) -> None:
    """Enums, maximum lengths and values, and patterns: what botocore's ParamValidator leaves out."""
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for member, member_shape in shape.members.items():
            if member in value:
                child = f"{path}.{_lower_camel(member)}" if path else _lower_camel(member)
                _check_constraints(member_shape, value[member], child, problems)
    elif kind in ("list", "map") and isinstance(value, list | Mapping):
        maximum = shape.metadata.get("max")
        if maximum is not None and len(value) > maximum:
            problems.append(_too_long(path, maximum))
        if kind == "list":
            for index, item in enumerate(value, start=1):
                _check_constraints(shape.member, item, f"{path}.{index}.member", problems)
        else:
            for key, item in value.items():
                _check_constraints(shape.key, key, f"{path}.key", problems)
                _check_constraints(shape.value, item, f"{path}.{key}", problems)
    elif kind == "string" and isinstance(value, str):
        _check_string(shape, value, path, problems)
    elif kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value less "
                f"than or equal to {maximum}"
            )


def _check_string(shape: Any, value: str, path: str, problems: list[str]) -> None:
    if shape.enum and value not in shape.enum:
        problems.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy enum "
            f"value set: [{', '.join(shape.enum)}]"
        )
    maximum = shape.metadata.get("max")
    if maximum is not None and len(value) > maximum:
        problems.append(_too_long(path, maximum, value))
    pattern = _compiled_pattern(shape.metadata.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        problems.append(
            f"Value '{value[:80]}' at '{path}' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {shape.metadata['pattern']}"
        )


@functools.cache
def _compiled_pattern(pattern: str | None) -> re.Pattern[str] | None:
    # AWS's patterns are Java regexes; the few Python cannot compile (\p{...}, \z) are skipped.
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None
