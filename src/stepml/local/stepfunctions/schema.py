"""The Amazon States Language's shape: which fields each state type takes, and the transition graph.

CreateStateMachine, UpdateStateMachine and ValidateStateMachineDefinition refuse a definition whose
shape the States Language does not allow. This module finds those problems, in every container
(the machine, each Parallel branch, each Map ``ItemProcessor``/``Iterator``), worded as AWS words
them and located as AWS locates them (``/States/NAME``, ``.../Branches[0]/States/NAME``):

- ``SCHEMA_VALIDATION_FAILED``: a field the state type does not take (``Field 'Catch' is not
  supported``, located at the state), a JSONPath-only field in a JSONata state or the reverse, a
  required field missing (``These fields are required: [Resource]``), an unknown ``Type``, a
  non-terminal state with both or neither of ``Next`` and ``End``;
- ``MISSING_TRANSITION_TARGET``: a ``StartAt``, ``Next``, ``Default`` or Catch ``Next`` naming no
  state of its container (``Missing 'Next' target: NAME``, whatever the field), a state nothing
  reaches (``State "NAME" is not reachable.``);
- ``MISSING_END_STATE``: a container without a terminal state (no location: AWS gives none, and
  its InvalidDefinition message then reads ``at null``).

``shape_problems`` finds the schema's, ``transition_problems`` the graph's; AWS checks the graph
only when the schema holds (``stepml.local.stepfunctions.definitions.definition_problems`` keeps
that order). A container without a terminal state is not walked for unreachable states (AWS
reports only the missing end). The field table follows AWS's "State machine structure" and per-state pages of the
Amazon States Language documentation; wordings AWS was not seen to answer with are marked in
``tests/unit/stepfunctions/test_conformance_definitions.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

SCHEMA_VALIDATION_FAILED: Final[str] = "SCHEMA_VALIDATION_FAILED"
MISSING_TRANSITION_TARGET: Final[str] = "MISSING_TRANSITION_TARGET"
MISSING_END_STATE: Final[str] = "MISSING_END_STATE"

JSONPATH: Final[str] = "JSONPath"
JSONATA: Final[str] = "JSONata"

STATE_TYPES: Final[tuple[str, ...]] = ("Task", "Wait", "Pass", "Succeed", "Fail", "Choice", "Parallel", "Map")
_MACHINE_FIELDS: Final = frozenset({"Comment", "StartAt", "States", "TimeoutSeconds", "Version", "QueryLanguage"})
#: A branch's or processor's fields: no QueryLanguage (its states take the machine's, as AWS answers).
_CONTAINER_FIELDS: Final = frozenset({"Comment", "StartAt", "States", "ProcessorConfig"})

_COMMON: Final = frozenset({"Type", "Comment", "QueryLanguage"})
_IO: Final = frozenset({"InputPath", "OutputPath", "Output"})
_TRANSITION: Final = frozenset({"Next", "End"})
_ERRORS: Final = frozenset({"Retry", "Catch"})
_RESULT: Final = frozenset({"Parameters", "Arguments", "ResultPath", "ResultSelector"})

#: Every field each state type takes, in either query language.
STATE_FIELDS: Final[dict[str, frozenset[str]]] = {
    "Pass": _COMMON | _IO | _TRANSITION | {"Assign", "Parameters", "ResultPath", "Result"},
    "Task": _COMMON
    | _IO
    | _TRANSITION
    | _ERRORS
    | _RESULT
    | {
        "Assign",
        "Resource",
        "Credentials",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
    },
    "Choice": _COMMON | _IO | {"Assign", "Choices", "Default"},
    "Wait": _COMMON | _IO | _TRANSITION | {"Assign", "Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON | _IO | _TRANSITION | _ERRORS | _RESULT | {"Assign", "Branches"},
    "Map": _COMMON
    | _IO
    | _TRANSITION
    | _ERRORS
    | _RESULT
    | {
        "Assign",
        "ItemProcessor",
        "Iterator",
        "Items",
        "ItemsPath",
        "ItemReader",
        "ItemSelector",
        "ItemBatcher",
        "ResultWriter",
        "Label",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
    },
}

#: Fields only a JSONPath state takes (JSONata replaces them with Arguments, Output, Items and expressions).
JSONPATH_ONLY: Final = frozenset(
    {
        "InputPath",
        "OutputPath",
        "Parameters",
        "ResultPath",
        "ResultSelector",
        "Result",
        "ItemsPath",
        "TimeoutSecondsPath",
        "HeartbeatSecondsPath",
        "SecondsPath",
        "TimestampPath",
        "ErrorPath",
        "CausePath",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCountPath",
    }
)
#: Fields only a JSONata state takes.
JSONATA_ONLY: Final = frozenset({"Arguments", "Output", "Items"})

#: Fields a state of each type must have (besides Type).
REQUIRED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "Task": ("Resource",),
    "Choice": ("Choices",),
    "Parallel": ("Branches",),
}
_NO_TRANSITION: Final = frozenset({"Choice", "Succeed", "Fail"})


@dataclass(frozen=True)
class Problem:
    """One finding: AWS's diagnostic code, its message, and where (``/States/NAME/...``; None: nowhere)."""

    code: str
    message: str
    location: str | None

    def __str__(self) -> str:
        # AWS's InvalidDefinition text for a problem without a location ends "at null".
        return f"{self.code}: {self.message} at {self.location if self.location is not None else 'null'}"


