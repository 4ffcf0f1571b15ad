"""Fixtures of the unit tier's local SageMaker tests (``test_local_sagemaker`` and the modules on
the engine's parts): the template's buckets in moto, the engines hooked under it, and the clients.
Their helpers (rows, models, deploy, wait_for) are in ``tests/unit/sagemaker_helpers.py``."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from stepml.local.provision import provision
from tests.conftest import TEMPLATE, new_session
from tests.unit.sagemaker_helpers import REGION

S3_RESOURCE_TYPES = frozenset({"AWS::S3::Bucket", "AWS::S3::BucketPolicy"})


@pytest.fixture
def s3_stack(aws_credentials):
    """The template's buckets in moto: SageMaker only touches S3, and the rest of the stack
    would quadruple the setup time of every test here."""
    with mock_aws():
        yield provision(TEMPLATE, new_session(), types=S3_RESOURCE_TYPES)


@pytest.fixture
def make_engine(s3_stack, sagemaker_engines):
    """Engines hooked under moto; every job, server and thread is stopped when the test ends."""
    return lambda **options: sagemaker_engines(new_session(), **options)


@pytest.fixture
def engine(make_engine):
    return make_engine(capture_flush_seconds=0.3)


@pytest.fixture
def bucket(s3_stack):
    return s3_stack.physical_id("ArtifactBucket")


@pytest.fixture
def s3():
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def sagemaker():
    # The state machine's SDK client skips client-side validation, so the server must validate.
    return boto3.client("sagemaker", region_name=REGION, config=Config(parameter_validation=False))


@pytest.fixture
def runtime():
    return boto3.client("sagemaker-runtime", region_name=REGION)
