"""What every check reads and shares: the account's clients, the stack, the bound template; and
the reading of AWS errors (a denied read is a WARN, not a FAIL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stepml.cli.preflight.inputs import bind_stack_resources

if TYPE_CHECKING:
    from stepml.config import DatasetConfig
    from stepml.local.template import ResolvedTemplate

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (empty when it has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    """``Code: message`` of an AWS error, else the exception's text."""
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"
    return str(exc)


def denied(exc: BaseException) -> bool:
    """Whether AWS refused the caller (a permission, not an answer about the account)."""
    return isinstance(exc, ClientError) and error_code(exc) in _DENIED


@dataclass
class CheckContext:
    """One preflight run: its inputs, its clients (one per service) and what the checks learnt."""

    root: Path
    session: Any
    config_env: str
    stack_name: str
    region: str
    samconfig_region: str | None
    parameters: dict[str, str]
    dataset_config_paths: list[Path]
    rerun: str
    account: str | None = None
    stack: dict[str, Any] | None = None
    stack_resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    resolved: ResolvedTemplate | None = None
    #: The dataset configs read (files and the stack's onboarded ones) and the ones skipped, read
    #: once for every check that counts them.
    dataset_configs: tuple[list[DatasetConfig], list[str]] | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """The run's client of ``service`` in the checked region."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def resolve_template(self) -> ResolvedTemplate:
        """The template bound to this stack, account, region and parameters (a fresh copy)."""
        # The template reader lives with the local cloud's provisioning; imported here so that the
        # CLI's parser loads no stepml.local.
        from stepml.local.template import ResolvedTemplate, load_template

        resolved = ResolvedTemplate(
            load_template(self.root / "template.yaml"),
            stack_name=self.stack_name,
            region=self.region,
            account_id=self.account or "123456789012",
            parameter_overrides=self.parameters,
            source=str(self.root / "template.yaml"),
        )
        bind_stack_resources(resolved, self.stack_resources)
        return resolved
