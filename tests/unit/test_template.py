"""Static checks of template.yaml and the ASL: substitutions, IAM, security defaults, structure."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest

from stepml.lineage import resource_names
from stepml.local.stepfunctions.definitions import definition_problems, error_name_problems
from stepml.local.stepfunctions.errors import optimized_error_name, sdk_error_name
from stepml.local.stepfunctions.integrations import parse_resource
from stepml.local.template import ResolvedTemplate, load_template
from tests.helpers import REPO_ROOT

ASL_PATH = REPO_ROOT / "statemachine/pipeline.asl.json"
ACCOUNT = "123456789012"
REGION = "us-east-1"
SAMPLE_RUN_ID = "churn-0123456789ab"


@pytest.fixture(scope="module")
def resolved() -> ResolvedTemplate:
    return ResolvedTemplate(
        load_template(REPO_ROOT / "template.yaml"), stack_name="stepml-dev", region=REGION, account_id=ACCOUNT
    )


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())


@pytest.fixture(scope="module")
def definition(resolved) -> dict[str, Any]:
    return resolved.state_machine_definition("PipelineStateMachine", REPO_ROOT)


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}


# --- substitutions ---------------------------------------------------------------------


def test_every_substitution_in_the_asl_is_defined_and_every_definition_is_used(resolved):
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", ASL_PATH.read_text()))
    defined = set(resolved.properties("PipelineStateMachine")["DefinitionSubstitutions"])
    assert used - defined == set(), f"used in the ASL but not defined: {sorted(used - defined)}"
    assert defined - used == set(), f"defined but never used in the ASL: {sorted(defined - used)}"


def test_the_asl_file_is_plain_json_that_workflow_studio_can_open(asl):
    assert asl["StartAt"] in asl["States"]
    assert "QueryLanguage" not in asl or asl["QueryLanguage"] == "JSONPath"


def test_the_substituted_definition_leaves_no_placeholder(definition):
    assert "${" not in json.dumps(definition).replace("States.Format", "")


# --- structure -------------------------------------------------------------------------


def _targets(state: dict[str, Any]) -> list[str]:
    found = [state[key] for key in ("Next", "Default") if key in state]
    found += [choice["Next"] for choice in state.get("Choices", [])]
    found += [catch["Next"] for catch in state.get("Catch", [])]
    return found


def test_every_transition_reaches_a_state_and_every_state_is_reachable(asl):
    states = asl["States"]
    for name, state in states.items():
        for target in _targets(state):
            assert target in states, f"{name} points to missing state {target!r}"
        if state["Type"] not in ("Succeed", "Fail", "Choice"):
            assert "Next" in state or state.get("End"), f"{name} has neither Next nor End"
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_targets(states[current]))
    assert set(states) - seen == set(), f"unreachable states: {sorted(set(states) - seen)}"


def test_every_task_has_a_timeout(asl):
    for name, state in _tasks(asl).items():
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, f"{name} has no timeout"


LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def _throttling_error_names(resource: str) -> set[str]:
    """The names a throttled call of this Task's integration fails with (modeled, or the generic name)."""
    parsed = parse_resource(resource)
    assert parsed is not None, resource
    codes = ("ThrottlingException", "Throttled", "Throttling")
    if parsed.is_sdk:
        return {sdk_error_name(parsed.sdk_service, code) for code in codes}
    return {optimized_error_name(parsed.service, code) for code in codes}


def test_lambda_tasks_retry_lambdas_transient_errors_and_sdk_tasks_retry_throttling(asl):
    for name, state in _tasks(asl).items():
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        if state["Resource"].startswith("arn:aws:states:::lambda:invoke"):
            assert retried >= LAMBDA_TRANSIENT, f"{name} does not retry {sorted(LAMBDA_TRANSIENT - retried)}"
        else:
            assert retried & _throttling_error_names(state["Resource"]), f"{name} does not retry throttling"


def test_the_pipeline_passes_every_integration_check_and_the_error_name_lint(definition):
    assert [str(problem) for problem in definition_problems(definition)] == []
    assert [str(problem) for problem in error_name_problems(definition)] == []


