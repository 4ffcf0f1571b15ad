"""A local stand-in for a framework serving container in script mode (SageMaker Scikit-learn 1.2-1).

The container imports the user's inference script, ``SAGEMAKER_PROGRAM``, from
``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code``: the ``code/`` folder of the model
data; an ``s3://`` source archive is fetched by ``deployment`` first), calls ``model_fn(model_dir)``
once, then serves each request through the sagemaker-containers transformer:
``input_fn(body, content_type)`` -> ``predict_fn(data, model)`` -> ``output_fn(prediction, accept)``.
As there:

* a missing or ``*/*`` Accept is ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (else application/json),
  a missing Content-Type is application/json;
* ``output_fn`` answers a ``(body, content type)`` tuple or a Flask response (its status kept);
* an exception raised by a hook is a 500 naming it (the toolkit wraps user errors that way);
* a script without ``model_fn``, or that cannot be imported, fails loading (``/ping`` 500).

The script runs in the cloud's process (one module object per container), not in a
subprocess: it is this repository's own script and has no dependencies of its own.
"""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from stepml.local.sagemaker.model_server import InferenceError

JSON = "application/json"
#: Where the container finds code packed into the model data (what the SageMaker SDK sets with network isolation).
MODEL_CODE_DIRECTORY = "/opt/ml/model/code"
HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn")


class ScriptModel:
    """The user's script with the model its ``model_fn`` loaded."""

    def __init__(self, module: ModuleType, model: Any, environment: Mapping[str, str]):
        self._module = module
        self._model = model
        self._environment = dict(environment)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, environment: Mapping[str, str], *, code_dir: Path) -> ScriptModel:
        """Import ``SAGEMAKER_PROGRAM`` from ``code_dir`` and run its ``model_fn(model_dir)``."""
        program = environment.get("SAGEMAKER_PROGRAM") or ""
        script = Path(code_dir) / program
        if not program or not script.is_file():
            raise InferenceError(
                500,
                f"Unable to load model: the script {program or '(SAGEMAKER_PROGRAM unset)'} "
                f"is not in the submit directory {environment.get('SAGEMAKER_SUBMIT_DIRECTORY')}",
            )
        spec = importlib.util.spec_from_file_location(f"stepml_script_{uuid.uuid4().hex}", script)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:  # the user's module failed to import
            raise InferenceError(500, f"Unable to load model: importing {program} failed: {exc!r}") from exc
        if not callable(getattr(module, "model_fn", None)):
            raise InferenceError(500, f"Unable to load model: {program} has no model_fn (Please provide a model_fn)")
        try:
            model = module.model_fn(str(model_dir))
        except Exception as exc:
            raise InferenceError(500, f"Unable to load model: model_fn of {program} failed: {exc!r}") from exc
        return cls(module, model, environment)

    def invoke(self, payload: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """One request through the script's hooks: the response body and its content type."""
        if not accept or accept.strip() == "*/*":
            accept = self._environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        content_type = content_type or JSON
        hooks = {name: getattr(self._module, name, None) for name in HOOKS[1:]}
        missing = [name for name, hook in hooks.items() if not callable(hook)]
        if missing:
            raise InferenceError(500, f"the script has no {', '.join(missing)}: the local container needs all three")
        try:
            with self._lock:
                data = hooks["input_fn"](payload, content_type)
                prediction = hooks["predict_fn"](data, self._model)
                result = hooks["output_fn"](prediction, accept)
        except Exception as exc:  # sagemaker-containers answers a user error with 500
            raise InferenceError(500, f"{type(exc).__name__}: {exc}") from exc
        return _response(result, accept)


def _response(result: Any, accept: str) -> tuple[bytes, str]:
    if isinstance(result, tuple):
        body, content_type = result[0], (result[1] if len(result) > 1 else accept)
        status = 200
    elif hasattr(result, "status_code") and hasattr(result, "get_data"):
        body, content_type, status = result.get_data(), result.mimetype or accept, int(result.status_code)
    else:
        body, content_type, status = result, accept, 200
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
    if status >= 400:
        raise InferenceError(status, data.decode("utf-8", errors="replace"))
    return data, str(content_type)
