"""The one patch mechanism (stepml.local.patching), its registry, and an import graph without cycles."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import moto
import pytest

from stepml.cli.main import main
from stepml.local import patching
from stepml.local.patching import PATCH_MODULES, Patch, PatchError, registry
from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "stepml"


class Owner:
    """A stand-in for a moto class."""

    def method(self) -> str:
        return "original"


def _patch(install, *, scope="cloud", name="test.owner", moto_version=patching.PINNED_MOTO_VERSION) -> Patch:
    return Patch(
        name=name,
        why="a test",
        test="tests/unit/test_patching.py::test_apply_and_undo_restore_the_original",
        install=install,
        scope=scope,
        moto_version=moto_version,
    )


def _replace_method(value: str):
    def install(patch: Patch) -> None:
        patch.replace(Owner, "method", lambda self: value)

    return install


# -- the mechanism ------------------------------------------------------------------------


def test_apply_and_undo_restore_the_original():
    patch = _patch(_replace_method("patched"))
    undo = patch.apply()
    assert Owner().method() == "patched" and patch.applied
    undo()
    assert Owner().method() == "original" and not patch.applied
    assert "method" in vars(Owner)


def test_an_attribute_the_owner_lacked_is_deleted_on_undo():
    def install(patch: Patch) -> None:
        patch.replace(Owner, "added", 42)

    undo = _patch(install).apply()
    assert Owner.added == 42  # type: ignore[attr-defined]
    undo()
    assert not hasattr(Owner, "added")


def test_an_inherited_attribute_is_shadowed_then_uncovered():
    class Child(Owner):
        pass

    def install(patch: Patch) -> None:
        original = patch.replace(Child, "method", lambda self: "child")
        assert original is Owner.method

    undo = _patch(install).apply()
    assert Child().method() == "child"
    undo()
    assert "method" not in vars(Child) and Child().method() == "original"


def test_a_cloud_patch_applied_twice_needs_two_undos_last_first():
    def install(patch: Patch, value: str) -> None:
        patch.replace(Owner, "method", lambda self: value)

    patch = _patch(install)
    first = patch.apply("first")
    second = patch.apply("second")
    assert Owner().method() == "second"
    second()
    assert Owner().method() == "first" and patch.applied
    first()
    assert Owner().method() == "original" and not patch.applied


def test_undoing_out_of_order_raises_patch_error_and_changes_nothing():
    def install(patch: Patch, value: str) -> None:
        patch.replace(Owner, "method", lambda self: value)

    patch = _patch(install, name="test.out-of-order")
    first = patch.apply("first")
    second = patch.apply("second")
    try:
        with pytest.raises(PatchError, match=r"test\.out-of-order"):
            first()
        assert Owner().method() == "second"
    finally:
        second()
        first()
    assert Owner().method() == "original"


def test_a_process_patch_applies_once():
    calls = []

    def install(patch: Patch) -> None:
        calls.append(1)
        patch.replace(Owner, "method", lambda self: "process")

    patch = _patch(install, scope="process")
    undo = patch.apply()
    try:
        patch.apply()
        assert calls == [1]
    finally:
        undo()
    assert Owner().method() == "original"


def test_a_failing_install_leaves_nothing_replaced():
    def install(patch: Patch) -> None:
        patch.replace(Owner, "method", lambda self: "half")
        raise RuntimeError("moto changed")

    patch = _patch(install)
    with pytest.raises(RuntimeError, match="moto changed"):
        patch.apply()
    assert Owner().method() == "original" and not patch.applied


def test_another_moto_version_raises_patch_error_naming_the_patch():
    patch = _patch(_replace_method("patched"), name="test.old-moto", moto_version="0.0.1")
    with pytest.raises(PatchError, match=r"test\.old-moto.*0\.0\.1") as raised:
        patch.apply()
    assert moto.__version__ in str(raised.value)
    assert Owner().method() == "original"


def test_replace_outside_install_raises_patch_error():
    with pytest.raises(PatchError, match="install"):
        _patch(_replace_method("x")).replace(Owner, "method", None)


def test_two_patches_of_one_name_are_refused():
    patching.register(first := _patch(_replace_method("x"), name="test.twice"))
    try:
        with pytest.raises(PatchError, match=r"test\.twice"):
            patching.register(_patch(_replace_method("y"), name="test.twice"))
        assert patching.register(first) is first
    finally:
        patching._REGISTRY.pop("test.twice")


# -- the registry -------------------------------------------------------------------------


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_patch_says_why_and_names_a_test_that_exists():
    patches = registry()
    assert patches, "no patch is registered"
    problems = []
    for patch in patches:
        if not patch.why.strip():
            problems.append(f"{patch.name}: no why")
        file, _, function = patch.test.partition("::")
        function = function.split("[", 1)[0].split("::")[-1]
        path = REPO_ROOT / file
        if not file or not function:
            problems.append(f"{patch.name}: test {patch.test!r} is not a pytest node id (file::function)")
        elif not path.is_file():
            problems.append(f"{patch.name}: test file {file} does not exist")
        elif function not in _test_functions(path):
            problems.append(f"{patch.name}: {file} has no function {function}")
        if patch.scope not in ("process", "cloud"):
            problems.append(f"{patch.name}: scope {patch.scope!r}")
    assert not problems, "\n".join(problems)


def test_patch_names_are_unique_and_every_patch_is_in_the_registry():
    patches = registry()
    names = [patch.name for patch in patches]
    assert len(names) == len(set(names))
    for module in PATCH_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Patch):
                assert value in patches, f"{module} defines {value.name} without registering it"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _moto_names(tree: ast.AST) -> set[str]:
    """The local names a module binds to moto modules and objects (at any level)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "moto":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "moto":
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _changes_moto(tree: ast.AST) -> list[str]:
    """How a module changes another library: a Patch, ``patch.replace``, or assigning a moto attribute."""
    moto_names = _moto_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "Patch":
                found.append(f"line {node.lineno}: Patch(...)")
            elif isinstance(func, ast.Attribute) and func.attr == "replace" and len(node.args) == 3:
                if isinstance(func.value, ast.Name) and func.value.id == "patch":
                    found.append(f"line {node.lineno}: patch.replace(...)")
            elif isinstance(func, ast.Name) and func.id == "setattr" and node.args:
                target = node.args[0]
                if isinstance(target, ast.Name) and target.id in moto_names:
                    found.append(f"line {node.lineno}: setattr({target.id}, ...)")
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in moto_names
                ):
                    found.append(f"line {node.lineno}: {target.value.id}.{target.attr} = ...")
    return found


