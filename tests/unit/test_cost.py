"""``stepml cost``: the arithmetic against a hand-computed run, the Glue minimum, a month, the idle
month, the definition's path, a finished run's measured durations, and bad input."""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from stepml.cli import cost as cost_cli
from stepml.cli.context import CliError, Target
from stepml.cli.cost_flow import (
    DEPLOYED_RUN,
    ESTIMATES,
    batch_decisions,
    estimated_usage,
    first_run_decisions,
    flat_states,
    stack_settings,
    standing_usage,
    walk,
)
from stepml.cli.cost_measure import history_path, measured_usage
from stepml.cli.cost_model import (
    CostError,
    LambdaUse,
    PriceTable,
    RunUsage,
    ServerlessUse,
    StandingUsage,
    cost_report,
    glue_items,
    load_prices,
    run_items,
    standing_items,
    total,
)
from stepml.cli.preflight.inputs import load_samconfig
from stepml.config import parse_dataset_config
from stepml.utils import to_dynamo
from tests.helpers import CHURN_CONFIG, REPO_ROOT

ESTIMATED = {name: estimate.value for name, estimate in ESTIMATES.items()}


def _hand_run(**changes) -> RunUsage:
    usage = RunUsage(
        glue_dpus=2,
        glue_seconds=90,
        training_instance_type="ml.m5.xlarge",
        training_instances=1,
        training_seconds=360,
        hosting_instance_type="ml.m5.large",
        test_endpoint_instances=2,
        test_endpoint_seconds=1800,
        production_instances=1,
        blue_green_seconds=600,
        transitions=100,
        lambdas=[LambdaUse("EvaluateFunction", 2048, 1, 30), LambdaUse("RecordStepFunction", 512, 6, 3)],
        dynamodb_write_units=20,
        dynamodb_read_units=10,
        s3_puts=1000,
        s3_gets=10000,
        s3_gb_stored=1,
        emails=1,
        sns_publishes=1,
        sns_email_notifications=1,
    )
    for key, value in changes.items():
        setattr(usage, key, value)
    return usage


def _hand_standing() -> StandingUsage:
    return StandingUsage("ml.m5.large", 1, True, alarms=3, kms_keys=3, data_capture_gb_month=1, lineage_gb=1)


def test_one_run_matches_the_hand_computation_at_us_east_1_prices():
    items = run_items(_hand_run(), load_prices("us-east-1"))
    expected = [
        0.022,  # Glue: 2 DPU x 90 s = 180 DPU-s = 0.05 DPU-h x $0.44
        0.023,  # training: 1 x ml.m5.xlarge x 360 s = 0.1 h x $0.23
        0.115,  # test endpoint: 2 x ml.m5.large x 1800 s = 3600 instance-s = 1 instance-h x $0.115
        0.0191666667,  # blue/green: 1 x ml.m5.large x 600 s = 1/6 h x $0.115
        0.0025,  # Step Functions: 100 transitions x $0.000025
        0.001000002,  # Evaluate: 2048 MB = 2 GB x 30 s = 60 GB-s x $0.0000166667
        0.0000002,  # Evaluate: 1 request x $0.0000002
        0.000025,  # RecordStep: 0.5 GB x 3 s = 1.5 GB-s x $0.0000166667
        0.0000012,  # RecordStep: 6 requests x $0.0000002
        0.0000125,  # DynamoDB: 20 WRU x $0.000000625
        0.00000125,  # DynamoDB: 10 RRU x $0.000000125
        0.005,  # S3: 1,000 PUT x $0.000005
        0.004,  # S3: 10,000 GET x $0.0000004
        0.023,  # S3: 1 GB-month x $0.023
        0.0001,  # SES: 1 email x $0.0001
        0.0000005,  # SNS: 1 publish x $0.0000005
        0.00002,  # SNS: 1 email notification x $0.00002
    ]
    assert [round(item.cost, 10) for item in items] == pytest.approx(expected, abs=1e-9)
    assert total(items) == pytest.approx(0.2148273187, abs=1e-9)  # the sum of the lines above


