"""Step Functions' service integrations as AWS documents them, and the definition checks built on them.

Step Functions refuses ``CreateStateMachine``/``UpdateStateMachine`` (``InvalidDefinition``,
``SCHEMA_VALIDATION_FAILED``) when a Task names an optimized integration it does not offer, a
pattern the integration does not support, or a ``Parameters``/``Arguments`` field outside the
subset the integration documents. This module holds that table and the checks, so the local
cloud refuses the same definitions the same way. It also lints Retry/Catch error names against
the names each integration can raise: AWS accepts any string there, but a retrier that names an
error the task never raises silently never matches, so the (stricter) local cloud refuses it.

Sources: the AWS Step Functions developer guide, "Integrating optimized services with Step
Functions" (APIs and patterns per service) and each service's page ("Invoke Lambda", "Run AWS Glue
jobs", "Create and manage Amazon SageMaker AI jobs", "Publish messages to an Amazon SNS topic", ...)
for the supported parameters; "Handling errors in Step Functions" and "Learning to use AWS service
SDK integrations" for error names. Where a page's parameter list lags what AWS accepts, the extra
fields AWS's own tooling sends to that optimized resource are added and marked (``# also sent by``).

This module imports no moto code: ``stepml.local.moto_patches`` wires it into moto's backend.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from stepml.local.botocore_models import service_model

REQUEST_RESPONSE: Final[str] = ""
SYNC: Final[str] = "sync"
SYNC2: Final[str] = "sync:2"
WAIT_FOR_TASK_TOKEN: Final[str] = "waitForTaskToken"  # noqa: S105 (a pattern name, not a secret)
_PATTERNS: Final[frozenset[str]] = frozenset({SYNC, SYNC2, WAIT_FOR_TASK_TOKEN})

SCHEMA_VALIDATION_FAILED: Final[str] = "SCHEMA_VALIDATION_FAILED"
#: The local cloud's own code for the error-name lint (AWS accepts any error name).
ERROR_NAME_NEVER_RAISED: Final[str] = "ERROR_NAME_NEVER_RAISED"


@dataclass(frozen=True)
class OptimizedApi:
    """One ``arn:aws:states:::SERVICE:api`` integration: its botocore operation, patterns and fields."""

    operation: str
    patterns: frozenset[str]
    fields: frozenset[str]


@dataclass(frozen=True)
class OptimizedService:
    """An optimized integration's service: botocore name, error-name prefix and generic error names."""

    botocore_name: str
    error_prefix: str
    #: Error names the integration raises besides ``<prefix>.<modeled error>Exception``.
    generic_errors: frozenset[str]
    apis: dict[str, OptimizedApi]
    #: A task of this integration can fail with any error name (a Lambda function raises its own).
    custom_errors: bool = False


def _api(operation: str, patterns: set[str], fields: set[str]) -> OptimizedApi:
    return OptimizedApi(operation, frozenset(patterns), frozenset(fields))


_RR = REQUEST_RESPONSE

_DYNAMODB_WRITE: Final[set[str]] = {
    "ConditionalOperator",
    "ConditionExpression",
    "Expected",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
    "ReturnConsumedCapacity",
    "ReturnItemCollectionMetrics",
    "ReturnValues",
}

