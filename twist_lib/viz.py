"""Plotly 3-D views of scenes, offsets and proposals, downsampled for the browser.

Every view draws at most ``max_points`` points (a seeded random subset, so the same call gives the
same figure), keeps the true aspect ratio (``aspectmode="data"``) and has compact margins.

Per-point colours are stored compactly: each point carries a small integer index into a stepped
colour scale (one entry per distinct colour) instead of an ``rgb(r,g,b)`` string, which keeps a
figure about half the size in a notebook or a book page. Scene RGB is quantised to
``RGB_LEVELS`` levels per channel for this. :func:`point_colours` reads the colours back.
"""
from __future__ import annotations

import colorsys

import numpy as np
import plotly.graph_objects as go

from .data.classes import IGNORE_INDEX

GREY = "rgb(170,170,170)"
RGB_LEVELS = 16  # levels per channel of the drawn scene colours (steps of 17 in 0..255)


def palette(n: int) -> list[str]:
    """``n`` distinct colours (golden-ratio hue steps, alternating lightness) as ``rgb(r,g,b)``."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb((i * 0.618033988749895) % 1.0, (0.45, 0.6, 0.35)[i % 3], 0.75)
        colours.append(f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})")
    return colours


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``min(n, max_points)`` of ``n`` points."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def points_trace(xyz, colour, name=None, point_size=2, showlegend=False) -> go.Scatter3d:
    """A marker trace; ``colour`` is one colour for all points or a list with one per point."""
    xyz = np.asarray(xyz)
    marker = dict(size=point_size, color=colour)
    if not isinstance(colour, str):
        marker = dict(size=point_size, **_indexed(colour))
    return go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers", name=name,
                        marker=marker, showlegend=showlegend, hoverinfo="name" if name else "skip")


def _indexed(colours) -> dict:
    """Per-point colour strings as marker settings: integer indices plus a stepped colour scale."""
    table, index = np.unique(np.asarray(colours, dtype=object).astype(str), return_inverse=True)
    n = max(len(table), 1)
    scale = [[pos, str(c)] for i, c in enumerate(table) for pos in (i / n, (i + 1) / n)]
    return dict(color=index.astype(np.uint16 if n < 65536 else np.uint32),
                colorscale=scale or [[0, GREY], [1, GREY]], cmin=-0.5, cmax=n - 0.5,
                showscale=False)


def point_colours(trace) -> list[str]:
    """The colour of every point of a marker trace as ``rgb(r,g,b)`` strings (either encoding)."""
    colour = trace.marker.color
    if isinstance(colour, str):
        return [colour] * len(trace.x)
    if trace.marker.colorscale is None or not len(colour) or isinstance(colour[0], str):
        return list(colour)
    table = [c for _, c in trace.marker.colorscale[0::2]]
    return [table[int(i)] for i in np.asarray(colour)]


def figure(traces, title=None) -> go.Figure:
    fig = go.Figure(traces)
    fig.update_layout(title=title, scene=dict(aspectmode="data"), legend=dict(itemsizing="constant"),
                      margin=dict(l=0, r=0, b=0, t=40 if title else 0))
    return fig


def _id_colours(ids: np.ndarray, invalid) -> list[str]:
    """One distinct colour per id (in sorted id order), grey where ``ids == invalid``."""
    ids = np.asarray(ids)
    out = np.full(len(ids), GREY, dtype=object)
    valid = ids != invalid
    uniq, inverse = np.unique(ids[valid], return_inverse=True)
    out[valid] = np.asarray(palette(len(uniq)), dtype=object)[inverse]
    return out.tolist()


def rgb_strings(rgb: np.ndarray, levels: int = RGB_LEVELS) -> list[str]:
    """Scene colours in [-1, 1] as plotly ``rgb(r,g,b)`` strings, ``levels`` values per channel
    (-1 -> 0 and 1 -> 255 exactly)."""
    q = np.rint((np.clip(np.asarray(rgb, dtype=np.float64), -1, 1) + 1.0) / 2 * (levels - 1))
    c = np.rint(q * 255 / (levels - 1)).astype(int)
    return [f"rgb({r},{g},{b})" for r, g, b in c]


def show_scene(scene: dict, color_by: str = "rgb", class_names=None, max_points: int = 50_000,
               seed: int = 0, title=None, point_size: float = 2) -> go.Figure:
    """A scene (the dict of :mod:`twist_lib.data.io`) as a 3-D scatter.

    ``color_by``: ``rgb`` (the scan's colours, one trace), ``semantic`` (one trace per class
    present, named from ``class_names`` so the legend reads as the class list; ignored points in
    a grey trace "ignored") or ``instance`` (a distinct colour per instance, grey for -100).
    """
    idx = subsample(len(scene["xyz"]), max_points, seed)
    xyz = np.asarray(scene["xyz"])[idx]
    title = scene.get("name") if title is None else title
    if color_by == "rgb":
        return figure([points_trace(xyz, rgb_strings(np.asarray(scene["rgb"])[idx]), point_size=point_size)], title)
    if color_by == "instance":
        return figure([points_trace(xyz, _id_colours(np.asarray(scene["instance"])[idx], IGNORE_INDEX),
                                point_size=point_size)], title)
    if color_by != "semantic":
        raise ValueError(f"color_by must be 'rgb', 'semantic' or 'instance', got {color_by!r}")
    sem = np.asarray(scene["semantic"])[idx]
    classes = np.unique(sem[sem != IGNORE_INDEX])
    colours = palette(int(classes.max()) + 1 if len(classes) else 0)
    traces = [points_trace(xyz[sem == k], colours[k], class_names[k] if class_names else f"class {k}",
                      point_size, True) for k in classes]
    if (sem == IGNORE_INDEX).any():
        traces.append(points_trace(xyz[sem == IGNORE_INDEX], GREY, "ignored", point_size, True))
    return figure(traces, title)


def show_offsets(xyz, offset, max_arrows: int = 2000, max_points: int = 50_000, seed: int = 0,
                 title=None, point_size: float = 2) -> go.Figure:
    """Points (grey) and, on a subsample of ``max_arrows`` of them, line segments from p to
    p + offset (the offset head's votes for instance centres)."""
    xyz, offset = np.asarray(xyz), np.asarray(offset)
    pts = points_trace(xyz[subsample(len(xyz), max_points, seed)], GREY, point_size=point_size)
    a = subsample(len(xyz), max_arrows, seed + 1)
    seg = np.full((len(a) * 3, 3), np.nan)
    seg[0::3], seg[1::3] = xyz[a], xyz[a] + offset[a]
    lines = go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", name="offsets",
                         line=dict(color="rgb(214,39,40)", width=2), showlegend=False, hoverinfo="skip")
    return figure([pts, lines], title)


