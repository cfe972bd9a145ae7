"""The pseudo-label files of a self-training round (paper Sec. 4.3): one ``.npz`` per unlabelled
scene, ``<pseudo_dir>/<scene>.npz``, holding a *label dict* of four per-point arrays::

    semantic      int64   (N,)    pseudo class S~, -100 (IGNORE_INDEX) = no pseudo class
    offset        float32 (N, 3)  pseudo offset O~, zeros where offset_valid is False
    offset_valid  bool    (N,)    points whose pseudo offset is supervised
    instance      int64   (N,)    id of the kept proposal the point belongs to, -100 elsewhere
                                  (only to draw the pseudo instances; never used for training)

Module C (:mod:`twist_lib.pseudo_labels`) makes them, :func:`write_pseudo_labels` writes them
atomically, and :class:`~twist_lib.data.dataset.SceneDataset` reads them back in place of the
unlabelled scenes' labels (:func:`read_pseudo_labels`); every reader validates them
(:func:`validate_pseudo_labels`).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .classes import IGNORE_INDEX
from .io import DataFormatError

LABEL_KEYS = ("semantic", "offset", "offset_valid", "instance")

__all__ = ["LABEL_KEYS", "pseudo_label_path", "validate_pseudo_labels", "write_pseudo_labels",
           "read_pseudo_labels"]


def pseudo_label_path(pseudo_dir, scene_name: str) -> Path:
    """The pseudo-label file of a scene: ``pseudo_dir / f"{scene_name}.npz"``."""
    return Path(pseudo_dir) / f"{scene_name}.npz"


def validate_pseudo_labels(arrays: dict, where: str, num_points=None) -> dict:
    """The four label arrays of ``arrays`` with canonical dtypes, checked (keys, dtypes, shapes,
    ids, finite offsets, the scene's point count); :class:`DataFormatError` naming ``where``."""
    missing = [k for k in LABEL_KEYS if k not in arrays]
    if missing:
        raise DataFormatError(f"{where}: missing pseudo-label array(s) {missing}")
    a = {k: np.asarray(arrays[k]) for k in LABEL_KEYS}
    kinds = {"semantic": "iu", "offset": "f", "offset_valid": "b", "instance": "iu"}
    for key, kind in kinds.items():
        if a[key].dtype.kind not in kind:
            raise DataFormatError(f"{where}: '{key}' has dtype {a[key].dtype}")
    n = len(a["semantic"]) if a["semantic"].ndim else -1
    shapes = {"semantic": (n,), "offset": (n, 3), "offset_valid": (n,), "instance": (n,)}
    for key, shape in shapes.items():
        if a[key].shape != shape:
            raise DataFormatError(f"{where}: '{key}' must have shape {shape}, got {a[key].shape}")
    if num_points is not None and n != num_points:
        raise DataFormatError(f"{where}: pseudo labels for {n} points, the scene has {num_points}")
    for key in ("semantic", "instance"):
        if ((a[key] < 0) & (a[key] != IGNORE_INDEX)).any():
            raise DataFormatError(f"{where}: '{key}' has negative ids other than {IGNORE_INDEX}")
    if not np.isfinite(a["offset"]).all():
        raise DataFormatError(f"{where}: 'offset' has NaN or infinite values")
    return {"semantic": a["semantic"].astype(np.int64), "offset": a["offset"].astype(np.float32),
            "offset_valid": a["offset_valid"], "instance": a["instance"].astype(np.int64)}


def write_pseudo_labels(path, labels: dict) -> Path:
    """Write a label dict (NumPy or torch) as a compressed ``.npz``, atomically (temporary file,
    then rename; parent folders are created). Returns the path."""
    path = Path(path)
    arrays = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v
              for k, v in labels.items() if k in LABEL_KEYS}
    arrays = validate_pseudo_labels(arrays, str(path))
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_pseudo_labels(path, num_points=None) -> dict:
    """Read a file of :func:`write_pseudo_labels` back as a NumPy label dict.

    Raises FileNotFoundError for a missing file and :class:`DataFormatError` (a ValueError) for
    an unreadable one, a missing key, wrong shapes or dtypes, or a point count other than
    ``num_points``; every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pseudo-label file not found")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(f"{path}: not a readable pseudo-label .npz file ({e})") from e
    return validate_pseudo_labels(arrays, str(path), num_points)
