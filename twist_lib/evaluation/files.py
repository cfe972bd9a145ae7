"""The ScanNet benchmark's file formats (the book's appendix, Conventions: "Data formats").

Ground truth: ``GT_DIR/<scene>.txt``, one integer per point, ``benchmark_id * 1000 + instance``
(written by :func:`twist_lib.data.io.write_gt_txt`).

Predictions: ``PRED_DIR/<scene>.txt`` lists one predicted instance per line::

    predicted_masks/<scene>_000.txt 5 0.9731

(a mask path relative to the prediction file and inside ``PRED_DIR``, the benchmark class id,
the confidence), and each mask file holds one integer per point, non-zero = in the instance.
As with the official script, every prediction file needs a ground-truth file; in addition every
ground-truth scene needs a prediction file (the benchmark server scores all scenes), so a
forgotten scene is an error rather than a silently better score.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write
from ..data.io import DataFormatError
from .class_spec import ClassSpec
from .instance_ap import MIN_REGION_SIZE, InstanceEvaluator, check_class_id, instance_arrays

PRED_MASK_DIR = "predicted_masks"
RESULT_FILE = "semantic_instance_evaluation.txt"  # the official script's output; not a scene


def read_ids_txt(path) -> np.ndarray:
    """Read a file of one integer per line (a gt txt or a mask) as an int64 array.

    Files of single digits (masks) take a fast byte-level path; anything else is parsed as text.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) % 2 == 0 and (buf[1::2] == ord("\n")).all():
        digits = buf[0::2]
        if ((digits >= ord("0")) & (digits <= ord("9"))).all():
            return (digits - ord("0")).astype(np.int64)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text file of integers") from None
    try:
        return np.array(text.split(), dtype=np.int64)
    except ValueError:
        for lineno, line in enumerate(text.splitlines(), 1):
            try:
                int(line or "0")
            except ValueError:
                raise DataFormatError(f"{path}, line {lineno}: expected one integer, got "
                                      f"{line.strip()[:40]!r}") from None
        raise DataFormatError(f"{path}: expected one integer per line") from None


def read_gt_txt(path) -> np.ndarray:
    """The ground-truth ids of a scene (one per point); an error if the file has no points."""
    ids = read_ids_txt(path)
    if len(ids) == 0:
        raise DataFormatError(f"{path}: ground-truth file has no points")
    return ids


def _write_mask(path: Path, mask: np.ndarray) -> None:
    buf = np.full(2 * len(mask), ord("\n"), dtype=np.uint8)
    buf[0::2] = ord("0") + mask.astype(np.uint8)
    path.write_bytes(buf.tobytes())


def write_predictions(pred_dir, scene_name: str, instances, mask_dir: str = PRED_MASK_DIR) -> Path:
    """Write a scene's predicted instances in the benchmark format; returns the list file.

    ``instances`` as in :func:`twist_lib.evaluation.instance_arrays`. Masks go to
    ``PRED_DIR/<mask_dir>/<scene>_<k>.txt`` as 0/1 lines; the list file is written last and
    atomically, so it never refers to a missing mask.
    """
    if not scene_name or any(c.isspace() or c in "/\\" for c in scene_name):
        raise ValueError(f"scene name {scene_name!r} must be non-empty, without spaces or slashes")
    pred_dir = Path(pred_dir)
    masks, class_ids, scores = instance_arrays(instances, where=f"predictions of {scene_name}")
    (pred_dir / mask_dir).mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (mask, class_id, score) in enumerate(zip(masks, class_ids.tolist(), scores.tolist())):
        rel = f"{mask_dir}/{scene_name}_{k:03d}.txt"
        _write_mask(pred_dir / rel, mask)
        lines.append(f"{rel} {class_id} {score!r}\n")
    path = pred_dir / f"{scene_name}.txt"
    text = "".join(lines)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def _parse_line(path: Path, lineno: int, line: str, pred_root: Path, spec: ClassSpec | None):
    where = f"{path}, line {lineno}"
    parts = line.split()
    if len(parts) != 3:
        raise DataFormatError(f"{where}: expected 'relative/mask/path.txt class_id confidence', "
                              f"got {line.strip()[:80]!r}")
    rel, class_text, score_text = parts
    if os.path.isabs(rel):
        raise DataFormatError(f"{where}: the mask path {rel} must be relative")
    mask_path = (path.parent / rel).resolve()
    if not mask_path.is_relative_to(pred_root):
        raise DataFormatError(f"{where}: the mask path {rel} points outside {pred_root}")
    try:
        class_value, score = float(class_text), float(score_text)
    except ValueError:
        raise DataFormatError(f"{where}: class id {class_text!r} and confidence {score_text!r} "
                              "must be numbers") from None
    if not class_value.is_integer():
        raise DataFormatError(f"{where}: class id {class_text!r} is not an integer")
    if not math.isfinite(score):
        raise DataFormatError(f"{where}: confidence {score_text!r} is not finite")
    if spec is not None:
        try:
            check_class_id(int(class_value), spec, where)
        except ValueError as e:
            raise DataFormatError(str(e)) from None
    return mask_path, int(class_value), score


