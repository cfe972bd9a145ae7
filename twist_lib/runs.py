"""TWIST run folders: what each round left behind, the pipeline notebook's config and job, and the
batch runner that executes that notebook over label ratios and seeds.

A run folder is the one :func:`twist_lib.self_training.run_twist` writes (``config.yaml``,
``rounds.csv``, ``round_<t>/{checkpoints,pseudo/<scene>.npz,pseudo_quality.json,...}``). This
module only reads it (and exports benchmark files from its checkpoints)::

    rows = read_rounds(run)                 # rounds.csv: AP, AP50, AP25, mIoU, pseudo-label quality, time
    table = scene_quality(run)              # per unlabelled scene and round: accuracy, coverage, offset error
    labels = pseudo_labels_by_round(run, scene)   # {round: label dict} of one scene

Command line::

    python -m twist_lib.runs batch --ratios 1 5 --seeds 0 1 --profile P --out DIR [-p KEY VALUE ...]
    python -m twist_lib.runs rounds RUN                      # the rounds table of a run folder
    python -m twist_lib.runs scenes RUN [--top N]            # per-scene quality, most improved first
    python -m twist_lib.runs predict RUN [--round T] [--split val] [--out DIR]

``batch`` executes ``book/pipeline.ipynb`` once per (ratio, seed) job with papermill
(:func:`twist_lib.book.run_notebooks`) into ``DIR/<ratio>pct_seed<seed>/`` (the executed
notebook, its ``timings.json`` and the job's run folder ``run/``), goes on with the next job when
one fails, and writes ``DIR/summary.csv`` and ``DIR/summary.md``: the final round of every job,
and the mean over seeds of each ratio beside the paper's Table 7. ``predict`` writes the
benchmark files of a round's model on a split (``OUT/pred/<scene>.txt`` + masks, and that split's
ground truth linked into ``OUT/gt/``) for ``python -m twist_lib.evaluate --gt OUT/gt --pred
OUT/pred --meta DATA``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import Config, load_yaml

# paper Table 7: AP50 (%) of TWIST on ScanNet v2 val after each round (round 0 = Sup-only)
PAPER_TABLE7_AP50 = {
    "1": (9.8, 14.1, 15.6, 16.5, 17.0, 17.1),
    "5": (32.0, 38.7, 42.3, 43.7, 44.1, 44.1),
    "10": (42.8, 45.8, 48.3, 49.5, 49.7, 49.7),
    "20": (47.9, 51.2, 52.0, 52.8, 52.9, 52.9),
}
PIPELINE_NOTEBOOK = Path("book") / "pipeline.ipynb"
METRICS = ("AP", "AP50", "AP25", "miou")
QUALITY = ("sem_acc", "coverage", "offset_error")
# keys a resumed run may change: they do not change what the rounds compute
RESUMABLE_CHANGES = ("run_dir", "init_checkpoint", "progress", "device",
                     "num_workers", "cpu_threads", "log_every", "ckpt_every", "rounds",
                     "pseudo_batch_size")


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


# ----------------------------------------------------------------------------------------------
# the pipeline notebook's config and job
# ----------------------------------------------------------------------------------------------
def default_config_file(profile: str, dataset: str, root=None) -> str:
    """The YAML a pipeline job applies over its profile when none is named:
    ``configs/twist_<dataset>.yaml`` at the ``gpu`` profile (the paper's settings for that
    dataset: rounds, Psi's grid and width, ...), none at ``smoke`` and ``cpu``."""
    from .book import repo_root
    if profile != "gpu":
        return ""
    path = Path("configs") / f"twist_{dataset}.yaml"
    return str(path) if (repo_root(root) / path).is_file() else ""


def pipeline_config(profile: str = "", config_file: str = "", **params) -> Config:
    """The one :class:`~twist_lib.config.Config` of a pipeline job (``book/pipeline.ipynb``).

    Layers, later wins: the profile (``profile``, empty = ``$TWIST_PROFILE``, else ``cpu``), the
    YAML ``config_file`` (empty = :func:`default_config_file`; its ``profile`` key is ignored),
    then ``params``, the notebook's parameters, where ``""`` and ``None`` mean "not set". Paths
    (``data_root``, ``run_dir``, ``init_checkpoint``) are made absolute against the repository
    root, as :func:`twist_lib.book.notebook_config` does, and ``run_dir`` defaults to TWIST's
    ``runs/twist_<dataset>_<profile>_<ratio>pct``.
    """
    from .book import notebook_config, repo_root, resolve_profile
    root = repo_root()
    profile = resolve_profile(profile)
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    unknown = sorted(set(given) - set(Config.keys()))
    if unknown:
        raise KeyError(f"unknown config key(s) {unknown}; `python -m twist_lib config` lists them")
    dataset = given.get("dataset") or Config.for_profile(profile).dataset
    config_file = config_file or default_config_file(profile, str(dataset), root)
    values = {}
    if config_file:
        path = Path(config_file) if Path(config_file).is_absolute() else root / config_file
        values = load_yaml(path)
        values.pop("profile", None)
    values.update(given)
    cfg = notebook_config(profile, **values)
    if not values.get("run_dir"):
        cfg.run_dir = str(root / dataclasses.replace(cfg, run_dir="").resolved_run_dir("twist"))
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).is_absolute():
        cfg.init_checkpoint = str(root / cfg.init_checkpoint)
    return cfg.validate()


