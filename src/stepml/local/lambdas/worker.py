"""One warm Lambda execution environment: imports a handler once and serves invocations.

Started by ``stepml.local.lambdas.engine`` as ``python -P .../lambdas/worker.py`` with the function's
environment: run as a script, not as a module of ``stepml``, and needing nothing beyond the
standard library, so the handler imports ``stepml`` from its layer alone. The protocol is one
JSON object per line on the original stdout; the handler's own prints go to stderr (the
function's log), as in Lambda. ``{"warm": true}`` (the engine's prewarm) is answered in kind,
without running the handler: the answer says the handler is imported.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LocalLambdaContext:
    """The Lambda context object a handler receives."""

    def __init__(self, request_id: str, deadline: float):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("STEPML_LOCAL_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(error_type: str, message: str, request_id: str, stack: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"errorMessage": message, "errorType": error_type, "requestId": request_id}
    body["stackTrace"] = stack or []
    return body


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


class _InitError(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def serve() -> None:
    """Read invocations from stdin until it closes; answer each on the protocol stream."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # the handler's prints become log lines, never protocol
    sys.stdout = sys.stderr
    handler: Any = None
    init_error: _InitError | None = None
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except _InitError as exc:
        init_error = exc
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("warm"):  # the engine's prewarm: answered once the handler is imported
            protocol.write('{"warm": true}\n')
            protocol.flush()
            continue
        request_id = request["request_id"]
        if init_error is not None:
            reply = {"error": True, "payload": _error(init_error.error_type, str(init_error), request_id)}
        else:
            context = LocalLambdaContext(request_id, request["deadline"])
            try:
                event = json.loads(request["payload"]) if request["payload"] else {}
                result = handler(event, context)
                try:
                    reply = {"error": False, "payload": json.loads(json.dumps(result))}
                except (TypeError, ValueError) as exc:
                    reply = {
                        "error": True,
                        "payload": _error("Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id),
                    }
            except Exception as exc:
                stack = traceback.format_exception(exc)
                print("".join(stack), file=sys.stderr, flush=True)
                reply = {
                    "error": True,
                    "payload": _error(type(exc).__name__, str(exc), request_id, [s.rstrip() for s in stack[1:]]),
                }
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    serve()
