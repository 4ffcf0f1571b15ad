"""The local SageMaker engine's exceptions.

The public ones (``LocalSageMakerError`` and its subclasses) are what a caller of the engine
sees; ``adapter`` turns them into the error shapes moto answers with. The three internal ones
end a training job or a deployment with a reason and never leave the engine.
"""

from __future__ import annotations


class LocalSageMakerError(RuntimeError):
    """Base class of the engine's errors."""


class SageMakerValidationError(LocalSageMakerError):
    """A request AWS would reject with ValidationException; the message names the field."""


class ResourceInUseError(LocalSageMakerError):
    """A resource with this name already exists (AWS: ResourceInUse)."""


class ResourceNotFoundError(LocalSageMakerError):
    """The named resource does not exist (AWS: ResourceNotFound)."""


class EndpointNotFoundError(LocalSageMakerError):
    """InvokeEndpoint on an endpoint that does not exist or is not in service."""


class EndpointThrottledError(LocalSageMakerError):
    """InvokeEndpoint on a serverless variant whose MaxConcurrency invocations are all in flight
    (AWS: ThrottlingException, HTTP 429, answered at once)."""


class ModelInvocationError(LocalSageMakerError):
    """The model container answered an invocation with an error status (AWS: ModelError)."""

    def __init__(self, message: str, *, original_status: int, original_message: str, log_stream_arn: str):
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn


class TrainingFailedError(Exception):
    """Ends a training job as Failed; the message is the FailureReason."""


class TrainingStoppedError(Exception):
    """Ends a training job as Stopped; the message is the secondary status."""


class DeploymentFailedError(Exception):
    """A model server could not be started or did not become healthy; the message is the FailureReason."""
