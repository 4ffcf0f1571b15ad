"""The README's layout table matches the tree, and code stays sized for a reader.

A module over ``MODULE_LINES`` lines or a function over ``FUNCTION_LINES`` lines in the
product's code is allowed only where the README's "Larger than a page" table names it and
says why; an entry that is no longer too large must leave the table too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO_ROOT

MODULE_LINES = 600
FUNCTION_LINES = 60
PRODUCT_FOLDERS = ("src", "lambdas", "glue_jobs", "approval_api")
README = REPO_ROOT / "README.md"


DOCS = REPO_ROOT / "docs"


def _section(title: str) -> str:
    """The section titled ``title`` in the README or in one of the ``docs/`` pages it links."""
    for document in (README, *sorted(DOCS.glob("*.md"))):
        text = document.read_text(encoding="utf-8")
        match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#{{2,3}} |\Z)", text, flags=re.M | re.S)
        if match:
            return match.group(1)
    raise AssertionError(f"neither README.md nor docs/*.md has a section {title!r}")


def test_the_readme_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if f"(docs/{page.name})" not in text]
    assert not unlinked, f"README.md's Documentation table does not link: {unlinked}"


def _table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header row


def _product_files() -> list[Path]:
    files = []
    for folder in PRODUCT_FOLDERS:
        files.extend(path for path in (REPO_ROOT / folder).rglob("*.py") if "egg-info" not in path.parts)
    return sorted(files)


def _too_large() -> set[str]:
    """``path`` for each module and ``path::qualname`` for each function over the limits."""
    found: set[str] = set()
    for path in _product_files():
        relative = path.relative_to(REPO_ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MODULE_LINES:
            found.add(relative)
        for qualname, node in _functions(ast.parse(text)):
            if node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
                found.add(f"{relative}::{qualname}")
    return found


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((prefix + node.name, node))
            out.extend(_functions(node, f"{prefix}{node.name}."))
        elif isinstance(node, ast.ClassDef):
            out.extend(_functions(node, f"{prefix}{node.name}."))
    return out


def _allowed() -> dict[str, str]:
    allowed = {}
    for row in _table_rows(_section("Larger than a page")):
        assert len(row) == 2 and row[1], f"README 'Larger than a page' row needs a path and a why: {row}"
        allowed[row[0].strip("`")] = row[1]
    return allowed


def test_every_module_and_function_over_the_limits_is_named_with_a_reason() -> None:
    too_large, allowed = _too_large(), _allowed()
    unexplained = sorted(too_large - set(allowed))
    assert not unexplained, (
        f"over {MODULE_LINES} lines (module) or {FUNCTION_LINES} lines (function), and not in README.md's "
        f"'Larger than a page' table: {unexplained}"
    )
    stale = sorted(set(allowed) - too_large)
    assert not stale, f"README.md's 'Larger than a page' table names what is no longer too large: {stale}"


def _layout_names() -> set[str]:
    names: set[str] = set()
    for row in _table_rows(_section("Repository layout")):
        for token in re.findall(r"`([^`]+)`", " ".join(row)):
            names.add(token)
    return names


def test_the_layout_table_names_every_package_and_module_of_the_library() -> None:
    names = _layout_names()
    last_parts = {name.rstrip("/").rsplit("/", 1)[-1] for name in names}
    missing = []
    for folder in (REPO_ROOT / "src" / "stepml", REPO_ROOT / "src" / "stepml" / "local"):
        for child in sorted(folder.iterdir()):
            if child.name.startswith(("_", ".")) or child.name == "__pycache__":
                continue
            if child.is_dir() and (child / "__init__.py").exists() and child.name not in last_parts:
                missing.append(f"{child.relative_to(REPO_ROOT).as_posix()}/")
            elif child.suffix == ".py" and child.name not in last_parts:
                missing.append(child.relative_to(REPO_ROOT).as_posix())
    assert not missing, f"README.md's layout table does not name: {missing}"


def test_every_path_the_layout_table_names_exists() -> None:
    tracked = {path.relative_to(REPO_ROOT).as_posix() for path in REPO_ROOT.rglob("*") if ".venv" not in path.parts}
    folders = {name + "/" for name in tracked if (REPO_ROOT / name).is_dir()}
    everything = tracked | folders
    missing = []
    for name in sorted(_layout_names()):
        if not re.search(r"\.(py|json|yaml|toml|md)$|/$", name) or " " in name or "<" in name:
            continue  # not a path (a command, a placeholder)
        if not any(path == name or path.endswith("/" + name) for path in everything):
            missing.append(name)
    assert not missing, f"README.md's layout table names paths that do not exist: {missing}"


def test_the_readme_counts_the_conformance_cases_there_are() -> None:
    from tests.unit.stepfunctions import test_conformance_definitions, test_conformance_executions

    rows = {row[0].strip("`"): row for row in _table_rows(_section("Step Functions conformance"))}
    for module in (test_conformance_definitions, test_conformance_executions):
        path = Path(module.__file__).relative_to(REPO_ROOT).as_posix()
        assert path in rows, f"README's conformance table has no row for {path}"
        assert int(rows[path][1]) == len(module.CASES), f"{path} has {len(module.CASES)} cases"
