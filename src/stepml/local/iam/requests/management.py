"""What a CloudWatch Logs, CloudWatch, SSM, ECR, Service Quotas or CloudFormation call asks IAM for."""

from __future__ import annotations

from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, need, pass_role, with_tag_on_create

# --- CloudWatch Logs, CloudWatch ---

# CloudWatch Logs authorizes log-group operations on
# arn:aws:logs:R:A:log-group:NAME:log-stream: and stream operations on
# ...:log-group:NAME:log-stream:STREAM (the resources AWS names in its denials; policies write
# log-group:NAME:* for both). DescribeLogGroups names log-group::log-stream:.

_LOGS_STREAM_OPERATIONS = frozenset({"CreateLogStream", "PutLogEvents", "GetLogEvents", "DeleteLogStream"})


def logs_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a CloudWatch Logs call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"logs:{operation}"
    if operation == "DescribeLogGroups":
        return [need(action, env.arn("logs", "log-group::log-stream:"))]
    group = params.get("logGroupName") or params.get("logGroupIdentifier")
    if group and str(group).startswith("arn:"):
        group = str(group).split(":log-group:", 1)[-1].removesuffix(":*")
    if group:
        stream = params.get("logStreamName", "") if operation in _LOGS_STREAM_OPERATIONS else ""
        requests = [need(action, env.arn("logs", f"log-group:{group}:log-stream:{stream}"))]
        return with_tag_on_create(env, requests)
    names = params.get("logGroupNames") or params.get("logGroupIdentifiers")
    if names:
        return [need(action, env.arn("logs", f"log-group:{name}:log-stream:")) for name in names]
    if params.get("resourceArn"):
        return [need(action, params["resourceArn"])]
    return None


_CLOUDWATCH_ALARM_OPERATIONS = frozenset(
    {"DeleteAlarms", "DescribeAlarms", "EnableAlarmActions", "DisableAlarmActions", "PutMetricAlarm",
     "PutCompositeAlarm", "SetAlarmState", "DescribeAlarmHistory"}
)  # fmt: skip


def cloudwatch_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a CloudWatch call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"cloudwatch:{operation}"
    if operation == "PutMetricData":
        return [need(action, "*", {"cloudwatch:namespace": params.get("Namespace")})]
    if operation in _CLOUDWATCH_ALARM_OPERATIONS:
        names = params.get("AlarmNames") or ([params["AlarmName"]] if params.get("AlarmName") else [])
        if not names:
            return [need(action, "*")]
        context: dict[str, Any] = {}
        if operation in ("PutMetricAlarm", "PutCompositeAlarm"):
            context["cloudwatch:AlarmActions"] = params.get("AlarmActions")
        requests = [need(action, env.arn("cloudwatch", f"alarm:{name}"), context) for name in names]
        return with_tag_on_create(env, requests)
    if operation in ("PutDashboard", "GetDashboard"):
        return [need(action, env.arn("cloudwatch", f"dashboard/{params.get('DashboardName', '')}", region=""))]
    if operation == "DeleteDashboards":
        return [
            need(action, env.arn("cloudwatch", f"dashboard/{name}", region=""))
            for name in params.get("DashboardNames") or []
        ]
    if params.get("ResourceARN"):
        return [need(action, params["ResourceARN"])]
    return None


# --- SSM, ECR, Service Quotas, CloudFormation ---


def _ssm_parameter_arn(env: CallEnv, name: str) -> str:
    """arn:aws:ssm:R:A:parameter/NAME, NAME without its leading slash and without a
    ``:version`` or ``:label`` selector (which is not part of the name)."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:6])
    base = name.rsplit(":", 1)[0] if ":" in name else name
    return env.arn("ssm", f"parameter/{base.lstrip('/')}")


def ssm_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an SSM call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"ssm:{operation}"
    if operation in ("GetParameters", "DeleteParameters"):
        return [need(action, _ssm_parameter_arn(env, name)) for name in params.get("Names") or []]
    if operation == "GetParametersByPath":
        return [need(action, env.arn("ssm", f"parameter/{str(params.get('Path', '/')).strip('/')}"))]
    if params.get("Name"):
        context = {"ssm:Overwrite": str(bool(params.get("Overwrite"))).lower()} if operation == "PutParameter" else {}
        return with_tag_on_create(env, [need(action, _ssm_parameter_arn(env, str(params["Name"])), context)])
    return None


def ecr_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an ECR call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"ecr:{operation}"
    account = params.get("registryId") or env.account
    if operation == "GetAuthorizationToken":
        return [need(action, "*")]
    if operation == "DescribeRepositories" and params.get("repositoryNames"):
        return [
            need(action, env.arn("ecr", f"repository/{name}", account=account)) for name in params["repositoryNames"]
        ]
    if params.get("repositoryName"):
        requests = [need(action, env.arn("ecr", f"repository/{params['repositoryName']}", account=account))]
        return with_tag_on_create(env, requests)
    if params.get("resourceArn"):
        return [need(action, params["resourceArn"])]
    return None


def service_quotas_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a Service Quotas call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"servicequotas:{operation}"
    service, quota = params.get("ServiceCode"), params.get("QuotaCode")
    if service and quota and operation in (
        "GetServiceQuota", "RequestServiceQuotaIncrease", "GetAWSDefaultServiceQuota",
        "PutServiceQuotaIncreaseRequestIntoTemplate",
    ):  # fmt: skip
        context = {"servicequotas:service": service} if operation == "RequestServiceQuotaIncrease" else {}
        return [need(action, env.arn("servicequotas", f"{service}/{quota}"), context)]
    return None


def cloudformation_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a CloudFormation call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"cloudformation:{operation}"
    name = params.get("StackName")
    if not name:
        return None
    name = str(name)
    if name.startswith("arn:"):
        stack = name
    else:
        # The stack ARN ends in the stack's id; without a resolver that knows it, the id is a
        # wildcard that only matches stack/NAME/* policy resources.
        stack = env.optional("cloudformation_stack_arn", name) or env.arn("cloudformation", f"stack/{name}/*")
    context = {"cloudformation:RoleArn": params.get("RoleARN"), "cloudformation:TemplateUrl": params.get("TemplateURL")}
    requests = [need(action, stack, {k: v for k, v in context.items() if v})]
    if params.get("RoleARN") and operation in ("CreateStack", "UpdateStack", "CreateChangeSet", "DeleteStack"):
        requests.append(pass_role(env, params["RoleARN"], "cloudformation.amazonaws.com"))
    return with_tag_on_create(env, requests)
