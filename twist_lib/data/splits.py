"""Labelled / unlabelled partitions of the training set (paper Sec. 5.1, "SSL Training Set
Partition"; the book's appendix, Conventions: "Data formats").

The ScanNet data-efficient benchmark labels the *first* 1 / 5 / 10 / 20 % of the official train
list, so the labelled sets are nested prefixes of one ordering. :func:`make_label_splits` builds
that ordering either from an official list file (one scene name per line) or as a seeded random
permutation of the train scenes (the paper's S3DIS protocol, "randomly sampling the 3D scenes"),
and takes prefixes: ``labelled_1 ⊂ labelled_5 ⊂ labelled_10 ⊂ labelled_20``. The unlabelled set
of a ratio is the rest of the train split (:class:`twist_lib.data.dataset.SceneDataset`).

Split names in ``meta.json`` are ``labelled_<ratio>`` with the ratio written by
:func:`ratio_key` (``5`` -> ``"5"``, ``0.5`` -> ``"0.5"``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import read_meta, write_meta

DEFAULT_RATIOS = (1, 5, 10, 20)
LABELLED_PREFIX = "labelled_"


def ratio_key(ratio) -> str:
    """The string a label ratio (in percent) is written as in split names: 5 -> "5", 0.5 -> "0.5"."""
    value = float(ratio)
    if not 0 < value <= 100:
        raise ValueError(f"label ratio must be a percentage in (0, 100], got {ratio!r}")
    return f"{value:g}"


def labelled_split_name(ratio) -> str:
    return LABELLED_PREFIX + ratio_key(ratio)


def num_labelled(num_train: int, ratio) -> int:
    """Scenes labelled at ``ratio`` percent: the nearest integer, at least 1 (ScanNet's 1201 train
    scenes give 12 / 60 / 120 / 240 at 1 / 5 / 10 / 20 %)."""
    return max(1, int(num_train * float(ratio) / 100 + 0.5))


def read_list_file(path, train_names) -> list[str]:
    """Scene order from a list file (one name per line, blank lines skipped); an error naming the
    file if it repeats a scene or lists one that is not in the train split."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: scene list file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    train = set(train_names)
    unknown = [n for n in names if n not in train]
    if unknown:
        raise ValueError(f"{path}: lists {len(unknown)} scene(s) not in the train split, e.g. "
                         f"{unknown[:3]}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: lists some scenes more than once")
    return names


def make_label_splits(train_names, ratios=DEFAULT_RATIOS, seed: int = 0, order_file=None) -> dict:
    """Nested labelled subsets of the train scenes.

    Parameters
    ----------
    train_names : sequence of str
        The train split.
    ratios : sequence of float
        Label ratios in percent.
    seed : int
        Seed of the permutation of the (sorted) train names; unused with ``order_file``.
    order_file : path, optional
        Official list file; its order is used instead of the permutation.

    Returns
    -------
    dict ``{"labelled_<ratio>": [names]}``: the first ``num_labelled(len(train_names), ratio)``
    scenes of the ordering, so smaller ratios are prefixes of larger ones.
    """
    train_names = list(train_names)
    if not train_names:
        raise ValueError("make_label_splits: the train split is empty")
    if order_file is not None:
        order = read_list_file(order_file, train_names)
    else:
        ordered = sorted(set(train_names))
        order = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    splits = {}
    for ratio in sorted(ratios, key=float):
        k = num_labelled(len(train_names), ratio)
        if k > len(order):
            raise ValueError(f"{order_file}: lists {len(order)} scenes but {ratio_key(ratio)} % of "
                             f"{len(train_names)} train scenes needs {k}")
        splits[labelled_split_name(ratio)] = order[:k]
    return splits


def write_label_splits(root, ratios=DEFAULT_RATIOS, seed: int = 0, list_file=None) -> dict:
    """Replace the ``labelled_*`` splits in ``ROOT/meta.json`` by :func:`make_label_splits` of its
    train split; record how they were made under ``meta["label_splits"]``. Returns the new splits."""
    meta = read_meta(root)
    if "train" not in meta["splits"]:
        raise ValueError(f"{Path(root) / 'meta.json'}: has no 'train' split to partition")
    splits = make_label_splits(meta["splits"]["train"], ratios, seed, list_file)
    kept = {k: v for k, v in meta["splits"].items() if not k.startswith(LABELLED_PREFIX)}
    meta["splits"] = {**kept, **splits}
    meta["label_splits"] = {"seed": None if list_file else int(seed),
                            "list_file": str(list_file) if list_file else None}
    write_meta(root, meta)
    return splits