def test_glue_bills_at_least_one_minute_then_per_second():
    prices = load_prices("us-east-1")
    # 2 DPU x 30 s is billed as 2 DPU x 60 s = 120 DPU-s = 1/30 DPU-h x $0.44 = $0.014667
    assert glue_items(_hand_run(glue_seconds=30), prices)[0].cost == pytest.approx(0.44 / 30)
    # 2 DPU x 61 s = 122 DPU-s: per second past the minimum
    assert glue_items(_hand_run(glue_seconds=61), prices)[0].cost == pytest.approx(2 * 61 / 3600 * 0.44)


def test_a_month_is_the_runs_plus_the_idle_month():
    report = cost_report(_hand_run(), _hand_standing(), load_prices("us-east-1"), runs_per_month=30)
    assert report.run_total == pytest.approx(0.2148273187, abs=1e-9)
    # idle: 730 h x $0.115 = 83.95; capture 1 GB x 0.023; 3 alarms x 0.10; 3 keys x $1; lineage 1 GB x 0.25
    assert report.idle_month_total == pytest.approx(83.95 + 0.023 + 0.30 + 3.00 + 0.25)
    assert report.month_total == pytest.approx(30 * 0.2148273187 + 87.523, abs=1e-6)
    data = report.as_dict()
    assert data["month_total"] == pytest.approx(report.month_total) and len(data["run"]) == len(report.run)


def test_the_idle_month_is_the_production_endpoint_alarms_and_keys_and_nearly_nothing_else():
    items = standing_items(_hand_standing(), load_prices("us-east-1"))
    by_kind = {(i.service, i.unit): i.cost for i in items}
    assert set(by_kind) == {
        ("SageMaker", "instance-hour"),
        ("S3", "GB-month"),
        ("CloudWatch", "alarm-month"),
        ("KMS", "key-month"),
        ("DynamoDB", "GB-month"),
    }
    rest = total(items) - by_kind[("SageMaker", "instance-hour")] - by_kind[("CloudWatch", "alarm-month")]
    assert rest == pytest.approx(3.273)  # keys $3.00 + storage $0.273: no Glue, training, Lambda or transitions
    # Before the first deploy there is no production endpoint: the idle month is alarms, keys, storage.
    undeployed = StandingUsage("ml.m5.large", 1, False, 3, 3, 0, 0)
    assert total(standing_items(undeployed, load_prices("us-east-1"))) == pytest.approx(3.30)


def test_mwaa_bills_all_month_and_pipelines_trades_glue_for_a_processing_job():
    report = cost_report(_hand_run(), _hand_standing(), load_prices("us-east-1"), runs_per_month=0)
    mwaa = report.alternatives["MWAA (mw1.small)"]
    # 730 h x $0.49 = 357.70 plus 1 GB metadata x $0.10, beside the same idle stack
    assert mwaa["idle_month"] == pytest.approx(357.70 + 0.10 + report.idle_month_total)
    pipelines = report.alternatives["SageMaker Pipelines"]
    # Glue $0.022 and transitions $0.0025 go; processing 90 s on ml.m5.xlarge = 0.025 h x $0.23 = $0.00575
    assert pipelines["run"] == pytest.approx(report.run_total - 0.022 - 0.0025 + 0.00575)


def _settings(env: str = "prod"):
    samconfig = load_samconfig(REPO_ROOT, env)
    definition = json.loads((REPO_ROOT / "statemachine/pipeline.asl.json").read_text())
    return stack_settings(REPO_ROOT, samconfig.region, samconfig.parameters, definition)


