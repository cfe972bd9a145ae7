"""Instances on your own scans with a trained run::

    python -m twist_lib predict --run RUN_DIR [--round T] --scans PATH [PATH ...] --out DIR
                                [--device cpu|cuda|auto] [--recorrect] [--meta DATA_ROOT]
    python -m twist_lib predict --checkpoint FILE.pt --config RUN_DIR/config.yaml
                                [--meta DATA_ROOT] --scans PATH [PATH ...] --out DIR [...]

A PATH is a prepared scene ``.npz`` (:func:`twist_lib.data.load_scene`), a raw ``.ply`` with
x/y/z and red/green/blue vertices (:func:`twist_lib.prepare.ply.read_coloured_vertices`; any
layout the reader takes, ascii or binary), or a folder: every ``.npz`` / ``.ply`` in it, sorted.
The scene's name is the file's stem (white space replaced by ``_``).

``--run`` is a TWIST run folder (round ``--round``, default the last finished one) or a Sup-only
run folder (:func:`twist_lib.checkpoints.run_checkpoint`); the class list comes from the run's
dataset folder ``meta.json``, or ``--meta`` (a dataset folder or its ``meta.json``).
``--recorrect`` re-labels and re-scores every instance with the checkpoint's Psi (test-time
re-correction, paper Sec. 5.3; only a TWIST round t >= 1 holds a Psi).

For every scene, in ``--out DIR``:

- ``pred/<scene>.txt`` + ``pred/predicted_masks/``: the ScanNet benchmark's prediction files
  (:func:`twist_lib.evaluation.write_predictions`), for ``python -m twist_lib.evaluate``;
- ``labels/<scene>.npy``: int64 (N, 2) per input point in input order, [semantic class index
  into meta.json's ``class_names``, instance id 0..I-1 or -1 = none]; a point of an instance
  has the instance's class;
- ``html/<scene>.html``: a self-contained 3-D view coloured by instance (at most 50k points).

Scenes are predicted one at a time (:func:`twist_lib.inference.predict_scene`, no cropping).
Under ``torch.distributed`` each process takes every ``world``-th scene (:func:`twist_lib.distributed.shard`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .checkpoints import load_models, run_checkpoint
from .config import Config, load_yaml
from .data import load_scene, read_meta
from .data.classes import IGNORE_INDEX
from .data.io import DataFormatError, validate_scene
from .distributed import shard
from .evaluation import ClassSpec, write_predictions
from .inference import ScenePrediction, predict_scene
from .prepare.ply import read_coloured_vertices
from .runs import dataset_folder, run_config
from .trainer import resolve_device

SCAN_SUFFIXES = (".npz", ".ply")
HTML_POINTS = 50_000


# ----------------------------------------------------------------------------------- the model
@dataclass
class Predictor:
    """A trained Phi (and Psi with ``--recorrect``) with its config and dataset classes."""
    cfg: Config
    meta: dict
    meta_root: Path
    phi: torch.nn.Module
    psi: torch.nn.Module | None
    device: torch.device
    checkpoint: Path


def _meta(meta, data_root: Path) -> tuple[dict, Path]:
    """``read_meta`` of ``--meta`` (a folder or its meta.json), else of the run's dataset."""
    if meta:
        root = Path(meta).parent if Path(meta).is_file() else Path(meta)
        return read_meta(root), root
    if not (data_root / "meta.json").is_file():
        raise FileNotFoundError(f"{data_root / 'meta.json'}: the run's dataset folder is not here; "
                                "give --meta DATA_ROOT (a folder holding the dataset's meta.json)")
    return read_meta(data_root), data_root


def _device(name: str) -> torch.device:
    dev = resolve_device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here; use --device cpu or auto")
    return dev


def load_predictor(run=None, round_index=None, checkpoint=None, config=None, meta=None,
                   device: str = "auto", recorrect: bool = False) -> Predictor:
    """The networks of a run folder (``run``, ``round_index``) or of a ``checkpoint`` file with
    its ``config`` (``config.yaml``); ``meta`` overrides the dataset folder giving the classes."""
    if run is not None:
        cfg = run_config(run)
        checkpoint, _ = run_checkpoint(run, round_index)
        data_root = dataset_folder(cfg, Path(run))
    else:
        if checkpoint is None or config is None:
            raise ValueError("give --run RUN_DIR, or --checkpoint FILE.pt with --config config.yaml")
        if round_index is not None:
            raise ValueError("--round selects a round of --run; it does not apply to --checkpoint")
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
        cfg = Config.from_dict(load_yaml(config), str(config))
        data_root = dataset_folder(cfg, Path(config).parent)
    meta, meta_root = _meta(meta, data_root)
    dev = _device(device)
    try:
        phi, psi = load_models(checkpoint, cfg, meta, dev, psi=recorrect)
    except KeyError as e:
        if recorrect and "'psi'" in str(e):
            raise ValueError(f"--recorrect: {checkpoint} holds no Psi (the re-correction network; "
                             "only TWIST rounds t >= 1 train one); leave out --recorrect") from None
        raise
    return Predictor(cfg, meta, meta_root, phi, psi, dev, Path(checkpoint))


# ----------------------------------------------------------------------------------- the scans
def scene_name(path) -> str:
    """A scan's scene name: its file stem, white space and backslashes replaced by ``_``."""
    return "".join("_" if c.isspace() or c == "\\" else c for c in Path(path).stem)


