"""The workflow graph of a state machine, laid out from its definition.

Nothing here is drawn by hand: ``layout(definition)`` reads ``StartAt`` and ``States`` and
places every state in layers (a small Sugiyama layout: longest-path layers, edges that skip
layers routed through dummy points, a few barycenter sweeps to cut crossings, then x positions
pulled toward each node's neighbours). A ``Parallel`` state holds one sub-layout per branch and
a ``Map`` state one for its ``ItemProcessor`` (or ``Iterator``), drawn as nested groups; Catch
edges are kept apart from ``Next``/``Default``/Choice edges, and edges back to an earlier layer
(Wait loops) go round the right side. ``svg.py`` draws the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

START = "__start__"
END = "__end__"
NODE_HEIGHT = 34
MIN_WIDTH = 120
MAX_WIDTH = 230
CHAR_WIDTH = 6.2
LAYER_GAP = 30
NODE_GAP = 24
DUMMY_GAP = 12
MARKER = 26
GROUP_HEADER = 24
GROUP_PAD = 12
LOOP_GAP = 14
SWEEPS = 6


class GraphError(ValueError):
    """The definition has no states to draw (no ``StartAt`` or no ``States``)."""


@dataclass
class Node:
    """One state (or the Start/End marker) with its box: ``x`` is the centre, ``y`` the top."""

    name: str
    kind: str  # a state's Type, or "start"/"end"
    width: float
    height: float
    x: float = 0.0
    y: float = 0.0
    branches: list[Layout] = field(default_factory=list)

    @property
    def is_state(self) -> bool:
        return self.kind not in ("start", "end")


@dataclass
class Edge:
    """A transition: ``kind`` is next, default, choice, catch or end; ``back`` for loops."""

    source: str
    target: str
    kind: str
    points: list[tuple[float, float]] = field(default_factory=list)
    back: bool = False


@dataclass
class Layout:
    """A (sub)graph's nodes and edges, positioned inside a ``width`` x ``height`` box."""

    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float

    def states(self) -> list[Node]:
        """Every state node, nested groups' states included, parents before their children."""
        found = []
        for node in self.nodes.values():
            if node.is_state:
                found.append(node)
                for branch in node.branches:
                    found += branch.states()
        return found


