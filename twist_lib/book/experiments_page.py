"""The helpers of the book's experiments page (``book/experiments.ipynb``): the paper's numbers,
the collected results (:mod:`twist_lib.experiments`) as means with their spread over seeds, the
label-efficiency curve, and one verdict per claim.

A claim compares two rows of a table at one label ratio (TWIST against the control, module C
against point-wise thresholding, ...). It *holds* here only when the difference of the means
over seeds exceeds the spread, taken as the sum of the two rows' sample standard deviations;
it is *reversed* when the difference is below minus the spread; otherwise it is not shown here.
With fewer than two seeds a row is not judged at all.

Rows shared between tables are run once (``experiments/paper_tables.yaml``): Table 4 group I is
Table 1's control, group VI and Table 5's "both" and Table 6 group V are Table 1's TWIST, at the
ratio the ablations ran at (the paper's 5 %; 1 % on the cpu benchmark).
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..result_tables import VALUES, read_csv, summarise
from ..runs import PAPER_TABLE7_AP50

#: Paper Table 4 (ScanNet v2 val, 5 %): group -> (mAP, AP50, AP25).
PAPER_TABLE4 = {"I": (18.2, 32.0, 47.0), "II": (20.9, 36.4, 50.1), "III": (19.7, 35.2, 48.6),
                "IV": (21.3, 36.8, 50.2), "V": (24.8, 41.2, 53.6), "VI": (27.0, 44.1, 56.2)}
#: Paper Table 5 (5 %): row -> (mAP, AP50, AP25, mIoU).
PAPER_TABLE5 = {"no_offset_to_semantic": (22.5, 39.4, 51.7, 49.4),
                "no_semantic_to_offset": (21.7, 38.7, 50.5, 52.0),
                "both": (27.0, 44.1, 56.2, 54.9)}
#: Paper Table 6 (5 %): group -> (mAP, AP50, AP25).
PAPER_TABLE6 = {"I": (22.3, 38.0, 51.8), "II": (25.6, 42.3, 54.5), "III": (25.9, 42.7, 55.0),
                "IV": (26.6, 43.6, 55.7), "V": (27.0, 44.1, 56.2)}

#: Rows a table borrows from Table 1 at 5 % (run once, shown in both).
SHARED = {("table4", "I"): ("table1", "control"), ("table4", "VI"): ("table1", "twist"),
          ("table5", "both"): ("table1", "twist"), ("table6", "V"): ("table1", "twist"),
          ("extensions", "defaults"): ("table1", "twist"),
          ("method", "twist"): ("table1", "twist"), ("method", "control"): ("table1", "control")}

#: The claims the page judges: (text, table, row A, row B, the paper's label ratio or None,
#: the paper's difference A - B in AP50 points or None). Each is judged at every ratio the
#: table has rows at (an ablation may run where TWIST gains most here, not at the paper's 5 %),
#: else at the paper's ratio ("no results yet").
CLAIMS = [
    ("TWIST beats Sup-only", "table1", "twist", "sup_only", None, "table7"),
    ("TWIST beats the same-schedule control (the pseudo labels, not the extra steps)",
     "table1", "twist", "control", None, None),
    ("TWIST beats the same-schedule control after 5 rounds (Table 7)", "table7", "twist",
     "control", None, None),
    ("pseudo labels help (Table 4, IV over I)", "table4", "IV", "I", "5", 36.8 - 32.0),
    ("module C beats point-wise thresholding (Table 4, V over IV)", "table4", "V", "IV", "5",
     41.2 - 36.8),
    ("module B helps (Table 4, VI over V)", "table4", "VI", "V", "5", 44.1 - 41.2),
    ("two-way beats one-way: offset-to-semantic (Table 5)", "table5", "both",
     "no_offset_to_semantic", "5", 44.1 - 39.4),
    ("two-way beats one-way: semantic-to-offset (Table 5)", "table5", "both",
     "no_semantic_to_offset", "5", 44.1 - 38.7),
    ("backbone features beat rgb as Psi's input (Table 6, II over I)", "table6", "II", "I", "5",
     42.3 - 38.0),
    ("Psi's augmentations help (Table 6, V over II)", "table6", "V", "II", "5", 44.1 - 42.3),
    ("module B helps with noisy labels (Fig. 4b)", "fig4b", "with_B", "without_B", "10", None),
    ("the extensions help (both on over the paper's letter)", "extensions", "defaults", "letter",
     "5", None),
    ("cutting merged proposals helps (method: split over TWIST)", "method", "split", "twist",
     None, None),
    ("TWIST with the cut beats the same-schedule control", "method", "split", "control",
     None, None),
    ("sure points only helps (method: confident over TWIST)", "method", "confident", "twist",
     None, None),
    ("TWIST with sure points only beats the same-schedule control", "method", "confident",
     "control", None, None),
]


def read_results(path) -> list[dict]:
    """The rows of a collected results CSV (``python -m twist_lib experiments collect``) with
    numbers parsed (empty cells None)."""
    rows = read_csv(path)
    for row in rows:
        for key in ("seed", "round"):
            row[key] = int(row[key])
        for key in VALUES:
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


def final_rounds(rows: list[dict]) -> list[dict]:
    """Each run's last finished round only (Sup-only runs: their one row)."""
    last = {}
    for r in rows:
        key = (r["table"], r["row"], str(r["label_ratio"]), r["seed"])
        if key not in last or r["round"] > last[key]["round"]:
            last[key] = r
    return list(last.values())


