"""What one run uses, read from the template, samconfig, the dataset config and the definition.

``stack_settings`` reads the template bound to a samconfig environment (through
``stepml.local.template``, imported when called so that the CLI's parser loads no local cloud):
the Glue job's workers, the functions' memory, which function each ``${Placeholder}`` of the
definition is, the alarms and keys. ``walk`` follows the definition from ``StartAt`` through one
run's path (each Choice takes the branch ``decisions`` names, a polling loop turns as many times as
the endpoint takes to come up): every state on the path is one billed state transition, and the
path says which functions run, how many instances the test endpoint has and how long it lives
(from its CreateEndpoint to its DeleteEndpoint). ``estimated_usage`` turns the path into a
``RunUsage`` (with a serverless test endpoint's use when the path configures one);
``standing_usage`` what stands all month (the production endpoint, its hourly monitoring job read
from the definition's data-quality job definition, the drift alarms, one per feature); and
``measured_usage`` (in ``cost_measure``) replaces estimates with a finished run's numbers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepml.cli.cost_model import (
    GLUE_DPU_PER_WORKER,
    HOURS_PER_MONTH,
    CostError,
    LambdaUse,
    MonitoringUse,
    RunUsage,
    ServerlessUse,
    StandingUsage,
)
from stepml.config import DatasetConfig

STATE_MACHINE = "PipelineStateMachine"
GLUE_JOB = "PreprocessJob"
#: The branch each Choice takes on a run that deploys a better model over a serving champion.
#: A Choice not named takes its Default; a polling Choice takes its Default until the endpoint is up.
DEPLOYED_RUN = {
    "Champion in service?": "Describe champion endpoint",
    "Is the test endpoint ready?": "Evaluate model",
    "Good enough to ask for approval?": "Request approval",
    "Approved?": "Find production endpoint",
    "Production endpoint exists?": "Update production endpoint",
    "Is the production endpoint ready?": "Record deployment",
}
#: A dataset's first deployed run: no champion yet (the test endpoint holds the challenger alone,
#: serverless when the dataset config asks), and the deploy creates the production endpoint.
FIRST_RUN = {
    "Is the test endpoint ready?": "Evaluate model",
    "Good enough to ask for approval?": "Request approval",
    "Approved?": "Find production endpoint",
    "Is the production endpoint ready?": "Record deployment",
}
#: Where "Champion in service?" goes for a serverless test endpoint: its own XGBoost-only model, then its config.
SERVERLESS_TEST_BRANCH = "Create serverless test model"
#: Where a run whose test split is above evaluation.batch_transform_above_rows goes: Batch Transform, no test endpoint.
BATCH_BRANCH = "Score test split in batch"
#: Choices that poll an endpoint, and which estimate says how long it takes to come up.
POLLING = {
    "Is the test endpoint ready?": "endpoint_create_seconds",
    "Is the production endpoint ready?": "endpoint_update_seconds",
}
_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9_]+)\}$")
_MAX_PATH = 10_000


@dataclass(frozen=True)
class Estimate:
    """One assumed quantity, printed with the report."""

    value: float
    why: str


#: What a run takes when no finished run says otherwise (``--run`` measures them instead).
ESTIMATES: dict[str, Estimate] = {
    "glue_seconds": Estimate(90, "Glue job run: Glue 5.0 start-up plus the 50,000-row sample's transform"),
    "training_seconds": Estimate(180, "training job billable time: built-in XGBoost on a few MB"),
    "endpoint_create_seconds": Estimate(300, "a new endpoint takes about 5 minutes to be InService"),
    "endpoint_update_seconds": Estimate(300, "a blue/green update provisions the new fleet in about 5 minutes"),
    "evaluate_seconds": Estimate(20, "the Evaluate function scores the test split through the test endpoint"),
    "transform_seconds": Estimate(
        360,
        "a Batch Transform job of a large test split: its instance starts (minutes) and scores; billed start to end",
    ),
    "approval_wait_seconds": Estimate(
        3600, "the approver answers within an hour (nothing bills meanwhile: the test endpoint went after evaluation)"
    ),
    "lambda_seconds": Estimate(0.5, "every other function invocation (ResolveRun, RecordStep, RequestApproval)"),
    "approval_api_requests": Estimate(2, "the approver opens the review page and posts a decision"),
    "dynamodb_write_units": Estimate(
        14, "claim, content key, 5 step records of 2 KB, outcome; approval put and update"
    ),
    "dynamodb_read_units": Estimate(8, "resolve-run query, completed steps, approval record reads"),
    "s3_puts": Estimate(40, "upload, Spark's part files and markers, model, report; plus LIST calls"),
    "s3_gets": Estimate(60, "the job's reads of the upload and config, training channels, evaluation"),
    "run_gb": Estimate(0.02, "upload 5 MB, processed splits 10 MB, model and report; kept a month"),
    "data_capture_gb_month": Estimate(0.1, "production data capture: 100,000 requests of 1 KB a month"),
    "lineage_gb": Estimate(0.01, "lineage table size"),
    "evaluation_gb": Estimate(
        0.002, "a serverless test endpoint's data in and out: the test split's rows and their predictions"
    ),
    "monitoring_execution_seconds": Estimate(
        300, "a monitoring execution: the analyzer's start-up and one pass over an hour of captured rows"
    ),
}


@dataclass
class StackSettings:
    """What the template, bound to a samconfig environment, says a run uses."""

    region: str
    parameters: dict[str, str]
    glue_dpus: float
    glue_worker: str
    function_memory: dict[str, int]
    placeholders: dict[str, str]  # definition placeholder -> logical id it stands for
    alarms: int
    kms_keys: int
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def poll_seconds(self) -> float:
        return float(self.parameters["EndpointPollSeconds"])

    @property
    def baking_seconds(self) -> float:
        """The blue/green update's baking period (DeploymentBakingSeconds; 0 on a template without it)."""
        return float(self.parameters.get("DeploymentBakingSeconds", 0))


