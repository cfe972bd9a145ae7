"""Official raw datasets -> the package's prepared format (the book's appendix, Conventions: "Data
formats").

- :mod:`twist_lib.prepare.ply`      dependency-free PLY reader / writer
- :mod:`twist_lib.prepare.scannet`  ScanNet v2 scans + ``scannetv2-labels.combined.tsv``
- :mod:`twist_lib.prepare.s3dis`    S3DIS ``Area_N/<room>/Annotations/<class>_<k>.txt``

Both preparers write the layout documented in :mod:`twist_lib.data.io` (``meta.json``,
``scenes/<name>.npz``, ``gt/<name>.txt``). This module holds what they share: the scene writer
that never leaves half a scene behind, and the (optionally parallel) loop over raw scenes that
stops at the first bad scene with a message naming it, or logs and skips it.
"""
from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from contextlib import closing
from pathlib import Path

from tqdm.auto import tqdm

from ..data.io import DataFormatError, save_scene, scene_path, validate_scene, write_gt_txt

log = logging.getLogger(__name__)

# What bad raw data raises (DataFormatError and json errors are ValueErrors, a missing file is
# an OSError); anything else is a bug and is never swallowed by ``skip_bad``.
BAD_INPUT_ERRORS = (ValueError, OSError)


class PrepareError(DataFormatError):
    """A raw scene that could not be prepared; the message names the scene folder and the problem."""


def gt_path(root, name: str) -> Path:
    return Path(root) / "gt" / f"{name}.txt"


def write_prepared_scene(out_root, scene: dict, benchmark_ids) -> str:
    """Write ``scenes/<name>.npz`` and ``gt/<name>.txt`` of one scene, or neither.

    The scene is validated before anything is written, both files are written atomically, and
    the ``.npz`` is removed again if the ground-truth file cannot be written.
    """
    scene = validate_scene(scene, scene["name"])
    npz = save_scene(scene_path(out_root, scene["name"]), scene)
    try:
        write_gt_txt(gt_path(out_root, scene["name"]), scene["semantic"], scene["instance"], benchmark_ids)
    except BaseException:
        npz.unlink(missing_ok=True)
        raise
    return scene["name"]


def _outcomes(job, items, workers: int):
    """Yield ``(item, result, error)`` per item in order; ``error`` is a bad-input exception or None.

    With ``workers > 1`` at most ``2 * workers`` items are in flight, and closing the generator
    lets those finish (instead of killing them mid-write), so no temporary files are left behind.
    """
    if workers <= 1:
        for item in items:
            try:
                yield item, job(item), None
            except BAD_INPUT_ERRORS as e:
                yield item, None, e
        return
    pool = multiprocessing.Pool(workers)
    try:
        pending, todo = deque(), iter(items)
        while True:
            while len(pending) < 2 * workers and (item := next(todo, None)) is not None:
                pending.append((item, pool.apply_async(job, (item,))))
            if not pending:
                return
            item, result = pending.popleft()
            try:
                yield item, result.get(), None
            except BAD_INPUT_ERRORS as e:
                yield item, None, e
    finally:
        pool.close()
        pool.join()


def run_scene_jobs(job, items, *, workers: int = 1, progress: bool = True, desc: str = "scenes",
                   skip_bad: bool = False) -> tuple[list, list[tuple[object, str]]]:
    """Run ``job(item) -> scene name`` over raw scene folders with a progress bar.

    Returns
    -------
    names : list of str
        Names of the prepared scenes, in the order of ``items``.
    failures : list of (item, message)
        Skipped scenes (only with ``skip_bad``; otherwise the first failure raises).

    Raises
    ------
    PrepareError
        A scene failed and ``skip_bad`` is False; the message names the item and the problem.
    """
    items = list(items)
    names, failures = [], []
    with tqdm(total=len(items), desc=desc, disable=not progress) as bar, \
            closing(_outcomes(job, items, workers)) as outcomes:
        for item, name, error in outcomes:
            bar.update()
            if error is None:
                names.append(name)
                continue
            if not skip_bad:
                raise PrepareError(f"cannot prepare {item}: {error}") from error
            log.warning("skipping %s: %s", item, error)
            failures.append((item, str(error)))
    return names, failures


def summarize(meta: dict) -> str:
    """One line about a prepared dataset: split sizes and skipped scenes."""
    sizes = ", ".join(f"{split} {len(names)}" for split, names in meta["splits"].items())
    skipped = meta.get("skipped", [])
    return f"{meta['name']}: {sizes}" + (f"; skipped {len(skipped)}: {' '.join(skipped)}" if skipped else "")


from .scannet import prepare_scannet, prepare_scene, read_label_map  # noqa: E402  (uses the above)
from .s3dis import prepare_s3dis, prepare_room  # noqa: E402
