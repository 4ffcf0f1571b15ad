"""Faults on the local cloud: transient ones are retried away, permanent ones fail, alert and resume.

One local cloud serves the module. Every run is its own dataset, and each fault names its
run's dataset (``OPERATION@DATASET=N``), so the runs overlap: the module uploads them all at
once and each test follows its own. Resumes go through ``stepml runs resume``; the proof that
finished steps are skipped comes from Glue's GetJobRuns and SageMaker's ListTrainingJobs.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from stepml.cli.main import main
from stepml.cli.runs import approve_link
from stepml.lineage import STEP_TITLES
from stepml.lineage_table import email_subject
from stepml.sample_data import churn_csv

pytestmark = pytest.mark.e2e
ROWS = 800
TRANSIENT = "flt-ok"
FAILS_TRAINING = "flt-train"
FAILS_ENDPOINT = "flt-endpoint"
FAILS_EVALUATION = "flt-evaluate"
FAILS_CLEANUP = "flt-cleanup"
FAILS_SCORING = "flt-batch"
ALERT_LOST = "flt-alert"
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def uploads(pipeline):
    """Set the faults, then upload one file per scenario at once; returns each dataset's upload."""
    faults = pipeline.cloud.faults
    faults.load(
        [
            # transient: within the Retry of the task they hit
            f"glue:StartJobRun@{TRANSIENT}=2",
            f"sagemaker:CreateTrainingJob@{TRANSIENT}=2",
            f"sagemaker:CreateEndpoint@{TRANSIENT}=1",
            f"lambda:Evaluate@{TRANSIENT}=2",
            # permanent: not retried, the run fails at that step
            f"sagemaker:TrainingJob@{FAILS_TRAINING}=1",
            f"sagemaker:Endpoint@{FAILS_ENDPOINT}-=1",
            f"lambda:Evaluate.error@{FAILS_EVALUATION}=1",
            # the batch scoring: one throttled create (retried), then the job fails
            f"sagemaker:CreateTransformJob@{FAILS_SCORING}=1",
            f"sagemaker:TransformJob@{FAILS_SCORING}=1",
            # past the Retry (1 call + 5 retries): the run must end as it would have without them
            f"sagemaker:DeleteEndpoint@{FAILS_CLEANUP}=6",
            f"sns:Publish@{ALERT_LOST}=6",
        ]
    )
    uploaded = {}
    datasets = (TRANSIENT, FAILS_TRAINING, FAILS_ENDPOINT, FAILS_EVALUATION, FAILS_CLEANUP, FAILS_SCORING)
    for seed, dataset in enumerate(datasets, start=31):
        # FAILS_SCORING scores its test split with Batch Transform (threshold 0) instead of a test endpoint.
        batch = {"evaluation": {"batch_transform_above_rows": 0}} if dataset == FAILS_SCORING else {}
        pipeline.onboard(dataset, promote_only_if_better=False, **batch)
        uploaded[dataset] = pipeline.upload(dataset, "data.csv", churn_csv(ROWS, seed=seed))
    # Never onboarded: the run fails at once, and its alert cannot be sent.
    uploaded[ALERT_LOST] = pipeline.upload(ALERT_LOST, "data.csv", churn_csv(50, seed=40))
    yield uploaded
    faults.clear()


def _wait_for_attempt(pipeline, run_id: str, attempt: int, statuses: tuple[str, ...] | None = None) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        records = pipeline.run_record(run_id)
        if records["RUN"].get("attempt") == attempt and (statuses is None or records["RUN"].get("status") in statuses):
            return records
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} attempt {attempt} did not reach {statuses}: {pipeline.run_record(run_id)}")


def _resume(pipeline, run_id: str, capsys) -> None:
    """``stepml runs resume``; returns once the new execution has claimed the run's next attempt."""
    attempt = pipeline.run_record(run_id)["RUN"]["attempt"]
    code = main(["runs", "resume", run_id, "--state-dir", str(pipeline.cloud.state_dir)])
    captured = capsys.readouterr()
    assert code == 0 and f"resuming run {run_id}" in captured.out, captured.err
    _wait_for_attempt(pipeline, run_id, attempt + 1)


def _reject(pipeline, run_id: str) -> dict:
    email = pipeline.wait_for_approval_email(run_id)
    status, _ = approve_link(email.links[0], decision="reject", comment="fault test")
    assert status == 200
    return pipeline.wait_for_status(run_id, ("REJECTED", "FAILED", "SUCCEEDED"))