def transitions(name: str, state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(target, kind) of every transition out of a state, in the definition's order."""
    found = []
    if state.get("Next"):
        found.append((state["Next"], "next"))
    for rule in state.get("Choices") or []:
        if rule.get("Next"):
            found.append((rule["Next"], "choice"))
    if state.get("Default"):
        found.append((state["Default"], "default"))
    for catcher in state.get("Catch") or []:
        if catcher.get("Next"):
            found.append((catcher["Next"], "catch"))
    if state.get("End") or state.get("Type") in ("Succeed", "Fail"):
        found.append((END, "end"))
    return found


def sub_definitions(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The nested machines of a state: a Parallel's branches, a Map's item processor."""
    if state.get("Type") == "Parallel":
        return list(state.get("Branches") or [])
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if processor else []
    return []


def _text_width(name: str) -> float:
    return max(MIN_WIDTH, min(MAX_WIDTH, len(name) * CHAR_WIDTH + 24))


def _make_node(name: str, state: Mapping[str, Any]) -> Node:
    branches = [layout(branch) for branch in sub_definitions(state)]
    if not branches:
        return Node(name, str(state.get("Type", "")), _text_width(name), NODE_HEIGHT)
    inner_width = sum(b.width for b in branches) + GROUP_PAD * (len(branches) + 1)
    inner_height = max(b.height for b in branches) + GROUP_HEADER + GROUP_PAD
    return Node(name, str(state["Type"]), max(inner_width, _text_width(name)), inner_height, branches=branches)


def _depth_first(
    edges: Mapping[str, list[tuple[str, str]]], names: list[str]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Nodes in depth-first order from Start (unreachable states after), and the back edges."""
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        order.append(node)
        for target, _kind in edges.get(node, []):
            if state.get(target) == 1:
                back.add((node, target))
            elif target not in state:
                visit(target)
        state[node] = 2

    for root in [START, *names, END]:
        if root not in state:
            visit(root)
    return order, back


def _layers(order: list[str], forward: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layers over the forward edges (``order`` is a topological order of them)."""
    layer = dict.fromkeys(order, 0)
    incoming: dict[str, list[str]] = {}
    for source, target in forward:
        incoming.setdefault(target, []).append(source)
    for node in _topological(order, forward):
        layer[node] = max((layer[s] + 1 for s in incoming.get(node, [])), default=0)
    return layer


def _topological(order: list[str], forward: list[tuple[str, str]]) -> list[str]:
    indegree = dict.fromkeys(order, 0)
    outgoing: dict[str, list[str]] = {}
    for source, target in forward:
        indegree[target] += 1
        outgoing.setdefault(source, []).append(target)
    ready = [node for node in order if indegree[node] == 0]
    result = []
    while ready:
        node = ready.pop(0)
        result.append(node)
        for target in outgoing.get(node, []):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return result


def layout(definition: Mapping[str, Any]) -> Layout:
    """Lay out a state machine (or a branch, or a Map's item processor) from its definition."""
    states = definition.get("States")
    if not isinstance(states, Mapping) or not states or definition.get("StartAt") not in states:
        raise GraphError("the definition has no States with its StartAt")
    nodes = {START: Node(START, "start", MARKER, MARKER)}
    nodes.update((name, _make_node(name, state)) for name, state in states.items())
    nodes[END] = Node(END, "end", MARKER, MARKER)
    outgoing = {START: [(str(definition["StartAt"]), "next")]}
    outgoing.update(
        (name, [(t, k) for t, k in transitions(name, state) if t in nodes]) for name, state in states.items()
    )
    order, back = _depth_first(outgoing, list(states))
    edges = [Edge(s, t, kind, back=(s, t) in back) for s, targets in outgoing.items() for t, kind in targets]
    layer = _layers(order, [(e.source, e.target) for e in edges if not e.back])
    rows, chains = _with_dummies(order, layer, edges, nodes)
    _order_rows(rows, chains)
    width = _place(rows, nodes, chains)
    height = _stack(rows, nodes)
    width = _route(edges, chains, nodes, width)
    return Layout(nodes={n: nodes[n] for n in order}, edges=edges, width=width, height=height)


def _with_dummies(
    order: list[str], layer: dict[str, int], edges: list[Edge], nodes: dict[str, Node]
) -> tuple[list[list[str]], dict[int, list[str]]]:
    """Rows of node names per layer, a dummy node in every layer a forward edge skips; the
    chain of each edge (by its index): its source, its dummies, its target."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for node in order:
        rows[layer[node]].append(node)
    chains: dict[int, list[str]] = {}
    for index, edge in enumerate(edges):
        chain = [edge.source]
        if not edge.back:
            for level in range(layer[edge.source] + 1, layer[edge.target]):
                # Edges into the same state share their dummies: one lane per target, not per edge.
                dummy = f"\0{edge.target}:{level}"
                if dummy not in nodes:
                    nodes[dummy] = Node(dummy, "dummy", 0, NODE_HEIGHT)
                    rows[level].append(dummy)
                chain.append(dummy)
        chains[index] = [*chain, edge.target]
    return rows, chains


def _neighbours(chains: dict[int, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for chain in chains.values():
        for first, second in itertools.pairwise(chain):
            down.setdefault(first, []).append(second)
            up.setdefault(second, []).append(first)
    return up, down


def _order_rows(rows: list[list[str]], chains: dict[int, list[str]]) -> None:
    """Barycenter sweeps, down then up, to cut edge crossings; ties keep the current order."""
    up, down = _neighbours(chains)
    for sweep in range(SWEEPS):
        levels = range(1, len(rows)) if sweep % 2 == 0 else range(len(rows) - 2, -1, -1)
        near = up if sweep % 2 == 0 else down
        for level in levels:
            other = rows[level - 1] if sweep % 2 == 0 else rows[level + 1]
            position = {name: index for index, name in enumerate(other)}
            current = {name: index for index, name in enumerate(rows[level])}

            def key(
                name: str,
                position: dict[str, int] = position,
                current: dict[str, int] = current,
                near: dict[str, list[str]] = near,
            ) -> float:
                linked = [position[n] for n in near.get(name, []) if n in position]
                return sum(linked) / len(linked) if linked else float(current[name])

            rows[level].sort(key=key)


def _gap(left: Node, right: Node) -> float:
    gap = DUMMY_GAP if "dummy" in (left.kind, right.kind) else NODE_GAP
    return (left.width + right.width) / 2 + gap


def _place(rows: list[list[str]], nodes: dict[str, Node], chains: dict[int, list[str]]) -> float:
    """x centres: each row packed, then pulled toward its neighbours' centres, down and up."""
    for row in rows:
        x = 0.0
        for index, name in enumerate(row):
            x = x + (_gap(nodes[row[index - 1]], nodes[name]) if index else nodes[name].width / 2)
            nodes[name].x = x
    up, down = _neighbours(chains)
    for _ in range(SWEEPS // 2):
        pull_toward_neighbours(rows, nodes, up)
        pull_toward_neighbours(rows[::-1], nodes, down)
    pull_toward_neighbours(rows, nodes, up)
    width = _normalise(rows, nodes)
    # Mirrored: the sweeps leave the start's path right of centre; a reader scrolls from the left.
    for row in rows:
        for name in row:
            nodes[name].x = width - nodes[name].x
    return width


def _normalise(rows: list[list[str]], nodes: dict[str, Node]) -> float:
    left = min(nodes[name].x - nodes[name].width / 2 for row in rows for name in row)
    for row in rows:
        for name in row:
            nodes[name].x -= left
    return max(nodes[name].x + nodes[name].width / 2 for row in rows for name in row)


def pull_toward_neighbours(rows: list[list[str]], nodes: dict[str, Node], near: dict[str, list[str]]) -> None:
    """Move each row's nodes toward the mean x of their ``near`` neighbours, keeping order and gaps."""
    for row in rows:
        wanted = []
        for name in row:
            linked = [nodes[n].x for n in near.get(name, []) if n in nodes]
            wanted.append(sum(linked) / len(linked) if linked else nodes[name].x)
        placed: list[float] = []
        for index, name in enumerate(row):
            x = wanted[index]
            if index:
                x = max(x, placed[-1] + _gap(nodes[row[index - 1]], nodes[name]))
            placed.append(x)
        # Pushed right by the gaps: shift the row back so it sits around what it wanted on average.
        drift = sum(p - w for p, w in zip(placed, wanted, strict=True)) / len(row) if row else 0
        for name, x in zip(row, placed, strict=True):
            nodes[name].x = x - drift


def _stack(rows: list[list[str]], nodes: dict[str, Node]) -> float:
    """y tops: each row as tall as its tallest node, nodes centred in it."""
    y = 0.0
    for row in rows:
        height = max((nodes[name].height for name in row), default=0)
        for name in row:
            nodes[name].y = y + (height - nodes[name].height) / 2
        y += height + LAYER_GAP
    return y - LAYER_GAP


def _route(edges: list[Edge], chains: dict[int, list[str]], nodes: dict[str, Node], width: float) -> float:
    """Points of each edge; loops go round the right of everything. Returns the new width."""
    loops = 0
    for index, edge in enumerate(edges):
        source, target = nodes[edge.source], nodes[edge.target]
        if edge.back:
            loops += 1
            side = width + LOOP_GAP * loops
            start = (source.x + source.width / 2, source.y + source.height / 2)
            end = (target.x + target.width / 2, target.y + target.height / 2)
            edge.points = [start, (side, start[1]), (side, end[1]), end]
            continue
        points = [(source.x, source.y + source.height)]
        points += [(nodes[d].x, nodes[d].y + NODE_HEIGHT / 2) for d in chains[index][1:-1]]
        points.append((target.x, target.y))
        edge.points = points
    return width + LOOP_GAP * (loops + 1) if loops else width