def scan_paths(paths) -> list[Path]:
    """The scan files of the command line: files as given, folders expanded to their sorted
    ``.npz`` / ``.ply`` files. Errors name the path: missing, unknown type, empty folder, or two
    scans with one scene name."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)
            if not inside:
                raise FileNotFoundError(f"{path}: no .npz or .ply scans in this folder")
            found += inside
        elif not path.exists():
            raise FileNotFoundError(f"{path}: scan file not found")
        elif path.suffix.lower() not in SCAN_SUFFIXES:
            raise ValueError(f"{path}: unknown scan type '{path.suffix}' (expected a .npz scene, "
                             "a .ply point cloud or mesh, or a folder of them)")
        else:
            found.append(path)
    seen = {}
    for path in found:
        other = seen.setdefault(scene_name(path), path)
        if other != path:
            raise ValueError(f"{path}: same scene name '{scene_name(path)}' as {other}; rename one")
    return found


def read_ply_scene(path) -> dict:
    """A coloured ``.ply`` as a scene dict: colours 0..255 -> [-1, 1], labels unknown (-100)."""
    xyz, rgb = read_coloured_vertices(path)
    if len(xyz) == 0:
        raise DataFormatError(f"{path}: the PLY file has no vertices")
    bad = np.flatnonzero(~np.isfinite(xyz).all(axis=1))
    if len(bad):
        raise DataFormatError(f"{path}: {len(bad)} vertices have NaN or infinite coordinates "
                              f"(first: vertex {bad[0]})")
    unknown = np.full(len(xyz), IGNORE_INDEX, dtype=np.int64)
    scene = {"xyz": xyz, "rgb": rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0),
             "semantic": unknown, "instance": unknown.copy(), "name": scene_name(path)}
    return validate_scene(scene, str(path))


def load_scan(path) -> dict:
    """One scan file (``.npz`` scene or ``.ply``) as a scene dict named :func:`scene_name`."""
    path = Path(path)
    scene = load_scene(path) if path.suffix.lower() == ".npz" else read_ply_scene(path)
    scene["name"] = scene_name(path)
    return scene


# --------------------------------------------------------------------------------- the outputs
def point_labels(pred: ScenePrediction) -> np.ndarray:
    """int64 (N, 2): [semantic class, instance id or -1] per point; instance points take their
    instance's class (it differs from Phi's per-point class only after re-correction)."""
    labels = np.stack([pred.semantic, pred.proposal_ids], axis=1).astype(np.int64)
    inside = labels[:, 1] >= 0
    labels[inside, 0] = np.asarray(pred.classes, dtype=np.int64)[labels[inside, 1]]
    return labels


def write_outputs(out, pred: ScenePrediction, spec: ClassSpec, html: bool = True) -> dict:
    """The benchmark files, ``labels/<scene>.npy`` and ``html/<scene>.html`` of one scene, each
    written atomically; returns ``{"pred", "labels", "html"}`` paths."""
    out = Path(out)
    paths = {"pred": write_predictions(out / "pred", pred.name, pred.instances(spec)),
             "labels": out / "labels" / f"{pred.name}.npy"}
    labels = point_labels(pred)
    atomic_write(paths["labels"], lambda f: np.save(f, labels))
    if html:
        from .viz import show_proposals
        fig = show_proposals(pred.xyz, pred.proposal_ids, max_points=HTML_POINTS,
                             title=f"{pred.name}: {len(pred.classes)} instances")
        text = fig.to_html(include_plotlyjs=True, full_html=True)
        paths["html"] = out / "html" / f"{pred.name}.html"
        atomic_write(paths["html"], lambda f: f.write(text.encode()))
    return paths


def summary_line(pred: ScenePrediction, class_names) -> str:
    """``<scene>: N points, I instances (2 chair, 1 table)``."""
    counts = Counter(class_names[int(k)] for k in pred.classes)
    listed = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    return (f"{pred.name}: {len(pred.xyz)} points, {len(pred.classes)} instances"
            + (f" ({listed})" if listed else ""))


def predict_scans(predictor: Predictor, paths, out, progress: bool = True, html: bool = True,
                  log=print) -> list[dict]:
    """Predict and write every scan of ``paths`` (this process's share, :func:`twist_lib.distributed.shard`) into ``out``.

    One summary line per scene goes to ``log`` (to ``tqdm.write`` under the progress bar).
    Returns one dict per scene: ``name``, ``points``, ``instances`` and the written paths."""
    from tqdm.auto import tqdm
    cfg, spec = predictor.cfg, ClassSpec.from_meta(predictor.meta)
    rows = []
    bar = tqdm(shard(scan_paths(paths)), desc="predict", unit="scene", disable=not progress)
    for path in bar:
        pred = predict_scene(predictor.phi, load_scan(path), predictor.meta, cfg,
                             device=predictor.device, psi=predictor.psi)
        written = write_outputs(out, pred, spec, html)
        (bar.write if progress else log)(summary_line(pred, predictor.meta["class_names"]))
        rows.append({"name": pred.name, "points": len(pred.xyz), "instances": len(pred.classes),
                     **written})
    return rows


def run(args) -> int:
    """``python -m twist_lib predict`` (the options of this module's docstring)."""
    paths = scan_paths(args.scans)  # a missing or unknown file fails before the model loads
    predictor = load_predictor(args.run, args.round, args.checkpoint, args.config, args.meta,
                               args.device, args.recorrect)
    out = Path(args.out)
    rows = predict_scans(predictor, paths, out, progress=not args.no_progress)
    print(f"{len(rows)} scenes, {sum(r['instances'] for r in rows)} instances -> {out}/\n"
          f"  labels/<scene>.npy  [class, instance] per point (classes: {predictor.meta_root}/meta.json)\n"
          f"  html/<scene>.html   3-D views coloured by instance\n"
          f"  pred/               benchmark files: python -m twist_lib.evaluate --gt GT_DIR "
          f"--pred {out / 'pred'} --meta {predictor.meta_root}")
    return 0
