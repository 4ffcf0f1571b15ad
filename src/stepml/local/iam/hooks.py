"""Where the local cloud acts under a role: the hooks that make those calls signed and checked.

- Step Functions: moto's interpreter signs every service call with fixed keys
  (``boto_client_for``); here it signs with the state machine role's credentials (or the
  Task's ``Credentials.RoleArn``), so the gate checks the role's policies as AWS does.
- The ``.sync`` patterns: AWS calls more than the Task's API behind the scenes (the EventBridge
  managed rule of SageMaker training, ``ListTags``, the Glue job-run listing and stopping); the
  role needs the rights AWS documents for the pattern, checked when the Task starts.

``install`` applies the registered patches that make an ``Authorizer`` the active one (the
engines ask ``active()``) and route Step Functions' calls through it, and returns the function
that undoes them.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from stepml.local.iam.gate import AccessDeniedError, Authorizer
from stepml.local.iam.model import AuthorizationRequest
from stepml.local.patching import Patch, register
from stepml.local.stepfunctions.definitions import sync_tasks

#: The session name the local cloud gives Step Functions' calls under the state machine role.
STATES_SESSION = "StepFunctions"

_active: Authorizer | None = None


def active() -> Authorizer | None:
    """The running local cloud's authorizer (None outside a local cloud: nothing is checked)."""
    return _active


#: The EventBridge rule Step Functions manages in the account for each `.sync` integration that
#: learns of its job's end by event (AWS's documented policies for these integrations). Glue's
#: startJobRun.sync polls instead and has none.
MANAGED_RULES: dict[tuple[str, str], str] = {
    ("sagemaker", "createTrainingJob"): "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    ("sagemaker", "createTransformJob"): "StepFunctionsGetEventsForSageMakerTransformJobsRule",
    ("sagemaker", "createProcessingJob"): "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    ("sagemaker", "createHyperParameterTuningJob"): "StepFunctionsGetEventsForSageMakerTuningJobsRule",
    ("states", "startExecution"): "StepFunctionsGetEventsForStepFunctionsExecutionRule",
    ("ecs", "runTask"): "StepFunctionsGetEventsForECSTaskRule",
    ("batch", "submitJob"): "StepFunctionsGetEventsForBatchJobsRule",
    ("codebuild", "startBuild"): "StepFunctionsGetEventsForCodeBuildStartBuildRule",
}
_MANAGED_RULE_ACTIONS = ("events:PutTargets", "events:PutRule", "events:DescribeRule")


def _managed_rule_requests(service: str, api: str, account: str, region: str) -> list[AuthorizationRequest]:
    rule = MANAGED_RULES.get((service, api))
    if rule is None:
        return []
    arn = f"arn:aws:events:{region}:{account}:rule/{rule}"
    return [AuthorizationRequest(action, arn) for action in _MANAGED_RULE_ACTIONS]


def _sync_requirements(service: str, api: str, parameters: dict[str, Any], account: str, region: str) -> list:
    """What AWS's documented policy for ``service:api.sync`` adds to the API call itself."""
    if service == "sagemaker" and api == "createTrainingJob":
        job = f"arn:aws:sagemaker:{region}:{account}:training-job/{str(parameters.get('TrainingJobName', '')).lower()}"
        return [
            AuthorizationRequest("sagemaker:DescribeTrainingJob", job),
            AuthorizationRequest("sagemaker:StopTrainingJob", job),
            AuthorizationRequest("sagemaker:ListTags", job),
            *_managed_rule_requests(service, api, account, region),
        ]
    if service == "sagemaker" and api == "createTransformJob":
        # The same documented shape as training's, without iam:PassRole (a transform job runs as its model's role).
        name = str(parameters.get("TransformJobName", "")).lower()
        job = f"arn:aws:sagemaker:{region}:{account}:transform-job/{name}"
        return [
            AuthorizationRequest("sagemaker:DescribeTransformJob", job),
            AuthorizationRequest("sagemaker:StopTransformJob", job),
            AuthorizationRequest("sagemaker:ListTags", job),
            *_managed_rule_requests(service, api, account, region),
        ]
    if service == "glue" and api == "startJobRun":
        job = f"arn:aws:glue:{region}:{account}:job/{parameters.get('JobName', '')}"
        return [
            AuthorizationRequest("glue:GetJobRun", job),
            AuthorizationRequest("glue:GetJobRuns", job),
            AuthorizationRequest("glue:BatchStopJobRun", job),
        ]
    return []


def _access_denied(error: AccessDeniedError) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": error.message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        error.request.action.split(":", 1)[1],
    )


def _install_active(patch: Patch, authorizer: Authorizer) -> None:
    patch.replace(sys.modules[__name__], "_active", authorizer)


