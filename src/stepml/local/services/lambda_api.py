"""Lambda API patches: GetLayerVersionByArn, which moto lacks."""

from __future__ import annotations

import json
import re

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"
_LAYER_VERSION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:(?P<name>[A-Za-z0-9_-]+):(?P<version>\d+)$"
)


def _install_layer_version_by_arn(patch: Patch) -> None:
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import lambda_backends
    from moto.awslambda.responses import LambdaResponse

    def get_layer_version_by_arn(self):  # type: ignore[no-untyped-def]
        arn = self._get_param("Arn") or ""
        match = _LAYER_VERSION_ARN.match(arn)
        if match is None:
            raise LambdaClientError(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: "
                "(arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)",
            )
        # The layer lives in the account that published it (an AWS-owned one for public layers).
        backend = lambda_backends[match["account"]][match["region"]]
        for version in backend.list_layer_versions(match["name"]):
            if version.version == int(match["version"]):
                return 200, {}, json.dumps(version.get_layer_version())
        error = LambdaClientError("ResourceNotFoundException", "The resource you requested does not exist.")
        error.code = 404
        raise error

    patch.replace(LambdaResponse, "get_layer_version_by_arn", get_layer_version_by_arn)


register(
    Patch(
        name="lambda-get-layer-version-by-arn",
        why=(
            "moto does not implement GetLayerVersionByArn (HTTP 500). The patch answers it from the layers of "
            "the account and region the ARN names (public layers such as the AWS SDK for pandas live in their "
            "publisher's account), and ResourceNotFoundException for a version that does not exist."
        ),
        test=_TESTS + "test_get_layer_version_by_arn_finds_a_layer_of_another_account",
        install=_install_layer_version_by_arn,
    )
)