def test_the_estimate_reads_the_template_and_follows_the_definitions_path():
    settings = _settings()
    assert settings.glue_dpus == 2 and settings.function_memory["EvaluateFunction"] == 2048
    config = parse_dataset_config(CHURN_CONFIG, "churn")
    usage, path = estimated_usage(settings, config, ESTIMATED)
    assert usage.transitions == len(path) and path[0] == settings.definition["StartAt"]
    # 300 s to InService / 30 s polls: 10 waits, and the check made at once before the first wait
    assert path.count("Wait for test endpoint") == 10 and path.count("Check test endpoint") == 11
    assert usage.training_instance_type == "ml.m5.xlarge"  # prod's TrainingInstanceType (the config says null)
    assert usage.test_endpoint_instances == 2  # challenger and champion variants
    # The test endpoint lives until evaluation is recorded: coming up, Evaluate, Record evaluation;
    # the approval wait comes after its deletion.
    endpoint_life = ESTIMATED["endpoint_create_seconds"] + ESTIMATED["evaluate_seconds"] + ESTIMATED["lambda_seconds"]
    assert usage.test_endpoint_seconds == pytest.approx(endpoint_life)
    assert path.index("Delete test endpoint") < path.index("Request approval")
    calls = {use.function: use.invocations for use in usage.lambdas}
    assert calls["EvaluateFunction"] == 1 and calls["ResolveRunFunction"] == 1
    # update + the baking period (DeploymentBakingSeconds' default) + TerminationWaitInSeconds
    assert usage.emails == 1 and usage.blue_green_seconds == 300 + 600 + 300
    # The production endpoint is Updating while it comes up and through the baking period: 900 s / 30 s polls.
    assert path.count("Check production endpoint") == 30


def test_the_idle_month_counts_the_hourly_monitoring_job_and_a_drift_alarm_per_feature():
    settings = _settings()
    config = parse_dataset_config(CHURN_CONFIG, "churn")
    standing = standing_usage(settings, config, ESTIMATED)
    # The template's alarms: pipeline failed, production latency, 5XX and 4XX.
    assert standing.alarms == 4 and standing.drift_alarms == len(config.features) == 7
    monitoring = standing.monitoring
    assert (monitoring.instance_type, monitoring.instances) == ("ml.m5.large", 1)  # the job definition's ClusterConfig
    assert (monitoring.executions_per_month, monitoring.execution_seconds) == (730, 300)
    items = {item.item: item for item in standing_items(standing, load_prices("us-east-1"))}
    job = items["monitoring 730 x 1 x ml.m5.large x 300 s"]
    # 730 executions x 300 s = 219,000 s = 60.8333 instance-hours x $0.115 (processing ml.m5.large) = $6.9958
    assert job.quantity == pytest.approx(60.833333, abs=1e-6) and job.cost == pytest.approx(6.9958333, abs=1e-6)
    assert items["drift alarms, one per feature"].cost == pytest.approx(0.70)  # 7 x $0.10
    assert items["alarms"].cost == pytest.approx(0.40)  # 4 x $0.10
    # Before the first deploy there is no production, so no schedule and no drift alarm either.
    undeployed = StandingUsage("ml.m5.large", 1, False, 4, 3, 0, 0, monitoring, 7)
    assert total(standing_items(undeployed, load_prices("us-east-1"))) == pytest.approx(0.40 + 3.00)


def test_a_path_naming_a_state_the_definition_lacks_is_refused():
    definition = _settings().definition
    with pytest.raises(CostError, match="no Choice state 'Approved twice\\?'"):
        walk(definition, {"Approved twice?": "Find production endpoint"}, {})
    with pytest.raises(CostError, match="Choice 'Approved\\?' has no branch to 'Nowhere'"):
        walk(definition, {**DEPLOYED_RUN, "Approved?": "Nowhere"}, {})


def test_an_unknown_region_or_instance_type_is_named():
    with pytest.raises(CostError, match=r"no price table for region ap-south-1 \(have: eu-west-1, us-east-1\)"):
        load_prices("ap-south-1")
    with pytest.raises(
        CostError, match=r"unknown instance type ml\.p5\.48xlarge for SageMaker training in the us-east-1"
    ):
        run_items(_hand_run(training_instance_type="ml.p5.48xlarge"), load_prices("us-east-1"))


def _named_unconfirmed(report) -> set[str]:
    prefix = "prices not yet matched against their page: "
    notes = [line.removeprefix(prefix) for line in report.assumptions if line.startswith(prefix)]
    return set(notes[0].split(", ")) if notes else set()


