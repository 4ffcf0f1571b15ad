"""``stepml asl``: export fills the placeholders as the stack does, import puts them back (a round
trip without edits changes no byte), validate runs AWS's checks and the project's lints."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from stepml.cli import asl, asl_lint
from stepml.cli.asl_substitutions import format_definition, restore, substitutions_from_definitions
from stepml.cli.context import Target
from stepml.cli.main import main
from tests.conftest import new_session
from tests.helpers import REPO_ROOT

DEFINITION = REPO_ROOT / "statemachine/pipeline.asl.json"
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"


@pytest.fixture
def deployed(stack, monkeypatch, tmp_path) -> dict[str, Any]:
    """The template's state machine created in moto from the provisioned stack; the CLI connects to it."""
    filled = stack.resolved.state_machine_definition("PipelineStateMachine", REPO_ROOT)
    client = boto3.client("stepfunctions", region_name=REGION)
    arn = client.create_state_machine(
        name="stepml-pipeline",
        definition=json.dumps(filled),
        roleArn=stack.resolved.get_att("PipelineStateMachineRole", "Arn"),
    )["stateMachineArn"]
    outputs = {"StateMachineArn": arn, "UploadBucketName": stack.physical_id("UploadBucket")}
    target = Target(session=new_session(), endpoint_url=None, outputs=outputs)
    monkeypatch.setattr(asl, "connect", lambda stack_name, state_dir: target)
    copy_path = tmp_path / "pipeline.asl.json"
    copy_path.write_bytes(DEFINITION.read_bytes())
    substitutions = stack.resolved.resolved_properties("PipelineStateMachine")["DefinitionSubstitutions"]
    return {"filled": filled, "definition": copy_path, "substitutions": substitutions, "tmp": tmp_path}


def _export(deployed: dict[str, Any], capsys) -> dict[str, Any]:
    out = deployed["tmp"] / "exported.json"
    assert main(["asl", "export", "--definition", str(deployed["definition"]), "--out", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def _import(deployed: dict[str, Any], exported: Any, *extra: str) -> list[str]:
    path = deployed["tmp"] / "edited.json"
    path.write_text(json.dumps(exported))  # the console's own formatting is not the repository's
    return ["asl", "import", str(path), "--definition", str(deployed["definition"]), *extra]


def test_export_fills_every_placeholder_as_the_stack_fills_it(deployed, capsys):
    assert main(["asl", "export", "--definition", str(deployed["definition"])]) == 0
    text = capsys.readouterr().out
    assert "${" not in text
    assert text == format_definition(deployed["filled"])
    assert text.startswith('{\n  "Comment"') and text.endswith("}\n")
    for name, value in deployed["substitutions"].items():
        assert value in text, name


def test_export_then_import_without_edits_changes_no_byte(deployed, capsys):
    before = DEFINITION.read_bytes()
    exported = _export(deployed, capsys)
    assert main(_import(deployed, exported, "--write")) == 0
    assert capsys.readouterr().out.startswith("no changes")
    assert deployed["definition"].read_bytes() == before


def test_an_edited_definition_is_imported_with_its_placeholders_and_the_diff_shown(deployed, capsys):
    exported = _export(deployed, capsys)
    values = deployed["substitutions"]
    states = exported["States"]
    # Workflow Studio's edits: a Retry changed, a state renamed, a state added (a qualified function
    # ARN and a States.Format template with the endpoint name inside).
    states["Resolve run"]["Retry"][0]["MaxAttempts"] = 5
    renamed = {("Preprocess data (Glue)" if k == "Preprocess data" else k): v for k, v in states.items()}
    for state in renamed.values():
        if state.get("Next") == "Preprocess data":
            state["Next"] = "Preprocess data (Glue)"
        if state.get("Default") == "Preprocess data":
            state["Default"] = "Preprocess data (Glue)"
    renamed["Note the endpoint"] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": values["RecordStepFunctionArn"] + ":$LATEST",
            "Payload": {"note.$": f"States.Format('{values['ProductionEndpointName']}-{{}}', $.run.run_id)"},
        },
        "End": True,
    }
    exported["States"] = renamed

    assert main(_import(deployed, exported)) == 0
    diff = capsys.readouterr().out
    assert '-          "MaxAttempts": 3,' in diff and '+          "MaxAttempts": 5,' in diff
    assert '+    "Preprocess data (Glue)": {' in diff
    assert '+        "FunctionName": "${RecordStepFunctionArn}:$LATEST",' in diff
    assert '+          "note.$": "States.Format(\'${ProductionEndpointName}-{}\', $.run.run_id)"' in diff
    assert deployed["definition"].read_bytes() == DEFINITION.read_bytes(), "written without --write"

    assert main(_import(deployed, exported, "--write")) == 0
    written = json.loads(deployed["definition"].read_text())
    assert written["States"]["Preprocess data (Glue)"]["Parameters"]["JobName"] == "${PreprocessJobName}"
    assert list(written["States"])[-1] == "Note the endpoint"
    assert ":123456789012:" not in json.dumps(written)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:someone-elses", "function:someone-elses"),
        ("arn:aws:sns:us-east-1:123456789012:other-topic", "other-topic"),
    ],
)
def test_a_concrete_value_that_no_substitution_maps_back_is_refused_by_name(deployed, capsys, value, named):
    exported = _export(deployed, capsys)
    exported["States"]["Resolve run"]["Parameters"]["FunctionName"] = value
    assert main(_import(deployed, exported, "--write")) == 2
    error = capsys.readouterr().err
    assert named in error and '$.States["Resolve run"].Parameters.FunctionName' in error
    assert deployed["definition"].read_bytes() == DEFINITION.read_bytes()


