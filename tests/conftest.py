"""Shared fixtures: AWS resources come from template.yaml, never built by hand."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

from stepml import config
from stepml.local import faults, glue, mail
from stepml.local.cloud import LocalCloud
from stepml.local.faults import FaultSwitch
from stepml.local.mail import Outbox
from stepml.local.patching import Patch, apply_process_patches
from stepml.local.provision import DATA_RESOURCE_TYPES, ProvisionedStack, provision
from stepml.local.sagemaker import LocalSageMaker, adapter_monitoring, adapter_transform
from stepml.local.sagemaker import adapter as sagemaker_adapter
from tests.helpers import (
    CHURN_CONFIG,
    free_port,
    load_handler,
    local_cloud,
    s3_object_created_event,
    set_function_environment,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"

# The unit tier runs moto in-process with the same fixes the local cloud runs with.
apply_process_patches()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, and no endpoint override, so nothing can reach AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


#: One botocore data loader for the test sessions: it caches the API models and endpoint data it
#: has parsed, which a new boto3.Session otherwise parses again (about 0.3 s a session).
_SHARED_LOADER = botocore.loaders.create_loader()


def new_session() -> boto3.Session:
    """A fresh boto3 session in ``REGION`` whose API models come from the shared loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _SHARED_LOADER)
    return boto3.Session(botocore_session=core, region_name=REGION)


@pytest.fixture
def stack(aws_credentials: None) -> Iterator[ProvisionedStack]:
    """The template's buckets, tables, topics, keys, queues and roles, in moto in-process."""
    with mock_aws():
        yield provision(TEMPLATE, new_session(), types=DATA_RESOURCE_TYPES)


@pytest.fixture
def apply_patch() -> Iterator[Callable[..., None]]:
    """Apply registered patches for the test, ``apply_patch(patch, *bindings)``; each is undone
    when the test ends, last applied first, as ``LocalCloud.stop`` undoes a cloud's."""
    undos: list[Callable[[], None]] = []

    def apply(patch: Patch, *bindings: Any) -> None:
        undos.append(patch.apply(*bindings))

    yield apply
    while undos:
        undos.pop()()


@dataclass
class GatedMoto:
    """moto in server mode behind the local cloud's IAM gate (see the ``gated_moto`` fixture)."""

    url: str
    authorizer: Any

    def client(self, service: str, **credentials: str) -> Any:
        """A client of the server: the local user's (unchecked), or a role's with ``credentials``."""
        keys = credentials or {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **keys)

    def role(self, name: str, service: str, statements: list[dict[str, Any]]) -> str:
        """A role that ``service`` assumes, with one inline policy of ``statements``; its ARN."""
        iam = self.client("iam")
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=name, PolicyName="test", PolicyDocument=json.dumps(policy))
        return arn


@pytest.fixture
def gated_moto(aws_credentials: None, apply_patch: Callable[..., None]) -> Iterator[GatedMoto]:
    """moto in server mode behind the IAM gate, its authorizer the active one as in a running local
    cloud; the checks go to a recorder of their own, never into the session's (the mutation test's)."""
    import urllib.request

    from stepml.local.iam import gate
    from stepml.local.iam import hooks as iam_hooks

    authorizer = gate.Authorizer(gate.Principals(), gate.MotoPolicies(region=REGION), gate.Recorder())
    port = free_port()
    server = gate.GatedMotoServer(authorizer, REGION, "127.0.0.1", port)
    server.start()
    url = f"http://127.0.0.1:{port}"

    def reset() -> None:
        request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    reset()
    apply_patch(iam_hooks.ACTIVE_AUTHORIZER, authorizer)
    try:
        yield GatedMoto(url, authorizer)
    finally:
        reset()
        server.stop()


