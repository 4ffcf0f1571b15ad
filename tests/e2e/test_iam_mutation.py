"""Mutation test of the template's IAM: every statement and action is needed by some test.

The local cloud checks every call a role makes and records it (principal, action, resource,
context keys, the policies it was checked against, the running test). This module runs last
(tests/conftest.py orders it), makes sure at least one approved run is in the record, and then
replays the whole session's record against the template's policies with one action (and then
one whole statement) removed, with the same evaluator. A removal that denies a call some test
made shows which test would fail with AccessDenied; a statement or action whose removal denies
nothing is either unneeded (and goes) or untested (and gets a test), so the test fails on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from stepml.cli.runs import approve_link
from stepml.local.iam import policy
from stepml.local.iam.gate import RECORDER, CallRecord
from stepml.local.iam.model import AuthorizationRequest, PolicyDocument, Principal
from stepml.sample_data import churn_csv

pytestmark = [pytest.mark.e2e, pytest.mark.iam_mutation]

#: Template statements that no local run can exercise, by (logical id of the role, Sid), each with
#: the reason. Keep it short: everything else must be needed by some test.
NOT_EXERCISED_LOCALLY: dict[tuple[str, str], str] = {
    ("PreprocessJobRole", "DropPinnedInputCopy"): (
        "on Glue the job script copies the recorded upload version under --TempDir and deletes that copy's "
        "version; locally the Glue engine stages the recorded version itself, as Spark cannot read s3:// here "
        "(the copy is covered by tests/unit/test_glue_preprocess.py)"
    ),
    ("PreprocessJobRole", "EncryptedLogsAndBookmarks"): (
        "the kms rights AWS Glue's encryption setup asks of a job role whose security configuration encrypts "
        "job bookmarks (CSE-KMS); the job runs with --job-bookmark-option job-bookmark-disable, so no bookmark "
        "is written here or in AWS, and CloudWatch Logs encrypts the logs with its own key-policy grant. Kept so "
        "that turning bookmarks on does not break a deployed job; not exercised by any local run"
    ),
}


def _not_exercised_locally(mutation: Mutation) -> bool:
    role = mutation.source.split("/", 1)[0]
    return any(logical in role and sid == mutation.sid for logical, sid in NOT_EXERCISED_LOCALLY)


@dataclass(frozen=True)
class Mutation:
    source: str
    index: int
    sid: str
    action: str | None  # None: the whole statement

    def label(self) -> str:
        return f"{self.source} [{self.sid or self.index}]" + (f" {self.action}" if self.action else " (statement)")


def _statements(document: PolicyDocument) -> list[dict]:
    statements = document.document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _actions(statement: dict) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def _template_sources() -> list[str]:
    """Inline policies of the template's roles (managed AWS policies are not the template's)."""
    return sorted(
        source
        for source in RECORDER.documents
        if ":policy/" not in source
        and "/" in source
        and not source.startswith(("bucket policy", "topic policy", "key policy", "queue policy"))
    )


def _mutations(sources: Iterable[str]) -> list[Mutation]:
    found = []
    for source in sources:
        for index, statement in enumerate(_statements(RECORDER.documents[source])):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid", "")
            found.append(Mutation(source, index, sid, None))
            found += [Mutation(source, index, sid, action) for action in _actions(statement)]
    return found


def _mutated(document: PolicyDocument, mutation: Mutation) -> PolicyDocument:
    if mutation.action is None:
        return policy.without_statement(document, mutation.index)
    return policy.without_action(document, mutation.index, mutation.action)


def _replay(records: list[CallRecord], mutation: Mutation) -> set[str]:
    """The tests whose allowed calls the mutated policies deny."""
    failing = set()
    for record in records:
        if not record.allowed or record.role_arn is None:
            continue
        sources = RECORDER.role_policies.get(record.role_arn, [])
        if mutation.source not in sources:
            continue
        identity = [
            _mutated(RECORDER.documents[s], mutation) if s == mutation.source else RECORDER.documents[s]
            for s in sources
        ]
        resource = RECORDER.documents.get(record.resource_policy) if record.resource_policy else None
        principal = Principal(arn=record.principal, role_arn=record.role_arn)
        decision = policy.evaluate(
            principal,
            AuthorizationRequest(record.action, record.resource, record.context),
            identity,
            resource,
            key_policy=record.key_policy,
        )
        if not decision.allowed:
            failing.add(record.test or "(no test)")
    return failing


def test_an_approved_run_is_in_the_record(pipeline):
    """The replay needs at least one whole approved run, even when this module runs alone."""
    pipeline.onboard("churn")
    upload = pipeline.upload("churn", "iam.csv", churn_csv(1500, seed=11))
    email = pipeline.wait_for_approval_email(upload["run_id"])
    status, _ = approve_link(email.links[0], decision="approve", approver="iam", comment="replay")
    assert status == 200
    records = pipeline.wait_for_status(upload["run_id"], ("SUCCEEDED", "FAILED"))
    assert records["RUN"]["status"] == "SUCCEEDED", records["RUN"]
    assert pipeline.wait_for_execution_end(upload["key"], timeout=120) == "SUCCEEDED"


def test_every_template_statement_and_action_is_needed_by_some_test(capsys):
    records = RECORDER.snapshot()
    assert records, "no IAM checks were recorded: the local cloud's gate did not run"
    denied_in_session = [r for r in records if not r.allowed]
    mutations = _mutations(_template_sources())
    assert mutations, "no template policy was used in the session"
    table: dict[Mutation, set[str]] = {mutation: _replay(records, mutation) for mutation in mutations}
    unexercised = [m for m, tests in table.items() if not tests and not _not_exercised_locally(m)]
    by_statement: dict[tuple[str, int], list[Mutation]] = defaultdict(list)
    for mutation in mutations:
        by_statement[(mutation.source, mutation.index)].append(mutation)
    lines = ["", f"IAM mutation table: {len(records)} recorded checks, {len(mutations)} mutations", ""]
    lines.append("| statement / action removed | tests that fail with AccessDenied |")
    lines.append("| --- | --- |")
    for mutation, tests in table.items():
        shown = ", ".join(sorted(t.split("::")[-1] for t in tests)[:3]) + (
            f" (+{len(tests) - 3})" if len(tests) > 3 else ""
        )
        lines.append(f"| {mutation.label()} | {shown or 'NONE'} |")
    with capsys.disabled():
        print("\n".join(lines))
    assert not unexercised, "statements or actions that no test needs: " + "; ".join(m.label() for m in unexercised)
    outside_tests = [r for r in denied_in_session if not r.test]
    assert not outside_tests, "calls denied outside any test (a run left going after its test ended?): " + "; ".join(
        f"{r.principal} {r.action} on {r.resource}" for r in outside_tests
    )
