"""The approval as a person and a mail scanner meet it: the emailed link in headless Chromium.

One local cloud serves the module and every scenario's file is uploaded at once (the
``runs`` fixture), so the Glue and training runs overlap; each test then waits for its own
approval email. Tests run in file order: the approve path deploys production first, the
reject path then shows production untouched, and the concurrent decisions come after both.

Chromium is Debian's (``make chromium``), driven by Playwright with JavaScript off: the review
page must work without it. Screenshots go to each browser test's ``tmp_path`` (keep them with
``pytest --basetemp=DIR``).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree as ET

import pytest

from stepml.sample_data import churn_csv
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, Pipeline  # noqa: F401 - test_console imports them here

pytestmark = pytest.mark.e2e

ROWS = 800
#: The timeout scenario's approval window: short, and set by its dataset config only.
SHORT_TIMEOUT_SECONDS = 20
SVG = "{http://www.w3.org/2000/svg}"
#: User agents of link scanners and previewers that open every link in a mailbox.
SCANNER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 "
    "Edg/120.0 (Microsoft Defender for Office 365 Safe Links)",
    "Mozilla/5.0 (compatible; Proofpoint URL Defense; +https://www.proofpoint.com)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "curl/8.5.0",
]
#: scenario -> (dataset, seed, dataset config changes)
SCENARIOS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "approve": ("ui-approve", 21, {"approvers": ["ana@example.com"]}),
    "reject": ("ui-reject", 22, {"approvers": ["bo@example.com"]}),
    "race": ("ui-race", 23, {}),
    "stop": ("ui-stop", 24, {}),
    "timeout": ("ui-timeout", 25, {"approval_timeout_seconds": SHORT_TIMEOUT_SECONDS}),
    "two": ("ui-two", 26, {"approvers": ["ana@example.com", "ben@example.com"], "required_approvals": 2}),
}
#: Emails (and links) each scenario's run sends: one per approver.
LINKS_SENT = {"two": 2}


@pytest.fixture(scope="module")
def runs(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """Every scenario's upload, all at once; each dataset gates on a low threshold and never on
    production, so the order in which the runs finish cannot turn one away at the gate."""
    uploads = {}
    for scenario, (dataset, seed, changes) in SCENARIOS.items():
        pipeline.onboard(dataset, threshold=0.6, promote_only_if_better=False, **changes)
        uploads[scenario] = pipeline.upload(dataset, f"{scenario}.csv", churn_csv(ROWS, seed=seed))
    return uploads


# --- helpers ----------------------------------------------------------------------------------


def fetch(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    follow_redirects: bool = True,
) -> tuple[int, str]:
    """One HTTP request; (status, body text). Without ``follow_redirects`` a 3xx is returned as is."""
    data = urlencode(form).encode() if form is not None else None
    all_headers = {"User-Agent": "stepml-e2e", **(headers or {})}
    if data is not None:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    if follow_redirects:
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, f"{parts.path}?{parts.query}" if parts.query else parts.path, data, all_headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def title(page: str) -> str:
    match = re.search(r"<title>(.*?) - stepml</title>", page)
    return match.group(1) if match else ""


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    assert match, f"no hidden field {name} on the page {title(page)!r}"
    return match.group(1)


def link_parts(link: str, approver: int = 0) -> tuple[str, str]:
    """(approval id, sig) of a review link, issued to approver number ``approver``."""
    match = re.fullmatch(r"http://[^/]+/approvals/([A-Za-z0-9_-]{32})\?to=([0-9]+)&sig=([A-Za-z0-9_-]{43})", link)
    assert match and match.group(2) == str(approver), link
    return match.group(1), match.group(3)


def form_token_for(pipeline: Pipeline, approval_id: str, approver: int = 0) -> str:
    """The review form's token as the page would have given approver number ``approver`` (someone
    who opened the page earlier)."""
    kms = pipeline.client("kms")
    key_id = pipeline.cloud.stack.physical_id("ApprovalSigningKey")
    message = f"form:{approval_id}:{approver}".encode()
    mac = kms.generate_mac(KeyId=key_id, Message=message, MacAlgorithm="HMAC_SHA_256")["Mac"]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def assert_clean(text: str, item: dict[str, Any]) -> None:
    """No task token (whole or a tell-tale prefix) and no stack trace in a page or an email."""
    token = item["task_token"]
    assert token not in text and token[:32] not in text
    assert "Traceback" not in text and 'File "' not in text


def approval_email(pipeline: Pipeline, run_id: str) -> Any:
    message = pipeline.wait_for_approval_email(run_id)
    assert len(message.links) == 1, message.links
    return message


def open_review(browser: Any, link: str, shots: Path, name: str, *, origin_header: bool = True) -> tuple[Any, Any]:
    """A fresh browser profile (JavaScript off) on the review link; screenshot of the page."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 1400})
    page = context.new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200, response and response.status
    assert page.title().startswith("Approve the ") and page.is_visible("button.approve")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}-review.png"), full_page=True)
    return context, page


