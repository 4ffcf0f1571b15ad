"""botocore's service models as the request parser asks them: protocols, signing names, IAM
prefixes and JSON target prefixes (the models themselves are :mod:`stepml.local.botocore_models`)."""

from __future__ import annotations

import functools
import gzip
import os
import re

import botocore.exceptions
import botocore.loaders
from botocore.model import ServiceModel

from stepml.local import botocore_models


def service_model(name: str) -> ServiceModel:
    """botocore's model of ``name``."""
    return botocore_models.require_service_model(name)


@functools.cache
def wire_protocols(service: str) -> frozenset[str]:
    """The wire protocols a service model declares (``protocols``, else ``protocol``)."""
    metadata = service_model(service).metadata
    return frozenset(metadata.get("protocols") or [metadata.get("protocol", "")])


def botocore_services() -> frozenset[str]:
    """Every service botocore has a model for."""
    return botocore_models.available_services()


#: SigV4 signing names that several botocore services share, or that differ from the service
#: name; the first service wins a tie. Checked against botocore's metadata by the unit tests.
_SIGNING_NAME_SERVICES: dict[str, tuple[str, ...]] = {
    "s3": ("s3", "s3control"),
    "sagemaker": (
        "sagemaker",
        "sagemaker-runtime",
        "sagemaker-featurestore-runtime",
        "sagemaker-a2i-runtime",
        "sagemaker-edge",
        "sagemaker-metrics",
    ),
    "ses": ("sesv2", "ses"),
    "states": ("stepfunctions",),
    "monitoring": ("cloudwatch",),
    "servicequotas": ("service-quotas",),
    "dynamodb": ("dynamodb", "dynamodbstreams"),
    "events": ("events",),
    "lambda": ("lambda",),
    "iam": ("iam",),
    "apigateway": ("apigateway", "apigatewayv2"),
    "elasticmapreduce": ("emr",),
    "es": ("opensearch", "es"),
    "tagging": ("resourcegroupstaggingapi",),
    "elasticloadbalancing": ("elbv2", "elb"),
    "elasticfilesystem": ("efs",),
    "access-analyzer": ("accessanalyzer",),
    # S3 directory buckets and Object Lambda sign with their own names but are S3 operations.
    "s3express": ("s3", "s3control"),
    "s3-object-lambda": ("s3",),
}

#: Query-protocol services an unsigned ``Action=...&Version=...`` call may be for
#: (sts:AssumeRoleWithWebIdentity and AssumeRoleWithSAML are unsigned).
UNSIGNED_QUERY_SERVICES = ("sts", "sns", "sqs", "iam", "cloudformation", "ses", "cloudwatch", "ec2", "autoscaling")


_METADATA_NAME = re.compile(r'"(signingName|endpointPrefix)"\s*:\s*"([^"]+)"')


def _metadata_head(service: str) -> str:
    """The start of a service model's file, which holds its metadata block."""
    loader = botocore_models.loader()
    version = loader.list_api_versions(service, "service-2")[-1]
    for base in loader.search_paths:
        path = os.path.join(base, service, version, "service-2.json")
        for candidate in (path, path + ".gz"):
            if os.path.exists(candidate):
                opener = gzip.open if candidate.endswith(".gz") else open
                with opener(candidate, "rt", encoding="utf-8") as handle:
                    return handle.read(4000).split('"operations"', 1)[0]
    return ""


@functools.lru_cache(maxsize=1)
def _signing_name_index() -> dict[str, tuple[str, ...]]:
    """Every botocore service by signing name, read from the metadata at the head of each model
    file (loading every model would take seconds): the last resort, for signing names neither
    the table above nor a service name covers."""
    index: dict[str, list[str]] = {}
    for name in sorted(botocore_services()):
        names = dict(_METADATA_NAME.findall(_metadata_head(name)))
        signing = names.get("signingName") or names.get("endpointPrefix")
        if signing:
            index.setdefault(signing, []).append(name)
    return {key: tuple(value) for key, value in index.items()}


def services_for_signing_name(signing_name: str) -> tuple[str, ...]:
    """The botocore services that sign as ``signing_name``: the table above, else the service of
    that name, else the metadata index."""
    if signing_name in _SIGNING_NAME_SERVICES:
        return _SIGNING_NAME_SERVICES[signing_name]
    if signing_name in botocore_services():
        return (signing_name,)
    return _signing_name_index().get(signing_name, ())


#: The IAM service prefix where it is not the botocore service's signing name.
_IAM_PREFIX_OVERRIDES: dict[str, str] = {
    "cloudwatch": "cloudwatch",
    "stepfunctions": "states",
    "sesv2": "ses",
    "ses": "ses",
    "service-quotas": "servicequotas",
    "dynamodbstreams": "dynamodb",
    "s3control": "s3",
    "apigatewayv2": "apigateway",
    "emr": "elasticmapreduce",
    "elbv2": "elasticloadbalancing",
    "elb": "elasticloadbalancing",
    "opensearch": "es",
    "efs": "elasticfilesystem",
    "resourcegroupstaggingapi": "tag",
    "apigatewaymanagementapi": "execute-api",
    "accessanalyzer": "access-analyzer",
    "iot-data": "iot",
    "sso-admin": "sso",
}


def iam_prefix(service: str) -> str:
    """The IAM action prefix of a botocore service (``stepfunctions`` -> ``states``,
    ``sagemaker-runtime`` -> ``sagemaker``, ``cloudwatch`` -> ``cloudwatch``)."""
    if service in _IAM_PREFIX_OVERRIDES:
        return _IAM_PREFIX_OVERRIDES[service]
    if service.startswith("sagemaker"):
        return "sagemaker"
    try:
        return service_model(service).signing_name
    except botocore.exceptions.DataNotFoundError:  # not a botocore service: its name is the best guess
        return service


@functools.lru_cache(maxsize=1)
def services_by_target_prefix() -> dict[str, tuple[str, ...]]:
    """Services of the signing-name table by JSON target prefix, for unsigned JSON calls."""
    index: dict[str, list[str]] = {}
    names = {service for services in _SIGNING_NAME_SERVICES.values() for service in services}
    names |= {
        "dynamodb", "kms", "logs", "glue", "sqs", "ssm", "ecr", "events", "sagemaker",
        "stepfunctions", "cloudwatch", "service-quotas", "secretsmanager", "sts",
    }  # fmt: skip
    for name in sorted(names & botocore_services()):
        prefix = service_model(name).metadata.get("targetPrefix")
        if prefix:
            index.setdefault(prefix, []).append(name)
    return {key: tuple(value) for key, value in index.items()}
