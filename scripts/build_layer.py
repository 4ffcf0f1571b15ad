"""Build the StepmlLibraryLayer into ``ARTIFACTS_DIR/python`` (``sam build``'s makefile target).

The layer holds two things, and nothing else:
- the stepml modules that the functions using the layer import (found from their handlers'
  imports, so the CLI, the local cloud and the sample data stay out), with the build info;
- their third-party dependencies at the versions of ``requirements/constraints.txt`` (the
  ones the tests run with), as wheels for Lambda's platform, less what the python3.11 runtime
  already provides (boto3, botocore and their dependencies).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stepml import packaging  # noqa: E402
from stepml.local.template import load_template  # noqa: E402

LAYER = "StepmlLibraryLayer"
#: Lambda's python3.11 runtime runs on Amazon Linux 2 (glibc 2.26): manylinux2014 wheels run there.
PLATFORM_ARGS = [
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.11",
    "--only-binary=:all:",
]


def resolve(requirements: Path, constraints: Path) -> dict[str, str]:
    """Name and version of every distribution pip would install for ``requirements`` under ``constraints``."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--target",
                str(Path(scratch) / "target"),
                *PLATFORM_ARGS,
                "--report",
                str(report),
                "-r",
                str(requirements),
                "-c",
                str(constraints),
            ],
            check=True,
        )
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in installs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the layer's ContentUri (a copy of src/)")
    parser.add_argument("--out", type=Path, required=True, help="the layer's python/ folder")
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--constraints", type=Path, default=ROOT / "requirements" / "constraints.txt")
    args = parser.parse_args(argv)

    template = load_template(args.template)
    entries = packaging.layer_entry_files(args.template.parent, template, LAYER)
    modules = packaging.runtime_modules(entries, args.source)
    files = packaging.layer_files(args.source, modules)
    packaging.stage_layer(args.source, files, args.out, link=False)
    print(f"{LAYER}: {len(files)} files of stepml ({', '.join(sorted(modules))})")

    resolved = resolve(args.source / "requirements.txt", args.constraints)
    provided = packaging.RUNTIME_PROVIDED
    pins = [f"{name}=={version}" for name, version in sorted(resolved.items()) if name not in provided]
    left_out = sorted(name for name in resolved if name in provided)
    print(f"{LAYER}: {' '.join(pins)} (left to the runtime: {', '.join(left_out) or 'nothing'})")
    # --no-deps: the resolution above is complete; this installs exactly those pins.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(args.out),
            *PLATFORM_ARGS,
            *pins,
        ],
        check=True,
    )
    print(f"{LAYER}: {packaging.unzipped_size(args.out)} bytes unzipped in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
