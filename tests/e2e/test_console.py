"""The local cloud's web console in headless Chromium (JavaScript off): what a person watching runs sees.

One cloud for the module and three runs started at once (the ``runs`` fixture): one approved
to production (succeeded), one for a dataset never onboarded (failed at Resolve run, caught
into the failure path), and one left waiting for its approval. Each test reads the console's
pages as a browser does; screenshots land in each test's ``tmp_path`` (``pytest --basetemp=DIR``
keeps them).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepml.cli.runs import approve_link
from stepml.local.console import execution_url
from stepml.sample_data import churn_csv
from tests.e2e.conftest import Pipeline
from tests.helpers import CHURN_CONFIG

pytestmark = pytest.mark.e2e

ROWS = 600
VIEWPORT = {"width": 1400, "height": 1000}


def _execution_arn(pipeline: Pipeline, key: str) -> str:
    described = pipeline.executions_for(key)
    assert len(described) == 1, described
    return described[0]["executionArn"]


@pytest.fixture(scope="module")
def runs(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """succeeded, failed and waiting: their uploads, run ids and execution ARNs."""
    # console-ok is evaluated on a serverless test endpoint: it starts with no champion in
    # service, so it takes that branch (its own XGBoost-only test model, deleted at cleanup).
    serverless = {**CHURN_CONFIG["hosting"], "test_endpoint_serverless": {"memory_mb": 2048, "max_concurrency": 2}}
    pipeline.onboard("console-ok", threshold=0.6, promote_only_if_better=False, hosting=serverless)
    pipeline.onboard("console-wait", threshold=0.6, promote_only_if_better=False)
    uploads = {
        "succeeded": pipeline.upload("console-ok", "ok.csv", churn_csv(ROWS, seed=31)),
        "waiting": pipeline.upload("console-wait", "wait.csv", churn_csv(ROWS, seed=32)),
        "failed": pipeline.upload("console-unknown", "data.csv", churn_csv(50, seed=33)),
    }
    link = pipeline.wait_for_approval_email(uploads["succeeded"]["run_id"]).links[0]
    code, title = approve_link(link, decision="approve", comment="for the console")
    assert code == 200, title
    assert pipeline.wait_for_status(uploads["succeeded"]["run_id"], ("SUCCEEDED", "FAILED"))["RUN"]["status"] == (
        "SUCCEEDED"
    )
    assert pipeline.wait_for_execution_end(uploads["failed"]["key"]) == "FAILED"
    pipeline.wait_for_approval_email(uploads["waiting"]["run_id"])
    for upload in uploads.values():
        upload["arn"] = _execution_arn(pipeline, upload["key"])
    return uploads


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    yield context.new_page()
    context.close()


def open_execution(page: Any, pipeline: Pipeline, arn: str, shot: Path, state: str | None = None) -> None:
    response = page.goto(execution_url(pipeline.cloud.console_url, arn, state))
    assert response is not None and response.status == 200, response and response.status
    page.screenshot(path=str(shot), full_page=False)


def status_of(page: Any, state: str) -> str:
    node = page.locator(f'g.state[data-state="{state}"]')
    assert node.count() == 1, f"no node for {state!r}"
    classes = node.get_attribute("class") or ""
    assert f"st-{node.get_attribute('data-status')}" in classes
    return str(node.get_attribute("data-status"))


def test_the_executions_list_shows_every_run_newest_first_with_its_status(pipeline, runs, page, tmp_path):
    response = page.goto(pipeline.cloud.console_url)
    assert response is not None and response.status == 200
    page.screenshot(path=str(tmp_path / "executions.png"), full_page=True)
    rows = page.locator("tr.execution")
    names = [rows.nth(i).locator("a").inner_text() for i in range(rows.count())]
    statuses = [rows.nth(i).get_attribute("data-status") for i in range(rows.count())]
    by_arn = {upload["arn"].rsplit(":", 1)[-1]: scenario for scenario, upload in runs.items()}
    assert sorted(by_arn[name] for name in names) == ["failed", "succeeded", "waiting"]
    expected = {"succeeded": "SUCCEEDED", "failed": "FAILED", "waiting": "RUNNING"}
    assert [expected[by_arn[name]] for name in names] == statuses
    started = [pipeline.client("stepfunctions").describe_execution(executionArn=runs[by_arn[n]]["arn"]) for n in names]
    assert [s["startDate"] for s in started] == sorted((s["startDate"] for s in started), reverse=True)


def test_a_succeeded_run_is_green_to_the_end_with_its_lineage_and_approval_email(pipeline, runs, page, tmp_path):
    open_execution(page, pipeline, runs["succeeded"]["arn"], tmp_path / "succeeded.png")
    for state in ("Resolve run", "Preprocess data", "Train model", "Request approval", "Model deployed"):
        assert status_of(page, state) == "succeeded", state
    for state in ("Create serverless test model", "Create serverless test endpoint config", "Delete test model"):
        assert status_of(page, state) == "succeeded", state
    assert status_of(page, "Create test endpoint config") == "not-reached"
    assert status_of(page, "Pipeline failed") == "not-reached"
    assert status_of(page, "Duplicate event ignored") == "not-reached"
    steps = [page.locator("tr.lineage-step").nth(i).get_attribute("data-step") for i in range(5)]
    assert steps == ["preprocess", "train", "evaluate", "approval", "deploy"]
    model = page.locator('.prov[data-part="model"]').inner_text()
    assert f"stepml-{runs['succeeded']['run_id']}-a1" in model
    assert "approve by approver@example.com" in page.locator("#lineage").inner_text()
    link = page.locator("#outbox a.mail-link").first
    assert re.fullmatch(
        r"http://127\.0\.0\.1:\d+/approvals/[A-Za-z0-9_-]{32}\?to=0&sig=[A-Za-z0-9_-]{43}", link.get_attribute("href")
    )
    # A click on a state is a link: the server fills its details panel (no JavaScript).
    page.locator('g.state[data-state="Train model"]').click()
    page.wait_for_url(re.compile(r"state=Train%20model"))
    details = page.locator("#details")
    assert details.locator(".state-name").inner_text() == "Train model"
    assert "Succeeded" in details.inner_text() and "model.tar.gz" in details.inner_text()
    assert page.locator('g.state.selected[data-state="Train model"]').count() == 1
    page.screenshot(path=str(tmp_path / "succeeded-train-model.png"))


def test_a_failed_run_shows_the_caught_state_its_error_and_the_fail_state(pipeline, runs, page, tmp_path):
    open_execution(page, pipeline, runs["failed"]["arn"], tmp_path / "failed.png", state="Resolve run")
    assert status_of(page, "Resolve run") == "caught"
    assert status_of(page, "Failed at resolve run") == "succeeded"
    assert status_of(page, "Pipeline failed") == "failed"
    assert status_of(page, "Preprocess data") == "not-reached"
    details = page.locator("#details").inner_text()
    assert "DatasetNotOnboardedError" in details and "console-unknown" in details
    assert "Caught error" in details
    # The execution failed in the definition's Fail state, with its error.
    sfn = pipeline.client("stepfunctions")
    ran = json.loads(sfn.describe_state_machine_for_execution(executionArn=runs["failed"]["arn"])["definition"])
    assert page.locator("p.execution-error").inner_text() == ran["States"]["Pipeline failed"]["Error"]
    assert [r.get_attribute("data-step") for r in page.locator("tr.lineage-step").all()] == ["resolve"]
    assert "failed at Resolve run" in page.locator("#outbox").inner_text()


def test_a_run_waiting_for_approval_shows_the_waiting_task_and_its_link(pipeline, runs, page, tmp_path):
    open_execution(page, pipeline, runs["waiting"]["arn"], tmp_path / "waiting.png", state="Request approval")
    assert status_of(page, "Request approval") == "waiting"
    assert status_of(page, "Evaluate model") == "succeeded"
    assert status_of(page, "Record approval decision") == "not-reached"
    assert "Waiting for task token" in page.locator("#details").inner_text()
    link = page.locator("#outbox a.mail-link").first
    href = link.get_attribute("href")
    link.click()  # the approval link is clickable: it opens the review page, which decides nothing
    page.wait_for_url(href)
    assert page.title().startswith("Approve the ")
    page.screenshot(path=str(tmp_path / "waiting-review.png"))
    described = pipeline.client("stepfunctions").describe_execution(executionArn=runs["waiting"]["arn"])
    assert described["status"] == "RUNNING"
    # The page's top, as the README shows it (docs/console.png): without the #details anchor.
    url = execution_url(pipeline.cloud.console_url, runs["waiting"]["arn"], "Request approval")
    page.goto(url.split("#", 1)[0])
    assert status_of(page, "Request approval") == "waiting"
    page.screenshot(path=str(tmp_path / "waiting-top.png"))
    page.locator('g.state[data-state="Request approval"]').scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "waiting-graph.png"))


def test_the_endpoints_page_names_the_model_its_run_and_instance(pipeline, runs, page, tmp_path):
    response = page.goto(pipeline.cloud.console_url + "endpoints")
    assert response is not None and response.status == 200
    page.screenshot(path=str(tmp_path / "endpoints.png"), full_page=True)
    production = pipeline.outputs["ProductionEndpointName"]
    row = page.locator("tr.endpoint", has_text=production)
    assert row.count() == 1
    text = row.inner_text()
    assert "InService" in text and f"stepml-{runs['succeeded']['run_id']}-a1" in text and "ml." in text
    row.locator("a").click()
    page.wait_for_url(re.compile("/execution\\?arn="))
    assert status_of(page, "Model deployed") == "succeeded"


def test_the_console_is_read_only_and_answers_unknown_pages_with_404(pipeline, runs):
    def request(method: str, path: str) -> tuple[int, dict[str, str]]:
        call = urllib.request.Request(
            pipeline.cloud.console_url.rstrip("/") + path, method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(call, timeout=30) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers)

    for method in ("POST", "PUT", "DELETE"):
        status, headers = request(method, "/")
        assert (status, headers.get("Allow")) == (405, "GET, HEAD"), method
    assert request("GET", "/nowhere")[0] == 404
    missing = runs["failed"]["arn"].rsplit(":", 1)[0] + ":no-such-execution"
    assert request("GET", f"/execution?arn={missing}")[0] == 404
    assert request("GET", "/execution")[0] == 400
    assert (
        pipeline.client("stepfunctions").describe_execution(executionArn=runs["waiting"]["arn"])["status"] == "RUNNING"
    )