#: The optimized integrations, keyed by the Resource's service and API names.
OPTIMIZED: Final[dict[str, OptimizedService]] = {
    "lambda": OptimizedService(
        "lambda",
        "Lambda",
        # "Handling errors in Step Functions": the transient Lambda service errors to retry, and
        # Lambda.Unknown for a function that failed without a named error (out of memory, crash).
        frozenset({"Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.Unknown"}),
        {
            "invoke": _api(
                "Invoke",
                {_RR, WAIT_FOR_TASK_TOKEN},
                {"ClientContext", "FunctionName", "InvocationType", "LogType", "Payload", "Qualifier"},
            ),
        },
        custom_errors=True,
    ),
    "glue": OptimizedService(
        "glue",
        "Glue",
        frozenset({"Glue.AWSGlueException", "Glue.SdkClientException"}),
        {
            "startJobRun": _api(
                "StartJobRun",
                {_RR, SYNC},
                {
                    "JobName",
                    "JobRunQueuingEnabled",
                    "JobRunId",
                    "Arguments",
                    "AllocatedCapacity",
                    "Timeout",
                    "MaxCapacity",
                    "SecurityConfiguration",
                    "NotificationProperty",
                    "WorkerType",
                    "NumberOfWorkers",
                    "ExecutionClass",
                },
            ),
        },
    ),
    "sagemaker": OptimizedService(
        "sagemaker",
        "SageMaker",
        frozenset({"SageMaker.AmazonSageMakerException", "SageMaker.SdkClientException"}),
        {
            # "Supported SageMaker APIs and syntax", each API's "Supported parameters".
            "createEndpoint": _api("CreateEndpoint", {_RR}, {"EndpointConfigName", "EndpointName", "Tags"}),
            "createEndpointConfig": _api(
                "CreateEndpointConfig",
                {_RR},
                {"EndpointConfigName", "KmsKeyId", "ProductionVariants", "Tags"}
                # also sent by the Step Functions Data Science SDK's EndpointConfigStep:
                | {"DataCaptureConfig"},
            ),
            "createHyperParameterTuningJob": _api(
                "CreateHyperParameterTuningJob",
                {_RR, SYNC},
                {
                    "HyperParameterTuningJobConfig",
                    "HyperParameterTuningJobName",
                    "Tags",
                    "TrainingJobDefinition",
                    "WarmStartConfig",
                },
            ),
            "createLabelingJob": _api(
                "CreateLabelingJob",
                {_RR, SYNC},
                {
                    "HumanTaskConfig",
                    "InputConfig",
                    "LabelAttributeName",
                    "LabelCategoryConfigS3Uri",
                    "LabelingJobAlgorithmsConfig",
                    "LabelingJobName",
                    "OutputConfig",
                    "RoleArn",
                    "StoppingConditions",
                    "Tags",
                },
            ),
            "createModel": _api(
                "CreateModel",
                {_RR},
                {
                    "Containers",
                    "EnableNetworkIsolation",
                    "ExecutionRoleArn",
                    "ModelName",
                    "PrimaryContainer",
                    "Tags",
                    "VpcConfig",
                },
            ),
            "createProcessingJob": _api(
                "CreateProcessingJob",
                {_RR, SYNC},
                {
                    "AppSpecification",
                    "Environment",
                    "ExperimentConfig",
                    "NetworkConfig",
                    "ProcessingInputs",
                    "ProcessingJobName",
                    "ProcessingOutputConfig",
                    "ProcessingResources",
                    "RoleArn",
                    "StoppingCondition",
                    "Tags",
                },
            ),
            "createTrainingJob": _api(
                "CreateTrainingJob",
                {_RR, SYNC},
                {
                    "AlgorithmSpecification",
                    "HyperParameters",
                    "InputDataConfig",
                    "OutputDataConfig",
                    "ResourceConfig",
                    "RoleArn",
                    "StoppingCondition",
                    "Tags",
                    "TrainingJobName",
                    "VpcConfig",
                }
                # also sent by the AWS CDK's SageMakerCreateTrainingJob task:
                | {"EnableNetworkIsolation", "Environment"},
            ),
            "createTransformJob": _api(
                "CreateTransformJob",
                {_RR, SYNC},
                {
                    "BatchStrategy",
                    "Environment",
                    "MaxConcurrentTransforms",
                    "MaxPayloadInMB",
                    "ModelName",
                    "Tags",
                    "TransformInput",
                    "TransformJobName",
                    "TransformOutput",
                    "TransformResources",
                }
                # also sent by the Step Functions Data Science SDK's TransformStep:
                | {"DataProcessing", "ExperimentConfig"},
            ),
            # Not DeploymentConfig or RetainAllVariantProperties: the aws-sdk integration takes those.
            "updateEndpoint": _api("UpdateEndpoint", {_RR}, {"EndpointConfigName", "EndpointName"}),
        },
    ),
    "sns": OptimizedService(
        "sns",
        "SNS",
        frozenset({"SNS.AmazonSNSException", "SNS.SdkClientException"}),
        {
            "publish": _api(
                "Publish",
                {_RR, WAIT_FOR_TASK_TOKEN},
                {
                    "Message",
                    "MessageAttributes",
                    "MessageDeduplicationId",
                    "MessageGroupId",
                    "MessageStructure",
                    "PhoneNumber",
                    "Subject",
                    "TargetArn",
                    "TopicArn",
                },
            ),
        },
    ),
    "sqs": OptimizedService(
        "sqs",
        "SQS",
        frozenset({"SQS.AmazonSQSException", "SQS.SdkClientException"}),
        {
            "sendMessage": _api(
                "SendMessage",
                {_RR, WAIT_FOR_TASK_TOKEN},
                {
                    "DelaySeconds",
                    "MessageAttributes",
                    "MessageBody",
                    "MessageDeduplicationId",
                    "MessageGroupId",
                    "QueueUrl",
                },
            ),
        },
    ),
    "dynamodb": OptimizedService(
        "dynamodb",
        "DynamoDB",
        frozenset({"DynamoDB.AmazonDynamoDBException", "DynamoDB.SdkClientException"}),
        {
            "getItem": _api(
                "GetItem",
                {_RR},
                {
                    "Key",
                    "TableName",
                    "AttributesToGet",
                    "ConsistentRead",
                    "ExpressionAttributeNames",
                    "ProjectionExpression",
                    "ReturnConsumedCapacity",
                },
            ),
            "putItem": _api("PutItem", {_RR}, {"Item", "TableName"} | _DYNAMODB_WRITE),
            "deleteItem": _api("DeleteItem", {_RR}, {"Key", "TableName"} | _DYNAMODB_WRITE),
            "updateItem": _api(
                "UpdateItem", {_RR}, {"Key", "TableName", "AttributeUpdates", "UpdateExpression"} | _DYNAMODB_WRITE
            ),
        },
    ),
    "states": OptimizedService(
        "stepfunctions",
        "StepFunctions",
        frozenset({"StepFunctions.AWSStepFunctionsException", "StepFunctions.SdkClientException"}),
        {
            "startExecution": _api(
                "StartExecution",
                {_RR, SYNC, SYNC2, WAIT_FOR_TASK_TOKEN},
                {"Input", "Name", "StateMachineArn"},
            ),
        },
    ),
    "events": OptimizedService(
        "events",
        "EventBridge",
        # EventBridge.FailedEntry: PutEvents answered with a failed entry.
        frozenset(
            {"EventBridge.AmazonEventBridgeException", "EventBridge.SdkClientException", "EventBridge.FailedEntry"}
        ),
        {"putEvents": _api("PutEvents", {_RR, WAIT_FOR_TASK_TOKEN}, {"Entries"})},
    ),
    "ecs": OptimizedService(
        "ecs",
        "ECS",
        frozenset({"ECS.AmazonECSException", "ECS.SdkClientException"}),
        {
            "runTask": _api(
                "RunTask",
                {_RR, SYNC, WAIT_FOR_TASK_TOKEN},
                {
                    "CapacityProviderStrategy",
                    "Cluster",
                    "EnableECSManagedTags",
                    "EnableExecuteCommand",
                    "Group",
                    "LaunchType",
                    "NetworkConfiguration",
                    "Overrides",
                    "PlacementConstraints",
                    "PlacementStrategy",
                    "PlatformVersion",
                    "PropagateTags",
                    "Tags",
                    "TaskDefinition",
                },
            ),
        },
    ),
    "batch": OptimizedService(
        "batch",
        "Batch",
        frozenset({"Batch.AWSBatchException", "Batch.SdkClientException"}),
        {
            "submitJob": _api(
                "SubmitJob",
                {_RR, SYNC, WAIT_FOR_TASK_TOKEN},
                {
                    "ArrayProperties",
                    "ContainerOverrides",
                    "DependsOn",
                    "JobDefinition",
                    "JobName",
                    "JobQueue",
                    "NodeOverrides",
                    "Parameters",
                    "PropagateTags",
                    "RetryStrategy",
                    "SchedulingPriorityOverride",
                    "ShareIdentifier",
                    "Tags",
                    "Timeout",
                },
            ),
        },
    ),
    "athena": OptimizedService(
        "athena",
        "Athena",
        frozenset({"Athena.AmazonAthenaException", "Athena.SdkClientException"}),
        {
            "startQueryExecution": _api(
                "StartQueryExecution",
                {_RR, SYNC},
                {
                    "ClientRequestToken",
                    "ExecutionParameters",
                    "QueryExecutionContext",
                    "QueryString",
                    "ResultConfiguration",
                    "ResultReuseConfiguration",
                    "WorkGroup",
                },
            ),
            "stopQueryExecution": _api("StopQueryExecution", {_RR}, {"QueryExecutionId"}),
            "getQueryExecution": _api("GetQueryExecution", {_RR}, {"QueryExecutionId"}),
            "getQueryResults": _api("GetQueryResults", {_RR}, {"MaxResults", "NextToken", "QueryExecutionId"}),
        },
    ),
}

