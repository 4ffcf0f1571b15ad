"""The local endpoint's health checks (``deployment.wait_healthy``): when the first ping goes, and
what a model that never loads or never answers turns into."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from stepml.local.sagemaker import deployment
from stepml.local.sagemaker.errors import DeploymentFailedError


class _Closing(threading.Event):
    """The engine's closing event, counting the waits between health-check rounds."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(0)


class _Server:
    """A container whose model loads after ``load_rounds`` calls to ``wait_loaded`` (0: already loaded)."""

    def __init__(self, load_rounds: int = 0, load_error: str | None = None) -> None:
        self.load_rounds = load_rounds
        self.loaded = False
        self.load_error: str | None = None
        self._error = load_error
        self.pings = 0

    def wait_loaded(self, timeout: float) -> bool:
        if self.load_rounds:
            self.load_rounds -= 1
            return False
        self.loaded = self._error is None
        self.load_error = self._error
        return True

    def ping(self) -> int:
        self.pings += 1
        return 200 if self.loaded else 503


def _context(interval: float = 60.0, timeout: float = 3600.0) -> SimpleNamespace:
    settings = SimpleNamespace(health_check_interval=interval, health_check_timeout=timeout)
    return SimpleNamespace(settings=settings, closing=_Closing())


def _variant(*servers: _Server, name: str = "AllTraffic") -> SimpleNamespace:
    return SimpleNamespace(name=name, servers=list(servers), log=None)


def test_a_loaded_model_is_healthy_at_the_first_ping_without_waiting_an_interval():
    context = _context(interval=60.0)
    server = _Server(load_rounds=0)

    deployment.wait_healthy(context, lambda: True, [_variant(server)])

    assert server.pings == 1
    assert context.closing.waits == []


def test_a_model_still_loading_is_pinged_again_after_the_interval():
    context = _context(interval=0.25)
    server = _Server(load_rounds=1)

    deployment.wait_healthy(context, lambda: True, [_variant(server)])

    assert server.pings == 2
    assert len(context.closing.waits) == 1 and 0 <= context.closing.waits[0] <= 0.25


def test_a_model_that_cannot_load_fails_the_deployment_with_its_reason():
    context = _context()
    broken = _Server(load_error="xgboost-model is not an XGBoost model")

    with pytest.raises(DeploymentFailedError) as error:
        deployment.wait_healthy(context, lambda: True, [_variant(_Server(), name="A"), _variant(broken, name="B")])

    assert "production variant B did not pass the ping health check" in str(error.value)
    assert "xgboost-model is not an XGBoost model" in str(error.value)


def test_an_endpoint_deleted_while_it_starts_stops_the_checks():
    context = _context()

    with pytest.raises(DeploymentFailedError, match="deleted or updated while it was being created"):
        deployment.wait_healthy(context, lambda: False, [_variant(_Server())])


def test_a_model_that_never_answers_fails_when_the_health_check_timeout_ends():
    context = _context(interval=0.0, timeout=0.0)

    with pytest.raises(DeploymentFailedError, match="did not pass the ping health check within 0 s"):
        deployment.wait_healthy(context, lambda: True, [_variant(_Server(load_rounds=10**9))])
