"""Conformance: the definitions AWS refuses, refused locally with AWS's codes, messages and locations.

Each case in ``CASES`` is a small definition and the diagnostics AWS answers for it (an empty
list: AWS accepts it), with the evidence for that answer. ``AWS`` evidence is a public record of
AWS's own answer (an issue quoting ``validate-state-machine-definition`` or an InvalidDefinition
message); ``DOCS`` is AWS's States Language documentation, with the wording of the closest
recorded answer (the same rule applied to another field or state type); ``INFERRED`` marks a
wording no public record shows, chosen in AWS's style. Every case runs through both
CreateStateMachine (``InvalidDefinition`` and AWS's message: the diagnostics as ``CODE: message at
location``, joined by ", ") and ValidateStateMachineDefinition (the diagnostics themselves).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.unit.stepfunctions.support import REGION, ROLE_ARN, validate_definition

FLOCI_FIELDS = "AWS: github.com/floci-io/floci/issues/2735 (validate-state-machine-definition on AWS)"
FLOCI_GRAPH = "AWS: github.com/floci-io/floci/pull/2786 (validate-state-machine-definition on AWS)"
FLOCI_LANGUAGE = "AWS: github.com/floci-io/floci/issues/2968 (validate-state-machine-definition on AWS)"
LOCALSTACK_TARGET = "AWS: github.com/localstack/localstack/issues/11978 (InvalidDefinition on AWS)"
UNREACHABLE = "AWS: github.com/aws-cloudformation/cfn-lint/issues/4073 (InvalidDefinition on AWS)"
REQUIRED = "AWS: github.com/CloudSnorkel/cdk-github-runners/issues/434 (InvalidDefinition on AWS)"
TOP_LEVEL = "AWS: github.com/cloudtools/troposphere/issues/1450 (InvalidDefinition on AWS)"
UNKNOWN_FIELD = "AWS: a deploy log quoting 'Field '_comment_concurrency' is not supported at /States/...'"
FIELD_TABLE = "DOCS: States Language state fields table, with the wording AWS gives TimeoutSeconds on Map"
INFERRED = "INFERRED: no public record of AWS's wording"

ARN = "arn:aws:lambda:us-east-1:123456789012:function:work"


class Diagnostic(NamedTuple):
    code: str
    message: str
    location: str | None


class Case(NamedTuple):
    name: str
    definition: dict[str, Any]
    expected: list[Diagnostic]
    evidence: str


def unsupported(field: str, location: str) -> Diagnostic:
    return Diagnostic("SCHEMA_VALIDATION_FAILED", f"Field '{field}' is not supported", location)


def language(language: str, field: str, location: str) -> Diagnostic:
    other = "JSONata" if language == "JSONPath" else "JSONPath"
    message = (
        f"The QueryLanguage is set to '{language}', but field '{field}' is only supported for the '{other}' "
        "QueryLanguage"
    )
    return Diagnostic("SCHEMA_VALIDATION_FAILED", message, location)


def missing_target(target: str, location: str) -> Diagnostic:
    return Diagnostic("MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {target}", location)


def unreachable(name: str, location: str) -> Diagnostic:
    return Diagnostic("MISSING_TRANSITION_TARGET", f'State "{name}" is not reachable.', location)


def required(fields: str, location: str) -> Diagnostic:
    return Diagnostic("SCHEMA_VALIDATION_FAILED", f"These fields are required: [{fields}]", location)


NO_END = Diagnostic("MISSING_END_STATE", "Workflow has no terminal state", None)
ONE_OF_END_NEXT = "Exactly one of these fields is required: [End, Next]"

CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]
RETRY_ALL = [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]
DONE = {"Type": "Succeed"}
TASK = {"Type": "Task", "Resource": ARN}
CHOICE_RULE = {"Variable": "$.x", "BooleanEquals": True, "Next": "Done"}


def machine(*, language: str | None = None, **states: dict[str, Any]) -> dict[str, Any]:
    """A machine starting at its first state."""
    definition: dict[str, Any] = {"StartAt": next(iter(states)), "States": states}
    if language:
        definition["QueryLanguage"] = language
    return definition


def one(state: dict[str, Any], **more: dict[str, Any]) -> dict[str, Any]:
    """A machine whose state ``A`` is followed by ``Done`` when it takes a transition."""
    if state["Type"] not in ("Choice", "Succeed", "Fail") and "End" not in state and "Next" not in state:
        state = {**state, "Next": "Done"}
    states = {"A": state, **more}
    if state.get("Next") == "Done" or state["Type"] == "Choice" or "Catch" in state:
        states.setdefault("Done", DONE)
    return machine(**states)


def fields_case(kind: str, field: str, value: Any, evidence: str = FIELD_TABLE, **extra: Any) -> Case:
    state = {"Type": kind, **extra, field: value}
    return Case(f"{field}-on-{kind}", one(state), [unsupported(field, "/States/A")], evidence)


CHOICE = {"Choices": [CHOICE_RULE]}
WAIT = {"Seconds": 1}

FIELD_CASES = [
    fields_case("Pass", "Catch", CATCH_ALL, FLOCI_FIELDS),
    fields_case("Wait", "Catch", CATCH_ALL, FLOCI_FIELDS, **WAIT),
    fields_case("Choice", "Catch", CATCH_ALL, FLOCI_FIELDS, **CHOICE),
    fields_case("Succeed", "Catch", CATCH_ALL, FLOCI_FIELDS),
    fields_case("Fail", "Catch", CATCH_ALL, FLOCI_FIELDS),
    fields_case("Pass", "Retry", RETRY_ALL, FLOCI_FIELDS),
    fields_case("Wait", "Retry", RETRY_ALL, FLOCI_FIELDS, **WAIT),
    fields_case("Choice", "Retry", RETRY_ALL, FLOCI_FIELDS, **CHOICE),
    fields_case("Succeed", "Retry", RETRY_ALL, FLOCI_FIELDS),
    fields_case("Fail", "Retry", RETRY_ALL, FLOCI_FIELDS),
    fields_case("Pass", "TimeoutSeconds", 5, FLOCI_FIELDS),
    fields_case("Wait", "TimeoutSeconds", 5, FLOCI_FIELDS, **WAIT),
    fields_case("Choice", "TimeoutSeconds", 5, FLOCI_FIELDS, **CHOICE),
    fields_case("Succeed", "TimeoutSeconds", 5, FLOCI_FIELDS),
    fields_case("Fail", "TimeoutSeconds", 5, FLOCI_FIELDS),
    fields_case("Parallel", "TimeoutSeconds", 5, FLOCI_FIELDS, Branches=[machine(B={"Type": "Succeed"})]),
    fields_case("Pass", "TimeoutSecondsPath", "$.t"),
    fields_case("Pass", "HeartbeatSeconds", 5),
    fields_case("Wait", "HeartbeatSecondsPath", "$.h", **WAIT),
    fields_case("Pass", "Resource", ARN),
    fields_case("Wait", "Resource", ARN, **WAIT),
    fields_case("Choice", "End", True, **CHOICE),
    fields_case("Succeed", "Next", "Done"),
    fields_case("Fail", "End", True),
    fields_case("Task", "Result", {"a": 1}, Resource=ARN),
    fields_case("Wait", "Result", {"a": 1}, **WAIT),
    fields_case("Pass", "ResultSelector", {"a.$": "$"}),
    fields_case("Wait", "ResultSelector", {"a.$": "$"}, **WAIT),
    fields_case("Choice", "ResultSelector", {"a.$": "$"}, **CHOICE),
    fields_case("Wait", "Parameters", {"a": 1}, **WAIT),
    fields_case("Fail", "InputPath", "$.a"),
    fields_case("Fail", "OutputPath", "$.a"),
    fields_case("Succeed", "Assign", {"x": 1}),
    fields_case("Fail", "Assign", {"x": 1}),
    fields_case("Map", "_comment_concurrency", "at most 4", UNKNOWN_FIELD, ItemProcessor=machine(I=DONE)),
    fields_case("Map", "TimeoutSeconds", 5, FLOCI_FIELDS, ItemProcessor=machine(I=DONE)),
]

LANGUAGE_CASES = [
    Case(
        "Output-in-a-JSONPath-state",
        one({"Type": "Pass", "Output": {"a": 1}}),
        [language("JSONPath", "Output", "/States/A")],
        FLOCI_LANGUAGE,
    ),
    Case(
        "Arguments-in-a-JSONPath-task",
        one({**TASK, "Arguments": {"a": 1}}),
        [language("JSONPath", "Arguments", "/States/A")],
        FLOCI_LANGUAGE,
    ),
    Case(
        "Parameters-in-a-JSONata-machine",
        {**one({"Type": "Pass", "Parameters": {"a": 1}}), "QueryLanguage": "JSONata"},
        [language("JSONata", "Parameters", "/States/A")],
        INFERRED,
    ),
    Case(
        "ResultPath-in-a-JSONata-task",
        {**one({**TASK, "ResultPath": "$.r"}), "QueryLanguage": "JSONata"},
        [language("JSONata", "ResultPath", "/States/A")],
        INFERRED,
    ),
    Case(
        "InputPath-and-ResultSelector-in-a-JSONata-state-of-a-JSONPath-machine",
        one({**TASK, "QueryLanguage": "JSONata", "InputPath": "$.a", "ResultSelector": {"b.$": "$"}}),
        [language("JSONata", "InputPath", "/States/A"), language("JSONata", "ResultSelector", "/States/A")],
        INFERRED,
    ),
    Case(
        "a-JSONPath-state-in-a-JSONata-machine",
        {**one({"Type": "Pass", "QueryLanguage": "JSONPath"}), "QueryLanguage": "JSONata"},
        [
            Diagnostic(
                "SCHEMA_VALIDATION_FAILED",
                "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                "/States/A",
            )
        ],
        FLOCI_LANGUAGE,
    ),
    Case(
        "QueryLanguage-on-an-ItemProcessor",
        one({"Type": "Map", "ItemProcessor": {**machine(I=DONE), "QueryLanguage": "JSONata"}}),
        [unsupported("QueryLanguage", "/States/A/ItemProcessor")],
        FLOCI_LANGUAGE,
    ),
    Case(
        "QueryLanguage-on-an-Iterator-of-a-JSONata-Map",
        one({"Type": "Map", "QueryLanguage": "JSONata", "Iterator": {**machine(I=DONE), "QueryLanguage": "JSONata"}}),
        [unsupported("QueryLanguage", "/States/A/Iterator")],
        FLOCI_LANGUAGE,
    ),
    Case(
        "a-processor-state-takes-the-machine-language-not-the-Map-one",
        one(
            {
                "Type": "Map",
                "QueryLanguage": "JSONata",
                "ItemProcessor": machine(P={"Type": "Pass", "Output": 1, "End": True}),
            }
        ),
        [language("JSONPath", "Output", "/States/A/ItemProcessor/States/P")],
        FLOCI_LANGUAGE,
    ),
]

GRAPH_CASES = [
    Case(
        "a-Next-to-no-state",
        machine(A={"Type": "Pass", "Next": "NOPE"}),
        [missing_target("NOPE", "/States/A/Next"), NO_END],
        FLOCI_GRAPH,
    ),
    Case(
        "a-Next-to-no-state-and-an-unreachable-state",
        machine(pass1={"Type": "Pass", "Next": "pass3"}, pass2={"Type": "Pass", "End": True}),
        [missing_target("pass3", "/States/pass1/Next"), unreachable("pass2", "/States/pass2")],
        LOCALSTACK_TARGET,
    ),
    Case(
        "a-Choice-rule-to-no-state",
        machine(C={"Type": "Choice", "Choices": [{**CHOICE_RULE, "Next": "NOPE"}], "Default": "Done"}, Done=DONE),
        [missing_target("NOPE", "/States/C/Choices[0]/Next")],
        FLOCI_GRAPH,
    ),
    Case(
        "a-Choice-Default-to-no-state",
        machine(C={"Type": "Choice", "Choices": [CHOICE_RULE], "Default": "NOPE"}, Done=DONE),
        [missing_target("NOPE", "/States/C/Default")],
        FLOCI_GRAPH,
    ),
    Case(
        "a-Catch-to-no-state",
        machine(T={**TASK, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "NOPE"}], "End": True}),
        [missing_target("NOPE", "/States/T/Catch[0]/Next")],
        FLOCI_GRAPH,
    ),
    Case(
        "StartAt-naming-no-state",
        {"StartAt": "aws_own.run_step", "States": {"run_step": {"Type": "Pass", "End": True}}},
        [missing_target("aws_own.run_step", "/StartAt"), unreachable("run_step", "/States/run_step")],
        "AWS: github.com/serverless-operations/serverless-step-functions/issues/250 (InvalidDefinition on AWS)",
    ),
    Case(
        "no-terminal-state",
        machine(A={"Type": "Pass", "Next": "B"}, B={"Type": "Pass", "Next": "A"}),
        [NO_END],
        FLOCI_FIELDS,
    ),
    Case(
        "no-terminal-state-hides-unreachable-states",
        machine(A={"Type": "Pass", "Next": "B"}, B={"Type": "Pass", "Next": "A"}, C={"Type": "Pass", "Next": "A"}),
        [NO_END],
        FLOCI_GRAPH,
    ),
    Case(
        "a-loop-and-an-unreachable-terminal-state",
        machine(A={"Type": "Pass", "Next": "B"}, B={"Type": "Pass", "Next": "A"}, C={"Type": "Pass", "End": True}),
        [unreachable("C", "/States/C")],
        FLOCI_GRAPH,
    ),
    Case(
        "an-unreachable-state",
        machine(
            **{
                "Pass One": {"Type": "Pass", "Next": "Success"},
                "Unreachable pass": {"Type": "Pass", "Next": "Success"},
                "Success": DONE,
            }
        ),
        [unreachable("Unreachable pass", "/States/Unreachable pass")],
        UNREACHABLE,
    ),
    Case(
        "both-Next-and-End",
        machine(A={"Type": "Pass", "Next": "A", "End": True}),
        [Diagnostic("SCHEMA_VALIDATION_FAILED", ONE_OF_END_NEXT, "/States/A")],
        INFERRED,
    ),
    Case(
        "neither-Next-nor-End",
        machine(A={"Type": "Pass"}, B={"Type": "Pass", "End": True}),
        [Diagnostic("SCHEMA_VALIDATION_FAILED", ONE_OF_END_NEXT, "/States/A")],
        INFERRED,
    ),
]

SCHEMA_CASES = [
    Case(
        "a-Choice-without-Choices",
        one({"Type": "Choice", "Default": "Done"}),
        [required("Choices", "/States/A")],
        REQUIRED,
    ),
    Case(
        "a-Choice-rule-without-Next",
        one({"Type": "Choice", "Choices": [{"Variable": "$", "StringMatches": "Test"}], "Default": "Done"}),
        [required("Next", "/States/A/Choices[0]")],
        "AWS: github.com/aws-cloudformation/cfn-lint/issues/4077 (InvalidDefinition on AWS)",
    ),
    Case("a-Task-without-Resource", one({"Type": "Task"}), [required("Resource", "/States/A")], REQUIRED),
    Case(
        "an-unknown-Type",
        one({"Type": "Job"}),
        [
            Diagnostic(
                "SCHEMA_VALIDATION_FAILED",
                "The field 'Type' should have one of these values: "
                "[Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map]",
                "/States/A/Type",
            )
        ],
        "AWS: the InvalidDefinition message quoted in moto's Step Functions parser tests",
    ),
    Case("no-StartAt-nor-States", {"Comment": "empty"}, [required("States, StartAt", "/")], TOP_LEVEL),
    Case(
        "an-unknown-top-level-field",
        {**machine(A=DONE), "Fn::Sub": "x"},
        [unsupported("Fn::Sub", "/")],
        TOP_LEVEL,
    ),
    Case(
        "two-problems-on-one-state",
        one({"Type": "Pass", "Retry": RETRY_ALL, "TimeoutSeconds": 5}),
        [unsupported("Retry", "/States/A"), unsupported("TimeoutSeconds", "/States/A")],
        INFERRED + " (the order of two findings on one state)",
    ),
]

NESTED_CASES = [
    Case(
        "Catch-on-a-Pass-inside-a-Parallel-branch",
        one(
            {
                "Type": "Parallel",
                "Branches": [machine(B=DONE), machine(B={"Type": "Pass", "Catch": CATCH_ALL, "End": True})],
            }
        ),
        [unsupported("Catch", "/States/A/Branches[1]/States/B")],
        REQUIRED + " (the Branches[i] location)",
    ),
    Case(
        "a-Next-to-no-state-inside-a-Map-processor",
        one(
            {
                "Type": "Map",
                "ItemProcessor": machine(I={"Type": "Pass", "Next": "NOPE"}, J={"Type": "Pass", "End": True}),
            }
        ),
        [
            missing_target("NOPE", "/States/A/ItemProcessor/States/I/Next"),
            unreachable("J", "/States/A/ItemProcessor/States/J"),
        ],
        FLOCI_GRAPH,
    ),
    Case(
        "TimeoutSeconds-on-a-Wait-inside-an-Iterator",
        one({"Type": "Map", "Iterator": machine(W={"Type": "Wait", "Seconds": 1, "TimeoutSeconds": 3, "End": True})}),
        [unsupported("TimeoutSeconds", "/States/A/Iterator/States/W")],
        FIELD_TABLE,
    ),
    Case(
        "no-terminal-state-inside-a-branch",
        one({"Type": "Parallel", "Branches": [machine(B={"Type": "Pass", "Next": "B"})]}),
        [NO_END],
        FLOCI_GRAPH,
    ),
]

ACCEPTED_CASES = [
    Case(
        "Retry-and-Catch-on-Task-Parallel-and-Map",
        machine(
            T={**TASK, "Retry": RETRY_ALL, "Catch": CATCH_ALL, "TimeoutSeconds": 5, "HeartbeatSeconds": 2, "Next": "P"},
            P={
                "Type": "Parallel",
                "Branches": [machine(B=DONE)],
                "Retry": RETRY_ALL,
                "Catch": CATCH_ALL,
                "ResultSelector": {"b.$": "$[0]"},
                "Next": "M",
            },
            M={"Type": "Map", "ItemProcessor": machine(I=DONE), "Retry": RETRY_ALL, "Catch": CATCH_ALL, "End": True},
            Done=DONE,
        ),
        [],
        FIELD_TABLE,
    ),
    Case(
        "a-state-reached-only-through-a-Catch-and-a-Choice-Default",
        machine(
            C={"Type": "Choice", "Choices": [{**CHOICE_RULE, "Next": "T"}], "Default": "W"},
            T={**TASK, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}], "End": True},
            W={"Type": "Wait", "SecondsPath": "$.s", "Next": "Done"},
            Failed={"Type": "Fail", "ErrorPath": "$.Error", "Cause": "task failed"},
            Done=DONE,
        ),
        [],
        FIELD_TABLE,
    ),
    Case(
        "a-JSONata-machine-with-Assign-Output-and-Arguments",
        machine(
            language="JSONata",
            A={"Type": "Pass", "Assign": {"n": "{% $states.input.n %}"}, "Output": {"n": "{% $n %}"}, "Next": "T"},
            T={
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Arguments": {"FunctionName": ARN, "Payload": "{% $states.input %}"},
                "Output": "{% $states.result.Payload %}",
                "Next": "W",
            },
            W={"Type": "Wait", "Seconds": "{% 1 %}", "Next": "Done"},
            Done={"Type": "Succeed", "Output": "{% $states.input %}"},
        ),
        [],
        FIELD_TABLE,
    ),
]

CASES: list[Case] = FIELD_CASES + LANGUAGE_CASES + GRAPH_CASES + SCHEMA_CASES + NESTED_CASES + ACCEPTED_CASES


def invalid_definition_message(expected: list[Diagnostic]) -> str:
    """AWS's InvalidDefinition text: each finding as ``CODE: message at location``, joined by ", "."""
    findings = ", ".join(
        f"{d.code}: {d.message} at {d.location if d.location is not None else 'null'}" for d in expected
    )
    return f"Invalid State Machine Definition: '{findings}'"


