"""The local Glue engine under moto: the one module of the engine that reaches into moto.

moto records a job run and reports it SUCCEEDED at once without running anything. The
``glue.job-runs`` patch makes StartJobRun start the run on a ``GlueEngine`` and GetJobRun
(``FakeJobRun.status`` and ``as_dict``) report the engine's record of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stepml.local import faults
from stepml.local.glue.engine import GlueEngine, _fault_subject
from stepml.local.glue.logs import LogEncryption
from stepml.local.patching import Patch, register


def _log_encryption(job: Any) -> LogEncryption | None:
    """The CloudWatch Logs encryption of a moto job's security configuration, if it has one."""
    name = getattr(job, "security_configuration", None)
    if not name:
        return None
    configuration = job.backend.security_configurations.get(name)
    settings = (configuration.configuration if configuration else {}).get("CloudWatchEncryption") or {}
    if settings.get("CloudWatchEncryptionMode") != "SSE-KMS" or not settings.get("KmsKeyArn"):
        return None
    return LogEncryption(name, settings["KmsKeyArn"])


def _job_run_answer(data: dict[str, Any], record: Any) -> dict[str, Any]:
    """moto's GetJobRun answer with the engine record's state, timing and error."""
    data["JobRunState"] = record.state
    data["StartedOn"] = record.started_on
    data["LastModifiedOn"] = record.completed_on or datetime.now(UTC)
    data["ExecutionTime"] = record.execution_seconds
    data["LogGroupName"] = "/aws-glue/jobs"
    if record.completed_on is not None:
        data["CompletedOn"] = record.completed_on
    else:
        data.pop("CompletedOn", None)
    if record.error_message:
        data["ErrorMessage"] = record.error_message
    return data


def _install_job_runs(patch: Patch, engine: GlueEngine) -> None:
    from moto.glue.exceptions import ConcurrentRunsExceededException
    from moto.glue.models import FakeJob, FakeJobRun

    original_start = FakeJob.start_job_run
    original_as_dict = FakeJobRun.as_dict
    original_status = FakeJobRun.status

    def start_job_run(self: Any, *args: Any, **kwargs: Any) -> str:
        throttled = faults.trigger("glue:StartJobRun", _fault_subject(self.name, kwargs.get("arguments") or {}))
        if throttled:
            raise ConcurrentRunsExceededException(throttled)
        run_id = original_start(self, *args, **kwargs)
        run = next(r for r in self.job_runs if r.job_run_id == run_id)
        record = engine.start(
            self.name,
            run_id,
            run.arguments or {},
            run.timeout,
            role_arn=self.role,
            script_location=(self.command or {}).get("ScriptLocation"),
            glue_version=self.glue_version,
            log_encryption=_log_encryption(self),
        )
        run._stepml_record = record
        return run_id

    def status(self: Any) -> str | None:
        record = getattr(self, "_stepml_record", None)
        return record.state if record is not None else original_status.fget(self)

    def as_dict(self: Any) -> dict[str, Any]:
        data = original_as_dict(self)
        record = getattr(self, "_stepml_record", None)
        return data if record is None else _job_run_answer(data, record)

    patch.replace(FakeJob, "start_job_run", start_job_run)
    patch.replace(FakeJobRun, "status", property(status, original_status.fset))
    patch.replace(FakeJobRun, "as_dict", as_dict)


JOB_RUNS = register(
    Patch(
        name="glue.job-runs",
        why=(
            "moto's StartJobRun records a run and GetJobRun reports it SUCCEEDED at once, without running "
            "the script. The local cloud starts the run on its Glue engine (the job's script on local PySpark, "
            "under the job's role) and GetJobRun reports the engine's state, timing and error message; "
            "StartJobRun also honours the glue:StartJobRun fault."
        ),
        test="tests/unit/test_local_glue.py::test_a_run_executes_the_script_and_uploads_what_it_wrote",
        install=_install_job_runs,
        scope="cloud",
    )
)
