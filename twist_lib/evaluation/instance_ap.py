"""Instance AP exactly as the ScanNet benchmark computes it (paper Sec. 5, Tables 1-8; the book's
appendix, Conventions: "The ScanNet benchmark protocol").

This is a re-implementation of the protocol of ScanNet's
``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py``:

* Ground truth is one int per point, ``benchmark_id * 1000 + instance`` (0 = unannotated). A GT
  instance is a distinct id whose class is an instance class; GT instances with fewer than
  ``min_region_size`` (100) points are not counted, and their points are *ignored* points.
* Predictions with fewer than ``min_region_size`` points are dropped; predictions of a known
  class that is not an instance class (ScanNet: wall, floor) are skipped, as in the official script.
* For every instance class and overlap threshold (0.50, 0.55, ..., 0.90 for AP; 0.25 for AP25),
  each GT instance, in id order, walks the predictions it overlaps in the order they are listed
  (the prediction file order, not the score order). The first unvisited one with IoU > threshold
  (strictly) matches it and is marked visited; every further one above the threshold is a false
  positive, the GT keeping the higher of the two scores and the FP taking the lower. A further
  prediction is *not* marked visited, so it may still match a later GT (official behaviour).
  A GT with no match is a false negative.
* A prediction that overlaps no GT instance of its class (small ones included) by more than the
  threshold is a false positive only if (void + ignored points in it) / its size <= threshold.
  Void = points whose class is not an instance class. (GT points ``id * 1000`` of an instance
  class without an instance, which :func:`twist_lib.data.io.write_gt_txt` writes and the official
  files never contain, are void here too.)
* AP is the area under the precision-recall curve sampled at the unique scores, with the point
  (recall 0, precision 1) appended: ``AP = dot(precision, convolve([r0] + recall + [0],
  [-.5, 0, .5], 'valid'))``. A class with GT and no prediction scores 0; a class without GT is
  NaN and left out of the means.

The thresholds are the decimal values 0.5, 0.55, ...; the official ``np.arange`` values differ
in the 16th digit, which changes nothing for IoUs that are ratios of point counts.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .class_spec import ClassSpec

MAP_OVERLAPS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
OVERLAPS = MAP_OVERLAPS + (0.25,)
MIN_REGION_SIZE = 100


def average_precision(y_true, y_score, num_missed: int) -> float:
    """AP of one class at one threshold, the benchmark's way.

    Parameters
    ----------
    y_true, y_score : array (E,)
        One entry per matched GT instance (1, its score) and per false positive (0, its score).
    num_missed : int
        GT instances without a match (the official ``hard_false_negatives``).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.sum() + num_missed == 0:
        raise ValueError("average_precision needs at least one ground-truth instance")
    if len(y_true) == 0:  # the official script crashes here; no true positive means AP 0
        return 0.0
    order = np.argsort(y_score, kind="stable")
    scores, trues = y_score[order], y_true[order]
    _, first = np.unique(scores, return_index=True)  # first index of every unique score
    below = np.concatenate([[0.0], np.cumsum(trues)])[first]  # true entries scoring lower
    tp = trues.sum() - below
    fp = (len(scores) - first) - tp
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + below + num_missed), 0.0)
    steps = np.convolve(np.concatenate([recall[:1], recall, [0.0]]), [-0.5, 0.0, 0.5], "valid")
    return float(np.dot(precision, steps))


@dataclass
class ClassMatches:
    """What the matching needs of one class in one scene (the official ``gt2pred`` / ``pred2gt``).

    ``gt_sizes`` (G,): points of every GT instance of the class, in id order, small ones included.
    ``pred_sizes``, ``pred_scores``, ``pred_ignored`` (P,): the kept predictions in file order,
    their point counts, scores and number of void points. ``inter`` (G, P): shared points.
    """

    gt_sizes: np.ndarray
    pred_sizes: np.ndarray
    pred_scores: np.ndarray
    pred_ignored: np.ndarray
    inter: np.ndarray


def match_class(m: ClassMatches, overlap: float, min_region_size: int = MIN_REGION_SIZE):
    """Greedy matching of one class in one scene at one threshold (module docstring).

    Returns ``(y_true, y_score, num_missed)``, the scene's contribution to :func:`average_precision`.
    """
    union = m.gt_sizes[:, None] + m.pred_sizes[None, :] - m.inter
    above = m.inter / union > overlap
    counted = m.gt_sizes >= min_region_size
    visited = np.zeros(len(m.pred_scores), dtype=bool)
    y_true, y_score, missed = [], [], 0
    for g in np.flatnonzero(counted):
        best = None
        for p in np.flatnonzero(above[g] & ~visited):  # file order
            score = float(m.pred_scores[p])
            if best is None:
                best, visited[p] = score, True
            else:  # a duplicate: the lower of the two scores becomes a false positive
                y_true.append(0.0)
                y_score.append(min(best, score))
                best = max(best, score)
        if best is None:
            missed += 1
        else:
            y_true.append(1.0)
            y_score.append(best)
    ignored = m.pred_ignored + m.inter[~counted].sum(axis=0)
    false_pos = ~above.any(axis=0) & (ignored / m.pred_sizes <= overlap)
    y_true.extend([0.0] * int(false_pos.sum()))
    y_score.extend(m.pred_scores[false_pos].tolist())
    return np.array(y_true), np.array(y_score), missed


