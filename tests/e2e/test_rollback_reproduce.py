"""`stepml rollback` and `stepml runs reproduce` on the local cloud, after two deployed runs.

Tests are ordered: the first deploys two approved models (the second by the pipeline's
blue/green update), the rollback tests put production back on the first, and the reproduce
test trains the first run again from its recorded data version, config and seed.
"""

from __future__ import annotations

import json
import threading

import pytest

from stepml.cli.main import main
from stepml.cli.runs import approve_link
from stepml.sample_data import churn_csv

pytestmark = pytest.mark.e2e
ROWS = 1500
#: Raw feature rows (the production endpoint's input), answered differently by the two models.
PROBE = (
    "12,70.5,846.0,2,month-to-month,electronic-check,fiber\n"
    "40,30.1,1204.0,0,two-year,,dsl\n"
    "3,99.0,297.0,5,month-to-month,mailed-check,fiber"
)

deployed: dict[str, dict] = {}


def _cli(capsys, *args: str, state_dir: str) -> tuple[int, str, str]:
    code = main([*args, "--state-dir", state_dir])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _answer(pipeline) -> str:
    production = pipeline.outputs["ProductionEndpointName"]
    answer = pipeline.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=production, ContentType="text/csv", Body=PROBE
    )
    return answer["Body"].read().decode()


