"""Step Functions' service integrations as AWS documents them: the table and Resource parsing.

Step Functions offers each optimized integration (``arn:aws:states:::SERVICE:api[.pattern]``)
with a set of APIs, the patterns each API supports (request-response, ``.sync``,
``.waitForTaskToken``) and the subset of request fields each API takes. ``OPTIMIZED`` is that
table; ``parse_resource`` reads a Task's Resource; ``stepml.local.stepfunctions.definitions``
checks definitions against both, and ``errors`` names what each integration can raise.

Sources: the AWS Step Functions developer guide, "Integrating optimized services with Step
Functions" (APIs and patterns per service) and each service's page ("Invoke Lambda", "Run AWS Glue
jobs", "Create and manage Amazon SageMaker AI jobs", "Publish messages to an Amazon SNS topic", ...)
for the supported parameters; "Learning to use AWS service SDK integrations" for aws-sdk Resources.
Where a page's parameter list lags what AWS accepts, the extra fields AWS's own tooling sends to
that optimized resource are added and marked (``# also sent by``).

This module imports no moto code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from botocore.model import OperationModel

from stepml.local.botocore_models import service_model

REQUEST_RESPONSE: Final[str] = ""
SYNC: Final[str] = "sync"
SYNC2: Final[str] = "sync:2"
WAIT_FOR_TASK_TOKEN: Final[str] = "waitForTaskToken"  # noqa: S105 (a pattern name, not a secret)
#: The patterns a Resource may name after its API (request-response names none).
PATTERNS: Final[frozenset[str]] = frozenset({SYNC, SYNC2, WAIT_FOR_TASK_TOKEN})


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
