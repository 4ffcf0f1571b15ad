"""The invocation metrics an endpoint publishes to CloudWatch, as SageMaker does.

SageMaker publishes, per endpoint and production variant (dimensions ``EndpointName`` and
``VariantName``, namespace ``AWS/SageMaker``), ``Invocations``, ``Invocation4XXErrors`` and
``Invocation5XXErrors`` (one sample per request, 1 for an error, so Sum counts and Average is
the rate), ``ModelLatency`` (the container's answer time) and ``OverheadLatency`` (SageMaker's
own time), both in microseconds. These are what the production alarms of template.yaml watch
and what a blue/green update's auto-rollback reads through them. ``InvocationMetrics`` tallies
each request as ``hosting`` serves it; the capture writer's thread publishes the tallies with
PutMetricData as statistic sets (the engine's own client: SageMaker publishes them itself, not
under the execution role) every ``capture_flush_seconds`` rather than once a minute, so an
alarm of the local cloud can see a new fleet's errors within its baking period.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "AWS/SageMaker"


@dataclass
class _Samples:
    """A statistic set under construction."""

    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def statistic_values(self) -> dict[str, float]:
        return {"SampleCount": float(self.count), "Sum": self.total, "Minimum": self.low, "Maximum": self.high}


@dataclass
class _Tally:
    invocations: _Samples = field(default_factory=_Samples)
    errors_4xx: _Samples = field(default_factory=_Samples)
    errors_5xx: _Samples = field(default_factory=_Samples)
    model_latency: _Samples = field(default_factory=_Samples)
    overhead_latency: _Samples = field(default_factory=_Samples)


class InvocationMetrics:
    """Tallies of the requests each (endpoint, variant) served since the last ``drain``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], _Tally] = {}

    def record(self, endpoint: str, variant: str, status: int, model_seconds: float, total_seconds: float) -> None:
        """One request the variant's container answered with ``status`` (0: it timed out)."""
        with self._lock:
            tally = self._tallies.setdefault((endpoint, variant), _Tally())
            tally.invocations.add(1.0)
            tally.errors_4xx.add(1.0 if 400 <= status < 500 else 0.0)
            tally.errors_5xx.add(1.0 if status >= 500 or status == 0 else 0.0)
            tally.model_latency.add(round(model_seconds * 1_000_000))
            tally.overhead_latency.add(round(max(total_seconds - model_seconds, 0.0) * 1_000_000))

    def drain(self) -> list[dict[str, Any]]:
        """The PutMetricData items of everything tallied since the last call."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        items: list[dict[str, Any]] = []
        for (endpoint, variant), tally in tallies.items():
            dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
            for name, samples, unit in (
                ("Invocations", tally.invocations, "None"),
                ("Invocation4XXErrors", tally.errors_4xx, "None"),
                ("Invocation5XXErrors", tally.errors_5xx, "None"),
                ("ModelLatency", tally.model_latency, "Microseconds"),
                ("OverheadLatency", tally.overhead_latency, "Microseconds"),
            ):
                if samples.count:
                    items.append(
                        {
                            "MetricName": name,
                            "Dimensions": dimensions,
                            "StatisticValues": samples.statistic_values(),
                            "Unit": unit,
                        }
                    )
        return items
