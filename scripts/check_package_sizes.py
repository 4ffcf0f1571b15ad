"""Check every function built by ``sam build`` against Lambda's package size limits.

For each function of the built template (``.aws-sam/build/template.yaml``): its code folder and
each layer, unzipped (as Lambda counts: the sum of file sizes) and zipped, the total and the
limits. A layer of another account is counted at its known size (stepml.packaging). Fails with
Lambda's own error when a function's code and layers exceed 262,144,000 bytes unzipped, or its
code exceeds 50 MiB zipped (a direct upload).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stepml import packaging  # noqa: E402
from stepml.local.template import ResolvedTemplate, load_template  # noqa: E402


def function_packages(build_dir: Path) -> list[packaging.FunctionPackage]:
    """Every function of the built template, measured."""
    template_path = build_dir / "template.yaml"
    resolved = ResolvedTemplate(load_template(template_path), source=str(template_path))
    layer_ids = {
        resolved.ref(logical): logical
        for logical, spec in resolved.resources.items()
        if spec["Type"] == "AWS::Serverless::LayerVersion"
    }
    built_layers: dict[str, packaging.Part] = {}
    packages = []
    for logical, spec in resolved.resources.items():
        if spec["Type"] != "AWS::Serverless::Function" or not resolved.is_enabled(logical):
            continue
        props = resolved.resolved_properties(logical)
        code = packaging.measure_code("code", build_dir / props["CodeUri"], source=False, zip_always=True)
        layers = []
        for value in props.get("Layers", []):
            if value in layer_ids:
                layer = layer_ids[value]
                if layer not in built_layers:
                    folder = build_dir / resolved.resolved_properties(layer)["ContentUri"]
                    built_layers[layer] = packaging.measure_code(layer, folder, source=False, zip_always=True)
                layers.append(built_layers[layer])
            else:
                known = packaging.known_layer(str(value))
                if known is None:
                    raise packaging.PackagingError(f"{logical}: the size of layer {value} is not known")
                layers.append(known)
        packages.append(packaging.FunctionPackage(logical, code, tuple(layers)))
    return packages


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def report(package: packaging.FunctionPackage) -> list[str]:
    """The table of one function: each part, the total and the limits."""
    rows = [(f"code ({package.function})", package.code)] + [(f"layer {p.name}", p) for p in package.layers]
    lines = [f"{package.function}", f"  {'part':<36} {'unzipped':>13} {'zipped':>13}  source"]
    for label, part in rows:
        sizes = f"{_number(part.unzipped_bytes):>13} {_number(part.zipped_bytes):>13}"
        lines.append(f"  {label:<36} {sizes}  {part.source}")
    lines.append(f"  {'total':<36} {_number(package.total_unzipped_bytes):>13}")
    lines.append(
        f"  {'limit':<36} {_number(packaging.UNZIPPED_LIMIT_BYTES):>13} "
        f"{_number(packaging.DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES):>13}  (zipped: the code alone, uploaded directly)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        print(f"error: {args.build_dir}/template.yaml not found; run sam build first", file=sys.stderr)
        return 2
    try:
        packages = function_packages(args.build_dir)
    except packaging.PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = []
    for package in packages:
        print("\n".join(report(package)))
        try:
            package.check()
        except packaging.PackageLimitError as exc:
            failures.append(str(exc))
            print(f"  FAILED: {exc}")
        else:
            spare = packaging.UNZIPPED_LIMIT_BYTES - package.total_unzipped_bytes
            print(f"  ok: {spare:,} bytes to spare")
    if failures:
        print(f"{len(failures)} of {len(packages)} functions are over Lambda's limits", file=sys.stderr)
        return 1
    print(f"all {len(packages)} functions are within Lambda's package limits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
