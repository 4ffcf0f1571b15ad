"""The local cloud: one process that gives this app a complete local AWS.

moto in server mode answers the AWS APIs (with Step Functions execution on); the engines in
this package replace moto's canned answers with real work (Lambda handlers in worker
processes, email to an outbox, S3 events to EventBridge rules, the HTTP API over HTTP, and
Glue and SageMaker runs). ``template.yaml`` with the samconfig ``dev`` parameters is
provisioned into it, so Lambdas, the Glue script and the CLI use plain boto3 and differ from
AWS only by ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from stepml.local import account_defaults, events, faults, glue, lambdas, mail
from stepml.local.apigateway import HttpApiServer, Route
from stepml.local.cloudformation import register_stack
from stepml.local.cognito import HostedUi, MotoUserPools
from stepml.local.console import ConsoleData, ConsoleServer
from stepml.local.console import execution_url as console_execution_url
from stepml.local.faults import ENVIRONMENT_VARIABLE as FAULTS_VARIABLE
from stepml.local.faults import FaultSwitch
from stepml.local.iam import gate as iam_gate
from stepml.local.iam import hooks as iam_hooks
from stepml.local.idle import DEFAULT_IDLE_TIMEOUT_SECONDS, IdleReaper
from stepml.local.lambdas import FunctionSpec, LambdaEngine
from stepml.local.patching import Patch, apply_process_patches
from stepml.local.provision import ProvisionedStack, provision
from stepml.local.sagemaker import LocalSageMaker, adapter_monitoring, adapter_transform
from stepml.local.sagemaker import adapter as sagemaker_adapter
from stepml.local.template import ResolvedTemplate

DEFAULT_PORT = 4566
DEFAULT_API_PORT = 4567
DEFAULT_CONSOLE_PORT = 4568
#: How often each monitoring schedule runs locally (AWS: hourly or daily, as its expression says).
DEFAULT_MONITOR_PERIOD = 60.0
#: The longest a blue/green update bakes locally (AWS: the definition's WaitIntervalInSeconds, 600 s by default).
DEFAULT_BAKING_PERIOD = 10.0
REGION = "us-east-1"
STACK_NAME = "stepml-local"
#: Local overrides of the samconfig parameters: poll endpoints every second, not every 30.
LOCAL_PARAMETERS = {"EndpointPollSeconds": "1"}
#: Template parameters that name SES sender identities. In AWS an operator verifies them once
#: before deploying (docs/deploy.md); the local cloud verifies them when it starts.
SES_SENDER_PARAMETERS = ("ApprovalSenderEmail",)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class LocalCloudError(RuntimeError):
    """The local cloud cannot start; the message says what to do."""


def samconfig_parameters(root: Path, environment: str = "dev") -> dict[str, str]:
    """The ``parameter_overrides`` of a samconfig environment, as a dict."""
    path = root / "samconfig.toml"
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LocalCloudError(f"{path}: cannot read: {exc}") from exc
    try:
        overrides = config[environment]["deploy"]["parameters"].get("parameter_overrides", "")
    except KeyError:
        raise LocalCloudError(f"{path}: no [{environment}.deploy.parameters] section") from None
    return dict(pair.split("=", 1) for pair in shlex.split(overrides))


def samconfig_tags(root: Path, environment: str = "dev") -> dict[str, str]:
    """The ``tags`` of a samconfig environment's deploy parameters, as a dict (empty if none)."""
    config = tomllib.loads((root / "samconfig.toml").read_text(encoding="utf-8"))
    tags = config.get(environment, {}).get("deploy", {}).get("parameters", {}).get("tags", "")
    return dict(pair.split("=", 1) for pair in shlex.split(tags))


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class LocalCloud:
    """Start with ``start()``; ``endpoint_url`` is the AWS endpoint, ``api_url`` the approval API.

    ``faults`` is the fault switch the engines consult (``cloud.faults.add("glue:StartJobRun", 2)``,
    ``cloud.faults.clear()``); ``start()`` adds the faults of ``$STEPML_LOCAL_FAULTS`` to it.
    """

    root: Path
    state_dir: Path
    port: int = DEFAULT_PORT
    api_port: int = DEFAULT_API_PORT
    #: The web console's port (``stepml.local.console``): executions, graphs, lineage, outbox, endpoints.
    console_port: int = DEFAULT_CONSOLE_PORT
    host: str = "127.0.0.1"
    stack_name: str = STACK_NAME
    environment: str = "dev"
    #: Glue workers whose Spark driver is warmed up at start (0: the first run starts cold).
    glue_warm_workers: int = 1
    #: Warm Glue workers shared with the clouds this process starts before and after this one.
    glue_idle_workers: glue.IdleWorkers | None = None
    #: Seconds between two executions of each SageMaker monitoring schedule.
    monitor_period_seconds: float = DEFAULT_MONITOR_PERIOD
    #: Template parameters over the samconfig environment's (``{"ApprovalSignIn": "cognito"}``).
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    #: The longest a blue/green update's baking period lasts here (its alarms are watched throughout).
    baking_period_seconds: float = DEFAULT_BAKING_PERIOD
    #: Warm Spark drivers and Lambda workers idle this long are stopped (``stepml.local.idle``); None: never.
    idle_timeout_seconds: float | None = DEFAULT_IDLE_TIMEOUT_SECONDS
    stack: ProvisionedStack | None = None
    lambda_engine: LambdaEngine | None = None
    outbox: mail.Outbox | None = None
    glue_engine: glue.GlueEngine | None = None
    sagemaker_engine: LocalSageMaker | None = None
    faults: FaultSwitch = field(default_factory=FaultSwitch)
    #: Checks every call a role makes (see stepml.local.iam); ``start()`` creates it.
    authorizer: iam_gate.Authorizer | None = None
    _moto: Any = None
    _api_servers: dict[str, HttpApiServer] = field(default_factory=dict)
    _console: ConsoleServer | None = None
    #: Cognito's hosted UI of the approvers' user pool, with ApprovalSignIn=cognito.
    _hosted_ui: HostedUi | None = None
    _routes: dict[str, list[Route]] = field(default_factory=dict)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _saved_environment: dict[str, str | None] = field(default_factory=dict)
    _reaper: IdleReaper | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def console_url(self) -> str:
        """The web console's address (ends with ``/``)."""
        return f"http://{self.host}:{self.console_port}/"

    def execution_console_url(self, execution_arn: str) -> str:
        """The console page of one execution: its graph, lineage and email."""
        return console_execution_url(self.console_url, execution_arn)

    # -- LocalRuntime (called by provisioning) ----------------------------------------

    def register_function(self, spec: FunctionSpec) -> None:
        assert self.lambda_engine is not None
        self.lambda_engine.register(spec)

    def register_routes(self, api_logical_id: str, routes: list[Route]) -> None:
        self._routes.setdefault(api_logical_id, []).extend(routes)

    def register_glue_job(self, name: str, script_path: Path) -> None:
        assert self.glue_engine is not None
        self.glue_engine.register_job(name, script_path)

    def layer_dir(self, logical_id: str) -> Path:
        return self.state_dir / "layers" / logical_id

    # -- lifecycle ---------------------------------------------------------------------

    def environment_for_clients(self) -> dict[str, str]:
        """What a process needs to talk to this cloud with plain boto3 or the AWS CLI."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client_factory(self, service: str) -> Callable[[], Any]:
        """A function that makes a boto3 client for this cloud (one per caller thread)."""

        def make(**credentials: str) -> Any:
            """``credentials`` (aws_access_key_id, ...) sign as a role instead of the local user."""
            return boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                **(
                    credentials
                    or {
                        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    }
                ),
            )

        return make

    def start(self) -> LocalCloud:
        """Start moto and the engines, provision the template, write ``cloud.json``."""
        for port in (self.port, self.api_port, self.console_port):
            if not port_is_free(self.host, port):
                raise LocalCloudError(
                    f"port {port} on {self.host} is in use; stop what uses it (stepml local down) or pick another "
                    "with --port/--api-port/--console-port"
                )
        self._start_moto()
        self._start_engines()
        self._provision()
        self._start_console()
        self._warm_up_glue()
        self.write_state()
        return self

    def _start_moto(self) -> None:
        """moto in server mode behind the IAM gate, with the process patches and the cloud's
        fault switch and authorizer applied."""
        from moto.core.config import default_user_config

        apply_process_patches()
        self.faults.load(os.environ.get(FAULTS_VARIABLE, ""))
        self._undo.append(faults.SWITCH.apply(self.faults))
        # One line per AWS call would drown the progress output; errors still surface.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # The interpreter logs every failed path lookup, including IsPresent checks that are
        # normal flow; failures that matter reach the execution history.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        # moto's interpreter calls the services through MOTO_PORT; in-process clients need the
        # local endpoint and credentials. stop() puts the previous values back.
        # AWS managed policies (AWSLambdaBasicExecutionRole ...) exist in IAM, so SAM's function
        # roles can attach them and the IAM gate evaluates them.
        # XGBoost's OpenMP threads (training and model servers run in this process) sleep at a
        # barrier instead of spinning: on cores shared with Spark, moto and the Lambda workers,
        # spinning burnt a third of training's CPU (same threads, same model; read when xgboost loads).
        process_environment = {
            **self.environment_for_clients(),
            "MOTO_PORT": str(self.port),
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        }
        self._saved_environment = {name: os.environ.get(name) for name in process_environment}
        os.environ.update(process_environment)
        previous_execution = default_user_config["stepfunctions"]["execute_state_machine"]
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        self._undo.append(lambda: default_user_config["stepfunctions"].update(execute_state_machine=previous_execution))
        self.authorizer = iam_gate.Authorizer(iam_gate.Principals(), iam_gate.MotoPolicies(region=REGION))
        self._undo.extend(patch.apply(self.authorizer) for patch in iam_hooks.PATCHES)
        self._moto = iam_gate.GatedMotoServer(self.authorizer, REGION, ip_address=self.host, port=self.port)
        self._moto.start()
        # moto's backends live in this process: a cloud starts empty even after another one.
        reset = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 - our own loopback endpoint
        # What AWS has in every account (public SSM parameters, the SDK for pandas layer, SageMaker's
        # XGBoost image), so that `stepml preflight` gets AWS's answers here.
        from moto.core import DEFAULT_ACCOUNT_ID

        account_defaults.seed(REGION, DEFAULT_ACCOUNT_ID)

    def _start_engines(self) -> None:
        """The Lambda, SageMaker and Glue engines and the outbox, with moto routed to them."""
        assert self.authorizer is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lambda_engine = LambdaEngine(
            {
                **self.environment_for_clients(),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            log_dir=self.state_dir / "logs",
            principals=self.authorizer.principals,
        )
        self.outbox = mail.Outbox(self.state_dir / "outbox")
        self.sagemaker_engine = LocalSageMaker(
            boto3.Session(
                region_name=REGION,
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            ),
            endpoint_url=self.endpoint_url,
            work_dir=self.state_dir / "sagemaker",
            monitor_period_seconds=self.monitor_period_seconds,
            baking_period_seconds=self.baking_period_seconds,
        )
        self.glue_engine = glue.GlueEngine(
            self.client_factory("s3"),
            self.state_dir / "glue",
            environment=self.environment_for_clients(),
            principals=self.authorizer.principals,
            client_factory=lambda service, **credentials: self.client_factory(service)(**credentials),
            idle_workers=self.glue_idle_workers,
        )
        self._apply_engine_patches()
        if self.idle_timeout_seconds:
            pools = [self.glue_engine.reap_idle, self.lambda_engine.reap_idle]
            self._reaper = IdleReaper(pools, self.idle_timeout_seconds).start()

    def _provision(self) -> None:
        """Provision the template into moto and serve its HTTP APIs and its stack's description."""
        assert self.authorizer is not None and self.lambda_engine is not None
        parameters = {
            **samconfig_parameters(self.root, self.environment),
            **LOCAL_PARAMETERS,
            "ApprovalBaseUrl": self.api_url,
            **self.parameter_overrides,
        }
        if parameters.get("ApprovalSignIn") == "cognito":
            # The hosted UI listens before provisioning: the approval function's environment names
            # its URL, as it names the Cognito domain's in AWS. It learns its pool once that exists.
            from moto.core import DEFAULT_ACCOUNT_ID

            self._hosted_ui = HostedUi(MotoUserPools(DEFAULT_ACCOUNT_ID, REGION), "", host=self.host)
            parameters["ApprovalSignInUrl"] = self._hosted_ui.address
        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        local_session = _EndpointSession(session, self.endpoint_url)
        self.stack = provision(
            self.root / "template.yaml",
            local_session,
            stack_name=self.stack_name,
            region=REGION,
            parameter_overrides=parameters,
            runtime=self,
        )
        self.authorizer.recorder.own(resource_policy_owners(self.stack.resolved))
        self._start_hosted_ui()
        sesv2 = local_session.client("sesv2")
        for name in SES_SENDER_PARAMETERS:
            sesv2.create_email_identity(EmailIdentity=str(self.stack.resolved.parameters[name]))
        for api_logical_id, routes in self._routes.items():
            server = HttpApiServer(
                routes,
                self.lambda_engine,
                api_id=self.stack.physical_id(api_logical_id),
                host=self.host,
                port=self.api_port,
            )
            self._api_servers[api_logical_id] = server.start()
        # `aws cloudformation describe-stacks` (and `stepml ... --stack-name`) find the stack and its Outputs.
        register_stack(
            self.stack,
            self.outputs(),
            (self.root / "template.yaml").read_text(encoding="utf-8"),
            tags=samconfig_tags(self.root, self.environment),
        )

    def _start_hosted_ui(self) -> None:
        """Serve the hosted UI for the pool of the template's user pool domain."""
        if self._hosted_ui is None:
            return
        assert self.stack is not None
        resolved = self.stack.resolved
        domains = [
            logical
            for logical in self.stack.created
            if resolved.resources[logical]["Type"] == "AWS::Cognito::UserPoolDomain"
        ]
        if len(domains) != 1:
            raise LocalCloudError(f"ApprovalSignIn=cognito needs one user pool domain in the template, found {domains}")
        self._hosted_ui.user_pool_id = resolved.resolved_properties(domains[0])["UserPoolId"]
        self._hosted_ui.start()

    @property
    def signin_url(self) -> str | None:
        """The hosted UI's address when the approval page has a sign-in, else None."""
        return self._hosted_ui.address if self._hosted_ui is not None else None

    def _start_console(self) -> None:
        """The web console on its own port, reading this cloud through boto3 like any client."""
        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        data = ConsoleData(session, self.endpoint_url, self.outputs, self.state_dir / "outbox")
        self._console = ConsoleServer(data, host=self.host, port=self.console_port).start()

    def _apply_engine_patches(self) -> None:
        """Route moto to this cloud's engines: each cloud patch bound to its engine; ``stop()``
        undoes them, last applied first."""
        assert self.glue_engine is not None and self.sagemaker_engine is not None
        assert self.lambda_engine is not None and self.outbox is not None
        bound: list[tuple[Patch, tuple[Any, ...]]] = [
            (glue.JOB_RUNS, (self.glue_engine,)),
            *(
                (patch, (self.sagemaker_engine,))
                for patch in (*sagemaker_adapter.PATCHES, *adapter_transform.PATCHES, adapter_monitoring.MONITORING)
            ),
            (lambdas.INVOKE, (self.lambda_engine,)),
            (lambdas.WARM_ON_START, (self.lambda_engine,)),
            (mail.SNS_EMAIL, (self.outbox,)),
            (mail.SNS_PUBLISH_FAULT, ()),
            (mail.SES_SEND_EMAIL, (self.outbox,)),
            (events.S3_NOTIFICATIONS, ()),
            (events.PUT_EVENTS, ()),
        ]
        for patch, bindings in bound:
            self._undo.append(patch.apply(*bindings))

    def _warm_up_glue(self) -> None:
        """Run the preprocessing job once on a small sample of the example dataset, in the
        background, so the first upload finds a warm Spark driver (a cold one costs 25-45 s)."""
        example = self.root / "examples" / "datasets" / "churn.json"
        assert self.glue_engine is not None
        if self.glue_warm_workers < 1 or not example.is_file() or len(self.glue_engine.scripts) != 1:
            return
        if self.glue_idle_workers is not None and len(self.glue_idle_workers) >= self.glue_warm_workers:
            return  # drivers an earlier cloud of this process warmed up with the same script
        from stepml.sample_data import churn_csv

        folder = self.state_dir / "glue" / "warm-up"
        folder.mkdir(parents=True, exist_ok=True)
        sample = folder / "sample.csv"
        sample.write_bytes(churn_csv(400, seed=1))
        # The arguments of glue_jobs/preprocess.py, pointing at local files instead of s3://.
        arguments = {
            "run_id": "warm-up",
            "input_uri": str(sample),
            "output_uri": f"{folder}/output-{{n}}/",
            "dataset_config": example.read_text(encoding="utf-8"),
        }
        job_name = next(iter(self.glue_engine.scripts))
        self.glue_engine.warm_up(job_name, arguments, workers=self.glue_warm_workers)

    def outputs(self) -> dict[str, str]:
        """The stack's Outputs, resolved (bucket names, state machine ARN, ...)."""
        assert self.stack is not None
        outputs = {}
        for name, spec in self.stack.resolved.template.get("Outputs", {}).items():
            outputs[name] = str(self.stack.resolved.resolve(spec["Value"], context=f"Outputs.{name}"))
        outputs["ApprovalApiUrl"] = self.api_url
        return outputs

    def write_state(self) -> Path:
        path = self.state_dir / "cloud.json"
        state = {
            "pid": os.getpid(),
            "endpoint_url": self.endpoint_url,
            "api_url": self.api_url,
            "console_url": self.console_url,
            "signin_url": self.signin_url,
            "region": REGION,
            "stack_name": self.stack_name,
            "outputs": self.outputs(),
            "outbox": str(self.state_dir / "outbox"),
            "python": sys.executable,
        }
        path.write_text(json.dumps(state, indent=2) + "\n")
        return path

    def stop(self) -> None:
        """Abort the executions still running, then stop every server and worker; undo the hooks."""
        abort_running_executions()
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None
        for server in self._api_servers.values():
            server.stop()
        self._api_servers.clear()
        if self._hosted_ui is not None:
            self._hosted_ui.stop()
            self._hosted_ui = None
        if self._console is not None:
            self._console.stop()
            self._console = None
        if self.lambda_engine is not None:
            self.lambda_engine.close()
        if self.sagemaker_engine is not None:
            self.sagemaker_engine.shutdown()
        if self.glue_engine is not None:
            self.glue_engine.close()
        while self._undo:
            self._undo.pop()()
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment = {}
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        state = self.state_dir / "cloud.json"
        if state.exists():
            state.unlink()


