"""Lambda's package size limits, and what the shared library layer ships.

One rule for three callers: the layer build (``scripts/build_layer.py``, run by ``sam build``),
the size check after ``sam build`` (``scripts/check_package_sizes.py``) and the local cloud's
provisioning (``stepml.local.provision``). Sizes are counted as Lambda counts them: the sum of
the uncompressed sizes of the files in the package, its own code plus every layer.

This module is build and local-cloud tooling; it is not part of the layer itself.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Lambda's quota for a function's code and all of its layers, unzipped (250 MiB, "262144000 bytes").
UNZIPPED_LIMIT_BYTES = 262_144_000
#: Lambda's quota for a .zip uploaded directly with the API (CreateFunction ``ZipFile``): 50 MiB zipped.
DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES = 52_428_800
#: What Lambda names in its error for that quota: the request, i.e. the base64 encoding of 50 MiB.
DIRECT_UPLOAD_REQUEST_LIMIT_BYTES = 69_905_067

#: Files ``sam build`` leaves out of a Python package (aws_lambda_builders' python_pip
#: EXCLUDED_FILES); the local cloud measures its folders without them too.
_EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".git", ".aws-sam"})
_EXCLUDED_SUFFIXES = (".pyc",)

#: Packages the python3.11 runtime already has (boto3 and what it depends on): the layer leaves
#: them out so the function uses the runtime's copies instead of carrying ~25 MB of its own.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"})

#: The AWS SDK for pandas layer (awswrangler) the Evaluate function uses: version, runtime, architecture.
AWS_SDK_PANDAS_VERSION = "3.17.1"
#: Its unzipped size, counted against the function's limit. No size is published for 3.17.1, so
#: it is measured: ``pip download awswrangler==3.17.1 --platform manylinux2014_x86_64
#: --implementation cp --python-version 3.11 --only-binary=:all:`` (2026-12-02: awswrangler 3.17.1,
#: pyarrow 20.0.0, pandas 2.3.2, numpy 2.2.6, pytz, tzdata, packaging, typing-extensions), the sum of
#: the wheels' uncompressed entries without the packages the runtime provides (as the layer leaves
#: them out). The published layers are smaller, as they ship a slimmed pyarrow: 204M unzipped for
#: 3.16.1 and 167M for 3.16.0 (``du -h``, aws/aws-sdk-pandas issue #3331), so this over-counts.
AWS_SDK_PANDAS_UNZIPPED_BYTES = 245_574_702
AWS_SDK_PANDAS_SOURCE = "measured: PyPI wheels of awswrangler 3.17.1 and its dependencies, manylinux2014 x86_64 cp311"

_PANDAS_LAYER_SSM = re.compile(r"/aws/service/aws-sdk-pandas/(?P<version>[^/]+)/[^/]+/py3\.11/x86_64/layer-arn")
_PANDAS_LAYER_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:AWSSDKPandas-Python311:\d+$")


class PackagingError(ValueError):
    """A package cannot be measured or staged (a missing folder, an unknown layer)."""


class PackageLimitError(PackagingError):
    """A function's package is over one of Lambda's limits; the message is Lambda's own."""

    def __init__(self, function: str, code: str, message: str, detail: str):
        self.function = function
        self.code = code
        self.lambda_message = message
        super().__init__(f"{function}: {code}: {message} ({detail})")


@dataclass(frozen=True)
class Part:
    """A function's own code or one of its layers, measured."""

    name: str
    unzipped_bytes: int
    zipped_bytes: int | None = None
    source: str = "measured"


@dataclass(frozen=True)
class FunctionPackage:
    """A function's code and its layers, in the order Lambda extracts them."""

    function: str
    code: Part
    layers: tuple[Part, ...] = ()

    @property
    def total_unzipped_bytes(self) -> int:
        return self.code.unzipped_bytes + sum(layer.unzipped_bytes for layer in self.layers)

    def check(self) -> None:
        """Raise ``PackageLimitError`` with Lambda's error when a limit is exceeded."""
        if self.code.zipped_bytes is not None and self.code.zipped_bytes > DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES:
            raise PackageLimitError(
                self.function,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {DIRECT_UPLOAD_REQUEST_LIMIT_BYTES} bytes for the CreateFunction "
                "operation",
                f"its code is {self.code.zipped_bytes} bytes zipped; a direct upload takes at most "
                f"{DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES}",
            )
        # "must be smaller than": the limit itself is already too big; "more than": it still fits.
        if self.code.unzipped_bytes >= UNZIPPED_LIMIT_BYTES:
            raise PackageLimitError(
                self.function,
                "InvalidParameterValueException",
                f"Unzipped size must be smaller than {UNZIPPED_LIMIT_BYTES} bytes",
                f"its code is {self.code.unzipped_bytes} bytes unzipped",
            )
        if self.total_unzipped_bytes > UNZIPPED_LIMIT_BYTES:
            parts = ", ".join(f"{p.name} {p.unzipped_bytes}" for p in (self.code, *self.layers))
            raise PackageLimitError(
                self.function,
                "InvalidParameterValueException",
                f"Layers consume more than the available size of {UNZIPPED_LIMIT_BYTES} bytes",
                f"code and layers are {self.total_unzipped_bytes} bytes unzipped: {parts}",
            )


# -- measuring ------------------------------------------------------------------------------


def package_files(path: Path, *, source: bool = True) -> Iterator[Path]:
    """The files of a package folder, sorted.

    ``source`` means a source folder that ``sam build`` would copy: caches (``__pycache__``,
    ``*.pyc``) are left out as it leaves them out. A built folder (``source=False``) ships whole.
    """
    path = Path(path)
    if not path.is_dir():
        raise PackagingError(f"{path} is not a folder")
    for folder, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not (source and d in _EXCLUDED_DIRS))
        for name in sorted(files):
            if not (source and name.endswith(_EXCLUDED_SUFFIXES)):
                yield Path(folder) / name