@pytest.fixture(scope="session")
def glue_idle_workers() -> Iterator[glue.IdleWorkers]:
    """The session's warm Glue workers: each module's cloud hands its idle Spark drivers to the
    next one, so only the session's first cloud pays Spark's start-up (25-45 s of CPU each)."""
    idle = glue.IdleWorkers()
    yield idle
    idle.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, glue_idle_workers: glue.IdleWorkers) -> Iterator[LocalCloud]:
    """One local cloud per test module (tests/local and tests/e2e), started from template.yaml."""
    local = local_cloud(tmp_path_factory.mktemp("cloud"))
    local.glue_idle_workers = glue_idle_workers
    local.start()
    yield local
    local.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The IAM mutation test replays every check the session recorded: it runs last."""
    items.sort(key=lambda item: item.get_closest_marker("iam_mutation") is not None)


@pytest.fixture(autouse=True)
def label_iam_checks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Label the local cloud's IAM checks with the running test (tests/e2e/test_iam_mutation.py
    replays them to find which test fails when a statement is removed)."""
    from stepml.local.iam.gate import RECORDER

    RECORDER.label = request.node.nodeid
    yield
    RECORDER.label = ""


@pytest.fixture
def fault_switch(apply_patch: Callable[..., None]) -> FaultSwitch:
    """The fault switch the engines and adapters consult during the test (the ``faults.switch`` patch)."""
    switch = FaultSwitch()
    apply_patch(faults.SWITCH, switch)
    return switch


@pytest.fixture
def mail_outbox(tmp_path: Path, apply_patch: Callable[..., None]) -> Outbox:
    """moto's SES and SNS email delivered to an outbox folder, as the local cloud delivers it
    (the ``sns.email-delivery``, ``sns.publish-fault`` and ``ses.send-email`` patches)."""
    outbox = Outbox(tmp_path / "outbox")
    apply_patch(mail.SNS_EMAIL, outbox)
    apply_patch(mail.SNS_PUBLISH_FAULT)
    apply_patch(mail.SES_SEND_EMAIL, outbox)
    return outbox


@pytest.fixture
def sagemaker_engines(apply_patch: Callable[..., None]) -> Iterator[Callable[..., Any]]:
    """Make ``LocalSageMaker(session, **options)`` engines with moto's SageMaker routed to each
    (the adapter's ``PATCHES`` and its monitoring schedules); when the test ends each is shut down,
    last made first, then the patches are undone, and no engine thread may be left running."""
    engines: list[LocalSageMaker] = []

    def make(session: Any, **options: Any) -> LocalSageMaker:
        engine = LocalSageMaker(session, **options)
        engines.append(engine)
        for patch in (*sagemaker_adapter.PATCHES, *adapter_transform.PATCHES, adapter_monitoring.MONITORING):
            apply_patch(patch, engine)
        return engine

    yield make
    while engines:
        engines.pop().shutdown()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("stepml-sm-")]
    assert leftover == [], f"threads left running: {leftover}"


class ResolveRunEnv(dict):
    """ResolveRun's settings applied to the process, the churn dataset onboarded, and clients:
    ``settings``, ``s3``, ``sagemaker``, ``table`` (lineage), ``upload_bucket``."""

    def upload(self, key: str, body: bytes) -> dict[str, Any]:
        """Put ``body`` at ``key`` of the upload bucket; the S3 "Object Created" event for it."""
        put = self["s3"].put_object(Bucket=self["upload_bucket"], Key=key, Body=body)
        return s3_object_created_event(self["upload_bucket"], key, put["VersionId"], put["ETag"], len(body))


@pytest.fixture
def resolve_run_env(stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch) -> ResolveRunEnv:
    """What the lineage tests need: ResolveRun's environment and an onboarded churn dataset."""
    set_function_environment(monkeypatch, stack, "ResolveRunFunction")
    settings = config.load_settings(load_handler("lambdas/resolve_run/app.py").REQUIRED_SETTINGS)
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=settings.artifact_bucket, Key=config.dataset_config_key("churn"), Body=json.dumps(CHURN_CONFIG).encode()
    )
    return ResolveRunEnv(
        settings=settings,
        s3=s3,
        sagemaker=boto3.client("sagemaker"),
        table=boto3.resource("dynamodb").Table(settings.lineage_table),
        upload_bucket=stack.physical_id("UploadBucket"),
    )
