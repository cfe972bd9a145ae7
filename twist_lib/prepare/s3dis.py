"""S3DIS raw rooms -> prepared scenes (the book's appendix, Conventions: "Data formats").

The raw dataset (``Stanford3dDataset_v1.2_Aligned_Version``) holds one folder per room,
``Area_N/<room>/Annotations/<class>_<k>.txt``, one file per object with one point per line::

    x y z r g b          (xyz in metres as floats, colours as integers 0..255)

Each annotation file is one instance of its class (all 13 classes are instance classes); the
scene is named ``Area_N_<room>``; instances are numbered 0..I-1 over the room's non-empty files
in natural name order (``chair_2`` before ``chair_10``). Coordinates are kept as given (the
room is not shifted); colours become ``rgb / 127.5 - 1``. Ground truth ids are class index + 1.

Known quirks of the real files, handled here:

- class ``stairs`` (one room in Area 2) is not one of the 13 classes; it is mapped to
  ``clutter``, as common practice does. Any other unknown class prefix is an error.
- ``Area_5/hallway_6/Annotations/ceiling_1.txt`` has a NUL byte instead of a space between two
  colour values on line 180389; NUL bytes are read as separators, as other preparers patch it.
  Trailing separators on a line are fine; any other malformed line is an error naming the file
  and line number.
- ``Area_5/office_36/Annotations/wall_3 (1).txt`` is a copy of ``wall_3.txt``; files named with a
  `` (n)`` copy suffix are skipped with a logged warning. Files that are not ``*.txt``
  (``.DS_Store``, ``Icon``) and hidden files are ignored.
"""
from __future__ import annotations

import io
import logging
import re
from functools import partial
from pathlib import Path

import numpy as np

from ..data.classes import S3DIS_CLASS_NAMES, S3DIS_INSTANCE_CLASSES
from ..data.io import DataFormatError, make_meta, write_meta
from . import run_scene_jobs, write_prepared_scene

log = logging.getLogger(__name__)