def resource_policy_owners(resolved: ResolvedTemplate) -> dict[str, str]:
    """The IAM gate's name of each resource-based policy the template provisions (bucket, topic,
    queue, key and function policies), mapped to the logical id that defines it."""
    owners = {}
    for logical_id, spec in resolved.resources.items():
        kind = spec["Type"]
        if kind == "AWS::KMS::Key":
            arns = [resolved.get_att(logical_id, "Arn")]
        elif kind == "AWS::S3::BucketPolicy":
            arns = [f"arn:aws:s3:::{resolved.resolved_properties(logical_id)['Bucket']}"]
        elif kind == "AWS::SNS::TopicPolicy":
            arns = list(resolved.resolved_properties(logical_id)["Topics"])
        elif kind == "AWS::SQS::QueuePolicy":
            urls = resolved.resolved_properties(logical_id)["Queues"]
            arns = [f"arn:aws:sqs:{resolved.region}:{resolved.account_id}:{url.rsplit('/', 1)[-1]}" for url in urls]
        elif kind == "AWS::Lambda::Permission":
            name = resolved.resolved_properties(logical_id)["FunctionName"]
            arns = [f"arn:aws:lambda:{resolved.region}:{resolved.account_id}:function:{name}"]
        else:
            continue
        for arn in arns:
            source = iam_gate.resource_policy_source(arn)
            if source is not None:
                owners[source] = logical_id
    return owners


