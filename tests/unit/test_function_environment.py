"""Each function's STEPML_* environment is exactly what its code reads, no more and no less.

Static: the handler's ``config.load_settings(...)`` tuple names what it validates, and the
reads are found by following calls from the handler's module into ``stepml`` modules and
collecting the ``Settings`` properties used on the way (``settings.lineage_table``, which
``config.py`` maps to ``STEPML_LINEAGE_TABLE``). A variable the template sets that nothing
reads, or one the code reads that the template does not set, fails.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from stepml.local.template import ResolvedTemplate, load_template
from tests.helpers import REPO_ROOT

STEPML = REPO_ROOT / "src/stepml"
PREFIX = "STEPML_"


@cache
def _config_constants() -> dict[str, str]:
    """config.py's ``NAME = "STEPML_..."`` constants."""
    tree = ast.parse((STEPML / "config.py").read_text())
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, str) and value.startswith(PREFIX):
                constants.update({target.id: value for target in node.targets if isinstance(target, ast.Name)})
    return constants


@cache
def settings_properties() -> dict[str, str]:
    """Each ``Settings`` property and the environment variable it returns."""
    tree = ast.parse((STEPML / "config.py").read_text())
    settings = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    constants = _config_constants()
    properties = {}
    for method in settings.body:
        if isinstance(method, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "property" for d in method.decorator_list
        ):
            used = {n.id for n in ast.walk(method) if isinstance(n, ast.Name) and n.id in constants}
            assert len(used) == 1, f"Settings.{method.name} reads {sorted(used)}"
            properties[method.name] = constants[used.pop()]
    return properties


@dataclass
class Module:
    """The functions of one file and what its names import from ``stepml``."""

    path: Path
    functions: dict[str, ast.AST] = field(default_factory=dict)
    assignments: dict[str, ast.AST] = field(default_factory=dict)
    functions_from: dict[str, tuple[Path, str]] = field(default_factory=dict)
    modules: dict[str, Path] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)


def _methods(cls: ast.ClassDef) -> dict[str, ast.AST]:
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _always_run(method: ast.AST) -> bool:
    """Constructors and properties run without being called by name."""
    decorators = {getattr(d, "id", getattr(d, "attr", "")) for d in getattr(method, "decorator_list", [])}
    return getattr(method, "name", "") in ("__init__", "__post_init__") or bool(
        decorators & {"property", "cached_property"}
    )