def unzipped_size(path: Path, *, source: bool = True) -> int:
    """Bytes a folder takes unzipped as Lambda counts them: the sum of its files' sizes.

    Symbolic links count as the files they point to (what a zip of the folder would hold);
    sparse files count at their full size, as their zip entries would.
    """
    return sum(file.stat().st_size for file in package_files(path, source=source))


def zipped_size(path: Path, *, source: bool = True) -> int:
    """Bytes of a deflated .zip of the folder (what a direct upload sends)."""
    path = Path(path)
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in package_files(path, source=source):
                archive.write(file, file.relative_to(path).as_posix())
        return handle.tell()


def zipped_size_bound(path: Path, *, source: bool = True) -> int:
    """An upper bound of ``zipped_size`` without zipping: deflate adds at most 5 bytes per 16 KiB
    block, and each entry carries a local header and a central directory record (under 100 bytes
    besides its path, which both hold)."""
    total = 22
    for file in package_files(path, source=source):
        size = file.stat().st_size
        total += size + 5 * (size // 16_384 + 1) + 100 + 2 * len(file.relative_to(path).as_posix().encode())
    return total


def measure_code(name: str, path: Path, *, source: bool = True, zip_always: bool = False) -> Part:
    """A function's own code folder: unzipped size, and zipped size when it could matter.

    Zipping a big folder only to find it small is wasted work: below the bound the zipped size
    cannot exceed the direct-upload limit, so it stays ``None`` unless ``zip_always``. Nor is a
    folder over the unzipped limit zipped: it is refused whatever it zips to (Lambda would name
    the request size first when both are exceeded).
    """
    unzipped = unzipped_size(path, source=source)
    if unzipped >= UNZIPPED_LIMIT_BYTES and not zip_always:
        return Part(name, unzipped, None)
    needed = zip_always or zipped_size_bound(path, source=source) > DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES
    return Part(name, unzipped, zipped_size(path, source=source) if needed else None)


def _pandas_layer() -> Part:
    name = f"AWS SDK for pandas {AWS_SDK_PANDAS_VERSION}"
    return Part(name, AWS_SDK_PANDAS_UNZIPPED_BYTES, None, AWS_SDK_PANDAS_SOURCE)


def known_layer(value: str) -> Part | None:
    """A layer from another account whose size is known here (the AWS SDK for pandas layer)."""
    match = _PANDAS_LAYER_SSM.search(value)
    if match and match["version"] == AWS_SDK_PANDAS_VERSION:
        return _pandas_layer()
    if _PANDAS_LAYER_ARN.match(value):
        # An explicit AwsSdkPandasLayerArn: the template requires the 3.17.1 layer's ARN there.
        return _pandas_layer()
    return None


# -- what the library layer ships -------------------------------------------------------------


def _module_file(package_root: Path, module: str) -> Path | None:
    base = package_root.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(file: Path, package: str) -> set[str]:
    """Module names under ``package`` that a file imports (anywhere in it, lazily or not)."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == package:
            module = str(node.module)
            found.add(module)
            # ``from stepml import config`` imports the module stepml.config.
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def runtime_modules(entry_files: Iterable[Path], package_root: Path, package: str = "stepml") -> set[str]:
    """Every module of ``package`` (under ``package_root``) that ``entry_files`` import, transitively,
    with the packages that contain them."""
    wanted: set[str] = set()
    pending = [name for file in entry_files for name in _imports(Path(file), package)]
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        file = _module_file(package_root, name)
        if file is None:
            continue  # an attribute imported with ``from``, not a module
        wanted.add(name)
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]
        pending += sorted(_imports(file, package))
    return wanted


def layer_entry_files(root: Path, template: Mapping[str, Any], layer_logical_id: str) -> list[Path]:
    """The handler sources of every function of the template that uses the layer."""
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    files: list[Path] = []
    for logical, spec in template["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        props = spec.get("Properties", {})
        layers = [*global_layers, *props.get("Layers", [])]
        if {"Ref": layer_logical_id} not in layers:
            continue
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            raise PackagingError(f"{logical}: CodeUri must be a folder of the repository to find its imports")
        files += package_files(root / code_uri)
    return [f for f in files if f.suffix == ".py"]


def layer_files(source_dir: Path, modules: Iterable[str]) -> list[Path]:
    """Files of the layer, relative to ``source_dir`` (the layer's ContentUri): each module's
    source, and the data files (``*.json``) of the packages it ships, such as the build info."""
    files: set[Path] = set()
    for module in modules:
        file = _module_file(source_dir, module)
        if file is None:
            raise PackagingError(f"module {module} is not under {source_dir}")
        files.add(file.relative_to(source_dir))
        if file.name == "__init__.py":
            files |= {data.relative_to(source_dir) for data in file.parent.glob("*.json") if data.is_file()}
    return sorted(files)


def stage_layer(source_dir: Path, files: Iterable[Path], target: Path, *, link: bool) -> None:
    """Put the layer's files under ``target`` (the folder on ``sys.path``), replacing what was there.

    ``link`` makes symbolic links instead of copies, for the local cloud: a linked module's
    ``__file__`` resolves to the repository, so its code version is the checkout's commit.
    """
    if target.exists():
        shutil.rmtree(target)
    for relative in files:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if link:
            destination.symlink_to((source_dir / relative).resolve())
        else:
            shutil.copy2(source_dir / relative, destination)
