"""Service Quotas patches: SageMaker's instance quotas (list, get, defaults), which moto lacks."""

from __future__ import annotations

import json
from typing import Any

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"
_SAGEMAKER = "sagemaker"
_DEFAULT_PAGE_SIZE = 100


def sagemaker_quotas(backend: Any, applied: bool) -> list[dict[str, Any]]:
    """The account's SageMaker quotas (``applied``: with the values applied to it) as the API answers them."""
    from stepml.local.account_defaults import SAGEMAKER_QUOTAS, service_quota

    values = backend.__dict__.setdefault("stepml_sagemaker_applied", {})
    account = backend.account_id if applied else ""
    return [
        service_quota(backend.region_name, account, q, values.get(q.code) if applied else None)
        for q in SAGEMAKER_QUOTAS
    ]


def _find(backend: Any, quota_code: str, applied: bool) -> dict[str, Any]:
    from moto.core.exceptions import JsonRESTError

    for quota in sagemaker_quotas(backend, applied):
        if quota["QuotaCode"] == quota_code:
            return quota
    raise JsonRESTError(
        "NoSuchResourceException", f"The request failed because the specified quota {quota_code} does not exist."
    )


def _page(response: Any, items: list[dict[str, Any]]) -> str:
    """One page of quotas, with NextToken when more remain (the token is the next offset)."""
    params = json.loads(response.body or "{}")
    start = int(params.get("NextToken") or 0)
    size = int(params.get("MaxResults") or _DEFAULT_PAGE_SIZE)
    answer: dict[str, Any] = {"Quotas": items[start : start + size]}
    if start + size < len(items):
        answer["NextToken"] = str(start + size)
    return json.dumps(answer)


def _install_backend(patch: Patch) -> None:
    from moto.servicequotas.models import ServiceQuotasBackend

    original_defaults = ServiceQuotasBackend.list_aws_default_service_quotas
    original_get = ServiceQuotasBackend.get_service_quota

    def list_aws_default_service_quotas(self, service_code):  # type: ignore[no-untyped-def]
        if service_code == _SAGEMAKER:
            return sagemaker_quotas(self, applied=False)
        return original_defaults(self, service_code)

    def get_service_quota(self, service_code, quota_code):  # type: ignore[no-untyped-def]
        if service_code == _SAGEMAKER:
            return _find(self, quota_code, applied=True)
        return original_get(self, service_code, quota_code)

    def get_aws_default_service_quota(self, service_code, quota_code):  # type: ignore[no-untyped-def]
        if service_code == _SAGEMAKER:
            return _find(self, quota_code, applied=False)
        return original_get(self, service_code, quota_code)

    def list_service_quotas(self, service_code, quota_code=None):  # type: ignore[no-untyped-def]
        if service_code != _SAGEMAKER:
            return original_defaults(self, service_code)
        return [q for q in sagemaker_quotas(self, applied=True) if quota_code is None or q["QuotaCode"] == quota_code]

    patch.replace(ServiceQuotasBackend, "list_aws_default_service_quotas", list_aws_default_service_quotas)
    patch.replace(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    patch.replace(ServiceQuotasBackend, "get_aws_default_service_quota", get_aws_default_service_quota)
    patch.replace(ServiceQuotasBackend, "list_service_quotas", list_service_quotas)


def _install_responses(patch: Patch) -> None:
    from moto.servicequotas.responses import ServiceQuotasResponse

    def respond_list_defaults(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        return _page(self, self.backend.list_aws_default_service_quotas(str(params.get("ServiceCode"))))

    def respond_list(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        return _page(self, self.backend.list_service_quotas(str(params.get("ServiceCode")), params.get("QuotaCode")))

    def respond_get_default(self):  # type: ignore[no-untyped-def]
        params = json.loads(self.body or "{}")
        quota = self.backend.get_aws_default_service_quota(str(params.get("ServiceCode")), str(params.get("QuotaCode")))
        return json.dumps({"Quota": quota})

    patch.replace(ServiceQuotasResponse, "list_aws_default_service_quotas", respond_list_defaults)
    patch.replace(ServiceQuotasResponse, "list_service_quotas", respond_list)
    patch.replace(ServiceQuotasResponse, "get_aws_default_service_quota", respond_get_default)


def _install_sagemaker_quotas(patch: Patch) -> None:
    _install_backend(patch)
    _install_responses(patch)


register(
    Patch(
        name="service-quotas-sagemaker",
        why=(
            "moto's Service Quotas knows only the vpc service's defaults and has no ListServiceQuotas or "
            'GetAWSDefaultServiceQuota, so SageMaker\'s instance quotas ("ml.m5.xlarge for training job usage", '
            '"ml.m5.large for endpoint usage", "ml.m5.large for transform job usage") could not be asked. The '
            "patch answers them for sagemaker from the documented table account_defaults.SAGEMAKER_QUOTAS, with "
            "NextToken pagination."
        ),
        test=_TESTS + "test_sagemaker_service_quotas_are_listed_and_read_by_code",
        install=_install_sagemaker_quotas,
    )
)