def with_shared(rows: list[dict]) -> list[dict]:
    """``rows`` plus copies of the Table 1 rows other tables borrow (:data:`SHARED`), at the
    ratios where the borrowing table has rows of its own (at 5 %, the paper's, where it has
    none)."""
    own: dict[str, set] = {}
    for r in rows:
        own.setdefault(r["table"], set()).add(str(r["label_ratio"]))
    extra = [{**r, "table": table, "row": row} for (table, row), (t1, r1) in SHARED.items()
             for r in rows if (r["table"], r["row"]) == (t1, r1)
             and str(r["label_ratio"]) in own.get(table, {"5"})]
    return rows + extra


def stats(summary: list[dict], table: str, row: str, ratio, metric: str = "AP50"):
    """``(mean, std, n)`` of ``metric`` for a row of :func:`summary_of` (None if absent); of
    its last round when its seeds have not all reached the same one."""
    found = [s for s in summary
             if (s["table"], s["row"], str(s["label_ratio"])) == (table, row, str(ratio))]
    if not found:
        return None
    s = max(found, key=lambda s: int(s["round"]))
    return s[f"{metric}_mean"], s[f"{metric}_std"], s[f"{metric}_n"]


def summary_of(rows: list[dict]) -> list[dict]:
    """Mean, std and n over seeds of every run's last round, shared rows included."""
    return summarise(with_shared(final_rounds(rows)))


def verdict(a, b) -> dict:
    """The difference of two ``(mean, std, n)`` and its verdict (module docstring)."""
    if a is None or b is None or a[0] is None or b[0] is None:
        return {"diff": None, "spread": None, "verdict": "no results yet"}
    diff = a[0] - b[0]
    if min(a[2], b[2]) < 2:
        return {"diff": diff, "spread": None, "verdict": "one seed: not judged"}
    spread = (a[1] or 0.0) + (b[1] or 0.0)
    word = ("holds" if diff > spread else "reversed" if diff < -spread
            else "not shown (within the spread)")
    return {"diff": diff, "spread": spread, "verdict": word}


def judge_claims(summary: list[dict], metric: str = "AP50", tables=None) -> list[dict]:
    """One dict per claim and ratio: ``claim``, ``ratio``, ``paper`` (A - B in points, where
    the paper has it), ``here`` (A - B in points) +- ``spread``, ``verdict``; the claims of
    ``tables`` only when given."""
    out = []
    for text, table, a, b, ratio, paper in CLAIMS:
        if tables is not None and table not in tables:
            continue
        ratios = sorted({str(s["label_ratio"]) for s in summary if s["table"] == table},
                        key=float) or ([ratio] if ratio else [])
        for r in ratios:
            v = verdict(stats(summary, table, a, r, metric), stats(summary, table, b, r, metric))
            p = paper
            if paper == "table7":
                p = (PAPER_TABLE7_AP50[r][-1] - PAPER_TABLE7_AP50[r][0]) if r in PAPER_TABLE7_AP50 else None
            elif p is not None and ratio and r != ratio:
                p = f"{p:+.1f} at {ratio} %"
            out.append({"claim": text, "ratio": r, "paper": p,
                        "here": None if v["diff"] is None else 100 * v["diff"],
                        "spread": None if v["spread"] is None else 100 * v["spread"],
                        "verdict": v["verdict"]})
    return out


