"""What CreateStateMachine, UpdateStateMachine and ValidateStateMachineDefinition refuse.

Step Functions refuses a definition (``InvalidDefinition``) whose shape the States Language does not
allow (``stepml.local.stepfunctions.schema``: a field a state type does not take, a ``Next`` naming
no state, no terminal state ...), and (``SCHEMA_VALIDATION_FAILED``) a Task that names an optimized
integration it does not offer, a pattern the integration does not support, or a
``Parameters``/``Arguments`` field outside the subset the integration documents (the table in
``stepml.local.stepfunctions.integrations``). This module walks a definition, Parallel branches and
Map processors included, and reports those findings as AWS words them. It also lints Retry/Catch
error names against the names each Task can raise: AWS accepts any string there, but a retrier
that names an error the task never raises silently never matches, so the (stricter) local cloud
refuses it (``ERROR_NAME_NEVER_RAISED``).

This module imports no moto code: ``stepml.local.stepfunctions.validation`` wires it into moto.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any, Final

from botocore.model import ListShape, MapShape, Shape, StructureShape

from stepml.local.stepfunctions.errors import (
    HTTP_STATUS_ERROR,
    STATES_ERRORS,
    optimized_error_name,
    raisable_errors,
    sdk_error_prefix,
)
from stepml.local.stepfunctions.integrations import (
    NOT_MODELLED,
    OPTIMIZED,
    PATTERNS,
    REQUEST_RESPONSE,
    WAIT_FOR_TASK_TOKEN,
    Resource,
    optimized_api,
    optimized_operation,
    parse_resource,
    sdk_operation,
)
from stepml.local.stepfunctions.schema import (
    SCHEMA_VALIDATION_FAILED,
    Problem,
    containers,
    shape_problems,
    transition_problems,
)

#: The local cloud's own code for the error-name lint (AWS accepts any error name).
ERROR_NAME_NEVER_RAISED: Final[str] = "ERROR_NAME_NEVER_RAISED"


def _states(definition: dict[str, Any], location: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every state, with its name and location, at any depth (Parallel branches, Map processors)."""
    for container in containers(definition, location):
        for name, state in container.states.items():
            if isinstance(state, dict):
                yield name, state, f"{container.location}/States/{name}"


def sync_tasks(definition: Any) -> list[Resource]:
    """The integration of every `.sync` Task of a definition, at any depth (Parallel branches, Map
    processors); none for anything that is not a definition."""
    if not isinstance(definition, dict):
        return []
    found = []
    for _name, state, _here in _states(definition, ""):
        if state.get("Type") != "Task" or not isinstance(state.get("Resource"), str):
            continue
        resource = parse_resource(state["Resource"])
        if resource is not None and resource.pattern.startswith("sync"):
            found.append(resource)
    return found


def definition_problems(definition: dict[str, Any]) -> list[Problem]:
    """Everything AWS refuses in a definition, in AWS's order: the schema's findings (the shape,
    ``schema.shape_problems``, then the integration Tasks') and, only when there are none, the
    transition graph's (``schema.transition_problems``)."""
    return shape_problems(definition) + integration_problems(definition) or transition_problems(definition)


def integration_problems(definition: dict[str, Any]) -> list[Problem]:
    """The SCHEMA_VALIDATION_FAILED findings AWS reports for a definition's integration Tasks."""
    problems: list[Problem] = []
    for _name, state, here in _states(definition, ""):
        if state.get("Type") != "Task" or not isinstance(state.get("Resource"), str):
            continue
        resource = parse_resource(state["Resource"])
        if resource is not None:
            problems.extend(_task_problems(resource, state, here))
    return problems


def _not_recognized(resource: Resource, here: str) -> Problem:
    return Problem(
        SCHEMA_VALIDATION_FAILED,
        f"The resource provided {resource.arn} is not recognized. The value is not a valid resource ARN, "
        "or the resource is not available in this region.",
        f"{here}/Resource",
    )


def _task_problems(resource: Resource, state: dict[str, Any], here: str) -> list[Problem]:
    if resource.pattern and resource.pattern not in PATTERNS:
        return [_not_recognized(resource, here)]
    if resource.is_sdk:
        operation = sdk_operation(resource)
        # "AWS SDK integrations": request-response and .waitForTaskToken, never .sync.
        if operation is None or resource.pattern not in (REQUEST_RESPONSE, WAIT_FOR_TASK_TOKEN):
            return [_not_recognized(resource, here)]
        return _field_problems(state, here, operation.input_shape, allowed=None, check_types=False)
    if resource.service in NOT_MODELLED:
        return [
            Problem(
                SCHEMA_VALIDATION_FAILED,
                f"The resource provided {resource.arn} is an optimized integration the stepml local cloud "
                "does not model; call it through a Lambda function or its aws-sdk integration",
                f"{here}/Resource",
            )
        ]
    api = optimized_api(resource)
    if api is None or resource.pattern not in api.patterns:
        return [_not_recognized(resource, here)]
    operation = optimized_operation(resource)
    shape = operation.input_shape if operation is not None else None
    # SageMaker's request shapes are checked to the value types, as AWS does for that integration;
    # the others take JSON values where the API takes text (an SNS Message, an SQS MessageBody).
    return _field_problems(state, here, shape, allowed=api.fields, check_types=resource.service == "sagemaker")


