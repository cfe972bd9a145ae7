"""ScanNet v2 raw scans -> prepared scenes (the book's appendix, Conventions: "Data formats").

A raw scene folder ``scans/<name>/`` holds (among other files)::

    <name>_vh_clean_2.ply                 mesh; vertices carry x y z red green blue alpha
    <name>_vh_clean_2.0.010000.segs.json  {"segIndices": [one segment id per vertex]}
    <name>.aggregation.json               {"segGroups": [{"objectId", "label", "segments"}, ...]}

and ``scannetv2-labels.combined.tsv`` maps each raw ``label`` (column ``raw_category``) to its
nyu40 id (column ``nyu40id``). The labels are derived from these files, never from
``*_vh_clean_2.labels.ply``:

- **semantic**: the nyu40 id of the group's label, as an index into ``SCANNET_NYU40_IDS``
  (20 classes, 0..19); any other nyu40 id (ceiling = 22, ...) -> -100.
- **instance**: one instance per segGroup of an instance class (not wall / floor, not -100),
  numbered 0..I-1 in segGroup order; wall, floor and ignored classes -> -100.
- a vertex in no segGroup (unannotated) -> semantic -100, instance -100.
- a segment claimed by several segGroups goes to the *last* one, as ScanNet's own export script
  does (``scene0217_00`` lists its objects twice); a group left with no vertex gets no instance id.

Colours become ``rgb / 127.5 - 1``; coordinates are kept as given (metres).

The ground truth ``gt/<name>.txt`` uses the nyu40 ids: ``nyu40id * 1000 + instance + 1`` for the
18 instance classes, ``nyu40id * 1000`` for wall / floor and 0 for unannotated and ignored
points. The official export also gives walls, floors and non-benchmark objects an instance
number, but its evaluator treats every point whose class is not one of the 18 instance classes
as void either way, so both encodings score identically.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..data.classes import (IGNORE_INDEX, SCANNET_CLASS_NAMES, SCANNET_INSTANCE_CLASSES,
                            SCANNET_NYU40_IDS)
from ..data.io import DataFormatError, make_meta, write_meta
from . import run_scene_jobs, write_prepared_scene
from .ply import read_coloured_vertices

log = logging.getLogger(__name__)

PLY_NAME = "{}_vh_clean_2.ply"
SEGS_NAME = "{}_vh_clean_2.0.010000.segs.json"
AGGREGATION_NAME = "{}.aggregation.json"
TSV_COLUMNS = ("raw_category", "nyu40id")

NYU40_TO_CLASS = {nyu: k for k, nyu in enumerate(SCANNET_NYU40_IDS)}


@dataclass(frozen=True)
class LabelMap:
    """Raw ScanNet label -> nyu40 id, read from ``scannetv2-labels.combined.tsv`` at ``path``."""
    nyu40_ids: dict
    path: Path

    def nyu40_id(self, label: str, where) -> int:
        """The nyu40 id of ``label``; an error naming the label, ``where`` it occurs and the tsv."""
        if label not in self.nyu40_ids:
            raise DataFormatError(f"{where}: label '{label}' is not a raw_category of {self.path}")
        return self.nyu40_ids[label]


def read_label_map(path) -> LabelMap:
    """Read ``scannetv2-labels.combined.tsv`` (tab-separated, header row with ``raw_category``
    and ``nyu40id`` among its columns), like ScanNet's own ``read_label_mapping``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label tsv file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DataFormatError(f"{path}: not a ScanNet label tsv: the header has no column "
                                  f"{', '.join(missing)}")
        ids = {}
        for row in reader:
            try:
                ids[row["raw_category"]] = int(row["nyu40id"])
            except (TypeError, ValueError):
                raise DataFormatError(f"{path}: line {reader.line_num}: nyu40id "
                                      f"'{row['nyu40id']}' is not an integer") from None
    if not ids:
        raise DataFormatError(f"{path}: the label tsv has no rows")
    return LabelMap(ids, path)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: invalid JSON ({e})") from None