def claims_markdown(claims: list[dict]) -> str:
    """The claims as a Markdown table (points of AP50)."""
    def num(x, sign=True):
        if isinstance(x, str):  # the paper's difference at another ratio than ours
            return x
        return "–" if x is None else (f"{x:+.1f}" if sign else f"{x:.1f}")
    lines = ["| claim | labels | paper (ScanNet) | here | spread | verdict |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['ratio']} % | {num(c['paper'])} | {num(c['here'])} | "
              f"{num(c['spread'], False)} | {c['verdict']} |" for c in claims]
    return "\n".join(lines)


def curve_figure(summary: list[dict], metric: str = "AP50") -> go.Figure:
    """The label-efficiency curve: Sup-only, the control and TWIST (last round), mean +- std
    over seeds, beside the paper's Sup-only and TWIST on ScanNet v2 (Table 7)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("here (mean ± std over seeds)",
                                                        "paper, ScanNet v2 val (Table 7)"))
    for row, name in (("sup_only", "Sup-only"), ("control", "control (no pseudo labels)"),
                      ("twist", "TWIST")):
        points = sorted(((float(s["label_ratio"]), s) for s in summary
                         if s["table"] == "table1" and s["row"] == row), key=lambda p: p[0])
        if not points:
            continue
        fig.add_trace(go.Scatter(
            x=[x for x, _ in points], y=[100 * s[f"{metric}_mean"] for _, s in points],
            error_y=dict(array=[100 * (s[f"{metric}_std"] or 0.0) for _, s in points]),
            mode="lines+markers", name=name), row=1, col=1)
    ratios = sorted(PAPER_TABLE7_AP50, key=float)
    for index, name in ((0, "Sup-only (paper)"), (-1, "TWIST (paper)")):
        fig.add_trace(go.Scatter(x=[float(r) for r in ratios],
                                 y=[PAPER_TABLE7_AP50[r][index] for r in ratios],
                                 mode="lines+markers", name=name, line=dict(dash="dot")),
                      row=1, col=2)
    fig.update_xaxes(type="log", title_text="labelled scenes (%)")
    fig.update_yaxes(title_text=f"{metric} (%)", row=1, col=1)
    fig.update_layout(height=420, margin=dict(t=40, l=40, r=10, b=40))
    return fig


def table_markdown(summary: list[dict], table: str, paper: dict | None = None,
                   metrics=("AP", "AP50", "AP25", "mIoU")) -> str:
    """One table of results: a line per (row, ratio) with mean ± std (n) of each metric in %,
    and the paper's numbers for that row where given."""
    def cell(s, m):
        mean, std, n = s[f"{m}_mean"], s[f"{m}_std"], s[f"{m}_n"]
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return "–"
        return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}") + f" ({n})"
    head = "| row | labels | " + " | ".join(metrics) + (" | paper |" if paper else " |")
    lines = [head, "|---" * (len(metrics) + 2 + bool(paper)) + "|"]
    for s in sorted((s for s in summary if s["table"] == table),
                    key=lambda s: (float(s["label_ratio"]), s["row"])):
        row = f"| {s['row']} | {s['label_ratio']} % | " + " | ".join(cell(s, m) for m in metrics)
        if paper:
            row += " | " + " / ".join(f"{v:.1f}" for v in paper.get(s["row"], ())) + " |"
        lines.append(row + ("" if paper else " |"))
    return "\n".join(lines)


