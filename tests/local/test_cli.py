"""The stepml CLI against the local cloud (the module's cloud writes cloud.json to its state folder)."""

from __future__ import annotations

import json
import time

import pytest

from stepml.cli.main import main
from tests.helpers import REPO_ROOT


@pytest.fixture
def cli(cloud, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--state-dir", str(cloud.state_dir)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_datasets_put_and_list(cli):
    code, out, err = cli("datasets", "put", "churn", str(REPO_ROOT / "examples/datasets/churn.json"))
    assert code == 0 and "config stored at s3://" in out, err
    code, out, _ = cli("datasets", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and {"dataset": "churn", "problem_type": "binary"}.items() <= listed[0].items()


def test_datasets_put_refuses_a_config_for_another_dataset(cli):
    code, _, err = cli("datasets", "put", "fraud", str(REPO_ROOT / "examples/datasets/churn.json"))
    assert code == 1 and "the config is for dataset 'churn', not 'fraud'" in err


def test_upload_of_a_missing_file_is_a_one_line_error(cli):
    code, out, err = cli("upload", "/no/such/file.csv", "--dataset", "churn")
    assert code == 1 and err.strip() == "error: /no/such/file.csv: no such file" and out == ""


def test_upload_then_runs_lists_the_run(cli, tmp_path, capsys):
    sample = tmp_path / "tiny.csv"
    assert main(["sample-data", "--rows", "30", "--out", str(sample)]) == 0
    assert "wrote 30 rows" in capsys.readouterr().out
    code, out, _ = cli("upload", str(sample), "--dataset", "churn", "--json")
    uploaded = json.loads(out)
    assert code == 0 and uploaded["uri"].endswith("/incoming/churn/tiny.csv")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, out, _ = cli("runs", "--json")
        if any(r["run_id"] == uploaded["run_id"] for r in json.loads(out)):
            break
        time.sleep(0.5)
    runs = {r["run_id"]: r for r in json.loads(out)}
    assert uploaded["run_id"] in runs and runs[uploaded["run_id"]]["dataset"] == "churn"
    code, out, _ = cli("runs", "show", uploaded["run_id"])
    assert code == 0 and f"run {uploaded['run_id']}" in out and "tiny.csv" in out


def test_runs_show_of_an_unknown_run_is_named(cli):
    code, _, err = cli("runs", "show", "churn-000000000000")
    assert code == 1 and "run churn-000000000000 is not in lineage" in err


def test_outbox_and_predict_errors(cli, tmp_path):
    code, out, _ = cli("outbox", "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2,3\n")
    code, _, err = cli("predict", "--endpoint", "no-such-endpoint", str(rows))
    assert code == 1 and "endpoint no-such-endpoint" in err


def test_approve_refuses_something_that_is_not_a_link(capsys):
    code = main(["approve", "not-a-link"])
    err = capsys.readouterr().err
    assert code == 1 and "is not an approval link" in err


def test_asl_export_from_the_local_cloud_fills_every_placeholder_and_imports_back_unchanged(cli, tmp_path):
    definition = tmp_path / "pipeline.asl.json"
    definition.write_bytes((REPO_ROOT / "statemachine/pipeline.asl.json").read_bytes())
    exported = tmp_path / "exported.json"
    code, _, err = cli("asl", "export", "--definition", str(definition), "--out", str(exported))
    assert code == 0, err
    assert "${" not in exported.read_text() and ":function:" in exported.read_text()
    code, out, err = cli("asl", "import", str(exported), "--definition", str(definition), "--write")
    assert code == 0 and out.startswith("no changes"), (out, err)
    assert definition.read_bytes() == (REPO_ROOT / "statemachine/pipeline.asl.json").read_bytes()
