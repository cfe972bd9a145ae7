"""TWIST run folders: what each round left behind, read back; and the command line over them.

A run folder is the one :func:`twist_lib.self_training.run_twist` writes (``config.yaml``,
``rounds.csv``, ``round_<t>/{checkpoints,pseudo/<scene>.npz,pseudo_quality.json,...}``). This
module only reads it; the pages that show a run use it (``book/pipeline.ipynb`` reads its own
run back with it, ``book/at_scale.md`` documents the commands)::

    rows = read_rounds(run)                 # rounds.csv: AP, AP50, AP25, mIoU, pseudo-label quality, time
    table = scene_quality(run)              # per unlabelled scene and round: accuracy, coverage, offset error
    labels = pseudo_labels_by_round(run, scene)   # {round: label dict} of one scene

The pipeline job (its config, training, the benchmark files of a round) is
:mod:`twist_lib.pipeline`; the batch runner over label ratios and seeds is
:mod:`twist_lib.book.batch`; the command line over run folders is ``python -m twist_lib runs rounds|scenes|predict``
(:mod:`twist_lib.__main__`).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml

from .checkpoints import round_folders
from .config import Config
from .data.pseudo_files import pseudo_label_path, read_pseudo_labels
from .paths import repo_root


#: Paper Table 7: AP50 (%) of TWIST on ScanNet v2 val after each round (round 0 = Sup-only)
PAPER_TABLE7_AP50 = {
    "1": (9.8, 14.1, 15.6, 16.5, 17.0, 17.1),
    "5": (32.0, 38.7, 42.3, 43.7, 44.1, 44.1),
    "10": (42.8, 45.8, 48.3, 49.5, 49.7, 49.7),
    "20": (47.9, 51.2, 52.0, 52.8, 52.9, 52.9),
}
METRICS = ("AP", "AP50", "AP25", "miou")
QUALITY = ("sem_acc", "coverage", "offset_error")


# ----------------------------------------------------------------------------------------------
# reading a run folder
# ----------------------------------------------------------------------------------------------
def _number(text):
    """A rounds.csv cell as a number; '' and 'nan' (a metric nothing was scored for) -> None."""
    if text is None or text == "":
        return None
    value = float(text)
    return None if math.isnan(value) else value


def read_rounds(run_dir) -> list[dict]:
    """The rows of ``RUN/rounds.csv``, one per finished round, in round order.

    Each row maps the columns of :data:`twist_lib.self_training.ROUND_KEYS` to numbers: ``round``
    an int, the rest floats, or None where the run had nothing to measure (round 0 has no pseudo
    labels; a round whose pseudo labels cover no point has no accuracy)."""
    path = Path(run_dir) / "rounds.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no rounds table; is {run_dir} a TWIST run folder "
                                "(python -m twist_lib twist, or book/pipeline.ipynb)?")
    with path.open(newline="") as f:
        rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        row["round"] = int(row["round"])
    return sorted(rows, key=lambda r: r["round"])


def run_config(run_dir) -> Config:
    """The resolved config a run folder was trained with (``RUN/config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config; is {run_dir} a TWIST run folder?")
    return Config.from_dict(yaml.safe_load(path.read_text()) or {}, str(path))


def dataset_folder(cfg: Config, run_dir) -> Path:
    """The dataset folder of a run's config; a relative ``data_root`` is looked up from the
    working directory, then from the repository holding the run folder."""
    path = Path(cfg.data_root)
    if path.is_absolute() or path.exists():
        return path
    try:
        return repo_root(run_dir) / path
    except FileNotFoundError:
        return path


def scene_quality(run_dir, by: str = "sem_acc") -> list[dict]:
    """Pseudo-label quality of every unlabelled scene in every round, most improved first.

    Reads ``per_scene`` of each round's ``pseudo_quality.json`` (rounds t >= 1). One dict per
    scene: ``name``, ``rounds`` (the rounds that labelled it), ``sem_acc``, ``coverage`` and
    ``offset_error`` (each ``{t: value}``, None where nothing was scored), ``change`` (each
    metric's last minus first value over the scene's rounds, None if either is missing) and
    ``improvement`` = ``change[by]`` (``by``: ``sem_acc``, ``coverage`` or ``offset_error``).
    Sorted by :func:`sort_by_improvement`.
    """
    if by not in QUALITY:
        raise ValueError(f"by must be one of {QUALITY}, got {by!r}")
    scenes: dict[str, dict] = {}
    for t, folder in round_folders(run_dir).items():
        path = folder / "pseudo_quality.json"
        if t == 0 or not path.is_file():
            continue
        for entry in json.loads(path.read_text()).get("per_scene", []):
            row = scenes.setdefault(entry["name"], {"name": entry["name"], "rounds": [],
                                                    **{k: {} for k in QUALITY}})
            row["rounds"].append(t)
            for key in QUALITY:
                value = entry.get(key)
                row[key][t] = None if value is None or math.isnan(value) else float(value)
    for row in scenes.values():
        row["change"] = {}
        for key in QUALITY:
            first, last = row[key].get(row["rounds"][0]), row[key].get(row["rounds"][-1])
            row["change"][key] = None if first is None or last is None else last - first
        row["improvement"] = row["change"][by]
    return sort_by_improvement(list(scenes.values()), by)


def sort_by_improvement(rows: list[dict], by: str = "sem_acc") -> list[dict]:
    """Scenes that improved most first (for ``offset_error``, the largest *drop* first); scenes
    without an improvement (a round that scored nothing) last, each group by name."""
    sign = 1.0 if by == "offset_error" else -1.0
    return sorted(rows, key=lambda r: (r["improvement"] is None,
                                       0.0 if r["improvement"] is None else sign * r["improvement"],
                                       r["name"]))


def pseudo_labels_by_round(run_dir, scene: str, num_points: int | None = None) -> dict[int, dict]:
    """``{t: label dict}`` of one unlabelled scene in every round that labelled it (t >= 1), read
    with :func:`twist_lib.data.pseudo_files.read_pseudo_labels` (``semantic``, ``offset``,
    ``offset_valid``, ``instance`` = the proposal that labelled the point, -100 = none)."""
    out = {}
    for t, folder in round_folders(run_dir).items():
        path = pseudo_label_path(folder / "pseudo", scene)
        if t > 0 and path.is_file():
            out[t] = read_pseudo_labels(path, num_points=num_points)
    if not out:
        raise FileNotFoundError(f"{run_dir}: no round holds pseudo labels of scene {scene!r}")
    return out


def table_cell(value, percent=False) -> str:
    """A table cell: '–' for None, a fraction in % (``percent``), else 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if percent else f"{value:.4g}"
    return str(value)


def rounds_markdown(rows: list[dict]) -> str:
    """A rounds table as Markdown (metrics in %, pseudo-label quality, seconds); "on objects"
    is ``object_sem_acc``, the accuracy of the pseudo classes given to object points."""
    lines = ["| round | AP | AP50 | AP25 | mIoU | sem_acc | on objects | offset_error (m) | "
             "coverage | pseudo-labelling (s) | training (s) |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['round']} | " + " | ".join(table_cell(r.get(k), True) for k in METRICS)
                     + f" | {table_cell(r.get('sem_acc'), True)} | "
                     + f"{table_cell(r.get('object_sem_acc'), True)} | {table_cell(r.get('offset_error'))} | "
                     + f"{table_cell(r.get('coverage'), True)} | {table_cell(r.get('pseudo_s'))} | "
                     + f"{table_cell(r.get('train_s'))} |")
    return "\n".join(lines)
