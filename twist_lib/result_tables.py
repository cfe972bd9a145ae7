"""The experiments' result tables: one row per run and round (:data:`COLUMNS`, what
``python -m twist_lib experiments collect`` writes) and their mean, spread and count over seeds
(:func:`summarise`), the form the book's experiments page shows beside the paper's tables."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from .atomic import atomic_csv

__all__ = ["COLUMNS", "VALUES", "SUMMARY_COLUMNS", "summarise", "merge_rows", "read_csv", "write_csv"]

COLUMNS = ("table", "row", "kind", "label_ratio", "seed", "round", "AP", "AP50", "AP25", "mIoU",
           "sem_acc", "object_sem_acc", "offset_error", "coverage", "train_s", "pseudo_s", "steps")
VALUES = COLUMNS[6:]
SUMMARY_COLUMNS = ("table", "row", "kind", "label_ratio", "round", "seeds", *(
    f"{c}_{stat}" for c in VALUES for stat in ("mean", "std", "n")))


def summarise(rows: list[dict]) -> list[dict]:
    """Mean, sample standard deviation (n - 1; None when n < 2) and n over seeds of each value
    column per (table, row, label_ratio, round), empty and NaN cells left out (Tables 1, 4-7)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["table"], r["row"], str(r["label_ratio"]), int(r["round"]))
        groups.setdefault(key, []).append(r)
    out = []
    for (table, row, ratio, rnd), members in groups.items():
        out.append(dict(table=table, row=row, kind=members[0].get("kind"), label_ratio=ratio,
                        round=rnd, seeds=" ".join(str(m["seed"]) for m in members)))
        for col in VALUES:
            cells = [float(m[col]) for m in members if m.get(col) not in (None, "")]
            v = [c for c in cells if not math.isnan(c)]
            out[-1].update({f"{col}_mean": statistics.fmean(v) if v else None, f"{col}_n": len(v),
                            f"{col}_std": statistics.stdev(v) if len(v) > 1 else None})
    return out


def write_csv(rows: list[dict], path, columns=COLUMNS) -> Path:
    """``rows`` as CSV (``collect``'s columns unless told), None as an empty cell, atomically."""
    cells = [{k: "" if r.get(k) is None else r[k] for k in columns} for r in rows]
    return atomic_csv(path, cells, columns)


def run_key(row: dict) -> tuple:
    """The run a row belongs to: (table, row, label ratio, seed), as strings."""
    return tuple(str(row[k]) for k in ("table", "row", "label_ratio", "seed"))


def merge_rows(published: list[dict], collected: list[dict]) -> list[dict]:
    """``collected`` plus the ``published`` rows of runs it has no row of: results committed by
    an earlier session (whose run folders are gone) survive a later ``collect``; a run collected
    again replaces all its published rows."""
    fresh = {run_key(r) for r in collected}
    return [r for r in published if run_key(r) not in fresh] + list(collected)


def read_csv(path) -> list[dict]:
    """The rows of a results CSV as written by :func:`write_csv` (cells as strings)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
