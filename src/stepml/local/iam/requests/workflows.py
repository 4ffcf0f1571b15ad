"""What a Step Functions, Glue, EventBridge or Lambda call asks IAM for."""

from __future__ import annotations

import json
import re
from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, first_at, need, pass_role, with_tag_on_create

# --- Step Functions ---

# Source: Service Authorization Reference for AWS Step Functions (resources activity,
# execution, stateMachine ...; SendTaskSuccess/Failure/Heartbeat are authorized on the state
# machine or activity the task belongs to).

_STATES_ARN_MEMBERS = (
    "executionArn", "stateMachineArn", "activityArn", "mapRunArn", "resourceArn",
    "stateMachineAliasArn", "stateMachineVersionArn",
)  # fmt: skip


def stepfunctions_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a Step Functions call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"states:{operation}"
    if operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"):
        owner = env.resolver.state_machine_of_task_token(str(params.get("taskToken", "")))
        return [need(action, owner or "*")]
    if operation in ("ListStateMachines", "ListActivities", "ValidateStateMachineDefinition"):
        return [need(action, "*")]
    requests: list[AuthorizationRequest]
    if operation == "CreateStateMachine":
        requests = [need(action, env.arn("states", f"stateMachine:{params.get('name', '')}"))]
    elif operation == "CreateActivity":
        requests = [need(action, env.arn("states", f"activity:{params.get('name', '')}"))]
    elif operation == "TestState":
        requests = [need(action, "*")]
        if params.get("revealSecrets"):  # "IAM permissions for using TestState API"
            requests.append(need("states:RevealSecrets", "*"))
    else:
        member = next((name for name in _STATES_ARN_MEMBERS if params.get(name)), None)
        if member is None:
            return None
        requests = [need(action, params[member])]
    if operation in ("CreateStateMachine", "UpdateStateMachine", "TestState") and params.get("roleArn"):
        requests.append(pass_role(env, params["roleArn"], "states.amazonaws.com"))
    return with_tag_on_create(env, requests)


# --- Glue ---

# Source: Service Authorization Reference for AWS Glue (job, crawler, trigger, workflow ARNs;
# Data Catalog operations are authorized on the catalog, the database and the table).

_GLUE_NAMED = {
    "job": ("StartJobRun", "GetJobRun", "GetJobRuns", "BatchStopJobRun", "GetJob", "UpdateJob", "DeleteJob",
            "GetJobBookmark", "ResetJobBookmark", "CreateJob"),
    "crawler": ("StartCrawler", "StopCrawler", "GetCrawler", "UpdateCrawler", "DeleteCrawler", "CreateCrawler",
                "GetCrawlerMetrics"),
    "trigger": ("StartTrigger", "StopTrigger", "GetTrigger", "UpdateTrigger", "DeleteTrigger", "CreateTrigger"),
    "workflow": ("StartWorkflowRun", "GetWorkflow", "GetWorkflowRun", "GetWorkflowRuns", "UpdateWorkflow",
                 "DeleteWorkflow", "CreateWorkflow"),
}  # fmt: skip
_GLUE_NAME_MEMBERS = ("JobName", "Name", "CrawlerName", "TriggerName", "WorkflowName")