def read_segments(path) -> np.ndarray:
    """``segIndices`` of a ``*.segs.json`` file: int64 (N,), one segment id per mesh vertex."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "segIndices" not in data:
        raise DataFormatError(f"{path}: no 'segIndices' key")
    seg = np.asarray(data["segIndices"])
    if seg.ndim != 1 or (seg.size and seg.dtype.kind not in "iu"):
        raise DataFormatError(f"{path}: 'segIndices' must be a flat list of integers")
    return seg.astype(np.int64)


def read_seg_groups(path) -> list[tuple[str, list[int]]]:
    """``(label, segment ids)`` of every segGroup of an ``*.aggregation.json`` file, in file order."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("segGroups"), list):
        raise DataFormatError(f"{path}: no 'segGroups' list")
    groups = []
    for i, group in enumerate(data["segGroups"]):
        if not isinstance(group, dict) or "label" not in group or "segments" not in group:
            raise DataFormatError(f"{path}: segGroup {i} has no 'label' or 'segments'")
        segments = group["segments"]
        if not isinstance(segments, list) or not all(isinstance(s, int) for s in segments):
            raise DataFormatError(f"{path}: segGroup {i} ('{group['label']}'): 'segments' must be "
                                  "a list of integers")
        groups.append((str(group["label"]), segments))
    return groups


def vertex_labels(seg_indices, groups, label_map: LabelMap, aggregation_path):
    """Semantic and instance label per vertex from segments + segGroups + label map.

    Parameters
    ----------
    seg_indices : int (N,)
        Segment id of every vertex.
    groups : list of (label, segment ids)
        The segGroups in file order (:func:`read_seg_groups`).

    Returns
    -------
    semantic, instance : int64 (N,)
        As documented in this module; -100 where not applicable.
    """
    seg_ids, seg_of_vertex = np.unique(seg_indices, return_inverse=True)
    group_of_segment = np.full(len(seg_ids), -1, dtype=np.int64)
    group_class = np.empty(len(groups), dtype=np.int64)
    for g, (label, segments) in enumerate(groups):
        segments = np.asarray(segments, dtype=np.int64)
        pos = np.searchsorted(seg_ids, segments).clip(max=max(len(seg_ids) - 1, 0))
        unknown = segments[seg_ids[pos] != segments] if len(seg_ids) else segments
        if unknown.size:
            raise DataFormatError(f"{aggregation_path}: segGroup {g} ('{label}') references segment "
                                  f"id {unknown[0]}, which no vertex has in the segs file")
        group_of_segment[pos] = g  # a later group wins, as in ScanNet's export script
        group_class[g] = NYU40_TO_CLASS.get(label_map.nyu40_id(label, aggregation_path), IGNORE_INDEX)
    group = group_of_segment[seg_of_vertex.reshape(-1)]
    annotated = group >= 0
    semantic = np.full(len(group), IGNORE_INDEX, dtype=np.int64)
    semantic[annotated] = group_class[group[annotated]]
    has_instance = np.isin(semantic, SCANNET_INSTANCE_CLASSES)
    instance = np.full(len(group), IGNORE_INDEX, dtype=np.int64)
    _, instance[has_instance] = np.unique(group[has_instance], return_inverse=True)
    return semantic, instance


def scene_files(scene_dir) -> tuple[Path, Path, Path]:
    """The mesh, segments and aggregation files of a raw scene folder (named after the folder)."""
    scene_dir = Path(scene_dir)
    name = scene_dir.name
    return tuple(scene_dir / pattern.format(name) for pattern in (PLY_NAME, SEGS_NAME, AGGREGATION_NAME))


