"""Lambda for the local cloud: the template's functions run in warm local worker processes.

The same shape as every engine of the local cloud: ``engine`` (pools of workers per function,
reserved concurrency, Lambda's error answers), ``worker`` (the execution environment, run as a
script), ``adapter`` (the only module that reaches into moto: the registered ``lambda.invoke``
patch, and ``lambda.warm_on_start_execution``, which starts the workers of an execution's functions
when it starts) and ``errors``. The names below were importable from the former module
``stepml.local.lambdas`` and stay so.
"""

from stepml.local.lambdas.adapter import INVOKE, WARM_ON_START
from stepml.local.lambdas.engine import WORKER_SCRIPT, FunctionSpec, InvocationResult, LambdaEngine
from stepml.local.lambdas.errors import FunctionThrottledError, LambdaEngineError

__all__ = [
    "INVOKE",
    "WARM_ON_START",
    "WORKER_SCRIPT",
    "FunctionSpec",
    "FunctionThrottledError",
    "InvocationResult",
    "LambdaEngine",
    "LambdaEngineError",
]
