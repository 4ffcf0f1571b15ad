"""The preflight report: a line per check (OK, WARN or FAIL), and the error that stops preflight."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

OK: Final = "OK"
WARN: Final = "WARN"
FAIL: Final = "FAIL"


class PreflightError(RuntimeError):
    """Preflight cannot start (no samconfig environment, no template); the message says what to do."""


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    summary: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.summary}"
        if self.fix and self.status != OK:
            text += f" -- fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
            "data": self.data,
        }


@dataclass
class Report:
    """Every check, in the order run."""

    stack_name: str
    config_env: str
    region: str
    account: str | None
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def lines(self) -> list[str]:
        """The report as text: a line per check, its details indented below it."""
        out = []
        for check in self.checks:
            out.append(check.line())
            out.extend(f"      {detail}" for detail in check.details)
        counts = {status: sum(c.status == status for c in self.checks) for status in (OK, WARN, FAIL)}
        verdict = "ready to deploy" if self.ok else "fix the FAIL lines before deploying"
        out.append(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL: {verdict}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stack_name": self.stack_name,
            "config_env": self.config_env,
            "region": self.region,
            "account": self.account,
            "checks": [c.to_dict() for c in self.checks],
        }
