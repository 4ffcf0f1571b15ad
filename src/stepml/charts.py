"""Small SVG charts drawn on the server, in pure Python: the review page's pictures.

Each function returns one standalone ``<svg>`` element (well-formed XML, so it also works
inside XHTML or saved on its own) at its natural size with a ``viewBox``, so that the page's
``max-width: 100%; height: auto`` shrinks it into a phone's mail-client browser and it stays
sharp at its own size on a desktop.
Charts are accessible images: ``role="img"`` labelled by their ``<title>`` and ``<desc>``
(the desc says in words what the picture shows), and the page puts the numbers in a table
next to each. Colours and fonts are presentation attributes, never ``style``, so no
Content-Security-Policy has to allow anything for them; there is no script. Every text
(feature and class names come from the dataset) is escaped; numbers are formatted by
``number``. The number of drawn elements is bounded by the inputs, which the evaluation
report already bounds (``evaluation_figures``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: The challenger (this model), the champion (production), the training data, a warning.
BLUE, GREY, ORANGE, RED = "#0969da", "#8c959f", "#bc4c00", "#cf222e"
_FONT = 'font-family="system-ui, sans-serif"'
_ids = itertools.count(1)


def number(value: float | None) -> str:
    """A value as a short label: four significant digits, ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.4g}"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


@dataclass(frozen=True)
class Frame:
    """The plotting area: data ranges mapped to pixels (y grows upwards in data, downwards in SVG)."""

    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value: float) -> float:
        low, high = self.x_range
        return round(self.left + (value - low) / ((high - low) or 1) * self.width, 2)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return round(self.top + self.height - (value - low) / ((high - low) or 1) * self.height, 2)


def svg(title: str, desc: str, width: int, height: int, body: str) -> str:
    """The ``<svg>`` element around ``body``, titled and described for assistive technology."""
    ident = f"chart{next(_ids)}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-labelledby="{ident}-t {ident}-d" class="chart">'
        f'<title id="{ident}-t">{_e(title)}</title><desc id="{ident}-d">{_e(desc)}</desc>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>{body}</svg>'
    )


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" fill="#1b1f24" {_FONT}{extra}>'
        f"{_e(text)}</text>"
    )


def _axes(frame: Frame, x_label: str, y_label: str, ticks: int = 5) -> str:
    """Both axes with ``ticks`` + 1 labelled ticks each, and their labels."""
    parts = [
        f'<rect x="{frame.left}" y="{frame.top}" width="{frame.width}" height="{frame.height}" '
        'fill="none" stroke="#57606a" stroke-width="1"/>'
    ]
    for i in range(ticks + 1):
        x_value = frame.x_range[0] + (frame.x_range[1] - frame.x_range[0]) * i / ticks
        y_value = frame.y_range[0] + (frame.y_range[1] - frame.y_range[0]) * i / ticks
        x, y = frame.x(x_value), frame.y(y_value)
        parts.append(f'<line x1="{x}" y1="{frame.top}" x2="{x}" y2="{frame.top + frame.height}" stroke="#eaeef2"/>')
        parts.append(f'<line x1="{frame.left}" y1="{y}" x2="{frame.left + frame.width}" y2="{y}" stroke="#eaeef2"/>')
        parts.append(_text(x, frame.top + frame.height + 14, number(x_value), size=10))
        parts.append(_text(frame.left - 4, y + 3, number(y_value), size=10, anchor="end"))
    bottom = frame.top + frame.height + 32
    middle = frame.top + frame.height / 2
    parts.append(_text(frame.left + frame.width / 2, bottom, x_label, size=12))
    parts.append(_text(14, middle, y_label, size=12, extra=f' transform="rotate(-90 14 {middle})"'))
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, *, across: int = 0) -> str:
    """One entry per line, or side by side ``across`` pixels apart."""
    parts = []
    for i, (name, colour) in enumerate(items):
        left, top = (x + i * across, y) if across else (x, y + i * 16)
        parts.append(f'<rect x="{left}" y="{top - 9}" width="12" height="10" fill="{colour}"/>')
        parts.append(_text(left + 17, top, _clip(name, 40), anchor="start"))
    return "".join(parts)


def _range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values, default=0.0), max(values, default=1.0)
    return (low - 0.5, high + 0.5) if high <= low else (low, high)


