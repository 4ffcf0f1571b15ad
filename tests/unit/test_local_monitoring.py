"""Monitoring schedules in the local cloud: the API, the executions' reports and metrics, the alarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stepml.local.sagemaker.errors import SageMakerValidationError
from stepml.local.sagemaker.monitoring import METRICS_NAMESPACE, check_schedule_config, metric_data
from stepml.local.services import cloudwatch as alarms
from stepml.monitoring.analysis import analyze
from tests.unit.test_monitoring_analysis import _baseline, capture_lines, sample

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/monitor"
IMAGE = "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
BUCKET = "artifacts"
HOURLY = {"ScheduleExpression": "cron(0 * ? * * *)"}


@pytest.mark.parametrize(
    "expression", ["cron(0 * ? * * *)", "cron(0 12 ? * * *)", "cron(0 0/2 ? * * *)", "cron(0 17/12 ? * * *)"]
)
def test_the_schedule_expressions_aws_accepts_pass(expression):
    check_schedule_config(
        {"MonitoringJobDefinitionName": "d", "ScheduleConfig": {"ScheduleExpression": expression}}, {}
    )


@pytest.mark.parametrize("expression", ["cron(*/5 * ? * * *)", "rate(1 hour)", "cron(0 25 ? * * *)"])
def test_other_schedule_expressions_are_refused(expression):
    with pytest.raises(SageMakerValidationError) as error:
        check_schedule_config({"ScheduleConfig": {"ScheduleExpression": expression}}, {})
    assert str(error.value).startswith(f"Invalid ScheduleExpression '{expression}'")


def test_metric_data_are_the_analyzers_metrics_per_feature():
    statistics, constraints = _baseline(sample(400))
    found = analyze(statistics, constraints, capture_lines(sample(200, seed=3, shift=25)))
    when = datetime(2026, 1, 2, 3, tzinfo=UTC)
    data = {d["MetricName"]: d for d in metric_data(found, endpoint="prod", schedule="prod-dq", when=when)}
    assert sorted(data) == sorted(
        [f"feature_baseline_drift_{f}" for f in ("age", "income", "plan")]
        + [f"feature_non_null_{f}" for f in ("age", "income", "plan")]
        + ["feature_data_age", "feature_data_income"]
    )
    assert data["feature_baseline_drift_age"]["Value"] > 0.1 >= data["feature_baseline_drift_plan"]["Value"]
    assert data["feature_non_null_plan"]["Value"] == 1.0
    assert data["feature_data_age"]["StatisticValues"]["SampleCount"] == 200
    assert data["feature_data_age"]["Dimensions"] == [
        {"Name": "Endpoint", "Value": "prod"},
        {"Name": "MonitoringSchedule", "Value": "prod-dq"},
    ]


def _alarm(**fields):
    values = {
        "metric_data_queries": [],
        "metric_name": "m",
        "namespace": "n",
        "statistic": "Maximum",
        "comparison_operator": "GreaterThanThreshold",
        "threshold": 0.1,
        "period": 60,
        "evaluation_periods": 1,
        "datapoints_to_alarm": None,
        "treat_missing_data": "notBreaching",
        "dimensions": [],
    }
    return SimpleNamespace(**(values | fields))


def _datum(value, at):
    return SimpleNamespace(namespace="n", name="m", dimensions=[], timestamp=at, value=value)


def test_an_alarm_evaluates_its_periods_and_missing_data():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert alarms.evaluate(_alarm(), [_datum(0.3, now)], now)[0] == "ALARM"
    assert alarms.evaluate(_alarm(), [_datum(0.05, now)], now)[0] == "OK"
    old = now - timedelta(seconds=120)
    assert alarms.evaluate(_alarm(), [_datum(0.3, old)], now)[0] == "OK"
    assert alarms.evaluate(_alarm(treat_missing_data="missing"), [], now)[0] == "INSUFFICIENT_DATA"
    two_of_three = _alarm(evaluation_periods=3, datapoints_to_alarm=2)
    once = [_datum(0.3, now)]
    assert alarms.evaluate(two_of_three, once, now)[0] == "OK"
    assert alarms.evaluate(two_of_three, [*once, _datum(0.2, now - timedelta(seconds=61))], now)[0] == "ALARM"
    assert alarms.evaluate(_alarm(metric_data_queries=[{"Id": "e"}]), once, now) is None


def test_statistic_sets_count_as_their_samples(aws_credentials):
    """PutMetricData with StatisticValues (as endpoints publish) is read from moto's stored datum."""
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        cloudwatch.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "ModelLatency",
                    "StatisticValues": {"SampleCount": 4, "Sum": 10.0, "Minimum": 1.0, "Maximum": 4.0},
                },
                {"MetricName": "ModelLatency", "Value": 6.0},
            ],
        )
        from moto.cloudwatch.models import cloudwatch_backends

        data = cloudwatch_backends["123456789012"][REGION].metric_data
        assert alarms.statistic(data, "SampleCount") == 5
        assert alarms.statistic(data, "Sum") == 16.0
        assert alarms.statistic(data, "Maximum") == 6.0
        assert alarms.statistic(data, "Minimum") == 1.0
        assert alarms.statistic(data, "Average") == 16.0 / 5


