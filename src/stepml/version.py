"""The code version recorded in lineage: the git commit the deployed code was built from."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from importlib import resources
from pathlib import Path

#: Written by ``make build`` (scripts/write_build_info.py) before ``sam build`` packages the layer.
BUILD_INFO_FILE = "_build_info.json"


@functools.cache
def code_version() -> str:
    """The build's git commit; in a checkout, the current commit (``-dirty`` if changed)."""
    try:
        info = json.loads(resources.files("stepml").joinpath(BUILD_INFO_FILE).read_text(encoding="utf-8"))
        return str(info["commit"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError, OSError):
        pass
    return git_commit(Path(__file__).resolve().parents[2]) or os.environ.get("STEPML_CODE_VERSION", "unknown")


def git_commit(root: Path) -> str | None:
    """The commit checked out at ``root``, with ``-dirty`` when the tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