#: Optimized integrations AWS offers that the local cloud does not model (a definition using one is
#: refused locally, naming the reason, rather than accepted and left to fail at run time).
NOT_MODELLED: Final[frozenset[str]] = frozenset(
    {
        "apigateway",
        "bedrock",
        "codebuild",
        "databrew",
        "eks",
        "elasticmapreduce",
        "emr-containers",
        "emr-serverless",
        "http",
        "mediaconvert",
    }
)

#: The States.* error names of "Handling errors in Step Functions".
STATES_ERRORS: Final[frozenset[str]] = frozenset(
    {
        "States.ALL",
        "States.BranchFailed",
        "States.DataLimitExceeded",
        "States.ExceedToleratedFailureThreshold",
        "States.HeartbeatTimeout",
        "States.Http.Socket",
        "States.IntrinsicFailure",
        "States.ItemReaderFailed",
        "States.NoChoiceMatched",
        "States.ParameterPathFailure",
        "States.Permissions",
        "States.QueryEvaluationError",
        "States.ResultPathMatchFailure",
        "States.ResultWriterFailed",
        "States.Runtime",
        "States.TaskFailed",
        "States.Timeout",
    }
)
_HTTP_STATUS_ERROR = re.compile(r"^States\.Http\.StatusCode\.[1-5][0-9][0-9]$")