def config_changes(run_dir, cfg: Config) -> dict:
    """``{key: (in the run folder, in cfg)}`` for the keys where ``cfg`` differs from the config
    a run folder was started with, except the ones a resume may change
    (:data:`RESUMABLE_CHANGES`: the run folder, devices, bookkeeping, more rounds). The dataset
    folder counts as changed only if it is another folder: a relative path (the command line's)
    and an absolute one (the notebook's) may name the same."""
    run_dir = Path(run_dir)
    saved = run_config(run_dir)
    changes = {}
    for key, ours in cfg.to_dict().items():
        theirs = getattr(saved, key)
        if key in RESUMABLE_CHANGES or theirs == ours:
            continue
        if key == "data_root" and _data_root(saved, run_dir).resolve() == _data_root(cfg, run_dir).resolve():
            continue
        changes[key] = (theirs, ours)
    return changes


def run_pipeline(cfg: Config, resume="auto") -> list[dict]:
    """Train TWIST for ``cfg`` (round 0 and ``cfg.rounds`` rounds) with
    :func:`twist_lib.self_training.run_twist`, or finish or extend the run in its folder.

    ``resume="auto"`` resumes when the run folder already holds a run, else starts one. A run
    folder started with other settings (:func:`config_changes`) is an error naming them: mixing
    two configs in one run gives numbers nobody can read. Returns the rows of ``rounds.csv``
    (:func:`read_rounds`)."""
    from .self_training import run_twist
    run = Path(cfg.resolved_run_dir("twist"))
    exists = (run / "config.yaml").is_file()
    if resume == "auto":
        resume = exists
    if exists and resume:
        changed = config_changes(run, cfg)
        if changed:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ValueError(f"{run}: this run was started with other settings ({listed}); "
                             "choose another run_dir, or delete the folder to start again")
    run_twist(cfg, resume=bool(resume))
    return read_rounds(run)


# ----------------------------------------------------------------------------------------------
# benchmark files of a trained round
# ----------------------------------------------------------------------------------------------
def _data_root(cfg: Config, run_dir: Path) -> Path:
    """The run's dataset folder; a relative one is looked up from here, then from the
    repository holding the run folder."""
    path = Path(cfg.data_root)
    if path.is_absolute() or path.exists():
        return path
    from .book import repo_root
    try:
        return repo_root(run_dir) / path
    except FileNotFoundError:
        return path


def export_predictions(run_dir, round_index: int | None = None, split: str = "val", out=None,
                       device: str | None = None, progress: bool = True) -> Path:
    """Write the benchmark files of round ``round_index`` (default: the last finished one) of a
    run folder on the scenes of ``split``; returns the output folder ``OUT`` (default
    ``RUN/benchmark_round<t>_<split>``).

    ``OUT/pred/<scene>.txt`` (+ masks) are the instances of
    :func:`twist_lib.inference.predict_scene` with the round's Phi (and its Psi when the run
    has ``test_time_recorrection``), in the format of
    :func:`twist_lib.evaluation.write_predictions`; ``OUT/gt/`` receives the split's
    ground-truth files (hard links where possible), since the evaluator scores every scene of
    its ``--gt`` folder. Then: ``python -m twist_lib.evaluate --gt OUT/gt --pred OUT/pred
    --meta DATA``.
    """
    from tqdm.auto import tqdm
    from .data import SceneDataset, read_meta
    from .evaluation import ClassSpec, write_predictions
    from .inference import predict_scene
    from .trainer import build_model, load_weights, resolve_device
    run = Path(run_dir)
    cfg = run_config(run)
    finished = [t for t, f in round_folders(run).items() if (f / "metrics.json").is_file()]
    if round_index is None:
        if not finished:
            raise FileNotFoundError(f"{run}: no finished round (round_<t>/metrics.json)")
        round_index = finished[-1]
    checkpoint = run / f"round_{round_index}" / "checkpoints" / "final.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: round {round_index} has not finished training")
    data_root = _data_root(cfg, run)
    meta = read_meta(data_root)
    dev = resolve_device(device or cfg.device)
    phi = build_model(cfg, meta).to(dev)
    load_weights(phi, checkpoint, map_location=dev, name="phi")
    psi = None
    if cfg.test_time_recorrection:
        from .psi_training import build_psi
        psi = build_psi(cfg, meta, phi.size.m).to(dev)
        load_weights(psi, checkpoint, map_location=dev, name="psi")
        psi.eval()
    phi.eval()
    spec = ClassSpec.from_meta(meta)
    scenes = SceneDataset(data_root, split, label_ratio=cfg.label_ratio, voxel_size=cfg.voxel_size,
                          use_xyz_features=cfg.use_xyz_features)
    out = Path(out) if out else run / f"benchmark_round{round_index}_{split}"
    (out / "gt").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(scenes)), desc=f"predict {split}", disable=not progress):
        scene = scenes[i]
        pred = predict_scene(phi, scene, meta, cfg.cluster_radius, cfg.cluster_min_points,
                             cfg.voxel_size, cfg.use_xyz_features, dev, psi=psi,
                             psi_input=cfg.psi_input)
        write_predictions(out / "pred", pred.name, pred.instances(spec))
        gt, target = data_root / "gt" / f"{scene['name']}.txt", out / "gt" / f"{scene['name']}.txt"
        if not target.exists():
            try:
                os.link(gt, target)
            except OSError:
                shutil.copyfile(gt, target)
    return out


