"""The record of every authorization check, labelled with the running test, and the policy
documents the checks were made against: what ``tests/e2e/test_iam_mutation.py`` replays."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stepml.local.iam.model import (
    PolicyDocument,
)


@dataclass
class CallRecord:
    """One authorization check: who, what, on which resource, with which result, in which test."""

    test: str
    principal: str
    role_arn: str | None
    service: str | None
    action: str
    resource: str
    context: dict[str, Any]
    resource_policy: str | None
    key_policy: bool
    allowed: bool
    decided_by: str | None


class Recorder:
    """Every check the gate and the engines made, labelled with the running test."""

    def __init__(self) -> None:
        self.label = ""
        self.records: list[CallRecord] = []
        #: The policy documents the checks were made against, by source, for replay.
        self.documents: dict[str, PolicyDocument] = {}
        #: The identity policy sources of each role, in order.
        self.role_policies: dict[str, list[str]] = {}
        #: The template resource (logical id) whose resource-based policy each source is: the
        #: bucket, topic, queue and key policies a local cloud provisioned from its template.
        self.resource_policy_owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def own(self, sources: Mapping[str, str]) -> None:
        """Record which template resource (logical id) each resource-policy source belongs to."""
        with self._lock:
            self.resource_policy_owners.update(sources)

    def remember(self, role_arn: str | None, identity: list[PolicyDocument], resource: PolicyDocument | None) -> None:
        with self._lock:
            for document in [*identity, *([resource] if resource else [])]:
                self.documents[document.source] = document
            if role_arn:
                self.role_policies[role_arn] = [document.source for document in identity]

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.records)

    def write_jsonl(self, path: Path) -> None:
        with path.open("a", encoding="utf-8") as out:
            for record in self.snapshot():
                out.write(json.dumps(asdict(record), sort_keys=True, default=str) + "\n")


#: One recorder per process: tests label it with the running test (tests/conftest.py).
RECORDER = Recorder()
