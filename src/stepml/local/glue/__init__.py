"""Glue for the local cloud: StartJobRun runs the job's script on local PySpark.

One shape, as every engine of the local cloud: ``engine`` (what a run does: staging, the script,
metrics), ``logs`` (where a run's logs go), ``worker`` (the long-lived driver process and the
engine's handle on it), ``adapter`` (the only module that reaches into moto: the registered
``glue.job-runs`` patch) and ``errors``. The names below were importable from the former module
``stepml.local.glue`` and stay so.
"""

from stepml.local.glue.adapter import JOB_RUNS
from stepml.local.glue.engine import (
    GLUE_SESSION,
    METRICS_NAMESPACE,
    SCRATCH_ARGUMENTS,
    GlueEngine,
    JobRunRecord,
    error_message_from_log,
)
from stepml.local.glue.errors import GlueEngineError
from stepml.local.glue.logs import (
    CONTINUOUS_LOG_GROUP,
    LOG_GROUP_ROOT,
    REAL_TIME_LOGGING_VERSION,
    LogEncryption,
)
from stepml.local.glue.worker import IdleWorkers

__all__ = [
    "CONTINUOUS_LOG_GROUP",
    "GLUE_SESSION",
    "JOB_RUNS",
    "LOG_GROUP_ROOT",
    "METRICS_NAMESPACE",
    "REAL_TIME_LOGGING_VERSION",
    "SCRATCH_ARGUMENTS",
    "GlueEngine",
    "GlueEngineError",
    "IdleWorkers",
    "JobRunRecord",
    "LogEncryption",
    "error_message_from_log",
]
