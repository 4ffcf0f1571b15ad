"""Lambda's package limits and what the library layer ships (stepml.packaging)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import zipfile

import pytest

from stepml import packaging
from stepml.local import account_defaults
from stepml.local.template import ResolvedTemplate, load_template
from tests.helpers import REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
LIMIT = packaging.UNZIPPED_LIMIT_BYTES


def _package(code: int, *layers: int, zipped: int | None = None) -> packaging.FunctionPackage:
    return packaging.FunctionPackage(
        "Fn",
        packaging.Part("code", code, zipped),
        tuple(packaging.Part(f"layer{i}", size) for i, size in enumerate(layers)),
    )


# --- the limits, in Lambda's words --------------------------------------------------------------


def test_code_and_layers_up_to_the_limit_fit_and_one_byte_more_is_refused_with_lambdas_error():
    _package(1_000, LIMIT - 1_000).check()
    with pytest.raises(packaging.PackageLimitError) as refused:
        _package(1_000, LIMIT - 1_000, 1).check()
    assert refused.value.code == "InvalidParameterValueException"
    assert refused.value.lambda_message == "Layers consume more than the available size of 262144000 bytes"
    assert str(refused.value).startswith("Fn: InvalidParameterValueException: Layers consume more than")
    assert "262144001 bytes unzipped: code 1000, layer0 262143000, layer1 1" in str(refused.value)


def test_code_alone_must_be_smaller_than_the_limit():
    _package(LIMIT - 1).check()
    with pytest.raises(
        packaging.PackageLimitError, match=r"^Fn: InvalidParameterValueException: Unzipped size must be"
    ):
        _package(LIMIT).check()


def test_a_direct_upload_over_50_mib_zipped_is_refused_as_lambda_refuses_the_request():
    _package(60_000_000, zipped=packaging.DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES).check()
    with pytest.raises(packaging.PackageLimitError) as refused:
        _package(60_000_000, zipped=packaging.DIRECT_UPLOAD_ZIPPED_LIMIT_BYTES + 1).check()
    assert refused.value.code == "RequestEntityTooLargeException"
    assert (
        refused.value.lambda_message == "Request must be smaller than 69905067 bytes for the CreateFunction operation"
    )


# --- measuring as Lambda counts -----------------------------------------------------------------


def test_sizes_are_the_sum_of_file_sizes_sparse_files_at_full_size_links_as_their_targets(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_bytes(b"x" * 100)
    with open(folder / "sub" / "sparse.bin", "wb") as handle:
        handle.truncate(10_000_000)
    (tmp_path / "outside.txt").write_bytes(b"y" * 7)
    os.symlink(tmp_path / "outside.txt", folder / "link.txt")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"z" * 50)
    assert packaging.unzipped_size(folder) == 100 + 10_000_000 + 7, "caches are not what sam build ships"
    assert packaging.unzipped_size(folder, source=False) == 100 + 10_000_000 + 7 + 50, "a built folder ships whole"


def test_the_zipped_size_is_a_real_zip_and_the_bound_is_never_below_it(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "random.bin").write_bytes(os.urandom(300_000))  # deflate cannot shrink it
    (folder / "text.py").write_text("print('hello')\n" * 2_000)
    for i in range(50):
        (folder / f"tiny_{i}.py").write_text("")
    zipped = packaging.zipped_size(folder)
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for file in packaging.package_files(folder):
            bundle.write(file, file.relative_to(folder).as_posix())
    assert zipped == archive.stat().st_size
    assert packaging.zipped_size_bound(folder) >= zipped


def test_a_small_folder_is_not_zipped_to_be_measured(tmp_path):
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 1\n")
    assert packaging.measure_code("code", tmp_path).zipped_bytes is None
    assert packaging.measure_code("code", tmp_path, zip_always=True).zipped_bytes > 0


# --- the AWS SDK for pandas layer ----------------------------------------------------------------


def test_the_pandas_layer_of_the_template_is_known_at_the_pinned_version():
    resolved = ResolvedTemplate(load_template(TEMPLATE), stack_name="stepml-dev")
    layers = resolved.resolved_properties("EvaluateFunction")["Layers"]
    pandas = packaging.known_layer(layers[1])
    assert pandas is not None and pandas.unzipped_bytes == packaging.AWS_SDK_PANDAS_UNZIPPED_BYTES
    pinned = re.search(r"^awswrangler==(.+)$", (REPO_ROOT / "requirements/constraints.txt").read_text(), re.M)
    assert pinned and pinned[1] == packaging.AWS_SDK_PANDAS_VERSION, "the local stand-in is the layer's version"
    assert account_defaults.AWS_SDK_PANDAS_VERSION == packaging.AWS_SDK_PANDAS_VERSION, "the seeded layer too"
    explicit = ResolvedTemplate(
        load_template(TEMPLATE),
        parameter_overrides={
            "AwsSdkPandasLayerArn": "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python311:20"
        },
    )
    assert packaging.known_layer(explicit.resolved_properties("EvaluateFunction")["Layers"][1]) == pandas
    assert (
        packaging.known_layer("{{resolve:ssm:/aws/service/aws-sdk-pandas/3.9.0/us-east-1/py3.11/x86_64/layer-arn}}")
        is None
    )
    assert packaging.known_layer("arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:5") is None


# --- what the library layer ships ---------------------------------------------------------------


def test_the_layer_ships_what_the_handlers_import_and_not_the_cli_or_the_local_cloud():
    entries = packaging.layer_entry_files(REPO_ROOT, load_template(TEMPLATE), "StepmlLibraryLayer")
    assert sorted(p.relative_to(REPO_ROOT).as_posix() for p in entries) == [
        "approval_api/app.py",
        "lambdas/drift_retrain/app.py",
        "lambdas/evaluate/app.py",
        "lambdas/record_step/app.py",
        "lambdas/request_approval/app.py",
        "lambdas/resolve_run/app.py",
    ]
    modules = packaging.runtime_modules(entries, REPO_ROOT / "src")
    assert {"stepml", "stepml.config", "stepml.lineage", "stepml.approvals", "stepml.evaluation"} <= modules
    assert {"stepml.uploads", "stepml.version", "stepml.metrics", "stepml.approval_pages"} <= modules, "indirect"
    assert not {m for m in modules if m.startswith(("stepml.local", "stepml.cli"))}
    # DriftRetrain asks lineage which run's model production serves.
    assert {"stepml.drift_retrain", "stepml.lineage_queries"} <= modules
    assert not modules & {"stepml.sample_data", "stepml.packaging"}


def test_imports_are_followed_through_from_imports_lazy_imports_and_packages(tmp_path):
    source = tmp_path / "src"
    (source / "pkg" / "sub").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "sub" / "__init__.py").write_text("")
    (source / "pkg" / "sub" / "deep.py").write_text("def f():\n    from pkg import lazy\n")
    (source / "pkg" / "lazy.py").write_text("import json\n")
    (source / "pkg" / "unused.py").write_text("")
    (source / "pkg" / "data.json").write_text("{}")
    entry = tmp_path / "app.py"
    entry.write_text("from pkg.sub.deep import f\nimport pkg.sub\nfrom pkg import name_not_a_module\n")
    modules = packaging.runtime_modules([entry], source, package="pkg")
    assert modules == {"pkg", "pkg.sub", "pkg.sub.deep", "pkg.lazy"}
    files = [p.as_posix() for p in packaging.layer_files(source, modules)]
    assert files == ["pkg/__init__.py", "pkg/data.json", "pkg/lazy.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]


def test_staging_links_or_copies_exactly_the_files_and_replaces_what_was_there(tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    target = tmp_path / "layer"
    (target / "stale").mkdir(parents=True)
    packaging.stage_layer(source, [packaging.Path("pkg/__init__.py")], target, link=True)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["pkg", "pkg/__init__.py"]
    assert (target / "pkg" / "__init__.py").is_symlink()
    packaging.stage_layer(source, [packaging.Path("pkg/__init__.py")], target, link=False)
    assert not (target / "pkg" / "__init__.py").is_symlink()
    assert (target / "pkg" / "__init__.py").read_text() == "VALUE = 1\n"


# --- the scripts: the size check after sam build, the SAM transform for checkov -------------------


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


def _built(tmp_path, layer_bytes: int):
    """A build folder as sam build leaves it: the built template, a function folder and a layer folder."""
    (tmp_path / "Fn").mkdir(parents=True)
    (tmp_path / "Fn" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "Lib" / "python").mkdir(parents=True)
    with open(tmp_path / "Lib" / "python" / "blob.bin", "wb") as handle:
        handle.truncate(layer_bytes)
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        "  Lib:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: Lib\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.11\n"
        "      Handler: app.handler\n      CodeUri: Fn\n      Layers:\n        - !Ref Lib\n"
        "        - '{{resolve:ssm:/aws/service/aws-sdk-pandas/3.17.1/us-east-1/py3.11/x86_64/layer-arn}}'\n"
    )
    return tmp_path


def test_the_size_check_prints_each_part_and_fails_over_the_limit_with_lambdas_error(tmp_path, capsys):
    check = _script("check_package_sizes")
    spare = LIMIT - packaging.AWS_SDK_PANDAS_UNZIPPED_BYTES
    assert check.main(["--build-dir", str(_built(tmp_path / "fits", spare - 1_000))]) == 0
    table = capsys.readouterr().out
    assert "layer Lib" in table and "layer AWS SDK for pandas 3.17.1" in table and "262,144,000" in table
    assert check.main(["--build-dir", str(_built(tmp_path / "over", spare))]) == 1
    assert "FAILED: Fn: InvalidParameterValueException: Layers consume more than the available size" in (
        capsys.readouterr().out
    )


def test_the_transformed_template_is_plain_cloudformation_that_keeps_the_checkov_suppressions():
    transformed = _script("transform_template").transformed(TEMPLATE)
    types = {spec["Type"] for spec in transformed["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}
    functions = {k: v for k, v in transformed["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 6
    for logical, spec in functions.items():
        skipped = {s["id"] for s in spec["Metadata"]["checkov"]["skip"]}
        assert {"CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"} <= skipped, logical
    assert functions["ApprovalApiFunction"]["Properties"]["ReservedConcurrentExecutions"] == 20


# --- make test's two tiers: the end of the log names the failing tests ------------------------------


def _python_without_pytest(tmp_path):
    """An executable that runs ``<it> -m pytest ARGS`` as ``python ARGS``: a tier runs a one-liner."""
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\nshift 2\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    return str(shim)


def _printing(lines: list[str], exit_code: int) -> list[str]:
    return ["-c", f"import sys; print({chr(10).join(lines)!r}); sys.exit({exit_code})"]


def test_the_tiers_end_with_each_failed_tiers_failed_tests_and_the_first_non_zero_exit(capsys, tmp_path):
    tiers = _script("run_test_tiers")
    summary = [
        "..F.E",
        "=== short test summary info ===",
        "FAILED tests/unit/test_a.py::test_one - AssertionError: 1 != 2",
        "ERROR tests/unit/test_b.py::test_two - RuntimeError: no port",
        "1 failed, 3 passed, 1 error",
    ]
    failed = tiers.Tier("unit", _printing(summary, 1))
    passed = tiers.Tier("cloud", _printing(["....", "FAILED is a word this passing tier printed"], 0))

    assert tiers.run([failed, passed], serial=True, python=_python_without_pytest(tmp_path)) == 1

    tail = capsys.readouterr().out.splitlines()[-5:]
    assert tail[0].startswith("==> unit: exit 1 after 0 min ")
    assert tail[1].startswith("==> cloud: exit 0 after 0 min ")
    assert tail[2] == "==> unit failed: 2 failed test(s) in its short summary"
    assert tail[3] == "    FAILED tests/unit/test_a.py::test_one - AssertionError: 1 != 2"
    assert tail[4] == "    ERROR tests/unit/test_b.py::test_two - RuntimeError: no port"


def test_a_tier_that_fails_without_a_short_summary_still_says_so(capsys, tmp_path):
    tiers = _script("run_test_tiers")
    crashed = tiers.Tier("unit", ["-c", "import sys; sys.exit(4)"])

    assert tiers.run([crashed], serial=False, python=_python_without_pytest(tmp_path)) == 4

    tail = capsys.readouterr().out.splitlines()[-2:]
    assert tail == ["==> unit: exit 4 after 0 min 0 s", "==> unit failed: no failed test(s) in its short summary"]


@pytest.mark.parametrize(("seconds", "said"), [(579.6, "9 min 40 s"), (640.2, "10 min 40 s"), (59.5, "1 min 0 s")])
def test_a_tiers_wall_time_is_said_in_whole_minutes_and_seconds(seconds, said):
    assert _script("run_test_tiers").duration(seconds) == said