def quality_figure(rows: list[dict], table: str = "table1", row: str = "twist") -> go.Figure:
    """Fig. 4a's shape: the pseudo labels' semantic accuracy (all points and object points) and
    offset error per round of ``row``, mean +- std over seeds, one line per label ratio."""
    per_round = summarise([r for r in rows if (r["table"], r["row"]) == (table, row)
                           and r["round"] > 0])
    fig = make_subplots(rows=1, cols=3, subplot_titles=("semantic accuracy (%)",
                                                        "on object points (%)",
                                                        "offset error (cm)"))
    for ratio in sorted({s["label_ratio"] for s in per_round}, key=float):
        points = sorted((s for s in per_round if s["label_ratio"] == ratio),
                        key=lambda s: s["round"])
        for col, (key, scale) in enumerate((("sem_acc", 100), ("object_sem_acc", 100),
                                            ("offset_error", 100)), start=1):
            fig.add_trace(go.Scatter(
                x=[s["round"] for s in points],
                y=[None if s[f"{key}_mean"] is None else scale * s[f"{key}_mean"] for s in points],
                error_y=dict(array=[scale * (s[f"{key}_std"] or 0.0) for s in points]),
                mode="lines+markers", name=f"{ratio} %", legendgroup=ratio,
                showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="round", dtick=1)
    fig.update_layout(height=360, margin=dict(t=40, l=40, r=10, b=40))
    return fig


def table7_markdown(rows: list[dict], table: str, metric: str = "AP50") -> str:
    """Table 7's shape: a line per twist row and ratio of ``table`` with ``metric`` after each
    round, mean ± std over seeds in %, and the paper's TWIST rounds (ScanNet v2) under the
    twist row."""
    per_round = summarise([r for r in rows if r["table"] == table and r["kind"] == "twist"])
    lines_of = {}
    for s in per_round:
        lines_of.setdefault((float(s["label_ratio"]), s["row"]), {})[s["round"]] = s
    last = max((k for cells in lines_of.values() for k in cells), default=0)
    lines = ["| row | labels | " + " | ".join(f"round {k}" for k in range(last + 1)) + " |",
             "|---|---|" + "---|" * (last + 1)]
    for (ratio, row), cells in sorted(lines_of.items()):
        def cell(k):
            s = cells.get(k)
            mean = None if s is None else s[f"{metric}_mean"]
            if mean is None:
                return "–"
            std = s[f"{metric}_std"]
            return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")
        label = cells[min(cells)]["label_ratio"]
        lines.append(f"| {row} | {label} % | " + " | ".join(cell(k) for k in range(last + 1))
                     + " |")
        paper = PAPER_TABLE7_AP50.get(str(label)) if row == "twist" and metric == "AP50" else None
        if paper:
            values = [f"{v:.1f}" for v in paper[:last + 1]]
            values += ["–"] * (last + 1 - len(values))
            lines.append(f"| paper's TWIST (ScanNet) | {label} % | " + " | ".join(values) + " |")
    return "\n".join(lines)


def table7_figure(rows: list[dict], table: str, metric: str = "AP50") -> go.Figure:
    """``metric`` after each round of every row of ``table`` (TWIST, the control), mean +- std
    over seeds, one line per row and label ratio: where the rounds stop paying."""
    per_round = summarise([r for r in rows if r["table"] == table and r["kind"] == "twist"])
    fig = go.Figure()
    for ratio, row in sorted({(s["label_ratio"], s["row"]) for s in per_round},
                             key=lambda p: (float(p[0]), p[1])):
        points = sorted((s for s in per_round if (s["label_ratio"], s["row"]) == (ratio, row)),
                        key=lambda s: s["round"])
        fig.add_trace(go.Scatter(
            x=[s["round"] for s in points], y=[100 * s[f"{metric}_mean"] for s in points],
            error_y=dict(array=[100 * (s[f"{metric}_std"] or 0.0) for s in points]),
            mode="lines+markers", name=f"{row}, {ratio} %",
            line=dict(dash="dot" if row == "control" else "solid")))
    fig.update_xaxes(title_text="round (0 = Sup-only)", dtick=1)
    fig.update_yaxes(title_text=f"{metric} (%)")
    fig.update_layout(height=380, margin=dict(t=30, l=40, r=10, b=40))
    return fig