@cache
def parse_module(path: Path) -> Module:
    module = Module(path)
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = node
        elif isinstance(node, ast.ClassDef) and node.name != "Settings":
            # A service class: reaching it (building it, or a classmethod) reaches its
            # constructors and properties; a method only where some reached code calls it by
            # name. (Settings is the map from properties to variables: building it reads none.)
            module.classes[node.name] = node
        elif isinstance(node, ast.Assign):
            module.assignments.update({t.id: node.value for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stepml":
            package = STEPML.joinpath(*node.module.split(".")[1:])
            for alias in node.names:
                local = alias.asname or alias.name
                if (package / f"{alias.name}.py").exists():
                    module.modules[local] = package / f"{alias.name}.py"
                elif package.with_suffix(".py").exists():
                    module.functions_from[local] = (package.with_suffix(".py"), alias.name)
    return module


def _is_settings(node: ast.AST) -> bool:
    """``settings`` or ``<anything>.settings``: a run document's ``approval_timeout_seconds`` is no setting."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.endswith("settings")


def settings_read(entry: Path) -> set[str]:
    """The variables read by the code of ``entry`` (every function of the handler's own file,
    routes included) and of the ``stepml`` functions it calls, transitively."""
    properties, constants = settings_properties(), _config_constants()
    handler = parse_module(entry)
    todo = [(entry, name) for name in handler.functions]
    seen: set[tuple[Path, str]] = set()
    read: set[str] = set()
    reached_classes: list[ast.ClassDef] = []
    called: set[str] = set()  # method names some reached code calls (``service.record_step(...)``)
    pending: list[ast.AST] = []  # methods to walk
    while todo or pending:
        if pending:
            node, path = pending.pop()
            module = parse_module(path)
        else:
            path, name = todo.pop()
            if (path, name) in seen:
                continue
            seen.add((path, name))
            module = parse_module(path)
            node = module.functions.get(name)
            if node is None and name in module.classes:
                cls = module.classes[name]
                reached_classes.append((cls, path))
                pending.extend((method, path) for method in _methods(cls).values() if _always_run(method))
                pending.extend((method, path) for method_name, method in _methods(cls).items() if method_name in called)
                continue
            if node is None:
                if name in module.functions_from:  # re-exported, as stepml.lineage does for its parts
                    todo.append(module.functions_from[name])
                continue
        for child in ast.walk(node):
            if isinstance(child, ast.Attribute) and child.attr in properties and _is_settings(child.value):
                read.add(properties[child.attr])
            if not isinstance(child, ast.Call):
                continue
            target = child.func
            if isinstance(target, ast.Name):
                if target.id in module.functions:
                    todo.append((path, target.id))
                elif target.id in module.functions_from:
                    todo.append(module.functions_from[target.id])
            if isinstance(target, ast.Attribute) and target.attr not in called:
                called.add(target.attr)
                for cls, cls_path in reached_classes:
                    method = _methods(cls).get(target.attr)
                    if method is not None:
                        pending.append((method, cls_path))
            if isinstance(target, ast.Name) and target.id in module.classes:
                todo.append((path, target.id))
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                if target.value.id in module.modules:
                    todo.append((module.modules[target.value.id], target.attr))
                elif target.value.id in module.functions_from:  # ``LineageStore.connect(...)``
                    todo.append(module.functions_from[target.value.id])
                    called.add(target.attr)
                elif target.value.id in module.classes:
                    todo.append((path, target.value.id))
                elif target.attr in ("get", "get_int") and child.args:  # settings.get(config.NAME)
                    argument = child.args[0]
                    constant = getattr(argument, "attr", None) or getattr(argument, "id", None)
                    if constant in constants:
                        read.add(constants[constant])
    return read


def settings_validated(entry: Path) -> set[str]:
    """The variables the handler's ``config.load_settings(TUPLE)`` validates at each invocation."""
    module = parse_module(entry)
    constants = _config_constants()
    calls = [
        node
        for function in module.functions.values()
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "load_settings"
    ]
    assert len(calls) == 1 and isinstance(calls[0].args[0], ast.Name), f"{entry}: one load_settings(NAME) call"
    names = module.assignments[calls[0].args[0].id]
    assert isinstance(names, ast.Tuple)
    return {constants[element.attr] for element in names.elts if isinstance(element, ast.Attribute)}


@pytest.fixture(scope="module")
def resolved() -> ResolvedTemplate:
    return ResolvedTemplate(
        load_template(REPO_ROOT / "template.yaml"), stack_name="stepml-dev", region="us-east-1", account_id="1" * 12
    )


def _functions(resolved: ResolvedTemplate) -> dict[str, Path]:
    found = {}
    for logical, spec in resolved.resources.items():
        if spec["Type"] == "AWS::Serverless::Function":
            props = resolved.properties(logical)
            module, _, function = props["Handler"].partition(".")
            assert function == "handler", logical
            found[logical] = REPO_ROOT / props["CodeUri"] / f"{module}.py"
    return found


def test_every_function_is_checked(resolved):
    assert set(_functions(resolved)) == {
        "ResolveRunFunction",
        "RecordStepFunction",
        "EvaluateFunction",
        "RequestApprovalFunction",
        "ApprovalApiFunction",
        "DriftRetrainFunction",
    }


@pytest.mark.parametrize(
    "logical",
    [
        "ResolveRunFunction",
        "RecordStepFunction",
        "EvaluateFunction",
        "RequestApprovalFunction",
        "ApprovalApiFunction",
        "DriftRetrainFunction",
    ],
)
def test_a_functions_environment_is_exactly_what_its_code_reads(resolved, logical):
    entry = _functions(resolved)[logical]
    environment = {name for name in resolved.function_environment(logical) if name.startswith(PREFIX)}
    read = settings_read(entry)
    assert environment - read == set(), f"{logical} sets variables its code never reads"
    assert read - environment == set(), f"{logical} reads variables the template does not set"
    assert settings_validated(entry) == read, f"{entry.relative_to(REPO_ROOT)} validates other variables than it reads"


def test_the_trace_follows_calls_into_the_library(tmp_path):
    """A handler that only calls ``record_step`` reads the retention days through lineage's helpers."""
    handler = tmp_path / "app.py"
    handler.write_text(
        "from stepml import config\n"
        "from stepml.lineage import record_step\n"
        "_REQUIRED = (config.LINEAGE_TABLE,)\n"
        "def handler(event, context):\n"
        "    settings = config.load_settings(_REQUIRED)\n"
        "    return record_step(event, 'train', 'SUCCEEDED', {}, table=settings.lineage_table, s3_client=None,\n"
        "                       sagemaker_client=None, settings=settings)\n"
    )
    assert settings_read(handler) == {"STEPML_LINEAGE_TABLE", "STEPML_LINEAGE_RETENTION_DAYS"}
    assert settings_validated(handler) == {"STEPML_LINEAGE_TABLE"}
