"""The adapter's patches: bound to an engine while applied, moto's own methods after the undo."""

from __future__ import annotations

import sys

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from stepml.local.sagemaker import LocalSageMaker
from stepml.local.sagemaker.adapter import PATCHES
from tests.conftest import new_session

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/stepml-sagemaker"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
VARIANT = {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}


@pytest.fixture
def mocked_aws(aws_credentials):
    with mock_aws():
        yield


@pytest.fixture
def engine(mocked_aws, sagemaker_engines, tmp_path):
    return sagemaker_engines(new_session(), work_dir=tmp_path / "sagemaker")


def test_models_and_endpoint_configs_are_checked_and_unique(engine):
    sagemaker = boto3.client("sagemaker", region_name=REGION, config=Config(parameter_validation=False))
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": XGBOOST_IMAGE})
    with pytest.raises(ClientError) as error:
        sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": XGBOOST_IMAGE})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == (
        'Cannot create already existing model "arn:aws:sagemaker:us-east-1:123456789012:model/m".'
    )
    with pytest.raises(ClientError) as error:
        sagemaker.create_model(ModelName="bad name!", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "i"})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "modelName" in error.value.response["Error"]["Message"]

    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[VARIANT])
    with pytest.raises(ClientError) as error:
        sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[VARIANT])
    assert error.value.response["Error"]["Message"] == (
        'Cannot create already existing endpoint configuration "arn:aws:sagemaker:us-east-1:123456789012:'
        'endpoint-config/c".'
    )


def test_the_undo_restores_moto_and_a_second_engine_wraps_moto_not_the_first(aws_credentials, tmp_path):
    originals = {name: vars(SageMakerModelBackend).get(name) for name in ("create_endpoint", "update_endpoint")}
    first = LocalSageMaker(boto3.Session(region_name=REGION), work_dir=tmp_path / "one")
    second = LocalSageMaker(boto3.Session(region_name=REGION), work_dir=tmp_path / "two")
    undos = [patch.apply(engine) for engine in (first, second) for patch in PATCHES]
    try:
        assert all(patch.applied for patch in PATCHES)
        wrapped = SageMakerModelBackend.create_endpoint
        assert wrapped.__stepml_moto_original__ is originals["create_endpoint"]
        assert SageMakerRuntimeResponse.use_raw_body is True
    finally:
        for undo in reversed(undos):  # the patches bound to the second engine first
            undo()
        first.shutdown()
        second.shutdown()
    assert not any(patch.applied for patch in PATCHES)
    assert {name: vars(SageMakerModelBackend).get(name) for name in originals} == originals
    assert originals["update_endpoint"] is None, "moto 5.2.5 has no UpdateEndpoint"
    assert SageMakerRuntimeResponse.use_raw_body is False


def test_importing_the_package_does_not_import_moto():
    import subprocess

    code = "import sys, stepml.local.sagemaker; print(any(m == 'moto' or m.startswith('moto.') for m in sys.modules))"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"