# ----------------------------------------------------------------------------------------------
# the batch runner
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One pipeline run of a batch: its label ratio, seed and folders."""
    label_ratio: str
    seed: int
    folder: Path          # DIR/<ratio>pct_seed<seed>: the executed notebook, timings.json

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def run_dir(self) -> Path:
        """The job's TWIST run folder."""
        return self.folder / "run"

    def parameters(self, extra: dict | None = None) -> dict:
        """The notebook parameters of this job (``extra`` = the batch's ``-p`` options)."""
        return {**(extra or {}), "label_ratio": self.label_ratio, "seed": self.seed,
                "run_dir": str(self.run_dir)}


PER_JOB = ("label_ratio", "seed", "run_dir", "profile")


def batch_jobs(ratios, seeds, out) -> list[Job]:
    """One :class:`Job` per (ratio, seed), ratios outermost, in the order given (duplicates
    dropped); folder ``out/<ratio>pct_seed<seed>``."""
    jobs, seen = [], set()
    for ratio in ratios:
        key = f"{float(ratio):g}"
        for seed in seeds:
            if (key, int(seed)) not in seen:
                seen.add((key, int(seed)))
                jobs.append(Job(key, int(seed), Path(out) / f"{key}pct_seed{int(seed)}"))
    if not jobs:
        raise ValueError("a batch needs at least one ratio and one seed")
    return jobs


def execute_pipeline(job: Job, profile: str, parameters: dict, notebook=None) -> float:
    """Run the pipeline notebook for ``job`` with papermill (:func:`twist_lib.book.run_notebooks`:
    the executed copy and ``timings.json`` land in ``job.folder``); returns its seconds."""
    from .book import repo_root, run_notebooks
    notebook = Path(notebook) if notebook else repo_root() / PIPELINE_NOTEBOOK
    result = run_notebooks([notebook], profile, job.folder, job.parameters(parameters))
    return sum(result.seconds.values())


def job_summary(job: Job, status: str = "ok", seconds: float | None = None,
                error: str = "") -> dict:
    """The summary row of a job: its last round's metrics and pseudo-label quality, and the
    total time of pseudo-labelling and training over its rounds (None where it has no rounds)."""
    row = {"job": job.name, "label_ratio": job.label_ratio, "seed": job.seed, "status": status,
           "seconds": None if seconds is None else round(seconds, 1)}
    try:
        rounds = read_rounds(job.run_dir)
    except FileNotFoundError:
        rounds = []
    last = rounds[-1] if rounds else {}
    row["rounds"] = last.get("round")
    for key in (*METRICS, "sem_acc", "offset_error", "coverage"):
        row[key] = last.get(key)
    for key in ("pseudo_s", "train_s"):
        row[key] = round(sum(r.get(key) or 0.0 for r in rounds), 1) if rounds else None
    row["run_dir"] = str(job.run_dir)
    row["error"] = error
    return row


SUMMARY_KEYS = ("job", "label_ratio", "seed", "status", "rounds", *METRICS, "sem_acc",
                "offset_error", "coverage", "pseudo_s", "train_s", "seconds", "run_dir", "error")


