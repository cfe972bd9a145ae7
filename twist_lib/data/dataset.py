"""The scenes of one split of a prepared dataset folder, augmented, as a torch ``Dataset``.

Splits (``meta.json`` -> ``splits``, see :mod:`twist_lib.data.io` and :mod:`twist_lib.data.splits`):

* ``"train"``, ``"val"``: the lists of the same name.
* ``"labelled"``: ``splits["labelled_<ratio>"]`` for ``label_ratio`` (percent, e.g. 5).
* ``"unlabelled"``: the train scenes not in that labelled list. Its items never carry labels:
  ``semantic`` and ``instance`` are all -100 and ``offset`` is zero, whatever is on disk. The
  stored ground truth is only reachable through the explicit :meth:`SceneDataset.ground_truth`,
  meant for measuring pseudo-label quality (paper Fig. 4; the book's appendix, Conventions:
  "Pseudo-label quality"), never for training.

Each item is a scene dict after augmentation plus ``offset`` (N, 3) float32, the offset targets
computed on the augmented coordinates (:func:`twist_lib.data.transforms.instance_offsets`), and
``offset_valid`` (N,) bool, the points whose offset is supervised (``instance != -100``).

Pseudo labels (paper Sec. 4.3): an unlabelled split given ``pseudo_dir`` (a round's
``pseudo/`` folder of :mod:`twist_lib.pseudo_labels` files) carries, for every scene, its pseudo
``semantic``, its pseudo ``instance`` (the kept proposal of each point) and a per-point target
``center`` = point + pseudo offset, which the augmentations move with the points; after
augmentation ``offset = center - xyz`` where the pseudo offset is valid, else zero. The stored
ground truth never enters: labels are hidden first, then replaced by the pseudo labels.

Label noise (paper Fig. 4b): ``label_noise = f`` gives each labelled instance, with probability
``f``, a wrong class drawn uniformly from the other instance classes; the draw depends only on
(``seed``, scene name), so it is the same in every epoch and every worker.
Augmentation randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so an item
depends only on (seed, epoch, index), not on worker count or access order; call
:meth:`SceneDataset.set_epoch` at the start of every epoch (with a ``DataLoader``, before creating
its iterator, and without ``persistent_workers``, whose workers keep an old copy).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .classes import IGNORE_INDEX
from .batch import collate
from .io import read_meta, load_scene, scene_path
from .pseudo_files import pseudo_label_path, read_pseudo_labels
from .splits import labelled_split_name
from .transforms import instance_offsets
from .voxels import VOXEL_SIZE

SPLITS = ("train", "val", "labelled", "unlabelled")


def split_scene_names(root, meta: dict, split: str, label_ratio=None) -> list[str]:
    """Scene names of ``split`` (one of :data:`SPLITS`); an error naming ``meta.json`` and the
    available splits if the needed list is missing."""
    meta_path = Path(root) / "meta.json"
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    available = sorted(meta["splits"])

    def lookup(key):
        if key not in meta["splits"]:
            hint = " (make it with data_scripts/make_splits.py)" if key.startswith("labelled_") else ""
            raise ValueError(f"{meta_path}: no split '{key}'{hint}; available splits: {available}")
        return list(meta["splits"][key])

    if split in ("train", "val"):
        return lookup(split)
    if label_ratio is None:
        raise ValueError(f"split {split!r} needs label_ratio (percent, e.g. 5)")
    labelled = lookup(labelled_split_name(label_ratio))
    if split == "labelled":
        return labelled
    labelled_set = set(labelled)
    return [n for n in lookup("train") if n not in labelled_set]


def corrupt_instance_classes(scene: dict, fraction: float, instance_classes, seed: int) -> dict:
    """The scene with each instance's class replaced, with probability ``fraction``, by another
    instance class drawn uniformly (paper Fig. 4b); seeded by (``seed``, scene name). Points
    without a class (-100) stay without one."""
    classes = np.asarray(sorted(instance_classes), dtype=np.int64)
    ids = np.unique(scene["instance"][scene["instance"] != IGNORE_INDEX])
    if len(ids) == 0 or len(classes) < 2:
        return scene
    name_key = [int(b) for b in str(scene.get("name", "")).encode()]
    rng = np.random.default_rng([int(seed), 7919, *name_key])
    flip = rng.random(len(ids)) < fraction
    shift = rng.integers(1, len(classes), size=len(ids))
    semantic = scene["semantic"].copy()
    for k in np.flatnonzero(flip):  # one vectorised write per corrupted instance
        member = scene["instance"] == ids[k]
        old = int(np.bincount(semantic[member][semantic[member] >= 0], minlength=1).argmax())
        pos = int(np.searchsorted(classes, old)) if old in classes else 0
        semantic[member & (semantic >= 0)] = classes[(pos + shift[k]) % len(classes)]
    return {**scene, "semantic": semantic}


def hide_labels(scene: dict) -> dict:
    """The scene with ``semantic`` and ``instance`` replaced by all -100."""
    n = len(scene["xyz"])
    return {**scene, "semantic": np.full(n, IGNORE_INDEX, dtype=np.int64),
            "instance": np.full(n, IGNORE_INDEX, dtype=np.int64)}


class SceneDataset(Dataset):
    """One split of a prepared dataset folder (module docstring).

    Parameters
    ----------
    root : path
        Prepared dataset folder (``meta.json`` + ``scenes/``).
    split : {"labelled", "unlabelled", "val", "train"}
    label_ratio : float, optional
        Label ratio in percent; required for "labelled" and "unlabelled", ignored otherwise.
    transforms : callable ``(scene, rng) -> scene``, optional
        Augmentation, e.g. :func:`twist_lib.data.transforms.default_train_transforms`.
    voxel_size : float
        Voxel edge in metres, used by :attr:`collate_fn`.
    seed : int
        Seed of the augmentation randomness.
    use_xyz_features : bool
        Whether :attr:`collate_fn` appends centred xyz to the rgb features.
    cache : bool
        Keep loaded scenes in memory (per process).
    """

    def __init__(self, root, split: str, label_ratio=None, transforms=None,
                 voxel_size: float = VOXEL_SIZE, seed: int = 0, use_xyz_features: bool = False,
                 cache: bool = True, pseudo_dir=None, label_noise: float = 0.0):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.split = split
        self.label_ratio = label_ratio
        self.names = split_scene_names(self.root, self.meta, split, label_ratio)
        self.transforms = transforms
        self.voxel_size = float(voxel_size)
        self.seed = int(seed)
        self.use_xyz_features = bool(use_xyz_features)
        self.hides_labels = split == "unlabelled"
        self.pseudo_dir = None if pseudo_dir is None else Path(pseudo_dir)
        if self.pseudo_dir is not None and not self.hides_labels:
            raise ValueError(f"pseudo labels belong to the unlabelled split, not {split!r}")
        if not 0.0 <= label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
        if label_noise > 0 and split not in ("labelled", "train"):
            raise ValueError(f"label_noise corrupts training labels only; the {split!r} split "
                             "keeps its ground truth")
        self.label_noise = float(label_noise)
        self.epoch = 0
        self._cache = {} if cache else None
        missing = [scene_path(self.root, n) for n in self.names if not scene_path(self.root, n).exists()]
        if missing:
            raise FileNotFoundError(
                f"{self.root / 'meta.json'}: split '{split}' lists {len(missing)} scene(s) with no "
                f"file, e.g. {[str(p) for p in missing[:3]]}")

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation randomness of ``epoch``."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        """The generator that augments item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _stored(self, index: int) -> dict:
        """A private copy of the scene as stored on disk (labels included)."""
        name = self.names[index]
        if self._cache is None:
            return load_scene(scene_path(self.root, name))
        if name not in self._cache:
            self._cache[name] = load_scene(scene_path(self.root, name))
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._cache[name].items()}

    @property
    def labelled(self) -> bool:
        """Whether items carry ground-truth labels (False for the unlabelled split)."""
        return not self.hides_labels

    def __getitem__(self, index: int) -> dict:
        scene = self._stored(index)
        if self.hides_labels:
            scene = hide_labels(scene)
            if self.pseudo_dir is not None:
                scene = self._with_pseudo_labels(scene)
        elif self.label_noise > 0:
            scene = corrupt_instance_classes(scene, self.label_noise, self.meta["instance_classes"],
                                             self.seed)
        if self.transforms is not None:
            scene = self.transforms(scene, self.generator(index))
        if "center" in scene:
            valid = scene.pop("offset_valid")
            scene["offset"] = np.where(valid[:, None], scene.pop("center") - scene["xyz"],
                                       0).astype(np.float32)
        else:
            scene["offset"] = instance_offsets(scene["xyz"], scene["instance"])
            valid = scene["instance"] != IGNORE_INDEX
        scene["offset_valid"] = valid
        scene["labelled"] = self.labelled
        return scene

    def _with_pseudo_labels(self, scene: dict) -> dict:
        labels = read_pseudo_labels(pseudo_label_path(self.pseudo_dir, scene["name"]),
                                    num_points=len(scene["xyz"]))
        valid = labels["offset_valid"].astype(bool)
        center = scene["xyz"] + np.where(valid[:, None], labels["offset"], 0)
        return {**scene, "semantic": labels["semantic"].astype(np.int64),
                "instance": labels["instance"].astype(np.int64),
                "center": center.astype(np.float32), "offset_valid": valid}

    def ground_truth(self, index: int) -> dict:
        """The stored, un-augmented scene with its labels and ``offset`` targets — for evaluating
        pseudo labels of the unlabelled split only; training code must not call this."""
        scene = self._stored(index)
        scene["offset"] = instance_offsets(scene["xyz"], scene["instance"])
        return scene

    @property
    def collate_fn(self):
        """:func:`twist_lib.data.batch.collate` with this dataset's voxel size and features."""
        return functools.partial(collate, voxel_size=self.voxel_size,
                                 use_xyz_features=self.use_xyz_features)

    def __repr__(self):
        ratio = f", label_ratio={self.label_ratio}" if self.label_ratio is not None else ""
        return f"SceneDataset({str(self.root)!r}, {self.split!r}{ratio}, {len(self)} scenes)"
