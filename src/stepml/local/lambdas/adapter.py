"""The local Lambda engine under moto: the one module of the engine that reaches into moto.

moto's Lambda Invoke runs a function in Docker (or, without Docker, echoes the payload). The
``lambda.invoke`` patch sends Invoke to a ``LambdaEngine`` instead, answering as Lambda does
for errors, timeouts, throttling and the ``lambda:<Name>`` faults.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from stepml.local import faults
from stepml.local.lambdas.engine import LambdaEngine
from stepml.local.lambdas.errors import FunctionThrottledError
from stepml.local.patching import Patch, register


def _throttled(error_class: Any, code: str, message: str) -> Exception:
    """moto's Lambda error answered with HTTP 429, as Lambda throttles."""
    throttled = error_class(code, message)
    throttled.code = 429
    return throttled


def _install_invoke(patch: Patch, engine: LambdaEngine) -> None:
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import LambdaFunction

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        asynchronous = request_headers.get("x-amz-invocation-type", request_headers.get("X-Amz-Invocation-Type"))
        payload = body.decode() if isinstance(body, bytes) else str(body or "")
        if fault := faults.trigger_lambda(self.function_name, payload):
            kind, message = fault
            if kind == "throttle":
                raise _throttled(LambdaClientError, "TooManyRequestsException", message)
            if asynchronous == "Event":
                return b""  # accepted; the function's failure is not the caller's answer
            answer = engine.fault_answer(self.function_name, kind, message)
            response_headers["x-amz-function-error"] = answer.function_error
            return answer.payload
        if asynchronous == "Event":
            threading.Thread(
                target=engine.invoke, args=(self.function_name, body), kwargs={"queue": True}, daemon=True
            ).start()
            return b""
        try:
            result = engine.invoke(self.function_name, body)
        except FunctionThrottledError as exc:
            throttled = _throttled(LambdaClientError, exc.code, exc.message)
            # Lambda's body names why: {"Reason": ..., "Type": "User", "message": ...}.
            throttled.description = json.dumps(
                {"__type": exc.code, "message": exc.message, "Reason": exc.reason, "Type": "User"}
            )
            raise throttled from exc
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        return result.payload

    patch.replace(LambdaFunction, "invoke", invoke)


INVOKE = register(
    Patch(
        name="lambda.invoke",
        why=(
            "moto's Invoke runs the function in a Docker container (or, without Docker, echoes the payload). "
            "The local cloud runs it in a warm worker process of its Lambda engine (the function's code, layers, "
            "environment and role), answering errors, timeouts and reserved-concurrency throttling as Lambda "
            "does, and Event invocations asynchronously; Invoke also honours the lambda:<Name> faults."
        ),
        test="tests/unit/test_local_lambdas.py::test_moto_lambda_invoke_is_routed_to_the_engine",
        install=_install_invoke,
        scope="cloud",
    )
)