def _field_problems(
    state: dict[str, Any],
    here: str,
    shape: StructureShape | None,
    *,
    allowed: frozenset[str] | None,
    check_types: bool,
) -> list[Problem]:
    field = "Parameters" if "Parameters" in state else "Arguments"
    parameters = state.get(field)
    if not isinstance(parameters, dict):
        return []  # absent, or a JSONata expression for the whole request
    messages: list[str] = []
    for key, value in parameters.items():
        name = key.removesuffix(".$")
        member = _member(shape, name) if shape is not None else None
        if (allowed is not None and name not in allowed) or (allowed is None and member is None):
            messages.append(f'The field "{name}" is not supported by Step Functions')
            continue
        if member is not None and not key.endswith(".$"):
            _check_value(name, value, member, messages, check_types)
    return [Problem(SCHEMA_VALIDATION_FAILED, message, f"{here}/{field}") for message in messages]


def _member(shape: StructureShape, name: str) -> Shape | None:
    # Step Functions spells every field in PascalCase, whatever the API's own casing (ECS, Batch).
    for member_name, member in shape.members.items():
        if member_name == name or member_name[:1].upper() + member_name[1:] == name:
            return member
    return None


_SCALAR_TYPES: Final[dict[str, tuple[str, tuple[type, ...]]]] = {
    "string": ("STRING", (str,)),
    "integer": ("INTEGER", (int,)),
    "long": ("INTEGER", (int,)),
    "float": ("NUMBER", (int, float)),
    "double": ("NUMBER", (int, float)),
    "boolean": ("BOOLEAN", (bool,)),
}


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("{%") and value.strip().endswith("%}")


def _check_structure(value: dict[str, Any], shape: StructureShape, messages: list[str], check_types: bool) -> None:
    for key, member_value in value.items():
        name = key.removesuffix(".$")
        member = _member(shape, name)
        if member is None:
            messages.append(f'The field "{name}" is not supported by Step Functions')
        elif not key.endswith(".$"):
            _check_value(name, member_value, member, messages, check_types)


def _check_value(name: str, value: Any, shape: Shape, messages: list[str], check_types: bool) -> None:
    if _is_expression(value):
        return
    if isinstance(shape, StructureShape):
        if isinstance(value, dict):
            _check_structure(value, shape, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an OBJECT')
    elif isinstance(shape, ListShape):
        if isinstance(value, list):
            for item in value:
                _check_value(name, item, shape.member, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an ARRAY')
    elif isinstance(shape, MapShape):
        if isinstance(value, dict):
            for key, item in value.items():
                if not key.endswith(".$"):
                    _check_value(key, item, shape.value, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an OBJECT')
    elif check_types and shape.type_name in _SCALAR_TYPES:
        label, python_types = _SCALAR_TYPES[shape.type_name]
        is_bool = isinstance(value, bool)
        if not isinstance(value, python_types) or (is_bool and shape.type_name != "boolean"):
            messages.append(f'The value for the field "{name}" must be a {label}')


# -- error-name lint --------------------------------------------------------------------------


def error_name_problems(definition: dict[str, Any]) -> list[Problem]:
    """Retry/Catch ``ErrorEquals`` names the state can never raise, at any depth of the definition.

    AWS accepts any string there, so this is a lint: a retrier naming an error its Task never
    raises (a misspelt ``SNS.KmsThrottlingException``, an optimized integration's name on an aws-sdk
    Task) never matches. States.* names must be ones Step Functions defines; a Task's other names
    must be its integration's (see ``raisable_errors``); Parallel and Map states pass on their
    inner states' errors, so only their States.* names are checked.
    """
    problems: list[Problem] = []
    for name, state, here in _states(definition, ""):
        raisable: frozenset[str] | None = None
        resource = None
        if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
            resource = parse_resource(state["Resource"])
            raisable = raisable_errors(resource) if resource is not None else None
        for field in ("Retry", "Catch"):
            for index, rule in enumerate(state.get(field) or []):
                if not isinstance(rule, dict):
                    continue
                for position, error in enumerate(rule.get("ErrorEquals") or []):
                    reason = _never_raised(error, raisable, resource)
                    if reason is not None:
                        problems.append(
                            Problem(
                                ERROR_NAME_NEVER_RAISED,
                                f'State "{name}" {field}[{index}] names the error "{error}", {reason}. AWS accepts '
                                "any error name, but this one can never match; the stepml local cloud refuses it",
                                f"{here}/{field}/{index}/ErrorEquals/{position}",
                            )
                        )
    return problems


def _never_raised(error: Any, raisable: frozenset[str] | None, resource: Resource | None) -> str | None:
    if not isinstance(error, str):
        return "which is not a string"
    if error.startswith("States."):
        if error in STATES_ERRORS or HTTP_STATUS_ERROR.match(error):
            return None
        return "which is not an error Step Functions defines" + _suggestion(error, STATES_ERRORS)
    if raisable is None or error in raisable or resource is None:
        return None
    hint = _suggestion(error, raisable)
    if not hint and resource.is_sdk:
        prefix = sdk_error_prefix(resource.sdk_service)
        hint = f' (an error code the API does not model, throttling for one, arrives as "{prefix}.{prefix}Exception")'
    elif not hint and resource.service in OPTIMIZED:
        generic = optimized_error_name(resource.service, "")
        hint = f' (an error code the API does not model, throttling for one, arrives as "{generic}")'
    return f"which {resource.arn} never raises" + hint


def _suggestion(error: str, names: frozenset[str]) -> str:
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(error.lower(), list(by_lower), n=1, cutoff=0.8)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def problems_message(problems: list[Problem]) -> str:
    """The InvalidDefinition message AWS gives for these problems."""
    return f"Invalid State Machine Definition: '{', '.join(str(problem) for problem in problems)}'"
