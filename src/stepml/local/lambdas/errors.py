"""The local Lambda engine's errors."""

from __future__ import annotations


class LambdaEngineError(RuntimeError):
    """A function is unknown or its worker could not start."""


class FunctionThrottledError(LambdaEngineError):
    """Lambda refused the invocation: the function runs its reserved concurrency already."""

    code = "TooManyRequestsException"
    #: What Lambda answers (HTTP 429) when a function's reserved concurrency is in use.
    message = "Rate Exceeded."
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"

    def __init__(self, function: str):
        super().__init__(f"{function}: {self.code}: {self.message} ({self.reason})")
        self.function = function
