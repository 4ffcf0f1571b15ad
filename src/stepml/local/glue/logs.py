"""Where a local Glue run's logs go: CloudWatch Logs groups and streams as Glue writes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stepml.local import telemetry

#: Where Glue writes a run's logs (Glue 5.0: "Logging for AWS Glue jobs"; earlier versions: the
#: same two groups when the run ends, plus continuous logging's group while it runs).
LOG_GROUP_ROOT = "/aws-glue/jobs"
CONTINUOUS_LOG_GROUP = "/aws-glue/jobs/logs-v2"
#: The first Glue version whose runs log in real time without continuous logging.
REAL_TIME_LOGGING_VERSION = (5, 0)


def _enabled(value: str | None) -> bool:
    """A Glue flag argument (``--enable-metrics``, ...): on unless absent or ``false``."""
    return value is not None and value.strip().lower() != "false"


def _version(glue_version: str | None) -> tuple[int, ...]:
    # CreateJob without GlueVersion gives Glue 0.9.
    try:
        return tuple(int(part) for part in (glue_version or "0.9").split("."))
    except ValueError:
        return (0, 9)


def _log4j_line(level: str, message: str) -> str:
    """A system log line in Glue's default conversion pattern (``%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m``)."""
    return f"{datetime.now(UTC):%y/%m/%d %H:%M:%S} {level} GlueJobRunner: {message}"


@dataclass(frozen=True)
class LogEncryption:
    """A job's security configuration that encrypts its CloudWatch Logs (SSE-KMS)."""

    security_configuration: str
    kms_key_arn: str


class RunLogs:
    """Where a run's logs go in CloudWatch Logs, as Glue writes them for the job's version.

    Glue 5.0 sends the script's standard output and error (the run's log file here) to
    ``/aws-glue/jobs/output`` and its own messages to ``/aws-glue/jobs/error`` while the run runs,
    in streams named after the run id; ``--custom-logGroup-prefix`` replaces ``/aws-glue/jobs``.
    Earlier versions write those two when the run ends and, with
    ``--enable-continuous-cloudwatch-log`` true, stream the driver's log as it runs to
    ``/aws-glue/jobs/logs-v2`` (``--continuous-log-logGroup``), in a stream named after the run id
    (after ``--continuous-log-logStreamPrefix``). A security configuration that encrypts CloudWatch
    Logs gives the job groups of its own, ``/aws-glue/jobs/<configuration>-role/<role name>/output``
    (and ``/error``, ``/aws-glue/jobs/logs-v2-<configuration>``), which Glue associates with the
    configuration's key when it creates them. Calls are signed as the job role; a role that may not
    write a stream loses its logs, and the run goes on.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        log_file: Path,
        arguments: Mapping[str, str],
        glue_version: str | None,
        interval: float,
        *,
        role_arn: str | None = None,
        encryption: LogEncryption | None = None,
    ):
        real_time = _version(glue_version) >= REAL_TIME_LOGGING_VERSION
        prefix = (arguments.get("--custom-logGroup-prefix") or "").rstrip("/") if real_time else ""
        root = LOG_GROUP_ROOT
        continuous_group = CONTINUOUS_LOG_GROUP
        key = None
        if encryption is not None:
            role_name = (role_arn or "").rsplit("/", 1)[-1]
            root = f"{LOG_GROUP_ROOT}/{encryption.security_configuration}-role/{role_name}"
            continuous_group = f"{CONTINUOUS_LOG_GROUP}-{encryption.security_configuration}"
            key = encryption.kms_key_arn
        root = prefix or root
        self.output = telemetry.LogStream(client, f"{root}/output", run_id, kms_key_id=key)
        self.error = telemetry.LogStream(client, f"{root}/error", run_id, kms_key_id=key)
        self.streams = [self.output, self.error]
        live = list(self.streams) if real_time else []
        driver = [self.output]
        if not real_time and _enabled(arguments.get("--enable-continuous-cloudwatch-log")):
            group = arguments.get("--continuous-log-logGroup") or continuous_group
            stream = (arguments.get("--continuous-log-logStreamPrefix") or "") + run_id
            continuous = telemetry.LogStream(client, group, stream, kms_key_id=key)
            self.streams.append(continuous)
            live.append(continuous)
            driver.append(continuous)
        self._shipper = telemetry.Shipper(
            self.streams,
            [telemetry.FileFollower(log_file, driver)],
            live=live,
            interval=interval,
            name=f"glue-logs-{run_id[:12]}",
        ).start()

    def system(self, message: str, level: str = "INFO") -> None:
        self.error.add(_log4j_line(level, message))

    def close(self, state: str, error: str | None) -> None:
        """The run's last system lines, then everything still pending."""
        if error:
            self.system(error, "ERROR")
        self.system(f"Job run ended: {state}")
        self._shipper.close()
