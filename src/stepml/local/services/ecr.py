"""ECR patches: reads of another account's registry (SageMaker's image registries)."""

from __future__ import annotations

import functools

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"


def _install_registries_of_other_accounts(patch: Patch) -> None:
    from moto.ecr.exceptions import RepositoryNotFoundException
    from moto.ecr.models import ECRBackend, ecr_backends

    original = ECRBackend._get_repository

    @functools.wraps(original)
    def _get_repository(self, name, registry_id=None):  # type: ignore[no-untyped-def]
        if registry_id and registry_id != self.account_id:
            other = ecr_backends[registry_id][self.region_name]
            repository = other.repositories.get(name)
            if repository is None or repository.registry_id != registry_id:
                raise RepositoryNotFoundException(name, registry_id)
            return repository
        return original(self, name, registry_id)

    patch.replace(ECRBackend, "_get_repository", _get_repository)


register(
    Patch(
        name="ecr-registries-of-other-accounts",
        why=(
            "moto's ECR looks only in the caller's own registry even when registryId names another account, so "
            "DescribeImages on SageMaker's XGBoost registry always answered RepositoryNotFoundException. The patch "
            "looks in that account's registry (the local cloud seeds SageMaker's image there); repository policies "
            "are not evaluated for these cross-account reads."
        ),
        test=_TESTS + "test_ecr_describe_images_reads_the_registry_that_registry_id_names",
        install=_install_registries_of_other_accounts,
    )
)
