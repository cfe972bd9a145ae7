"""Evaluation: the ScanNet benchmark's instance AP, semantic mIoU / mAcc and the quality of pseudo
labels (paper Sec. 5, Table 8, Fig. 4; the book's appendix, Conventions: "The ScanNet benchmark
protocol" and "Pseudo-label quality").

- :mod:`.class_spec`   :class:`ClassSpec`, which classes are scored and their benchmark ids
- :mod:`.instance_ap`  the benchmark's matching and AP (``evaluate_semantic_instance.py``)
- :mod:`.files`        its prediction / ground-truth txt formats and folder evaluation
- :mod:`.semantic`     confusion matrix, mIoU, mAcc
- :mod:`.pseudo`       pseudo-label semantic accuracy, offset error, coverage

The command line is :mod:`twist_lib.evaluate` (``python -m twist_lib.evaluate --gt GT --pred PRED``).
"""
from .class_spec import ClassSpec
from .files import (PRED_MASK_DIR, evaluate_dirs, read_gt_txt, read_ids_txt, read_predictions,
                    scene_files, write_predictions)
from .instance_ap import (MAP_OVERLAPS, MIN_REGION_SIZE, OVERLAPS, ClassMatches, InstanceEvaluator,
                          average_precision, evaluate_instances, format_ap_table, instance_arrays,
                          match_class, scene_matches)
from .pseudo import PseudoLabelQuality, pseudo_dir_quality, pseudo_label_quality
from .semantic import ConfusionMatrix, semantic_scores

__all__ = [
    "ClassSpec", "PRED_MASK_DIR", "evaluate_dirs", "read_gt_txt", "read_ids_txt",
    "read_predictions", "scene_files", "write_predictions", "MAP_OVERLAPS", "MIN_REGION_SIZE",
    "OVERLAPS", "ClassMatches", "InstanceEvaluator", "average_precision", "evaluate_instances",
    "format_ap_table", "instance_arrays", "match_class", "scene_matches", "PseudoLabelQuality",
    "pseudo_dir_quality", "pseudo_label_quality", "ConfusionMatrix", "semantic_scores",
]