def test_a_resource_of_the_stack_given_by_name_is_refused(deployed, capsys):
    exported = _export(deployed, capsys)
    upload_bucket = asl.connect(None, None).outputs["UploadBucketName"]
    exported["States"]["Resolve run"]["Parameters"]["Payload"]["bucket"] = upload_bucket
    assert main(_import(deployed, exported)) == 2
    assert upload_bucket in capsys.readouterr().err


def test_restore_takes_the_longest_value_first_and_keeps_a_shared_value_where_the_file_had_it():
    substitutions = {"Short": "stepml-prod", "Long": "stepml-prod-latency", "A": "same", "B": "same"}
    current = {"x": "${B}", "y": "z"}
    exported = {"x": "same", "y": "stepml-prod-latency and stepml-prod"}
    assert restore(exported, substitutions, current) == {"x": "${B}", "y": "${Long} and ${Short}"}


def test_substitutions_are_aligned_with_repeated_and_embedded_placeholders():
    ours = {"a": "${X}:${Y}:${X}", "b": ["pre-${Z}"], "c": "${Gone}"}
    theirs = {"a": "1:two:1", "b": ["pre-3"]}
    assert substitutions_from_definitions(ours, theirs) == {"X": "1", "Y": "two", "Z": "3"}


def test_substitutions_are_found_in_a_state_renamed_since_the_deploy():
    ours = {"States": {"New name": {"FunctionName": "arn:${Fn}", "Topic": "${Topic}"}}}
    theirs = {"States": {"Old name": {"FunctionName": "arn:aws:lambda:f", "Topic": "t"}}}
    # A bare placeholder could match any string: only one with text around it is looked up elsewhere.
    assert substitutions_from_definitions(ours, theirs) == {"Fn": "aws:lambda:f"}


# --- validate ------------------------------------------------------------------------------------

LAMBDA_RETRY = {
    "ErrorEquals": [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ],
    "MaxAttempts": 3,
}
GOOD_TASK = {
    "Type": "Task",
    "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "${RecordStepFunctionArn}", "Payload.$": "$"},
    "TimeoutSeconds": 60,
    "Retry": [LAMBDA_RETRY],
    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
    "End": True,
}