def load_raw_scene(scene_dir, label_map: LabelMap) -> dict:
    """One raw ScanNet scene folder as the package's scene dict (nothing is written)."""
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise FileNotFoundError(f"{scene_dir}: scene folder not found")
    ply, segs, aggregation = scene_files(scene_dir)
    for path in (ply, segs, aggregation):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
    xyz, rgb = read_coloured_vertices(ply)
    seg_indices = read_segments(segs)
    if len(seg_indices) != len(xyz):
        raise DataFormatError(f"{segs}: {len(seg_indices)} segment ids for the {len(xyz)} vertices "
                              f"of {ply}")
    semantic, instance = vertex_labels(seg_indices, read_seg_groups(aggregation), label_map, aggregation)
    return {"xyz": xyz, "rgb": rgb.astype(np.float32) / 127.5 - 1.0, "semantic": semantic,
            "instance": instance, "name": scene_dir.name}


def prepare_scene(scene_dir, label_map: LabelMap, out_root) -> str:
    """Prepare one raw scene folder into ``out_root`` (``scenes/<name>.npz`` + ``gt/<name>.txt``).

    Returns the scene name. On any error nothing is written for the scene.
    """
    return write_prepared_scene(out_root, load_raw_scene(scene_dir, label_map), SCANNET_NYU40_IDS)


def find_scene_folders(scans_dir) -> list[Path]:
    """Every (non-hidden) sub-folder of ``scans_dir``, sorted by name."""
    scans_dir = Path(scans_dir)
    if not scans_dir.is_dir():
        raise FileNotFoundError(f"{scans_dir}: ScanNet scans folder not found")
    folders = sorted(p for p in scans_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataFormatError(f"{scans_dir}: no scene folders found")
    return folders


def read_scene_list(path) -> list[str]:
    """Scene names, one per line (the layout of the official ``scannetv2_train.txt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scene list file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _splits(names: list[str], split_files) -> dict[str, list[str]]:
    """Splits from official list files (restricted to the prepared scenes), else all in train."""
    if not split_files:
        return {"train": list(names), "val": []}
    prepared, splits = set(names), {"train": [], "val": []}
    for split, path in split_files.items():
        listed = read_scene_list(path)
        splits[split] = [n for n in listed if n in prepared]
        if len(splits[split]) < len(listed):
            log.warning("%s: %d of its %d scenes were not prepared and are left out of split '%s'",
                        path, len(listed) - len(splits[split]), len(listed), split)
    return splits


def prepare_scannet(scans_dir, labels_tsv, out_dir, workers: int = 1, split_files=None,
                    progress: bool = True, skip_bad: bool = False) -> dict:
    """Prepare every scene folder of ScanNet's ``scans/`` into ``out_dir`` and write ``meta.json``.

    Parameters
    ----------
    scans_dir : path
        Folder of raw scene folders (``scans/scene0000_00/...``).
    labels_tsv : path
        ``scannetv2-labels.combined.tsv``.
    out_dir : path
        Prepared dataset folder (layout of :mod:`twist_lib.data.io`).
    workers : int
        Processes (``multiprocessing.Pool``); 1 runs in this process.
    split_files : dict, optional
        Split name -> official list file, e.g. ``{"train": "scannetv2_train.txt",
        "val": "scannetv2_val.txt"}``. Without it every scene goes to ``train``.
    skip_bad : bool
        Log and skip a scene that fails instead of stopping (listed in ``meta["skipped"]``).

    Returns
    -------
    dict
        The written meta.

    Raises
    ------
    PrepareError
        A scene failed (without ``skip_bad``); the message names its folder and the problem.
        ``meta.json`` is not written then.
    """
    folders = find_scene_folders(scans_dir)
    label_map = read_label_map(labels_tsv)
    job = partial(prepare_scene, label_map=label_map, out_root=Path(out_dir))
    names, failures = run_scene_jobs(job, folders, workers=workers, progress=progress,
                                     desc="ScanNet scenes", skip_bad=skip_bad)
    extra = {"skipped": [Path(f).name for f, _ in failures]} if failures else {}
    meta = make_meta("scannet", SCANNET_CLASS_NAMES, SCANNET_INSTANCE_CLASSES,
                     benchmark_ids=SCANNET_NYU40_IDS, splits=_splits(names, split_files), **extra)
    write_meta(out_dir, meta)
    return meta