# --------------------------------------------------------------------------- through the API


@pytest.fixture
def monitored(aws_credentials, sagemaker_engines, mail_outbox, apply_patch, tmp_path):
    with mock_aws():
        apply_patch(alarms.ALARM_EVALUATION)
        engine = sagemaker_engines(
            boto3.Session(region_name=REGION), work_dir=tmp_path / "sm", monitor_period_seconds=3600
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        statistics, constraints = _baseline(sample(400))
        s3.put_object(Bucket=BUCKET, Key="processed/run/statistics.json", Body=json.dumps(statistics))
        s3.put_object(Bucket=BUCKET, Key="processed/run/constraints.json", Body=json.dumps(constraints))
        yield SimpleNamespace(
            engine=engine, s3=s3, outbox=mail_outbox, sagemaker=boto3.client("sagemaker", region_name=REGION)
        )


def _job_definition(sagemaker, name="prod-dq-1", image=IMAGE):
    sagemaker.create_data_quality_job_definition(
        JobDefinitionName=name,
        DataQualityBaselineConfig={
            "ConstraintsResource": {"S3Uri": f"s3://{BUCKET}/processed/run/constraints.json"},
            "StatisticsResource": {"S3Uri": f"s3://{BUCKET}/processed/run/statistics.json"},
        },
        DataQualityAppSpecification={"ImageUri": image, "Environment": {"publish_cloudwatch_metrics": "Enabled"}},
        DataQualityJobInput={"EndpointInput": {"EndpointName": "prod", "LocalPath": "/opt/ml/processing/input"}},
        DataQualityJobOutputConfig={
            "MonitoringOutputs": [
                {"S3Output": {"S3Uri": f"s3://{BUCKET}/monitoring", "LocalPath": "/opt/ml/processing/output"}}
            ]
        },
        JobResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 20}},
        RoleArn=ROLE,
    )


def test_job_definitions_are_checked_and_unique(monitored):
    _job_definition(monitored.sagemaker)
    with pytest.raises(ClientError) as error:
        _job_definition(monitored.sagemaker)
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    assert error.value.response["Error"]["Message"] == (
        "Job definition arn:aws:sagemaker:us-east-1:123456789012:data-quality-job-definition/prod-dq-1 already exists"
    )
    with pytest.raises(ClientError) as error:
        monitored.sagemaker.create_monitoring_schedule(
            MonitoringScheduleName="s",
            MonitoringScheduleConfig={
                "MonitoringJobDefinitionName": "missing",
                "MonitoringType": "DataQuality",
                "ScheduleConfig": HOURLY,
            },
        )
    assert error.value.response["Error"] == {"Code": "ResourceNotFound", "Message": "Job definition missing not found"}


