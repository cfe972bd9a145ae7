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
:mod:`twist_lib.batch_runs`.

Command line::

    python -m twist_lib.runs batch --ratios 1 5 --seeds 0 1 --profile P --out DIR [-p KEY VALUE ...]
    python -m twist_lib.runs rounds RUN                      # the rounds table of a run folder
    python -m twist_lib.runs scenes RUN [--top N]            # per-scene quality, most improved first
    python -m twist_lib.runs predict RUN [--round T] [--split val] [--out DIR]

``batch`` executes ``book/pipeline.ipynb`` once per (ratio, seed) job with papermill
(:func:`twist_lib.batch_runs.run_batch`) into ``DIR/<ratio>pct_seed<seed>/`` (the executed
notebook, its ``timings.json`` and the job's run folder ``run/``), goes on with the next job when
one fails, and writes ``DIR/summary.csv`` and ``DIR/summary.md``: the final round of every job,
and the mean over seeds of each ratio beside the paper's Table 7. ``predict``
(:func:`twist_lib.pipeline.export_predictions`) writes the benchmark files of a round's model on
a split (``OUT/pred/<scene>.txt`` + masks, and that split's ground truth linked into ``OUT/gt/``)
for ``python -m twist_lib.evaluate --gt OUT/gt --pred OUT/pred --meta DATA``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import yaml

from .config import Config


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


def round_folders(run_dir) -> dict[int, Path]:
    """``{t: RUN/round_<t>}`` for every round folder present, in round order."""
    found = {}
    for path in Path(run_dir).glob("round_*"):
        suffix = path.name[len("round_"):]
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    return dict(sorted(found.items()))


def run_config(run_dir) -> Config:
    """The resolved config a run folder was trained with (``RUN/config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config; is {run_dir} a TWIST run folder?")
    return Config.from_dict(yaml.safe_load(path.read_text()) or {}, str(path))


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
    with :func:`twist_lib.pseudo_labels.read_pseudo_labels` (``semantic``, ``offset``,
    ``offset_valid``, ``instance`` = the proposal that labelled the point, -100 = none)."""
    from .pseudo_labels import pseudo_label_path, read_pseudo_labels
    out = {}
    for t, folder in round_folders(run_dir).items():
        path = pseudo_label_path(folder / "pseudo", scene)
        if t > 0 and path.is_file():
            out[t] = read_pseudo_labels(path, num_points=num_points)
    if not out:
        raise FileNotFoundError(f"{run_dir}: no round holds pseudo labels of scene {scene!r}")
    return out



def _cell(value, percent=False) -> str:
    """A table cell: '–' for None, a fraction in % (``percent``), else 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if percent else f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def rounds_markdown(rows: list[dict]) -> str:
    """A rounds table as Markdown (metrics in %, pseudo-label quality, seconds); "on objects"
    is ``object_sem_acc``, the accuracy of the pseudo classes given to object points."""
    lines = ["| round | AP | AP50 | AP25 | mIoU | sem_acc | on objects | offset_error (m) | "
             "coverage | pseudo-labelling (s) | training (s) |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['round']} | " + " | ".join(_cell(r.get(k), True) for k in METRICS)
                     + f" | {_cell(r.get('sem_acc'), True)} | "
                     + f"{_cell(r.get('object_sem_acc'), True)} | {_cell(r.get('offset_error'))} | "
                     + f"{_cell(r.get('coverage'), True)} | {_cell(r.get('pseudo_s'))} | "
                     + f"{_cell(r.get('train_s'))} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m twist_lib.runs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("batch", help="run book/pipeline.ipynb per label ratio and seed")
    b.add_argument("--ratios", nargs="+", required=True, help="label ratios in percent")
    b.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    b.add_argument("--profile", default=os.environ.get("TWIST_PROFILE") or "cpu",
                   choices=["smoke", "cpu", "gpu"], help="sizes and steps (default: cpu)")
    b.add_argument("--out", required=True, help="batch folder (one sub-folder per job)")
    b.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"), help="a notebook parameter for every job (YAML value)")
    b.add_argument("--notebook", default=None, help="the notebook (default book/pipeline.ipynb)")
    r = sub.add_parser("rounds", help="the rounds table of a run folder")
    r.add_argument("run")
    s = sub.add_parser("scenes", help="per-scene pseudo-label quality, most improved first")
    s.add_argument("run")
    s.add_argument("--top", type=int, default=20, help="scenes shown (default 20)")
    s.add_argument("--by", default="sem_acc", choices=list(QUALITY))
    e = sub.add_parser("predict", help="benchmark files of a round's model on a split")
    e.add_argument("run")
    e.add_argument("--round", type=int, default=None, help="round (default: the last finished)")
    e.add_argument("--split", default="val")
    e.add_argument("--out", default=None, help="default RUN/benchmark_round<t>_<split>")
    e.add_argument("--device", default=None, help="default: the run's device")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from . import batch_runs, pipeline      # here: both import this module
    try:
        if args.command == "batch":
            params = {k: yaml.safe_load(v) for k, v in args.parameter}
            notebook = args.notebook

            def execute(job, profile, p):
                return batch_runs.execute_pipeline(job, profile, p, notebook)
            rows = batch_runs.run_batch(args.ratios, args.seeds, args.profile, args.out, params,
                                        execute=execute)
            print(batch_runs.summary_markdown(rows))
            print(f"summary: {Path(args.out) / 'summary.csv'}, {Path(args.out) / 'summary.md'}")
            return 0 if all(r["status"] == "ok" for r in rows) else 1
        if args.command == "rounds":
            print(rounds_markdown(read_rounds(args.run)))
        elif args.command == "scenes":
            rows = scene_quality(args.run, by=args.by)
            print(f"| scene | change of {args.by} | " + " | ".join(
                f"round {t}" for t in sorted({t for r in rows for t in r["rounds"]})) + " |")
            for row in rows[:args.top]:
                print(f"| {row['name']} | {_cell(row['improvement'])} | "
                      + " | ".join(_cell(row[args.by][t]) for t in row["rounds"]) + " |")
        elif args.command == "predict":
            out = pipeline.export_predictions(args.run, args.round, args.split, args.out,
                                              args.device)
            cfg = run_config(args.run)
            print(f"benchmark files: {out}\n  python -m twist_lib.evaluate --gt {out / 'gt'} "
                  f"--pred {out / 'pred'} --meta {pipeline._data_root(cfg, Path(args.run))}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
