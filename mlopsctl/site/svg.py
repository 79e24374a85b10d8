"""Inline SVG for the site: metric plots (a line per metric over runs in time order), bar charts
and directed graphs drawn in layers (pipeline DAGs, lineage). No script, no external resource."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlopsctl.site.html import esc, short

PALETTE = ("#2f6db5", "#e8873a", "#3a9d5d", "#b5482f", "#7b5bb5", "#1c9aa6", "#a6851c")
_MAX_POINTS = 1000


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def line_plot(title: str, values: Sequence[Any], *, width: int = 560, height: int = 200) -> str:
    """One metric over runs (oldest first): a line through the values, min and max marked.
    Long series are thinned to at most 1,000 points (every run still counts for the range)."""
    points = [(i, v) for i, v in enumerate(_num(x) for x in values) if v is not None]
    if not points:
        return ""
    ys = [v for _, v in points]
    low, high = min(ys), max(ys)
    if high == low:
        low, high = low - 0.5, high + 0.5
    step = max(1, math.ceil(len(points) / _MAX_POINTS))
    shown = points[::step]
    if shown[-1] != points[-1]:
        shown.append(points[-1])
    left, top, right, bottom = 56, 22, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    last = max(1, len(values) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + plot_w * i / last, top + plot_h * (1 - (v - low) / (high - low))

    path = " ".join(
        f"{'M' if n == 0 else 'L'}{x:.1f},{y:.1f}"
        for n, (x, y) in enumerate(xy(i, v) for i, v in shown)
    )
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{PALETTE[0]}"/>'
        for x, y in (xy(i, v) for i, v in shown[:: max(1, len(shown) // 60)])
    )
    return (
        f'<svg class="plot" data-metric="{esc(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{esc(title)} over {len(values)} runs</title>"
        f'<text x="{left}" y="14" font-weight="600">{esc(short(title, 60))}</text>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#99a5b1"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#99a5b1"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{esc(f"{high:.4g}")}</text>'
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{esc(f"{low:.4g}")}</text>'
        f'<text x="{left}" y="{height - 8}">oldest</text>'
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end">newest</text>'
        f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>{dots}</svg>'
    )


def bars(title: str, items: Sequence[tuple[str, Any]], *, width: int = 560) -> str:
    """Horizontal bars, one per (label, value); values below zero start at zero."""
    rows = [(label, v) for label, v in ((lbl, _num(x)) for lbl, x in items) if v is not None]
    if not rows:
        return ""
    peak = max(abs(v) for _, v in rows) or 1.0
    left, bar_h, gap, top = 170, 16, 6, 24
    height = top + len(rows) * (bar_h + gap) + 8
    plot_w = width - left - 70
    parts = []
    for n, (label, value) in enumerate(rows):
        y = top + n * (bar_h + gap)
        w = max(1.0, plot_w * abs(value) / peak)
        color = PALETTE[n % len(PALETTE)]
        parts.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{esc(short(label, 26))}</text>'
            f'<path d="M{left},{y}h{w:.1f}v{bar_h}h{-w:.1f}z" fill="{color}"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 12}">{esc(f"{value:.4g}")}</text>'
        )
    return (
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img"><title>{esc(title)}</title>'
        f'<text x="8" y="15" font-weight="600">{esc(short(title, 70))}</text>{"".join(parts)}</svg>'
    )


KIND_COLORS = {
    "step": "#dde9f8",
    "run": "#e7def6",
    "data": "#f3f6f9",
    "source": "#fdf0cf",
    "version": "#d7f0dc",
    "deployment": "#fbe0cc",
    "featureset": "#fdf0cf",
}


def dag(
    nodes: dict[str, dict[str, Any]],
    edges: Sequence[tuple[str, str, str]],
    *,
    title: str,
    cls: str = "dag",
) -> str:
    """A directed graph drawn left to right in layers: a node's layer is the longest path to it
    from a node with no inputs (cycles are broken by the order nodes were given), nodes in a layer
    ordered by the mean position of their inputs. `nodes`: id -> {label, kind, href?}."""
    if not nodes:
        return ""
    ids = list(nodes)
    known = [(a, b, lbl) for a, b, lbl in edges if a in nodes and b in nodes and a != b]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b, _ in known:
        preds[b].append(a)
        succs[a].append(b)
    layer = _layers(ids, preds, succs)
    columns: dict[int, list[str]] = {}
    for node in ids:
        columns.setdefault(layer[node], []).append(node)
    position: dict[str, float] = {}
    for col in sorted(columns):
        members = columns[col]
        given = {node: float(n) for n, node in enumerate(members)}

        def weight(node: str, given: dict[str, float] = given) -> float:
            ins = [position[p] for p in preds[node] if p in position]
            return sum(ins) / len(ins) if ins else given[node]

        members.sort(key=weight)
        for n, node in enumerate(members):
            position[node] = float(n)
    box_w, box_h, gap_x, gap_y, pad = 190, 34, 70, 16, 14
    rows = max(len(m) for m in columns.values())
    width = pad * 2 + len(columns) * box_w + (len(columns) - 1) * gap_x
    height = pad * 2 + rows * box_h + (rows - 1) * gap_y + 18
    place: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        offset = (rows - len(members)) * (box_h + gap_y) / 2
        for n, node in enumerate(members):
            place[node] = (pad + col * (box_w + gap_x), pad + 18 + offset + n * (box_h + gap_y))
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#7d8a97"/>'
        "</marker></defs>",
        f'<text x="{pad}" y="{pad + 2}" font-weight="600">{esc(short(title, 90))}</text>',
    ]
    for a, b, label in known:
        (ax, ay), (bx, by) = place[a], place[b]
        x1, y1, x2, y2 = ax + box_w, ay + box_h / 2, bx, by + box_h / 2
        if bx <= ax:  # a back edge (only in a cycle): leave from the bottom
            x1, y1, x2 = ax + box_w / 2, ay + box_h, bx + box_w / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2:.1f},{y2:.1f}" fill="none" stroke="#7d8a97" marker-end="url(#arrow)">'
            f"<title>{esc(label)}</title></path>"
        )
    for node in ids:
        x, y = place[node]
        info = nodes[node]
        kind = str(info.get("kind") or "")
        fill = KIND_COLORS.get(kind, "#eef2f6")
        label = str(info.get("label") or node)
        box = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="5" '
            f'fill="{fill}" stroke="#8a97a5"/>'
            f'<text x="{x + 8:.1f}" y="{y + 14:.1f}">{esc(short(label, 30))}</text>'
            f'<text x="{x + 8:.1f}" y="{y + 28:.1f}" fill="#6b7886">{esc(short(kind, 30))}</text>'
        )
        target = info.get("href")
        inner = f"<title>{esc(label)}</title>{box}"
        if target:
            parts.append(
                f'<a href="{esc(target)}" class="node" data-node="{esc(node)}">{inner}</a>'
            )
        else:
            parts.append(f'<g class="node" data-node="{esc(node)}">{inner}</g>')
    return (
        f'<svg class="{esc(cls)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'
    )


def _layers(
    ids: list[str], preds: dict[str, list[str]], succs: dict[str, list[str]]
) -> dict[str, int]:
    """Longest-path layering over the graph with back edges (found by a depth-first search in
    the given order) ignored."""
    state: dict[str, int] = {}
    back: set[tuple[str, str]] = set()
    order: list[str] = []
    for start in ids:
        if start in state:
            continue
        stack = [(start, iter(succs[start]))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(succs[child])))
                    break
            else:
                state[node] = 2
                order.append(node)
                stack.pop()
    layer: dict[str, int] = {}
    for node in reversed(order):  # a topological order of the graph without back edges
        ins = [layer[p] for p in preds[node] if (p, node) not in back and p in layer]
        layer[node] = max(ins) + 1 if ins else 0
    return layer
