"""Quality of pseudo labels against the ground truth (paper Fig. 4; the book's appendix,
Conventions: "Pseudo-label quality").

Conventions: a point has a pseudo label where its pseudo semantic is not ``ignore_index`` (-100);
module C writes the pseudo semantic and the pseudo offset of the same points (eqs. 6-8), so by
default the pseudo offset is read only there; labels whose offsets are set on other points (the
ablations of Tables 4-5, :mod:`twist_lib.pseudo_labels`) pass their ``offset_valid`` mask. The
ground-truth offset of a point is only meaningful where its ground-truth instance is not -100.

* ``sem_acc``: fraction of points with a pseudo label and a valid ground-truth class whose pseudo
  class is right (the paper's "Sem. Acc."); ``sem_macc`` is the same averaged per class.
* ``offset_error``: mean of ``||o_tilde - o_gt||_2`` over points with a pseudo offset (see
  above) and a ground-truth instance (the paper's "Off. Error").
* ``coverage``: fraction of all points that received a pseudo label.
* ``object_sem_acc`` (when ``object_classes`` is given): ``sem_acc`` over the points whose pseudo
  class is an object (instance) class. Module C labels only objects, so without background
  pseudo labels it equals ``sem_acc``; with them (an extension of this implementation,
  :func:`twist_lib.pseudo_labels.make_pseudo_labels`) it keeps the figure comparable.

:func:`pseudo_dir_quality` scores a round's pseudo-label files (``<pseudo_dir>/<scene>.npz``,
:mod:`twist_lib.data.pseudo_files`) against the ground truth of the unlabelled scenes.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..data.classes import IGNORE_INDEX
from ..data.pseudo_files import pseudo_label_path, read_pseudo_labels
from .semantic import ConfusionMatrix


class PseudoLabelQuality:
    """Accumulates pseudo-label quality over scenes; :meth:`result` gives the module's metrics."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, object_classes=None):
        self.ignore_index = ignore_index
        self.object_classes = None if object_classes is None else np.asarray(
            list(object_classes), dtype=np.int64)
        self.confusion = ConfusionMatrix(num_classes, ignore_index)
        self.n_points = 0
        self.n_pseudo = 0
        self.n_offset_scored = 0
        self.offset_error_sum = 0.0

    def add(self, pseudo_sem, pseudo_offset, gt_sem, gt_offset, gt_instance,
            offset_valid=None) -> "PseudoLabelQuality":
        """Add one scene: ``pseudo_sem``, ``gt_sem``, ``gt_instance`` (N,) ints and
        ``pseudo_offset``, ``gt_offset`` (N, 3) floats; ``offset_valid`` (N,) bool, where the
        pseudo offset is set (default: where the pseudo semantic is)."""
        pseudo_sem = np.asarray(pseudo_sem, dtype=np.int64).reshape(-1)
        gt_sem = np.asarray(gt_sem, dtype=np.int64).reshape(-1)
        gt_instance = np.asarray(gt_instance, dtype=np.int64).reshape(-1)
        pseudo_offset = np.asarray(pseudo_offset, dtype=np.float64)
        gt_offset = np.asarray(gt_offset, dtype=np.float64)
        n = len(pseudo_sem)
        if len(gt_sem) != n or len(gt_instance) != n:
            raise ValueError(f"pseudo labels have {n} points, ground truth {len(gt_sem)} "
                             f"semantic and {len(gt_instance)} instance labels")
        if pseudo_offset.shape != (n, 3) or gt_offset.shape != (n, 3):
            raise ValueError(f"offsets must have shape ({n}, 3), got {pseudo_offset.shape} "
                             f"and {gt_offset.shape}")
        has_pseudo = pseudo_sem != self.ignore_index
        sem_scored = has_pseudo & (gt_sem != self.ignore_index)
        self.confusion.add(pseudo_sem[sem_scored], gt_sem[sem_scored])
        if offset_valid is None:
            offset_valid = has_pseudo
        offset_valid = np.asarray(offset_valid, dtype=bool).reshape(-1)
        if len(offset_valid) != n:
            raise ValueError(f"offset_valid has {len(offset_valid)} entries, expected {n}")
        off_scored = offset_valid & (gt_instance != self.ignore_index)
        error = np.linalg.norm(pseudo_offset[off_scored] - gt_offset[off_scored], axis=1)
        self.n_points += n
        self.n_pseudo += int(has_pseudo.sum())
        self.n_offset_scored += int(off_scored.sum())
        self.offset_error_sum += float(error.sum())
        return self

    def result(self) -> dict:
        """``sem_acc``, ``sem_macc``, ``offset_error`` (NaN when nothing was scored), ``coverage``
        and the point counts behind them."""
        sem = self.confusion.scores()
        nan = float("nan")
        return {
            "sem_acc": sem["oacc"],
            "sem_macc": sem["macc"],
            "offset_error": self.offset_error_sum / self.n_offset_scored if self.n_offset_scored else nan,
            "coverage": self.n_pseudo / self.n_points if self.n_points else nan,
            **self._object_accuracy(),
            "n_points": self.n_points,
            "n_pseudo": self.n_pseudo,
            "n_sem_scored": int(self.confusion.matrix.sum()),
            "n_offset_scored": self.n_offset_scored,
        }


    def _object_accuracy(self) -> dict:
        if self.object_classes is None:
            return {}
        m = self.confusion.matrix[:, self.object_classes]     # ground truth x object pseudo class
        right = m[self.object_classes, np.arange(len(self.object_classes))].sum()
        return {"object_sem_acc": float(right / m.sum()) if m.sum() else float("nan")}


