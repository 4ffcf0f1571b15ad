"""The dataset config schema, environment settings, samconfig.toml and the config CLI."""

from __future__ import annotations

import json
import shlex
import tomllib

import pytest

from stepml import config
from stepml.cli.main import main
from stepml.config import ConfigError, DatasetConfigError, load_settings, parse_dataset_config
from stepml.local.template import load_template
from tests.helpers import CHURN_CONFIG, REPO_ROOT


def test_the_shipped_example_config_is_valid():
    parsed = parse_dataset_config(json.dumps(CHURN_CONFIG), "examples/datasets/churn.json")
    assert parsed.higher_is_better is True
    hyperparameters = parsed.training_hyperparameters()
    assert hyperparameters["objective"] == "binary:logistic"
    assert hyperparameters["num_round"] == "60" and hyperparameters["eval_metric"] == "auc"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": None}, "field 'label'"),
        ({"problem_type": "ranking"}, "field 'problem_type'"),
        ({"metric": "rmse"}, "metric 'rmse' does not fit problem_type 'binary'"),
        ({"threshold": "high"}, "field 'threshold'"),
        ({"features": []}, "field 'features'"),
        (
            {"features": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "numeric"}]},
            "duplicate feature names: a",
        ),
        ({"features": [{"name": "a", "type": "text"}]}, "field 'features.0.type'"),
        ({"classes": ["a", "b", "c"]}, "exactly 2 label values"),
        ({"split": {"train": 0.8, "validation": 0.15, "test": 0.15}}, "must be 1.0, got 1.1"),
        ({"training": {"instance_type": "m5.large"}}, "field 'training.instance_type'"),
        (
            {"hyperparameters": {"objective": "reg:squarederror"}},
            "hyperparameters.objective 'reg:squarederror' conflicts",
        ),
        ({"name": "Churn_Data"}, "field 'name'"),
        ({"surprise": 1}, "field 'surprise': Extra inputs are not permitted"),
        ({"approval_timeout_seconds": 5}, "field 'approval_timeout_seconds'"),
        ({"approval_timeout_seconds": "soon"}, "field 'approval_timeout_seconds'"),
        # What the Glue job could never read: refused at onboarding, not at Preprocess.
        ({"label": " "}, "field 'label': must name a column, got ' '"),
        ({"row_key": ""}, "field 'row_key': must name a column, got ''"),
        ({"csv_delimiter": '"'}, "field 'csv_delimiter': must not be a quote or a line break, got '\"'"),
        ({"csv_delimiter": "\n"}, "field 'csv_delimiter': must not be a quote or a line break"),
        ({"approvers": ["ana@example.com", "not-an-address"]}, "field 'approvers': approvers[1] 'not-an-address'"),
        ({"approvers": "ana@example.com"}, "field 'approvers': Input should be a valid list"),
        ({"approvers": [7]}, "field 'approvers.0': Input should be a valid string"),
        ({"required_approvals": 0}, "field 'required_approvals': Input should be greater than or equal to 1"),
        (
            {"required_approvals": 2},
            "field 'required_approvals': 2 approvals cannot come from the stack's ApproverEmail alone; "
            "it must be between 1 and 1",
        ),
        (
            # Ana counts once however her address is spelled.
            {"approvers": ["ana@example.com", "ANA@Example.com "], "required_approvals": 2},
            "field 'required_approvals': 2 approvals cannot come from the 1 listed in 'approvers'",
        ),
    ],
)
def test_bad_configs_name_the_file_and_the_field(change, message):
    bad = {**CHURN_CONFIG, **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    with pytest.raises(DatasetConfigError) as error:
        parse_dataset_config(json.dumps(bad), "s3://bucket/datasets/churn/config.json")
    assert str(error.value).startswith("s3://bucket/datasets/churn/config.json: ")
    assert message in str(error.value)


def test_approvers_are_lower_case_and_unique_in_order():
    parsed = parse_dataset_config(
        {
            **CHURN_CONFIG,
            "approvers": ["Ben@Example.com", " ana@example.com", "ben@example.COM"],
            "required_approvals": 2,
        },
        "c.json",
    )
    assert parsed.approvers == ["ben@example.com", "ana@example.com"]
    assert parsed.required_approvals == 2
    defaults = parse_dataset_config(CHURN_CONFIG, "c.json")
    assert (defaults.approvers, defaults.required_approvals) == ([], 1)


def test_multiclass_needs_classes_and_gets_num_class():
    multi = {**CHURN_CONFIG, "problem_type": "multiclass", "metric": "accuracy", "classes": ["a", "b", "c"]}
    assert parse_dataset_config(multi, "m.json").training_hyperparameters()["num_class"] == "3"
    with pytest.raises(DatasetConfigError, match="at least 3 label values"):
        parse_dataset_config({**multi, "classes": None}, "m.json")


def test_not_json_is_named():
    with pytest.raises(DatasetConfigError, match=r"c\.json: not valid JSON"):
        parse_dataset_config(b"{nope", "c.json")


def test_settings_name_the_missing_or_bad_variable():
    with pytest.raises(ConfigError, match="STEPML_LINEAGE_TABLE is missing or empty"):
        load_settings([config.LINEAGE_TABLE], environ={})
    with pytest.raises(ConfigError, match=r"STEPML_APPROVAL_TIMEOUT_SECONDS must be a positive integer, got 'soon'"):
        load_settings([config.APPROVAL_TIMEOUT_SECONDS], environ={config.APPROVAL_TIMEOUT_SECONDS: "soon"})
    with pytest.raises(ConfigError, match="STEPML_APPROVAL_BASE_URL must be an https:// URL"):
        load_settings([config.APPROVAL_BASE_URL], environ={config.APPROVAL_BASE_URL: "http://evil.example"})
    settings = load_settings([config.ENDPOINT_POLL_SECONDS], environ={config.ENDPOINT_POLL_SECONDS: "5"})
    assert settings.endpoint_poll_seconds == 5
    with pytest.raises(ConfigError, match="STEPML_LINEAGE_TABLE was not loaded"):
        _ = settings.lineage_table


def test_every_environment_variable_the_template_sets_is_a_config_constant():
    constants = {value for name, value in vars(config).items() if name.isupper() and isinstance(value, str)}
    template = load_template(REPO_ROOT / "template.yaml")
    for logical, spec in template["Resources"].items():
        if spec["Type"] == "AWS::Serverless::Function":
            for variable in spec["Properties"].get("Environment", {}).get("Variables", {}):
                if variable.startswith("STEPML_"):
                    assert variable in constants, f"{logical} sets {variable}, unknown to stepml.config"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_environments_override_only_declared_parameters(environment):
    samconfig = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    declared = load_template(REPO_ROOT / "template.yaml")["Parameters"]
    deploy = samconfig[environment]["deploy"]["parameters"]
    overrides = dict(pair.split("=", 1) for pair in shlex.split(deploy["parameter_overrides"]))
    assert set(overrides) <= set(declared), set(overrides) - set(declared)
    assert samconfig[environment]["global"]["parameters"]["stack_name"].startswith("stepml-")
    assert deploy["capabilities"] == "CAPABILITY_IAM"


def test_cli_validates_a_config_file(tmp_path, capsys):
    assert main(["datasets", "validate", str(REPO_ROOT / "examples/datasets/churn.json")]) == 0
    assert "valid config for dataset 'churn'" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**CHURN_CONFIG, "metric": "r2"}))
    assert main(["datasets", "validate", str(bad)]) == 1
    assert f"error: {bad}: metric 'r2' does not fit" in capsys.readouterr().err
    assert main(["datasets", "validate", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read: No such file or directory" in capsys.readouterr().err
