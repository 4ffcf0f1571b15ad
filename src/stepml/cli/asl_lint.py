"""``stepml asl validate``'s checks: what AWS's ValidateStateMachineDefinition finds (the local
cloud's ``definition_problems``) plus this project's lints, each with the state's path.

The lints: a timeout on every Task, ``States.ALL`` last in each Catch and Retry list, retries on
Lambda's transient errors on every Lambda Task, every placeholder defined by the template's
``DefinitionSubstitutions``, and the state machine role granting the IAM actions each Task's
Resource needs (the Step Functions developer guide's "IAM policies for integrated services").
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepml.cli.asl_substitutions import PLACEHOLDER, fill, json_path
from stepml.local.stepfunctions.definitions import definition_problems, error_name_problems
from stepml.local.stepfunctions.integrations import parse_resource
from stepml.local.template import ResolvedTemplate, TemplateError, load_template

LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
#: IAM prefixes that differ from the name in the Resource ARN.
_IAM_PREFIX = {"sfn": "states", "sesv2": "ses", "apigateway": "execute-api"}
#: What a ``.sync`` Task also calls to watch and stop its job (the integration's IAM page).
_SYNC_ACTIONS = {
    ("glue", "startJobRun"): ("glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"),
    ("sagemaker", "createTrainingJob"): (
        "sagemaker:DescribeTrainingJob",
        "sagemaker:ListTags",
        "sagemaker:StopTrainingJob",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    ),
    ("states", "startExecution"): (
        "states:DescribeExecution",
        "states:StopExecution",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    ),
}
_PASSED_ROLES = ("RoleArn", "ExecutionRoleArn")


class AslLintError(RuntimeError):
    """The template cannot be read for the checks (no state machine, an unresolvable role)."""


@dataclass(frozen=True)
class LintProblem:
    """One finding and where it is: ``/States/NAME/...`` as AWS's diagnostics locate them."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class TemplateFacts:
    """What the checks need from the template: the substitutions and the role's statements."""

    substitutions: dict[str, str]
    statements: list[dict[str, Any]]
    region: str
    account_id: str