def show_proposals(xyz, proposal_ids, max_points: int = 50_000, seed: int = 0, title=None,
                   point_size: float = 2) -> go.Figure:
    """Points coloured by proposal id (one colour per proposal, grey for -1 = no proposal)."""
    idx = subsample(len(xyz), max_points, seed)
    colours = _id_colours(np.asarray(proposal_ids)[idx], -1)
    return figure([points_trace(np.asarray(xyz)[idx], colours, point_size=point_size)], title)


def switchable(figures: dict, title: str | None = None, control: str = "buttons",
               label: str = "", height: int = 520, active: int = 0) -> go.Figure:
    """One plotly figure holding several views, with buttons (or a slider) to switch between
    them; plotly draws the controls itself, so they work in the static HTML too.

    ``figures`` maps a view's label to a figure (e.g. from :mod:`twist_lib.viz`); the layout of
    the first one is kept (3-D scene settings) and view number ``active`` is shown first.
    The book's pages call it as ``book.switchable`` (:mod:`twist_lib.book` re-exports it).
    """
    if control not in ("buttons", "slider"):
        raise ValueError(f"control must be 'buttons' or 'slider', got {control!r}")
    fig = go.Figure()
    spans = []
    for name, view in figures.items():
        start = len(fig.data)
        fig.add_traces(list(view.data))
        spans.append((str(name), start, len(fig.data)))
    n = len(fig.data)
    visible = [[a <= i < b for i in range(n)] for _, a, b in spans]
    for i, trace in enumerate(fig.data):
        trace.visible = visible[active][i]
    fig.update_layout(next(iter(figures.values())).layout)
    steps = [dict(label=name, method="update", args=[{"visible": v}])
             for (name, _, _), v in zip(spans, visible)]
    if control == "buttons":
        fig.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=steps,
                                            active=active, x=0, y=1.0, xanchor="left",
                                            yanchor="bottom")])
    else:
        fig.update_layout(sliders=[dict(steps=steps, active=active, currentvalue=dict(prefix=label),
                                        pad=dict(t=10))])
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, b=0, t=70))
    return fig
