"""What SageMaker checks before it runs anything: requests, images and the right to pull them.

Requests are checked against botocore's SageMaker service model (``botocore_models``), so a
typo in the state machine fails as it would in AWS; images must be the built-in XGBoost
image the engine emulates, and the execution role must be allowed to pull them from ECR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stepml.local import botocore_models
from stepml.local.iam import hooks as iam_hooks
from stepml.local.iam.model import AuthorizationRequest
from stepml.local.sagemaker.errors import SageMakerValidationError

#: The session name of SageMaker's calls under an execution role.
SAGEMAKER_SESSION = "SageMaker"
#: The built-in algorithm image this engine emulates; any registry account and region.
BUILTIN_XGBOOST_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/sagemaker-xgboost:(?P<tag>[^/]+)$"
)
SUPPORTED_XGBOOST_TAGS = ("1.7-1", "1.7-1-cpu-py3")
#: The Scikit-learn serving image whose script mode the engine emulates (``script_server``).
BUILTIN_SKLEARN_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/sagemaker-scikit-learn:(?P<tag>[^/]+)$"
)
SUPPORTED_SKLEARN_TAGS = ("1.2-1", "1.2-1-cpu-py3")
#: An inference pipeline holds at most this many containers.
MAX_PIPELINE_CONTAINERS = 15
#: SageMaker truncates FailureReason to this many characters.
FAILURE_REASON_LIMIT = 1024

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)


def validate_request(operation: str, params: Mapping[str, Any], service: str = "sagemaker") -> None:
    """Check ``params`` against the input shape of ``operation``; ``SageMakerValidationError`` names each problem."""
    problems = botocore_models.request_problems(service, operation, params)
    if problems:
        raise SageMakerValidationError(botocore_models.validation_message(operation, problems))


def arn(kind: str, name: str, account_id: str, region: str) -> str:
    """The ARN of a SageMaker resource (``kind`` is e.g. ``training-job`` or ``endpoint``)."""
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    return f"arn:{partition}:sagemaker:{region}:{account_id}:{kind}/{name}"


def truncate_reason(reason: str) -> str:
    """A FailureReason cut to the length SageMaker reports."""
    return reason if len(reason) <= FAILURE_REASON_LIMIT else reason[: FAILURE_REASON_LIMIT - 3] + "..."


def is_builtin_xgboost(image: str | None) -> bool:
    """Whether ``image`` is the sagemaker-xgboost:1.7-1 image the engine runs and serves."""
    match = BUILTIN_XGBOOST_IMAGE.match(image or "")
    return bool(match) and match.group("tag") in SUPPORTED_XGBOOST_TAGS


def is_builtin_sklearn(image: str | None) -> bool:
    """Whether ``image`` is the sagemaker-scikit-learn:1.2-1 serving image the engine emulates."""
    match = BUILTIN_SKLEARN_IMAGE.match(image or "")
    return bool(match) and match.group("tag") in SUPPORTED_SKLEARN_TAGS


def validate_model_containers(request: Mapping[str, Any]) -> None:
    """What CreateModel refuses beyond its shapes: a primary container and a pipeline at once,
    neither, more than 15 containers, a pipeline naming the hostnames of some containers only."""
    containers = request.get("Containers")
    primary = request.get("PrimaryContainer")
    if primary is not None and containers is not None:
        raise SageMakerValidationError("Only one of PrimaryContainer or Containers can be specified.")
    if primary is None and not containers:
        raise SageMakerValidationError("Either PrimaryContainer or Containers must be specified.")
    if containers is not None and len(containers) > MAX_PIPELINE_CONTAINERS:
        raise SageMakerValidationError(
            f"1 validation error detected: Value at 'containers' failed to satisfy constraint: Member must have "
            f"length less than or equal to {MAX_PIPELINE_CONTAINERS}"
        )
    named = [bool(container.get("ContainerHostname")) for container in containers or []]
    if any(named) and not all(named):
        raise SageMakerValidationError(
            "ContainerHostname must be specified for every container of an inference pipeline when it is "
            "specified for one."
        )


def authorize_image_pull(role_arn: str | None, image: str) -> None:
    """SageMaker pulls a job's or model's image with the execution role: the role needs ECR's
    pull actions on the repository (and GetAuthorizationToken, which has no resource)."""
    authorizer = iam_hooks.active()
    match = _ECR_IMAGE.match(image or "")
    if authorizer is None or not role_arn or not match:
        return
    repository = f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"
    authorizer.require_role(
        role_arn,
        SAGEMAKER_SESSION,
        [
            AuthorizationRequest("ecr:GetAuthorizationToken", "*"),
            AuthorizationRequest("ecr:BatchCheckLayerAvailability", repository),
            AuthorizationRequest("ecr:GetDownloadUrlForLayer", repository),
            AuthorizationRequest("ecr:BatchGetImage", repository),
        ],
        service="sagemaker",
    )


#: The memory sizes SageMaker Serverless Inference offers (1 GB steps; botocore's model holds only the range).
SERVERLESS_MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)


def validate_serverless_variants(request: Mapping[str, Any], container_count: Mapping[str, int]) -> None:
    """What CreateEndpointConfig refuses of ``ServerlessConfig`` beyond its shape: a memory size
    between the 1 GB steps, provisioned above the maximum concurrency, a variant with both an
    instance type and a serverless config, and the features serverless endpoints do not have
    (several production variants, data capture, an inference pipeline). ``container_count`` maps a
    model name to its number of containers. Raises ``SageMakerValidationError``."""
    variants = list(request.get("ProductionVariants") or [])
    serverless = [v for v in variants if v.get("ServerlessConfig")]
    if not serverless:
        return
    for variant in serverless:
        name, config = variant.get("VariantName"), variant["ServerlessConfig"]
        if variant.get("InstanceType"):
            raise SageMakerValidationError(
                f"Production variant {name} specifies both InstanceType and ServerlessConfig; an endpoint "
                "variant is either instance-based or serverless."
            )
        memory = config.get("MemorySizeInMB")
        if memory not in SERVERLESS_MEMORY_SIZES_MB:
            sizes = ", ".join(str(size) for size in SERVERLESS_MEMORY_SIZES_MB)
            raise SageMakerValidationError(
                f"Invalid MemorySizeInMB {memory} for production variant {name}: valid values are in 1 GB "
                f"increments: {sizes}."
            )
        provisioned = config.get("ProvisionedConcurrency")
        if provisioned is not None and provisioned > config.get("MaxConcurrency", 0):
            raise SageMakerValidationError(
                f"ProvisionedConcurrency {provisioned} of production variant {name} must be less than or equal to "
                f"its MaxConcurrency {config.get('MaxConcurrency')}."
            )
        if container_count.get(str(variant.get("ModelName")), 1) > 1:
            raise SageMakerValidationError(
                f"Model {variant.get('ModelName')} of production variant {name} is an inference pipeline "
                "(several containers), which serverless endpoints do not support."
            )
    if len(variants) > 1:
        raise SageMakerValidationError(
            f"Serverless endpoints support one production variant only; the endpoint configuration has {len(variants)}."
        )
    if request.get("DataCaptureConfig"):
        raise SageMakerValidationError("Data capture is not supported for serverless endpoints.")