@dataclass(frozen=True)
class Container:
    """A States container: the machine, a Parallel branch or a Map processor, and where it is."""

    definition: dict[str, Any]
    location: str  # "" for the machine itself

    @property
    def states(self) -> dict[str, Any]:
        states = self.definition.get("States")
        return states if isinstance(states, dict) else {}


def containers(definition: dict[str, Any], location: str = "") -> Iterator[Container]:
    """The machine and every branch and processor inside it, at any depth."""
    container = Container(definition, location)
    yield container
    for name, state in container.states.items():
        if not isinstance(state, dict):
            continue
        here = f"{location}/States/{name}"
        for index, branch in enumerate(state.get("Branches") or []):
            if isinstance(branch, dict):
                yield from containers(branch, f"{here}/Branches[{index}]")
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from containers(state[key], f"{here}/{key}")


def shape_problems(definition: dict[str, Any]) -> list[Problem]:
    """The SCHEMA_VALIDATION_FAILED findings: fields, types, Next/End, in every container."""
    machine_language = definition.get("QueryLanguage", JSONPATH)
    problems = _machine_problems(definition)
    for container in containers(definition):
        problems.extend(_container_problems(container, machine_language))
    return problems


def transition_problems(definition: dict[str, Any]) -> list[Problem]:
    """The graph's findings (MISSING_TRANSITION_TARGET, MISSING_END_STATE) in every container."""
    return [problem for container in containers(definition) for problem in graph_problems(container)]


def _schema(message: str, location: str | None) -> Problem:
    return Problem(SCHEMA_VALIDATION_FAILED, message, location)


def _unsupported(field: str, location: str) -> Problem:
    return _schema(f"Field '{field}' is not supported", location)


def _required(fields: list[str], location: str) -> Problem:
    return _schema(f"These fields are required: [{', '.join(fields)}]", location)


def _machine_problems(definition: dict[str, Any]) -> list[Problem]:
    problems = [_unsupported(field, "/") for field in definition if field not in _MACHINE_FIELDS]
    if definition.get("QueryLanguage", JSONPATH) not in (JSONPATH, JSONATA):
        problems.append(_schema("The field 'QueryLanguage' should have one of these values: [JSONPath, JSONata]", "/"))
    return problems


def _container_problems(container: Container, machine_language: str) -> list[Problem]:
    where = container.location or "/"
    problems = []
    missing = [field for field in ("States", "StartAt") if field not in container.definition]
    if missing:
        problems.append(_required(missing, where))
    if container.location:
        problems.extend(_unsupported(field, where) for field in container.definition if field not in _CONTAINER_FIELDS)
    for name, state in container.states.items():
        here = f"{container.location}/States/{name}"
        if not isinstance(state, dict):
            problems.append(_schema("The value for the field 'States' must be an OBJECT", here))
            continue
        problems.extend(state_problems(state, here, machine_language))
    return problems