def instance_arrays(instances, num_points: int | None = None, where: str = "predictions"):
    """Normalise predicted instances to ``(masks, class_ids, scores)``.

    ``instances`` is a list of dicts ``{"mask": (N,) bool or 0/1, "class_id": benchmark id,
    "score": float}`` or one dict of arrays ``{"masks": (M, N), "class_ids": (M,), "scores": (M,)}``.
    Returns a list of M bool arrays, an int64 (M,) and a float64 (M,) array; raises ``ValueError``
    naming ``where`` on a wrong mask length, a non-integer class id or a non-finite score.
    """
    if isinstance(instances, Mapping):
        masks, class_ids, scores = instances["masks"], instances["class_ids"], instances["scores"]
        if not len(masks) == len(class_ids) == len(scores):
            raise ValueError(f"{where}: masks, class_ids and scores differ in length")
    else:
        masks = [inst["mask"] for inst in instances]
        class_ids = [inst["class_id"] for inst in instances]
        scores = [inst["score"] for inst in instances]
    masks = [np.asarray(mask) != 0 for mask in masks]
    for k, mask in enumerate(masks):
        if mask.ndim != 1 or (num_points is not None and len(mask) != num_points):
            raise ValueError(f"{where}: instance {k} has a mask of shape {mask.shape}, "
                             f"expected ({num_points},)")
    raw_ids = np.asarray(class_ids, dtype=np.float64).reshape(-1)
    if not np.all(raw_ids == np.round(raw_ids)):
        raise ValueError(f"{where}: class ids must be integers, got {raw_ids.tolist()}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(scores).all():
        raise ValueError(f"{where}: scores must be finite numbers")
    return masks, raw_ids.astype(np.int64), scores


def check_class_id(class_id: int, spec: ClassSpec, where: str) -> None:
    """Raise ``ValueError`` if ``class_id`` is none of the dataset's benchmark ids."""
    if class_id not in spec.benchmark_ids:
        raise ValueError(f"{where}: class id {class_id} is not a class of this dataset "
                         f"(benchmark ids {list(spec.benchmark_ids)})")


def scene_matches(instances, gt_ids, spec: ClassSpec, min_region_size: int = MIN_REGION_SIZE,
                  where: str = "scene") -> dict:
    """Intersect a scene's predictions with its GT instances (official ``assign_instances_for_scan``).

    Returns ``{benchmark id: ClassMatches}`` for the instance classes that have GT instances or
    kept predictions in the scene.
    """
    gt_ids = np.asarray(gt_ids, dtype=np.int64).reshape(-1)
    masks, class_ids, scores = instance_arrays(instances, len(gt_ids), where)
    inst_class_ids = np.asarray(spec.instance_benchmark_ids, dtype=np.int64)
    is_instance = np.isin(gt_ids // 1000, inst_class_ids) & (gt_ids % 1000 != 0)
    uniq, gt_sizes = np.unique(gt_ids[is_instance], return_counts=True)
    point_gt = np.full(len(gt_ids), -1, dtype=np.int64)  # GT index of each point, -1 = void
    point_gt[is_instance] = np.searchsorted(uniq, gt_ids[is_instance])
    gt_class = uniq // 1000

    preds = {c: [] for c in inst_class_ids.tolist()}  # class -> [(size, score, ignored, counts)]
    for k, (mask, class_id, score) in enumerate(zip(masks, class_ids.tolist(), scores.tolist())):
        check_class_id(class_id, spec, f"{where}, instance {k}")
        size = int(mask.sum())
        if class_id not in preds or size < min_region_size:
            continue
        hit = point_gt[mask]
        hit = hit[hit >= 0]
        preds[class_id].append((size, score, size - len(hit), np.bincount(hit, minlength=len(uniq))))

    matches = {}
    for c, plist in preds.items():
        rows = np.flatnonzero(gt_class == c)
        if len(rows) == 0 and not plist:
            continue
        inter = np.stack([p[3][rows] for p in plist], axis=1) if plist else np.zeros((len(rows), 0))
        matches[c] = ClassMatches(
            gt_sizes=gt_sizes[rows],
            pred_sizes=np.array([p[0] for p in plist], dtype=np.int64),
            pred_scores=np.array([p[1] for p in plist], dtype=np.float64),
            pred_ignored=np.array([p[2] for p in plist], dtype=np.int64),
            inter=inter.astype(np.int64).reshape(len(rows), len(plist)))
    return matches


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class InstanceEvaluator:
    """Accumulates scenes one at a time (only the per-scene :class:`ClassMatches`, not the masks)
    and computes the benchmark's AP table.

    Examples
    --------
    >>> ev = InstanceEvaluator(ClassSpec.builtin("scannet"))        # doctest: +SKIP
    >>> for preds, gt_ids in val_scenes: ev.add_scene(preds, gt_ids)  # doctest: +SKIP
    >>> print(format_ap_table(ev.result()))                          # doctest: +SKIP
    """

    def __init__(self, spec: ClassSpec, min_region_size: int = MIN_REGION_SIZE):
        self.spec = spec
        self.min_region_size = int(min_region_size)
        self.scenes: dict[str, dict] = {}

    def add_scene(self, instances, gt_ids, name: str | None = None) -> None:
        """Add one scene: predictions as in :func:`instance_arrays`, GT ids of the gt txt."""
        name = str(len(self.scenes)) if name is None else str(name)
        if name in self.scenes:
            raise ValueError(f"scene {name} was added twice")
        self.scenes[name] = scene_matches(instances, gt_ids, self.spec, self.min_region_size,
                                          where=f"scene {name}")

    def class_ap(self, class_id: int, overlap: float) -> float:
        """AP of one instance class (benchmark id) at one threshold over all scenes added."""
        per_scene = [s[class_id] for s in self.scenes.values() if class_id in s]
        has_gt = any((m.gt_sizes >= self.min_region_size).any() for m in per_scene)
        if not has_gt:
            return float("nan")
        if not any(len(m.pred_scores) for m in per_scene):
            return 0.0
        parts = [match_class(m, overlap, self.min_region_size) for m in per_scene]
        return average_precision(np.concatenate([p[0] for p in parts]),
                                 np.concatenate([p[1] for p in parts]),
                                 sum(p[2] for p in parts))

    def result(self) -> dict:
        """The AP table: ``ap_matrix`` (classes x :data:`OVERLAPS`), per class ``AP`` (mean over
        0.50..0.90), ``AP50``, ``AP25`` and their means over classes with GT (``AP``, ``AP50``,
        ``AP25``)."""
        ids = self.spec.instance_benchmark_ids
        table = np.array([[self.class_ap(c, th) for th in OVERLAPS] for c in ids]).reshape(
            len(ids), len(OVERLAPS))
        n_map, i50, i25 = len(MAP_OVERLAPS), OVERLAPS.index(0.5), OVERLAPS.index(0.25)
        classes = {name: {"AP": float(np.mean(row[:n_map])), "AP50": float(row[i50]),
                          "AP25": float(row[i25])}
                   for name, row in zip(self.spec.instance_names, table)}
        return {"classes": classes, "AP": _nanmean(table[:, :n_map]), "AP50": _nanmean(table[:, i50]),
                "AP25": _nanmean(table[:, i25]), "ap_matrix": table, "overlaps": list(OVERLAPS),
                "class_ids": list(ids), "num_scenes": len(self.scenes)}


def evaluate_instances(preds_per_scene, gt_ids_per_scene, spec: ClassSpec,
                       min_region_size: int = MIN_REGION_SIZE, progress: bool = False) -> dict:
    """Benchmark AP of in-memory predictions (see :class:`InstanceEvaluator.result`).

    ``preds_per_scene`` and ``gt_ids_per_scene`` are two equally long sequences, or two mappings
    scene name -> value with the same keys; a scene's predictions are as in :func:`instance_arrays`
    and its GT ids are those of the gt txt (:func:`twist_lib.data.io.gt_ids` of the scene).
    """
    if isinstance(gt_ids_per_scene, Mapping):
        missing = [n for n in gt_ids_per_scene if n not in preds_per_scene]
        if missing or len(preds_per_scene) != len(gt_ids_per_scene):
            extra = [n for n in preds_per_scene if n not in gt_ids_per_scene]
            raise ValueError(f"scenes without predictions: {missing}; predictions without "
                             f"ground truth: {extra}")
        items = [(n, preds_per_scene[n], gt) for n, gt in gt_ids_per_scene.items()]
    else:
        if len(preds_per_scene) != len(gt_ids_per_scene):
            raise ValueError(f"{len(preds_per_scene)} prediction lists for "
                             f"{len(gt_ids_per_scene)} ground-truth scenes")
        items = [(None, p, gt) for p, gt in zip(preds_per_scene, gt_ids_per_scene)]
    evaluator = InstanceEvaluator(spec, min_region_size)
    for name, preds, gt in tqdm(items, desc="instance AP", disable=not progress):
        evaluator.add_scene(preds, gt, name)
    return evaluator.result()


def format_ap_table(result: dict) -> str:
    """The per-class table the official script prints (AP, AP_50%, AP_25%), then the averages."""
    line = "#" * 64
    rows = ["", line, f"{'what':<15}:{'AP':>15}{'AP_50%':>15}{'AP_25%':>15}", line]
    for name, r in result["classes"].items():
        rows.append(f"{name:<15}:{r['AP']:>15.3f}{r['AP50']:>15.3f}{r['AP25']:>15.3f}")
    rows.append("-" * 64)
    rows.append(f"{'average':<15}:{result['AP']:>15.3f}{result['AP50']:>15.3f}{result['AP25']:>15.3f}")
    return "\n".join(rows) + "\n"
