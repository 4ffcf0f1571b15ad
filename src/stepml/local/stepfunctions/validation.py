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
    definition_problems,
    error_name_problems,
    problems_message,
)

_TESTS = "tests/unit/stepfunctions/test_definitions.py::"
#: ValidateStateMachineDefinition's maxResults: default and maximum 100, as AWS documents.
_MAX_DIAGNOSTICS = 100


def _parsed(definition: str) -> Any:
    try:
        return json.loads(definition)
    except ValueError:
        return None


def _install_integrations_checked_at_definition(patch: Patch) -> None:
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
    diagnostics = [
        {"severity": "ERROR", "code": problem.code, "message": problem.message, "location": problem.location}
        for problem in definition_problems(parsed) + error_name_problems(parsed)
    ]
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
        name="integrations-checked-at-definition",
        why=(
            "Step Functions rejects CreateStateMachine/UpdateStateMachine (InvalidDefinition, "
            "SCHEMA_VALIDATION_FAILED) when a Task names an optimized API or pattern AWS does not offer "
            "(sns:publish.sync) or a Parameters/Arguments field outside the integration's documented subset "
            "(DeploymentConfig on sagemaker:updateEndpoint); aws-sdk tasks take their API's fields. moto accepted"
            " any field, and refused an unknown resource in its own words, so such a definition only failed once "
            "deployed. The patch checks every Task, in Parallel branches and Map processors too, against "
            "stepml.local.stepfunctions.integrations (and SageMaker literals against botocore's types). It also "
            "refuses a Retry/Catch error name the Task can never raise (ERROR_NAME_NEVER_RAISED): AWS accepts any "
            "name there, the local cloud is stricter on purpose."
        ),
        test=_TESTS + "test_create_state_machine_refuses_a_field_the_optimized_integration_does_not_support",
        install=_install_integrations_checked_at_definition,
    )
)
register(
    Patch(
        name="validate-state-machine-definition-answers",
        why=(
            "moto routes no ValidateStateMachineDefinition, so the call answered HTTP 500. The patch answers as AWS "
            "does, {result: OK|FAIL, diagnostics: [{severity, code, message, location}], truncated}, with the same "
            "findings CreateStateMachine refuses (at most maxResults of them, default and maximum 100)."
        ),
        test=_TESTS + "test_validate_state_machine_definition_answers_with_diagnostics",
        install=_install_validate_state_machine_definition_answers,
    )
)