def as_diagnostics(expected: list[Diagnostic]) -> list[dict[str, str]]:
    diagnostics = []
    for diagnostic in expected:
        answer = {"severity": "ERROR", "code": diagnostic.code, "message": diagnostic.message}
        if diagnostic.location is not None:
            answer["location"] = diagnostic.location
        diagnostics.append(answer)
    return diagnostics


def test_the_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_create_state_machine_answers_as_aws(sfn_moto: None, case: Case) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    create = {"name": "conformance", "definition": json.dumps(case.definition), "roleArn": ROLE_ARN}
    if not case.expected:
        assert sfn.create_state_machine(**create)["stateMachineArn"].endswith(":conformance")
        return
    with pytest.raises(ClientError) as refused:
        sfn.create_state_machine(**create)
    assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
    assert refused.value.response["Error"]["Message"] == invalid_definition_message(case.expected)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_validate_state_machine_definition_answers_as_aws(sfn_moto: None, case: Case) -> None:
    answer = validate_definition(case.definition)
    assert answer["result"] == ("FAIL" if case.expected else "OK")
    assert answer["diagnostics"] == as_diagnostics(case.expected)
    assert answer["truncated"] is False


def test_update_state_machine_refuses_what_create_refuses(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    good = machine(A={"Type": "Pass", "End": True})
    arn = sfn.create_state_machine(name="updated", definition=json.dumps(good), roleArn=ROLE_ARN)["stateMachineArn"]
    bad = one({"Type": "Pass", "Catch": CATCH_ALL})
    with pytest.raises(ClientError) as refused:
        sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(bad))
    assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
    assert refused.value.response["Error"]["Message"] == invalid_definition_message([unsupported("Catch", "/States/A")])
