"""Write src/stepml/_build_info.json (the git commit) so lineage records the deployed code version."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stepml.version import BUILD_INFO_FILE, git_commit  # noqa: E402


def main() -> int:
    commit = git_commit(ROOT)
    if commit is None:
        print("error: not a git checkout; cannot record the code version", file=sys.stderr)
        return 1
    target = ROOT / "src" / "stepml" / BUILD_INFO_FILE
    target.write_text(json.dumps({"commit": commit, "built_at": datetime.now(UTC).isoformat()}) + "\n")
    print(f"code version {commit} -> {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
