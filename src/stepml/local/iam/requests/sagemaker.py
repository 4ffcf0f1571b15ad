"""What a SageMaker (and SageMaker runtime) call asks IAM for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, first_at, need, pass_role, request_tag_context, tag_map

# Source: Service Authorization Reference "Actions, resources, and condition keys for Amazon
# SageMaker" (resource types and ARN formats; condition keys sagemaker:InstanceTypes,
# sagemaker:VolumeKmsKey, sagemaker:OutputKmsKey, sagemaker:NetworkIsolation,
# sagemaker:InterContainerTrafficEncryption, sagemaker:VpcSubnets, sagemaker:VpcSecurityGroupIds,
# sagemaker:MaxRuntimeInSeconds; iam:PassRole with iam:PassedToService sagemaker.amazonaws.com
# for the Create operations that take a role; sagemaker:AddTags for Create operations given Tags).
# UpdateEndpoint and CreateEndpoint are authorized on the endpoint and on the endpoint
# configuration (AWS's denials name the endpoint-config ARN: aws-cdk issue 11594).
# The model registry: a versioned model package's ARN is model-package/<group>/<version>
# (DescribeModelPackage's denials name it); CreateModelPackage into a group is authorized on the
# model-package resource type before the version has a number, as model-package/<group> (the
# versioned package's ModelPackageName); sagemaker:ModelApprovalStatus is the status in the
# CreateModelPackage/UpdateModelPackage request.

_SAGEMAKER_NAME_TYPES: dict[str, str] = {
    "TrainingJobName": "training-job",
    "ModelName": "model",
    "EndpointConfigName": "endpoint-config",
    "EndpointName": "endpoint",
    "ProcessingJobName": "processing-job",
    "TransformJobName": "transform-job",
    "ModelPackageGroupName": "model-package-group",
    "MonitoringScheduleName": "monitoring-schedule",
    "HyperParameterTuningJobName": "hyper-parameter-tuning-job",
    "PipelineName": "pipeline",
    "NotebookInstanceName": "notebook-instance",
    "NotebookInstanceLifecycleConfigName": "notebook-instance-lifecycle-config",
    "ExperimentName": "experiment",
    "TrialName": "experiment-trial",
    "TrialComponentName": "experiment-trial-component",
    "FeatureGroupName": "feature-group",
    "ImageName": "image",
    "AutoMLJobName": "automl-job",
    "CompilationJobName": "compilation-job",
    "LabelingJobName": "labeling-job",
    "ModelCardName": "model-card",
    "InferenceComponentName": "inference-component",
    "ProjectName": "project",
    "CodeRepositoryName": "code-repository",
    "AlgorithmName": "algorithm",
    "WorkteamName": "workteam",
    "FlowDefinitionName": "flow-definition",
    "HumanTaskUiName": "human-task-ui",
    "ActionName": "action",
    "ContextName": "context",
    "EdgePackagingJobName": "edge-packaging-job",
    "AppImageConfigName": "app-image-config",
    "StudioLifecycleConfigName": "studio-lifecycle-config",
    "DeviceFleetName": "device-fleet",
    "ClusterName": "cluster",
    "TrackingServerName": "mlflow-tracking-server",
    "HubName": "hub",
    "OptimizationJobName": "optimization-job",
    "InferenceExperimentName": "inference-experiment",
    "DomainId": "domain",
}

_SAGEMAKER_JOB_DEFINITION_TYPES = {
    "DataQualityJobDefinition": "data-quality-job-definition",
    "ModelQualityJobDefinition": "model-quality-job-definition",
    "ModelBiasJobDefinition": "model-bias-job-definition",
    "ModelExplainabilityJobDefinition": "model-explainability-job-definition",
}

_SAGEMAKER_VERBS = (
    "Create", "Describe", "Delete", "Update", "Stop", "Start", "List", "Get", "Put", "Search",
    "Retry", "Send", "Invoke", "Batch", "Register", "Deregister", "Add", "Import", "Export",
)  # fmt: skip

_SAGEMAKER_ROLE_MEMBERS = frozenset({"RoleArn", "ExecutionRoleArn", "ExecutionRole"})


def _sagemaker_noun(operation: str) -> str:
    for verb in _SAGEMAKER_VERBS:
        if operation.startswith(verb) and len(operation) > len(verb):
            return operation[len(verb) :]
    return operation


def _sagemaker_arn(env: CallEnv, member: str, value: str, operation: str) -> str | None:
    if value.startswith("arn:"):
        return value
    if member == "ModelPackageName":
        return env.arn("sagemaker", f"model-package/{value}")
    if member == "JobDefinitionName":
        for noun, resource_type in _SAGEMAKER_JOB_DEFINITION_TYPES.items():
            if noun in operation:
                return env.arn("sagemaker", f"{resource_type}/{value}")
        return None
    if member == "UserProfileName" and "DomainId" in env.params:
        return env.arn("sagemaker", f"user-profile/{env.params['DomainId']}/{value}")
    if member == "SpaceName" and "DomainId" in env.params:
        return env.arn("sagemaker", f"space/{env.params['DomainId']}/{value}")
    resource_type = _SAGEMAKER_NAME_TYPES.get(member)
    return env.arn("sagemaker", f"{resource_type}/{value}") if resource_type else None


def _sagemaker_resources(env: CallEnv) -> list[str]:
    operation = env.call.operation
    params = env.params
    noun = _sagemaker_noun(operation)
    if operation in ("AddTags", "DeleteTags", "ListTags"):
        return [params["ResourceArn"]] if "ResourceArn" in params else ["*"]
    if operation.startswith(("List", "Search")):
        return ["*"]
    if operation == "CreateModelPackage" and params.get("ModelPackageGroupName") and not params.get("ModelPackageName"):
        group = str(params["ModelPackageGroupName"]).rsplit("/", 1)[-1]  # a name or the group's ARN
        return [env.arn("sagemaker", f"model-package/{group}")]
    if operation in ("CreateEndpoint", "UpdateEndpoint"):
        arns = [_sagemaker_arn(env, "EndpointName", params.get("EndpointName", ""), operation)]
        if params.get("EndpointConfigName"):
            arns.append(_sagemaker_arn(env, "EndpointConfigName", params["EndpointConfigName"], operation))
        return [arn for arn in arns if arn]
    candidates = [f"{noun}Name", f"{noun}Arn"]
    if noun.endswith("s"):
        candidates.append(f"{noun[:-1]}Name")
    candidates += ["ModelPackageName", "JobDefinitionName", *(_SAGEMAKER_NAME_TYPES)]
    for member in candidates:
        value = params.get(member)
        if isinstance(value, str) and value:
            arn = _sagemaker_arn(env, member, value, operation)
            if arn:
                return [arn]
    for member, value in params.items():
        if member.endswith("Arn") and isinstance(value, str) and value.startswith("arn:aws:sagemaker:"):
            return [value]
    return ["*"]


def _walk(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _sagemaker_context(params: Mapping[str, Any]) -> dict[str, Any]:
    instance_types = sorted({item for key, item in _walk(params) if key == "InstanceType" and isinstance(item, str)})
    volume_key = next((item for key, item in _walk(params) if key == "VolumeKmsKeyId"), None)
    if volume_key is None and "ProductionVariants" in params:
        volume_key = params.get("KmsKeyId")  # CreateEndpointConfig: the ML storage volume key
    output_key = (
        first_at(params, "OutputDataConfig", "KmsKeyId")
        or first_at(params, "ProcessingOutputConfig", "KmsKeyId")
        or first_at(params, "TransformOutput", "KmsKeyId")
    )
    network_isolation = params.get(
        "EnableNetworkIsolation", first_at(params, "NetworkConfig", "EnableNetworkIsolation")
    )
    traffic = params.get(
        "EnableInterContainerTrafficEncryption",
        first_at(params, "NetworkConfig", "EnableInterContainerTrafficEncryption"),
    )
    vpc = params.get("VpcConfig") or first_at(params, "NetworkConfig", "VpcConfig") or {}
    max_runtime = first_at(params, "StoppingCondition", "MaxRuntimeInSeconds")
    context: dict[str, Any] = {
        "sagemaker:InstanceTypes": instance_types or None,
        "sagemaker:VolumeKmsKey": volume_key,
        "sagemaker:OutputKmsKey": output_key,
        "sagemaker:NetworkIsolation": network_isolation,
        "sagemaker:InterContainerTrafficEncryption": traffic,
        "sagemaker:VpcSubnets": vpc.get("Subnets") if isinstance(vpc, Mapping) else None,
        "sagemaker:VpcSecurityGroupIds": vpc.get("SecurityGroupIds") if isinstance(vpc, Mapping) else None,
        "sagemaker:MaxRuntimeInSeconds": max_runtime,
        "sagemaker:ModelApprovalStatus": params.get("ModelApprovalStatus"),
    }
    return {key: value for key, value in context.items() if value is not None}


def sagemaker_requests(env: CallEnv) -> list[AuthorizationRequest]:
    """What a SageMaker call asks IAM for: the action on the resources it names with its condition
    keys, and iam:PassRole and sagemaker:AddTags where the call passes a role or tags."""
    operation = env.call.operation
    params = env.params
    action = f"sagemaker:{operation}"
    context = _sagemaker_context(params) if operation.startswith(("Create", "Update")) else {}
    tags = tag_map(params.get("Tags")) if operation.startswith("Create") else None
    context.update(request_tag_context(tags))
    if operation == "AddTags":
        context.update(request_tag_context(tag_map(params.get("Tags"))))
    resources = _sagemaker_resources(env)
    requests = [need(action, resource, context) for resource in resources]
    if operation.startswith(("Create", "Update")):
        roles = sorted(
            {value for key, value in _walk(params) if key in _SAGEMAKER_ROLE_MEMBERS and isinstance(value, str)}
        )
        requests += [pass_role(env, role, "sagemaker.amazonaws.com") for role in roles]
    if tags:
        requests.append(need("sagemaker:AddTags", resources[0], request_tag_context(tags)))
    return requests


def sagemaker_runtime_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a SageMaker runtime (InvokeEndpoint) call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    name = env.params.get("EndpointName")
    if not name:
        return None
    action = "sagemaker:InvokeEndpointAsync" if operation == "InvokeEndpointAsync" else "sagemaker:InvokeEndpoint"
    context = {"sagemaker:TargetModel": env.params.get("TargetModel")}
    return [need(action, env.arn("sagemaker", f"endpoint/{name}"), context)]


def sagemaker_generic_runtime_requests(env: CallEnv) -> list[AuthorizationRequest]:
    """The other SageMaker data planes (feature store, A2I, edge, metrics): the action is the
    operation, the resource the named feature group, flow ... as in the control plane."""
    resources = _sagemaker_resources(env)
    return [need(f"sagemaker:{env.call.operation}", resource) for resource in resources]
