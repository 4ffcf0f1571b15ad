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

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from stepml.cli.runs import approve_link
from stepml.local.cloud import STACK_NAME
from stepml.local.iam import policy
from stepml.local.iam.gate import RECORDER, CallRecord
from stepml.local.iam.model import AuthorizationRequest, PolicyDocument, Principal
from stepml.sample_data import churn_csv

pytestmark = [pytest.mark.e2e, pytest.mark.iam_mutation]

#: Template statements that no local run can exercise, by (logical id of the role or of the resource
#: whose policy it is, Sid) or, for one action of a statement, (logical id, Sid, action), each with
#: the reason. Keep it short: everything else must be needed by some test.
NOT_EXERCISED_LOCALLY: dict[tuple[str, ...], str] = {
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
    ("TopicPolicy", "CloudWatchAlarmsPublishAlerts"): (
        "CloudWatch publishes an alarm's actions to the alert topic; the local cloud does not evaluate alarms "
        "into actions (tests/unit/test_iam_policy.py::test_the_templates_tls_only_topic_and_queue_policies "
        "checks the statement: CloudWatch of this account over TLS only, the alert topic only)"
    ),
    ("NotificationKey", "CloudWatchAlarmsPublish"): (
        "CloudWatch's use of the topics' key when it publishes an alarm's actions, as above "
        "(tests/unit/test_iam_policy.py checks the statement under the key policy)"
    ),
    ("LogKey", "CloudWatchLogsEncryptsLogGroups", "kms:ReEncrypt*"): (
        "in AWS's documented key policy for CloudWatch Logs; the local cloud checks what AssociateKmsKey "
        "needs (Encrypt, Decrypt, GenerateDataKey), and no local call re-encrypts log data"
    ),
}


def _not_exercised_locally(mutation: Mutation) -> bool:
    owner = mutation.source.split("/", 1)[0]
    for logical, sid, *action in NOT_EXERCISED_LOCALLY:
        if logical in owner and sid == mutation.sid and (not action or action[0] == mutation.action):
            return True
    return False


@dataclass(frozen=True)
class Mutation:
    #: An identity policy's source (``ROLE/POLICY``), or the logical id of the template resource
    #: whose resource-based policy it is (a bucket, topic or queue policy, a key).
    source: str
    index: int
    sid: str
    action: str | None  # None: the whole statement
    resource_based: bool = False

    def label(self) -> str:
        kind = " (resource policy)" if self.resource_based else ""
        return f"{self.source}{kind} [{self.sid or self.index}]" + (
            f" {self.action}" if self.action else " (statement)"
        )


def _statements(document: PolicyDocument) -> list[dict]:
    statements = document.document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _actions(statement: dict) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def _template_sources() -> list[str]:
    """Inline policies of the template's roles (the stack's roles: not AWS managed policies, not the
    roles tests make for themselves)."""
    return sorted(
        source
        for source in RECORDER.documents
        if source.startswith(f"{STACK_NAME}-") and "/" in source and ":policy/" not in source
    )


def _resource_policy_owners() -> dict[str, str]:
    """One recorded document for each template resource whose resource-based policy a check read."""
    owners: dict[str, str] = {}
    for source, owner in sorted(RECORDER.resource_policy_owners.items()):
        if source in RECORDER.documents:
            owners.setdefault(owner, source)
    return owners


def _mutations_of(document: PolicyDocument, source: str, resource_based: bool) -> list[Mutation]:
    found = []
    for index, statement in enumerate(_statements(document)):
        sid = statement.get("Sid", "")
        found.append(Mutation(source, index, sid, None, resource_based))
        if "Action" in statement:
            found += [Mutation(source, index, sid, action, resource_based) for action in _actions(statement)]
    return found


def _mutations(sources: Iterable[str]) -> list[Mutation]:
    found = []
    for source in sources:
        found += _mutations_of(RECORDER.documents[source], source, resource_based=False)
    for owner, source in _resource_policy_owners().items():
        found += _mutations_of(RECORDER.documents[source], owner, resource_based=True)
    return found


def _mutated(document: PolicyDocument, mutation: Mutation) -> PolicyDocument:
    if mutation.action is None:
        return policy.without_statement(document, mutation.index)
    return policy.without_action(document, mutation.index, mutation.action)