def _install_signed_calls(patch: Patch, authorizer: Authorizer) -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

    original_factory = boto_client_module.boto_client_for

    @functools.wraps(original_factory)
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original_factory(region=region, service=service, state_credentials=state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:
            return client
        credentials = authorizer.principals.credentials(role_arn, STATES_SESSION)
        return _signed_as(client, credentials.client_kwargs())

    # Every interpreter module imports boto_client_for by name: import them all first, so
    # none of them keeps the unsigned factory.
    for module_name in _modules_using_client_factory():
        importlib.import_module(module_name)
    for name, module in list(sys.modules.items()):
        if (name.startswith("moto.stepfunctions") or name.startswith("stepml.local")) and getattr(
            module, "boto_client_for", None
        ) is original_factory:
            patch.replace(module, "boto_client_for", boto_client_for)


def _install_sync_rights(patch: Patch, authorizer: Authorizer) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback_module,
    )

    callback_class = callback_module.StateTaskServiceCallback
    original_pattern = callback_class._eval_integration_pattern

    @functools.wraps(original_pattern)
    def _eval_integration_pattern(self, env, resource_runtime_part, normalised_parameters, state_credentials):  # type: ignore[no-untyped-def]
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
            ResourceCondition,
        )

        role_arn = getattr(state_credentials, "role_arn", None)
        if role_arn and self.resource.condition == ResourceCondition.Sync:
            needed = _sync_requirements(
                self.resource.service_name,
                self.resource.api_action,
                normalised_parameters,
                resource_runtime_part.account,
                resource_runtime_part.region,
            )
            try:
                authorizer.require_role(role_arn, STATES_SESSION, needed, service=self.resource.service_name)
            except AccessDeniedError as denied:
                raise _access_denied(denied) from denied
        return original_pattern(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    patch.replace(callback_class, "_eval_integration_pattern", _eval_integration_pattern)


#: The engines (the events targets, SageMaker, the Step Functions integrations) ask ``active()``
#: from many modules, so the authorizer stays a module-level one; this patch is the only way it
#: is set, so the cloud's undo puts back the one before (None: nothing is checked).
ACTIVE_AUTHORIZER = register(
    Patch(
        name="iam.active-authorizer",
        why=(
            "moto checks no IAM policy for calls it makes on a service's behalf. This patch changes no moto "
            "code: it makes a running cloud's Authorizer the one the engines consult through "
            "stepml.local.iam.hooks.active() (an EventBridge target's role, SageMaker's execution role), and "
            "undoes to the one before."
        ),
        test=(
            "tests/local/test_iam_enforcement.py::"
            "test_an_event_whose_target_role_cannot_start_the_pipeline_goes_to_the_dead_letter_queue"
        ),
        install=_install_active,
        scope="cloud",
    )
)
SIGNED_CALLS = register(
    Patch(
        name="states.role-signed-calls",
        why=(
            "moto's Step Functions interpreter signs every service call of a Task with fixed keys "
            "(boto_client_for), so no role is ever checked. The local cloud signs them with the state machine "
            "role's (or the Task's Credentials.RoleArn) session credentials, so the IAM gate checks the role's "
            "policies as AWS does."
        ),
        test=(
            "tests/local/test_iam_enforcement.py::"
            "test_a_state_machine_whose_role_cannot_invoke_its_lambda_fails_its_task_with_lambdas_error"
        ),
        install=_install_signed_calls,
        scope="cloud",
    )
)
SYNC_RIGHTS = register(
    Patch(
        name="states.sync-role-rights",
        why=(
            "A .sync Task makes AWS call more than the Task's API behind the scenes (the managed EventBridge "
            "rule, ListTags, the job's describe and stop calls), which moto never calls. The local cloud "
            "requires the rights AWS documents for the pattern of the state machine role when the Task starts."
        ),
        test=(
            "tests/local/test_iam_enforcement.py::"
            "test_a_training_task_whose_role_lacks_a_documented_right_fails_with_the_denial"
        ),
        install=_install_sync_rights,
        scope="cloud",
    )
)


#: What Step Functions needs of the state machine role to deliver logs to CloudWatch Logs
#: (AWS's documented policy for logging; these actions have no resource-level permissions).
LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
#: What X-Ray tracing needs of the state machine role.
TRACING_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)


def _logging_on(configuration: Any) -> bool:
    return (
        bool(configuration) and configuration.get("level", "OFF") != "OFF" and bool(configuration.get("destinations"))
    )