def read_predictions(pred_dir, scene_name: str, num_points: int | None = None,
                     spec: ClassSpec | None = None) -> list:
    """Read ``PRED_DIR/<scene>.txt`` and its masks.

    Returns a list of dicts ``{"mask": bool (N,), "class_id": int, "score": float, "path": Path}``
    in file order. Raises :class:`~twist_lib.data.io.DataFormatError` naming the file on an
    unparsable line, an absolute or escaping mask path, a mask listed twice, a missing mask file,
    a mask whose length is not ``num_points``, or (with ``spec``) an unknown class id.
    """
    pred_root = Path(pred_dir).resolve()
    path = Path(pred_dir) / f"{scene_name}.txt"
    if not path.is_file():
        raise DataFormatError(f"{path}: prediction file not found")
    instances, seen = [], set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        mask_path, class_id, score = _parse_line(path, lineno, line, pred_root, spec)
        if mask_path in seen:
            raise DataFormatError(f"{path}, line {lineno}: mask {mask_path} is listed twice")
        seen.add(mask_path)
        if not mask_path.is_file():
            raise DataFormatError(f"{path}, line {lineno}: mask file {mask_path} not found")
        mask = read_ids_txt(mask_path) != 0
        if num_points is not None and len(mask) != num_points:
            raise DataFormatError(f"{mask_path}: {len(mask)} lines, but scene {scene_name} has "
                                  f"{num_points} points")
        instances.append({"mask": mask, "class_id": class_id, "score": score, "path": mask_path})
    return instances


def scene_files(gt_dir, pred_dir) -> list:
    """Pair ``GT_DIR/<scene>.txt`` with ``PRED_DIR/<scene>.txt``; returns ``[(scene, gt path)]``
    sorted by name. Raises :class:`DataFormatError` naming the first unpaired file."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder in (gt_dir, pred_dir):
        if not folder.is_dir():
            raise DataFormatError(f"{folder}: not a folder")
    gt = {p.stem: p for p in sorted(gt_dir.glob("*.txt"))}
    if not gt:
        raise DataFormatError(f"{gt_dir}: no ground-truth .txt files")
    preds = {p.stem for p in pred_dir.glob("*.txt") if p.name != RESULT_FILE}
    missing = sorted(set(gt) - preds)
    if missing:
        raise DataFormatError(f"{pred_dir / missing[0]}.txt: missing prediction file for "
                              f"ground-truth scene {missing[0]} ({len(missing)} of {len(gt)} "
                              "scenes have none)")
    extra = sorted(preds - set(gt))
    if extra:
        raise DataFormatError(f"{pred_dir / extra[0]}.txt: no ground-truth file "
                              f"{gt_dir / extra[0]}.txt for this prediction file")
    return list(gt.items())


def evaluate_dirs(gt_dir, pred_dir, spec: ClassSpec, min_region_size: int = MIN_REGION_SIZE,
                  progress: bool = True) -> dict:
    """Benchmark AP of a prediction folder against a ground-truth folder (the official script);
    returns :meth:`InstanceEvaluator.result`."""
    evaluator = InstanceEvaluator(spec, min_region_size)
    for name, gt_path in tqdm(scene_files(gt_dir, pred_dir), desc="scenes", disable=not progress):
        gt_ids = read_gt_txt(gt_path)
        evaluator.add_scene(read_predictions(pred_dir, name, len(gt_ids), spec), gt_ids, name)
    return evaluator.result()
