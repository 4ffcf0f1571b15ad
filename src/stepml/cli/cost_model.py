"""The arithmetic of ``stepml cost``: what one run uses -> priced line items -> totals.

Pure: no AWS call and no boto3. ``RunUsage`` is what one run consumes (estimated from the template
and the definition by ``cost_flow``, or measured from a finished run); ``StandingUsage`` is what
exists all month whether a run happens or not (the production endpoint, its hourly monitoring
job and drift alarms, the other alarms, keys); a serverless test endpoint is priced per GB-second
and per GB of data instead of per instance-hour. A ``PriceTable`` is one region's list prices,
kept in the repository as data (``prices/<region>.json``, each line naming the AWS page it was
read from). ``cost_report`` prices a run, a month of
``runs_per_month`` runs, the idle month, and the same work on MWAA and on SageMaker Pipelines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PRICES_DIR = Path(__file__).resolve().parent / "prices"
#: Hours AWS bills an always-on resource for in a month (the AWS pricing pages' 730).
HOURS_PER_MONTH = 730
#: Glue 2.0 and later bill Spark jobs per second with this minimum per job run.
GLUE_MINIMUM_SECONDS = 60
#: DPUs per worker of each Glue worker type.
GLUE_DPU_PER_WORKER = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0}
#: The smallest MWAA class the price table holds, and what a dataset pipeline adds to its database.
MWAA_CLASS = "mw1.small"
MWAA_METADATA_GB = 1.0


class CostError(ValueError):
    """A price or an input the cost cannot be computed from; the message names it."""


@dataclass(frozen=True)
class PriceTable:
    """One region's list prices: ``prices[key] = {"price", "unit", "source", "confirmed"}``; a confirmed
    line also holds the ``quote`` read on its source page."""

    region: str
    currency: str
    date: str
    method: str
    prices: Mapping[str, Mapping[str, Any]]
    #: The keys priced so far, so a report can name the unconfirmed prices it rests on.
    used: set[str] = field(default_factory=set, compare=False)

    def price(self, key: str) -> float:
        """The unit price of ``key``; ``CostError`` naming the key and region when the table lacks it."""
        try:
            value = float(self.prices[key]["price"])
        except KeyError:
            raise CostError(f"the {self.region} price table has no price for {key}") from None
        self.used.add(key)
        return value

    def unconfirmed(self) -> list[str]:
        """The used prices not matched against their page: only an explicit ``"confirmed": true`` counts,
        so a line added without the flag is reported rather than trusted."""
        return sorted(key for key in self.used if self.prices[key].get("confirmed") is not True)

    def instance_price(self, usage: str, instance_type: str) -> float:
        """Hourly price of a SageMaker ``instance_type`` for ``usage`` (training, hosting, processing, transform)."""
        key = f"sagemaker.{usage}.{instance_type}"
        if key not in self.prices:
            prefix = f"sagemaker.{usage}."
            known = sorted(k.removeprefix(prefix) for k in self.prices if k.startswith(prefix))
            raise CostError(
                f"unknown instance type {instance_type} for SageMaker {usage} in the {self.region} price table "
                f"(priced: {', '.join(known)}); add it to src/stepml/cli/prices/{self.region}.json"
            )
        return self.price(key)


def available_regions(folder: Path = PRICES_DIR) -> list[str]:
    """The regions a price table exists for."""
    return sorted(path.stem for path in folder.glob("*.json"))


def load_prices(region: str, folder: Path = PRICES_DIR) -> PriceTable:
    """The price table of ``region``; ``CostError`` naming the region and the ones there are."""
    path = folder / f"{region}.json"
    if not path.is_file():
        raise CostError(f"no price table for region {region} (have: {', '.join(available_regions(folder)) or 'none'})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PriceTable(data["region"], data["currency"], data["date"], data["method"], data["prices"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise CostError(f"{path}: not a price table: {exc}") from exc


@dataclass(frozen=True)
class LambdaUse:
    """One function's share of a run: its memory and how often and how long it ran."""

    function: str
    memory_mb: int
    invocations: int
    seconds: float  # total billed duration over all invocations


@dataclass(frozen=True)
class ServerlessUse:
    """A serverless test endpoint: billed for its requests' compute (memory x time) and the data
    they carry in and out, nothing while idle."""

    memory_mb: int
    seconds: float  # inference time billed, all requests together
    gb_processed: float


