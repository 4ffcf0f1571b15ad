"""The access keys each role the local cloud acts as signs with, and back from a key to its role
session; the local user (an administrator) and its policy."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from stepml.local.iam.model import (
    LOCAL_ACCOUNT,
    PolicyDocument,
    Principal,
)

#: The prefix AWS gives temporary (STS) access key ids.
_TEMPORARY_KEY_PREFIX = "ASIA"


@dataclass(frozen=True)
class Credentials:
    """Temporary credentials of one role session, as STS hands them out."""

    access_key_id: str
    secret_access_key: str
    session_token: str

    def environment(self) -> dict[str, str]:
        """The variables boto3 and the AWS CLI read, for a worker process."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    def client_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


def role_name(role_arn: str) -> str:
    """``arn:aws:iam::1:role/path/Name`` -> ``Name``."""
    return role_arn.rsplit("/", 1)[-1]


class Principals:
    """The access keys of every role the local cloud acts as, and back from a key to the role."""

    def __init__(self, account: str = LOCAL_ACCOUNT):
        self.account = account
        self._by_key: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def credentials(self, role_arn: str, session_name: str) -> Credentials:
        """Temporary credentials of ``role_arn`` for a session called ``session_name``.

        The key is derived from the role and session, so a worker process started later gets the
        same key for the same principal.
        """
        digest = hashlib.sha256(f"{role_arn}\0{session_name}".encode()).hexdigest().upper()
        key = _TEMPORARY_KEY_PREFIX + digest[:16]
        with self._lock:
            self._by_key[key] = self.session(role_arn, session_name)
        return Credentials(key, digest[16:56], "local-session-" + digest[:24].lower())

    def session(self, role_arn: str, session_name: str) -> Principal:
        """The principal of ``role_arn``'s session ``session_name`` (its assumed-role ARN)."""
        return Principal(
            arn=f"arn:aws:sts::{self.account}:assumed-role/{role_name(role_arn)}/{session_name}",
            account=self.account,
            role_arn=role_arn,
        )

    def administrator(self) -> Principal:
        """The local user: whoever signs with keys that belong to no role (you, the CLI, provisioning)."""
        return Principal(arn=f"arn:aws:iam::{self.account}:user/local", account=self.account)

    def principal_of(self, access_key_id: str | None) -> Principal | None:
        """The role session behind a key, or None for the local user's keys."""
        if access_key_id is None:
            return None
        with self._lock:
            return self._by_key.get(access_key_id)


#: The local user's identity policy: an administrator's (AdministratorAccess).
ADMINISTRATOR_POLICY = PolicyDocument(
    "local user (AdministratorAccess)",
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
)
