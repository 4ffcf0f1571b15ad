"""The runtime library and the tooling are separate import trees.

Runtime: every module under ``src/stepml`` except ``cli/`` and ``local/``; the Lambda layer ships
(a subset of) it. Tooling: the CLI and the local cloud, which may import the runtime but never
the other way round. A command against a deployed stack loads no moto and no local cloud.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from stepml import packaging
from stepml.local.template import load_template
from tests.helpers import REPO_ROOT

SOURCE = REPO_ROOT / "src"
TOOLING = ("stepml.cli", "stepml.local", "moto")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_files() -> list[Path]:
    """The runtime modules' files: src/stepml less cli/ and local/."""
    root = SOURCE / "stepml"
    return sorted(path for path in root.rglob("*.py") if path.relative_to(root).parts[0] not in ("cli", "local"))


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function (relative ones resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_runtime_modules_never_import_the_cli_the_local_cloud_or_moto():
    files = runtime_files()
    assert SOURCE / "stepml" / "config.py" in files and not any("cli" in p.parts or "local" in p.parts for p in files)
    offending = {
        _module_name(path): sorted(name for name in imported_names(path) if name.startswith(TOOLING)) for path in files
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_the_scan_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "stepml"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "sample.py"
    module.write_text("def f():\n    from .local import cloud\n    import moto.s3\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", tmp_path)
    assert {"stepml.local", "stepml.local.cloud", "moto.s3"} <= imported_names(module)


def test_the_layer_is_built_from_runtime_modules_only():
    entries = packaging.layer_entry_files(REPO_ROOT, load_template(REPO_ROOT / "template.yaml"), "StepmlLibraryLayer")
    shipped = packaging.runtime_modules(entries, SOURCE)
    runtime = {_module_name(path) for path in runtime_files()}
    assert shipped and shipped <= runtime, sorted(shipped - runtime)
    # scripts/build_layer.py stages exactly these modules' files.
    build_layer = (REPO_ROOT / "scripts" / "build_layer.py").read_text(encoding="utf-8")
    assert "packaging.runtime_modules(entries, args.source)" in build_layer
    assert "packaging.layer_files(args.source, modules)" in build_layer


_PROBE = """
import contextlib, io, json, sys
from stepml.cli.main import build_parser, main
build_parser()
for argv in (["runs", "--help"], ["lineage", "--help"], ["preflight", "--help"], ["datasets", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
# A command against a deployed stack, run to its end: the endpoint refuses, the CLI says so.
with contextlib.redirect_stderr(io.StringIO()) as error:
    assert main(["runs", "--stack-name", "prod"]) == 1
assert "cannot read stack prod" in error.getvalue(), error.getvalue()
print(json.dumps(sorted(m for m in sys.modules if m == "moto" or m.startswith(("moto.", "stepml.local")))))
"""


def test_the_cli_for_a_deployed_stack_loads_no_moto_and_no_local_cloud():
    environment = {
        **os.environ,
        "PYTHONPATH": str(SOURCE),
        # A closed local port stands for the deployed stack's AWS: refused at once, never retried.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_local_cloud_commands_still_load_their_modules_when_parsed():
    from stepml.cli.main import build_parser

    args = build_parser().parse_args(["local", "up", "--port", "4570"])
    assert args.port == 4570 and args.handler.__module__ == "stepml.cli.local"
    assert build_parser().parse_args(["demo", "--rows", "10"]).handler.__module__ == "stepml.cli.demo"


def test_in_each_engine_package_only_the_adapter_imports_moto():
    """An engine (Glue, Lambda, mail, events, SageMaker) is given what it needs of moto by its
    ``adapter`` (with ``adapter_<part>`` modules where one would pass a page), the only modules of its
    package that import moto, even inside a function."""
    local = SOURCE / "stepml" / "local"
    packages = ("glue", "lambdas", "mail", "events", "sagemaker")
    offending = {
        _module_name(path): sorted(name for name in imported_names(path) if name.split(".")[0] == "moto")
        for package in packages
        for path in sorted((local / package).glob("*.py"))
        if not path.name.startswith("adapter")
    }
    assert all((local / package / "adapter.py").is_file() for package in packages)
    assert {module: names for module, names in offending.items() if names} == {}
