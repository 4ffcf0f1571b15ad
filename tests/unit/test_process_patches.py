"""Every process-lifetime patch of the local cloud: named, explained, tested, applied once, undone cleanly."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import moto
import pytest
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)

from stepml.local.patching import Patch, PatchError, apply_process_patches, registry

REPO_ROOT = Path(__file__).resolve().parents[2]
_MISSING = object()


def process_patches() -> list[Patch]:
    return [patch for patch in registry() if patch.scope == "process"]


def test_every_process_patch_is_named_explained_and_applied() -> None:
    patches = process_patches()
    assert patches
    assert all(len(patch.why) > 80 for patch in patches)
    assert all(patch.applied for patch in patches), "tests/conftest.py applies them all"


def test_every_process_patch_names_a_test_that_exists() -> None:
    for patch in process_patches():
        path, _, name = patch.test.partition("::")
        module = ast.parse((REPO_ROOT / path).read_text())
        tests = {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
        assert name in tests, f"patch {patch.name!r} names {patch.test}, which does not exist"


def test_applying_again_changes_nothing_and_another_moto_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = StateTaskServiceCallback._eval_integration_pattern
    apply_process_patches()
    assert StateTaskServiceCallback._eval_integration_pattern is patched  # not wrapped twice

    [sync] = [patch for patch in process_patches() if patch.name == "sync-without-callback-endpoint"]
    fresh = Patch(sync.name, sync.why, sync.test, sync.install)
    monkeypatch.setattr(moto, "__version__", "5.2.6")
    with pytest.raises(PatchError, match=r"checked against moto 5\.2\.5, found 5\.2\.6"):
        fresh.apply()
    assert StateTaskServiceCallback._eval_integration_pattern is patched


class _Recorder:
    """Stands in for the patch inside ``install``: notes what each replacement found first."""

    def __init__(self, patch: Patch) -> None:
        self.patch = patch
        self.replaced: list[tuple[Any, str, Any, Any]] = []

    def replace(self, owner: Any, attribute: str, value: Any) -> Any:
        self.replaced.append((owner, attribute, vars(owner).get(attribute, _MISSING), value))
        return self.patch.replace(owner, attribute, value)


def _apply_recording(patch: Patch) -> tuple[Callable[[], None], list[tuple[Any, str, Any, Any]]]:
    recorder: _Recorder

    def install(probe: Patch, *bindings: Any) -> None:
        recorder.patch = probe
        patch.install(recorder, *bindings)

    probe = Patch(patch.name, patch.why, patch.test, install)
    recorder = _Recorder(probe)
    return probe.apply(), recorder.replaced


@pytest.mark.parametrize("patch", process_patches(), ids=lambda patch: patch.name)
def test_a_process_patch_applies_and_undoes_cleanly(patch: Patch) -> None:
    patch.undo()  # moto's own attributes are back
    try:
        undo, replaced = _apply_recording(patch)
        assert replaced, f"{patch.name} replaced nothing"
        for owner, attribute, _original, value in replaced:
            assert vars(owner).get(attribute, _MISSING) is value, f"{owner}.{attribute} was not replaced"
        undo()
        for owner, attribute, original, _value in replaced:
            assert vars(owner).get(attribute, _MISSING) is original, f"{owner}.{attribute} was not restored"
    finally:
        patch.apply()
    assert patch.applied
