"""Which classes an evaluation scores, and the integer ids the benchmark files use for them.

The ScanNet benchmark names a class by its *benchmark id* (ScanNet: the nyu40 id; S3DIS and the
synthetic benchmark: semantic index + 1, see :mod:`twist_lib.data.classes`). Instance AP is
computed only for the *instance classes*; the other classes, the *background* classes (ScanNet:
wall, floor; :attr:`ClassSpec.background_ids`), count as void and are never clustered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import classes as _classes


@dataclass(frozen=True)
class ClassSpec:
    """Class names and ids of a dataset.

    Parameters
    ----------
    names : sequence of str
        Name of every semantic class, in semantic-index order (K entries).
    benchmark_ids : sequence of int
        Benchmark id of every semantic class (K distinct positive ints).
    instance_ids : sequence of int
        Semantic indices (0..K-1) of the instance classes, i.e. ``meta.json``'s
        ``instance_classes``; instance AP is reported for these, in this order.
    """

    names: tuple
    benchmark_ids: tuple
    instance_ids: tuple

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        ids = tuple(int(i) for i in self.benchmark_ids)
        inst = tuple(int(i) for i in self.instance_ids)
        if len(ids) != len(names):
            raise ValueError(f"ClassSpec: {len(names)} names but {len(ids)} benchmark ids")
        if len(set(names)) != len(names):
            raise ValueError(f"ClassSpec: class names must be distinct, got {names}")
        if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):
            raise ValueError(f"ClassSpec: benchmark ids must be distinct positive ints, got {ids}")
        if len(set(inst)) != len(inst) or any(not 0 <= i < len(names) for i in inst):
            raise ValueError(f"ClassSpec: instance class indices must be distinct and in "
                             f"0..{len(names) - 1}, got {inst}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "benchmark_ids", ids)
        object.__setattr__(self, "instance_ids", inst)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def instance_names(self) -> tuple:
        """Names of the instance classes (the rows of the AP table)."""
        return tuple(self.names[i] for i in self.instance_ids)

    @property
    def background_ids(self) -> tuple:
        """Semantic indices (ascending) of the classes that are not instance classes (ScanNet:
        wall, floor): module A never clusters them and the benchmark counts them as void."""
        instance = set(self.instance_ids)
        return tuple(c for c in range(self.num_classes) if c not in instance)

    @property
    def instance_benchmark_ids(self) -> tuple:
        """Benchmark ids of the instance classes (the benchmark's ``VALID_CLASS_IDS``)."""
        return tuple(self.benchmark_ids[i] for i in self.instance_ids)

    def to_benchmark_id(self, semantic):
        """Map semantic indices (int or array) to benchmark ids."""
        return np.asarray(self.benchmark_ids, dtype=np.int64)[np.asarray(semantic, dtype=np.int64)]

    @classmethod
    def from_meta(cls, meta: dict) -> "ClassSpec":
        """Build from a ``meta.json`` dict (keys ``class_names``, ``instance_classes`` and
        optionally ``benchmark_ids``, default semantic index + 1; see :func:`twist_lib.data.io.make_meta`)."""
        for key in ("class_names", "instance_classes"):
            if key not in meta:
                raise ValueError(f"meta.json: missing key '{key}'")
        names = meta["class_names"]
        ids = meta.get("benchmark_ids") or range(1, len(names) + 1)
        return cls(names, ids, meta["instance_classes"])

    @classmethod
    def builtin(cls, dataset: str) -> "ClassSpec":
        """The class list of a dataset the package knows: ``scannet`` (20 classes, nyu40 ids,
        18 instance classes), ``s3dis`` (13 classes, ids 1..13, all instance classes) or
        ``synthetic`` (from :mod:`twist_lib.synthetic`, ids = index + 1)."""
        if dataset == "scannet":
            return cls(_classes.SCANNET_CLASS_NAMES, _classes.SCANNET_NYU40_IDS,
                       _classes.SCANNET_INSTANCE_CLASSES)
        if dataset == "s3dis":
            names = _classes.S3DIS_CLASS_NAMES
            return cls(names, range(1, len(names) + 1), _classes.S3DIS_INSTANCE_CLASSES)
        if dataset == "synthetic":
            from ..synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_INSTANCE_CLASSES
            return cls(SYNTHETIC_CLASS_NAMES, range(1, len(SYNTHETIC_CLASS_NAMES) + 1),
                       SYNTHETIC_INSTANCE_CLASSES)
        raise ValueError(f"unknown dataset '{dataset}' (expected scannet, s3dis or synthetic)")