def _assert_failed_with_alert(pipeline, run_id: str, step: str, error: str) -> dict:
    title = STEP_TITLES[step]
    records = pipeline.wait_for_status(run_id, ("FAILED", "SUCCEEDED", "REJECTED"))
    run = records["RUN"]
    assert run["status"] == "FAILED" and run["failed_step"] == step, run
    assert run["error"]["error"] == error
    assert records[f"STEP#{step}"]["status"] == "FAILED"
    assert records[f"STEP#{step}"]["error"]["error"] == error
    alert = pipeline.wait_for_email(f"Run {run_id} failed")
    assert alert.to == "alerts@example.com"
    # SNS subjects stop at 100 characters: a long step title is cut as the alert cuts it.
    assert alert.subject == email_subject(f"[stepml] Run {run_id} failed at {title}: {error}")
    assert f"Run:       {run_id}" in alert.body and f"Step:      {title}" in alert.body
    assert f"Error:     {error}" in alert.body and "(local fault " in alert.body
    assert f"stepml runs resume {run_id}" in alert.body
    return records


def _assert_endpoint_gone(pipeline, name: str) -> None:
    with pytest.raises(ClientError) as missing:
        pipeline.client("sagemaker").describe_endpoint(EndpointName=name)
    assert missing.value.response["Error"]["Code"] == "ValidationException"


