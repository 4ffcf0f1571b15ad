"""What every AWS account has before anything is deployed, seeded into the local cloud.

AWS answers some questions the same way for every account: AWS-owned public SSM parameters
(``/aws/service/...``), the AWS SDK for pandas layer published by its own account, SageMaker's
built-in algorithm images in SageMaker's registries, the SageMaker service quotas of an account,
the SES account status. moto has none of these, so ``stepml preflight`` (which asks them before a
deploy) would fail against the local cloud for reasons that say nothing about the app. ``seed``
puts them into moto's backends; the Service Quotas and SES answers are patches in
``stepml.local.services`` (``service_quotas``, ``ses``) that read the tables here.

Only ``stepml.local`` imports this module (it reaches into moto's backends).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Final

#: The AWS SDK for pandas version the template resolves (template.yaml, EvaluateFunction Layers).
AWS_SDK_PANDAS_VERSION: Final = "3.17.1"
#: The account that publishes the AWS SDK for pandas managed layers in the commercial regions
#: (aws-sdk-pandas docs, "AWS Lambda Managed Layers", docs/source/layers.rst; read 2026-12-02).
#: Opt-in regions such as ap-east-1 use other accounts there; the local cloud runs in us-east-1.
AWS_SDK_PANDAS_ACCOUNT: Final = "336392948345"
#: The layer name for Python 3.11 on x86_64, as the managed-layers table names it.
AWS_SDK_PANDAS_LAYER_NAME: Final = "AWSSDKPandas-Python311"

#: SageMaker's built-in XGBoost image, whose registry account per region the template maps.
XGBOOST_REPOSITORY: Final = "sagemaker-xgboost"
XGBOOST_TAG: Final = "1.7-1"


def aws_sdk_pandas_parameter(region: str, version: str = AWS_SDK_PANDAS_VERSION) -> str:
    """The public SSM parameter that holds the SDK for pandas layer ARN (python3.11, x86_64)."""
    return f"/aws/service/aws-sdk-pandas/{version}/{region}/py3.11/x86_64/layer-arn"


@dataclass(frozen=True)
class Quota:
    """One SageMaker quota of the local account: AWS's quota name and the value applied."""

    code: str
    name: str
    value: float


def _quota_table() -> tuple[Quota, ...]:
    # Quota names follow AWS's wording ("ml.m5.xlarge for training job usage", "... for endpoint
    # usage", "... for transform job usage"). The codes are local (AWS's look like L-1234ABCD and
    # differ per quota); callers must resolve a code by listing and matching the name, as stepml
    # preflight does. The values are a plausible account, not AWS's defaults for every account
    # (those vary by account and region, and no AWS page found lists them; new accounts often
    # start at 0 for GPU types, and reports show 0 for "ml.m5.large for transform job usage"
    # too): CPU types the template and the example configs use get room for a run plus a
    # blue/green deployment (transform: a challenger and a champion job at once, twice over), GPU
    # types get 0 so that asking for one shows what a fresh account answers. Transform quotas
    # exist only for the types Batch Transform takes (no ml.t2.medium, no ml.c5.large).
    values = {
        "training job usage": {
            "ml.m5.large": 4,
            "ml.m5.xlarge": 4,
            "ml.m5.2xlarge": 2,
            "ml.c5.xlarge": 4,
            "ml.c5.2xlarge": 2,
            "ml.g5.xlarge": 0,
            "ml.p3.2xlarge": 0,
        },
        "endpoint usage": {
            "ml.t2.medium": 4,
            "ml.m5.large": 4,
            "ml.m5.xlarge": 4,
            "ml.m5.2xlarge": 2,
            "ml.c5.large": 4,
            "ml.c5.xlarge": 4,
            "ml.g5.xlarge": 0,
            "ml.p3.2xlarge": 0,
        },
        "transform job usage": {
            "ml.m5.large": 4,
            "ml.m5.xlarge": 4,
            "ml.m5.2xlarge": 2,
            "ml.c5.xlarge": 4,
            "ml.c5.2xlarge": 2,
            "ml.g5.xlarge": 0,
            "ml.p3.2xlarge": 0,
        },
    }
    prefixes = {"training job usage": "T", "endpoint usage": "E", "transform job usage": "X"}
    quotas = []
    for usage, by_type in values.items():
        prefix = prefixes[usage]
        for number, (instance_type, value) in enumerate(sorted(by_type.items()), start=1):
            quotas.append(Quota(f"L-LOCAL{prefix}{number:03d}", f"{instance_type} for {usage}", float(value)))
    return tuple(quotas)


#: The SageMaker quotas the local cloud answers ListServiceQuotas/GetServiceQuota with.
SAGEMAKER_QUOTAS: Final[tuple[Quota, ...]] = _quota_table()


