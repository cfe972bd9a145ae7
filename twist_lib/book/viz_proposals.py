"""Plotly views of single proposals for the book's module B and C pages.

Module B (the re-correction network Psi): an object-level sample in its scene and coloured by its
backbone features (:func:`show_sample`), a geometric transformation before and after
(:func:`show_transform`), a geometric mutation with its old and new boxes (:func:`show_mutation`),
and Psi's certainty against the true IoU (:func:`iou_scatter`). Module C (pseudo labels): a
proposal's points, shifted points, mean-shift centre and pseudo offsets
(:func:`show_pseudo_offsets`), and a scene's pseudo classes with the unlabelled points in grey
(:func:`show_labels`).

Like :mod:`twist_lib.viz`, every 3-D view keeps the true aspect ratio and draws at most
``max_points`` points per point trace (a seeded subset); line segments are single traces with
NaN breaks (:func:`segments`, :func:`box_edges`).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..viz import GREY, figure, points_trace, show_scene, subsample

BLUE, RED, ORANGE, GREEN, LIGHT = ("rgb(31,119,180)", "rgb(214,39,40)", "rgb(255,127,14)",
                                   "rgb(44,160,44)", "rgb(210,210,210)")

# the 12 edges of a box, as pairs of corner indices (corner k has bit 0 = x, 1 = y, 2 = z high)
_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6),
          (3, 7)]


def segments(start, end, name=None, colour=RED, width=2, dash=None,
             showlegend: bool = True) -> go.Scatter3d:
    """Line segments from each row of ``start`` (M, 3) to the same row of ``end``, one trace."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    seg = np.full((len(start) * 3, 3), np.nan)
    seg[0::3], seg[1::3] = start, end
    return go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", name=name,
                        line=dict(color=colour, width=width, dash=dash),
                        showlegend=bool(name) and showlegend, hoverinfo="name" if name else "skip")