def _logical_target(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::GetAtt":
            return (arg if isinstance(arg, list) else arg.split(".", 1))[0]
        if key == "Ref" and isinstance(arg, str):
            return arg
    return None


def stack_settings(root: Path, region: str, parameters: Mapping[str, str], definition: dict[str, Any]) -> StackSettings:
    """Read ``root``'s template bound to ``parameters`` (samconfig's) for the cost of a run."""
    from stepml.local.template import ResolvedTemplate, TemplateError, load_template

    try:
        resolved = ResolvedTemplate(
            load_template(root / "template.yaml"),
            stack_name="stepml-cost",
            region=region,
            parameter_overrides=dict(parameters),
            source=str(root / "template.yaml"),
        )
        job = resolved.properties(GLUE_JOB)
        worker = str(resolved.resolve(job.get("WorkerType", "G.1X"), context=GLUE_JOB))
        workers = float(resolved.resolve(job["NumberOfWorkers"], context=GLUE_JOB))
        memory = {
            logical: int(resolved.resolve(resolved.properties(logical).get("MemorySize", 128), context=logical))
            for logical, spec in resolved.resources.items()
            if spec["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        }
        substitutions = resolved.properties(STATE_MACHINE).get("DefinitionSubstitutions", {})
    except (TemplateError, KeyError, ValueError) as exc:
        raise CostError(f"{root / 'template.yaml'}: cannot read the settings a run's cost needs: {exc}") from exc
    if worker not in GLUE_DPU_PER_WORKER:
        raise CostError(f"unknown Glue worker type {worker} (known: {', '.join(GLUE_DPU_PER_WORKER)})")
    kinds = Counter(spec["Type"] for logical, spec in resolved.resources.items() if resolved.is_enabled(logical))
    return StackSettings(
        region=region,
        parameters={k: str(v) for k, v in resolved.parameters.items()},
        glue_dpus=workers * GLUE_DPU_PER_WORKER[worker],
        glue_worker=worker,
        function_memory=memory,
        placeholders={name: target for name, value in substitutions.items() if (target := _logical_target(value))},
        alarms=kinds["AWS::CloudWatch::Alarm"],
        kms_keys=kinds["AWS::KMS::Key"],
        definition=definition,
    )


# -- the path of one run --------------------------------------------------------------------


def _choice_targets(state: Mapping[str, Any]) -> list[str]:
    return [rule["Next"] for rule in state.get("Choices", [])] + ([state["Default"]] if "Default" in state else [])


def flat_states(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Every state of the definition by name, those inside Parallel branches and Map processors too."""
    found: dict[str, Any] = {}
    for name, state in definition.get("States", {}).items():
        found[name] = state
        for machine in _inner_machines(state):
            found.update(flat_states(machine))
    return found


def _inner_machines(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if state.get("Type") == "Parallel":
        return list(state.get("Branches", []))
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if processor else []
    return []


def walk(definition: Mapping[str, Any], decisions: Mapping[str, str], polls: Mapping[str, int]) -> list[str]:
    """The states one run enters, in order, from ``StartAt`` to a terminal state.

    A Choice named in ``decisions`` takes that branch (after ``polls[name] - 1`` turns through its
    Default when it polls); any other Choice takes its Default. A Parallel enters every branch, a
    Map its processor once (one item). ``CostError`` when a decision names no branch of its Choice
    or a Choice it names is not in the definition.
    """
    states = flat_states(definition)
    for name, target in decisions.items():
        if name not in states or states[name].get("Type") != "Choice":
            raise CostError(f"the definition has no Choice state {name!r} (the cost's path names it)")
        if target not in _choice_targets(states[name]):
            raise CostError(f"Choice {name!r} has no branch to {target!r}")
    path: list[str] = []
    _walk_machine(definition, decisions, polls, Counter(), path)
    return path


def _walk_machine(
    machine: Mapping[str, Any], decisions: Mapping[str, str], polls: Mapping[str, int], visits: Counter, path: list[str]
) -> None:
    states = machine["States"]
    current: str | None = machine["StartAt"]
    while current is not None:
        if len(path) >= _MAX_PATH:
            raise CostError(f"the run's path does not end within {_MAX_PATH} states (a loop without an exit?)")
        state = states[current]
        path.append(current)
        visits[current] += 1
        for inner in _inner_machines(state):
            _walk_machine(inner, decisions, polls, visits, path)
        if state["Type"] == "Choice":
            wanted = decisions.get(current)
            # A polling Choice loops through its Default until its endpoint is up.
            polling = wanted is None or visits[current] < polls.get(current, 1)
            current = state.get("Default") if polling else wanted
        elif state.get("End") or state["Type"] in ("Succeed", "Fail"):
            current = None
        else:
            current = state["Next"]


def _placeholder(value: Any) -> str | None:
    match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def state_function(state: Mapping[str, Any], settings: StackSettings) -> str | None:
    """The logical id of the function a Lambda task state invokes, or None for any other state."""
    if not str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke"):
        return None
    name = _placeholder(state.get("Parameters", {}).get("FunctionName"))
    return settings.placeholders.get(name or "", name)


def _references(state: Mapping[str, Any], key: str, needle: str) -> bool:
    return needle in str(state.get("Parameters", {}).get(key, ""))


def endpoint_span(path: list[str], states: Mapping[str, Any], kind: str) -> tuple[int, int] | None:
    """Indexes in ``path`` of the CreateEndpoint and DeleteEndpoint of the ``kind`` endpoint
    (``test_endpoint``); the delete index is the path's end when the run never deletes it."""
    start = end = None
    for index, name in enumerate(path):
        state = states[name]
        resource = str(state.get("Resource", ""))
        if start is None and resource.endswith(":createEndpoint") and _references(state, "EndpointName.$", kind):
            start = index
        elif start is not None and resource.endswith(":deleteEndpoint") and _references(state, "EndpointName.$", kind):
            end = index
            break
    if start is None:
        return None
    return start, len(path) if end is None else end


def endpoint_instances(path: list[str], states: Mapping[str, Any], config_kind: str, config: DatasetConfig) -> int:
    """Instances of the last ``config_kind`` endpoint config on the path (all its variants)."""
    count = 0
    for name in path:
        state = states[name]
        if str(state.get("Resource", "")).endswith(":createEndpointConfig") and _references(
            state, "EndpointConfigName.$", config_kind
        ):
            count = 0
            for variant in state["Parameters"].get("ProductionVariants", []):
                if "ServerlessConfig" not in variant:  # a serverless variant has no instances
                    count += int(variant.get("InitialInstanceCount", config.hosting.instance_count))
    return count


def first_run_decisions(config: DatasetConfig) -> dict[str, str]:
    """The branches of a dataset's first run: serverless test endpoint when the config asks for one."""
    decisions = dict(FIRST_RUN)
    if config.hosting.test_endpoint_serverless is not None:
        decisions["Champion in service?"] = SERVERLESS_TEST_BRANCH
    return decisions


def batch_decisions(decisions: Mapping[str, str]) -> dict[str, str]:
    """The same run with its test split scored by Batch Transform (``--batch-scoring``): a job for the
    challenger and, when a champion serves, one for it; no test endpoint."""
    batch = {choice: branch for choice, branch in decisions.items() if choice != "Is the test endpoint ready?"}
    if batch.get("Champion in service?") == "Describe champion endpoint":
        batch["Test endpoint or batch?"] = BATCH_BRANCH
        batch["Champion to score in batch?"] = "Score champion in batch"
    else:
        batch["Champion in service?"] = BATCH_BRANCH
    return batch


def transform_use(path: list[str], states: Mapping[str, Any], seconds_of: Mapping[int, float]) -> tuple[int, float]:
    """The Batch Transform jobs on the path and their instance-seconds (one instance each)."""
    jobs = [
        i for i, name in enumerate(path) if str(states[name].get("Resource", "")).endswith("createTransformJob.sync")
    ]
    return len(jobs), sum(seconds_of[i] for i in jobs)


def serverless_use(
    path: list[str], states: Mapping[str, Any], config: DatasetConfig, inference_seconds: float, gb: float
) -> ServerlessUse | None:
    """The serverless test endpoint's use when the path configures one (None: instances)."""
    serverless = config.hosting.test_endpoint_serverless
    for name in path:
        state = states[name]
        if str(state.get("Resource", "")).endswith(":createEndpointConfig") and _references(
            state, "EndpointConfigName.$", "test_endpoint_config"
        ):
            variants = state["Parameters"].get("ProductionVariants", [])
            if serverless is not None and any("ServerlessConfig" in v for v in variants):
                return ServerlessUse(serverless.memory_mb, inference_seconds, gb)
    return None


def count_resource(path: list[str], states: Mapping[str, Any], suffix: str) -> int:
    """How many entries of ``path`` call a resource ending in ``suffix`` (``sns:publish``)."""
    return sum(1 for name in path if str(states[name].get("Resource", "")).endswith(suffix))


def termination_wait(path: list[str], states: Mapping[str, Any]) -> float | None:
    """The blue/green TerminationWaitInSeconds of an UpdateEndpoint on the path; None when the path
    has no blue/green update."""
    for name in path:
        state = states[name]
        if str(state.get("Resource", "")).endswith(":updateEndpoint"):
            policy = state.get("Parameters", {}).get("DeploymentConfig", {}).get("BlueGreenUpdatePolicy")
            if policy is not None:
                return float(policy.get("TerminationWaitInSeconds", 0))
    return None


def state_seconds(state: Mapping[str, Any], settings: StackSettings, estimates: Mapping[str, float]) -> float:
    """How long one entry of ``state`` takes, by what it does (estimates)."""
    resource = str(state.get("Resource", ""))
    if state["Type"] == "Wait":
        return float(state.get("Seconds", settings.poll_seconds))
    if resource.endswith("glue:startJobRun.sync"):
        return estimates["glue_seconds"]
    if resource.endswith("createTrainingJob.sync"):
        return estimates["training_seconds"]
    if resource.endswith("createTransformJob.sync"):
        return estimates["transform_seconds"]
    if resource.endswith(".waitForTaskToken"):
        return estimates["approval_wait_seconds"]
    function = state_function(state, settings)
    if function is not None:
        return estimates["evaluate_seconds"] if "Evaluate" in function else estimates["lambda_seconds"]
    return 0.0


def run_path(settings: StackSettings, estimates: Mapping[str, float], decisions: Mapping[str, str]) -> list[str]:
    """The deployed run's path with each polling loop turned as often as its endpoint takes."""
    # An updated production endpoint stays Updating through the baking period too (a created one does not bake).
    updating = decisions.get("Production endpoint exists?") == "Update production endpoint"
    baking = {"Is the production endpoint ready?": settings.baking_seconds if updating else 0.0}
    states = flat_states(settings.definition)
    polls = {
        choice: max(1, math.ceil((estimates[estimate] + baking.get(choice, 0.0)) / settings.poll_seconds))
        + checks_before_waiting(states, choice)
        for choice, estimate in POLLING.items()
        if choice in states
    }
    return walk(settings.definition, decisions, polls)


def checks_before_waiting(states: Mapping[str, Any], choice: str) -> int:
    """1 when the polling loop of ``choice`` checks once before its first wait, else 0.

    The status check is the state whose ``Next`` is the Choice; the loop comes back to it through
    the Choice's Default (the wait). Any other state leading to the check enters the loop there.
    """
    check = next((name for name, state in states.items() if state.get("Next") == choice), None)
    if check is None:
        return 0
    loop: set[str] = set()
    current = states[choice].get("Default")
    while current is not None and current != check and current not in loop and current in states:
        loop.add(current)
        current = states[current].get("Next")
    return int(any(state.get("Next") == check and name not in loop for name, state in states.items()))


def lambda_uses(path: list[str], settings: StackSettings, seconds_of: Mapping[int, float]) -> list[LambdaUse]:
    """Invocations and billed seconds per function along ``path`` (``seconds_of``: path index -> s)."""
    states = flat_states(settings.definition)
    calls: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for index, name in enumerate(path):
        function = state_function(states[name], settings)
        if function is not None:
            calls[function] += 1
            seconds[function] += seconds_of[index]
    return [
        LambdaUse(function, settings.function_memory.get(function, 128), calls[function], seconds[function])
        for function in sorted(calls)
    ]


def estimated_usage(
    settings: StackSettings,
    config: DatasetConfig,
    estimates: Mapping[str, float],
    decisions: Mapping[str, str] = DEPLOYED_RUN,
) -> tuple[RunUsage, list[str]]:
    """One run estimated from the template, the dataset config and the definition; with its path."""
    states = flat_states(settings.definition)
    path = run_path(settings, estimates, decisions)
    seconds_of = {}
    for index, name in enumerate(path):
        state = states[name]
        # A waitForTaskToken state bills its function's short invocation, not the wait.
        waiting = str(state.get("Resource", "")).endswith(".waitForTaskToken")
        seconds_of[index] = estimates["lambda_seconds"] if waiting else state_seconds(state, settings, estimates)
    span = endpoint_span(path, states, "test_endpoint")
    lifetime = (
        0.0 if span is None else sum(state_seconds(states[n], settings, estimates) for n in path[span[0] : span[1]])
    )
    wait = termination_wait(path, states)
    lambdas = lambda_uses(path, settings, seconds_of)
    approval_api = next((k for k in settings.function_memory if k.startswith("ApprovalApi")), None)
    if approval_api is not None and int(estimates["approval_api_requests"]):
        requests = int(estimates["approval_api_requests"])
        memory = settings.function_memory[approval_api]
        lambdas.append(LambdaUse(approval_api, memory, requests, requests * estimates["lambda_seconds"]))
    publishes = count_resource(path, states, "sns:publish")
    transform_jobs, transform_seconds = transform_use(path, states, seconds_of)
    usage = RunUsage(
        glue_dpus=settings.glue_dpus,
        glue_seconds=estimates["glue_seconds"],
        training_instance_type=config.training.instance_type or settings.parameters["TrainingInstanceType"],
        training_instances=config.training.instance_count,
        training_seconds=min(estimates["training_seconds"], config.training.max_runtime_seconds),
        hosting_instance_type=config.hosting.instance_type or settings.parameters["HostingInstanceType"],
        test_endpoint_instances=endpoint_instances(path, states, "test_endpoint_config", config),
        test_endpoint_seconds=lifetime,
        production_instances=config.hosting.instance_count,
        blue_green_seconds=(
            0.0 if wait is None else estimates["endpoint_update_seconds"] + settings.baking_seconds + wait
        ),
        transitions=len(path),
        lambdas=lambdas,
        dynamodb_write_units=estimates["dynamodb_write_units"],
        dynamodb_read_units=estimates["dynamodb_read_units"],
        s3_puts=int(estimates["s3_puts"]),
        s3_gets=int(estimates["s3_gets"]),
        s3_gb_stored=estimates["run_gb"],
        emails=count_resource(path, states, ".waitForTaskToken"),
        sns_publishes=publishes,
        sns_email_notifications=publishes,
        sources={"transitions": f"the definition's path of a deployed run ({len(path)} states)"},
        # Billed while Evaluate's requests run; the estimate is Evaluate's whole time, an upper bound.
        test_endpoint_serverless=serverless_use(
            path, states, config, estimates["evaluate_seconds"], estimates["evaluation_gb"]
        ),
        transform_jobs=transform_jobs,
        transform_seconds=transform_seconds,
    )
    return usage, path


def monitoring_use(settings: StackSettings, estimates: Mapping[str, float]) -> MonitoringUse | None:
    """The processing job the definition's data-quality job definition runs every hour (its
    ClusterConfig), or None when the definition makes no monitoring job definition."""
    for state in flat_states(settings.definition).values():
        if str(state.get("Resource", "")).endswith(":createDataQualityJobDefinition"):
            cluster = state.get("Parameters", {}).get("JobResources", {}).get("ClusterConfig", {})
            if "InstanceType" not in cluster:
                raise CostError("the data-quality job definition names no ClusterConfig.InstanceType")
            return MonitoringUse(
                instance_type=str(cluster["InstanceType"]),
                instances=int(cluster.get("InstanceCount", 1)),
                execution_seconds=estimates["monitoring_execution_seconds"],
                # cron(0 * ? * * *): once an hour, whether or not production had traffic.
                executions_per_month=HOURS_PER_MONTH,
            )
    return None


def standing_usage(settings: StackSettings, config: DatasetConfig, estimates: Mapping[str, float]) -> StandingUsage:
    """What the stack keeps all month: the production endpoint (once a model is deployed), its
    monitoring schedule and drift alarms, the template's alarms, keys."""
    return StandingUsage(
        production_instance_type=config.hosting.instance_type or settings.parameters["HostingInstanceType"],
        production_instances=config.hosting.instance_count,
        production_deployed=True,
        alarms=settings.alarms,
        kms_keys=settings.kms_keys,
        data_capture_gb_month=estimates["data_capture_gb_month"],
        lineage_gb=estimates["lineage_gb"],
        monitoring=monitoring_use(settings, estimates),
        drift_alarms=len(config.features),
    )
