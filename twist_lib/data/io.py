"""The on-disk format every dataset lands in (ScanNet, S3DIS and the synthetic benchmark).

A prepared dataset folder looks like::

    DATA/
      meta.json              class names, instance classes, benchmark ids, splits
      scenes/<name>.npz      one file per scene (arrays below)
      gt/<name>.txt          benchmark ground truth, one int per point: benchmark_id*1000 + inst+1

A scene, as :func:`load_scene` returns it, is a plain dict (the package's one data convention)::

    xyz       float32 (N, 3)  metres
    rgb       float32 (N, 3)  colour in [-1, 1]
    semantic  int64   (N,)    class index 0..K-1, IGNORE_INDEX (-100) = unlabelled / not a class
    instance  int64   (N,)    instance id 0..I-1 within the scene, -100 = no instance
    name      str

Files are written atomically (temporary name, then rename), so a crash never leaves a
half-written scene behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .classes import IGNORE_INDEX

SCENE_KEYS = ("xyz", "rgb", "semantic", "instance")
FORMAT_VERSION = 1


class DataFormatError(ValueError):
    """A file that is not in the format this module documents; the message names the file."""


def validate_scene(scene: dict, where: str = "scene") -> dict:
    """Check dtypes, shapes and label ranges; return the scene with canonical dtypes.

    Raises :class:`DataFormatError` naming ``where`` and the problem.
    """
    for key in SCENE_KEYS:
        if key not in scene:
            raise DataFormatError(f"{where}: missing array '{key}'")
    xyz = np.asarray(scene["xyz"], dtype=np.float32)
    rgb = np.asarray(scene["rgb"], dtype=np.float32)
    sem = np.asarray(scene["semantic"], dtype=np.int64)
    ins = np.asarray(scene["instance"], dtype=np.int64)
    n = len(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataFormatError(f"{where}: 'xyz' must have shape (N, 3), got {xyz.shape}")
    if n == 0:
        raise DataFormatError(f"{where}: the scene has no points")
    if rgb.shape != (n, 3):
        raise DataFormatError(f"{where}: 'rgb' must have shape ({n}, 3), got {rgb.shape}")
    for key, arr in (("semantic", sem), ("instance", ins)):
        if arr.shape != (n,):
            raise DataFormatError(f"{where}: '{key}' must have shape ({n},), got {arr.shape}")
        bad = (arr < 0) & (arr != IGNORE_INDEX)
        if bad.any():
            raise DataFormatError(f"{where}: '{key}' has negative ids other than {IGNORE_INDEX}")
    if not np.isfinite(xyz).all():
        raise DataFormatError(f"{where}: 'xyz' has NaN or infinite coordinates")
    if rgb.size and (rgb.min() < -1.0 - 1e-4 or rgb.max() > 1.0 + 1e-4):
        raise DataFormatError(f"{where}: 'rgb' must lie in [-1, 1] (got {rgb.min():.3f}..{rgb.max():.3f})")
    name = str(scene.get("name", where))
    return {"xyz": xyz, "rgb": rgb, "semantic": sem, "instance": ins, "name": name}


def save_scene(path, scene: dict) -> Path:
    """Validate and write one scene as ``.npz`` atomically; returns the path."""
    path = Path(path)
    scene = validate_scene(scene, str(path))
    arrays = {k: scene[k] for k in SCENE_KEYS}
    arrays["name"] = np.array(scene["name"])
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def load_scene(path) -> dict:
    """Read a prepared scene file back as the scene dict documented in this module."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: scene file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            scene = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:  # zip errors surface as these
        raise DataFormatError(f"{path}: not a readable .npz scene file ({e})") from e
    scene["name"] = str(scene["name"]) if "name" in scene else path.stem
    return validate_scene(scene, str(path))


def scene_path(root, name: str) -> Path:
    return Path(root) / "scenes" / f"{name}.npz"


def gt_ids(semantic, instance, benchmark_ids) -> np.ndarray:
    """The ScanNet-benchmark ground-truth encoding of a scene: ``id*1000 + instance+1`` per point.

    ``benchmark_ids[k]`` is the benchmark id of semantic class k; points whose semantic is
    ignored get 0 (unannotated); points of a class but no instance get ``id*1000``.
    """
    semantic = np.asarray(semantic, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    ids = np.asarray(benchmark_ids, dtype=np.int64)
    out = np.zeros(len(semantic), dtype=np.int64)
    valid = semantic != IGNORE_INDEX
    out[valid] = ids[semantic[valid]] * 1000
    has_inst = valid & (instance != IGNORE_INDEX)
    out[has_inst] += instance[has_inst] + 1
    return out


def write_gt_txt(path, semantic, instance, benchmark_ids) -> Path:
    """Write :func:`gt_ids` of a scene as the benchmark's txt (one integer per line), atomically."""
    text = "\n".join(map(str, gt_ids(semantic, instance, benchmark_ids).tolist())) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))
    return Path(path)


def make_meta(name, class_names, instance_classes, benchmark_ids=None, splits=None, **extra) -> dict:
    """Build a ``meta.json`` dict. ``splits`` maps split name -> list of scene names
    (``train``, ``val``, and ``labelled_<ratio>`` lists written by :mod:`twist_lib.data.splits`)."""
    class_names = list(class_names)
    if benchmark_ids is None:
        benchmark_ids = list(range(1, len(class_names) + 1))
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "class_names": class_names,
        "num_classes": len(class_names),
        "instance_classes": sorted(int(c) for c in instance_classes),
        "benchmark_ids": [int(i) for i in benchmark_ids],
        "ignore_index": IGNORE_INDEX,
        "splits": {k: list(v) for k, v in (splits or {}).items()},
    }
    meta.update(extra)
    return meta


def write_meta(root, meta: dict) -> Path:
    path = Path(root) / "meta.json"
    text = json.dumps(meta, indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def read_meta(root) -> dict:
    """Read ``ROOT/meta.json``; a clear error if the folder is not a prepared dataset."""
    path = Path(root) / "meta.json"
    if not path.exists():
        raise DataFormatError(
            f"{root}: not a prepared dataset folder (no meta.json). Prepare it with one of "
            "data_scripts/prepare_scannet.py, prepare_s3dis.py or make_synthetic.py.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: invalid JSON ({e})") from e
    for key in ("class_names", "instance_classes", "splits"):
        if key not in meta:
            raise DataFormatError(f"{path}: missing key '{key}'")
    meta.setdefault("benchmark_ids", list(range(1, len(meta["class_names"]) + 1)))
    meta.setdefault("num_classes", len(meta["class_names"]))
    return meta