def test_a_schedule_writes_reports_and_metrics_through_the_api(monitored):
    sagemaker, s3 = monitored.sagemaker, monitored.s3
    _job_definition(sagemaker)
    # The endpoint's capture files: what the engine's data capture wrote for "prod".
    monitored.engine.monitoring._capture_destination = lambda endpoint, account, region: f"s3://{BUCKET}/capture"
    config = {"MonitoringJobDefinitionName": "prod-dq-1", "MonitoringType": "DataQuality", "ScheduleConfig": HOURLY}
    created = sagemaker.create_monitoring_schedule(MonitoringScheduleName="prod-dq", MonitoringScheduleConfig=config)
    assert created["MonitoringScheduleArn"].endswith(":monitoring-schedule/prod-dq")
    with pytest.raises(ClientError) as error:
        sagemaker.create_monitoring_schedule(MonitoringScheduleName="prod-dq", MonitoringScheduleConfig=config)
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    listed = sagemaker.list_monitoring_schedules(EndpointName="prod", NameContains="prod-dq")
    assert [s["MonitoringScheduleName"] for s in listed["MonitoringScheduleSummaries"]] == ["prod-dq"]

    drifted = "\n".join(capture_lines(sample(300, seed=5, shift=30), per_request=10))
    s3.put_object(Bucket=BUCKET, Key="capture/prod/AllTraffic/2026/01/01/00/a.jsonl", Body=drifted)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
    boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
    cloudwatch.put_metric_alarm(
        AlarmName="prod-drift-age",
        Namespace=METRICS_NAMESPACE,
        MetricName="feature_baseline_drift_age",
        Dimensions=[{"Name": "Endpoint", "Value": "prod"}, {"Name": "MonitoringSchedule", "Value": "prod-dq"}],
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.1,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
    )

    execution = monitored.engine.monitoring.run_now("prod-dq", account_id="123456789012", region=REGION)
    assert execution["MonitoringExecutionStatus"] == "CompletedWithViolations", execution
    folder = f"monitoring/prod/prod-dq/{execution['ScheduledTime']:%Y/%m/%d/%H}/"
    violations = json.loads(s3.get_object(Bucket=BUCKET, Key=folder + "constraint_violations.json")["Body"].read())
    assert {"feature_name": "age", "constraint_check_type": "baseline_drift_check"}.items() <= violations["violations"][
        0
    ].items()
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=folder + "statistics.json")["Body"].read())["dataset"] == {
        "item_count": 300
    }
    executions = sagemaker.list_monitoring_executions(MonitoringScheduleName="prod-dq")["MonitoringExecutionSummaries"]
    assert [e["MonitoringExecutionStatus"] for e in executions] == ["CompletedWithViolations"]
    described = sagemaker.describe_monitoring_schedule(MonitoringScheduleName="prod-dq")
    assert described["LastMonitoringExecutionSummary"]["MonitoringExecutionStatus"] == "CompletedWithViolations"
    assert described["EndpointName"] == "prod" and described["MonitoringScheduleStatus"] == "Scheduled"

    alarm = cloudwatch.describe_alarms(AlarmNames=["prod-drift-age"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM", alarm
    [mail] = [m for m in monitored.outbox.messages() if "prod-drift-age" in (m.subject or "")]
    assert mail.subject == 'ALARM: "prod-drift-age" in US East (N. Virginia)'

    logs = boto3.client("logs", region_name=REGION)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs")["logStreams"]
    assert [s["logStreamName"].split("/")[0] for s in streams] == [execution["ProcessingJobArn"].rsplit("/", 1)[1]]

    # The next execution finds no new capture file: it fails as AWS's does without data.
    again = monitored.engine.monitoring.run_now("prod-dq", account_id="123456789012", region=REGION)
    assert again["MonitoringExecutionStatus"] == "Failed"
    assert again["FailureReason"].startswith("Job inputs had no data")


def test_a_new_baseline_moves_the_schedule_and_a_foreign_image_fails_the_execution(monitored):
    sagemaker = monitored.sagemaker
    _job_definition(sagemaker)
    _job_definition(sagemaker, "prod-dq-2", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1")
    config = {"MonitoringJobDefinitionName": "prod-dq-1", "MonitoringType": "DataQuality", "ScheduleConfig": HOURLY}
    sagemaker.create_monitoring_schedule(MonitoringScheduleName="prod-dq", MonitoringScheduleConfig=config)
    sagemaker.update_monitoring_schedule(
        MonitoringScheduleName="prod-dq",
        MonitoringScheduleConfig={**config, "MonitoringJobDefinitionName": "prod-dq-2"},
    )
    described = sagemaker.describe_monitoring_schedule(MonitoringScheduleName="prod-dq")
    assert described["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"] == "prod-dq-2"
    execution = monitored.engine.monitoring.run_now("prod-dq", account_id="123456789012", region=REGION)
    assert execution["MonitoringExecutionStatus"] == "Failed"
    assert "sagemaker-model-monitor-analyzer" in execution["FailureReason"]
    with pytest.raises(ClientError) as error:
        sagemaker.describe_monitoring_schedule(MonitoringScheduleName="other")
    assert error.value.response["Error"] == {
        "Code": "ResourceNotFound",
        "Message": "Monitoring Schedule arn:aws:sagemaker:us-east-1:123456789012:monitoring-schedule/other not found",
    }


def test_an_alarm_notifies_only_a_topic_whose_policy_lets_cloudwatch_publish(aws_credentials, mail_outbox, apply_patch):
    with mock_aws():
        apply_patch(alarms.ALARM_EVALUATION)
        sns, cloudwatch = boto3.client("sns", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)
        topics = {name: sns.create_topic(Name=name)["TopicArn"] for name in ("open", "locked")}
        for topic in topics.values():
            sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
        account_only = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": "sns:Publish",
                    "Resource": topics["locked"],
                }
            ],
        }
        sns.set_topic_attributes(
            TopicArn=topics["locked"], AttributeName="Policy", AttributeValue=json.dumps(account_only)
        )
        for name, topic in topics.items():
            cloudwatch.put_metric_alarm(
                AlarmName=f"high-{name}",
                Namespace="stepml/test",
                MetricName="m",
                Statistic="Maximum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1.0,
                ComparisonOperator="GreaterThanThreshold",
                AlarmActions=[topic],
            )
        cloudwatch.put_metric_data(Namespace="stepml/test", MetricData=[{"MetricName": "m", "Value": 5.0}])
        found = cloudwatch.describe_alarms(AlarmNames=["high-open", "high-locked"])["MetricAlarms"]
        assert {a["AlarmName"]: a["StateValue"] for a in found} == {"high-open": "ALARM", "high-locked": "ALARM"}
        assert [m.subject for m in mail_outbox.messages()] == ['ALARM: "high-open" in US East (N. Virginia)']