def template_facts(template_path: Path, definition_path: Path) -> TemplateFacts:
    """The substitutions and role of the template's state machine whose DefinitionUri is
    ``definition_path`` (or of its only state machine), resolved for a sample account."""
    try:
        resolved = ResolvedTemplate(load_template(template_path), stack_name="stepml-validate")
        logical = _state_machine(resolved, template_path.parent, definition_path)
        props = resolved.resolved_properties(logical)
        role = resolved.properties(logical).get("Role")
        role_logical = _get_att_target(role)
        statements = [] if role_logical is None else _statements(resolved, role_logical)
    except (OSError, TemplateError) as exc:
        raise AslLintError(f"cannot read {template_path}: {exc}") from exc
    if role_logical is None:
        raise AslLintError(f"{template_path}: {logical}'s Role is not a role of the template (Fn::GetAtt ROLE.Arn)")
    substitutions = {k: str(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
    return TemplateFacts(substitutions, statements, resolved.region, resolved.account_id)


def _state_machine(resolved: ResolvedTemplate, root: Path, definition_path: Path) -> str:
    machines = [
        logical
        for logical, spec in resolved.resources.items()
        if spec["Type"] in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    ]
    for logical in machines:
        uri = resolved.properties(logical).get("DefinitionUri")
        if isinstance(uri, str) and (root / uri).resolve() == definition_path.resolve():
            return logical
    if len(machines) == 1:
        return machines[0]
    raise AslLintError(f"no state machine of the template has DefinitionUri {definition_path}")


def _get_att_target(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
    return None


def _statements(resolved: ResolvedTemplate, role_logical: str) -> list[dict[str, Any]]:
    props = resolved.resolved_properties(role_logical)
    return [s for policy in props.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def states(definition: Any, location: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Every state with its location, at any depth (Parallel branches, Map processors)."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        return
    for name, state in definition["States"].items():
        if not isinstance(state, dict):
            continue
        here = f"{location}/States/{name}"
        yield state, here
        for index, branch in enumerate(state.get("Branches") or []):
            yield from states(branch, f"{here}/Branches/{index}")
        for key in ("ItemProcessor", "Iterator"):
            yield from states(state.get(key), f"{here}/{key}")


def validate(definition: Any, facts: TemplateFacts) -> list[LintProblem]:
    """Every problem of the definition: undefined placeholders, AWS's checks, the project's lints."""
    undefined = _undefined_placeholders(definition, facts.substitutions)
    if undefined:
        return undefined
    filled = fill(definition, facts.substitutions)
    found = [LintProblem(p.location or "/", f"{p.code}: {p.message}") for p in definition_problems(filled)]
    found += [LintProblem(p.location or "/", f"{p.code}: {p.message}") for p in error_name_problems(filled)]
    for state, here in states(filled):
        found += _error_list_problems(state, here)
        if state.get("Type") == "Task":
            found += _task_lints(state, here, facts)
    return found


def _undefined_placeholders(definition: Any, substitutions: dict[str, str]) -> list[LintProblem]:
    problems = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, json_path(path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, json_path(path, index))
        elif isinstance(node, str):
            for name in PLACEHOLDER.findall(node):
                if name not in substitutions:
                    problems.append(
                        LintProblem(path, f"${{{name}}} is not defined in the template's DefinitionSubstitutions")
                    )

    walk(definition, "$")
    return problems


def _error_list_problems(state: dict[str, Any], here: str) -> list[LintProblem]:
    problems = []
    for field in ("Retry", "Catch"):
        entries = state.get(field) or []
        for index, entry in enumerate(entries):
            errors = (entry.get("ErrorEquals") or []) if isinstance(entry, dict) else []
            if "States.ALL" in errors and index != len(entries) - 1:
                problems.append(
                    LintProblem(f"{here}/{field}/{index}", f"the catch-all States.ALL must be the last {field} entry")
                )
    return problems


def _task_lints(state: dict[str, Any], here: str, facts: TemplateFacts) -> list[LintProblem]:
    problems = []
    if "TimeoutSeconds" not in state and "TimeoutSecondsPath" not in state:
        problems.append(LintProblem(here, "the Task has no TimeoutSeconds (a stuck call would wait a year)"))
    resource = state.get("Resource")
    if not isinstance(resource, str):
        return problems
    if _is_lambda(resource):
        retried = {e for retry in state.get("Retry") or [] for e in retry.get("ErrorEquals") or []}
        missing = [error for error in LAMBDA_TRANSIENT_ERRORS if error not in retried]
        if missing:
            problems.append(LintProblem(here, f"the Lambda Task does not retry {', '.join(missing)}"))
    for action, target in required_permissions(state, facts):
        if not _allows(facts.statements, action, target):
            on = f" on {target}" if target != "*" else ""
            problems.append(LintProblem(here, f"the state machine role does not grant {action}{on}"))
    return problems


def _is_lambda(resource: str) -> bool:
    return resource.startswith(("arn:aws:states:::lambda:invoke", "arn:aws:lambda:"))


def required_permissions(state: dict[str, Any], facts: TemplateFacts) -> list[tuple[str, str]]:
    """(IAM action, resource) pairs the Task's Resource needs; ``*`` where the target is only
    known at run time (a ``.$`` parameter)."""
    resource = state["Resource"]
    params = state.get("Parameters") or state.get("Arguments") or {}
    if resource.startswith("arn:aws:lambda:"):
        return [("lambda:InvokeFunction", resource)]
    parsed = parse_resource(resource)
    if parsed is None:
        return []
    if parsed.service == "lambda" and parsed.api == "invoke":
        return [("lambda:InvokeFunction", _static(params, "FunctionName"))]
    if parsed.service == "http":
        return [("states:InvokeHTTPEndpoint", "*")]
    service = parsed.sdk_service if parsed.is_sdk else parsed.service
    prefix = _IAM_PREFIX.get(service, service)
    action = "execute-api:Invoke" if prefix == "execute-api" else f"{prefix}:{parsed.api[:1].upper()}{parsed.api[1:]}"
    needed = [(action, _target(parsed.service, params, facts))]
    if parsed.pattern.startswith("sync"):
        needed += [(extra, "*") for extra in _SYNC_ACTIONS.get((parsed.service, parsed.api), ())]
    if parsed.service == "sagemaker" and "Tags" in params:
        needed.append(("sagemaker:AddTags", "*"))
    needed += [("iam:PassRole", params[key]) for key in _PASSED_ROLES if isinstance(params.get(key), str)]
    return needed


def _static(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    return value if isinstance(value, str) and not PLACEHOLDER.search(value) else "*"


def _target(service: str, params: dict[str, Any], facts: TemplateFacts) -> str:
    if service == "sns":
        return _static(params, "TopicArn")
    if service == "glue" and _static(params, "JobName") != "*":
        return f"arn:aws:glue:{facts.region}:{facts.account_id}:job/{params['JobName']}"
    return "*"


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` (``*``: on some resource)."""
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        resources = statement.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions):
            continue
        if resource == "*" or any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False
