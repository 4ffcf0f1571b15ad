"""Distribution distances of the baseline drift check (see ``analysis``'s docstring).

Numeric: the L-infinity distance between two cumulative distributions, the baseline's from its
percentiles (linear between them), the batch's exact; ``Robust`` less the two-sample
Kolmogorov-Smirnov critical value at 95%. Categorical: L-infinity between the category
frequencies (``Robust``: corrected the same way), or one minus the chi-squared goodness-of-fit
p-value (``ChiSquared``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

#: The two-sample Kolmogorov-Smirnov coefficient c(alpha) for alpha = 0.05.
KS_COEFFICIENT_95 = 1.358


def cdf_from_percentiles(percentiles: Sequence[float], x: float) -> float:
    """The baseline's cumulative share at ``x``: percentile ``i`` of ``n`` sits at ``i / (n-1)``."""
    last = len(percentiles) - 1
    if x < percentiles[0]:
        return 0.0
    if x >= percentiles[-1]:
        return 1.0
    right = bisect.bisect_right(percentiles, x)  # percentiles[right-1] <= x < percentiles[right]
    low, high = percentiles[right - 1], percentiles[right]
    # Equal percentiles (a frequent value) put their whole share at that value.
    within = (x - low) / (high - low) if high > low else 1.0
    return (right - 1 + within) / last


def numeric_distance(
    percentiles: Sequence[float], baseline_count: int, values: Sequence[float], method: str = "Robust"
) -> float:
    """The distance of ``values`` from the baseline given by its percentiles (0th to 100th)."""
    if not percentiles or not values:
        return 0.0
    ordered = sorted(values)
    count = len(ordered)
    distance = 0.0
    for value in set(ordered):
        # The batch's step function jumps at its values: compare just below and at each.
        below = bisect.bisect_left(ordered, value) / count
        at = bisect.bisect_right(ordered, value) / count
        just_below = cdf_from_percentiles(percentiles, math.nextafter(value, -math.inf))
        distance = max(distance, abs(at - cdf_from_percentiles(percentiles, value)), abs(below - just_below))
    for point in percentiles:
        distance = max(
            distance, abs(bisect.bisect_right(ordered, point) / count - cdf_from_percentiles(percentiles, point))
        )
    return _robust(distance, baseline_count, count) if method == "Robust" else distance


def _robust(distance: float, baseline_count: int, count: int) -> float:
    """``distance`` less the two-sample Kolmogorov-Smirnov critical value at 95% for these sizes."""
    if baseline_count <= 0 or count <= 0:
        return distance
    return max(0.0, distance - KS_COEFFICIENT_95 * math.sqrt((baseline_count + count) / (baseline_count * count)))
    return distance


def categorical_distance(
    baseline: Mapping[str, int], current: Mapping[str, int], method: str = "LInfinity", comparison: str = "Robust"
) -> float:
    """The distance between the category counts of the baseline and of the batch; L-infinity
    with ``comparison`` ``Robust`` is corrected for the sizes as the numeric distance is."""
    total_base, total_now = sum(baseline.values()), sum(current.values())
    if not total_base or not total_now:
        return 0.0
    if method == "ChiSquared":
        return 1.0 - _chi_squared_p_value(baseline, current)
    gap = max(abs(baseline.get(v, 0) / total_base - current.get(v, 0) / total_now) for v in {*baseline, *current})
    return _robust(gap, total_base, total_now) if comparison == "Robust" else gap


def _chi_squared_p_value(baseline: Mapping[str, int], current: Mapping[str, int]) -> float:
    """Goodness of fit of the batch's counts to the baseline's shares (unseen values get half a count)."""
    values = sorted({*baseline, *current})
    weights = {v: baseline.get(v, 0) or 0.5 for v in values}
    total_weight, total = sum(weights.values()), sum(current.values())
    statistic = sum(
        (current.get(v, 0) - total * weights[v] / total_weight) ** 2 / (total * weights[v] / total_weight)
        for v in values
    )
    return _upper_regularized_gamma((len(values) - 1) / 2, statistic / 2) if len(values) > 1 else 1.0


def _upper_regularized_gamma(a: float, x: float) -> float:
    """Q(a, x), the chi-squared survival function's core (series below a + 1, continued fraction above)."""
    if x <= 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-15:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    b, c, d = x + 1 - a, 1e300, 1 / (x + 1 - a)
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return math.exp(log_prefix) * h
