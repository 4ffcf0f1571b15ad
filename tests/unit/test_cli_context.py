"""The CLI's clients: against the local cloud, every call reaches its one host."""

from __future__ import annotations

import boto3

from stepml.cli.context import Target


def test_local_cloud_clients_send_host_prefixed_calls_to_the_local_host(aws_credentials: None) -> None:
    local = Target(session=boto3.Session(), endpoint_url="http://127.0.0.1:4566", outputs={})
    sfn = local.client("stepfunctions")
    # TestState and StartSyncExecution carry a "sync-" host prefix in AWS's model.
    assert sfn.meta.config.inject_host_prefix is False
    assert sfn.meta.endpoint_url == "http://127.0.0.1:4566"
    deployed = Target(session=boto3.Session(), endpoint_url=None, outputs={})
    assert deployed.client("stepfunctions").meta.config.inject_host_prefix is True