def _cell(value, percent=False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if percent else f"{value:.4g}"
    return str(value)


def summary_markdown(rows: list[dict]) -> str:
    """The summary as Markdown: one row per job (AP, AP50, AP25, mIoU in %), then the mean
    (± std over seeds) of the final AP50 per ratio beside the paper's final TWIST AP50 on
    ScanNet v2 (Table 7)."""
    lines = ["| job | status | rounds | AP | AP50 | AP25 | mIoU | pseudo sem_acc | pseudo coverage |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['job']} | {r['status']} | {_cell(r['rounds'])} | "
                     + " | ".join(_cell(r[k], True) for k in (*METRICS, "sem_acc", "coverage"))
                     + " |")
    lines += ["", "| label ratio | jobs | AP50 mean ± std (%) | paper, ScanNet v2 (Table 7, last round) |",
              "|---|---|---|---|"]
    for ratio in dict.fromkeys(r["label_ratio"] for r in rows):
        values = [100 * r["AP50"] for r in rows
                  if r["label_ratio"] == ratio and r["status"] == "ok" and r["AP50"] is not None]
        if values:
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            ours = f"{mean:.1f} ± {std:.1f}"
        else:
            ours = "–"
        paper = PAPER_TABLE7_AP50.get(ratio)
        lines.append(f"| {ratio} % | {len(values)} | {ours} | {paper[-1] if paper else '–'} |")
    return "\n".join(lines) + "\n"


def write_summary(rows: list[dict], out) -> tuple[Path, Path]:
    """Write ``out/summary.csv`` (every column of :data:`SUMMARY_KEYS`) and ``out/summary.md``
    (:func:`summary_markdown`); returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SUMMARY_KEYS))
        writer.writeheader()
        writer.writerows([{k: "" if r.get(k) is None else r.get(k) for k in SUMMARY_KEYS}
                          for r in rows])
    md_path.write_text(summary_markdown(rows))
    return csv_path, md_path


def run_batch(ratios, seeds, profile: str, out, parameters: dict | None = None, execute=None,
              log=print) -> list[dict]:
    """Run the pipeline notebook once per (ratio, seed) job (:func:`batch_jobs`) and write the
    summary (:func:`write_summary`); returns its rows.

    ``parameters`` are passed to every job (papermill ``-p``); ``label_ratio``, ``seed``,
    ``run_dir`` and ``profile`` are the batch's own. ``execute(job, profile, parameters)`` runs
    one job (default :func:`execute_pipeline`); a job that raises is recorded as failed and the
    batch goes on. The summary is rewritten after every job, so a killed batch keeps what ran.
    """
    parameters = dict(parameters or {})
    clash = sorted(set(parameters) & set(PER_JOB))
    if clash:
        raise ValueError(f"{clash}: set by the batch itself (--ratios, --seeds, --out, --profile)")
    execute = execute or execute_pipeline
    rows = []
    jobs = batch_jobs(ratios, seeds, out)
    for k, job in enumerate(jobs, start=1):
        log(f"[{k}/{len(jobs)}] {job.name}: label_ratio {job.label_ratio} %, seed {job.seed} "
            f"-> {job.folder}")
        job.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            execute(job, profile, parameters)
            row = job_summary(job, "ok", time.time() - t0)
        except Exception as e:  # noqa: BLE001 - one failed job must not stop the batch
            message = " ".join(str(e).split())[:500]
            log(f"[{k}/{len(jobs)}] {job.name} FAILED: {type(e).__name__}: {message}")
            row = job_summary(job, "failed", time.time() - t0, f"{type(e).__name__}: {message}")
        rows.append(row)
        write_summary(rows, out)
    return rows


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def rounds_markdown(rows: list[dict]) -> str:
    """A rounds table as Markdown (metrics in %, pseudo-label quality, seconds)."""
    lines = ["| round | AP | AP50 | AP25 | mIoU | sem_acc | offset_error (m) | coverage | "
             "pseudo-labelling (s) | training (s) |", "|---" * 10 + "|"]
    for r in rows:
        lines.append(f"| {r['round']} | " + " | ".join(_cell(r.get(k), True) for k in METRICS)
                     + f" | {_cell(r.get('sem_acc'), True)} | {_cell(r.get('offset_error'))} | "
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
    try:
        if args.command == "batch":
            params = {k: yaml.safe_load(v) for k, v in args.parameter}
            notebook = args.notebook
            rows = run_batch(args.ratios, args.seeds, args.profile, args.out, params,
                             execute=lambda job, profile, p: execute_pipeline(job, profile, p, notebook))
            print(summary_markdown(rows))
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
            out = export_predictions(args.run, args.round, args.split, args.out, args.device)
            cfg = run_config(args.run)
            print(f"benchmark files: {out}\n  python -m twist_lib.evaluate --gt {out / 'gt'} "
                  f"--pred {out / 'pred'} --meta {_data_root(cfg, Path(args.run))}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