#: How long ``stop()`` waits for aborted executions to unwind (a task in a Lambda call finishes it).
ABORT_WAIT_SECONDS = 60.0


def _program_running(execution: Any) -> bool:
    """Whether a moto execution's thread has begun evaluating its program (a stop now takes effect)."""
    env = getattr(execution.exec_worker, "env", None)
    return env is not None and env.is_running()


def abort_running_executions(wait_seconds: float = ABORT_WAIT_SECONDS) -> list[str]:
    """Stop every RUNNING execution as StopExecution would, and wait for their threads to end.

    moto runs executions in threads of this process that outlive the server: left running, an
    execution of a stopped cloud would go on calling the next cloud started in the same process
    (tests start one per module), as a role that cloud has not provisioned yet. Returns the ARNs
    of the executions it aborted.
    """
    import datetime
    import threading
    import time

    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.stepfunctions.parser.utils import TMP_THREADS

    aborted = []
    deadline = time.monotonic() + wait_seconds
    for _account, _region, backend in list(stepfunctions_parser_backends.iter_backends()):
        for machine in list(backend.state_machines):
            for execution in list(machine.executions):
                if execution.exec_status != ExecutionStatus.RUNNING:
                    continue
                # A stop before the execution's thread has begun its program is lost (moto stops only a
                # running program), and the execution would run on: stop it once it runs.
                while not _program_running(execution) and execution.exec_status == ExecutionStatus.RUNNING:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                execution.stop(
                    stop_date=datetime.datetime.now(tz=datetime.UTC),
                    error="States.Aborted",
                    cause="the local cloud stopped",
                )
                aborted.append(execution.exec_arn)
    for thread in list(TMP_THREADS):
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    TMP_THREADS[:] = [t for t in TMP_THREADS if isinstance(t, threading.Thread) and t.is_alive()]
    return aborted


class _EndpointSession:
    """A boto3 session whose clients all point at the local endpoint."""

    def __init__(self, session: boto3.Session, endpoint_url: str):
        self._session = session
        self._endpoint_url = endpoint_url

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url, **kwargs)