def test_eu_west_1_prices_the_same_run_and_names_its_unconfirmed_prices():
    eu, us = load_prices("eu-west-1"), load_prices("us-east-1")
    assert total(run_items(_hand_run(), eu)) > total(run_items(_hand_run(), us))
    eu_named = _named_unconfirmed(cost_report(_hand_run(), _hand_standing(), load_prices("eu-west-1"), 1))
    us_named = _named_unconfirmed(cost_report(_hand_run(), _hand_standing(), load_prices("us-east-1"), 1))
    assert {"dynamodb.read_request_unit", "sagemaker.hosting.ml.m5.large", "glue.dpu_hour"} <= eu_named
    # Matched against their page: Step Functions and KMS in both regions, Lambda's two prices in us-east-1.
    assert not {"stepfunctions.standard_transition", "kms.key_month"} & (eu_named | us_named)
    assert eu_named - us_named == {"lambda.gb_second", "lambda.request"}


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_every_price_line_says_whether_it_was_matched_and_a_matched_one_quotes_its_page(region):
    table = load_prices(region)
    assert set(table.prices) == set(load_prices("us-east-1").prices)  # the regions price the same keys
    for key, line in table.prices.items():
        assert line["confirmed"] in (True, False), key
        assert line["source"].startswith("https://"), key
        if line["confirmed"]:
            assert line["quote"] and line["checked"] == table.date, key
    # A line without the flag is not trusted: it is named like a false one.
    unflagged = PriceTable("r", "USD", "d", "m", {"x": {"price": 1.0, "unit": "u", "source": "s"}})
    unflagged.price("x")
    assert unflagged.unconfirmed() == ["x"]


def _event(kind: str, at: datetime, name: str | None = None) -> dict:
    event = {"type": kind, "timestamp": at}
    if name is not None:
        event["stateEnteredEventDetails"] = {"name": name}
    return event


def test_the_execution_history_gives_transitions_retries_and_times():
    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    events = [
        _event("ExecutionStarted", start),
        _event("TaskStateEntered", start, "Resolve run"),
        _event("TaskScheduled", start),
        _event("TaskScheduled", start + timedelta(seconds=2)),  # a retry: a second billed transition
        _event("ChoiceStateEntered", start + timedelta(seconds=3), "New, resumed or duplicate?"),
        _event("ExecutionSucceeded", start + timedelta(seconds=4)),
    ]
    path = history_path(events)
    assert path.names == ["Resolve run", "New, resumed or duplicate?"]
    assert path.transitions == 3 and path.retries == 1
    assert path.seconds(0) == 3 and path.seconds(1) == 1


