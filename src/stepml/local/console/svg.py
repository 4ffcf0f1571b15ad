"""The laid-out graph (``graph.layout``) as inline SVG, each state coloured by how it went.

Every state is a link (``href(name)``) to the same page with that state's details, so a click
works without JavaScript; the colours are CSS classes (``st-<status>``) the page's style sheet
defines, and every name is escaped (state names are the definition author's text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape

from stepml.local.console.graph import CHAR_WIDTH, GROUP_HEADER, GROUP_PAD, Layout, Node
from stepml.local.console.status import STATUS_TITLES, StateRun

MARGIN = 16


def _label(name: str, width: float) -> str:
    fits = max(4, int((width - 16) / CHAR_WIDTH))
    return name if len(name) <= fits else name[: fits - 1] + "\u2026"


def _path(points: list[tuple[float, float]], *, curved: bool) -> str:
    """An SVG path through ``points``: straight lines, or (``curved``) S-curves that leave and
    reach each point vertically, so an edge through its layers reads as one smooth line."""
    (x, y), rest = points[0], points[1:]
    parts = [f"M{x:.1f},{y:.1f}"]
    for next_x, next_y in rest:
        if curved:
            middle = (y + next_y) / 2
            parts.append(f"C{x:.1f},{middle:.1f} {next_x:.1f},{middle:.1f} {next_x:.1f},{next_y:.1f}")
        else:
            parts.append(f"L{next_x:.1f},{next_y:.1f}")
        x, y = next_x, next_y
    return " ".join(parts)


class _Drawing:
    def __init__(self, runs: Mapping[str, StateRun], href: Callable[[str], str], selected: str | None):
        self.runs = runs
        self.href = href
        self.selected = selected
        self.parts: list[str] = []

    def layout(self, graph: Layout, dx: float, dy: float) -> None:
        self.parts.append(f'<g transform="translate({dx:.1f},{dy:.1f})">')
        for edge in graph.edges:
            kind = "edge back" if edge.back else "edge"
            path = _path(edge.points, curved=not edge.back)
            self.parts.append(f'<path class="{kind} {edge.kind}" d="{path}" marker-end="url(#arrow)"/>')
        for node in graph.nodes.values():
            if node.kind in ("start", "end"):
                self._marker(node)
            elif node.is_state:
                self._state(node)
        self.parts.append("</g>")

    def _marker(self, node: Node) -> None:
        radius = node.width / 2
        label = "Start" if node.kind == "start" else "End"
        self.parts.append(
            f'<g class="marker {node.kind}"><circle cx="{node.x:.1f}" cy="{node.y + radius:.1f}" r="{radius:.1f}"/>'
            f'<text x="{node.x:.1f}" y="{node.y + radius + 4:.1f}">{label}</text></g>'
        )

    def _state(self, node: Node) -> None:
        run = self.runs.get(node.name)
        status = run.status if run is not None else "not-reached"
        classes = f"state st-{status} kind-{escape(node.kind)}" + (" group" if node.branches else "")
        if node.name == self.selected:
            classes += " selected"
        left = node.x - node.width / 2
        title = f"{node.name} ({node.kind}): {STATUS_TITLES[status]}"
        text_y = node.y + (GROUP_HEADER - 8 if node.branches else node.height / 2 + 4)
        self.parts.append(
            f'<a href="{escape(self.href(node.name))}"><g class="{classes}" data-state="{escape(node.name)}" '
            f'data-status="{status}"><title>{escape(title)}</title>'
            f'<rect x="{left:.1f}" y="{node.y:.1f}" width="{node.width:.1f}" height="{node.height:.1f}" rx="6"/>'
            f'<text x="{node.x:.1f}" y="{text_y:.1f}">{escape(_label(node.name, node.width))}</text></g></a>'
        )
        inner = sum(branch.width for branch in node.branches) + GROUP_PAD * (len(node.branches) + 1)
        x = left + (node.width - inner) / 2 + GROUP_PAD
        for branch in node.branches:
            self.parts.append(
                f'<rect class="branch" x="{x - 4:.1f}" y="{node.y + GROUP_HEADER - 4:.1f}" '
                f'width="{branch.width + 8:.1f}" height="{branch.height + 8:.1f}" rx="4"/>'
            )
            self.layout(branch, x, node.y + GROUP_HEADER)
            x += branch.width + GROUP_PAD


def render(graph: Layout, runs: Mapping[str, StateRun], href: Callable[[str], str], selected: str | None = None) -> str:
    """The graph as one ``<svg>`` element; ``href(name)`` is the link of a state's node."""
    drawing = _Drawing(runs, href, selected)
    drawing.layout(graph, MARGIN, MARGIN)
    width, height = graph.width + 2 * MARGIN, graph.height + 2 * MARGIN
    return (
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="workflow graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>' + "".join(drawing.parts) + "</svg>"
    )