S3DIS_BENCHMARK_IDS = tuple(range(1, len(S3DIS_CLASS_NAMES) + 1))
CLASS_ALIASES = {"stairs": "clutter"}
ANNOTATION_NAME = re.compile(r"^(?P<cls>[A-Za-z]+)_(?P<k>\d+)(?P<copy> \(\d+\))?\.txt$")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value (``chair_2`` before ``chair_10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _line_problem(line: str) -> str | None:
    """What is wrong with one data line (None when it is a valid ``x y z r g b`` line)."""
    fields = line.encode("latin-1").split()  # ASCII whitespace only
    if len(fields) != 6:
        return f"expected 6 values (x y z r g b), found {len(fields)}"
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return "non-numeric value"
    if not np.isfinite(values[:3]).all():
        return "non-finite coordinate"
    if not all(v.is_integer() and 0 <= v <= 255 for v in values[3:]):
        return "colours must be integers in 0..255"
    return None


def _rows_valid(values: np.ndarray) -> bool:
    """The vectorised form of :func:`_line_problem` over a parsed table."""
    if values.shape[1] != 6:
        return False
    colours = values[:, 3:]
    return bool(np.isfinite(values[:, :3]).all() and (colours == np.round(colours)).all()
                and (colours >= 0).all() and (colours <= 255).all())


def read_annotation_file(path) -> tuple[np.ndarray, np.ndarray]:
    """Points of one annotation file.

    Returns
    -------
    xyz : float64 (n, 3)
    rgb : uint8 (n, 3)
        n may be 0 for an empty file.

    Raises
    ------
    DataFormatError
        A malformed line; the message names the file and the 1-based line number.
    """
    path = Path(path)
    text = path.read_bytes().replace(b"\x00", b" ").decode("latin-1")
    if not text.strip():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    try:
        values = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        values = None
    if values is None or not _rows_valid(values):
        for number, line in enumerate(text.split("\n"), start=1):
            problem = line.strip() and _line_problem(line)
            if problem:
                raise DataFormatError(f"{path}: line {number}: {problem}: {line.strip()[:80]!r}")
        raise DataFormatError(f"{path}: cannot be read as 'x y z r g b' lines")
    return values[:, :3], values[:, 3:].astype(np.uint8)


def annotation_files(room_dir) -> list[tuple[Path, int]]:
    """``(file, class index)`` of every annotation file of a room, in natural name order."""
    folder = Path(room_dir) / "Annotations"
    if not folder.is_dir():
        raise DataFormatError(f"{room_dir}: empty room: no Annotations folder")
    files = []
    for path in sorted(folder.glob("*.txt"), key=lambda p: natural_key(p.name)):
        if path.name.startswith("."):
            continue
        match = ANNOTATION_NAME.match(path.name)
        if match is None:
            raise DataFormatError(f"{path}: not an annotation file name of the form '<class>_<k>.txt'")
        if match["copy"]:
            log.warning("%s: skipping a duplicate copy of %s_%s.txt", path, match["cls"], match["k"])
            continue
        name = CLASS_ALIASES.get(match["cls"].lower(), match["cls"].lower())
        if name not in S3DIS_CLASS_NAMES:
            raise DataFormatError(f"{path}: unknown S3DIS class '{match['cls']}' "
                                  f"(known: {', '.join(S3DIS_CLASS_NAMES)}, and stairs -> clutter)")
        files.append((path, S3DIS_CLASS_NAMES.index(name)))
    return files


def load_room(room_dir) -> dict:
    """One raw room as the package's scene dict (nothing is written)."""
    room_dir = Path(room_dir)
    xyz, rgb, semantic, instance = [], [], [], []
    for path, label in annotation_files(room_dir):
        points, colours = read_annotation_file(path)
        if len(points) == 0:
            continue
        xyz.append(points)
        rgb.append(colours)
        semantic.append(np.full(len(points), label, dtype=np.int64))
        instance.append(np.full(len(points), len(instance), dtype=np.int64))
    if not xyz:
        raise DataFormatError(f"{room_dir}: empty room: no annotated points in its Annotations folder")
    return {"xyz": np.concatenate(xyz).astype(np.float32),
            "rgb": np.concatenate(rgb).astype(np.float32) / 127.5 - 1.0,
            "semantic": np.concatenate(semantic), "instance": np.concatenate(instance),
            "name": f"{room_dir.parent.name}_{room_dir.name}"}


def prepare_room(room_dir, out_root) -> str:
    """Prepare one raw room into ``out_root``; returns its scene name. Nothing is written on error."""
    return write_prepared_scene(out_root, load_room(room_dir), S3DIS_BENCHMARK_IDS)


def find_rooms(root, areas) -> list[Path]:
    """Room folders ``root/Area_N/<room>`` of the given areas, in area then natural room order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: S3DIS root folder not found")
    rooms = []
    for area in areas:
        area_dir = root / f"Area_{area}"
        if not area_dir.is_dir():
            raise FileNotFoundError(f"{area_dir}: S3DIS area folder not found")
        found = [p for p in area_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if not found:
            raise DataFormatError(f"{area_dir}: no room folders")
        rooms += sorted(found, key=lambda p: natural_key(p.name))
    return rooms


def prepare_s3dis(root, out_dir, areas=(1, 2, 3, 4, 5, 6), val_area: int = 5, progress: bool = True,
                  workers: int = 1, skip_bad: bool = False) -> dict:
    """Prepare the rooms of the given S3DIS areas into ``out_dir`` and write ``meta.json``.

    Splits: ``val`` = the rooms of ``val_area`` (Area 5 in the paper's protocol), ``train`` = the
    rooms of the other areas. ``workers`` and ``skip_bad`` work as in
    :func:`twist_lib.prepare.scannet.prepare_scannet`.

    Raises
    ------
    PrepareError
        A room failed (without ``skip_bad``); the message names the room folder and the problem.
    """
    rooms = find_rooms(root, areas)
    names, failures = run_scene_jobs(partial(prepare_room, out_root=Path(out_dir)), rooms,
                                     workers=workers, progress=progress, desc="S3DIS rooms",
                                     skip_bad=skip_bad)
    val_prefix = f"Area_{val_area}_"
    splits = {"train": [n for n in names if not n.startswith(val_prefix)],
              "val": [n for n in names if n.startswith(val_prefix)]}
    extra = {"skipped": [f"{Path(r).parent.name}_{Path(r).name}" for r, _ in failures]} if failures else {}
    meta = make_meta("s3dis", S3DIS_CLASS_NAMES, S3DIS_INSTANCE_CLASSES,
                     benchmark_ids=S3DIS_BENCHMARK_IDS, splits=splits, val_area=val_area, **extra)
    write_meta(out_dir, meta)
    return meta