def _decide(record: CallRecord, mutation: Mutation | None = None) -> bool:
    """The record's check replayed against the recorded documents, ``mutation`` applied."""
    identity = []
    # A role's policies, or those the local user's checks stood for (an administrator's).
    for source in RECORDER.role_policies.get(record.role_arn or record.principal, []):
        document = RECORDER.documents[source]
        if mutation is not None and not mutation.resource_based and source == mutation.source:
            document = _mutated(document, mutation)
        identity.append(document)
    resource = RECORDER.documents.get(record.resource_policy) if record.resource_policy else None
    if mutation is not None and mutation.resource_based and resource is not None:
        resource = _mutated(resource, mutation)
    if record.role_arn:
        principal = Principal(arn=record.principal, role_arn=record.role_arn)
    elif record.principal in RECORDER.role_policies:  # the local user
        principal = Principal(arn=record.principal)
    else:  # a service principal (S3 log delivery, CloudWatch Logs, EventBridge)
        principal = Principal(arn=record.principal, service=record.principal)
    return policy.evaluate(
        principal,
        AuthorizationRequest(record.action, record.resource, record.context),
        identity,
        resource,
        key_policy=record.key_policy,
    ).allowed


def _touches(record: CallRecord, mutation: Mutation) -> bool:
    if mutation.resource_based:
        return RECORDER.resource_policy_owners.get(record.resource_policy or "") == mutation.source
    return record.role_arn is not None and mutation.source in RECORDER.role_policies.get(record.role_arn, [])


def _action_matches(pattern: str, action: str) -> bool:
    """IAM's action match: case-insensitive, with * and ? wildcards."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _statement_of(mutation: Mutation) -> dict:
    if mutation.resource_based:
        document = RECORDER.documents[_resource_policy_owners()[mutation.source]]
    else:
        document = RECORDER.documents[mutation.source]
    return _statements(document)[mutation.index]


def _unique(records: list[CallRecord]) -> list[CallRecord]:
    """One record per distinct check of each test (a job polled a hundred times is one check)."""
    seen: dict[tuple, CallRecord] = {}
    for record in records:
        key = (
            record.test,
            record.principal,
            record.role_arn,
            record.action,
            record.resource,
            json.dumps(record.context, sort_keys=True, default=str),
            record.resource_policy,
            record.key_policy,
            record.allowed,
        )
        seen.setdefault(key, record)
    return list(seen.values())


class Replay:
    """The session's checks replayed against mutated policies.

    Removing one action of a statement can only change a decision that removing the whole statement
    changes, so each statement is replayed over every check it could apply to (its actions match)
    and each of its actions only over the checks the statement's removal changed."""

    def __init__(self, records: list[CallRecord]):
        self.records = _unique(records)
        self._baseline: dict[int, bool] = {}
        self._changed_by_statement: dict[tuple[str, int, bool], list[int]] = {}

    def _consistent(self, number: int) -> bool:
        # A check made while a test had changed the policies (removed a statement for a while)
        # cannot be replayed against the documents recorded last.
        if number not in self._baseline:
            self._baseline[number] = _decide(self.records[number])
        return self._baseline[number] == self.records[number].allowed

    def failing_tests(self, mutation: Mutation) -> set[str]:
        """The tests whose checks the mutated policies decide otherwise: an allowed call denied (an
        Allow removed) or a denied call allowed (a Deny removed, so a test expecting it fails)."""
        statement_key = (mutation.source, mutation.index, mutation.resource_based)
        if mutation.action is None:
            statement = _statement_of(mutation)
            patterns = _actions(statement) if "Action" in statement else None
            candidates = [
                number
                for number, record in enumerate(self.records)
                if _touches(record, mutation)
                and (patterns is None or any(_action_matches(p, record.action) for p in patterns))
            ]
        else:
            whole = Mutation(mutation.source, mutation.index, mutation.sid, None, mutation.resource_based)
            if statement_key not in self._changed_by_statement:
                self.failing_tests(whole)
            candidates = [
                number
                for number in self._changed_by_statement[statement_key]
                if _action_matches(mutation.action, self.records[number].action)
            ]
        changed = [
            number
            for number in candidates
            if self._consistent(number) and _decide(self.records[number], mutation) != self.records[number].allowed
        ]
        if mutation.action is None:
            self._changed_by_statement[statement_key] = changed
        return {self.records[number].test or "(no test)" for number in changed}


def test_an_approved_run_is_in_the_record(pipeline):
    """The replay needs at least one whole approved run, even when this module runs alone."""
    pipeline.onboard("churn")
    upload = pipeline.upload("churn", "iam.csv", churn_csv(1500, seed=11))
    email = pipeline.wait_for_approval_email(upload["run_id"])
    status, _ = approve_link(email.links[0], decision="approve", comment="replay")
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
    replay = Replay(records)
    table: dict[Mutation, set[str]] = {mutation: replay.failing_tests(mutation) for mutation in mutations}
    unexercised = [m for m, tests in table.items() if not tests and not _not_exercised_locally(m)]
    by_statement: dict[tuple[str, int], list[Mutation]] = defaultdict(list)
    for mutation in mutations:
        by_statement[(mutation.source, mutation.index)].append(mutation)
    lines = [
        "",
        f"IAM mutation table: {len(records)} recorded checks ({len(replay.records)} distinct), "
        f"{len(mutations)} mutations",
        "",
    ]
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