def glue_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a Glue call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"glue:{operation}"
    account = params.get("CatalogId") or env.account
    for resource_type, operations in _GLUE_NAMED.items():
        if operation in operations:
            name = next((params[member] for member in _GLUE_NAME_MEMBERS if params.get(member)), None)
            if name is None:
                return None
            requests = [need(action, env.arn("glue", f"{resource_type}/{name}"))]
            role = params.get("Role") or first_at(params, "JobUpdate", "Role") or first_at(params, "Crawler", "Role")
            if role and operation in ("CreateJob", "UpdateJob", "CreateCrawler", "UpdateCrawler"):
                requests.append(pass_role(env, role, "glue.amazonaws.com"))
            return with_tag_on_create(env, requests)
    if operation in ("BatchGetJobs", "BatchGetCrawlers", "BatchGetTriggers", "BatchGetWorkflows"):
        kind = {"BatchGetJobs": "job", "BatchGetCrawlers": "crawler", "BatchGetTriggers": "trigger",
                "BatchGetWorkflows": "workflow"}[operation]  # fmt: skip
        names = (
            params.get("JobNames")
            or params.get("CrawlerNames")
            or params.get("TriggerNames")
            or params.get("Names")
            or []
        )
        return [need(action, env.arn("glue", f"{kind}/{name}")) for name in names]
    catalog = env.arn("glue", "catalog", account=account)
    database = params.get("DatabaseName") or first_at(params, "DatabaseInput", "Name")
    if operation in ("GetDatabase", "DeleteDatabase", "UpdateDatabase"):
        database = params.get("Name")
    table = params.get("TableName") or first_at(params, "TableInput", "Name")
    if operation in ("GetTable", "DeleteTable"):
        table = params.get("Name")
    if database is None:
        if operation in ("GetDatabases", "SearchTables"):
            return [need(action, catalog), need(action, env.arn("glue", "database/*", account=account))]
        return None
    requests = [need(action, catalog), need(action, env.arn("glue", f"database/{database}", account=account))]
    if table is not None:
        requests.append(need(action, env.arn("glue", f"table/{database}/{table}", account=account)))
    elif operation in ("GetTables", "GetTableVersions", "DeleteDatabase"):
        requests.append(need(action, env.arn("glue", f"table/{database}/*", account=account)))
    return requests


# --- EventBridge ---

# Source: Service Authorization Reference for Amazon EventBridge (event-bus and rule ARNs; a
# rule on a custom bus is rule/<bus>/<name>; events:source and events:detail-type on PutEvents,
# from the pattern on PutRule; events:TargetArn on PutTargets; iam:PassRole for target roles).


def _bus_name(value: str | None) -> str:
    if not value:
        return "default"
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _event_bus_arn(env: CallEnv, value: str | None) -> str:
    if value and value.startswith("arn:"):
        return value
    return env.arn("events", f"event-bus/{_bus_name(value)}")


def _rule_arn(env: CallEnv, name: str, bus: str | None) -> str:
    bus_name = _bus_name(bus)
    return env.arn("events", f"rule/{name}" if bus_name == "default" else f"rule/{bus_name}/{name}")


def _pattern_values(pattern: Any, key: str) -> list[str] | None:
    if not isinstance(pattern, str):
        return None
    try:
        values = json.loads(pattern).get(key)
    except (ValueError, AttributeError):
        return None
    if isinstance(values, list):
        return [value for value in values if isinstance(value, str)] or None
    return [values] if isinstance(values, str) else None


def events_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an EventBridge call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"events:{operation}"
    if operation == "PutEvents":
        requests = []
        for entry in params.get("Entries") or []:
            context = {"events:source": entry.get("Source"), "events:detail-type": entry.get("DetailType")}
            requests.append(need(action, _event_bus_arn(env, entry.get("EventBusName")), context))
        return requests or [need(action, _event_bus_arn(env, None))]
    if operation == "PutRule":
        context = {
            "events:source": _pattern_values(params.get("EventPattern"), "source"),
            "events:detail-type": _pattern_values(params.get("EventPattern"), "detail-type"),
        }
        requests = [need(action, _rule_arn(env, str(params.get("Name", "")), params.get("EventBusName")), context)]
        if params.get("RoleArn"):
            requests.append(pass_role(env, params["RoleArn"], "events.amazonaws.com"))
        return with_tag_on_create(env, requests)
    if operation == "PutTargets":
        targets = params.get("Targets") or []
        context = {"events:TargetArn": [target.get("Arn") for target in targets if target.get("Arn")] or None}
        requests = [need(action, _rule_arn(env, str(params.get("Rule", "")), params.get("EventBusName")), context)]
        roles = sorted({target["RoleArn"] for target in targets if target.get("RoleArn")})
        requests += [pass_role(env, role, "events.amazonaws.com") for role in roles]
        return requests
    if operation in ("DescribeRule", "DeleteRule", "EnableRule", "DisableRule", "ListTargetsByRule", "RemoveTargets"):
        name = params.get("Name") or params.get("Rule") or ""
        return [need(action, _rule_arn(env, str(name), params.get("EventBusName")))]
    if operation in ("CreateEventBus", "DescribeEventBus", "DeleteEventBus", "UpdateEventBus"):
        return with_tag_on_create(env, [need(action, _event_bus_arn(env, params.get("Name")))])
    if operation in ("PutPermission", "RemovePermission"):
        return [need(action, _event_bus_arn(env, params.get("EventBusName")))]
    if params.get("ResourceARN"):
        return [need(action, params["ResourceARN"])]
    return None