def test_the_production_update_uses_the_aws_sdk_integration_for_its_deployment_config(definition):
    state = definition["States"]["Update production endpoint"]
    assert state["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint"
    assert set(state["Parameters"]) == {"EndpointName", "EndpointConfigName.$", "DeploymentConfig"}
    assert {e for r in state["Retry"] for e in r["ErrorEquals"]} == {"SageMaker.SageMakerException"}


def test_every_task_catches_every_error(asl):
    """Notifications too: an SNS error after the retries must not end the run with that error."""
    for name, state in _tasks(asl).items():
        catchers = state.get("Catch", [])
        assert any("States.ALL" in c["ErrorEquals"] for c in catchers), f"{name} has no catch-all"


def _path_from(states: dict[str, Any], start: str) -> list[str]:
    """The states a run passes through from ``start`` when every Task succeeds and Choices take Default."""
    path, current = [], start
    while current not in path:
        path.append(current)
        state = states[current]
        if state["Type"] in ("Succeed", "Fail"):
            return path
        current = state.get("Next") or state["Default"]
    raise AssertionError(f"loop from {start}: {path}")


def test_the_test_endpoint_goes_right_after_evaluation_and_a_failed_cleanup_is_alerted(asl):
    """The test endpoint bills while it lives: it goes before the gate and the approval wait, and
    a cleanup error is a warning and an alert; the run goes on to the gate either way."""
    states = asl["States"]
    gate = "Good enough to ask for approval?"
    # The serverless test endpoint's own model goes whether or not the endpoint's deletion worked.
    for name, then in (
        ("Delete test endpoint", "Test model to delete?"),
        ("Delete test endpoint config", "Test model to delete?"),
        ("Delete test model", "After cleanup"),
    ):
        [catch] = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == then, name
        assert catch["ResultPath"] == "$.cleanup_error"
    [made] = states["Test model to delete?"]["Choices"]
    assert made == {"Variable": "$.steps.test_model", "IsPresent": True, "Next": "Delete test model"}
    assert states["Create serverless test model"]["ResultPath"] == "$.steps.test_model"
    after = states["After cleanup"]
    taken = {rule["Variable"]: rule["Next"] for rule in after["Choices"]}
    # A failure passed through the cleanup first: it alerts the failure, never a cleanup error.
    assert list(taken) == ["$.failure", "$.cleanup_error"]
    assert taken["$.cleanup_error"] == "Record cleanup failure" and after["Default"] == gate
    assert _path_from(states, "Record evaluation")[:6] == [
        "Record evaluation",
        "Delete test endpoint",
        "Delete test endpoint config",
        "Test model to delete?",
        "After cleanup",
        gate,
    ]
    assert _path_from(states, "Record cleanup failure")[:3] == [
        "Record cleanup failure",
        "Alert on cleanup failure",
        gate,
    ]
    assert _path_from(states, "Record deployment")[:8] == [
        "Record deployment",
        "Create monitoring job definition",
        "Find monitoring schedule",
        "Monitoring schedule exists?",
        "Create monitoring schedule",
        "Alarm on each feature's drift",
        "Record run succeeded",
        "Notify the outcome",
    ]
    for start in ("Record deployment", "Gate rejected the model"):
        assert "Delete test endpoint" not in _path_from(states, start), start
    record = states["Record cleanup failure"]
    assert record["Parameters"]["Payload"] == {
        "run.$": "$.run",
        "step": "cleanup",
        "status": "FAILED",
        "result.$": "$.cleanup_error",
    }
    assert states["Alert on cleanup failure"]["Parameters"]["TopicArn"] == "${AlertTopicArn}"
    assert record["Catch"][0]["Next"] == gate


def test_nothing_after_the_cleanup_names_the_test_endpoint(asl):
    """Past its deletion no state may use the test endpoint (the failure path's cleanup excepted)."""
    states = asl["States"]
    seen, todo = set(), ["After cleanup"]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_targets(states[current]))
    users = {name for name in seen if "names.test_endpoint" in json.dumps(states[name])}
    assert users == {"Delete test endpoint", "Delete test endpoint config"}


@pytest.mark.parametrize(
    ("notification", "state", "end"),
    [
        ("Notify the outcome", {"notice": {}}, "Model deployed"),
        ("Notify the outcome", {"outcome": {}, "notice": {}}, "Model not promoted"),
        ("Alert on failure", {"failure": {}, "notice": {}, "outcome": {}}, "Pipeline failed"),
    ],
)
def test_a_notification_that_fails_is_recorded_and_the_run_ends_as_it_would_have(asl, notification, state, end):
    states = asl["States"]
    [catch] = states[notification]["Catch"]
    assert catch == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.notify_error",
        "Next": "Record notification failure",
    }
    record = states["Record notification failure"]
    assert record["Parameters"]["Payload"]["step"] == "notify" and record["Parameters"]["Payload"]["state.$"] == "$"
    assert record["Next"] == record["Catch"][0]["Next"] == "How did the run end?"
    choice = states["How did the run end?"]
    taken = next((c["Next"] for c in choice["Choices"] if c["Variable"].removeprefix("$.") in state), choice["Default"])
    assert taken == end
    assert states[notification]["Next"] in (end, "How did the run end?")


def test_a_lost_cleanup_alert_is_recorded_by_name_and_the_run_goes_on_to_the_gate(asl):
    """The cleanup alert comes before the gate, so its loss cannot share the router above (the run
    has no outcome yet): its recorder names it and goes on to the gate."""
    states = asl["States"]
    [catch] = states["Alert on cleanup failure"]["Catch"]
    assert (catch["ResultPath"], catch["Next"]) == ("$.notify_error", "Record lost cleanup alert")
    record = states["Record lost cleanup alert"]
    assert record["Parameters"]["Payload"]["notification"] == "cleanup alert"
    assert record["Next"] == record["Catch"][0]["Next"] == "Good enough to ask for approval?"


def test_an_alert_that_fails_without_lineage_still_fails_the_run(asl):
    [catch] = asl["States"]["Alert without lineage"]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "Pipeline failed without lineage"


