"""The local cloud's SageMaker: real training jobs, real endpoints, real data capture.

Split as moto splits an emulated service (state, API adapter, errors, validation):

========================  ==========================================================================
``engine``                ``LocalSageMaker``, the facade that owns the state and the lifecycle
``training``              training jobs: layout on disk, run, status, stop, logs and metrics
``algorithm``             the built-in XGBoost algorithm, pure: hyperparameters, channels, booster
``transform``             batch transform jobs: the model's containers over S3 objects, outputs
``transform_validation``  what CreateTransformJob refuses, and its CSV JSONPath filters
``script_mode``           script-mode training: the user's entry point with the ``SM_*`` contract
``hosting``               endpoints, blue/green updates with auto-rollback, invocations
``deployment``            a fleet of model servers: start, health checks, drain and stop
``capture``               data capture files and the thread that writes them (and endpoint logs)
``model_server``          the HTTP server that serves one model (``/ping``, ``/invocations``)
``validation``            request checks against botocore's model, images, ARNs, FailureReason
``errors``                the engine's exceptions
``files``                 the /opt/ml-shaped job tree and tar.gz archives
``context``               the plumbing every part shares: clients, threads, lock, settings
``adapter``               with ``adapter_monitoring`` and ``adapter_transform``, the only modules
                          that import moto: the ``Patch`` objects routing to an engine
========================  ==========================================================================

Importing the package does not import moto; only importing the ``adapter*`` modules does.
"""

from __future__ import annotations

from stepml.local.sagemaker.algorithm import XGBoostTrainingConfig, load_channel, parse_xgboost_hyperparameters
from stepml.local.sagemaker.engine import LocalSageMaker
from stepml.local.sagemaker.errors import (
    EndpointNotFoundError,
    EndpointThrottledError,
    LocalSageMakerError,
    ModelInvocationError,
    ResourceInUseError,
    SageMakerValidationError,
)
from stepml.local.sagemaker.hosting import EndpointView, InvocationResult
from stepml.local.sagemaker.jobs import TrainingJobView
from stepml.local.sagemaker.model_server import ModelServer, ModelServerError
from stepml.local.sagemaker.validation import BUILTIN_XGBOOST_IMAGE, SUPPORTED_XGBOOST_TAGS, validate_request

__all__ = [
    "BUILTIN_XGBOOST_IMAGE",
    "SUPPORTED_XGBOOST_TAGS",
    "EndpointNotFoundError",
    "EndpointThrottledError",
    "EndpointView",
    "InvocationResult",
    "LocalSageMaker",
    "LocalSageMakerError",
    "ModelInvocationError",
    "ModelServer",
    "ModelServerError",
    "ResourceInUseError",
    "SageMakerValidationError",
    "TrainingJobView",
    "XGBoostTrainingConfig",
    "load_channel",
    "parse_xgboost_hyperparameters",
    "validate_request",
]