@dataclass(frozen=True)
class Series:
    """One line: its name in the legend, its points (None coordinates are skipped), its colour."""

    name: str
    points: Sequence[tuple[float | None, float | None]]
    colour: str = BLUE
    dashed: bool = False


def line_chart(
    title: str,
    desc: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
) -> str:
    """Lines through each series' points over shared axes (ROC, precision-recall, spreads)."""
    kept = [[(x, y) for x, y in s.points if x is not None and y is not None] for s in series]
    xs = [x for points in kept for x, _ in points]
    ys = [y for points in kept for _, y in points]
    frame = Frame(56, 12, 300, 220, x_range or _range(xs), y_range or _range(ys))
    parts = [_axes(frame, x_label, y_label)]
    if diagonal:
        corners = (frame.x_range[0], frame.y_range[0], frame.x_range[1], frame.y_range[1])
        parts.append(
            f'<line x1="{frame.x(corners[0])}" y1="{frame.y(corners[1])}" x2="{frame.x(corners[2])}" '
            f'y2="{frame.y(corners[3])}" stroke="{GREY}" stroke-dasharray="4 4"/>'
        )
    for line, points in zip(series, kept, strict=True):
        if not points:
            continue
        path = " ".join(f"{frame.x(x)},{frame.y(y)}" for x, y in points)
        dash = ' stroke-dasharray="6 3"' if line.dashed else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{line.colour}" stroke-width="2"{dash}/>')
    parts.append(_legend([(s.name, s.colour) for s in series], 372, 24))
    return svg(title, desc, 560, 280, "".join(parts))


def _shade(count: int, top: int) -> str:
    """White to blue by ``count / top``; the text on it turns white past the middle."""
    share = count / top if top else 0.0
    channel = lambda full: round(255 + (full - 255) * share)  # noqa: E731
    return f"#{channel(0x09):02x}{channel(0x69):02x}{channel(0xDA):02x}"


def matrix_chart(
    title: str,
    desc: str,
    labels: Sequence[str],
    matrix: Sequence[Sequence[int]],
    *,
    row_axis: str,
    column_axis: str,
) -> str:
    """A square table of counts (confusion matrix, class agreement): each cell shaded and numbered."""
    size = len(labels)
    cell = max(28, min(64, 320 // max(size, 1)))
    left, top = 120, 44
    peak = max((max(row, default=0) for row in matrix), default=0)
    parts = [_text(left + cell * size / 2, 14, column_axis, size=12)]
    for j, label in enumerate(labels):
        parts.append(_text(left + cell * j + cell / 2, top - 8, _clip(str(label), 10), size=10))
    middle = top + cell * size / 2
    parts.append(_text(14, middle, row_axis, size=12, extra=f' transform="rotate(-90 14 {middle})"'))
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        y = top + cell * i
        parts.append(_text(left - 6, y + cell / 2 + 4, _clip(str(label), 14), size=10, anchor="end"))
        for j, count in enumerate(row):
            x = left + cell * j
            ink = "#ffffff" if peak and count / peak > 0.5 else "#1b1f24"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_shade(count, peak)}" stroke="#d0d7de"/>'
            )
            parts.append(
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" font-size="12" text-anchor="middle" '
                f'fill="{ink}" {_FONT}>{count}</text>'
            )
    return svg(title, desc, left + cell * size + 20, top + cell * size + 16, "".join(parts))