def test_approval_waits_for_the_task_token_with_the_parameter_timeout(asl):
    state = asl["States"]["Request approval"]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert state["TimeoutSecondsPath"] == "$.run.approval_timeout_seconds"
    assert state["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    timeout_catch = state["Catch"][0]
    assert timeout_catch["ErrorEquals"] == ["States.Timeout"] and timeout_catch["Next"] == "Approval timed out"


def _keyed_targets(state: dict[str, Any], keys: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
    """Where ``state`` can go when the run's state holds the top-level ``keys``, with the keys it
    holds there: an IsPresent rule decides by them; every other rule may or may not match."""
    if state["Type"] == "Choice":
        found = []
        for rule in state["Choices"]:
            present = rule.get("IsPresent")
            if present is None:
                found.append((rule["Next"], keys))
            elif (rule["Variable"].removeprefix("$.") in keys) == present:
                return [*found, (rule["Next"], keys)]
        return [*found, (state["Default"], keys)]
    written = state.get("ResultPath") or ""
    after = keys | {written.removeprefix("$.").split(".")[0]} if written.count(".") == 1 else keys
    found = [(state[key], after) for key in ("Next",) if key in state]
    for catch in state.get("Catch", []):
        caught = catch.get("ResultPath") or ""
        found.append((catch["Next"], keys | {caught.removeprefix("$.")} if caught.count(".") == 1 else keys))
    return found


def test_not_promoted_paths_never_touch_production(asl):
    """From the gate, rejection and timeout, no path reaches a production-endpoint state, whatever
    fails on the way (Choices on what the state holds decide as they would at run time)."""
    states = asl["States"]
    forbidden = {"Create production endpoint", "Update production endpoint", "Create production endpoint config"}
    for start in ("Gate rejected the model", "Approver rejected the model", "Approval timed out"):
        seen, todo = set(), [(start, frozenset({"run", "steps"}))]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(_keyed_targets(states[current[0]], current[1]))
        reached = {name for name, _ in seen}
        assert not reached & forbidden, f"{start} can reach {reached & forbidden}"
        assert "Alert on failure" in reached, "the failure path was followed"


def test_moto_parses_the_substituted_definition(definition):
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    program, _ = AmazonStateLanguageParser.parse(json.dumps(definition))
    assert program is not None


# --- IAM: the actions each Task needs, derived from its Resource --------------------------


def _sample_value(value: Any, run_names: dict[str, str]) -> Any:
    """Replace a JSONPath into the run context with a value a real run would have."""
    if isinstance(value, str) and value.startswith("$.run.names."):
        return run_names[value.removeprefix("$.run.names.")]
    if isinstance(value, str) and value.startswith("$.failure.test_endpoint"):
        return run_names[value.removeprefix("$.failure.")]
    if value == "$.champion.endpoint_config":  # the production endpoint's config, made by an earlier run
        return resource_names("churn-00aa11bb22cc", 1, run_names["production_endpoint"])["production_endpoint_config"]
    return value


def _parameter(params: dict[str, Any], key: str, run_names: dict[str, str]) -> str:
    if key in params:
        return params[key]
    return _sample_value(params[f"{key}.$"], run_names)


def required_permissions(state: dict[str, Any], run_names: dict[str, str]) -> list[tuple[str, str]]:
    """(action, resource ARN) pairs a Task needs, as the Step Functions service integration docs list them."""
    resource = state["Resource"]
    params = state.get("Parameters", {})
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    sm = lambda kind, name: arn.format("sagemaker", f"{kind}/{name}")  # noqa: E731
    tagged = "Tags" in params
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        return [("lambda:InvokeFunction", params["FunctionName"])]
    if resource == "arn:aws:states:::glue:startJobRun.sync":
        job = arn.format("glue", f"job/{params['JobName']}")
        return [(a, job) for a in ("glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun")]
    if resource == "arn:aws:states:::sagemaker:createTrainingJob.sync":
        job = sm("training-job", _parameter(params, "TrainingJobName", run_names))
        rule = arn.format("events", "rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule")
        needed = [
            (a, job)
            for a in ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob")
        ]
        needed += [(a, rule) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
        # "IAM policies for calling SageMaker": createTrainingJob (both patterns) also lists the job's tags.
        needed += [("sagemaker:ListTags", job), ("iam:PassRole", params["RoleArn"])]
        return needed + ([("sagemaker:AddTags", job)] if tagged else [])
    if resource == "arn:aws:states:::sagemaker:createTransformJob.sync":
        job = sm("transform-job", _parameter(params, "TransformJobName", run_names))
        rule = arn.format("events", "rule/StepFunctionsGetEventsForSageMakerTransformJobsRule")
        needed = [
            (a, job)
            for a in (
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:StopTransformJob",
                "sagemaker:ListTags",
            )
        ]
        # No iam:PassRole: a transform job runs as its model's execution role.
        return needed + [(a, rule) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
    optimized = {
        "createModel": ("model", "ModelName"),
        "createEndpointConfig": ("endpoint-config", "EndpointConfigName"),
        "createEndpoint": ("endpoint", "EndpointName"),
        "updateEndpoint": ("endpoint", "EndpointName"),
    }
    match = re.fullmatch(r"arn:aws:states:::sagemaker:(\w+)", resource)
    if match and match.group(1) in optimized:
        kind, key = optimized[match.group(1)]
        target = sm(kind, _parameter(params, key, run_names))
        action = "sagemaker:" + match.group(1)[0].upper() + match.group(1)[1:]
        needed = [(action, target)] + ([("sagemaker:AddTags", target)] if tagged else [])
        if "ExecutionRoleArn" in params:
            needed.append(("iam:PassRole", params["ExecutionRoleArn"]))
        return needed
    match = re.fullmatch(r"arn:aws:states:::aws-sdk:sagemaker:(\w+)", resource)
    if match:
        # aws-sdk:SERVICE:apiName calls the API itself: the IAM action is SERVICE:ApiName.
        api = match.group(1)
        action = "sagemaker:" + api[0].upper() + api[1:]
        if api in ("listEndpoints", "listMonitoringSchedules"):
            return [(action, "*")]
        if api == "createDataQualityJobDefinition":
            target = sm("data-quality-job-definition", _parameter(params, "JobDefinitionName", run_names))
            return [(action, target), ("sagemaker:AddTags", target), ("iam:PassRole", params["RoleArn"])]
        if api in ("createMonitoringSchedule", "updateMonitoringSchedule"):
            target = sm("monitoring-schedule", params["MonitoringScheduleName"])
            return [(action, target)] + ([("sagemaker:AddTags", target)] if tagged else [])
        if api == "deleteModel":
            return [(action, sm("model", _parameter(params, "ModelName", run_names)))]
        key = "EndpointConfigName" if "EndpointConfig" in api else "EndpointName"
        kind = "endpoint-config" if key == "EndpointConfigName" else "endpoint"
        return [(action, sm(kind, _parameter(params, key, run_names)))]
    if resource == "arn:aws:states:::aws-sdk:cloudwatch:putMetricAlarm":
        name = params["AlarmName.$"].split("'")[1].replace("{}", "tenure_months")
        return [("cloudwatch:PutMetricAlarm", arn.format("cloudwatch", f"alarm:{name}"))]
    if resource == "arn:aws:states:::sns:publish":
        return [("sns:Publish", params["TopicArn"])]
    raise AssertionError(f"no IAM rule for Task resource {resource}; add one to this test")


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        ):
            return True
    return False


def _role_statements(resolved: ResolvedTemplate, logical_id: str) -> list[dict[str, Any]]:
    props = resolved.resolved_properties(logical_id)
    return [s for policy in props["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_the_state_machine_role_grants_what_every_task_needs(resolved, definition):
    statements = _role_statements(resolved, "PipelineStateMachineRole")
    names = resource_names(SAMPLE_RUN_ID, 1, resolved.parameters["ProductionEndpointName"])
    missing = []
    inner = {
        name: state
        for map_state in definition["States"].values()
        if map_state["Type"] == "Map"
        for name, state in map_state["ItemProcessor"]["States"].items()
        if state["Type"] == "Task"
    }
    # And each Task in a Parallel's branches (the test split's Batch Transform jobs).
    inner |= {
        name: state
        for parallel in definition["States"].values()
        if parallel["Type"] == "Parallel"
        for branch in parallel["Branches"]
        for name, state in branch["States"].items()
        if state["Type"] == "Task"
    }
    assert "Put drift alarm" in inner and "Score champion in batch" in inner
    for name, state in {**_tasks(definition), **inner}.items():
        for action, resource in required_permissions(state, names):
            if not _allows(statements, action, resource):
                missing.append(f"{name}: {action} on {resource}")
    assert missing == []


def test_iam_actions_are_derived_for_aws_sdk_tasks_and_sync_extras(definition):
    names = resource_names(SAMPLE_RUN_ID, 1, "stepml-production")
    update = required_permissions(definition["States"]["Update production endpoint"], names)
    assert update == [
        ("sagemaker:UpdateEndpoint", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/stepml-production"),
    ]
    train = dict(required_permissions(definition["States"]["Train model"], names))
    assert train["sagemaker:ListTags"].startswith(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/")
    assert train["events:PutRule"].endswith(":rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule")
    branches = definition["States"]["Score test split in batch"]["Branches"]
    transform = dict(required_permissions(branches[0]["States"]["Score challenger in batch"], names))
    assert transform["sagemaker:StopTransformJob"] == (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{names['challenger_transform_job']}"
    )
    assert transform["events:PutRule"].endswith(":rule/StepFunctionsGetEventsForSageMakerTransformJobsRule")


def test_the_sagemaker_execution_role_can_read_exactly_the_rollback_alarms(resolved, definition):
    statements = _role_statements(resolved, "SageMakerExecutionRole")
    rollback = definition["States"]["Update production endpoint"]["Parameters"]["DeploymentConfig"]
    for alarm in rollback["AutoRollbackConfiguration"]["Alarms"]:
        arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm['AlarmName']}"
        assert _allows(statements, "cloudwatch:DescribeAlarms", arn), arn
    assert not _allows(statements, "cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:other")
    assert not _allows(_role_statements(resolved, "PipelineStateMachineRole"), "cloudwatch:DescribeAlarms", "*")


def test_the_iam_rule_table_would_catch_a_missing_grant(resolved, definition):
    statements = [
        s for s in _role_statements(resolved, "PipelineStateMachineRole") if s.get("Sid") != "RunPreprocessJob"
    ]
    names = resource_names(SAMPLE_RUN_ID, 1, "stepml-production")
    state = definition["States"]["Preprocess data"]
    assert not all(_allows(statements, a, r) for a, r in required_permissions(state, names))


def test_the_encrypted_topics_can_be_published_to(resolved):
    statements = _role_statements(resolved, "PipelineStateMachineRole")
    key_arn = resolved.get_att("NotificationKey", "Arn")
    assert _allows(statements, "kms:GenerateDataKey", key_arn) and _allows(statements, "kms:Decrypt", key_arn)


# --- least privilege and encryption ------------------------------------------------------


def _all_policy_statements(resolved: ResolvedTemplate):
    for logical, spec in resolved.resources.items():
        props = resolved.resolved_properties(logical)
        if spec["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical, statement
        if spec["Type"] == "AWS::Serverless::Function":
            for policy in props.get("Policies", []):
                for statement in policy.get("Statement", []):
                    yield logical, statement


def test_no_wildcard_resource_unless_the_action_has_no_resource_level_permissions(resolved):
    offenders = []
    for logical, statement in _all_policy_statements(resolved):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources and statement["Effect"] == "Allow":
            justified = "HasNoResourceLevelPermissions" in statement.get("Sid", "") or "Condition" in statement
            if not justified:
                offenders.append(f"{logical}/{statement.get('Sid')}")
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a == "*" or a.endswith(":*") for a in actions) and statement["Effect"] == "Allow":
            offenders.append(f"{logical}/{statement.get('Sid')}: wildcard action")
    assert offenders == []


def test_functions_have_no_sam_managed_wildcard_policies(resolved):
    for logical, spec in resolved.resources.items():
        if spec["Type"] == "AWS::Serverless::Function":
            for policy in spec["Properties"].get("Policies", []):
                assert isinstance(policy, dict) and "Statement" in policy, f"{logical} uses a managed policy {policy}"


@pytest.mark.parametrize("bucket", ["UploadBucket", "ArtifactBucket", "AccessLogBucket"])
def test_buckets_are_encrypted_private_versioned_and_tls_only(resolved, bucket):
    props = resolved.resolved_properties(bucket)
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    policy = next(
        resolved.resolved_properties(logical)["PolicyDocument"]
        for logical, spec in resolved.resources.items()
        if spec["Type"] == "AWS::S3::BucketPolicy"
        and resolved.resolved_properties(logical)["Bucket"] == resolved.ref(bucket)
    )
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_upload_bucket_sends_events_and_the_rule_watches_incoming_only(resolved):
    assert resolved.resolved_properties("UploadBucket")["NotificationConfiguration"]["EventBridgeConfiguration"]
    assert "NotificationConfiguration" not in resolved.resolved_properties("ArtifactBucket")
    pattern = resolved.resolved_properties("UploadRule")["EventPattern"]
    assert pattern["detail"]["bucket"]["name"] == [resolved.ref("UploadBucket")]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "incoming/"}]
    assert pattern["detail-type"] == ["Object Created"]


@pytest.mark.parametrize("table", ["LineageTable", "ApprovalTable"])
def test_tables_are_on_demand_recoverable_encrypted_with_ttl(resolved, table):
    props = resolved.resolved_properties(table)
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize("topic", ["ApprovalTopic", "AlertTopic"])
def test_topics_are_encrypted_with_the_stack_key_and_subscribe_their_email(resolved, topic):
    props = resolved.resolved_properties(topic)
    assert props["KmsMasterKeyId"] == resolved.ref("NotificationKey")
    assert props["Subscription"][0]["Protocol"] == "email"


def test_state_machine_logs_everything_but_execution_data_and_traces(resolved):
    props = resolved.resolved_properties("PipelineStateMachine")
    assert props["Logging"]["Level"] == "ALL"
    assert props["Logging"]["IncludeExecutionData"] is False, "execution data would log the approval task token"
    assert props["Tracing"]["Enabled"] is True


def test_approval_signing_key_is_a_kms_hmac_key_and_not_in_any_environment(resolved):
    props = resolved.resolved_properties("ApprovalSigningKey")
    assert props["KeySpec"] == "HMAC_256" and props["KeyUsage"] == "GENERATE_VERIFY_MAC"
    for logical, spec in resolved.resources.items():
        if spec["Type"] == "AWS::Serverless::Function":
            for name in resolved.function_environment(logical):
                assert not re.search(r"SECRET|PASSWORD|TOKEN", name), f"{logical} has {name} in its environment"


def test_approval_api_is_throttled_and_logs_without_query_strings(resolved):
    props = resolved.properties("ApprovalHttpApi")
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert props["AccessLogSettings"]["DestinationArn"]
    assert (
        "queryString" not in props["AccessLogSettings"]["Format"]
        and "$context.path" not in props["AccessLogSettings"]["Format"]
    )


def test_parameters_have_the_documented_defaults(resolved):
    assert resolved.parameters["ApprovalTimeoutSeconds"] == str(7 * 24 * 3600)
    for name in (
        "ApproverEmail",
        "AlertEmail",
        "ProductionEndpointName",
        "TrainingInstanceType",
        "HostingInstanceType",
    ):
        assert resolved.parameters[name], name


def test_production_alarms_watch_the_production_endpoint_and_feed_the_rollback(resolved, definition):
    watched = (
        ("ProductionModelLatencyAlarm", "ModelLatency"),
        ("ProductionInvocation5xxAlarm", "Invocation5XXErrors"),
        ("ProductionInvocation4xxAlarm", "Invocation4XXErrors"),
    )
    for alarm, metric in watched:
        props = resolved.resolved_properties(alarm)
        assert (props["Namespace"], props["MetricName"]) == ("AWS/SageMaker", metric)
        assert {"Name": "EndpointName", "Value": resolved.parameters["ProductionEndpointName"]} in props["Dimensions"]
    rollback = definition["States"]["Update production endpoint"]["Parameters"]["DeploymentConfig"]
    alarms = {a["AlarmName"] for a in rollback["AutoRollbackConfiguration"]["Alarms"]}
    assert alarms == {resolved.ref(alarm) for alarm, _ in watched}
    # SageMaker reads them under the model's execution role: the role may describe each one.
    described = " ".join(
        str(s["Resource"]) for _, s in _all_policy_statements(resolved) if s.get("Sid") == "WatchRollbackAlarms"
    )
    assert all(resolved.ref(alarm) in described for alarm, _ in watched)


def test_the_production_update_bakes_for_the_templates_baking_period(resolved, definition):
    routing = definition["States"]["Update production endpoint"]["Parameters"]["DeploymentConfig"]
    routing = routing["BlueGreenUpdatePolicy"]
    # A substitution fills a string (DeploymentBakingSeconds, 600 by default); StringToJson turns it
    # back into the number UpdateEndpoint takes.
    assert routing["TrafficRoutingConfiguration"]["WaitIntervalInSeconds.$"] == "States.StringToJson('600')"
    spec = resolved.template["Parameters"]["DeploymentBakingSeconds"]
    # Baking plus the termination wait must stay under the update's own timeout.
    assert spec["MaxValue"] + routing["TerminationWaitInSeconds"] < routing["MaximumExecutionTimeoutInSeconds"]


def test_xgboost_image_registry_matches_the_sagemaker_sdk(resolved):
    from sagemaker.core import image_uris

    mapping = resolved.template["Mappings"]["XGBoostImageRegistry"]
    for region, entry in mapping.items():
        expected = image_uris.retrieve("xgboost", region, "1.7-1")
        assert expected.startswith(f"{entry['Account']}.dkr.ecr.{region}."), (region, expected)


def test_the_approval_email_goes_through_ses_from_the_sender_identity_only(resolved):
    statements = [s for logical, s in _all_policy_statements(resolved) if logical == "RequestApprovalFunction"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "sns:Publish" not in actions and not any(a.startswith("kms:Decrypt") for a in actions)
    [send] = [s for s in statements if s["Action"] == "ses:SendEmail"]
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/"
    # The approvers come from dataset configs, so any identity of the account may receive (SES
    # authorizes each recipient in the sandbox), but only ever from the sender's address.
    assert send["Resource"] == identity + "*"
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": "stepml-approvals@example.com"}}
    environment = resolved.function_environment("RequestApprovalFunction")
    assert environment["STEPML_APPROVAL_SENDER"] == "stepml-approvals@example.com"
    assert environment["STEPML_APPROVER_EMAIL"] == "approver@example.com"


def test_the_review_page_answers_head_and_checks_the_execution_read_only(resolved):
    events = resolved.resolved_properties("ApprovalApiFunction")["Events"]
    routes = sorted((e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values())
    assert routes == [
        ("GET", "/approvals/{approval_id}"),
        ("GET", "/auth/callback"),
        ("HEAD", "/approvals/{approval_id}"),
        ("POST", "/approvals/{approval_id}"),
    ]
    statements = {s["Sid"]: s for logical, s in _all_policy_statements(resolved) if logical == "ApprovalApiFunction"}
    check = statements["CheckExecutionStillWaits"]
    assert check["Action"] == "states:DescribeExecution"
    assert check["Resource"] == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepml-dev-pipeline:*"


# --- the job script, the dataset configs, evaluation traffic -------------------------------


def _samconfig() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())


def test_the_glue_role_reads_only_this_stacks_job_script(resolved):
    """`sam deploy` puts the script under `<managed bucket>/<s3_prefix>/`; s3_prefix is the stack name."""
    samconfig = _samconfig()
    for environment in ("dev", "prod"):
        stack_name = samconfig[environment]["global"]["parameters"]["stack_name"]
        assert samconfig[environment]["deploy"]["parameters"]["s3_prefix"] == stack_name, environment
    statements = _role_statements(resolved, "PreprocessJobRole")
    [script] = [s for s in statements if s.get("Sid") == "ReadJobScript"]
    assert script["Resource"] == "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-*/stepml-dev/*"
    bucket = "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1a2b3c4d5e6f"
    assert _allows(statements, "s3:GetObject", f"{bucket}/stepml-dev/0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    for elsewhere in (f"{bucket}/stepml-prod/0f1e2d3c", f"{bucket}/other-app/x.py", "arn:aws:s3:::someone-else/x.py"):
        assert not _allows(statements, "s3:GetObject", elsewhere), elsewhere
    # The bucket name is a wildcard, so the statement holds only for buckets this account owns.
    from stepml.local.iam import policy
    from stepml.local.iam.model import AuthorizationRequest, PolicyDocument, Principal

    document = PolicyDocument("glue", {"Version": "2012-10-17", "Statement": [script]})
    role = Principal(arn=f"arn:aws:sts::{resolved.account_id}:assumed-role/glue/s", role_arn="arn:aws:iam::1:role/g")
    for owner, allowed in ((resolved.account_id, True), ("210987654321", False)):
        request = AuthorizationRequest("s3:GetObject", f"{bucket}/stepml-dev/0f1e2d3c", {"s3:ResourceAccount": owner})
        assert policy.evaluate(role, request, [document]).allowed is allowed, owner


def _bucket_grants(statements: list[dict[str, Any]], action: str, bucket_arn: str) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        and bucket_arn in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]


def test_resolve_run_may_list_dataset_configs_so_a_missing_one_is_not_found_not_denied(resolved):
    """Without s3:ListBucket, S3 answers GetObject of a missing key with 403 AccessDenied, not 404."""
    statements = [s for logical, s in _all_policy_statements(resolved) if logical == "ResolveRunFunction"]
    [listing] = _bucket_grants(statements, "s3:ListBucket", resolved.get_att("ArtifactBucket", "Arn"))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "datasets/*"}}
    upload_bucket = resolved.get_att("UploadBucket", "Arn")
    assert _bucket_grants(statements, "s3:ListBucket", upload_bucket) == []


def test_evaluate_scores_only_test_endpoints_never_production(resolved):
    """Evaluation traffic stays out of production's data capture: Evaluate cannot invoke production."""
    statements = [s for logical, s in _all_policy_statements(resolved) if logical == "EvaluateFunction"]
    endpoint = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/"
    names = resource_names(SAMPLE_RUN_ID, 2, resolved.parameters["ProductionEndpointName"])
    assert _allows(statements, "sagemaker:InvokeEndpoint", endpoint + names["test_endpoint"])
    samconfig = _samconfig()
    overrides = [samconfig[env]["deploy"]["parameters"]["parameter_overrides"] for env in ("dev", "prod")]
    productions = {resolved.parameters["ProductionEndpointName"]} | {
        re.search(r'ProductionEndpointName="([^"]+)"', text)[1] for text in overrides
    }
    assert productions >= {"stepml-production", "stepml-dev-production"}
    for production in productions:
        for action in ("sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"):
            assert not _allows(statements, action, endpoint + production), (action, production)


def test_the_glue_role_can_pin_the_recorded_upload_version(resolved):
    """glue_jobs/preprocess.py copies the recorded version under --TempDir, reads it and deletes it."""
    statements = _role_statements(resolved, "PreprocessJobRole")
    artifacts, uploads = resolved.get_att("ArtifactBucket", "Arn"), resolved.get_att("UploadBucket", "Arn")
    temp_dir = resolved.resolved_properties("PreprocessJob")["DefaultArguments"]["--TempDir"]
    assert temp_dir == f"s3://{resolved.ref('ArtifactBucket')}/glue-temp/"
    copy = f"{artifacts}/glue-temp/stepml-input/{SAMPLE_RUN_ID}/data.csv"
    assert _allows(statements, "s3:GetObjectVersion", f"{uploads}/incoming/churn/data.csv")
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObjectVersion"):
        assert _allows(statements, action, copy), action
    assert not _allows(statements, "s3:DeleteObjectVersion", f"{artifacts}/processed/churn/{SAMPLE_RUN_ID}/x")


def test_test_endpoints_capture_nothing_and_serve_the_variants_evaluate_scores(asl):
    from stepml.evaluation import CHALLENGER_VARIANT, CHAMPION_VARIANT

    states = asl["States"]
    configs = {
        name: state["Parameters"]
        for name, state in _tasks(asl).items()
        if state["Resource"] == "arn:aws:states:::sagemaker:createEndpointConfig"
    }
    tests = {name: p for name, p in configs.items() if p["EndpointConfigName.$"] == "$.run.names.test_endpoint_config"}
    assert sorted(tests) == [
        "Create serverless test endpoint config",
        "Create test endpoint config",
        "Create test endpoint config with champion",
    ]
    for name, parameters in tests.items():
        assert "DataCaptureConfig" not in parameters, f"{name}: evaluation traffic would land in monitoring data"
    variants = {name: [v["VariantName"] for v in p["ProductionVariants"]] for name, p in tests.items()}
    assert variants == {
        "Create serverless test endpoint config": [CHALLENGER_VARIANT],  # serverless: one variant only
        "Create test endpoint config": [CHALLENGER_VARIANT],
        "Create test endpoint config with champion": [CHALLENGER_VARIANT, CHAMPION_VARIANT],
    }
    serverless = tests["Create serverless test endpoint config"]["ProductionVariants"][0]
    assert "InstanceType.$" not in serverless and set(serverless["ServerlessConfig"]) == {
        "MemorySizeInMB.$",
        "MaxConcurrency.$",
    }
    champion = tests["Create test endpoint config with champion"]["ProductionVariants"][1]
    assert champion["ModelName.$"] == "$.champion.model" and champion["InitialVariantWeight"] == 0
    assert configs["Create production endpoint config"]["DataCaptureConfig"]["EnableCapture"] is True
    assert states["Evaluate model"]["Parameters"]["Payload"]["champion.$"] == "$.champion"
    # Serverless serves no inference pipeline: its own model is the pipeline's XGBoost container alone,
    # and each config tells Evaluate who preprocesses the raw rows.
    assert serverless["ModelName.$"] == "$.run.names.test_model"
    pipeline, alone = states["Create model"]["Parameters"], states["Create serverless test model"]["Parameters"]
    assert alone["PrimaryContainer"] == pipeline["Containers"][-1] and "Containers" not in alone
    assert alone["ExecutionRoleArn"] == pipeline["ExecutionRoleArn"] and alone["EnableNetworkIsolation"] is True
    assert {name: states[name]["ResultSelector"] for name in tests} == {
        "Create serverless test endpoint config": {"preprocessing": "evaluate"},
        "Create test endpoint config": {"preprocessing": "endpoint"},
        "Create test endpoint config with champion": {"preprocessing": "endpoint"},
    }
    assert {states[name]["ResultPath"] for name in tests} == {"$.test_serving"}
    assert states["Evaluate model"]["Parameters"]["Payload"]["serving.$"] == "$.test_serving"
    assert states["Create model"]["Next"] == "Find champion"


# --- packaging and checkov's findings ------------------------------------------------------------


def test_the_library_layer_is_built_by_the_makefile_and_named_per_stack():
    template = load_template(REPO_ROOT / "template.yaml")
    layer = template["Resources"]["StepmlLibraryLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (REPO_ROOT / layer["Metadata"]["ContextPath"] / "Makefile").read_text()
    assert re.search(r"^build-StepmlLibraryLayer:", makefile, re.M)
    names = {
        stack: ResolvedTemplate(template, stack_name=stack).resolved_properties("StepmlLibraryLayer")["LayerName"]
        for stack in ("stepml-dev", "stepml-prod")
    }
    assert names == {"stepml-dev": "stepml-dev-stepml-library", "stepml-prod": "stepml-prod-stepml-library"}


def test_the_upload_and_artifact_buckets_log_access_to_the_log_bucket_once_it_accepts_logs(resolved):
    for bucket in ("UploadBucket", "ArtifactBucket"):
        logging = resolved.resolved_properties(bucket)["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == resolved.ref("AccessLogBucket") and logging["LogFilePrefix"]
        assert resolved.resource(bucket)["DependsOn"] == "AccessLogBucketPolicy"
    assert "LoggingConfiguration" not in resolved.resolved_properties("AccessLogBucket")
    policy = resolved.resolved_properties("AccessLogBucketPolicy")["PolicyDocument"]
    (delivery,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"} and delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    sse = resolved.resolved_properties("AccessLogBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse[0]["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}, "a log target takes SSE-S3 only"


def test_log_groups_are_encrypted_with_a_key_cloudwatch_logs_may_use_for_them_only(resolved):
    key = resolved.resolved_properties("LogKey")
    assert key["EnableKeyRotation"] is True
    (logs,) = [s for s in key["KeyPolicy"]["Statement"] if s.get("Principal", {}).get("Service")]
    assert logs["Principal"]["Service"] == f"logs.{REGION}.amazonaws.com"
    (pattern,) = logs["Condition"]["ArnLike"].values()
    assert list(logs["Condition"]["ArnLike"]) == ["kms:EncryptionContext:aws:logs:arn"]
    for group in ("ApprovalApiAccessLogs", "PipelineLogGroup"):
        assert resolved.resolved_properties(group)["KmsKeyId"] == resolved.get_att("LogKey", "Arn")
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{resolved.ref(group)}"
        assert fnmatch.fnmatchcase(arn, pattern)
    assert not fnmatch.fnmatchcase(f"arn:aws:logs:{REGION}:999999999999:log-group:x", pattern)


def test_the_glue_job_encrypts_its_logs_and_bookmarks_and_may_use_the_key(resolved):
    encryption = resolved.resolved_properties("GlueSecurityConfiguration")["EncryptionConfiguration"]
    key_arn = resolved.get_att("LogKey", "Arn")
    assert encryption["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn}
    assert encryption["JobBookmarksEncryption"] == {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": key_arn}
    statements = _role_statements(resolved, "PreprocessJobRole")
    glue_logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/jobs/stepml-dev-preprocess-role/x/output"
    assert _allows(statements, "logs:AssociateKmsKey", glue_logs)
    assert all(_allows(statements, a, key_arn) for a in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"))


def test_the_public_approval_function_has_reserved_concurrency_no_lower_than_the_apis_burst(resolved):
    reserved = int(resolved.resolved_properties("ApprovalApiFunction")["ReservedConcurrentExecutions"])
    burst = int(resolved.resolved_properties("ApprovalHttpApi")["DefaultRouteSettings"]["ThrottlingBurstLimit"])
    assert reserved > 0 and reserved >= burst, "the API throttles a burst before Lambda does"


def test_every_checkov_suppression_names_a_check_and_gives_its_reason():
    template = load_template(REPO_ROOT / "template.yaml")
    skips = [
        (logical, skip)
        for logical, spec in template["Resources"].items()
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "the template suppresses the findings it does not fix"
    for logical, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (logical, skip)
        assert len(skip.get("comment", "")) >= 40, f"{logical} {skip['id']}: say why"


def test_model_monitor_image_registry_matches_the_sagemaker_sdk(resolved):
    from sagemaker.core import image_uris

    mapping = resolved.template["Mappings"]["ModelMonitorImageRegistry"]
    for region, entry in mapping.items():
        expected = image_uris.retrieve("model-monitor", region)
        assert expected.startswith(f"{entry['Account']}.dkr.ecr.{region}."), (region, expected)
    assert expected.endswith("/sagemaker-model-monitor-analyzer")


def test_sklearn_image_registry_matches_the_sagemaker_sdk(resolved):
    """The preprocessor's image (the Scikit-learn serving container) per region, as the SDK resolves it."""
    from sagemaker.core import image_uris

    mapping = resolved.template["Mappings"]["SklearnImageRegistry"]
    assert set(mapping) == set(resolved.template["Mappings"]["XGBoostImageRegistry"])
    for region, entry in mapping.items():
        expected = image_uris.retrieve("sklearn", region, version="1.2-1")
        assert expected.startswith(f"{entry['Account']}.dkr.ecr.{region}."), (region, expected)
        assert expected.endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3"), expected


def test_the_monitoring_role_reads_baselines_and_capture_and_writes_reports_only(resolved):
    statements = [s for logical, s in _all_policy_statements(resolved) if logical == "ModelMonitorRole"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["WriteReports"]["Action"] == "s3:PutObject"
    assert by_sid["WriteReports"]["Resource"].endswith("/monitoring/*")
    assert by_sid["DataQualityMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "aws/sagemaker/Endpoints/data-metrics"}
    }
    pipeline = {s["Sid"]: s for logical, s in _all_policy_statements(resolved) if logical == "PipelineStateMachineRole"}
    assert pipeline["PassModelMonitorRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert pipeline["DriftAlarms"]["Condition"] == {
        "ForAllValues:StringEquals": {"cloudwatch:AlarmActions": [resolved.ref("AlertTopic")]}
    }
