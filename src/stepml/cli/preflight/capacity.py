"""The checks of what the region offers and allows: the XGBoost image, SageMaker quotas, Glue."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stepml.cli.preflight.context import CheckContext, denied, error_code
from stepml.cli.preflight.inputs import (
    GLUE_JOB,
    XGBOOST_MAPPING,
    XGBOOST_REPOSITORY,
    XGBOOST_VERSION,
    glue_version_offered,
    instance_needs,
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
    failures, details = [], []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is None:
            failures.append(
                (
                    f"no SageMaker quota named '{need.quota_name}' in {context.region} "
                    f"(is {need.instance_type} offered there?)",
                    "pick an instance type SageMaker offers in this region",
                )
            )
            continue
        value = float(quota["Value"])
        line = f"{need.quota_name}: quota {value:g}, needs {need.count} ({need.reason})"
        details.append(line)
        if value < need.count:
            failures.append(
                (
                    f"'{need.quota_name}' is {value:g} in {context.region}, a run needs {need.count} ({need.reason})",
                    f"aws service-quotas request-service-quota-increase --service-code sagemaker "
                    f"--quota-code {quota['QuotaCode']} --desired-value {need.count} --region {context.region} "
                    f"(or the Service Quotas console: Amazon SageMaker, '{need.quota_name}')",
                )
            )
    details.extend(f"dataset config skipped: {problem}" for problem in config_problems)
    counted = f"{len(configs)} dataset config(s)" if configs else "the stack's defaults"
    if failures:
        summary = "; ".join(failure for failure, _ in failures)
        return Check("quotas", FAIL, summary, fix=" ; ".join(fix for _, fix in failures), details=details)
    status = WARN if config_problems else OK
    return Check(
        "quotas", status, f"SageMaker instance quotas cover {counted} ({len(needs)} quota(s))", details=details
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
