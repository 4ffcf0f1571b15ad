"""The one way the local cloud changes another library's code: a registered ``Patch``.

Every replacement of a moto (or jsonpath-ng, or botocore) attribute is made through
``Patch.replace`` inside a patch's ``install`` function, so every patch can be undone,
says why it exists, names the test that fails without it, and names the moto version it
was checked against. ``registry()`` lists them all (``stepml local patches`` prints it).

Two lifetimes, one mechanism:

- ``scope="process"``: moto answers as AWS does for as long as the process lives (a missing
  API, a wrong error name). ``apply()`` a second time does nothing.
- ``scope="cloud"``: the patch routes moto to a running engine (the Glue engine, the model
  servers, the outbox). ``apply(engine)`` binds it; each apply is undone by one ``undo()``,
  last applied first, which ``LocalCloud.stop`` does.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

#: moto is pinned exactly (pyproject.toml) because these patches reach into its internals.
PINNED_MOTO_VERSION = "5.2.5"

#: Every module that registers patches; ``registry()`` imports them so the list is whole.
#: tests/unit/test_patching.py fails when a module under stepml/local registers a patch and
#: is missing here.
PATCH_MODULES: tuple[str, ...] = (
    "stepml.local.stepfunctions.tasks",
    "stepml.local.stepfunctions.expressions",
    "stepml.local.stepfunctions.executions",
    "stepml.local.stepfunctions.validation",
    "stepml.local.stepfunctions.test_state",
    "stepml.local.stepfunctions.test_state_mocks",
    "stepml.local.stepfunctions.test_state_http",
    "stepml.local.stepfunctions.redrive",
    "stepml.local.services.dynamodb",
    "stepml.local.services.ecr",
    "stepml.local.services.iam_conditions",
    "stepml.local.services.kms",
    "stepml.local.services.lambda_api",
    "stepml.local.services.cloudwatch",
    "stepml.local.services.logs",
    "stepml.local.services.s3",
    "stepml.local.services.service_quotas",
    "stepml.local.services.ses",
    "stepml.local.sagemaker.adapter",
    "stepml.local.sagemaker.adapter_monitoring",
    "stepml.local.sagemaker.adapter_transform",
    "stepml.local.glue.adapter",
    "stepml.local.lambdas.adapter",
    "stepml.local.events.adapter",
    "stepml.local.mail.adapter",
    "stepml.local.iam.hooks",
    "stepml.local.faults",
)

Scope = Literal["process", "cloud"]
_MISSING = object()


class PatchError(RuntimeError):
    """A patch cannot apply (another moto version, applied twice, undone out of order)."""


@dataclass(eq=False)
class Patch:
    """One named change to another library, with its reason, its test and its undo.

    ``install(patch, *bindings)`` makes the change by calling ``patch.replace(owner, name,
    value)`` for each attribute; the originals are remembered so ``undo`` restores them.
    """

    name: str
    why: str
    test: str
    install: Callable[..., None]
    scope: Scope = "process"
    moto_version: str = PINNED_MOTO_VERSION
    _layers: list[list[tuple[Any, str, Any]]] = field(default_factory=list, repr=False)
    _current: list[tuple[Any, str, Any]] | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def applied(self) -> bool:
        """Whether the patch is in place (for a cloud patch: bound to at least one engine)."""
        return bool(self._layers)

    def replace(self, owner: Any, attribute: str, value: Any) -> Any:
        """Set ``owner.attribute`` to ``value`` and return what was there (moto's original).

        Only valid while ``install`` runs; an attribute the owner lacked is deleted on undo.
        """
        if self._current is None:
            raise PatchError(f"patch {self.name!r}: replace() is only valid inside its install function")
        original = getattr(owner, attribute, None)
        self._current.append((owner, attribute, vars(owner).get(attribute, _MISSING)))
        setattr(owner, attribute, value)
        return original

    def apply(self, *bindings: Any) -> Callable[[], None]:
        """Make the change (a process patch only once); returns this application's undo."""
        import moto

        with self._lock:
            if moto.__version__ != self.moto_version:
                raise PatchError(
                    f"patch {self.name!r} was checked against moto {self.moto_version}, found "
                    f"{moto.__version__}; reinstall with `make install`"
                )
            if self.scope == "process" and self._layers:
                return _nothing_to_undo
            self._current = []
            try:
                self.install(self, *bindings)
            except BaseException:
                self._restore(self._current)
                raise
            finally:
                layer, self._current = self._current, None
            self._layers.append(layer)
            depth = len(self._layers)

        def undo() -> None:
            self.undo(depth)

        return undo

    def undo(self, depth: int | None = None) -> None:
        """Restore what the last ``apply`` replaced (``depth``: the application it must be)."""
        with self._lock:
            if not self._layers:
                return
            if depth is not None and depth != len(self._layers):
                if depth > len(self._layers):
                    return  # already undone
                raise PatchError(
                    f"patch {self.name!r}: application {depth} undone while {len(self._layers)} are applied; "
                    "undo the last applied first"
                )
            self._restore(self._layers.pop())

    @staticmethod
    def _restore(layer: list[tuple[Any, str, Any]]) -> None:
        for owner, attribute, original in reversed(layer):
            if original is _MISSING:
                if attribute in vars(owner):
                    delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


def _nothing_to_undo() -> None:
    return None


_REGISTRY: dict[str, Patch] = {}


def register(patch: Patch) -> Patch:
    """Add ``patch`` to the registry (names are unique) and return it."""
    existing = _REGISTRY.get(patch.name)
    if existing is not None and existing is not patch:
        raise PatchError(f"two patches are named {patch.name!r}")
    _REGISTRY[patch.name] = patch
    return patch


def registry() -> list[Patch]:
    """Every patch the local cloud has, process patches first, each group by name."""
    for module in PATCH_MODULES:
        importlib.import_module(module)
    return sorted(_REGISTRY.values(), key=lambda patch: (patch.scope != "process", patch.name))


def apply_process_patches() -> None:
    """Apply every process-lifetime patch (once); a cloud patch is applied by its engine."""
    for patch in registry():
        if patch.scope == "process":
            patch.apply()