def _validate(tmp_path: Path, capsys, task: dict[str, Any]) -> tuple[int, str]:
    definition = {"StartAt": "Step", "States": {"Step": task, "Failed": {"Type": "Fail"}}}
    path = tmp_path / "bad.asl.json"
    path.write_text(json.dumps(definition))
    code = main(["asl", "validate", str(path), "--template", str(TEMPLATE)])
    return code, capsys.readouterr().out


def test_validate_passes_the_repository_definition(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert main(["asl", "validate"]) == 0
    assert "OK" in capsys.readouterr().out


def test_validate_passes_a_small_good_definition(tmp_path, capsys):
    assert _validate(tmp_path, capsys, GOOD_TASK) == (0, f"{tmp_path / 'bad.asl.json'}: OK\n")


def _without(key: str) -> dict[str, Any]:
    task = copy.deepcopy(GOOD_TASK)
    del task[key]
    return task


def _with(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GOOD_TASK), **changes}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (_without("TimeoutSeconds"), "/States/Step: the Task has no TimeoutSeconds"),
        (
            _with(Retry=[{"ErrorEquals": ["States.ALL"]}, LAMBDA_RETRY]),
            "/States/Step/Retry/0: the catch-all States.ALL must be the last Retry entry",
        ),
        (
            _with(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Failed"}, {"ErrorEquals": ["X"], "Next": "Failed"}]),
            "/States/Step/Catch/0: the catch-all States.ALL must be the last Catch entry",
        ),
        (
            _with(Retry=[{"ErrorEquals": ["Lambda.ServiceException"]}]),
            "/States/Step: the Lambda Task does not retry Lambda.AWSLambdaException, Lambda.SdkClientException, "
            "Lambda.TooManyRequestsException",
        ),
        (
            _with(
                Resource="arn:aws:states:::dynamodb:putItem",
                Parameters={"TableName": "t", "Item": {}},
                Retry=[],
            ),
            "/States/Step: the state machine role does not grant dynamodb:PutItem",
        ),
        (
            _with(Parameters={"FunctionName": "${NoSuchFunctionArn}"}),
            "$.States.Step.Parameters.FunctionName: ${NoSuchFunctionArn} is not defined",
        ),
        (
            _with(Parameters={"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:other"}),
            "the state machine role does not grant lambda:InvokeFunction on "
            "arn:aws:lambda:us-east-1:123456789012:function:other",
        ),
    ],
    ids=["timeout", "retry-catch-all", "catch-catch-all", "lambda-retries", "iam-action", "placeholder", "iam-arn"],
)
def test_validate_names_each_lints_problem_with_the_state_path(tmp_path, capsys, task, message):
    code, out = _validate(tmp_path, capsys, task)
    assert code == 2
    assert message in out


def test_validate_reports_awss_own_checks(tmp_path, capsys):
    code, out = _validate(tmp_path, capsys, _with(Parameters={"FunctionName": "${RecordStepFunctionArn}", "Bogus": 1}))
    assert code == 2
    assert "SCHEMA_VALIDATION_FAILED" in out and "/States/Step" in out


def test_validate_finds_a_grant_removed_from_the_role_for_the_repository_definition():
    facts = asl_lint.template_facts(TEMPLATE, DEFINITION)
    definition = json.loads(DEFINITION.read_text())
    assert asl_lint.validate(definition, facts) == []
    facts.statements = [s for s in facts.statements if s.get("Sid") != "RunPreprocessJob"]
    found = [str(problem) for problem in asl_lint.validate(definition, facts)]
    assert found[0].startswith("/States/Preprocess data: the state machine role does not grant glue:StartJobRun on ")
    assert "/States/Preprocess data: the state machine role does not grant glue:GetJobRun" in found