def grid_chart(
    title: str,
    desc: str,
    x_edges: Sequence[float],
    y_edges: Sequence[float],
    counts: Sequence[Sequence[int]],
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Binned scatter: ``counts[row][column]`` rows along y (from the bottom), columns along x,
    shaded by count, with the line y = x where the two ranges overlap."""
    frame = Frame(56, 12, 260, 220, (x_edges[0], x_edges[-1]), (y_edges[0], y_edges[-1]))
    peak = max((max(row, default=0) for row in counts), default=0)
    parts = [_axes(frame, x_label, y_label, ticks=4)]
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            if not count:
                continue
            x0, x1 = frame.x(x_edges[j]), frame.x(x_edges[j + 1])
            y0, y1 = frame.y(y_edges[i + 1]), frame.y(y_edges[i])
            parts.append(
                f'<rect x="{x0}" y="{y0}" width="{round(x1 - x0, 2)}" height="{round(y1 - y0, 2)}" '
                f'fill="{_shade(max(count, peak // 8 or 1), peak)}"><title>{count}</title></rect>'
            )
    low = max(x_edges[0], y_edges[0])
    high = min(x_edges[-1], y_edges[-1])
    if high > low:
        parts.append(
            f'<line x1="{frame.x(low)}" y1="{frame.y(low)}" x2="{frame.x(high)}" y2="{frame.y(high)}" '
            f'stroke="{ORANGE}" stroke-dasharray="4 4"/>'
        )
    return svg(title, desc, 340, 280, "".join(parts))


def bar_chart(title: str, desc: str, labels: Sequence[str], values: Sequence[float], *, value_label: str) -> str:
    """Horizontal bars, one per label, longest first as given (feature importance)."""
    top_value = max(values, default=0.0) or 1.0
    left, bar_room, row = 170, 300, 20
    parts = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 8 + i * row
        length = round(max(value, 0.0) / top_value * bar_room, 2)
        parts.append(_text(left - 6, y + 13, _clip(str(label), 26), size=11, anchor="end"))
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{length}" height="{row - 6}" fill="{BLUE}"/>')
        parts.append(_text(left + length + 4, y + 13, number(value), size=10, anchor="start"))
    height = 8 + len(labels) * row + 24
    parts.append(_text(left + bar_room / 2, height - 6, value_label, size=12))
    return svg(title, desc, left + bar_room + 60, height, "".join(parts))


def histogram(
    title: str, desc: str, edges: Sequence[float], counts: Sequence[int], *, x_label: str, marker: float | None = None
) -> str:
    """Counts per bin between ``edges``, with a dashed line at ``marker`` (0 for residuals)."""
    frame = Frame(56, 12, 300, 200, (edges[0], edges[-1]), (0, max(counts, default=0) or 1))
    parts = [_axes(frame, x_label, "rows", ticks=4)]
    for i, count in enumerate(counts):
        x0, x1 = frame.x(edges[i]), frame.x(edges[i + 1])
        y = frame.y(count)
        parts.append(
            f'<rect x="{x0}" y="{y}" width="{round(max(x1 - x0 - 1, 0.5), 2)}" '
            f'height="{round(frame.top + frame.height - y, 2)}" fill="{BLUE}"><title>{count}</title></rect>'
        )
    if marker is not None and edges[0] <= marker <= edges[-1]:
        x = frame.x(marker)
        parts.append(
            f'<line x1="{x}" y1="{frame.top}" x2="{x}" y2="{frame.top + frame.height}" '
            f'stroke="{ORANGE}" stroke-dasharray="4 4"/>'
        )
    return svg(title, desc, 380, 260, "".join(parts))


def paired_bars(
    title: str,
    desc: str,
    labels: Sequence[str],
    first: Sequence[float],
    second: Sequence[float],
    *,
    names: tuple[str, str],
    alert: bool = False,
) -> str:
    """Two shares per bin side by side (training grey, test blue, or red with ``alert``)."""
    width_per_bin = 30
    height, left, top = 110, 40, 26
    peak = max([*first, *second, 1e-12])
    colour = RED if alert else BLUE
    parts = [_legend([(names[0], GREY), (names[1], colour)], left, 12, across=110)]
    for i, label in enumerate(labels):
        x = left + i * width_per_bin
        for offset, share, fill in ((1, first[i], GREY), (15, second[i], colour)):
            bar = round((share or 0.0) / peak * height, 2)
            parts.append(
                f'<rect x="{x + offset}" y="{round(top + height - bar, 2)}" width="13" height="{bar}" fill="{fill}">'
                f"<title>{_e(label)}: {(share or 0.0):.1%}</title></rect>"
            )
        anchor_y = top + height + 10
        parts.append(
            _text(
                x + 15,
                anchor_y,
                _clip(str(label), 14),
                size=9,
                anchor="end",
                extra=f' transform="rotate(-40 {x + 15} {anchor_y})"',
            )
        )
    parts.append(
        f'<line x1="{left}" y1="{top + height}" x2="{left + len(labels) * width_per_bin}" y2="{top + height}" '
        'stroke="#57606a"/>'
    )
    return svg(title, desc, max(left + len(labels) * width_per_bin + 20, 240), top + height + 70, "".join(parts))