def test_every_module_that_changes_moto_is_a_patch_module():
    listed = set(PATCH_MODULES)
    missing = []
    for path in sorted((PACKAGE / "local").rglob("*.py")):
        if path.name == "patching.py":
            continue
        module = _module_name(path)
        changes = _changes_moto(ast.parse(path.read_text(encoding="utf-8")))
        parents = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 2)}
        if changes and not parents & listed:
            missing.append(f"{module} ({'; '.join(changes[:3])})")
    assert not missing, "modules that change moto but are not in patching.PATCH_MODULES:\n" + "\n".join(missing)


# -- no import cycles ---------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The stepml module an import names (``from a.b import c``: the module a.b.c, else a.b)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every stepml module ``module`` imports, at module level or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "stepml":
                resolved = _resolve(target, modules)
                if resolved and resolved != module:
                    found.add(resolved)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    return sorted(component)


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_resolver_prefers_the_submodule_a_from_import_names():
    modules = _modules()
    assert _resolve("stepml.local.iam.hooks", modules) == "stepml.local.iam.hooks"
    assert _resolve("stepml.local.faults.trigger", modules) == "stepml.local.faults"


def test_the_stepml_package_has_no_import_cycles():
    modules = _modules()
    graph = {module: _imports(module, path, modules) for module, path in modules.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles in src/stepml (module-level and function-level imports):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


# -- the CLI ------------------------------------------------------------------------------


def test_stepml_local_patches_prints_every_patch_with_its_scope_test_and_why(capsys):
    assert main(["local", "patches"]) == 0
    out = capsys.readouterr().out
    for patch in registry():
        assert f"{patch.name}  [{patch.scope}]  checked against moto {patch.moto_version}" in out
        assert f"test: {patch.test}" in out
        assert " ".join(patch.why.split()[:4]) in " ".join(out.split())
