"""The emulated hosted UI's errors: the OAuth error codes Cognito answers with."""

from __future__ import annotations


class HostedUiError(Exception):
    """A request the hosted UI refuses; ``code`` is the OAuth error (``invalid_grant`` ...)."""

    def __init__(self, code: str, description: str, status: int = 400):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status


class UnknownClientError(HostedUiError):
    """No app client of the pool has this id."""

    def __init__(self, client_id: str):
        super().__init__("invalid_client", f"no app client {client_id[:40]!r} in the user pool")


class SignInFailedError(Exception):
    """The user name and password do not sign anybody in (the login form says so, as Cognito's)."""
