"""Shared fixtures: AWS resources come from template.yaml, never built by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from stepml.local import moto_patches
from stepml.local.mail import Outbox
from stepml.local.mail import install_moto_hooks as install_mail_hooks
from stepml.local.provision import DATA_RESOURCE_TYPES, ProvisionedStack, provision

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"

# The unit tier runs moto in-process with the same fixes the local cloud runs with.
moto_patches.apply()


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


@pytest.fixture
def stack(aws_credentials: None) -> Iterator[ProvisionedStack]:
    """The template's buckets, tables, topics, keys, queues and roles, in moto in-process."""
    with mock_aws():
        yield provision(TEMPLATE, boto3.Session(region_name=REGION), types=DATA_RESOURCE_TYPES)


@pytest.fixture
def mail_outbox(tmp_path: Path) -> Iterator[Outbox]:
    """moto's SES and SNS email delivered to an outbox folder, as the local cloud delivers it."""
    outbox = Outbox(tmp_path / "outbox")
    restore = install_mail_hooks(outbox)
    yield outbox
    restore()
