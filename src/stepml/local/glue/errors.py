"""The local Glue engine's errors."""

from __future__ import annotations


class GlueEngineError(RuntimeError):
    """A job is unknown to the local Glue engine."""


class _RunFailure(Exception):
    """The run fails with this message as its ErrorMessage."""