def box_edges(lo, hi, name=None, colour=BLUE, dash=None) -> go.Scatter3d:
    """The 12 edges of the axis-aligned box from corner ``lo`` to corner ``hi``."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    corners = np.array([[(hi if k >> d & 1 else lo)[d] for d in range(3)] for k in range(8)])
    a, b = zip(*_EDGES)
    return segments(corners[list(a)], corners[list(b)], name, colour, width=3, dash=dash)


def feature_colours(feats) -> list[str]:
    """Per-point colours from features (M, F): the first three principal components, each
    stretched to 0..255 (a sample's points that look alike to Phi get alike colours)."""
    f = np.asarray(feats, dtype=np.float64)
    if len(f) == 0:
        return []
    f = f - f.mean(0)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    pcs = f @ vt[:3].T
    pcs = np.pad(pcs, ((0, 0), (0, 3 - pcs.shape[1])))
    span = pcs.max(0) - pcs.min(0)
    rgb = np.rint(255 * (pcs - pcs.min(0)) / np.where(span > 0, span, 1)).astype(int)
    return [f"rgb({r},{g},{b})" for r, g, b in rgb]


def show_sample(xyz, members, feats, max_points: int = 20_000, seed: int = 0, title=None,
                context: float = 0.5) -> go.Figure:
    """One object-level sample (boolean ``members`` of the scene points ``xyz``) in its
    surroundings: scene points within ``context`` metres of its box in light grey, the sample's
    points coloured by their backbone features ``feats`` (:func:`feature_colours`, (N, F) for
    the scene or (M, F) for the members)."""
    xyz, members = np.asarray(xyz), np.asarray(members, dtype=bool)
    feats = np.asarray(feats)
    feats = feats[members] if len(feats) == len(xyz) else feats
    lo, hi = xyz[members].min(0) - context, xyz[members].max(0) + context
    near = np.flatnonzero(~members & np.all((xyz >= lo) & (xyz <= hi), axis=1))
    near = near[subsample(len(near), max_points, seed)]
    own = np.flatnonzero(members)
    keep = subsample(len(own), max_points, seed)
    colours = feature_colours(feats)
    traces = [points_trace(xyz[near], LIGHT, "scene around it", 2, True),
              points_trace(xyz[own[keep]], [colours[i] for i in keep],
                      f"the sample: {len(own)} points, xyz + {feats.shape[1]} features", 3, True)]
    return figure(traces, title)


def show_transform(before, after, title=None, max_points: int = 20_000,
                   seed: int = 0) -> go.Figure:
    """A geometric transformation of a sample: its centred points ``before`` (grey) and
    ``after`` (blue), same points in the same order, with a few correspondences as segments."""
    before, after = np.asarray(before), np.asarray(after)
    keep = subsample(len(before), max_points, seed)
    pairs = subsample(len(before), 60, seed + 1)
    return figure([points_trace(before[keep], GREY, "before", 2, True),
                    points_trace(after[keep], BLUE, "after", 2, True),
                    segments(before[pairs], after[pairs], "a few points' moves", LIGHT, 1)], title)


def show_mutation(xyz, before, after, ratio: float, instance=None, max_points: int = 20_000,
                  seed: int = 0, title=None, context: float = 0.3) -> go.Figure:
    """A geometric mutation (crop or expand) of a sample in scene coordinates.

    ``before`` / ``after``: boolean member masks over ``xyz``. Draws the members kept (blue),
    lost (red) and gained (orange), the other scene points within ``context`` metres (light
    grey), the sample's bounding box (blue) and the box scaled by ``ratio`` (orange, dashed).
    With ``instance`` (per-point object ids), gained points of objects other than the sample's
    main one are drawn as a separate trace ("gained from a neighbour").
    """
    xyz = np.asarray(xyz)
    before, after = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    lo, hi = xyz[before].min(0), xyz[before].max(0)
    margin = (1.0 - ratio) / 2.0 * (hi - lo)
    new_lo, new_hi = lo + margin, hi - margin
    box_lo, box_hi = np.minimum(lo, new_lo) - context, np.maximum(hi, new_hi) + context
    near = ~before & ~after & np.all((xyz >= box_lo) & (xyz <= box_hi), axis=1)
    gained = after & ~before
    groups = [("other points nearby", near, LIGHT, 2), ("kept", before & after, BLUE, 3),
              ("lost", before & ~after, RED, 3)]
    if instance is not None:
        inst = np.asarray(instance)
        own_ids, counts = np.unique(inst[before & (inst >= 0)], return_counts=True)
        own = own_ids[np.argmax(counts)] if len(own_ids) else -100
        neighbour = gained & (inst >= 0) & (inst != own)
        groups += [("gained", gained & ~neighbour, ORANGE, 3),
                   ("gained from a neighbour", neighbour, "rgb(148,103,189)", 3)]
    else:
        groups.append(("gained", gained, ORANGE, 3))
    traces = []
    for name, mask, colour, size in groups:
        idx = np.flatnonzero(mask)
        idx = idx[subsample(len(idx), max_points, seed)]
        traces.append(points_trace(xyz[idx], colour, f"{name}: {int(mask.sum())}", size, True))
    traces += [box_edges(lo, hi, "the sample's box", BLUE),
               box_edges(new_lo, new_hi, f"box x {ratio:g}", ORANGE, "dash")]
    return figure(traces, title)


def iou_scatter(iou, scores: dict, threshold: float = 0.5, correct=None, title=None,
                height: int = 420) -> go.Figure:
    """Certainty scores against the true IoU of proposals, one panel per entry of ``scores``
    (name -> (P,) scores), with the IoU = 0.5 line and the score threshold drawn.

    Each panel has four traces, the quadrants, named with their counts: kept (score above
    ``threshold``) or dropped, IoU above 0.5 or not. ``correct`` (name -> (P,) bool, optional):
    the class each score's method gives is right; wrong ones are drawn as crosses.
    """
    iou = np.asarray(iou, dtype=np.float64)
    fig = make_subplots(1, len(scores), subplot_titles=list(scores), shared_yaxes=True)
    quadrants = [("kept, IoU > 0.5", True, True, GREEN), ("kept, IoU ≤ 0.5", True, False, RED),
                 ("dropped, IoU > 0.5", False, True, ORANGE),
                 ("dropped, IoU ≤ 0.5", False, False, GREY)]
    for col, (name, score) in enumerate(scores.items(), start=1):
        score = np.asarray(score, dtype=np.float64)
        ok = None if correct is None else np.asarray(correct[name], dtype=bool)
        for label, kept, good, colour in quadrants:
            m = ((score > threshold) == kept) & ((iou > 0.5) == good)
            symbol = None if ok is None else np.where(ok[m], "circle", "x")
            fig.add_scatter(x=iou[m], y=score[m], mode="markers",
                            name=f"{name}: {label}: {int(m.sum())}",
                            marker=dict(color=colour, size=6, symbol=symbol, opacity=0.75),
                            legendgroup=name, row=1, col=col)
        fig.add_shape(type="line", x0=0.5, x1=0.5, y0=0, y1=1, line=dict(dash="dot", color="black"),
                      row=1, col=col)
        fig.add_shape(type="line", x0=0, x1=1, y0=threshold, y1=threshold,
                      line=dict(dash="dash", color="black"), row=1, col=col)
        fig.update_xaxes(title_text="true IoU with the best-matching object", range=[-0.02, 1.02],
                         row=1, col=col)
    fig.update_yaxes(title_text="certainty score", range=[-0.02, 1.02], row=1, col=1)
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=80, b=50),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def show_pseudo_offsets(xyz, offset, members, centre, true_centre=None, max_segments: int = 300,
                        max_points: int = 20_000, seed: int = 0, title=None) -> go.Figure:
    """Eqs. (6)-(8) on one proposal: its points p (blue), the shifted points p + o_hat (orange),
    the mean-shift centre ``centre`` = a~_j (eq. 7, a red diamond), and on ``max_segments``
    points the pseudo offsets p -> a~_j (eq. 8, red segments) beside Phi's offsets p -> p + o_hat
    (grey segments); ``true_centre`` (optional) is the centre of the object it matches (green)."""
    xyz, offset = np.asarray(xyz, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    own = np.flatnonzero(np.asarray(members, dtype=bool))
    p, shifted = xyz[own], xyz[own] + offset[own]
    keep = subsample(len(own), max_points, seed)
    arrows = subsample(len(own), max_segments, seed + 1)
    centre = np.asarray(centre, dtype=np.float64).reshape(1, 3)
    traces = [points_trace(p[keep], BLUE, f"points p: {len(own)}", 2, True),
              points_trace(shifted[keep], ORANGE, "shifted p + ô", 2, True),
              segments(p[arrows], shifted[arrows], "Φ's offsets ô", "rgb(150,150,150)", 1),
              segments(p[arrows], np.repeat(centre, len(arrows), 0), "pseudo offsets õ (eq. 8)",
                       RED, 1),
              go.Scatter3d(x=centre[:, 0], y=centre[:, 1], z=centre[:, 2], mode="markers",
                           name="mean-shift centre ã (eq. 7)",
                           marker=dict(size=8, color=RED, symbol="diamond"))]
    if true_centre is not None:
        t = np.asarray(true_centre, dtype=np.float64).reshape(1, 3)
        traces.append(go.Scatter3d(x=t[:, 0], y=t[:, 1], z=t[:, 2], mode="markers",
                                   name="true centre", marker=dict(size=8, color=GREEN,
                                                                   symbol="cross")))
    return figure(traces, title)


def show_labels(xyz, semantic, class_names, max_points: int = 20_000, seed: int = 0,
                title=None) -> go.Figure:
    """A scene's (pseudo) classes, one trace per class named from ``class_names``; points
    without a label (-100) in a grey trace named "no label"."""
    fig = show_scene({"xyz": xyz, "semantic": np.asarray(semantic), "name": title}, "semantic",
                     class_names=class_names, max_points=max_points, seed=seed, title=title)
    for trace in fig.data:
        if trace.name == "ignored":
            trace.name = "no label"
    return fig