#: aws-sdk service names that are not botocore's.
_SDK_SERVICE_NAMES: Final[dict[str, str]] = {"sfn": "stepfunctions"}

_RESOURCE = re.compile(r"^arn:[a-z-]+:states:::(?P<service>[a-z0-9-]+):(?P<rest>[^\s]+)$")


@dataclass(frozen=True)
class Resource:
    """A parsed ``arn:PARTITION:states:::...`` Task resource."""

    arn: str
    service: str  # the optimized service, or "aws-sdk"
    api: str
    pattern: str
    sdk_service: str = ""  # for aws-sdk: the service named in the ARN

    @property
    def is_sdk(self) -> bool:
        return self.service == "aws-sdk"


def parse_resource(arn: str) -> Resource | None:
    """The integration a Task's ``Resource`` names, or None for a non-integration ARN (function, activity)."""
    match = _RESOURCE.match(arn)
    if match is None:
        return None
    service, rest = match["service"], match["rest"]
    sdk_service = ""
    if service == "aws-sdk":
        sdk_service, _, rest = rest.partition(":")
    api, _, pattern = rest.partition(".")
    return Resource(arn=arn, service=service, api=api, pattern=pattern, sdk_service=sdk_service)


def sdk_botocore_name(sdk_service: str) -> str:
    """The botocore service name for an aws-sdk integration's service (``sfn`` is ``stepfunctions``)."""
    return _SDK_SERVICE_NAMES.get(sdk_service, sdk_service)


def sdk_operation(resource: Resource) -> OperationModel | None:
    """The botocore operation an aws-sdk Resource calls, or None if botocore has no such API."""
    model = service_model(sdk_botocore_name(resource.sdk_service))
    if model is None or not resource.api:
        return None
    name = resource.api[0].upper() + resource.api[1:]
    return model.operation_model(name) if name in model.operation_names else None


def optimized_api(resource: Resource) -> OptimizedApi | None:
    """The table's entry for an optimized Resource, or None if AWS offers no such API."""
    service = OPTIMIZED.get(resource.service)
    return None if service is None else service.apis.get(resource.api)


def optimized_operation(resource: Resource) -> OperationModel | None:
    """The botocore operation behind an optimized Resource."""
    api = optimized_api(resource)
    model = service_model(OPTIMIZED[resource.service].botocore_name) if api is not None else None
    return None if model is None or api is None else model.operation_model(api.operation)


# -- error names ----------------------------------------------------------------------------


def _exception_name(shape_name: str) -> str:
    # Step Functions names errors after the SDK's exception class: the error shape plus "Exception".
    return shape_name if shape_name.endswith("Exception") else f"{shape_name}Exception"