@dataclass
class RunUsage:
    """What one run consumes; every quantity says where it came from in ``sources``."""

    glue_dpus: float
    glue_seconds: float
    training_instance_type: str
    training_instances: int
    training_seconds: float
    hosting_instance_type: str
    test_endpoint_instances: int
    test_endpoint_seconds: float
    production_instances: int
    blue_green_seconds: float  # the new fleet running beside the old during a blue/green update
    transitions: int
    lambdas: list[LambdaUse]
    dynamodb_write_units: float
    dynamodb_read_units: float
    s3_puts: int
    s3_gets: int
    s3_gb_stored: float
    emails: int
    sns_publishes: int
    sns_email_notifications: int
    sources: dict[str, str] = field(default_factory=dict)
    #: The test endpoint on Serverless Inference instead of instances (None: instances).
    test_endpoint_serverless: ServerlessUse | None = None
    #: Batch Transform jobs that scored a large test split instead of a test endpoint (one instance
    #: each), and their instance-seconds together.
    transform_jobs: int = 0
    transform_seconds: float = 0.0


@dataclass(frozen=True)
class MonitoringUse:
    """Production's data-quality monitoring schedule: one processing job per execution."""

    instance_type: str
    instances: int
    execution_seconds: float  # billed per execution
    executions_per_month: int


@dataclass(frozen=True)
class StandingUsage:
    """What the stack keeps all month, run or no run."""

    production_instance_type: str
    production_instances: int
    production_deployed: bool
    alarms: int
    kms_keys: int
    data_capture_gb_month: float
    lineage_gb: float
    #: The hourly monitoring schedule a deploy puts on production (None: the definition has none).
    monitoring: MonitoringUse | None = None
    #: The drift alarms a deploy puts, one per feature of the dataset.
    drift_alarms: int = 0


@dataclass(frozen=True)
class LineItem:
    """One priced quantity."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    cost: float


def _item(service: str, item: str, quantity: float, unit: str, unit_price: float) -> LineItem:
    return LineItem(service, item, quantity, unit, unit_price, quantity * unit_price)


def glue_billed_seconds(seconds: float) -> float:
    """Seconds Glue bills a job run for: per second, at least ``GLUE_MINIMUM_SECONDS``."""
    return max(float(seconds), GLUE_MINIMUM_SECONDS)


def glue_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """The Glue job run: DPUs x billed seconds, as DPU-hours."""
    dpu_hours = usage.glue_dpus * glue_billed_seconds(usage.glue_seconds) / 3600
    note = f"{usage.glue_dpus:g} DPU x {glue_billed_seconds(usage.glue_seconds):g} s"
    return [_item("Glue", f"preprocess job ({note})", dpu_hours, "DPU-hour", prices.price("glue.dpu_hour"))]


def test_endpoint_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """The test endpoint: its instances for its lifetime, or on Serverless Inference its requests'
    GB-seconds and the data they carry."""
    serverless = usage.test_endpoint_serverless
    if serverless is None and usage.transform_jobs and not usage.test_endpoint_instances:
        return []  # Batch Transform scored the test split: there was no test endpoint
    if serverless is None:
        return [
            _item(
                "SageMaker",
                f"test endpoint {usage.test_endpoint_instances} x {usage.hosting_instance_type} x "
                f"{usage.test_endpoint_seconds:g} s",
                usage.test_endpoint_instances * usage.test_endpoint_seconds / 3600,
                "instance-hour",
                prices.instance_price("hosting", usage.hosting_instance_type),
            )
        ]
    return [
        _item(
            "SageMaker",
            f"test endpoint serverless {serverless.memory_mb} MB x {serverless.seconds:g} s of inference",
            serverless.memory_mb / 1024 * serverless.seconds,
            "GB-second",
            prices.price("sagemaker.serverless.gb_second"),
        ),
        _item(
            "SageMaker",
            "test endpoint serverless data in and out",
            serverless.gb_processed,
            "GB",
            prices.price("sagemaker.serverless.data_gb"),
        ),
    ]


def transform_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Batch Transform jobs scoring a large test split, one instance each from start to end, at the
    instance type's Batch Transform rate (AWS prices it apart from real-time hosting)."""
    if not usage.transform_jobs:
        return []
    return [
        _item(
            "SageMaker",
            f"batch transform {usage.transform_jobs} job(s) x 1 x {usage.hosting_instance_type}, "
            f"{usage.transform_seconds:g} s in all",
            usage.transform_seconds / 3600,
            "instance-hour",
            prices.instance_price("transform", usage.hosting_instance_type),
        )
    ]


def sagemaker_run_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Training, the test endpoint and a blue/green update's second fleet."""
    train = usage.training_instances * usage.training_seconds / 3600
    blue_green = usage.production_instances * usage.blue_green_seconds / 3600
    hosting = prices.instance_price("hosting", usage.hosting_instance_type)
    return [
        _item(
            "SageMaker",
            f"training {usage.training_instances} x {usage.training_instance_type} x {usage.training_seconds:g} s",
            train,
            "instance-hour",
            prices.instance_price("training", usage.training_instance_type),
        ),
        *test_endpoint_items(usage, prices),
        *transform_items(usage, prices),
        _item(
            "SageMaker",
            f"blue/green: new fleet beside the old {usage.production_instances} x {usage.blue_green_seconds:g} s",
            blue_green,
            "instance-hour",
            hosting,
        ),
    ]


