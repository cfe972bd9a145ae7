"""The package's one data convention: see :mod:`twist_lib.data.io` for the scene dict and the
on-disk format, :mod:`twist_lib.data.batch` for the batch dict.

The light modules (io, classes) are imported eagerly; the ones that need torch or scipy
(voxels, transforms, batch, splits, dataset) on first use, so that command lines that only
read and write files (preparers, the evaluator) start fast.
"""
import importlib

from .classes import IGNORE_INDEX
from .io import (DataFormatError, load_scene, save_scene, read_meta, write_meta, make_meta,
                 write_gt_txt, gt_ids, scene_path, validate_scene)

_LAZY = {
    "voxels": ("VOXEL_SIZE", "voxelize", "voxel_mean"),
    "transforms": ("Compose", "RandomJitterMatrix", "RandomFlipX", "RandomRotateZ",
                   "ElasticDistortion", "RandomCrop", "ColourShift", "default_train_transforms",
                   "instance_centers", "instance_offsets", "select_points"),
    "batch": ("BATCH_KEYS", "collate", "point_features", "to_device"),
    "splits": ("make_label_splits", "write_label_splits", "ratio_key", "labelled_split_name"),
    "dataset": ("SceneDataset", "SPLITS", "split_scene_names", "corrupt_instance_classes"),
    "ensure": ("ensure_dataset",),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
