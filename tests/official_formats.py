"""Miniature raw files in the official ScanNet v2 and S3DIS formats (used by the tests and the book).

ScanNet: a scene folder holds ``<name>_vh_clean_2.ply`` (binary little-endian mesh, vertices
``x y z`` float + ``red green blue alpha`` uchar, faces ``list uchar int vertex_indices``),
``<name>_vh_clean_2.0.010000.segs.json`` and ``<name>.aggregation.json``; the label table
``scannetv2-labels.combined.tsv`` has the official header. S3DIS: ``Area_N/<room>/Annotations/
<class>_<k>.txt`` with ``x y z r g b`` lines, next to the room's whole-room ``<room>.txt``.

The miniature contents are documented constants, so a test can derive the expected prepared
labels by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from twist_lib.prepare.ply import write_ply

# ------------------------------------------------------------------------------------- ScanNet
LABELS_TSV_HEADER = (
    "id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
    "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
    "wnsynsetkey", "mpcat40", "mpcat40index",
)
# (id, raw_category, category, count, nyu40id, nyu40class) of rows of the official table; the
# raw_category -> nyu40id pairs are the official ones, the remaining columns are left blank.
LABELS_TSV_ROWS = (
    (1, "wall", "wall", 8277, 1, "wall"),
    (2, "chair", "chair", 4646, 5, "chair"),
    (3, "floor", "floor", 2828, 2, "floor"),
    (4, "table", "table", 1170, 7, "table"),
    (7, "kitchen cabinets", "cabinet", 310, 3, "cabinet"),
    (11, "ceiling", "ceiling", 806, 22, "ceiling"),
    (19, "trash can", "trash can", 1090, 39, "otherfurniture"),
    (45, "kitchen counter", "counter", 141, 12, "counter"),
)


def write_labels_tsv(path, rows=LABELS_TSV_ROWS) -> Path:
    """Write a ``scannetv2-labels.combined.tsv`` with the official header and the given rows."""
    blank = [""] * (len(LABELS_TSV_HEADER) - 6)
    lines = ["\t".join(LABELS_TSV_HEADER)]
    for rid, raw, category, count, nyu40, nyu40class in rows:
        fields = [str(rid), raw, category, str(count), str(nyu40), "", "", nyu40class] + blank
        lines.append("\t".join(fields[:len(LABELS_TSV_HEADER)]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def scannet_paths(scene_dir) -> dict[str, Path]:
    """The three raw files of a ScanNet scene folder, keyed ``ply``, ``segs``, ``aggregation``."""
    scene_dir = Path(scene_dir)
    name = scene_dir.name
    return {"ply": scene_dir / f"{name}_vh_clean_2.ply",
            "segs": scene_dir / f"{name}_vh_clean_2.0.010000.segs.json",
            "aggregation": scene_dir / f"{name}.aggregation.json"}


def write_scannet_scene(scans_dir, name, xyz, rgb, seg_indices, seg_groups, faces=None) -> Path:
    """Write one raw ScanNet scene folder ``scans_dir/name``.

    ``seg_groups`` is a list of ``(label, segment ids)``; object ids are their positions.
    ``faces`` defaults to a fan of triangles over consecutive vertices.
    """
    scene_dir = Path(scans_dir) / name
    scene_dir.mkdir(parents=True, exist_ok=True)
    paths = scannet_paths(scene_dir)
    n = len(xyz)
    if faces is None:
        faces = [(0, i, i + 1) for i in range(1, n - 1)]
    write_ply(paths["ply"], xyz, rgb, faces=faces)
    paths["segs"].write_text(json.dumps({
        "params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750", "maxPoints": "5000",
                   "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1"},
        "sceneId": name, "segIndices": [int(s) for s in seg_indices]}))
    paths["aggregation"].write_text(json.dumps({
        "sceneId": f"scannet.{name}", "appId": "Aggregator.v2",
        "segGroups": [{"id": i, "objectId": i, "segments": [int(s) for s in segs], "label": label}
                      for i, (label, segs) in enumerate(seg_groups)],
        "segmentsFile": f"scannet.{name}_vh_clean_2.0.010000.segs.json"}, indent=1))
    return scene_dir


# scene0000_00: 16 vertices. Segment ids are arbitrary integers, as in ScanNet.
#   vertex       0  1 | 2  3  4 | 5  6 | 7  8 | 9 10 | 11 | 12 13 | 14 | 15
#   segment      5  5 | 9  9  9 | 2  2 |14 14 | 7  7 | 30 | 41 41 | 50 | 60
# segGroups in order: wall [5], chair [9, 30], ceiling [2], table [14], floor [41],
# kitchen counter [50], trash can [60]; segment 7 belongs to no group (unannotated).
MINI_SEG_INDICES = (5, 5, 9, 9, 9, 2, 2, 14, 14, 7, 7, 30, 41, 41, 50, 60)
MINI_SEG_GROUPS = (("wall", [5]), ("chair", [9, 30]), ("ceiling", [2]), ("table", [14]),
                   ("floor", [41]), ("kitchen counter", [50]), ("trash can", [60]))
# scene0001_00: 4 vertices, two tables and a kitchen cabinet listed twice (the later copy wins).
MINI2_SEG_INDICES = (1, 1, 2, 3)
MINI2_SEG_GROUPS = (("table", [1]), ("table", [2]), ("kitchen cabinets", [3]), ("kitchen cabinets", [3]))


def mini_vertices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic vertex positions (float32, metres) and colours (uint8) of the miniatures."""
    i = np.arange(n)
    xyz = np.stack([0.25 * i, 2.0 - 0.125 * i, 0.5 * (i % 3)], axis=1).astype(np.float32)
    rgb = np.stack([16 * i, 255 - 16 * i, (37 * i) % 256], axis=1).astype(np.uint8)
    return xyz, rgb


