"""Create the template's resources in an AWS endpoint (moto, in-process or server).

Each supported resource type has one creator that reads the template's properties, so the
local resources carry the same keys, indexes, encryption and TTL settings as the deployed
ones. A type or property the local cloud cannot honour is a ``ProvisionError`` that names it,
never a silent skip; callers that only need part of the stack (unit tests) pass ``types``.

The package has one module per family of resources (``storage``, ``roles``, ``functions``,
``workflows``), ``artifacts`` for SAM's managed bucket, ``base`` for what they share and
``stack`` for the walk over the template; the names below are its public face.
"""

from stepml.local.provision.artifacts import SAM_MANAGED_BUCKET, package_artifact, sam_managed_bucket
from stepml.local.provision.base import (
    ACCOUNT_ID,
    DATA_RESOURCE_TYPES,
    LocalRuntime,
    ProvisionedStack,
    ProvisionError,
    api_parameters,
)
from stepml.local.provision.stack import creation_order, provision, referenced_resources

__all__ = [
    "ACCOUNT_ID",
    "DATA_RESOURCE_TYPES",
    "SAM_MANAGED_BUCKET",
    "LocalRuntime",
    "ProvisionError",
    "ProvisionedStack",
    "api_parameters",
    "creation_order",
    "package_artifact",
    "provision",
    "referenced_resources",
    "sam_managed_bucket",
]