@functools.cache
def _modeled_errors(botocore_name: str) -> dict[str, str]:
    """The errors a service's API model declares: the error code on the wire to the error shape's name.

    The two differ for some services (SNS answers ``Throttled`` for ``ThrottledException``); the SDK's
    exception class, and so the Step Functions name, follows the shape.
    """
    model = service_model(botocore_name)
    if model is None:
        return {}
    return {(shape.error_code or shape.name): shape.name for shape in model.error_shapes}


def sdk_error_prefix(sdk_service: str) -> str:
    """The aws-sdk error-name prefix: botocore's service id in PascalCase (``DynamoDb``, ``Sfn``, ``SageMaker``).

    Step Functions' aws-sdk integrations name an error ``ServiceName.ErrorName``, both in PascalCase
    as the AWS SDK for Java 2.x spells its service clients: each word of the service id, with a run
    of capitals written as one capital and small letters (``DynamoDB`` is ``DynamoDb``).
    """
    model = service_model(sdk_botocore_name(sdk_service))
    service_id = model.service_id if model is not None else sdk_service
    words = []
    for word in re.split(r"[\s_-]+", str(service_id)):
        parts = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[0-9]+", word) or [word]
        words.append("".join(part[:1].upper() + part[1:].lower() for part in parts))
    return "".join(words)


def sdk_error_name(sdk_service: str, code: str) -> str:
    """The Step Functions error name for an error code an aws-sdk integration's service answered.

    A code the service's API model declares is ``Prefix.<Code>Exception``; any other code (throttling,
    validation, access denied) reaches the SDK as its generic exception, ``Prefix.<Prefix>Exception``.
    """
    prefix = sdk_error_prefix(sdk_service)
    shape = _modeled_errors(sdk_botocore_name(sdk_service)).get(code)
    return f"{prefix}.{_exception_name(shape)}" if shape else f"{prefix}.{prefix}Exception"


def optimized_error_name(service: str, code: str) -> str:
    """The Step Functions error name for an error code an optimized integration's service answered.

    A code the API model declares is ``<Prefix>.<Code>Exception``; any other is the integration's
    generic ``<Prefix>.Amazon<Service>Exception`` (or ``AWS<Service>Exception``).
    """
    integration = OPTIMIZED[service]
    shape = _modeled_errors(integration.botocore_name).get(code)
    if shape:
        return f"{integration.error_prefix}.{_exception_name(shape)}"
    return next(
        name for name in sorted(integration.generic_errors) if name.split(".", 1)[1].startswith(("Amazon", "AWS"))
    )


def raisable_errors(resource: Resource) -> frozenset[str] | None:
    """Every error name a Task with this Resource can fail with (besides States.*), or None for any name.

    None where the task can fail with a name of its own choosing: a Lambda function's error, a
    SendTaskFailure for ``.waitForTaskToken``, and integrations the local cloud does not model.
    """
    if resource.pattern == WAIT_FOR_TASK_TOKEN:
        return None
    if resource.is_sdk:
        prefix = sdk_error_prefix(resource.sdk_service)
        modeled = _modeled_errors(sdk_botocore_name(resource.sdk_service)).values()
        return frozenset({f"{prefix}.{prefix}Exception"} | {f"{prefix}.{_exception_name(shape)}" for shape in modeled})
    integration = OPTIMIZED.get(resource.service)
    if integration is None or integration.custom_errors:
        return None
    modeled = _modeled_errors(integration.botocore_name).values()
    return integration.generic_errors | {f"{integration.error_prefix}.{_exception_name(shape)}" for shape in modeled}


# -- walking a definition -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding: AWS's diagnostic code, its message, and where (``/States/NAME/...``)."""

    code: str
    message: str
    location: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message} at {self.location}"