def _deploy(pipeline, name: str, seed: int) -> dict:
    upload = pipeline.upload("churn", name, churn_csv(ROWS, seed=seed))
    email = pipeline.wait_for_approval_email(upload["run_id"])
    status, _ = approve_link(email.links[0], decision="approve", comment="ship it")
    assert status == 200
    records = pipeline.wait_for_status(upload["run_id"], ("SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    production = pipeline.outputs["ProductionEndpointName"]
    assert pipeline.endpoint_config(production) == records["RUN"]["names"]["production_endpoint_config"]
    return {"run_id": upload["run_id"], "names": records["RUN"]["names"], "answer": _answer(pipeline)}


def test_two_approved_models_are_deployed_one_after_the_other(pipeline):
    # The second model must reach production whatever its score against the first.
    pipeline.onboard("churn", promote_only_if_better=False)
    deployed["first"] = _deploy(pipeline, "first.csv", seed=21)
    deployed["second"] = _deploy(pipeline, "second.csv", seed=22)
    assert deployed["first"]["answer"] != deployed["second"]["answer"]


def test_rollback_puts_the_previous_approved_model_back_and_lineage_says_who_and_why(pipeline, capsys):
    first, second = deployed["first"], deployed["second"]
    production = pipeline.outputs["ProductionEndpointName"]
    state_dir = str(pipeline.cloud.state_dir)

    # A client sends requests to production through the whole rollback: none may fail.
    answers, failures, stop = [], [], threading.Event()

    def client() -> None:
        runtime = pipeline.client("sagemaker-runtime")
        while not stop.wait(0.02):
            try:
                answer = runtime.invoke_endpoint(EndpointName=production, ContentType="text/csv", Body=PROBE)
                answers.append(answer["Body"].read().decode())
            except Exception as exc:  # any failure is what this test counts
                failures.append(exc)

    sender = threading.Thread(target=client)
    sender.start()
    try:
        code, out, err = _cli(
            capsys, "rollback", production, "--reason", "second model misbehaves", "--json", state_dir=state_dir
        )
    finally:
        stop.set()
        sender.join(timeout=60)
    assert code == 0, err
    assert failures == [] and len(answers) > 10
    assert set(answers) <= {first["answer"], second["answer"]} and answers[-1] == first["answer"]
    result = json.loads(out)
    assert result["status"] == "SUCCEEDED" and result["reason"] == "second model misbehaves"
    assert result["who"].startswith("arn:aws:")
    assert result["previous"]["model"] == second["names"]["model"] and result["previous"]["run_id"] == second["run_id"]
    assert result["serving"]["model"] == first["names"]["model"] and result["serving"]["run_id"] == first["run_id"]

    # SageMaker serves the first model's config again, and the answers are the first model's.
    assert pipeline.endpoint_config(production) == first["names"]["production_endpoint_config"]
    assert _answer(pipeline) == first["answer"]

    code, out, err = _cli(capsys, "lineage", "model", production, "--json", state_dir=state_dir)
    assert code == 0, err
    model = json.loads(out)
    assert (model["run_id"], model["model"]) == (first["run_id"], first["names"]["model"])
    rollbacks = [d for d in model["endpoint"]["deployments"] if d["kind"] == "rollback"]
    assert len(rollbacks) == 1
    assert (
        rollbacks[0].items()
        >= {
            "status": "SUCCEEDED",
            "who": result["who"],
            "reason": "second model misbehaves",
            "previous_model": second["names"]["model"],
            "model": first["names"]["model"],
            "run_id": first["run_id"],
        }.items()
    )


def test_rollback_refuses_what_it_cannot_do(pipeline, capsys):
    production = pipeline.outputs["ProductionEndpointName"]
    state_dir = str(pipeline.cloud.state_dir)
    before = pipeline.endpoint_config(production)

    # The first model serves; the second was rolled back from: nothing earlier is left.
    code, _, err = _cli(capsys, "rollback", production, state_dir=state_dir)
    assert code == 1
    assert f"error: no previous approved model to roll back to on {production}" in err
    assert "rolled back from " + deployed["second"]["names"]["model"] in err

    code, _, err = _cli(capsys, "rollback", "no-such-endpoint", state_dir=state_dir)
    assert code == 1 and "error: endpoint no-such-endpoint does not exist" in err

    code, _, err = _cli(capsys, "rollback", production, "--to", "churn-000000000000", state_dir=state_dir)
    assert code == 1 and "error: run churn-000000000000 is not in lineage" in err

    code, _, err = _cli(capsys, "rollback", production, "--to", deployed["first"]["run_id"], state_dir=state_dir)
    assert code == 1 and f"already serves model {deployed['first']['names']['model']}" in err
    assert pipeline.endpoint_config(production) == before


def test_rollback_to_a_named_run_recreates_its_deleted_endpoint_config(pipeline, capsys):
    second = deployed["second"]
    production = pipeline.outputs["ProductionEndpointName"]
    sagemaker = pipeline.client("sagemaker")
    sagemaker.delete_endpoint_config(EndpointConfigName=second["names"]["production_endpoint_config"])

    code, out, err = _cli(
        capsys,
        "rollback",
        production,
        "--to",
        second["run_id"],
        "--reason",
        "fixed upstream",
        state_dir=str(pipeline.cloud.state_dir),
    )
    assert code == 0, err
    assert f"endpoint config {second['names']['production_endpoint_config']} no longer exists" in out
    serving = pipeline.endpoint_config(production)
    assert serving.startswith(second["names"]["production_endpoint_config"] + "-rollback-")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=serving)
    assert config["ProductionVariants"][0]["ModelName"] == second["names"]["model"]
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    assert _answer(pipeline) == second["answer"]


def test_reproduce_trains_the_same_model_again_without_deploying_it(pipeline, capsys):
    first = deployed["first"]
    production = pipeline.outputs["ProductionEndpointName"]
    serving = pipeline.endpoint_config(production)

    code, out, err = _cli(
        capsys, "runs", "reproduce", first["run_id"], "--json", state_dir=str(pipeline.cloud.state_dir)
    )
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["model_identical"] is True and report["metrics_equal"] is True, report
    assert report["differences"] == [] and report["explanation"].startswith("reproduced")
    again = report["reproduction"]["run_id"]
    assert again != first["run_id"] and report["original"]["model_hash"] == report["reproduction"]["model_hash"]

    records = pipeline.run_record(again)
    assert records["RUN"]["status"] == "REPRODUCED" and records["RUN"]["reproduction_of"] == first["run_id"]
    assert records["RUN"]["input"] == pipeline.run_record(first["run_id"])["RUN"]["input"]
    assert "STEP#approval" not in records and "STEP#deploy" not in records
    assert pipeline.approval_emails(again) == []
    assert pipeline.endpoint_config(production) == serving, "a reproduction never touches production"
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None, "its test endpoint is deleted"

    code, _, err = _cli(capsys, "runs", "reproduce", "churn-000000000000", state_dir=str(pipeline.cloud.state_dir))
    assert code == 1 and "error: run churn-000000000000 is not in lineage" in err