def service_quota(region: str, account_id: str, quota: Quota, value: float | None = None) -> dict[str, object]:
    """``quota`` in Service Quotas' ServiceQuota shape."""
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account_id}:sagemaker/{quota.code}",
        "QuotaCode": quota.code,
        "QuotaName": quota.name,
        "Value": quota.value if value is None else value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "QuotaAppliedAtLevel": "ACCOUNT",
    }


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # The local Lambda workers import awswrangler from the local venv, not from this layer.
        archive.writestr("python/README.txt", "AWS SDK for pandas: provided by the local venv\n")
    return buffer.getvalue()


def seed(region: str, account_id: str) -> None:
    """Put AWS's public resources for ``region`` into moto's backends (after a reset).

    - the SDK for pandas layer, published by its account (``AWS_SDK_PANDAS_ACCOUNT``), and the
      public SSM parameter that names it, in ``account_id``'s view of SSM;
    - SageMaker's XGBoost 1.7-1 image in SageMaker's registry for the region (the registry
      account from sagemaker-core's image table, as the template maps it).
    """
    layer_arn = _publish_pandas_layer(region)
    _put_public_parameter(region, account_id, aws_sdk_pandas_parameter(region), layer_arn)
    _push_xgboost_image(region)


def _publish_pandas_layer(region: str) -> str:
    from moto.awslambda.models import lambda_backends

    backend = lambda_backends[AWS_SDK_PANDAS_ACCOUNT][region]
    existing = backend.list_layer_versions(AWS_SDK_PANDAS_LAYER_NAME)
    if existing:
        return max(existing, key=lambda version: version.version).arn
    layer = backend.publish_layer_version(
        {
            "LayerName": AWS_SDK_PANDAS_LAYER_NAME,
            "Description": f"AWS SDK for pandas {AWS_SDK_PANDAS_VERSION} (local stand-in)",
            # moto reads ZipFile as the API sends it: base64 text.
            "Content": {"ZipFile": base64.b64encode(_empty_zip()).decode()},
            "CompatibleRuntimes": ["python3.11"],
            "CompatibleArchitectures": ["x86_64"],
            "LicenseInfo": "Apache-2.0",
        }
    )
    return layer.arn


def _put_public_parameter(region: str, account_id: str, name: str, value: str) -> None:
    from moto.core.utils import utcnow
    from moto.ssm.models import Parameter, ssm_backends

    # PutParameter refuses names under /aws/ (they are AWS's), so the parameter goes into the
    # backend directly, as moto loads its own public /aws/service parameters.
    parameters = ssm_backends[account_id][region]._parameters
    if parameters.get(name):
        return
    parameters[name].append(
        Parameter(
            account_id=account_id,
            name=name,
            value=value,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=utcnow(),
            version=1,
            data_type="text",
        )
    )


def xgboost_registry(region: str) -> str | None:
    """The account of SageMaker's XGBoost 1.7-1 registry in ``region`` (sagemaker-core), or None."""
    from sagemaker.core import image_uris

    try:
        uri = image_uris.retrieve("xgboost", region, XGBOOST_TAG)
    except ValueError:
        return None
    return uri.split(".", 1)[0]


def _push_xgboost_image(region: str) -> None:
    from moto.ecr.models import ecr_backends

    registry = xgboost_registry(region)
    if registry is None:
        return
    backend = ecr_backends[registry][region]
    if XGBOOST_REPOSITORY not in backend.repositories:
        backend.create_repository(
            repository_name=XGBOOST_REPOSITORY,
            registry_id=None,
            encryption_config=None,
            image_scan_config={"scanOnPush": False},
            image_tag_mutability="IMMUTABLE",
            tags=[],
        )
    repository = backend.repositories[XGBOOST_REPOSITORY]
    if any(XGBOOST_TAG in image.image_tags for image in repository.images):
        return
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": "sha256:0"},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": f"sha256:{n}"}
            for n in range(3)
        ],
    }
    backend.put_image(XGBOOST_REPOSITORY, json.dumps(manifest), XGBOOST_TAG)


@dataclass
class SesAccount:
    """The SES v2 account status GetAccount answers with (one per moto SES v2 backend)."""

    #: Production access on: the local cloud delivers to any address, as an account out of the
    #: sandbox does. A test sets it False to get the sandbox (200 a day, 1 a second, only
    #: verified recipients).
    production_access_enabled: bool = True
    sending_enabled: bool = True

    def response(self) -> dict[str, object]:
        """GetAccount's answer."""
        if self.production_access_enabled:
            quota = {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0}
        else:
            quota = {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0}
        return {
            "DedicatedIpAutoWarmupEnabled": True,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": self.production_access_enabled,
            "SendQuota": quota,
            "SendingEnabled": self.sending_enabled,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }


def ses_account(backend: object) -> SesAccount:
    """The SES account status of a moto SES v2 backend (reset with the backend)."""
    status = backend.__dict__.get("stepml_ses_account")
    if status is None:
        status = backend.__dict__["stepml_ses_account"] = SesAccount()
    return status