# --- Lambda ---

# Source: Service Authorization Reference for AWS Lambda and the Lambda Developer Guide
# ("Fine-tuning the Resources and Conditions sections of policies": a qualified ARN is
# function:NAME:QUALIFIER, which function:NAME alone does not match; CreateFunction needs
# iam:PassRole for the execution role and lambda:TagResource for tags).

_LAMBDA_ACTIONS = {
    "Invoke": "lambda:InvokeFunction",
    "InvokeWithResponseStream": "lambda:InvokeFunction",
    "InvokeAsync": "lambda:InvokeFunction",
    "GetLayerVersionByArn": "lambda:GetLayerVersion",
}

_LAMBDA_ARN = re.compile(r"^arn:[^:]+:lambda:[^:]*:\d{12}:function:([^:]+)(?::([^:]+))?$")
_LAMBDA_PARTIAL = re.compile(r"^(\d{12}):function:([^:]+)(?::([^:]+))?$")


def _lambda_function(env: CallEnv, name: str, qualifier: str | None) -> str:
    """The function ARN Lambda authorizes: unqualified, or ``...:function:NAME:QUALIFIER`` for a
    version or alias, given in ``Qualifier`` or in the name (``NAME:QUALIFIER``, a qualified ARN)."""
    match = _LAMBDA_ARN.match(name)
    partial = _LAMBDA_PARTIAL.match(name)
    if match:
        from_name = match.group(2)
        base = name.rsplit(":", 1)[0] if from_name else name
    elif partial:
        from_name = partial.group(3)
        base = env.resolver.lambda_function_arn(f"{partial.group(1)}:function:{partial.group(2)}")
    else:
        bare, _, selector = name.partition(":")
        from_name = selector or None
        base = env.resolver.lambda_function_arn(bare)
    qualifier = qualifier or from_name
    return f"{base}:{qualifier}" if qualifier else base


def lambda_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a Lambda call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = _LAMBDA_ACTIONS.get(operation, f"lambda:{operation}")
    if operation == "ListFunctions":
        return [need(action, "*")]
    if params.get("FunctionName"):
        resource = _lambda_function(env, str(params["FunctionName"]), params.get("Qualifier"))
        context: dict[str, Any] = {}
        if operation == "AddPermission":
            context = {
                "lambda:Principal": params.get("Principal"),
                "lambda:FunctionUrlAuthType": params.get("FunctionUrlAuthType"),
            }
        if operation in ("CreateFunction", "UpdateFunctionConfiguration"):
            vpc = params.get("VpcConfig") or {}
            context = {
                "lambda:Layer": params.get("Layers"),
                "lambda:SubnetIds": vpc.get("SubnetIds"),
                "lambda:SecurityGroupIds": vpc.get("SecurityGroupIds"),
                "lambda:CodeSigningConfigArn": params.get("CodeSigningConfigArn"),
            }
        requests = [need(action, resource, context)]
        if operation in ("CreateFunction", "UpdateFunctionConfiguration") and params.get("Role"):
            requests.append(pass_role(env, params["Role"], "lambda.amazonaws.com"))
        return with_tag_on_create(env, requests)
    for member in ("Resource", "Arn", "LayerName"):
        if params.get(member):
            value = str(params[member])
            if member == "LayerName" and not value.startswith("arn:"):
                value = env.arn("lambda", f"layer:{value}")
            return [need(action, value)]
    return None