def _states(definition: dict[str, Any], location: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every state, with its name and location, at any depth (Parallel branches, Map processors)."""
    states = definition.get("States")
    if not isinstance(states, dict):
        return
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        here = f"{location}/States/{name}"
        yield name, state, here
        for index, branch in enumerate(state.get("Branches") or []):
            if isinstance(branch, dict):
                yield from _states(branch, f"{here}/Branches/{index}")
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from _states(state[key], f"{here}/{key}")


def sync_tasks(definition: Any) -> list[Resource]:
    """The integration of every `.sync` Task of a definition, at any depth (Parallel branches, Map
    processors); none for anything that is not a definition."""
    if not isinstance(definition, dict):
        return []
    found = []
    for _name, state, _here in _states(definition, ""):
        if state.get("Type") != "Task" or not isinstance(state.get("Resource"), str):
            continue
        resource = parse_resource(state["Resource"])
        if resource is not None and resource.pattern.startswith("sync"):
            found.append(resource)
    return found


def definition_problems(definition: dict[str, Any]) -> list[Problem]:
    """The SCHEMA_VALIDATION_FAILED findings AWS reports for a definition's integration Tasks."""
    problems: list[Problem] = []
    for _name, state, here in _states(definition, ""):
        if state.get("Type") != "Task" or not isinstance(state.get("Resource"), str):
            continue
        resource = parse_resource(state["Resource"])
        if resource is not None:
            problems.extend(_task_problems(resource, state, here))
    return problems


def _not_recognized(resource: Resource, here: str) -> Problem:
    return Problem(
        SCHEMA_VALIDATION_FAILED,
        f"The resource provided {resource.arn} is not recognized. The value is not a valid resource ARN, "
        "or the resource is not available in this region.",
        f"{here}/Resource",
    )


def _task_problems(resource: Resource, state: dict[str, Any], here: str) -> list[Problem]:
    if resource.pattern and resource.pattern not in _PATTERNS:
        return [_not_recognized(resource, here)]
    if resource.is_sdk:
        operation = sdk_operation(resource)
        # "AWS SDK integrations": request-response and .waitForTaskToken, never .sync.
        if operation is None or resource.pattern not in (REQUEST_RESPONSE, WAIT_FOR_TASK_TOKEN):
            return [_not_recognized(resource, here)]
        return _field_problems(state, here, operation.input_shape, allowed=None, check_types=False)
    if resource.service in NOT_MODELLED:
        return [
            Problem(
                SCHEMA_VALIDATION_FAILED,
                f"The resource provided {resource.arn} is an optimized integration the stepml local cloud "
                "does not model; call it through a Lambda function or its aws-sdk integration",
                f"{here}/Resource",
            )
        ]
    api = optimized_api(resource)
    if api is None or resource.pattern not in api.patterns:
        return [_not_recognized(resource, here)]
    operation = optimized_operation(resource)
    shape = operation.input_shape if operation is not None else None
    # SageMaker's request shapes are checked to the value types, as AWS does for that integration;
    # the others take JSON values where the API takes text (an SNS Message, an SQS MessageBody).
    return _field_problems(state, here, shape, allowed=api.fields, check_types=resource.service == "sagemaker")


def _field_problems(
    state: dict[str, Any],
    here: str,
    shape: StructureShape | None,
    *,
    allowed: frozenset[str] | None,
    check_types: bool,
) -> list[Problem]:
    field = "Parameters" if "Parameters" in state else "Arguments"
    parameters = state.get(field)
    if not isinstance(parameters, dict):
        return []  # absent, or a JSONata expression for the whole request
    messages: list[str] = []
    for key, value in parameters.items():
        name = key.removesuffix(".$")
        member = _member(shape, name) if shape is not None else None
        if (allowed is not None and name not in allowed) or (allowed is None and member is None):
            messages.append(f'The field "{name}" is not supported by Step Functions')
            continue
        if member is not None and not key.endswith(".$"):
            _check_value(name, value, member, messages, check_types)
    return [Problem(SCHEMA_VALIDATION_FAILED, message, f"{here}/{field}") for message in messages]


def _member(shape: StructureShape, name: str) -> Shape | None:
    # Step Functions spells every field in PascalCase, whatever the API's own casing (ECS, Batch).
    for member_name, member in shape.members.items():
        if member_name == name or member_name[:1].upper() + member_name[1:] == name:
            return member
    return None


_SCALAR_TYPES: Final[dict[str, tuple[str, tuple[type, ...]]]] = {
    "string": ("STRING", (str,)),
    "integer": ("INTEGER", (int,)),
    "long": ("INTEGER", (int,)),
    "float": ("NUMBER", (int, float)),
    "double": ("NUMBER", (int, float)),
    "boolean": ("BOOLEAN", (bool,)),
}


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("{%") and value.strip().endswith("%}")


def _check_structure(value: dict[str, Any], shape: StructureShape, messages: list[str], check_types: bool) -> None:
    for key, member_value in value.items():
        name = key.removesuffix(".$")
        member = _member(shape, name)
        if member is None:
            messages.append(f'The field "{name}" is not supported by Step Functions')
        elif not key.endswith(".$"):
            _check_value(name, member_value, member, messages, check_types)


def _check_value(name: str, value: Any, shape: Shape, messages: list[str], check_types: bool) -> None:
    if _is_expression(value):
        return
    if isinstance(shape, StructureShape):
        if isinstance(value, dict):
            _check_structure(value, shape, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an OBJECT')
    elif isinstance(shape, ListShape):
        if isinstance(value, list):
            for item in value:
                _check_value(name, item, shape.member, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an ARRAY')
    elif isinstance(shape, MapShape):
        if isinstance(value, dict):
            for key, item in value.items():
                if not key.endswith(".$"):
                    _check_value(key, item, shape.value, messages, check_types)
        elif check_types:
            messages.append(f'The value for the field "{name}" must be an OBJECT')
    elif check_types and shape.type_name in _SCALAR_TYPES:
        label, python_types = _SCALAR_TYPES[shape.type_name]
        is_bool = isinstance(value, bool)
        if not isinstance(value, python_types) or (is_bool and shape.type_name != "boolean"):
            messages.append(f'The value for the field "{name}" must be a {label}')


# -- error-name lint --------------------------------------------------------------------------


def error_name_problems(definition: dict[str, Any]) -> list[Problem]:
    """Retry/Catch ``ErrorEquals`` names the state can never raise, at any depth of the definition.

    AWS accepts any string there, so this is a lint: a retrier naming an error its Task never
    raises (a misspelt ``SNS.KmsThrottlingException``, an optimized integration's name on an aws-sdk
    Task) never matches. States.* names must be ones Step Functions defines; a Task's other names
    must be its integration's (see ``raisable_errors``); Parallel and Map states pass on their
    inner states' errors, so only their States.* names are checked.
    """
    problems: list[Problem] = []
    for name, state, here in _states(definition, ""):
        raisable: frozenset[str] | None = None
        resource = None
        if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
            resource = parse_resource(state["Resource"])
            raisable = raisable_errors(resource) if resource is not None else None
        for field in ("Retry", "Catch"):
            for index, rule in enumerate(state.get(field) or []):
                if not isinstance(rule, dict):
                    continue
                for position, error in enumerate(rule.get("ErrorEquals") or []):
                    reason = _never_raised(error, raisable, resource)
                    if reason is not None:
                        problems.append(
                            Problem(
                                ERROR_NAME_NEVER_RAISED,
                                f'State "{name}" {field}[{index}] names the error "{error}", {reason}. AWS accepts '
                                "any error name, but this one can never match; the stepml local cloud refuses it",
                                f"{here}/{field}/{index}/ErrorEquals/{position}",
                            )
                        )
    return problems


def _never_raised(error: Any, raisable: frozenset[str] | None, resource: Resource | None) -> str | None:
    if not isinstance(error, str):
        return "which is not a string"
    if error.startswith("States."):
        if error in STATES_ERRORS or _HTTP_STATUS_ERROR.match(error):
            return None
        return "which is not an error Step Functions defines" + _suggestion(error, STATES_ERRORS)
    if raisable is None or error in raisable or resource is None:
        return None
    hint = _suggestion(error, raisable)
    if not hint and resource.is_sdk:
        prefix = sdk_error_prefix(resource.sdk_service)
        hint = f' (an error code the API does not model, throttling for one, arrives as "{prefix}.{prefix}Exception")'
    elif not hint and resource.service in OPTIMIZED:
        generic = optimized_error_name(resource.service, "")
        hint = f' (an error code the API does not model, throttling for one, arrives as "{generic}")'
    return f"which {resource.arn} never raises" + hint


def _suggestion(error: str, names: frozenset[str]) -> str:
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(error.lower(), list(by_lower), n=1, cutoff=0.8)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def problems_message(problems: list[Problem]) -> str:
    """The InvalidDefinition message AWS gives for these problems."""
    return f"Invalid State Machine Definition: '{', '.join(str(problem) for problem in problems)}'"
