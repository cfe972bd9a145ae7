"""The pipeline job: the one config of a TWIST training job, the job itself, and the benchmark
files of a trained round.

``book/pipeline.ipynb`` is that job: it builds its config with :func:`pipeline_config` (profile,
the dataset's YAML at ``gpu``, the page's parameters) and trains, resumes or reads back the run
with :func:`run_pipeline`. ``book/at_scale.md`` scores a finished run with the benchmark's own
files, :func:`export_predictions` (``python -m twist_lib runs predict RUN``) then
``python -m twist_lib.evaluate``; it loads a round's networks with
:func:`twist_lib.checkpoints.run_checkpoint` and :func:`twist_lib.checkpoints.load_models`, which
``python -m twist_lib predict`` (:mod:`twist_lib.predict`) shares. Reading a run folder is
:mod:`twist_lib.runs`.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoints import load_models, run_checkpoint
from .config import BASELINE, Config, load_yaml
from .data import read_meta
from .data.dataset import SceneDataset
from .evaluation import ClassSpec, write_predictions
from .inference import predict_scene
from .paths import notebook_config, repo_root, resolve_profile
from .runs import dataset_folder, read_rounds, run_config
from .self_training import run_twist
from .trainer import resolve_device

# keys a resumed run may change: they do not change what the rounds compute
RESUMABLE_CHANGES = ("run_dir", "init_checkpoint", "progress", "device",
                     "num_workers", "cpu_threads", "log_every", "ckpt_every", "rounds",
                     "pseudo_batch_size")


# ----------------------------------------------------------------------------------------------
# the pipeline notebook's config and job
# ----------------------------------------------------------------------------------------------
def default_config_file(profile: str, dataset: str, root=None) -> str:
    """The YAML a pipeline job applies over its profile when none is named:
    ``configs/twist_<dataset>.yaml`` at the ``gpu`` profile (the paper's settings for that
    dataset: rounds, Psi's grid and width, ...), none at ``smoke`` and ``cpu``."""
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
    if cfg.init_checkpoint and cfg.init_checkpoint != BASELINE and not Path(cfg.init_checkpoint).is_absolute():
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
        if key == "data_root" and dataset_folder(saved, run_dir).resolve() == dataset_folder(cfg, run_dir).resolve():
            continue
        changes[key] = (theirs, ours)
    return changes


def run_pipeline(cfg: Config, resume="auto") -> list[dict]:
    """Train TWIST for ``cfg`` (round 0 and ``cfg.rounds`` rounds) with
    :func:`twist_lib.self_training.run_twist`, or finish or extend the run in its folder.

    ``init_checkpoint="baseline"`` takes round 0 from the Sup-only run folder that ``make train``
    writes (:func:`twist_lib.self_training.baseline_run_dir`), training it first if needed.
    ``resume="auto"`` resumes when the run folder already holds a run, else starts one. A run
    folder started with other settings (:func:`config_changes`) is an error naming them: mixing
    two configs in one run gives numbers nobody can read. Returns the rows of ``rounds.csv``
    (:func:`twist_lib.runs.read_rounds`)."""
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
    run_twist(cfg, resume=bool(resume), root=repo_root())   # baseline: `make train`'s folder
    return read_rounds(run)


# ----------------------------------------------------------------------------------------------
# benchmark files of a trained round
# ----------------------------------------------------------------------------------------------
def export_predictions(run_dir, round_index: int | None = None, split: str = "val", out=None,
                       device: str | None = None, progress: bool = True) -> Path:
    """Write the benchmark files of round ``round_index`` (default: the last finished one) of a
    run folder on the scenes of ``split``; returns the output folder ``OUT`` (default
    ``RUN/benchmark_round<t>_<split>``, ``RUN/benchmark_<split>`` for a Sup-only run).

    ``OUT/pred/<scene>.txt`` (+ masks) are the instances of
    :func:`twist_lib.inference.predict_scene` with the round's Phi (and its Psi when the run
    has ``test_time_recorrection``), in the format of
    :func:`twist_lib.evaluation.write_predictions`; ``OUT/gt/`` receives the split's
    ground-truth files (hard links where possible), since the evaluator scores every scene of
    its ``--gt`` folder. Then: ``python -m twist_lib.evaluate --gt OUT/gt --pred OUT/pred
    --meta DATA``.
    """
    run = Path(run_dir)
    cfg = run_config(run)
    checkpoint, round_index = run_checkpoint(run, round_index)
    data_root = dataset_folder(cfg, run)
    meta = read_meta(data_root)
    dev = resolve_device(device or cfg.device)
    phi, psi = load_models(checkpoint, cfg, meta, dev, psi=cfg.test_time_recorrection)
    spec = ClassSpec.from_meta(meta)
    scenes = SceneDataset(data_root, split, label_ratio=cfg.label_ratio, voxel_size=cfg.voxel_size,
                          use_xyz_features=cfg.use_xyz_features)
    tag = "" if round_index is None else f"_round{round_index}"
    out = Path(out) if out else run / f"benchmark{tag}_{split}"
    (out / "gt").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(scenes)), desc=f"predict {split}", disable=not progress):
        scene = scenes[i]
        pred = predict_scene(phi, scene, meta, cfg, dev, psi=psi)
        write_predictions(out / "pred", pred.name, pred.instances(spec))
        gt, target = data_root / "gt" / f"{scene['name']}.txt", out / "gt" / f"{scene['name']}.txt"
        if not target.exists():
            try:
                os.link(gt, target)
            except OSError:
                shutil.copyfile(gt, target)
    return out
