"""The checks of what the region offers and allows: the XGBoost image, the hosting types Batch
Transform takes, SageMaker quotas, Glue."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stepml.cli.preflight.context import CheckContext, denied, error_code
from stepml.cli.preflight.inputs import (
    GLUE_JOB,
    XGBOOST_MAPPING,
    XGBOOST_REPOSITORY,
    XGBOOST_VERSION,
    InstanceNeed,
    glue_version_offered,
    instance_needs,
    transform_type_problems,
)
from stepml.cli.preflight.report import FAIL, OK, WARN, Check
from stepml.config import DATASET_CONFIG_PREFIX, DatasetConfig, DatasetConfigError, parse_dataset_config


def check_xgboost_image(context: CheckContext) -> Check:
    """``xgboost-image``: SageMaker's XGBoost image in the region (template mapping, SDK, ECR)."""
    assert context.resolved is not None
    from sagemaker.core import image_uris

    mapping = context.resolved.template.get("Mappings", {}).get(XGBOOST_MAPPING, {})
    mapped = mapping.get(context.region, {}).get("Account")
    try:
        sdk_uri = image_uris.retrieve("xgboost", context.region, XGBOOST_VERSION)
    except ValueError:
        sdk_uri = None
    sdk_account = sdk_uri.split(".", 1)[0] if sdk_uri else None
    if mapped is None and sdk_account is None:
        return Check(
            "xgboost-image",
            FAIL,
            f"SageMaker's XGBoost {XGBOOST_VERSION} is not offered in {context.region} "
            f"(the template's {XGBOOST_MAPPING} mapping and the sagemaker SDK both lack it)",
            fix=f"deploy to a region listed under template.yaml Mappings {XGBOOST_MAPPING} "
            f"(set region in samconfig.toml [{context.config_env}], or pass --region)",
        )
    if mapped is None:
        return Check(
            "xgboost-image",
            FAIL,
            f"the template's {XGBOOST_MAPPING} mapping has no {context.region}; the sagemaker SDK says {sdk_uri}",
            fix=f'add to template.yaml Mappings {XGBOOST_MAPPING}: {context.region}: Account: "{sdk_account}"',
        )
    if sdk_account is None:
        status, note = WARN, "the installed sagemaker SDK does not know the region (upgrade sagemaker-core to compare)"
    elif sdk_account != str(mapped):
        return Check(
            "xgboost-image",
            FAIL,
            f"the template maps {context.region} to registry {mapped}, the sagemaker SDK to {sdk_account}",
            fix=f'set template.yaml Mappings {XGBOOST_MAPPING} {context.region} Account to "{sdk_account}"',
        )
    else:
        status, note = OK, "the template mapping and the sagemaker SDK agree"
    uri = f"{mapped}.dkr.ecr.{context.region}.amazonaws.com/{XGBOOST_REPOSITORY}:{XGBOOST_VERSION}"
    try:
        context.client("ecr").describe_images(
            registryId=str(mapped), repositoryName=XGBOOST_REPOSITORY, imageIds=[{"imageTag": XGBOOST_VERSION}]
        )
        ecr_note = "ECR lists the image"
    except ClientError as exc:
        code = error_code(exc)
        if code in ("RepositoryNotFoundException", "ImageNotFoundException"):
            return Check(
                "xgboost-image",
                FAIL,
                f"{uri}: ECR answers {code} in {context.region}",
                fix=f"deploy to a region where SageMaker offers XGBoost {XGBOOST_VERSION}, or correct the mapping",
            )
        if not denied(exc):
            raise
        ecr_note = f"ECR would not say ({code}: this account may not describe SageMaker's registry)"
        status = WARN if status == OK else status
    return Check("xgboost-image", status, f"{uri}: {note}; {ecr_note}", data={"uri": uri})


def _dataset_configs(context: CheckContext) -> tuple[list[DatasetConfig], list[str]]:
    """The configs to count (files given, then the stack's onboarded ones) and the ones skipped."""
    if context.dataset_configs is None:
        context.dataset_configs = _read_dataset_configs(context)
    return context.dataset_configs


def _read_dataset_configs(context: CheckContext) -> tuple[list[DatasetConfig], list[str]]:
    configs, problems = [], []
    for path in context.dataset_config_paths:
        try:
            configs.append(parse_dataset_config(path.read_bytes(), str(path)))
        except (OSError, DatasetConfigError) as exc:
            problems.append(str(exc))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (context.stack or {}).get("Outputs", [])}
    bucket = outputs.get("ArtifactBucketName")
    if bucket:
        s3 = context.client("s3")
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DATASET_CONFIG_PREFIX):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/config.json"):
                        continue
                    source = f"s3://{bucket}/{item['Key']}"
                    try:
                        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                        configs.append(parse_dataset_config(body, source))
                    except DatasetConfigError as exc:
                        problems.append(str(exc))
        except ClientError as exc:
            if not denied(exc):
                raise
            where = f"s3://{bucket}/{DATASET_CONFIG_PREFIX}"
            problems.append(f"cannot read the onboarded configs in {where}: {error_code(exc)}")
    return configs, problems


def _quota_values(quotas: Any, names: set[str]) -> dict[str, dict[str, Any]]:
    """The applied quota for each name, falling back to AWS's default where none is applied
    (ListServiceQuotas lists only the quotas that have an applied value)."""
    found: dict[str, dict[str, Any]] = {}
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        missing = names - set(found)
        if not missing:
            break
        for page in quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                if quota.get("QuotaName") in missing and quota.get("QuotaName") not in found:
                    found[quota["QuotaName"]] = quota
    return found