@pytest.fixture
def finished_run(stack):
    """A finished run's lineage items in the template's lineage table (moto in-process)."""
    table = boto3.resource("dynamodb").Table(stack.physical_id("LineageTable"))
    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

    def at(seconds: int) -> str:
        return (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    run_id = "churn-0123456789ab"
    execution = "arn:aws:states:us-east-1:123456789012:execution:gone:run-1"
    items = [
        {"pk": f"RUN#{run_id}", "sk": "RUN", "run_id": run_id, "status": "SUCCEEDED", "attempt": 1,
         "config": CHURN_CONFIG, "execution_arn": execution, "started_at": at(0), "ended_at": at(900)},
        {"pk": f"RUN#{run_id}", "sk": "STEP#preprocess", "step": "preprocess", "status": "SUCCEEDED",
         "job": {"type": "glue", "name": "no-such-job", "run_id": "jr_0"}, "started_at": at(5), "ended_at": at(47)},
        {"pk": f"RUN#{run_id}", "sk": "STEP#train", "step": "train", "status": "SUCCEEDED",
         "job": {"type": "sagemaker-training", "name": "no-such-training-job"}, "started_at": at(50),
         "ended_at": at(125), "gsi1pk": "MODEL#m", "gsi1sk": f"RUN#{run_id}"},
    ]  # fmt: skip
    for item in items:
        table.put_item(Item=to_dynamo(item))
    return Target(boto3.Session(), None, {"LineageTableName": table.name}), run_id


def test_without_a_history_the_test_endpoint_lives_from_training_to_evaluations_end(finished_run):
    """The definition deletes the test endpoint right after evaluation, before the approval wait."""
    target, run_id = finished_run
    table = boto3.resource("dynamodb").Table(target.outputs["LineageTableName"])
    item = {"pk": f"RUN#{run_id}", "sk": "STEP#evaluate", "step": "evaluate", "status": "SUCCEEDED"}
    table.put_item(Item={**item, "started_at": "2026-12-06T08:07:00Z", "ended_at": "2026-12-06T08:07:20Z"})
    usage = measured_usage(_settings("dev"), cost_cli.gather_run(target, run_id), ESTIMATED)
    assert usage.test_endpoint_seconds == 315  # training's end 08:02:05 -> evaluation's end 08:07:20
    assert usage.sources["test endpoint"] == "lineage: training's end to evaluation's end"


def test_a_finished_run_is_priced_from_its_measured_durations(finished_run):
    target, run_id = finished_run
    measured = cost_cli.gather_run(target, run_id)
    # moto has no such execution, job run or training job: the lineage records' times stand in.
    assert measured.history is None and measured.glue_run is None and measured.training_job is None
    usage = measured_usage(_settings("dev"), measured, ESTIMATED)
    assert usage.glue_seconds == 42  # preprocess 08:00:05 -> 08:00:47
    assert usage.training_seconds == 75  # train 08:00:50 -> 08:02:05
    assert usage.test_endpoint_seconds == 775  # training's end 08:02:05 -> the run's end 08:15:00
    assert usage.sources["test endpoint"] == "lineage: training's end to the run's end"  # no evaluation record
    assert usage.training_instance_type == "ml.m5.large"  # dev's TrainingInstanceType
    assert usage.dynamodb_write_units >= 4  # 3 items, the train record indexed by the GSI too
    assert "lineage" in usage.sources["glue"] and "lineage" in usage.sources["training"]
    prices = load_prices("us-east-1")
    # Glue: 2 DPU x max(42, 60) s = 120 DPU-s = 1/30 DPU-h x $0.44
    assert glue_items(usage, prices)[0].cost == pytest.approx(0.44 / 30)
    report = cost_report(usage, standing_usage(_settings("dev"), parse_dataset_config(CHURN_CONFIG, "c"), ESTIMATED),
                         prices, 4)  # fmt: skip
    assert report.month_total == pytest.approx(4 * report.run_total + report.idle_month_total)


def test_a_run_still_running_or_unknown_is_refused(finished_run):
    target, run_id = finished_run
    with pytest.raises(CliError, match="run churn-missing is not in lineage"):
        cost_cli.gather_run(target, "churn-missing")
    table = target.session.resource("dynamodb").Table(target.outputs["LineageTableName"])
    table.update_item(
        Key={"pk": f"RUN#{run_id}", "sk": "RUN"},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": "RUNNING"},
    )
    with pytest.raises(CliError, match=f"run {run_id} is still running"):
        cost_cli.gather_run(target, run_id)


def test_the_command_prints_one_table_and_json(capsys):
    args = argparse.Namespace(
        env="dev", runs_per_month=4, run=None, region=None, dataset_config=None, approval_wait=None,
        processing_instance="ml.m5.xlarge", root=str(REPO_ROOT), json=False, stack_name=None, state_dir=None,
    )  # fmt: skip
    assert cost_cli.cost(args) == 0
    out = capsys.readouterr().out
    assert "One run (us-east-1, USD" in out and "MWAA (mw1.small)" in out and "Assumptions" in out
    args.json, args.region = True, "eu-west-1"
    assert cost_cli.cost(args) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "eu-west-1"
    args.region = "ap-south-1"
    with pytest.raises(CliError, match="no price table for region ap-south-1"):
        cost_cli.cost(args)


def test_a_finished_runs_history_gives_its_path_transitions_and_test_endpoint_life(finished_run):
    target, run_id = finished_run
    measured = cost_cli.gather_run(target, run_id)
    settings = _settings("dev")
    # The history of a first deploy (no champion, no blue/green): each state lasts 2 s, evaluation 10 s.
    decisions = {
        k: v for k, v in DEPLOYED_RUN.items() if k not in ("Champion in service?", "Production endpoint exists?")
    }
    path = walk(settings.definition, decisions, {"Is the test endpoint ready?": 3})
    states = flat_states(settings.definition)
    start, events, clock = datetime(2026, 12, 6, 8, 0, tzinfo=UTC), [], 0
    for name in path:
        events.append(_event(f"{states[name]['Type']}StateEntered", start + timedelta(seconds=clock), name))
        clock += 10 if name == "Evaluate model" else 2
    events.append(_event("ExecutionSucceeded", start + timedelta(seconds=clock)))
    measured.history = events
    usage = measured_usage(settings, measured, ESTIMATED)
    assert usage.transitions == len(path)
    assert usage.test_endpoint_instances == 1 and usage.blue_green_seconds == 0
    create, delete = path.index("Create test endpoint"), path.index("Delete test endpoint")
    # every state between them took 2 s, except Evaluate model's 10 s
    assert usage.test_endpoint_seconds == 2 * (delete - create) + 8
    evaluate = next(use for use in usage.lambdas if use.function == "EvaluateFunction")
    assert (evaluate.invocations, evaluate.seconds) == (1, 10)
    assert "execution history" in usage.sources["test endpoint"]


def test_the_path_enters_every_parallel_branch_and_a_map_processor_once():
    def machine(name: str) -> dict:
        return {"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}}

    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {"Type": "Parallel", "Branches": [machine("A"), machine("B")], "Next": "Each"},
            "Each": {"Type": "Map", "ItemProcessor": machine("C"), "End": True},
        },
    }
    assert walk(definition, {}, {}) == ["Both", "A", "B", "Each", "C"]  # 5 transitions for one item


