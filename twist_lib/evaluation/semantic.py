"""Semantic segmentation scores from a confusion matrix: mIoU and mAcc over the classes, ignoring
-100 (paper Tables 5 and 8; the book's appendix, Conventions: "The ScanNet benchmark protocol")."""
from __future__ import annotations

import numpy as np

from ..data.classes import IGNORE_INDEX


def _ratio(num, den) -> np.ndarray:
    """num / den elementwise, NaN where den == 0 (a class with nothing to score)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _mean(values) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class ConfusionMatrix:
    """Accumulable K x K confusion matrix, rows = ground truth, columns = prediction.

    Points whose ground truth is ``ignore_index`` are skipped; every other point must have a
    ground truth in 0..K-1 and a prediction in 0..K-1 (``ValueError`` otherwise).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred, gt) -> "ConfusionMatrix":
        pred = np.asarray(pred, dtype=np.int64).reshape(-1)
        gt = np.asarray(gt, dtype=np.int64).reshape(-1)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction has {len(pred)} points, ground truth {len(gt)}")
        keep = gt != self.ignore_index
        pred, gt = pred[keep], gt[keep]
        k = self.num_classes
        for what, arr in (("ground truth", gt), ("prediction", pred)):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise ValueError(f"{what} labels must lie in 0..{k - 1} where the ground truth "
                                 f"is not {self.ignore_index}")
        self.matrix += np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)
        return self

    def scores(self) -> dict:
        """``miou``, ``macc`` (means over classes where defined), ``oacc`` (overall point
        accuracy), ``iou_per_class`` = TP / (TP + FP + FN) and ``acc_per_class`` = TP / (TP + FN),
        NaN for a class absent from both (IoU) or from the ground truth (accuracy)."""
        cm = self.matrix
        tp = np.diag(cm)
        gt_count, pred_count = cm.sum(axis=1), cm.sum(axis=0)
        iou = _ratio(tp, gt_count + pred_count - tp)
        acc = _ratio(tp, gt_count)
        return {"miou": _mean(iou), "macc": _mean(acc), "oacc": float(_ratio(tp.sum(), cm.sum())),
                "iou_per_class": iou, "acc_per_class": acc}


def semantic_scores(pred, gt, num_classes: int, ignore_index: int = IGNORE_INDEX) -> dict:
    """mIoU / mAcc of one prediction (see :meth:`ConfusionMatrix.scores`); accumulate several
    scenes with :class:`ConfusionMatrix` instead."""
    return ConfusionMatrix(num_classes, ignore_index).add(pred, gt).scores()
