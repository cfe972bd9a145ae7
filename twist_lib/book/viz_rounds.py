"""Plots of a TWIST run across its rounds, drawn from what :mod:`twist_lib.runs` reads.

- :func:`rounds_figure`     AP / AP50 / AP25 / mIoU per round beside the paper's Table 7
- :func:`quality_figure`    pseudo-label accuracy, coverage and offset error per round (Fig. 4a)
- :func:`timing_figure`     seconds of pseudo-labelling and training per round
- :func:`pseudo_label_browser`  one scene's pseudo labels of every round beside its ground truth,
  with a slider over the rounds (plotly draws it, so it works in a static page)
- :func:`scene_table_html`  the per-scene quality table as HTML, sorted by improvement, with a
  tiny script that re-sorts it by any column on a click

Every 3-D view draws at most ``max_points`` points, the same seeded subset in every round
(:func:`twist_lib.viz.subsample`).
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import viz
from ..data.classes import IGNORE_INDEX
from ..runs import PAPER_TABLE7_AP50, QUALITY

METRIC_NAMES = {"AP": "AP", "AP50": "AP50", "AP25": "AP25", "miou": "mIoU"}


def _series(rows, key, scale=1.0):
    return [r["round"] for r in rows], [None if r.get(key) is None else scale * r[key] for r in rows]


def rounds_figure(rows: list[dict], label_ratio=None, paper: dict = PAPER_TABLE7_AP50,
                  title: str | None = None) -> go.Figure:
    """Left: this run's AP, AP50, AP25 and mIoU (%) after each round (round 0 = Sup-only + Psi).
    Right: the paper's Table 7, TWIST's AP50 (%) per round on ScanNet v2 for each label ratio,
    the run's ``label_ratio`` drawn thick."""
    fig = make_subplots(1, 2, subplot_titles=("this run (validation)",
                                              "paper, Table 7: AP50 on ScanNet v2"))
    for key, name in METRIC_NAMES.items():
        x, y = _series(rows, key, 100)
        fig.add_scatter(x=x, y=y, name=name, mode="lines+markers", row=1, col=1)
    ratio = None if label_ratio is None else f"{float(label_ratio):g}"
    for r, values in paper.items():
        mine = r == ratio
        fig.add_scatter(x=list(range(len(values))), y=list(values), name=f"paper, {r} % labels",
                        mode="lines+markers", line=dict(width=4 if mine else 1.5,
                                                        dash="solid" if mine else "dot"),
                        row=1, col=2)
    fig.update_xaxes(title_text="round", dtick=1)
    fig.update_yaxes(title_text="%", rangemode="tozero")
    fig.update_layout(title=title, height=400, margin=dict(l=50, r=20, t=70, b=50))
    return fig