def lambda_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Each function's GB-seconds (memory from the template) and requests."""
    items = []
    for use in usage.lambdas:
        gb_seconds = use.memory_mb / 1024 * use.seconds
        items.append(
            _item(
                "Lambda",
                f"{use.function} {use.memory_mb} MB x {use.seconds:g} s",
                gb_seconds,
                "GB-second",
                prices.price("lambda.gb_second"),
            )
        )
        items.append(
            _item("Lambda", f"{use.function} requests", use.invocations, "request", prices.price("lambda.request"))
        )
    return items


def orchestration_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Step Functions transitions: the orchestration this design pays per run instead of per hour."""
    return [
        _item(
            "Step Functions",
            "standard workflow state transitions",
            usage.transitions,
            "transition",
            prices.price("stepfunctions.standard_transition"),
        )
    ]


def storage_and_messaging_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Lineage writes and reads, S3 requests and a month of the run's files, the approval email, notices."""
    return [
        _item(
            "DynamoDB",
            "lineage and approval writes",
            usage.dynamodb_write_units,
            "WRU",
            prices.price("dynamodb.write_request_unit"),
        ),
        _item(
            "DynamoDB", "lineage reads", usage.dynamodb_read_units, "RRU", prices.price("dynamodb.read_request_unit")
        ),
        _item("S3", "PUT/LIST requests", usage.s3_puts, "request", prices.price("s3.put_request")),
        _item("S3", "GET requests", usage.s3_gets, "request", prices.price("s3.get_request")),
        _item("S3", "the run's files, one month", usage.s3_gb_stored, "GB-month", prices.price("s3.storage_gb_month")),
        _item("SES", "approval email", usage.emails, "email", prices.price("ses.email")),
        _item("SNS", "publishes", usage.sns_publishes, "request", prices.price("sns.publish_request")),
        _item(
            "SNS",
            "email notifications",
            usage.sns_email_notifications,
            "notification",
            prices.price("sns.email_notification"),
        ),
    ]


def run_items(usage: RunUsage, prices: PriceTable) -> list[LineItem]:
    """Every line item of one run on this design."""
    return [
        *glue_items(usage, prices),
        *sagemaker_run_items(usage, prices),
        *orchestration_items(usage, prices),
        *lambda_items(usage, prices),
        *storage_and_messaging_items(usage, prices),
    ]


def standing_items(standing: StandingUsage, prices: PriceTable) -> list[LineItem]:
    """A month of what exists with no run: the production endpoint, its data capture, alarms, keys, lineage."""
    hours = HOURS_PER_MONTH if standing.production_deployed else 0
    endpoint = standing.production_instances * hours
    return [
        _item(
            "SageMaker",
            f"production endpoint {standing.production_instances} x {standing.production_instance_type} x {hours} h",
            endpoint,
            "instance-hour",
            prices.instance_price("hosting", standing.production_instance_type),
        ),
        _item(
            "S3",
            "production data capture",
            standing.data_capture_gb_month,
            "GB-month",
            prices.price("s3.storage_gb_month"),
        ),
        _item("CloudWatch", "alarms", standing.alarms, "alarm-month", prices.price("cloudwatch.alarm_month")),
        *monitoring_items(standing, prices),
        _item("KMS", "customer managed keys", standing.kms_keys, "key-month", prices.price("kms.key_month")),
        _item(
            "DynamoDB", "lineage storage", standing.lineage_gb, "GB-month", prices.price("dynamodb.storage_gb_month")
        ),
    ]


def monitoring_items(standing: StandingUsage, prices: PriceTable) -> list[LineItem]:
    """While production exists, its schedule runs a processing job every hour, traffic or not, and
    a drift alarm per feature watches the results."""
    monitoring = standing.monitoring
    if monitoring is None or not standing.production_deployed:
        return []
    hours = monitoring.instances * monitoring.execution_seconds * monitoring.executions_per_month / 3600
    return [
        _item(
            "SageMaker",
            f"monitoring {monitoring.executions_per_month} x {monitoring.instances} x {monitoring.instance_type} "
            f"x {monitoring.execution_seconds:g} s",
            hours,
            "instance-hour",
            prices.instance_price("processing", monitoring.instance_type),
        ),
        _item(
            "CloudWatch",
            "drift alarms, one per feature",
            standing.drift_alarms,
            "alarm-month",
            prices.price("cloudwatch.alarm_month"),
        ),
    ]