def pseudo_label_quality(pseudo_sem, pseudo_offset, gt_sem, gt_offset, gt_instance,
                         num_classes: int, ignore_index: int = IGNORE_INDEX,
                         offset_valid=None) -> dict:
    """Pseudo-label quality of one scene (module docstring); use :class:`PseudoLabelQuality` to
    accumulate several."""
    return PseudoLabelQuality(num_classes, ignore_index).add(
        pseudo_sem, pseudo_offset, gt_sem, gt_offset, gt_instance, offset_valid).result()


def pseudo_dir_quality(pseudo_dir, dataset, progress: bool = False) -> dict:
    """Quality of a round's pseudo-label files against the ground truth (Fig. 4).

    For every scene of ``dataset`` (an unlabelled :class:`twist_lib.data.SceneDataset`) reads
    its file in ``pseudo_dir`` and ``dataset.ground_truth(i)``, and accumulates
    :class:`PseudoLabelQuality` (offsets scored where
    ``offset_valid``). Returns its ``result()`` plus ``per_scene``: a list of dicts with
    ``name``, ``sem_acc``, ``coverage`` and ``offset_error`` of each scene. Run this after the
    labels are written; training never reads it. A missing file is an error naming it.
    """
    paths = [pseudo_label_path(pseudo_dir, name) for name in dataset.names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} pseudo-label file(s) missing in {pseudo_dir}, "
                                f"e.g. {missing[:3]}")
    num_classes = int(dataset.meta["num_classes"])
    objects = dataset.meta["instance_classes"]
    total, per_scene = PseudoLabelQuality(num_classes, object_classes=objects), []
    for i, path in enumerate(tqdm(paths, desc="pseudo-label quality", disable=not progress)):
        gt = dataset.ground_truth(i)
        labels = read_pseudo_labels(path, num_points=len(gt["xyz"]))
        valid = labels["offset_valid"]
        args = (labels["semantic"], np.where(valid[:, None], labels["offset"], 0.0),
                gt["semantic"], gt["offset"], gt["instance"])
        total.add(*args, offset_valid=valid)
        scene = PseudoLabelQuality(num_classes).add(*args, offset_valid=valid).result()
        per_scene.append({"name": dataset.names[i], "sem_acc": scene["sem_acc"],
                          "coverage": scene["coverage"], "offset_error": scene["offset_error"]})
    return {**total.result(), "per_scene": per_scene}
