"""Write the synthetic benchmark in the prepared-dataset format of :mod:`twist_lib.data.io`.

Scene ``i`` is ``generate_scene((seed, i), size)``, so its content depends only on ``(seed, i)``:
generating 10 scenes and later 20 gives the same first 10, and a re-run skips the scenes already
on disk (the dataset is resumable). Scene ``i`` is a validation scene when ``floor((i + 1) * f)
> floor(i * f)`` for ``f = val_fraction`` (every 5th scene for 0.2), which also stays the same
as the dataset grows.
"""
from __future__ import annotations

import math
import multiprocessing
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from ..data.io import make_meta, read_meta, save_scene, scene_path, write_gt_txt, write_meta
from .classes import (HARD_CLASS_NAMES, HARD_INSTANCE_CLASSES, SYNTHETIC_CLASS_NAMES,
                      SYNTHETIC_INSTANCE_CLASSES)
from .scene import HardPreset, generate_scene, size_preset

BENCHMARK_IDS = tuple(range(1, len(SYNTHETIC_CLASS_NAMES) + 1))  # semantic index + 1


def class_lists(size: str) -> tuple:
    """``(class names, instance classes, benchmark ids)`` of the scenes of ``size``: the ten
    classes of :mod:`.classes`, or the seventeen of the hard variant (ids = index + 1)."""
    if isinstance(size_preset(size), HardPreset):
        return HARD_CLASS_NAMES, HARD_INSTANCE_CLASSES, tuple(range(1, len(HARD_CLASS_NAMES) + 1))
    return SYNTHETIC_CLASS_NAMES, SYNTHETIC_INSTANCE_CLASSES, BENCHMARK_IDS


def dataset_scene_name(i: int) -> str:
    return f"synthetic_{i:05d}"


def scene_names(n_scenes: int) -> list[str]:
    return [dataset_scene_name(i) for i in range(n_scenes)]


def is_val(i: int, val_fraction: float) -> bool:
    return math.floor((i + 1) * val_fraction) > math.floor(i * val_fraction)


def gt_path(root, name: str) -> Path:
    return Path(root) / "gt" / f"{name}.txt"


def _write_scene(i: int, root: Path, seed: int, size: str) -> int:
    name = dataset_scene_name(i)
    scene = generate_scene((seed, i), size, name=name)
    write_gt_txt(gt_path(root, name), scene["semantic"], scene["instance"], class_lists(size)[2])
    save_scene(scene_path(root, name), scene)  # last: its presence marks the scene as done
    return len(scene["xyz"])


def generate_dataset(out_dir, n_scenes: int, size: str = "cpu", seed: int = 0,
                     val_fraction: float = 0.2, workers: int = 1, progress: bool = True,
                     overwrite: bool = False) -> dict:
    """Generate (or complete) the synthetic benchmark in ``out_dir``.

    Writes ``scenes/<name>.npz``, ``gt/<name>.txt`` (benchmark id = semantic index + 1) and
    ``meta.json`` (name "synthetic", the class list of ``size`` (:func:`class_lists`), splits
    ``train`` / ``val``, plus ``size``, ``seed`` and ``n_scenes``). Scenes already on disk are
    skipped unless ``overwrite``. When the folder's meta.json was written with the same seed and
    size and the same train list, its other splits (``labelled_<ratio>``,
    :mod:`twist_lib.data.splits`) are kept.

    Parameters
    ----------
    out_dir : path
        Dataset folder (created if needed).
    n_scenes : int
        Number of scenes; names are ``synthetic_00000`` ... in generation order.
    size : {"cpu", "scannet", "hard"}
        Scene size (:data:`twist_lib.synthetic.scene.SIZES`); ``hard`` is the hard variant
        (:mod:`twist_lib.synthetic.hard`, seventeen classes).
    seed : int
        Dataset seed; scene i uses ``(seed, i)``.
    val_fraction : float
        Fraction of scenes in the ``val`` split (module docstring for which ones).
    workers : int
        Processes generating scenes in parallel.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        The meta written to ``out_dir/meta.json``.
    """
    size_preset(size)
    if n_scenes < 1:
        raise ValueError(f"{out_dir}: n_scenes must be at least 1, got {n_scenes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"{out_dir}: val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(out_dir)
    old = _existing_meta(root, size, seed, overwrite)
    names = scene_names(n_scenes)
    todo = [i for i, name in enumerate(names) if overwrite or not (
        scene_path(root, name).exists() and gt_path(root, name).exists())]
    job = partial(_write_scene, root=root, seed=seed, size=size)
    bar = tqdm(total=len(todo), desc=f"synthetic {size} scenes", unit="scene", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(job, todo, chunksize=max(1, len(todo) // (8 * workers))):
                bar.update()
    else:
        for i in todo:
            job(i)
            bar.update()
    bar.close()
    splits = {"train": [n for i, n in enumerate(names) if not is_val(i, val_fraction)],
              "val": [n for i, n in enumerate(names) if is_val(i, val_fraction)]}
    if old is not None and old["splits"].get("train") == splits["train"]:
        splits = {**old["splits"], **splits}
    class_names, instance_classes, ids = class_lists(size)
    meta = make_meta("synthetic", class_names, instance_classes, ids, splits, size=size, seed=seed,
                     n_scenes=n_scenes)
    write_meta(root, meta)
    return meta


def _existing_meta(root: Path, size: str, seed: int, overwrite: bool) -> dict | None:
    """The folder's meta.json if any; an error if it holds another seed or size (its scenes
    would be mixed with the new ones) unless everything is being overwritten."""
    if not (root / "meta.json").exists():
        return None
    old = read_meta(root)
    if overwrite:
        return None
    if old.get("name") != "synthetic" or old.get("size") != size or old.get("seed") != seed:
        raise ValueError(
            f"{root / 'meta.json'}: this folder holds dataset '{old.get('name')}' (size "
            f"{old.get('size')}, seed {old.get('seed')}), not synthetic size {size} seed {seed}; "
            "use another folder or overwrite=True")
    return old
