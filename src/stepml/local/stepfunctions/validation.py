"""Patches that make moto refuse and report the definitions Step Functions refuses.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): CreateStateMachine
and UpdateStateMachine run ``stepml.local.stepfunctions.definitions``' checks before moto's
parser, and ValidateStateMachineDefinition answers with the same findings. moto is imported
inside each ``install`` only.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from stepml.local.patching import Patch, register
from stepml.local.stepfunctions.definitions import (
    SCHEMA_VALIDATION_FAILED,
    Problem,
    definition_problems,
    error_name_problems,
    problems_message,
)

#: ValidateStateMachineDefinition's maxResults: default and maximum 100, as AWS documents.
_MAX_DIAGNOSTICS = 100


def _parsed(definition: str) -> Any:
    try:
        return json.loads(definition)
    except ValueError:
        return None


def _install_definitions_refused_as_aws_refuses_them(patch: Patch) -> None:
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend._validate_definition

    @functools.wraps(original)
    def _validate_definition(definition: str) -> None:
        parsed = _parsed(definition)
        if isinstance(parsed, dict):
            # Before moto's parser, whose own (differently worded) refusal of an unknown resource would win.
            problems = definition_problems(parsed) or error_name_problems(parsed)
            if problems:
                raise InvalidDefinition(message=problems_message(problems))
        original(definition=definition)

    patch.replace(StepFunctionsParserBackend, "_validate_definition", staticmethod(_validate_definition))


def _diagnostic(problem: Problem) -> dict[str, str]:
    diagnostic = {"severity": "ERROR", "code": problem.code, "message": problem.message}
    if problem.location is not None:
        # AWS leaves the location out where it has none (MISSING_END_STATE).
        diagnostic["location"] = problem.location
    return diagnostic


def definition_diagnostics(definition: str) -> list[dict[str, str]]:
    """ValidateStateMachineDefinition's diagnostics for ``definition``: what CreateStateMachine refuses."""
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    try:
        parsed = json.loads(definition)
    except ValueError as exc:
        return [{"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": str(exc)}]
    if not isinstance(parsed, dict):
        return []
    diagnostics = [_diagnostic(problem) for problem in definition_problems(parsed) + error_name_problems(parsed)]
    if not diagnostics:
        try:
            StepFunctionsParserBackend._validate_definition(definition=definition)
        except InvalidDefinition as exc:
            diagnostics.append({"severity": "ERROR", "code": SCHEMA_VALIDATION_FAILED, "message": exc.message})
    return diagnostics


def _install_validate_state_machine_definition_answers(patch: Patch) -> None:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def validate_state_machine_definition(self):  # type: ignore[no-untyped-def]
        diagnostics = definition_diagnostics(self._get_param("definition") or "")
        limit = min(int(self._get_param("maxResults") or _MAX_DIAGNOSTICS), _MAX_DIAGNOSTICS) or _MAX_DIAGNOSTICS
        return ActionResult(
            {
                "result": "FAIL" if diagnostics else "OK",
                "diagnostics": diagnostics[:limit],
                # Some findings were left out.
                "truncated": len(diagnostics) > limit,
            }
        )

    patch.replace(StepFunctionResponse, "validate_state_machine_definition", validate_state_machine_definition)


register(
    Patch(
        name="definitions-refused-as-aws-refuses-them",
        why=(
            "Step Functions rejects CreateStateMachine/UpdateStateMachine (InvalidDefinition) for a definition the "
            "States Language does not allow: a field the state type does not take (Catch on Pass, TimeoutSeconds "
            "on Map), a JSONPath field in a JSONata state or the reverse, a Next/Default/Catch/StartAt naming no "
            "state (MISSING_TRANSITION_TARGET), an unreachable state, no terminal state (MISSING_END_STATE); and "
            "(SCHEMA_VALIDATION_FAILED) a Task naming an optimized API or pattern AWS does not offer "
            "(sns:publish.sync) or a Parameters/Arguments field outside the integration's documented subset "
            "(DeploymentConfig on sagemaker:updateEndpoint). moto accepted all of these (its parser refused a few "
            "in its own words), so such a definition only failed once deployed. The patch checks the definition, "
            "in Parallel branches and Map processors too, with stepml.local.stepfunctions.schema and .integrations "
            "before moto's parser, in AWS's words and locations. It also refuses a Retry/Catch error name the Task "
            "can never raise (ERROR_NAME_NEVER_RAISED): AWS accepts any name there, the local cloud is stricter on "
            "purpose."
        ),
        test="tests/unit/stepfunctions/test_conformance_definitions.py::test_create_state_machine_answers_as_aws",
        install=_install_definitions_refused_as_aws_refuses_them,
    )
)
register(
    Patch(
        name="validate-state-machine-definition-answers",
        why=(
            "moto routes no ValidateStateMachineDefinition, so the call answered HTTP 500. The patch answers as AWS "
            "does, {result: OK|FAIL, diagnostics: [{severity, code, message, location}], truncated}, with the same "
            "findings CreateStateMachine refuses (at most maxResults of them, default and maximum 100; no location "
            "where AWS gives none, as for MISSING_END_STATE)."
        ),
        test="tests/unit/stepfunctions/test_conformance_definitions.py::"
        "test_validate_state_machine_definition_answers_as_aws",
        install=_install_validate_state_machine_definition_answers,
    )
)