def test_every_schedule_runs_once_a_period_by_itself(aws_credentials, sagemaker_engines, tmp_path):
    import time

    with mock_aws():
        engine = sagemaker_engines(
            boto3.Session(region_name=REGION), work_dir=tmp_path / "sm", monitor_period_seconds=0.2
        )
        engine.monitoring._capture_destination = lambda endpoint, account, region: f"s3://{BUCKET}/capture"
        s3, sagemaker = boto3.client("s3", region_name=REGION), boto3.client("sagemaker", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        statistics, constraints = _baseline(sample(200))
        s3.put_object(Bucket=BUCKET, Key="processed/run/statistics.json", Body=json.dumps(statistics))
        s3.put_object(Bucket=BUCKET, Key="processed/run/constraints.json", Body=json.dumps(constraints))
        s3.put_object(
            Bucket=BUCKET,
            Key="capture/prod/AllTraffic/2026/01/01/00/a.jsonl",
            Body="\n".join(capture_lines(sample(50))),
        )
        _job_definition(sagemaker)
        config = {"MonitoringJobDefinitionName": "prod-dq-1", "MonitoringType": "DataQuality", "ScheduleConfig": HOURLY}
        sagemaker.create_monitoring_schedule(MonitoringScheduleName="prod-dq", MonitoringScheduleConfig=config)
        deadline = time.monotonic() + 30
        statuses: list[str] = []
        while len(statuses) < 2 and time.monotonic() < deadline:
            found = sagemaker.list_monitoring_executions(MonitoringScheduleName="prod-dq", SortOrder="Ascending")
            statuses = [e["MonitoringExecutionStatus"] for e in found["MonitoringExecutionSummaries"]]
            time.sleep(0.05)
        # The first period analyses the capture file; the next finds nothing new.
        assert statuses[:2] == ["Completed", "Failed"], statuses


def test_a_stopped_schedule_runs_no_execution_until_started(monitored):
    sagemaker = monitored.sagemaker
    _job_definition(sagemaker)
    monitored.engine.monitoring._capture_destination = lambda endpoint, account, region: f"s3://{BUCKET}/capture"
    config = {"MonitoringJobDefinitionName": "prod-dq-1", "MonitoringType": "DataQuality", "ScheduleConfig": HOURLY}
    sagemaker.create_monitoring_schedule(MonitoringScheduleName="prod-dq", MonitoringScheduleConfig=config)
    monitored.s3.put_object(
        Bucket=BUCKET, Key="capture/prod/AllTraffic/2026/01/01/00/a.jsonl", Body="\n".join(capture_lines(sample(50)))
    )

    sagemaker.stop_monitoring_schedule(MonitoringScheduleName="prod-dq")
    described = sagemaker.describe_monitoring_schedule(MonitoringScheduleName="prod-dq")
    assert described["MonitoringScheduleStatus"] == "Stopped"
    listed = sagemaker.list_monitoring_schedules(StatusEquals="Stopped")["MonitoringScheduleSummaries"]
    assert [s["MonitoringScheduleName"] for s in listed] == ["prod-dq"]
    assert monitored.engine.monitoring.run_due() == []
    assert sagemaker.list_monitoring_executions(MonitoringScheduleName="prod-dq")["MonitoringExecutionSummaries"] == []

    sagemaker.start_monitoring_schedule(MonitoringScheduleName="prod-dq")
    assert sagemaker.describe_monitoring_schedule(MonitoringScheduleName="prod-dq")["MonitoringScheduleStatus"] == (
        "Scheduled"
    )
    [execution] = monitored.engine.monitoring.run_due()
    assert execution["MonitoringExecutionStatus"] == "Completed", execution

    with pytest.raises(ClientError) as error:
        sagemaker.stop_monitoring_schedule(MonitoringScheduleName="missing")
    assert error.value.response["Error"] == {
        "Code": "ResourceNotFound",
        "Message": "Monitoring Schedule arn:aws:sagemaker:us-east-1:123456789012:monitoring-schedule/missing not found",
    }