def test_a_serverless_test_endpoint_is_priced_per_gb_second_and_per_gb_of_data():
    prices = load_prices("us-east-1")
    usage = _hand_run(test_endpoint_serverless=ServerlessUse(memory_mb=2048, seconds=30, gb_processed=0.5))
    items = {item.item: item for item in run_items(usage, prices)}
    compute = items["test endpoint serverless 2048 MB x 30 s of inference"]
    # 2 GB x 30 s = 60 GB-s x $0.00002 = $0.0012; 0.5 GB in and out x $0.016 = $0.008
    assert (compute.quantity, compute.unit) == (60, "GB-second") and compute.cost == pytest.approx(0.0012)
    assert items["test endpoint serverless data in and out"].cost == pytest.approx(0.008)
    # It replaces the instances' line ($0.115 for the hand run's 2 instances x 1800 s).
    assert not any(name.startswith("test endpoint 2 x") for name in items)
    assert total(run_items(usage, prices)) == pytest.approx(0.2148273187 - 0.115 + 0.0012 + 0.008, abs=1e-9)
    # Both prices are transcribed but not yet matched against the pricing page: the report says so.
    report = cost_report(usage, _hand_standing(), prices, 1)
    assert "sagemaker.serverless.data_gb, sagemaker.serverless.gb_second" in report.assumptions[-1]


def test_a_first_run_asking_for_serverless_takes_the_serverless_config_and_a_champion_run_keeps_instances():
    settings = _settings()
    data = copy.deepcopy(CHURN_CONFIG)
    data["hosting"]["test_endpoint_serverless"] = {"memory_mb": 3072, "max_concurrency": 4}
    config = parse_dataset_config(data, "churn")
    usage, path = estimated_usage(settings, config, ESTIMATED, first_run_decisions(config))
    assert "Create serverless test endpoint config" in path and "Describe champion endpoint" not in path
    assert usage.test_endpoint_instances == 0
    assert usage.test_endpoint_serverless == ServerlessUse(3072, ESTIMATED["evaluate_seconds"], 0.002)
    assert usage.blue_green_seconds == 0  # the first deploy creates production: no update
    assert path.count("Check production endpoint") == 10  # 300 s to InService / 30 s polls: a create does not bake
    # Beside a champion the test endpoint has two variants, which a serverless endpoint cannot take.
    champion_run, champion_path = estimated_usage(settings, config, ESTIMATED)
    assert "Create serverless test endpoint config" not in champion_path
    assert champion_run.test_endpoint_serverless is None and champion_run.test_endpoint_instances == 2
    # Without the setting a first run's test endpoint is instance-based.
    plain = parse_dataset_config(CHURN_CONFIG, "churn")
    first, first_path = estimated_usage(settings, plain, ESTIMATED, first_run_decisions(plain))
    assert "Create test endpoint config" in first_path and first.test_endpoint_instances == 1