def quality_figure(rows: list[dict], title: str | None = None) -> go.Figure:
    """The shape of the paper's Fig. 4a: per round t >= 1, the pseudo semantic labels' accuracy
    (over all of them and over the object classes only) and coverage (%, left) and the pseudo
    offsets' mean error (m, right)."""
    rows = [r for r in rows if r["round"] >= 1]
    fig = make_subplots(1, 2, subplot_titles=("pseudo semantic labels", "pseudo offsets"))
    for key, name in (("sem_acc", "Sem. Acc. (points with a pseudo class)"),
                      ("object_sem_acc", "Sem. Acc. on objects (object pseudo classes)"),
                      ("coverage", "coverage (points with a pseudo label)")):
        x, y = _series(rows, key, 100)
        if all(v is None for v in y):
            continue                          # a run from before object_sem_acc was measured
        fig.add_scatter(x=x, y=y, name=name, mode="lines+markers", row=1, col=1)
    x, y = _series(rows, "offset_error")
    fig.add_scatter(x=x, y=y, name="Off. Error (m)", mode="lines+markers", row=1, col=2)
    fig.update_xaxes(title_text="round", dtick=1)
    fig.update_yaxes(title_text="%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="metres", rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title, height=380, margin=dict(l=50, r=20, t=70, b=50),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def timing_figure(rows: list[dict], title: str | None = None) -> go.Figure:
    """Stacked bars: seconds of pseudo-labelling (step ii), measuring the labels' quality and
    training (step iii) in each round."""
    fig = go.Figure()
    for key, name in (("pseudo_s", "pseudo-labelling (A -> B -> C)"),
                      ("quality_s", "quality of the pseudo labels"), ("train_s", "training")):
        x, y = _series(rows, key)
        fig.add_bar(x=x, y=[v or 0.0 for v in y], name=name)
    fig.update_layout(barmode="stack", title=title, xaxis=dict(title="round", dtick=1),
                      yaxis_title="seconds", height=360, margin=dict(l=50, r=20, t=60, b=50))
    return fig


# ----------------------------------------------------------------------------------------------
# the pseudo-label browser
# ----------------------------------------------------------------------------------------------
def _view(xyz, semantic=None, instance=None, class_names=None, max_points=3000, seed=0,
          legend=False):
    """The traces of one 3-D view: by class (``semantic``) or by instance (``instance``)."""
    if semantic is not None:
        fig = viz.show_scene({"xyz": xyz, "semantic": semantic, "name": ""}, "semantic",
                             class_names=class_names, max_points=max_points, seed=seed)
        for trace in fig.data:
            trace.legendgroup = trace.name
            trace.showlegend = legend
    else:
        ids = np.where(np.asarray(instance) < 0, -1, np.asarray(instance))
        fig = viz.show_proposals(xyz, ids, max_points=max_points, seed=seed)
    return list(fig.data)


def pseudo_label_browser(scene: dict, labels_by_round: dict, colour_by: str = "semantic",
                         class_names=None, max_points: int = 3000, seed: int = 0,
                         title: str = "") -> go.Figure:
    """One unlabelled scene: its pseudo labels of each round (left) beside its ground truth
    (right), with a slider over the rounds that plotly draws (works in a static page).

    ``scene`` is the stored scene dict (``xyz``, ``semantic``, ``instance``); ``labels_by_round``
    is :func:`twist_lib.runs.pseudo_labels_by_round`. ``colour_by``: ``semantic`` (one colour
    per class, the legend lists the ground truth's classes; grey: no pseudo label / unannotated)
    or ``instance`` (one colour per pseudo instance = the proposal that labelled the points;
    grey: none). The same ``max_points`` points are drawn in every view.
    """
    if colour_by not in ("semantic", "instance"):
        raise ValueError(f"colour_by must be 'semantic' or 'instance', got {colour_by!r}")
    if not labels_by_round:
        raise ValueError("labels_by_round is empty: no round labelled this scene")
    xyz = np.asarray(scene["xyz"])
    what = "classes" if colour_by == "semantic" else "instances"
    fig = make_subplots(1, 2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        horizontal_spacing=0.02,
                        subplot_titles=(f"pseudo {what} (grey: none)", f"true {what}"))
    rounds = sorted(labels_by_round)
    spans = []
    for t in rounds:
        labels = labels_by_round[t]
        traces = _view(xyz, labels["semantic"] if colour_by == "semantic" else None,
                       labels["instance"] if colour_by == "instance" else None, class_names,
                       max_points, seed)
        start = len(fig.data)
        for trace in traces:
            fig.add_trace(trace, row=1, col=1)
        spans.append((start, len(fig.data)))
    gt = _view(xyz, scene["semantic"] if colour_by == "semantic" else None,
               scene["instance"] if colour_by == "instance" else None, class_names, max_points,
               seed, legend=True)
    first_gt = len(fig.data)
    for trace in gt:
        fig.add_trace(trace, row=1, col=2)
    n = len(fig.data)
    steps = []
    for t, (a, b) in zip(rounds, spans):
        visible = [a <= i < b or i >= first_gt for i in range(n)]
        covered = float(np.mean(np.asarray(labels_by_round[t]["semantic"]) != IGNORE_INDEX))
        steps.append(dict(label=f"round {t}", method="update",
                          args=[{"visible": visible},
                                {"title.text": f"{title}round {t}: {covered:.0%} of the points "
                                               "carry a pseudo label"}]))
    active = len(rounds) - 1
    for i, visible in enumerate(steps[active]["args"][0]["visible"]):
        fig.data[i].visible = visible
    fig.update_layout(title=steps[active]["args"][1]["title.text"],
                      sliders=[dict(steps=steps, active=active, currentvalue=dict(prefix=""),
                                    x=0.05, len=0.9, pad=dict(t=10))],
                      scene=dict(aspectmode="data"), scene2=dict(aspectmode="data"),
                      legend=dict(itemsizing="constant"), height=560,
                      margin=dict(l=0, r=0, b=0, t=80))
    return fig


# ----------------------------------------------------------------------------------------------
# the per-scene table
# ----------------------------------------------------------------------------------------------
SORT_SCRIPT = """<script>
window.twistSortTable = window.twistSortTable || function (th) {
  var table = th.closest("table"), body = table.tBodies[0];
  var col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var down = th.getAttribute("data-order") !== "desc";
  Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("data-order"); });
  th.setAttribute("data-order", down ? "desc" : "asc");
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[col].getAttribute("data-value"), y = b.cells[col].getAttribute("data-value");
    if (x === "" || y === "") { return (x === "") - (y === ""); }     // empty cells last
    var nx = parseFloat(x), ny = parseFloat(y);
    var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return down ? -c : c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
};
</script>"""


def _td(value, fmt="{:.1%}"):
    if value is None:
        return '<td data-value="">–</td>'
    if isinstance(value, str):
        return f'<td data-value="{html.escape(value)}">{html.escape(value)}</td>'
    return f'<td data-value="{value:.6g}">{fmt.format(value)}</td>'


def scene_table_html(table: list[dict], max_rows: int = 60, table_id: str = "twist-scenes") -> str:
    """The per-scene table of :func:`twist_lib.runs.scene_quality` as HTML: scene, change of
    accuracy and coverage from its first to its last round, then each round's accuracy and
    coverage.

    Rows come in the table's order (most improved first), so the page reads right without
    JavaScript; with it, a click on a column header sorts by that column (again: reverses).
    More than ``max_rows`` scenes: the ``max_rows / 2`` most and least improved are kept, and a
    caption says so.
    """
    rounds = sorted({t for row in table for t in row["rounds"]})
    shown = table
    if len(table) > max_rows:
        half = max(1, max_rows // 2)
        shown = table[:half] + table[-half:]
    heads = ["scene", "Δ accuracy", "Δ coverage"] + [f"accuracy, round {t}" for t in rounds] \
        + [f"coverage, round {t}" for t in rounds]
    head = "".join(f'<th onclick="twistSortTable(this)" style="cursor:pointer" '
                   f'title="click to sort">{html.escape(h)} ⇅</th>' for h in heads)
    body = []
    for row in shown:
        cells = [_td(row["name"]), _td(row["change"]["sem_acc"], "{:+.1%}"),
                 _td(row["change"]["coverage"], "{:+.1%}")]
        cells += [_td(row["sem_acc"].get(t)) for t in rounds]
        cells += [_td(row["coverage"].get(t)) for t in rounds]
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = (f"{len(table)} unlabelled scenes, most improved accuracy first"
               if len(shown) == len(table) else
               f"the {len(shown) // 2} scenes whose accuracy improved most and the "
               f"{len(shown) - len(shown) // 2} that improved least, of {len(table)}")
    return (f'{SORT_SCRIPT}<div style="max-height:420px; overflow:auto">'
            f'<table id="{html.escape(table_id)}" class="twist-sortable">'
            f"<caption>{html.escape(caption)} (click a header to sort)</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


__all__ = ["rounds_figure", "quality_figure", "timing_figure", "pseudo_label_browser",
           "scene_table_html", "QUALITY", "SORT_SCRIPT"]
