"""A monitoring execution drawn for a person: per feature the baseline's distribution against the
captured data's, and the violations, as terminal text (bars of block characters) and as an HTML
page with inline SVG histograms (no JavaScript, no external files).

Numeric features are binned by the baseline's ten buckets plus one bin each side for values
outside its range; both distributions are read from their percentiles (statistics.json's
sketch), so a share is accurate to about one percent. String features show the baseline's most
frequent values and any the batch adds.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepml.monitoring.distance import cdf_from_percentiles

#: Values shown per String feature (the most frequent of the baseline and the batch).
TOP_CATEGORIES = 12
_BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class FeatureView:
    """One feature's histogram: bin labels and the baseline's and the batch's share per bin."""

    name: str
    kind: str
    labels: list[str]
    baseline: list[float]
    current: list[float]
    violations: list[Mapping[str, str]]


def _percentiles(feature: Mapping[str, Any]) -> list[float]:
    numeric = feature.get("numerical_statistics") or {}
    data = numeric.get("distribution", {}).get("kll", {}).get("sketch", {}).get("data") or []
    return sorted(float(v) for level in data for v in level)


def _shares(percentiles: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Shares below ``edges[0]``, in each bucket, and above ``edges[-1]``."""
    if not percentiles:
        return [0.0] * (len(edges) + 1)
    cuts = [cdf_from_percentiles(percentiles, e) for e in edges]
    below = cdf_from_percentiles(percentiles, edges[0]) if percentiles[0] < edges[0] else 0.0
    return [below, *(cuts[i + 1] - cuts[i] for i in range(len(edges) - 1)), 1.0 - cuts[-1]]


def _numeric_view(name: str, base: Mapping[str, Any], now: Mapping[str, Any] | None) -> tuple[list, list, list]:
    buckets = (base.get("numerical_statistics") or {}).get("distribution", {}).get("kll", {}).get("buckets") or []
    edges = [float(b["lower_bound"]) for b in buckets] + ([float(buckets[-1]["upper_bound"])] if buckets else [])
    if len(edges) < 2:
        return [], [], []
    labels = [
        f"< {edges[0]:g}",
        *(f"{edges[i]:g}..{edges[i + 1]:g}" for i in range(len(edges) - 1)),
        f"> {edges[-1]:g}",
    ]
    total = sum(int(b["count"]) for b in buckets) or 1
    baseline = [0.0, *(int(b["count"]) / total for b in buckets), 0.0]
    current = _shares(_percentiles(now), edges) if now and now.get("numerical_statistics") else [0.0] * len(labels)
    return labels, baseline, current


def _category_counts(feature: Mapping[str, Any] | None) -> dict[str, int]:
    if not feature:
        return {}
    buckets = (feature.get("string_statistics") or {}).get("distribution", {}).get("categorical", {})
    return {str(b["value"]): int(b["count"]) for b in buckets.get("buckets") or []}


def _string_view(base: Mapping[str, Any], now: Mapping[str, Any] | None) -> tuple[list, list, list]:
    base_counts, now_counts = _category_counts(base), _category_counts(now)
    base_total, now_total = sum(base_counts.values()) or 1, sum(now_counts.values()) or 1
    ranked = sorted(base_counts, key=lambda v: -base_counts[v])[:TOP_CATEGORIES]
    ranked += [v for v in sorted(now_counts, key=lambda v: -now_counts[v]) if v not in ranked][: TOP_CATEGORIES // 2]
    return (
        ranked,
        [base_counts.get(v, 0) / base_total for v in ranked],
        [now_counts.get(v, 0) / now_total for v in ranked],
    )


def feature_views(
    baseline: Mapping[str, Any], current: Mapping[str, Any], violations: Mapping[str, Any]
) -> list[FeatureView]:
    """Each baseline feature's histogram against the batch's (matched by name), with its violations."""
    now_by_name = {f["name"]: f for f in current.get("features") or []}
    found = list(violations.get("violations") or [])
    views = []
    for feature in baseline.get("features") or []:
        name, kind = feature["name"], feature.get("inferred_type", "Unknown")
        now = now_by_name.get(name)
        if kind == "String":
            labels, base_shares, now_shares = _string_view(feature, now)
        else:
            labels, base_shares, now_shares = _numeric_view(name, feature, now)
        mine = [v for v in found if v.get("feature_name") == name]
        views.append(FeatureView(name, kind, labels, base_shares, now_shares, mine))
    names = {view.name for view in views}
    for violation in found:
        if violation.get("feature_name") not in names:  # extra columns
            views.append(FeatureView(violation["feature_name"], "Unknown", [], [], [], [violation]))
            names.add(violation["feature_name"])
    return views


# --- the terminal ------------------------------------------------------------------------------


def _bar(shares: Sequence[float], top: float) -> str:
    return "".join(_BLOCKS[min(len(_BLOCKS) - 1, round(s / top * (len(_BLOCKS) - 1)))] for s in shares)


def render_text(views: Sequence[FeatureView], *, title: str) -> str:
    """Per feature two bars (baseline, captured) over the same bins, then the violations."""
    lines = [title, ""]
    width = max([len(v.name) for v in views] + [8])
    for view in views:
        top = max([*view.baseline, *view.current, 1e-12])
        mark = "!" if view.violations else " "
        lines.append(f"{mark} {view.name.ljust(width)}  {view.kind:<10}  baseline |{_bar(view.baseline, top)}|")
        lines.append(f"  {' ' * width}  {'':<10}  captured |{_bar(view.current, top)}|")
        if view.kind == "String" and view.labels:
            lines.append(f"  {' ' * width}  {'':<10}  values:  {', '.join(view.labels)}")
        elif view.labels:
            low, high = view.labels[0][2:], view.labels[-1][2:]
            lines.append(f"  {' ' * width}  {'':<10}  bins:    below {low}, ten from {low} to {high}, above {high}")
    lines.append("")
    violations = [v for view in views for v in view.violations]
    lines.append(f"{len(violations)} violation(s)" + (":" if violations else ""))
    for violation in violations:
        lines.append(f"  {violation['feature_name']}: {violation['constraint_check_type']}: {violation['description']}")
    return "\n".join(lines) + "\n"


# --- HTML --------------------------------------------------------------------------------------


def _svg(view: FeatureView) -> str:
    """Paired bars per bin: the baseline grey, the batch blue (red when the feature has a violation)."""
    if not view.labels:
        return ""
    bin_width, height, label_room = 34, 120, 80
    top = max([*view.baseline, *view.current, 1e-12])
    colour = "#c0392b" if view.violations else "#2e86de"
    parts = []
    for i, label in enumerate(view.labels):
        x = 50 + i * bin_width
        for offset, share, fill in ((0, view.baseline[i], "#95a5a6"), (14, view.current[i], colour)):
            bar = share / top * height
            parts.append(
                f'<rect x="{x + offset}" y="{10 + height - bar:.1f}" width="13" height="{bar:.1f}" fill="{fill}">'
                f"<title>{html.escape(label)}: {share:.1%}</title></rect>"
            )
        parts.append(
            f'<text x="{x + 14}" y="{height + 22}" font-size="9" text-anchor="end" '
            f'transform="rotate(-40 {x + 14} {height + 22})">{html.escape(label[:16])}</text>'
        )
    width = 60 + len(view.labels) * bin_width
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + label_room}" role="img" '
        f'aria-label="{html.escape(view.name)}: baseline and captured distributions">{"".join(parts)}</svg>'
    )


def render_html(views: Sequence[FeatureView], *, title: str, details: Mapping[str, str]) -> str:
    """A self-contained page: the details, a violations table and one histogram per feature."""
    rows = "".join(
        f"<tr><td>{html.escape(v['feature_name'])}</td><td>{html.escape(v['constraint_check_type'])}</td>"
        f"<td>{html.escape(v['description'])}</td></tr>"
        for view in views
        for v in view.violations
    )
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in details.items())
    sections = "".join(
        f"<section><h2>{html.escape(view.name)} <small>{html.escape(view.kind)}"
        f"{' &middot; violation' if view.violations else ''}</small></h2>{_svg(view)}</section>"
        for view in views
    )
    violations = (
        f"<table><tr><th>feature</th><th>check</th><th>description</th></tr>{rows}</table>"
        if rows
        else "<p>No violations.</p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}small{color:#777}"
        "dt{font-weight:bold}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><dl>{facts}</dl><h2>Violations</h2>{violations}"
        "<p>Grey: the training baseline; blue: the captured data (red: the feature has a violation).</p>"
        f"{sections}</body></html>\n"
    )