def _check_definition_role(
    authorizer: Authorizer,
    role_arn: str | None,
    definition: Any,
    logging_configuration: Any,
    tracing_configuration: Any,
) -> None:
    """CreateStateMachine/UpdateStateMachine with logging refuse a role that cannot deliver logs
    (AWS: AccessDeniedException, "The state machine IAM Role is not authorized to access the Log
    Destination"). Tracing is checked and recorded too, but, as in AWS, a role without X-Ray
    rights does not stop the state machine; its traces are lost."""
    from moto.core.exceptions import AWSError

    if not role_arn:
        return
    principal_session = STATES_SESSION
    # Step Functions creates the managed EventBridge rules of the definition's `.sync` Tasks when
    # the state machine is created or updated, as its role.
    try:
        parsed = json.loads(definition) if isinstance(definition, str) else definition
    except ValueError:
        parsed = None  # the definition's own validation answers for it
    integrations = dict.fromkeys((task.service, task.api) for task in sync_tasks(parsed))
    rules = [
        request
        for service, api in integrations
        for request in _managed_rule_requests(service, api, authorizer.policies.account, authorizer.policies.region)
    ]
    try:
        authorizer.require_role(role_arn, principal_session, rules, service="stepfunctions")
    except AccessDeniedError as denied:
        raise AWSError(f"'{role_arn}' is not authorized to create managed-rule.", "AccessDeniedException") from denied
    if _logging_on(logging_configuration):
        try:
            authorizer.require_role(
                role_arn,
                principal_session,
                [AuthorizationRequest(action, "*") for action in LOG_DELIVERY_ACTIONS],
                service="stepfunctions",
            )
        except AccessDeniedError as denied:
            raise AWSError(
                f"The state machine IAM Role is not authorized to access the Log Destination ({denied.message})",
                "AccessDeniedException",
            ) from denied
    if tracing_configuration and tracing_configuration.get("enabled"):
        principal = authorizer.principals.session(role_arn, principal_session)
        for action in TRACING_ACTIONS:
            authorizer.check(principal, AuthorizationRequest(action, "*"), service="xray")


def _install_definition_rights(patch: Patch, authorizer: Authorizer) -> None:
    from moto.stepfunctions.models import StepFunctionBackend

    original_create = StepFunctionBackend.create_state_machine
    original_update = StepFunctionBackend.update_state_machine

    def check(role_arn: str | None, definition: Any, logging_configuration: Any, tracing_configuration: Any) -> None:
        _check_definition_role(authorizer, role_arn, definition, logging_configuration, tracing_configuration)

    @functools.wraps(original_create)
    def create_state_machine(self, name, definition, roleArn, *args, **kwargs):  # type: ignore[no-untyped-def]
        check(roleArn, definition, kwargs.get("loggingConfiguration"), kwargs.get("tracingConfiguration"))
        return original_create(self, name, definition, roleArn, *args, **kwargs)

    @functools.wraps(original_update)
    def update_state_machine(self, arn, *args, **kwargs):  # type: ignore[no-untyped-def]
        role_arn = kwargs.get("role_arn")
        definition = kwargs.get("definition")
        if role_arn is None or definition is None:
            try:
                current = self.describe_state_machine(arn)
            except Exception:
                current = None
            role_arn = role_arn or getattr(current, "roleArn", None)
            definition = definition or getattr(current, "definition", None)
        check(role_arn, definition, kwargs.get("logging_configuration"), kwargs.get("tracing_configuration"))
        return original_update(self, arn, *args, **kwargs)

    patch.replace(StepFunctionBackend, "create_state_machine", create_state_machine)
    patch.replace(StepFunctionBackend, "update_state_machine", update_state_machine)


DEFINITION_RIGHTS = register(
    Patch(
        name="states.definition-role-rights",
        why=(
            "moto's CreateStateMachine and UpdateStateMachine accept any role. AWS refuses a role that cannot "
            "create the managed rules of the definition's .sync Tasks or, with logging on, deliver logs "
            "(AccessDeniedException), and records its X-Ray rights; the local cloud checks the same."
        ),
        test=(
            "tests/local/test_iam_enforcement.py::"
            "test_create_state_machine_with_logging_refuses_a_role_that_cannot_deliver_logs"
        ),
        install=_install_definition_rights,
        scope="cloud",
    )
)


def _modules_using_client_factory() -> list[str]:
    """The interpreter modules that call ``boto_client_for`` (found in moto's source)."""
    import moto.stepfunctions.parser as parser_package

    root = Path(parser_package.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        if "boto_client_for" in path.read_text(encoding="utf-8"):
            relative = path.relative_to(root.parent.parent.parent).with_suffix("")
            names.append(".".join(relative.parts))
    return names


def _signed_as(client: Any, credentials: dict[str, str]) -> Any:
    """The same client (service, region, endpoint, config) signed with other credentials."""
    import boto3

    return boto3.client(
        client.meta.service_model.service_name,
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url,
        config=client.meta.config,
        **credentials,
    )


#: The IAM patches a cloud binds to its authorizer, in this order (undone last first): the
#: authorizer becomes the active one after the role checks are in place.
PATCHES: tuple[Patch, ...] = (SIGNED_CALLS, SYNC_RIGHTS, DEFINITION_RIGHTS, ACTIVE_AUTHORIZER)