def decide_in_browser(page: Any, button: str, approver: str, comment: str, shot: Path) -> tuple[int, str]:
    """Fill in the form and click as ``approver``, the address the link was sent to (the page
    names it; there is no name to type); (HTTP status of the POST, the page heading). Screenshot."""
    assert f"Deciding as {approver}" in page.inner_text("body")
    assert page.locator("#approver").count() == 0
    page.fill("#comment", comment)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click(f"button.{button}")
    page.wait_for_load_state()
    page.screenshot(path=str(shot), full_page=True)
    return posted.value.status, page.inner_text("h1")


def evaluation_report(pipeline: Pipeline, run_id: str) -> dict[str, Any]:
    """The report the Evaluate Lambda wrote, which the review page draws."""
    bucket, _, key = pipeline.approval_item(run_id)["report_uri"].removeprefix("s3://").partition("/")
    return json.loads(pipeline.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def assert_pictures(pipeline: Pipeline, run_id: str, html: str) -> None:
    """The review page holds the evaluation's pictures as inline SVG, with the report's numbers."""
    report = evaluation_report(pipeline, run_id)
    svgs = {}
    for markup in re.findall(r"<svg .*?</svg>", html, flags=re.S):
        root = ET.fromstring(markup)
        svgs[root.find(f"{SVG}title").text] = root
    for expected in ("ROC curve", "Precision-recall curve", "Confusion matrix", "Feature importance (gain)"):
        assert expected in svgs, (expected, sorted(svgs))
    cells = [t.text for t in svgs["Confusion matrix"].iter(f"{SVG}text") if (t.text or "").isdigit()]
    assert cells == [str(n) for row in report["confusion_matrix"]["matrix"] for n in row]
    [curve] = report["curves"]["challenger"]
    assert curve["auc"] == pytest.approx(report["metrics"]["auc"], abs=1e-6) and len(curve["tpr"]) == 101
    importance = [t.text for t in svgs["Feature importance (gain)"].iter(f"{SVG}text")]
    assert report["feature_importance"]["features"][0]["feature"] in importance
    features = report["drift"]["features"]  # no "unavailable": the Glue job wrote the baseline
    farthest = max(features, key=lambda f: f["distance"] or 0.0)["name"]
    assert any(name.startswith(f"{farthest}: distance ") for name in svgs), sorted(svgs)
    assert "<script" not in html


# --- the approve path, with the email and the scanners first ------------------------------------


def test_the_approval_email_has_text_and_html_with_one_link(pipeline, runs):
    run_id = runs["approve"]["run_id"]
    message = approval_email(pipeline, run_id)
    item = pipeline.approval_item(run_id)

    headline = rf"\[stepml\] Approve ui-approve model {run_id}\? auc [0-9.]+ \(threshold 0\.6\)"
    assert re.fullmatch(headline, message.subject), message.subject
    # The dataset names its approver: the email goes to her, not to the stack's ApproverEmail.
    assert message.to == "ana@example.com" and message.sender == "stepml-dev@example.com"
    assert message.topic_arn == "", "the approval email goes through SES, not the SNS topic"
    uri = f"s3://{runs['approve']['bucket']}/{runs['approve']['key']}"
    for part in (message.body, message.html):
        assert part is not None
        assert f"{uri} (version {runs['approve']['version']})" in part
        assert f"stepml-{run_id}-a1" in part
        assert "the gate requires at least 0.6: passed" in part
        assert "expires" in part and " UTC" in part
        assert_clean(part, item)
    assert [unescape(href) for href in re.findall(r'href="([^"]+)"', message.html or "")] == message.links
    assert pipeline.cloud.stack.physical_id("ApprovalSigningKey") not in message.body + (message.html or "")


def test_mail_scanners_opening_the_link_change_nothing(pipeline, runs, browser, tmp_path):
    run_id = runs["approve"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    before = pipeline.approval_item(run_id)

    for agent in SCANNER_AGENTS:
        for follow in (True, False):
            status, page = fetch("GET", link, headers={"User-Agent": agent}, follow_redirects=follow)
            assert status == 200 and title(page).startswith("Approve the ui-approve model"), (agent, follow, status)
            assert_clean(page, before)
            status, body = fetch("HEAD", link, headers={"User-Agent": agent}, follow_redirects=follow)
            assert (status, body) == (200, ""), (agent, follow)
    # A scanner that renders the page in a browser, without clicking anything.
    context, _page = open_review(browser, link, tmp_path, "scanner")
    context.close()

    assert pipeline.approval_item(run_id) == before
    assert pipeline.approval_outcomes(before["execution_arn"]) == []
    assert pipeline.run_record(run_id)["RUN"]["status"] == "RUNNING"


def test_clicking_approve_in_the_browser_deploys_to_production(pipeline, runs, browser, tmp_path):
    run_id = runs["approve"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    context, page = open_review(browser, link, tmp_path, "approve")
    text = page.inner_text("body")
    for fact in ("ui-approve", run_id, runs["approve"]["version"], "Evaluation report", "Link expires", "threshold"):
        assert fact in text, fact
    html = page.content()
    assert_pictures(pipeline, run_id, html)
    # Kept beside the screenshot: the page as served, pictures included (docs/review.png is made from it).
    (tmp_path / "approve-review.html").write_text(html, encoding="utf-8")

    status, heading = decide_in_browser(page, "approve", "ana@example.com", "ship it", tmp_path / "approve-decided.png")
    context.close()

    assert (status, heading) == (200, "Approved")
    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "FAILED", "REJECTED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    assert records["STEP#approval"]["outputs"]["approver"] == "ana@example.com"
    names = records["RUN"]["names"]
    assert pipeline.endpoint_config(pipeline.outputs["ProductionEndpointName"]) == names["production_endpoint_config"]
    assert pipeline.endpoint_config(names["test_endpoint"]) is None
    item = pipeline.approval_item(run_id)
    [decision] = pipeline.approval_outcomes(item["execution_arn"])
    assert (decision["decision"], decision["approver"]) == ("approve", "ana@example.com")
    assert decision["comment"] == "ship it"
    for shot in ("approve-review.png", "approve-decided.png"):
        assert (tmp_path / shot).read_bytes().startswith(b"\x89PNG"), shot


def test_the_used_link_shows_who_decided_and_decides_nothing_more(pipeline, runs):
    run_id = runs["approve"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    approval_id, sig = link_parts(link)
    item = pipeline.approval_item(run_id)

    status, page = fetch("GET", link)
    assert status == 200 and title(page) == "The ui-approve model was already approved"
    assert f"Approved by ana@example.com at {item['decided_at']}." in page and "ship it" in page
    assert "<form" not in page
    form = {
        "to": "0",
        "sig": sig,
        "csrf": form_token_for(pipeline, approval_id),
        "decision": "reject",
        "approver": "bo",
    }
    origin = "http://" + urlsplit(link).netloc
    status, page = fetch("POST", link.split("?")[0], form=form, headers={"Origin": origin})
    assert status == 409 and "Already decided" in page and "Approved by ana@example.com" in page
    assert_clean(page, item)

    assert pipeline.approval_item(run_id) == item
    assert len(pipeline.approval_outcomes(item["execution_arn"])) == 1


# --- the reject path --------------------------------------------------------------------------


def test_clicking_reject_in_the_browser_leaves_production_untouched(pipeline, runs, browser, tmp_path):
    production = pipeline.outputs["ProductionEndpointName"]
    before = pipeline.endpoint_config(production)
    assert before is not None, "runs after the approve path"
    run_id = runs["reject"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    context, page = open_review(browser, link, tmp_path, "reject")

    shot = tmp_path / "reject-decided.png"
    status, heading = decide_in_browser(page, "reject", "bo@example.com", "not this one", shot)
    assert (status, heading) == (200, "Rejected")
    assert "production is unchanged" in page.inner_text("body")
    # The same page reloaded (a person coming back later) shows the decision.
    page.goto(link)
    assert page.title().startswith("The ui-reject model was already rejected")
    assert "Rejected by bo@example.com at " in page.inner_text("body")
    context.close()

    records = pipeline.wait_for_status(run_id, ("REJECTED", "SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "REJECTED" and "not this one" in records["RUN"]["outcome_reason"]
    assert pipeline.endpoint_config(production) == before
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None
    assert pipeline.wait_for_email(f"model {run_id} not promoted")
    assert (tmp_path / "reject-decided.png").read_bytes().startswith(b"\x89PNG")


def test_links_with_a_forged_signature_or_another_approvals_id_are_refused(pipeline, runs):
    approve_id, approve_sig = link_parts(approval_email(pipeline, runs["approve"]["run_id"]).links[0])
    reject_link = approval_email(pipeline, runs["reject"]["run_id"]).links[0]
    reject_id, _ = link_parts(reject_link)
    base = reject_link.split("/approvals/")[0]
    items = {key: pipeline.approval_item(runs[key]["run_id"]) for key in ("approve", "reject")}
    forged = approve_sig[:20] + ("A" if approve_sig[20] != "A" else "B") + approve_sig[21:]

    for url in (
        f"{base}/approvals/{approve_id}?to=0&sig={forged}",
        f"{base}/approvals/{reject_id}?to=0&sig={approve_sig}",
        f"{base}/approvals/{approve_id}?to=1&sig={approve_sig}",
        f"{base}/approvals/{approve_id}?sig={approve_sig}",
        f"{base}/approvals/{approve_id}",
    ):
        status, page = fetch("GET", url)
        assert status == 403 and title(page) == "This link is not valid", url
        assert_clean(page, items["approve"])
    form = {
        "to": "0",
        "sig": approve_sig,
        "csrf": form_token_for(pipeline, approve_id),
        "decision": "approve",
        "approver": "x",
    }
    status, page = fetch("POST", f"{base}/approvals/{reject_id}", form=form)
    assert status == 403 and title(page) == "This link is not valid"

    for key, item in items.items():
        assert pipeline.approval_item(runs[key]["run_id"]) == item
        assert len(pipeline.approval_outcomes(item["execution_arn"])) == 1


# --- twenty at once ---------------------------------------------------------------------------


def test_twenty_concurrent_decisions_exactly_one_reaches_step_functions(pipeline, runs):
    run_id = runs["race"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    status, review = fetch("GET", link)
    assert status == 200
    target = link.split("?")[0]
    origin = "http://" + urlsplit(link).netloc
    start = threading.Barrier(20)
    answers: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        decision = "approve" if index % 2 else "reject"
        form = {
            "to": hidden(review, "to"),
            "sig": hidden(review, "sig"),
            "csrf": hidden(review, "csrf"),
            "decision": decision,
            "approver": f"approver-{index}",
        }
        start.wait()
        try:
            status, page = fetch("POST", target, form=form, headers={"Origin": origin}, follow_redirects=False)
            answer = (status, title(page), f"approver-{index}")
        except OSError as exc:  # a refused or reset connection is a failure, reported below
            answer = (0, repr(exc), f"approver-{index}")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    winners = [a for a in answers if a[0] == 200]
    assert len(answers) == 20 and len(winners) == 1, answers
    # The same approver's link, twenty times: refused as a second decision, whether the first one
    # had already closed the record or had only been counted.
    refusals = {(s, t) for s, t, _ in answers if s != 200}
    assert refusals and refusals <= {(409, "Already decided"), (409, "You have already decided")}, refusals
    item = pipeline.approval_item(run_id)
    [decision] = pipeline.approval_outcomes(item["execution_arn"])
    # Whatever the form said, the decision is the address the link was issued to.
    assert decision["approver"] == "approver@example.com" == item["decided_by"]
    assert decision["decision"] == ("approve" if int(winners[0][2].split("-")[1]) % 2 else "reject")
    final = "SUCCEEDED" if decision["decision"] == "approve" else "REJECTED"
    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "REJECTED", "FAILED"))
    assert records["RUN"]["status"] == final
    assert len(pipeline.approval_outcomes(item["execution_arn"])) == 1


# --- two approvers required ---------------------------------------------------------------------


def approval_emails(pipeline: Pipeline, run_id: str, count: int) -> dict[str, Any]:
    """The run's approval emails by recipient, once all ``count`` have been sent."""
    pipeline.wait_for_approval_email(run_id)
    deadline = time.monotonic() + 30
    while True:
        found = {m.to: m for m in pipeline.cloud.outbox.messages() if f"model {run_id}?" in m.subject}
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def post_from_review(link: str, decision: str, comment: str) -> tuple[int, str]:
    """Open the review page and submit its form as a browser does; (status, page)."""
    status, review = fetch("GET", link)
    assert status == 200 and title(review).startswith("Approve the "), (status, title(review))
    form = {name: hidden(review, name) for name in ("to", "sig", "csrf")}
    origin = "http://" + urlsplit(link).netloc
    return fetch(
        "POST", link.split("?")[0], form={**form, "decision": decision, "comment": comment}, headers={"Origin": origin}
    )


def test_two_approvers_required_one_approval_waits_and_the_second_deploys(pipeline, runs):
    run_id = runs["two"]["run_id"]
    emails = approval_emails(pipeline, run_id, 2)
    assert sorted(emails) == ["ana@example.com", "ben@example.com"]
    ana_link, ben_link = emails["ana@example.com"].links[0], emails["ben@example.com"].links[0]
    approval_id, _ = link_parts(ana_link, 0)
    assert link_parts(ben_link, 1)[0] == approval_id
    assert "2 of 2 approvers must approve" in emails["ben@example.com"].body

    status, page = post_from_review(ana_link, "approve", "fine by me")
    assert (status, title(page)) == (200, "Your approval is recorded") and "1 more approval" in page
    item = pipeline.approval_item(run_id)
    assert (item["status"], item["approvals"]) == ("PENDING", 1)
    assert pipeline.approval_outcomes(item["execution_arn"]) == [], "one approval of two must not complete the task"
    assert pipeline.run_record(run_id)["RUN"]["status"] == "RUNNING"
    sagemaker = pipeline.client("sagemaker")
    package = sagemaker.describe_model_package(ModelPackageName=item["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    # Ana again, with a form token she held: her first decision stands.
    again = {"to": "0", "sig": link_parts(ana_link)[1], "csrf": form_token_for(pipeline, approval_id, 0)}
    status, page = fetch(
        "POST",
        ana_link.split("?")[0],
        form={**again, "decision": "reject"},
        headers={"Origin": "http://" + urlsplit(ana_link).netloc},
    )
    assert (status, title(page)) == (409, "You have already decided")
    assert pipeline.approval_outcomes(item["execution_arn"]) == []

    status, page = post_from_review(ben_link, "approve", "ship it")
    assert (status, title(page)) == (200, "Approved")

    records = pipeline.wait_for_status(run_id, ("SUCCEEDED", "FAILED", "REJECTED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    outputs = records["STEP#approval"]["outputs"]
    assert outputs["approver"] == "ana@example.com, ben@example.com" and outputs["required_approvals"] == 2
    assert [(b["address"], b["decision"]) for b in outputs["approvers"]] == [
        ("ana@example.com", "approve"),
        ("ben@example.com", "approve"),
    ]
    assert all(b["decided_at"] for b in outputs["approvers"])
    names = records["RUN"]["names"]
    assert pipeline.endpoint_config(pipeline.outputs["ProductionEndpointName"]) == names["production_endpoint_config"]
    package = sagemaker.describe_model_package(ModelPackageName=item["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"].startswith("Approved by ana@example.com, ben@example.com at ")
    assert len(pipeline.approval_outcomes(item["execution_arn"])) == 1


# --- cross-site, stopped, expired ---------------------------------------------------------------


@pytest.fixture
def attacker_site(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """Another origin on this machine serving pages from ``tmp_path``; yields (url, pages served)."""
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = (tmp_path / "attack.html").read_bytes()
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/attack.html", served
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_cross_site_posts_are_refused(pipeline, runs, browser, attacker_site, tmp_path):
    run_id = runs["stop"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    approval_id, sig = link_parts(link)
    item = pipeline.approval_item(run_id)
    target = link.split("?")[0]
    csrf = form_token_for(pipeline, approval_id)
    url, served = attacker_site
    # Even an attacker who somehow holds the link and a form token: the browser names the origin.
    (tmp_path / "attack.html").write_text(
        f'<form method="post" action="{target}">'
        f'<input type="hidden" name="to" value="0">'
        f'<input type="hidden" name="sig" value="{sig}"><input type="hidden" name="csrf" value="{csrf}">'
        '<input type="hidden" name="decision" value="approve"><input type="hidden" name="approver" value="mallory">'
        '<button id="go">Win a prize</button></form>'
    )
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(url)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#go")
    page.wait_for_load_state()
    assert posted.value.status == 403 and page.title() == "Request refused - stepml"
    assert posted.value.request.all_headers().get("origin") == url.rsplit("/", 1)[0]
    context.close()
    assert "/attack.html" in served, "the attacker's page was loaded"

    origin = "http://" + urlsplit(link).netloc
    same_origin_form = {"to": "0", "sig": sig, "decision": "approve", "approver": "mallory"}
    for form, headers in (
        (same_origin_form, {"Origin": origin}),  # no form token
        ({**same_origin_form, "csrf": sig}, {"Origin": origin}),  # the link MAC is not a form token
        ({**same_origin_form, "csrf": csrf}, {"Origin": "https://evil.example"}),
        ({**same_origin_form, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        status, page_text = fetch("POST", target, form=form, headers=headers)
        assert status == 403 and title(page_text) == "Request refused", (form.keys(), headers)
        assert_clean(page_text, item)

    assert pipeline.approval_item(run_id) == item
    assert pipeline.approval_outcomes(item["execution_arn"]) == []


def test_a_link_whose_execution_was_stopped_is_closed_and_decides_nothing(pipeline, runs):
    run_id = runs["stop"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    approval_id, sig = link_parts(link)
    item = pipeline.approval_item(run_id)
    sfn = pipeline.client("stepfunctions")
    sfn.stop_execution(executionArn=item["execution_arn"], error="Operator", cause="stopped by the e2e test")
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=item["execution_arn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not stop"
        time.sleep(0.5)

    status, page = fetch("GET", link)
    assert status == 410 and title(page) == "This approval is closed"
    assert "the pipeline run was stopped" in page and "Nothing was decided" in page and "<form" not in page
    assert pipeline.approval_item(run_id) == item, "opening the link wrote nothing"
    form = {"to": "0", "sig": sig, "csrf": form_token_for(pipeline, approval_id), "decision": "approve"}
    status, page = fetch("POST", link.split("?")[0], form=form, headers={"Origin": "http://" + urlsplit(link).netloc})
    assert status == 410 and "your decision was not recorded" in page
    assert_clean(page, item)

    after = pipeline.approval_item(run_id)
    assert after["status"] == "CLOSED" and "decision" not in after and "decided_by" not in after
    assert pipeline.approval_outcomes(item["execution_arn"]) == []
    assert sfn.describe_execution(executionArn=item["execution_arn"])["status"] == "ABORTED"


def test_an_approval_nobody_decides_times_out_into_the_rejection_path(pipeline, runs):
    run_id = runs["timeout"]["run_id"]
    [link] = approval_email(pipeline, run_id).links
    approval_id, sig = link_parts(link)
    item = pipeline.approval_item(run_id)
    history = pipeline.client("stepfunctions").get_execution_history(executionArn=item["execution_arn"])["events"]
    entered = next(
        event["timestamp"]
        for event in history
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "Request approval"
    )
    # The dataset's own timeout, counted from when the task started waiting, as Step Functions counts it.
    # (The history's timestamp and $$.State.EnteredTime may differ by milliseconds across a second.)
    assert 0 <= entered.timestamp() + SHORT_TIMEOUT_SECONDS - item["link_expires_at"] < 2

    records = pipeline.wait_for_status(run_id, ("APPROVAL_TIMED_OUT", "SUCCEEDED", "REJECTED", "FAILED"))
    assert records["RUN"]["status"] == "APPROVAL_TIMED_OUT", records["RUN"]
    package = pipeline.client("sagemaker").describe_model_package(
        ModelPackageName=records["RUN"]["model_package"]["arn"]
    )
    assert package["ModelApprovalStatus"] == "Rejected" and "approval link expired" in package["ApprovalDescription"]
    # Lineage says timed out before the state machine deletes the test endpoint: wait for its end.
    assert pipeline.wait_for_execution_end(runs["timeout"]["key"]) == "SUCCEEDED"
    assert pipeline.endpoint_config(records["RUN"]["names"]["test_endpoint"]) is None
    notice = pipeline.wait_for_email(f"model {run_id} not promoted")
    assert notice.to == "approver@example.com" and "not approved in time" in notice.subject
    assert "before the approval link expired" in notice.body

    status, page = fetch("GET", link)
    assert status == 410 and title(page) == "This approval link has expired"
    form = {"to": "0", "sig": sig, "csrf": form_token_for(pipeline, approval_id), "decision": "approve"}
    status, page = fetch("POST", link.split("?")[0], form=form, headers={"Origin": "http://" + urlsplit(link).netloc})
    assert status == 410 and title(page) == "This approval link has expired"
    assert_clean(page, item)
    assert pipeline.approval_item(run_id) == item
    assert pipeline.approval_outcomes(item["execution_arn"]) == [{"event": "TaskTimedOut"}]


# --- nothing secret anywhere ------------------------------------------------------------------


def test_no_task_token_signature_or_stack_trace_in_the_logs_or_emails(pipeline, runs):
    logs = pipeline.lambda_logs()
    assert "approval requested" in logs, "the Lambda logs were read"
    tokens = [pipeline.approval_item(upload["run_id"])["task_token"] for upload in runs.values()]
    emails = "".join(m.body + (m.html or "") for m in pipeline.cloud.outbox.messages())
    for token in tokens:
        assert token not in logs and token[:32] not in logs
        assert token not in emails and token[:32] not in emails
    links = [link for message in pipeline.cloud.outbox.messages() for link in message.links]
    approvals = [link_parts(link, int(link.split("to=")[1].split("&")[0])) for link in links if "/approvals/" in link]
    assert len(approvals) == sum(LINKS_SENT.get(scenario, 1) for scenario in SCENARIOS)
    for link, (approval_id, sig) in zip([link for link in links if "/approvals/" in link], approvals, strict=True):
        approver = int(link.split("to=")[1].split("&")[0])
        assert sig not in logs and form_token_for(pipeline, approval_id, approver) not in logs
    assert pipeline.cloud.stack.physical_id("ApprovalSigningKey") not in logs + emails
    assert "Traceback" not in logs and "Traceback" not in emails
