"""The error names Step Functions gives failures, and the names each Task can raise.

Step Functions names an optimized integration's error ``<Prefix>.<ModeledError>Exception`` (the
SDK's exception class for an error the service's API model declares) or the integration's generic
``<Prefix>.Amazon<Service>Exception``; an aws-sdk integration's ``ServiceName.ErrorName`` in the
AWS SDK for Java's PascalCase; a Lambda service error ``Lambda.<Code>`` or
``Lambda.AWSLambdaException``. Sources: "Handling errors in Step Functions" and "Learning to use
AWS service SDK integrations". The interpreter patches name failures with these functions and the
definition checks lint Retry/Catch names against ``raisable_errors``.

This module imports no moto code.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from stepml.local.botocore_models import operation_model, service_model
from stepml.local.stepfunctions.integrations import (
    OPTIMIZED,
    WAIT_FOR_TASK_TOKEN,
    Resource,
    sdk_botocore_name,
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
HTTP_STATUS_ERROR = re.compile(r"^States\.Http\.StatusCode\.[1-5][0-9][0-9]$")


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


def lambda_error_name(code: str) -> str:
    """Step Functions' name for a Lambda service error: ``Lambda.<Code>`` for an error Invoke
    declares (TooManyRequestsException, ResourceNotFoundException ...), else
    ``Lambda.AWSLambdaException`` (AccessDeniedException and other undeclared codes)."""
    declared = {shape.name for shape in operation_model("lambda", "Invoke").error_shapes}
    return f"Lambda.{code}" if code in declared else "Lambda.AWSLambdaException"