def write_mini_scannet(root) -> dict[str, Path]:
    """Write ``root/scans/{scene0000_00, scene0001_00}``, ``root/scannetv2-labels.combined.tsv``
    and the official split lists ``root/scannetv2_{train,val}.txt`` (one scene each)."""
    root = Path(root)
    scans = root / "scans"
    for name, seg, groups in (("scene0000_00", MINI_SEG_INDICES, MINI_SEG_GROUPS),
                              ("scene0001_00", MINI2_SEG_INDICES, MINI2_SEG_GROUPS)):
        write_scannet_scene(scans, name, *mini_vertices(len(seg)), seg, groups)
    (root / "scannetv2_train.txt").write_text("scene0000_00\n")
    (root / "scannetv2_val.txt").write_text("scene0001_00\n")
    return {"scans": scans, "tsv": write_labels_tsv(root / "scannetv2-labels.combined.tsv"),
            "train_list": root / "scannetv2_train.txt", "val_list": root / "scannetv2_val.txt"}


# --------------------------------------------------------------------------------------- S3DIS
# Annotation file contents, exactly as written (room -> file name -> text). Quirks of the real
# data on purpose: a NUL byte as a separator, a trailing separator, a stairs file, a " (1)"
# duplicate, an empty file, and non-annotation files (.DS_Store, Icon).
MINI_S3DIS = {
    "Area_1/office_1": {
        "chair_1.txt": "1.0 2.0 0.5 10 20 30\n1.5 2.0 0.5 11 21 31\n",
        "chair_10.txt": "3.0 1.0 0.25 12 22 32\n",
        "chair_2.txt": "2.0 1.0 0.5 13 23 33\n",
        "stairs_1.txt": "0.5 0.5 0.125 200 201 202\n",
        "table_1.txt": "4.0 4.0 0.75 100 110 120\n4.5 4.0 0.75 101 111 121\n",
    },
    "Area_1/hallway_1": {
        "ceiling_1.txt": "-1.5 -2.5 3.0 185\x00187 182\n-1.0 -2.5 3.0 0 0 255 \n",
        "wall_3.txt": "-2.0 0.0 1.5 90 90 90\n",
        "wall_3 (1).txt": "-2.0 0.0 1.5 90 90 90\n",
        "board_1.txt": "",
        ".DS_Store": "\x00\x00\x00\x01Bud1",
        "Icon\r": "",
    },
    "Area_5/conferenceRoom_1": {
        "sofa_1.txt": "7.0 8.0 0.5 50 60 70\n",
        "board_2.txt": "6.0 9.0 1.5 250 250 250\n",
    },
}


def write_s3dis_room(root, room: str, files: dict[str, str]) -> Path:
    """Write ``root/<room>/Annotations/<file>`` for each file, plus the whole-room ``<room>.txt``."""
    room_dir = Path(root) / room
    annotations = room_dir / "Annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (annotations / name).write_bytes(text.encode("latin-1"))
    (room_dir / f"{room_dir.name}.txt").write_bytes(
        "".join(t for n, t in files.items() if n.endswith(".txt")).encode("latin-1"))
    return room_dir


def write_mini_s3dis(root, rooms=MINI_S3DIS) -> Path:
    """Write the miniature S3DIS rooms under ``root`` and return ``root``."""
    for room, files in rooms.items():
        write_s3dis_room(root, room, files)
    return Path(root)
