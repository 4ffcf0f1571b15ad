"""The local Lambda engine under moto: the one module of the engine that reaches into moto.

moto's Lambda Invoke runs a function in Docker (or, without Docker, echoes the payload). The
``lambda.invoke`` patch sends Invoke to a ``LambdaEngine`` instead, answering as Lambda does
for errors, timeouts, throttling and the ``lambda:<Name>`` faults. The
``lambda.warm_on_start_execution`` patch starts, when an execution starts, a worker for each
function its definition invokes that has none, so a run's later steps find their functions warm.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from stepml.local import faults
from stepml.local.lambdas.engine import LambdaEngine
from stepml.local.lambdas.errors import FunctionThrottledError
from stepml.local.patching import Patch, register

#: A Task state's Resource when it invokes a function through the optimised integration.
_LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


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


def invoked_functions(definition: Any) -> list[str]:
    """The functions a state machine definition invokes (its Lambda tasks, nested branches and
    Map processors included), in the order its states are written, each once."""
    names: list[str] = []
    machines = [definition] if isinstance(definition, dict) else []
    while machines:
        for state in (machines.pop(0).get("States") or {}).values():
            if not isinstance(state, dict):
                continue
            resource = str(state.get("Resource", ""))
            arguments = state.get("Parameters") or state.get("Arguments") or {}
            name = arguments.get("FunctionName") if resource.startswith(_LAMBDA_INVOKE) else None
            if resource.startswith("arn:aws:lambda:"):
                name = resource
            if isinstance(name, str) and name not in names:
                names.append(name)
            machines.extend(b for b in state.get("Branches") or [] if isinstance(b, dict))
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if isinstance(processor, dict):
                machines.append(processor)
    return names


def _install_warm_on_start(patch: Patch, engine: LambdaEngine) -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        machine = next((m for m in self.state_machines if m.arn == state_machine_arn), None)
        try:
            definition = json.loads(machine.definition) if machine is not None else None
        except (TypeError, ValueError):
            definition = None  # the execution itself reports a definition it cannot read
        # Started before the execution, so the workers (a process each, started in a millisecond;
        # their imports run in them) are in the pool before its first task asks for one, and off
        # the StartExecution call's own path.
        functions = invoked_functions(definition)
        if functions:
            threading.Thread(
                target=engine.prewarm, args=(functions,), name="stepml-lambda-prewarm", daemon=True
            ).start()
        return original(self, state_machine_arn, *args, **kwargs)

    patch.replace(StepFunctionsParserBackend, "start_execution", start_execution)


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

WARM_ON_START = register(
    Patch(
        name="lambda.warm_on_start_execution",
        why=(
            "A Lambda worker's cold start (Python, boto3, Powertools and the handler's imports) took about a "
            "second at each function's first step of a run. When moto starts an execution, the local cloud "
            "starts a worker for each function the definition invokes that has none, in the background, so it "
            "imports its handler while the steps before it run; unused workers go with the idle reaper."
        ),
        test="tests/unit/test_local_lambdas.py::test_an_execution_start_warms_the_functions_its_definition_invokes",
        install=_install_warm_on_start,
        scope="cloud",
    )
)