def state_problems(state: dict[str, Any], here: str, machine_language: str = JSONPATH) -> list[Problem]:
    """The schema problems of one state at ``here``: its type, its fields, its Next/End."""
    kind = state.get("Type")
    if kind is None:
        return [_required(["Type"], here)]
    if kind not in STATE_TYPES:
        values = ", ".join(STATE_TYPES)
        return [_schema(f"The field 'Type' should have one of these values: [{values}]", f"{here}/Type")]
    problems = _language_problems(state, here, machine_language)
    language = state.get("QueryLanguage", machine_language)
    for field in state:
        other = JSONATA if language == JSONPATH else JSONPATH
        if field not in STATE_FIELDS[kind]:
            problems.append(_unsupported(field, here))
        elif field in (JSONATA_ONLY if language == JSONPATH else JSONPATH_ONLY):
            problems.append(
                _schema(
                    f"The QueryLanguage is set to '{language}', but field '{field}' is only supported for the "
                    f"'{other}' QueryLanguage",
                    here,
                )
            )
    missing = [field for field in REQUIRED_FIELDS.get(kind, ()) if field not in state]
    if missing:
        problems.append(_required(missing, here))
    if kind not in _NO_TRANSITION and ("Next" in state) == (state.get("End") is True):
        problems.append(_schema("Exactly one of these fields is required: [End, Next]", here))
    problems.extend(_rule_problems(state, here))
    return problems


def _language_problems(state: dict[str, Any], here: str, machine_language: str) -> list[Problem]:
    language = state.get("QueryLanguage")
    if language is None:
        return []
    if language not in (JSONPATH, JSONATA):
        return [_schema("The field 'QueryLanguage' should have one of these values: [JSONPath, JSONata]", here)]
    if language == JSONPATH and machine_language == JSONATA:
        return [_schema("'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine", here)]
    return []


def _rule_problems(state: dict[str, Any], here: str) -> list[Problem]:
    """Choice rules and catchers each need a Next."""
    problems = []
    for field in ("Choices", "Catch"):
        rules = state.get(field)
        if not isinstance(rules, list):
            continue
        for index, rule in enumerate(rules):
            if isinstance(rule, dict) and "Next" not in rule:
                problems.append(_required(["Next"], f"{here}/{field}[{index}]"))
    return problems


# -- the transition graph -----------------------------------------------------------------------


def _targets(name: str, state: dict[str, Any], location: str) -> Iterator[tuple[str, str]]:
    """Every state name ``state`` may go to, with where it is named."""
    here = f"{location}/States/{name}"
    if isinstance(state.get("Next"), str):
        yield state["Next"], f"{here}/Next"
    if isinstance(state.get("Default"), str):
        yield state["Default"], f"{here}/Default"
    for field in ("Choices", "Catch"):
        for index, rule in enumerate(state.get(field) or []):
            if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
                yield rule["Next"], f"{here}/{field}[{index}]/Next"


def _is_terminal(state: Any) -> bool:
    return isinstance(state, dict) and (state.get("Type") in ("Succeed", "Fail") or state.get("End") is True)


def graph_problems(container: Container) -> list[Problem]:
    """Targets naming no state, a container without a terminal state, states nothing reaches."""
    states = container.states
    start = container.definition.get("StartAt")
    problems = []
    if start not in states:
        problems.append(_missing_target(start, f"{container.location}/StartAt"))
    edges: dict[str, list[str]] = {}
    for name, state in states.items():
        edges[name] = []
        for target, where in _targets(name, state, container.location):
            if target in states:
                edges[name].append(target)
            else:
                problems.append(_missing_target(target, where))
    if not any(_is_terminal(state) for state in states.values()):
        problems.append(Problem(MISSING_END_STATE, "Workflow has no terminal state", None))
        return problems
    reached = _reachable(start, edges)
    problems.extend(
        Problem(MISSING_TRANSITION_TARGET, f'State "{name}" is not reachable.', f"{container.location}/States/{name}")
        for name in states
        if name not in reached
    )
    return problems


def _missing_target(target: Any, location: str) -> Problem:
    # AWS names the field "Next" whichever field (StartAt, Default, a rule's Next) names the target.
    return Problem(MISSING_TRANSITION_TARGET, f"Missing 'Next' target: {target}", location)


def reachable_states(container: dict[str, Any]) -> set[str]:
    """The names of the states of one container (a machine, a branch, a processor) its StartAt reaches
    through Next, Default, Choice rules and catchers."""
    located = Container(container, "")
    edges = {
        name: [target for target, _where in _targets(name, state, "") if target in located.states]
        for name, state in located.states.items()
        if isinstance(state, dict)
    }
    return _reachable(container.get("StartAt"), edges)


def _reachable(start: Any, edges: dict[str, list[str]]) -> set[str]:
    reached: set[str] = set()
    pending = [start] if start in edges else []
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(edges[name])
    return reached