def check_transform_types(context: CheckContext) -> Check:
    """``batch-transform``: the hosting types a large test split's transform jobs would run on; a type
    Batch Transform refuses is a WARN, a FAIL when a config using it has threshold 0."""
    assert context.resolved is not None
    configs, config_problems = _dataset_configs(context)
    hosting_default = str(context.resolved.parameters["HostingInstanceType"])
    problems = transform_type_problems(hosting_default, configs)
    details = [f"dataset config skipped: {problem}" for problem in config_problems]
    if problems:
        # A WARN unless some config scores every run in batch: the endpoint path serves such a type,
        # and only a run past its threshold fails (at Record preprocessing, before training).
        status = FAIL if any(every_run for _, _, every_run in problems) else WARN
        summary = "; ".join(problem for problem, _, _ in problems)
        return Check("batch-transform", status, summary, fix=" ; ".join(fix for _, fix, _ in problems), details=details)
    types = sorted({hosting_default} | {c.hosting.instance_type for c in configs if c.hosting.instance_type})
    counted = f"the stack default and {len(configs)} dataset config(s)" if configs else "the stack default"
    return Check(
        "batch-transform",
        WARN if config_problems else OK,
        f"Batch Transform accepts the hosting type(s) of {counted}: {', '.join(types)}",
        details=details,
    )


def _quota_problem(need: InstanceNeed, quota: dict[str, Any] | None, region: str) -> tuple[str, str, str] | None:
    """``(status, problem, fix)`` when ``quota`` does not cover ``need``. A need only the runs past
    a row threshold have (Batch Transform) is a WARN: preflight cannot know how large uploads get."""
    status = FAIL if need.above_rows is None else WARN
    later = "" if need.above_rows is None else "; only such a run fails, at its transform jobs after Glue and training"
    if quota is None:
        return (
            status,
            f"no SageMaker quota named '{need.quota_name}' in {region} (is {need.instance_type} offered there?){later}",
            "pick an instance type SageMaker offers in this region",
        )
    value = float(quota["Value"])
    if value >= need.count:
        return None
    return (
        status,
        f"'{need.quota_name}' is {value:g} in {region}, a run needs {need.count} ({need.reason}){later}",
        f"aws service-quotas request-service-quota-increase --service-code sagemaker "
        f"--quota-code {quota['QuotaCode']} --desired-value {need.count} --region {region} "
        f"(or the Service Quotas console: Amazon SageMaker, '{need.quota_name}')",
    )


def check_quotas(context: CheckContext) -> Check:
    """``quotas``: SageMaker instance quotas for what the stack and the dataset configs need."""
    assert context.resolved is not None
    configs, config_problems = _dataset_configs(context)
    needs = instance_needs(
        str(context.resolved.parameters["TrainingInstanceType"]),
        str(context.resolved.parameters["HostingInstanceType"]),
        configs,
    )
    quotas = _quota_values(context.client("service-quotas"), {n.quota_name for n in needs})
    problems, details = [], []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is not None:
            details.append(f"{need.quota_name}: quota {float(quota['Value']):g}, needs {need.count} ({need.reason})")
        problem = _quota_problem(need, quota, context.region)
        if problem is not None:
            problems.append(problem)
    details.extend(f"dataset config skipped: {problem}" for problem in config_problems)
    if problems:
        status = FAIL if any(p[0] == FAIL for p in problems) else WARN
        summary = "; ".join(p[1] for p in problems)
        return Check("quotas", status, summary, fix=" ; ".join(p[2] for p in problems), details=details)
    counted = f"{len(configs)} dataset config(s)" if configs else "the stack's defaults"
    return Check(
        "quotas",
        WARN if config_problems else OK,
        f"SageMaker instance quotas cover {counted} ({len(needs)} quota(s))",
        details=details,
    )


def check_glue(context: CheckContext) -> Check:
    """``glue``: the preprocessing job's Glue version offered in the region."""
    assert context.resolved is not None
    props = context.resolved.resolved_properties(GLUE_JOB)
    version = str(props.get("GlueVersion", ""))
    offered = glue_version_offered(version, context.region)
    if offered is False:
        return Check(
            "glue",
            FAIL,
            f"AWS Glue (and so Glue {version}) is not offered in {context.region}",
            fix="deploy to a region with AWS Glue: set region in samconfig.toml or pass --region",
        )
    summary = (
        f"Glue {version} is offered in {context.region}"
        if offered
        else f"Glue {version}: not in the table of checked versions; trusting the deploy to tell"
    )
    status = OK if offered else WARN
    if context.stack_resources.get(GLUE_JOB):
        job_name = context.stack_resources[GLUE_JOB][1]
        try:
            job = context.client("glue").get_job(JobName=job_name)["Job"]
        except ClientError as exc:
            if not denied(exc) and error_code(exc) != "EntityNotFoundException":
                raise
            summary += f"; the stack's job {job_name}: {error_code(exc)}"
        else:
            deployed = job.get("GlueVersion", "?")
            summary += f"; the stack's job {job_name} runs Glue {deployed}"
            if deployed != version:
                summary += f" (the deploy moves it to {version})"
    return Check("glue", status, summary)