def test_batch_scoring_prices_transform_instance_seconds_instead_of_the_test_endpoint():
    prices = load_prices("us-east-1")
    usage = _hand_run(test_endpoint_instances=0, test_endpoint_seconds=0, transform_jobs=2, transform_seconds=720)
    items = {item.item: item for item in run_items(usage, prices)}
    transform = items["batch transform 2 job(s) x 1 x ml.m5.large, 720 s in all"]
    # 720 instance-seconds = 0.2 instance-hour x ml.m5.large's $0.115
    assert (transform.quantity, transform.unit) == (0.2, "instance-hour") and transform.cost == pytest.approx(0.023)
    assert not any(name.startswith("test endpoint") for name in items)
    assert total(run_items(usage, prices)) == pytest.approx(0.2148273187 - 0.115 + 0.023, abs=1e-9)


def test_a_transform_job_is_priced_at_the_batch_transform_line_not_the_hosting_line():
    us = load_prices("us-east-1")
    # A table whose Batch Transform rate differs from hosting's shows which line a job is priced at.
    prices = PriceTable(
        us.region, us.currency, us.date, us.method,
        {**us.prices, "sagemaker.transform.ml.m5.large": {"price": 0.5, "unit": "u", "source": "s"}},
    )  # fmt: skip
    usage = _hand_run(test_endpoint_instances=0, test_endpoint_seconds=0, transform_jobs=2, transform_seconds=720)
    items = {item.item: item for item in run_items(usage, prices)}
    # 2 jobs x 360 s = 720 instance-seconds = 0.2 instance-hour x $0.50 = $0.10
    assert items["batch transform 2 job(s) x 1 x ml.m5.large, 720 s in all"].cost == pytest.approx(0.10)
    # The blue/green fleet is still hosting: 1 x 600 s = 1/6 h x $0.115
    assert items["blue/green: new fleet beside the old 1 x 600 s"].cost == pytest.approx(0.115 / 6)
    assert "sagemaker.transform.ml.m5.large" in prices.unconfirmed()
    # A type Batch Transform does not take (ml.t2.medium hosts, it does not transform) is named.
    with pytest.raises(
        CostError, match=r"unknown instance type ml\.t2\.medium for SageMaker transform in the us-east-1"
    ):
        run_items(_hand_run(transform_jobs=1, transform_seconds=60, hosting_instance_type="ml.t2.medium"), us)


def test_the_batch_path_runs_one_transform_job_per_model_and_creates_no_test_endpoint():
    settings = _settings()
    config = parse_dataset_config(CHURN_CONFIG, "churn")
    usage, path = estimated_usage(settings, config, ESTIMATED, batch_decisions(DEPLOYED_RUN))
    assert {"Score challenger in batch", "Score champion in batch", "Evaluate model in batch"} <= set(path)
    assert "Create test endpoint" not in path and "Delete test endpoint" not in path
    assert usage.transform_jobs == 2 and usage.transform_seconds == 2 * ESTIMATED["transform_seconds"]
    assert usage.test_endpoint_instances == 0 and usage.test_endpoint_seconds == 0
    first, first_path = estimated_usage(settings, config, ESTIMATED, batch_decisions(first_run_decisions(config)))
    assert "Score champion in batch" not in first_path and first.transform_jobs == 1