def test_transient_faults_are_retried_and_lineage_counts_the_retries(pipeline, uploads, capsys):
    run_id = uploads[TRANSIENT]["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    # Two throttles of the deployment notice, which the state machine's SNS task retries.
    pipeline.cloud.faults.add("sns:Publish", 2, match=f"{run_id} deployed")
    status, _ = approve_link(email.links[0], decision="approve", comment="despite the faults")
    assert status == 200
    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    assert records["STEP#preprocess"]["retries"] == 2
    assert records["STEP#train"]["retries"] == 2
    assert records["STEP#evaluate"]["retries"] == 2 and records["STEP#evaluate"]["endpoint_retries"] == 1
    assert records["STEP#train"]["attempts"] == [
        {**records["STEP#train"]["attempts"][0], "attempt": 1, "status": "SUCCEEDED", "retries": 2}
    ]
    faults = pipeline.cloud.faults
    assert faults.hit_count("glue:StartJobRun", TRANSIENT) == 2
    assert faults.hit_count("sagemaker:CreateTrainingJob", TRANSIENT) == 2
    assert faults.hit_count("sagemaker:CreateEndpoint", TRANSIENT) == 1
    assert faults.hit_count("lambda:Evaluate", TRANSIENT) == 2
    assert pipeline.wait_for_email(f"model {run_id} deployed")
    assert faults.hit_count("sns:Publish", f"{run_id} deployed") == 2
    assert len(pipeline.glue_runs(run_id)) == 1, "a throttled StartJobRun starts no job run"
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1"]
    assert main(["runs", "show", run_id, "--state-dir", str(pipeline.cloud.state_dir)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()[2:]
    column = header.index("RETRIES")
    retries = {row.split("  ")[0]: row[column : column + len("RETRIES")].strip() for row in rows}
    assert retries["Preprocess data (Glue)"] == "2" and retries["Evaluate model"] == "2", retries


def test_a_failed_cleanup_after_evaluation_and_a_lost_notice_leave_the_run_succeeded(pipeline, uploads):
    """DeleteEndpoint failing past its Retry right after evaluation is a warning and an alert, not a
    failed run (it goes on to approval and deploys), and a deployment notice SNS refuses past its
    Retry is noted in lineage."""
    upload = uploads[FAILS_CLEANUP]
    run_id = upload["run_id"]
    email = pipeline.wait_for_approval_email(run_id)
    faults = pipeline.cloud.faults
    faults.add("sns:Publish", 6, match=f"{run_id} deployed")
    status, _ = approve_link(email.links[0], decision="approve", comment="cleanup will fail")
    assert status == 200
    assert pipeline.wait_for_execution_end(upload["key"], timeout=240) == "SUCCEEDED"
    records = pipeline.run_record(run_id)
    run, names = records["RUN"], records["RUN"]["names"]
    assert run["status"] == "SUCCEEDED", run
    assert records["STEP#deploy"]["status"] == "SUCCEEDED"

    production = pipeline.outputs["ProductionEndpointName"]
    assert pipeline.endpoint_config(production) == names["production_endpoint_config"], "production serves it"
    answer = pipeline.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=production, ContentType="text/csv", Body="12,70.5,846.0,2,month-to-month,electronic-check,fiber"
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"

    cleanup = records["STEP#cleanup"]
    assert cleanup["status"] == "FAILED" and cleanup["error"]["error"].startswith("SageMaker.")
    assert "(local fault sagemaker:DeleteEndpoint)" in cleanup["error"]["cause"]
    assert faults.hit_count("sagemaker:DeleteEndpoint", FAILS_CLEANUP) == 6
    cleanup_warning, notify_warning = run["warnings"]
    assert (cleanup_warning["step"], cleanup_warning["endpoint"]) == ("cleanup", names["test_endpoint"])
    assert cleanup_warning["error"] == cleanup["error"]["error"]
    assert (notify_warning["step"], notify_warning["notification"]) == ("notify", "deployment")
    assert notify_warning["error"] == "SNS.ThrottledException" and f"{run_id} deployed" in notify_warning["subject"]
    assert faults.hit_count("sns:Publish", f"{run_id} deployed") == 6
    assert records["STEP#notify"]["status"] == "FAILED"

    alert = pipeline.wait_for_email(f"Run {run_id}: test endpoint not deleted after evaluation")
    assert alert.to == "alerts@example.com" and f"Endpoint:  {names['test_endpoint']} (config " in alert.body
    assert f"aws sagemaker delete-endpoint --endpoint-name {names['test_endpoint']}" in alert.body
    assert "the run goes on to the gate and approval" in alert.body and "(local fault " in alert.body
    assert not [m for m in pipeline.cloud.outbox.messages() if f"model {run_id} deployed" in m.subject]

    sagemaker = pipeline.client("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName=names["test_endpoint"])["EndpointStatus"] == "InService"
    sagemaker.delete_endpoint(EndpointName=names["test_endpoint"])  # the fault is used up: the leftover goes
    _assert_endpoint_gone(pipeline, names["test_endpoint"])


def test_an_alert_that_cannot_be_sent_still_fails_the_run_and_lineage_says_so(pipeline, uploads):
    upload = uploads[ALERT_LOST]
    run_id = upload["run_id"]
    assert pipeline.wait_for_execution_end(upload["key"], timeout=120) == "FAILED"
    [execution] = pipeline.executions_for(upload["key"])
    assert execution["error"] == "stepml.PipelineFailed" and "is not onboarded" in execution["cause"]
    run = pipeline.run_record(run_id)["RUN"]
    assert run["status"] == "FAILED" and run["failed_step"] == "resolve"
    [warning] = run["warnings"]
    assert (warning["step"], warning["notification"]) == ("notify", "failure alert")
    assert warning["error"] == "SNS.ThrottledException" and f"Run {run_id} failed" in warning["subject"]
    assert pipeline.cloud.faults.hit_count("sns:Publish", ALERT_LOST) == 6
    assert not [m for m in pipeline.cloud.outbox.messages() if f"Run {run_id} failed" in m.subject]


def test_a_failed_training_job_fails_the_run_and_resume_reuses_the_glue_output(pipeline, uploads, capsys):
    run_id = uploads[FAILS_TRAINING]["run_id"]
    records = _assert_failed_with_alert(pipeline, run_id, "train", "States.TaskFailed")
    assert "InternalServerError: We encountered an internal error" in records["STEP#train"]["error"]["cause"]
    _assert_endpoint_gone(pipeline, records["RUN"]["names"]["test_endpoint"])

    _resume(pipeline, run_id, capsys)
    records = _reject(pipeline, run_id)
    assert records["RUN"]["status"] == "REJECTED" and records["RUN"]["attempt"] == 2
    assert len(pipeline.glue_runs(run_id)) == 1, "preprocessing is not redone"
    assert [a["attempt"] for a in records["STEP#preprocess"]["attempts"]] == [1]
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1", f"stepml-{run_id}-a2"]
    assert [(a["attempt"], a["status"]) for a in records["STEP#train"]["attempts"]] == [
        (1, "FAILED"),
        (2, "SUCCEEDED"),
    ]
    engine = pipeline.cloud.sagemaker_engine
    jobs = [engine.describe_training_job(f"stepml-{run_id}-a{n}", account_id=ACCOUNT, region=REGION) for n in (1, 2)]
    assert [job.status for job in jobs] == ["Failed", "Completed"]


def test_a_failed_test_endpoint_is_deleted_and_resume_skips_preprocess_and_training(pipeline, uploads, capsys):
    run_id = uploads[FAILS_ENDPOINT]["run_id"]
    records = _assert_failed_with_alert(pipeline, run_id, "test_endpoint", "stepml.EndpointFailed")
    assert "(local fault sagemaker:Endpoint)" in records["STEP#test_endpoint"]["error"]["cause"]
    _assert_endpoint_gone(pipeline, records["RUN"]["names"]["test_endpoint"])

    _resume(pipeline, run_id, capsys)
    records = _reject(pipeline, run_id)
    assert records["RUN"]["status"] == "REJECTED" and records["RUN"]["attempt"] == 2
    assert len(pipeline.glue_runs(run_id)) == 1
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1"], "training is not redone"
    assert [a["attempt"] for a in records["STEP#train"]["attempts"]] == [1]
    _assert_endpoint_gone(pipeline, records["RUN"]["names"]["test_endpoint"])


def test_evaluate_errors_and_timeouts_fail_the_run_and_each_resume_picks_up_there(pipeline, uploads, capsys):
    run_id = uploads[FAILS_EVALUATION]["run_id"]
    records = _assert_failed_with_alert(pipeline, run_id, "evaluate", "stepml.FaultInjected")
    first_endpoint = records["RUN"]["names"]["test_endpoint"]
    _assert_endpoint_gone(pipeline, first_endpoint)

    pipeline.cloud.faults.add("lambda:Evaluate.timeout", 1, match=FAILS_EVALUATION)
    _resume(pipeline, run_id, capsys)
    records = _wait_for_attempt(pipeline, run_id, 2, ("FAILED", "REJECTED"))
    assert records["RUN"]["error"]["error"] == "Sandbox.Timedout"
    assert "Task timed out after 900.00 seconds" in records["STEP#evaluate"]["error"]["cause"]
    assert pipeline.wait_for_email(f"Run {run_id} failed at Evaluate model: Sandbox.Timedout")
    _assert_endpoint_gone(pipeline, records["RUN"]["names"]["test_endpoint"])

    _resume(pipeline, run_id, capsys)
    records = _reject(pipeline, run_id)
    assert records["RUN"]["status"] == "REJECTED" and records["RUN"]["attempt"] == 3
    assert [(a["attempt"], a["status"]) for a in records["STEP#evaluate"]["attempts"]] == [
        (1, "FAILED"),
        (2, "FAILED"),
        (3, "SUCCEEDED"),
    ]
    assert len(pipeline.glue_runs(run_id)) == 1
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1"]
    assert len(pipeline.approval_emails(run_id)) == 1


def test_a_failed_transform_job_fails_the_run_at_test_scoring_and_resume_scores_under_new_names(
    pipeline, uploads, capsys
):
    run_id = uploads[FAILS_SCORING]["run_id"]
    records = _assert_failed_with_alert(pipeline, run_id, "test_scoring", "States.TaskFailed")
    assert "(local fault sagemaker:TransformJob)" in records["STEP#test_scoring"]["error"]["cause"]
    faults = pipeline.cloud.faults
    assert faults.hit_count("sagemaker:CreateTransformJob", FAILS_SCORING) == 1, "the throttle was retried away"
    assert faults.hit_count("sagemaker:TransformJob", FAILS_SCORING) == 1
    sagemaker = pipeline.client("sagemaker")
    first = records["RUN"]["names"]["challenger_transform_job"]

    _resume(pipeline, run_id, capsys)
    records = _reject(pipeline, run_id)
    assert records["RUN"]["status"] == "REJECTED" and records["RUN"]["attempt"] == 2
    assert len(pipeline.glue_runs(run_id)) == 1
    assert pipeline.training_jobs(run_id) == [f"stepml-{run_id}-a1"], "training is not redone"
    second = records["RUN"]["names"]["challenger_transform_job"]
    assert (first.endswith("-a1"), second.endswith("-a2")) == (True, True)
    assert sagemaker.describe_transform_job(TransformJobName=second)["TransformJobStatus"] == "Completed"
    assert records["STEP#evaluate"]["status"] == "SUCCEEDED"