def total(items: list[LineItem]) -> float:
    """The sum of the items' costs."""
    return math.fsum(item.cost for item in items)


def scale(items: list[LineItem], runs: int) -> list[LineItem]:
    """``items`` repeated ``runs`` times (one month of runs)."""
    return [LineItem(i.service, i.item, i.quantity * runs, i.unit, i.unit_price, i.cost * runs) for i in items]


def mwaa_items(usage: RunUsage, prices: PriceTable, runs: int) -> tuple[list[LineItem], list[LineItem]]:
    """The same flow on an always-on MWAA environment: (per month of ``runs`` runs, idle month).
    Airflow's operators call the same Glue, SageMaker and Lambda work; Step Functions goes."""
    environment = [
        _item(
            "MWAA",
            f"{MWAA_CLASS} environment, always on",
            HOURS_PER_MONTH,
            "hour",
            prices.price(f"mwaa.{MWAA_CLASS}.environment_hour"),
        ),
        _item("MWAA", "metadata database", MWAA_METADATA_GB, "GB-month", prices.price("mwaa.metadata_gb_month")),
    ]
    work = [item for item in run_items(usage, prices) if item.service != "Step Functions"]
    return environment + scale(work, runs), environment


def pipelines_items(usage: RunUsage, prices: PriceTable, processing_instance: str) -> list[LineItem]:
    """One run on SageMaker Pipelines: no orchestration charge; a processing job on
    ``processing_instance`` for the Glue job's time (per second, no minimum) instead of Glue."""
    processing = _item(
        "SageMaker",
        f"processing job 1 x {processing_instance} x {usage.glue_seconds:g} s (instead of Glue)",
        usage.glue_seconds / 3600,
        "instance-hour",
        prices.instance_price("processing", processing_instance),
    )
    rest = [item for item in run_items(usage, prices) if item.service not in ("Glue", "Step Functions")]
    return [processing, *rest]


@dataclass
class CostReport:
    """One run, a month, the idle month, and the two alternatives, with the assumptions."""

    region: str
    currency: str
    price_date: str
    runs_per_month: int
    run: list[LineItem]
    standing: list[LineItem]
    assumptions: list[str]
    alternatives: dict[str, dict[str, float]]

    @property
    def run_total(self) -> float:
        return total(self.run)

    @property
    def idle_month_total(self) -> float:
        return total(self.standing)

    @property
    def month_total(self) -> float:
        return self.run_total * self.runs_per_month + self.idle_month_total

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``--json``)."""
        return {
            "region": self.region,
            "currency": self.currency,
            "price_date": self.price_date,
            "runs_per_month": self.runs_per_month,
            "run": [asdict(i) for i in self.run],
            "run_total": self.run_total,
            "idle_month": [asdict(i) for i in self.standing],
            "idle_month_total": self.idle_month_total,
            "month_total": self.month_total,
            "alternatives": self.alternatives,
            "assumptions": self.assumptions,
        }


def cost_report(
    usage: RunUsage,
    standing: StandingUsage,
    prices: PriceTable,
    runs_per_month: int,
    *,
    processing_instance: str = "ml.m5.xlarge",
    assumptions: list[str] | None = None,
) -> CostReport:
    """Price one run and a month of ``runs_per_month`` runs here, on MWAA and on SageMaker Pipelines."""
    if runs_per_month < 0:
        raise CostError(f"runs per month must be 0 or more, got {runs_per_month}")
    run, standing_lines = run_items(usage, prices), standing_items(standing, prices)
    mwaa_month, mwaa_idle = mwaa_items(usage, prices, runs_per_month)
    pipelines_run = pipelines_items(usage, prices, processing_instance)
    alternatives = {
        "stepml (Step Functions)": {
            "run": total(run),
            "month": total(run) * runs_per_month + total(standing_lines),
            "idle_month": total(standing_lines),
        },
        f"MWAA ({MWAA_CLASS})": {
            "run": total([i for i in run if i.service != "Step Functions"]),
            "month": total(mwaa_month) + total(standing_lines),
            "idle_month": total(mwaa_idle) + total(standing_lines),
        },
        "SageMaker Pipelines": {
            "run": total(pipelines_run),
            "month": total(pipelines_run) * runs_per_month + total(standing_lines),
            "idle_month": total(standing_lines),
        },
    }
    notes = list(assumptions or [])
    if prices.unconfirmed():
        notes.append(f"prices not yet matched against their page: {', '.join(prices.unconfirmed())}")
    return CostReport(
        prices.region, prices.currency, prices.date, runs_per_month, run, standing_lines, notes, alternatives
    )
