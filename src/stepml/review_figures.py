"""The review page's pictures, from the evaluation report the Evaluate Lambda wrote to S3.

``load_report`` reads the report (the approval API may read only the artifact bucket's
``evaluation/`` prefix); ``figure_sections`` draws what an approver looks at with
``stepml.charts``: ROC and precision-recall curves (classification) or residuals (regression),
the confusion matrix, feature importance, the new model against production on the same rows,
and the test split's drift from the training baseline. Each picture has a caption and the
numbers behind it in a table (a ``<details>`` element: open without JavaScript). A figure the
report could not make says why in one line; a report that cannot be read leaves the page
without pictures and says so, and never stops the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from stepml import charts
from stepml.charts import BLUE, GREY, Series, number
from stepml.utils import S3ReadError, read_s3_json

#: A report larger than this is not drawn (the Evaluate Lambda writes a few hundred KB at most).
MAX_REPORT_BYTES = 5 * 1024 * 1024
#: Bars of the feature importance chart; the table lists every feature.
TOP_FEATURES = 15
#: Drift histograms drawn (the largest distances first); the table lists every feature.
DRIFT_CHARTS = 12


class ReviewReportError(RuntimeError):
    """The evaluation report cannot be read; the message names it and says why."""


def load_report(s3_client: Any, uri: str | None) -> dict[str, Any]:
    """The evaluation report at ``uri`` (``s3://...``), as the Evaluate Lambda wrote it."""
    if not uri:
        raise ReviewReportError("the approval names no evaluation report")
    try:
        report = read_s3_json(s3_client, uri, max_bytes=MAX_REPORT_BYTES)
    except S3ReadError as exc:
        raise ReviewReportError(str(exc)) from exc
    if not isinstance(report, dict):
        raise ReviewReportError(f"{uri}: not an evaluation report")
    return report


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _figure(chart: str, caption: str, table: str = "") -> str:
    numbers = f"<details><summary>The numbers</summary>{table}</details>" if table else ""
    return f"<figure>{chart}<figcaption>{_e(caption)}</figcaption>{numbers}</figure>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    # Scrolls sideways on its own on a phone instead of widening the page.
    return f'<div class="scroll"><table class="numbers"><tr>{head}</tr>{body}</table></div>'


def _missing(what: str, found: Any) -> str | None:
    """A one-line note when a figure is absent or could not be made."""
    if isinstance(found, Mapping) and found.get("unavailable"):
        return f'<p class="note">{_e(what)}: not available ({_e(found["unavailable"])}).</p>'
    if not found:
        return f'<p class="note">{_e(what)}: not in this evaluation report.</p>'
    return None


# --- curves or residuals -------------------------------------------------------------------------


def _curve_charts(curves: Mapping[str, Any]) -> str:
    ours, theirs = curves.get("challenger") or [], curves.get("champion") or []
    roc, pr, rows = [], [], []
    palette = [BLUE, "#8250df", "#1a7f37", "#bf3989", "#9a6700", "#0550ae", "#953800", "#116329", "#6639ba", "#4d2d00"]
    for index, curve in enumerate(ours):
        colour = palette[index % len(palette)]
        name = f"this model: {curve['name']} (AUC {number(curve['auc'])})"
        roc.append(Series(name, list(zip(curve["fpr"], curve["tpr"], strict=True)), colour))
        pr.append(
            Series(f"this model: {curve['name']}", list(zip(curve["tpr"], curve["precision"], strict=True)), colour)
        )
        for t in (0.1, 0.3, 0.5, 0.7, 0.9):
            i = curve["thresholds"].index(t) if t in curve["thresholds"] else None
            if i is not None:
                rows.append(
                    (curve["name"], t, number(curve["tpr"][i]), number(curve["fpr"][i]), number(curve["precision"][i]))
                )
    for curve in theirs[:1] if len(ours) == 1 else []:
        name = f"production (AUC {number(curve['auc'])})"
        roc.append(Series(name, list(zip(curve["fpr"], curve["tpr"], strict=True)), GREY, dashed=True))
        pr.append(Series("production", list(zip(curve["tpr"], curve["precision"], strict=True)), GREY, dashed=True))
    aucs = "; ".join(f"{c['name']}: AUC {number(c['auc'])}" for c in ours)
    roc_chart = charts.line_chart(
        "ROC curve",
        f"True positive rate against false positive rate at thresholds 0 to 1. {aucs}.",
        roc,
        x_label="false positive rate",
        y_label="true positive rate",
        x_range=(0, 1),
        y_range=(0, 1),
        diagonal=True,
    )
    pr_chart = charts.line_chart(
        "Precision-recall curve",
        "Precision against recall at thresholds 0 to 1 (a threshold that predicts nothing positive has no precision).",
        pr,
        x_label="recall",
        y_label="precision",
        x_range=(0, 1),
        y_range=(0, 1),
    )
    table = _table(("class", "threshold", "true positive rate", "false positive rate", "precision"), rows)
    one_vs_rest = " (each class against the rest)" if len(ours) > 1 else ""
    return _figure(roc_chart, f"ROC on the test rows{one_vs_rest}; the diagonal is guessing.", table) + _figure(
        pr_chart, f"Precision and recall as the threshold moves{one_vs_rest}."
    )


def _residual_charts(found: Mapping[str, Any]) -> str:
    histogram = found["histogram"]
    spread = [b for b in found["by_prediction"] if b["count"]]
    middles = [(b["low"] + b["high"]) / 2 for b in spread]
    lines = [
        Series("90th percentile", list(zip(middles, [b["p90"] for b in spread], strict=True)), GREY, dashed=True),
        Series("median", list(zip(middles, [b["p50"] for b in spread], strict=True)), BLUE),
        Series("10th percentile", list(zip(middles, [b["p10"] for b in spread], strict=True)), GREY, dashed=True),
    ]
    grid = found["predicted_vs_actual"]
    table = _table(
        ("prediction from", "to", "rows", "residual p10", "median", "p90"),
        [
            (number(b["low"]), number(b["high"]), b["count"], number(b["p10"]), number(b["p50"]), number(b["p90"]))
            for b in spread
        ],
    )
    return (
        _figure(
            charts.histogram(
                "Residuals",
                f"Histogram of actual minus predicted over {sum(histogram['counts'])} test rows; dashed: zero.",
                histogram["edges"],
                histogram["counts"],
                x_label="actual - predicted",
                marker=0.0,
            ),
            "Residuals (actual minus predicted): centred on zero and narrow is good.",
        )
        + _figure(
            charts.line_chart(
                "Residuals by prediction",
                "The 10th, 50th and 90th percentile of the residual in each bin of the predicted value.",
                lines,
                x_label="predicted",
                y_label="actual - predicted",
            ),
            "How the error spreads across the predicted range.",
            table,
        )
        + _figure(
            charts.grid_chart(
                "Predicted against actual",
                "Test rows binned by predicted (across) and actual (up), darker for more; dashed: exact.",
                grid["x_edges"],
                grid["y_edges"],
                grid["counts"],
                x_label="predicted",
                y_label="actual",
            ),
            "Predicted against actual: rows on the dashed line are predicted exactly.",
        )
    )


def _quality_section(report: Mapping[str, Any]) -> str:
    if report.get("problem_type") == "regression":
        note = _missing("Residuals", report.get("residuals"))
        return "<h3>Residuals</h3>" + (note or _residual_charts(report["residuals"]))
    curves = report.get("curves")
    note = _missing("ROC and precision-recall curves", curves)
    if note is None and not (curves.get("challenger") or []):
        note = '<p class="note">No curves: the test rows hold only one class.</p>'
    return "<h3>ROC and precision-recall</h3>" + (note or _curve_charts(curves))


# --- confusion matrix, importance, the production model, drift ---------------------------------------


def _matrix_figure(found: Mapping[str, Any], title: str, caption: str, row_axis: str, column_axis: str) -> str:
    labels, matrix = [str(v) for v in found["labels"]], found["matrix"]
    cells = "; ".join(
        f"{row_axis} {a}, {column_axis} {b}: {matrix[i][j]}" for i, a in enumerate(labels) for j, b in enumerate(labels)
    )
    chart = charts.matrix_chart(
        title, f"Counts of test rows. {cells}.", labels, matrix, row_axis=row_axis, column_axis=column_axis
    )
    table = _table((f"{row_axis} \\ {column_axis}", *labels), [(a, *matrix[i]) for i, a in enumerate(labels)])
    return _figure(chart, caption, table)


def _confusion_section(report: Mapping[str, Any]) -> str:
    found = report.get("confusion_matrix")
    if report.get("problem_type") == "regression" or not found:
        return ""
    return "<h3>Confusion matrix</h3>" + _matrix_figure(
        found,
        "Confusion matrix",
        "This model's predictions (threshold 0.5 or the most probable class) against the labels.",
        "actual",
        "predicted",
    )


def _importance_section(report: Mapping[str, Any]) -> str:
    found = report.get("feature_importance")
    note = _missing("Feature importance", found)
    if note is None and not found.get("features"):
        note = '<p class="note">Feature importance: the model makes no splits.</p>'
    if note:
        return "<h3>Feature importance</h3>" + note
    features = found["features"]
    top = features[:TOP_FEATURES]
    chart = charts.bar_chart(
        "Feature importance (gain)",
        "Average loss reduction of the model's splits on each feature, largest first: "
        + "; ".join(f"{f['feature']} {number(f['gain'])}" for f in top)
        + ".",
        [f["feature"] for f in top],
        [f["gain"] for f in top],
        value_label="gain per split",
    )
    table = _table(
        ("feature", "gain", "total gain", "splits"),
        [(f["feature"], number(f["gain"]), number(f["total_gain"]), f["weight"]) for f in features],
    )
    shown = (
        f"the {len(top)} most important of {len(features)}"
        if len(features) > len(top)
        else "every feature the model splits on"
    )
    return "<h3>Feature importance</h3>" + _figure(chart, f"XGBoost gain importance, {shown}.", table)


def _comparison_section(report: Mapping[str, Any]) -> str:
    found = report.get("comparison")
    production = report.get("production") or {}
    if not found or not production:
        return ""
    endpoint = production.get("endpoint") or "production"
    parts = [f"<h3>This model against production ({_e(endpoint)})</h3>"]
    parts.append(
        f"<p>Both models scored the same {_e(report.get('rows'))} test rows; their metrics are side by side above.</p>"
    )
    if "agreement" in found:
        parts.append(f"<p>They predict the same class for {found['agreement']:.1%} of the rows.</p>")
        parts.append(
            _matrix_figure(
                found,
                "Class agreement with production",
                "Rows by the class each model predicts; off the diagonal they disagree.",
                "this model",
                "production",
            )
        )
    else:
        parts.append(
            f"<p>Mean absolute difference of the predictions: {_e(number(found.get('mean_absolute_difference')))}.</p>"
        )
    grid = found.get("scores")
    if grid:
        parts.append(
            _figure(
                charts.grid_chart(
                    "Scores: this model against production",
                    "Test rows binned by production's score (across) and this model's (up); dashed: they agree.",
                    grid["x_edges"],
                    grid["y_edges"],
                    grid["counts"],
                    x_label="production",
                    y_label="this model",
                ),
                "Each row's score from both models; rows far from the dashed line changed most.",
            )
        )
    return "".join(parts)


def _checks(feature: Mapping[str, Any]) -> str:
    """The Model Monitor checks a feature violates, by name."""
    return ", ".join(sorted({str(v.get("constraint_check_type")) for v in feature.get("violations") or []}))


def _drift_section(report: Mapping[str, Any]) -> str:
    found = report.get("drift")
    note = _missing("Drift", found)
    if note:
        return "<h3>Test data against the training data</h3>" + note
    features = found["features"]
    ranked = sorted(features, key=lambda f: -(f.get("distance") or 0.0))
    rows = [
        (
            f["name"],
            f["kind"],
            number(f.get("distance")),
            number(f.get("threshold")),
            _checks(f) or "none",
        )
        for f in ranked
    ]
    figures = []
    for feature in ranked[:DRIFT_CHARTS]:
        if not feature["labels"]:
            continue
        alert = bool(feature["violations"])
        title = f"{feature['name']}: distance {number(feature.get('distance'))}" + (
            f" ({_checks(feature)})" if alert else ""
        )
        figures.append(
            _figure(
                charts.paired_bars(
                    title,
                    f"Share of rows per bin of {feature['name']}: training baseline against the test rows.",
                    feature["labels"],
                    feature["train"],
                    feature["test"],
                    names=("training", "test"),
                    alert=alert,
                ),
                title,
            )
        )
    summary = (
        f"<p>{_e(found['rows'])} test rows against the training split's baseline: "
        f"{_e(found['violations'])} violation(s). A distance above its threshold is drift "
        "(baseline_drift_check); the other checks are Model Monitor's too (red: the feature has a violation).</p>"
    )
    return (
        "<h3>Test data against the training data</h3>"
        + summary
        + f'<div class="small">{"".join(figures)}</div>'
        + _table(("feature", "type", "distance", "threshold", "violations"), rows)
    )


def figure_sections(report: Mapping[str, Any] | None, problem: str | None = None) -> str:
    """The pictures section of the review page (``problem``: why the report could not be read)."""
    if report is None:
        return f'<h2>Pictures</h2><p class="note">The pictures are not available: {_e(problem or "no report")}.</p>'
    return (
        "<h2>Pictures</h2>"
        + _quality_section(report)
        + _confusion_section(report)
        + _importance_section(report)
        + _comparison_section(report)
        + _drift_section(report)
    )
