"""PLY reading/writing and ScanNet v2 preparation from miniature official raw files.

Expected labels are written out by hand from the miniature's documentation in
``official_formats.py`` (the book's appendix, Conventions: "Data formats": 20 classes by nyu40
id, 18 instance classes).
"""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from official_formats import (LABELS_TSV_HEADER, MINI_SEG_INDICES, mini_vertices, scannet_paths,
                              write_labels_tsv, write_mini_scannet, write_scannet_scene)
from twist_lib.data import DataFormatError, load_scene, read_meta
from twist_lib.prepare import PrepareError, prepare_scannet, prepare_scene, read_label_map
from twist_lib.prepare.ply import read_coloured_vertices, read_ply, write_ply

REPO = Path(__file__).resolve().parents[1]
IGN = -100

# ----------------------------------------------------------------------------------------- PLY
VERTEX_HEADER = ("element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                 "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n")
VERTICES = [(0.5, -1.25, 2.0, 10, 20, 30, 255), (1.0, 0.0, -3.5, 40, 50, 60, 128),
            (2.5, 4.0, 0.125, 255, 0, 7, 0)]


def _binary_vertices(order="<"):
    return b"".join(struct.pack(order + "fffBBBB", *v) for v in VERTICES)


def _face_bytes(faces, order="<"):
    return b"".join(struct.pack(f"{order}B{len(f)}i", len(f), *f) for f in faces)


def test_binary_ply_with_mixed_faces_and_a_trailing_element(tmp_path):
    # a triangle then a quad (lists of different length), then one more element after the faces
    header = ("ply\nformat binary_little_endian 1.0\ncomment made by hand\n" + VERTEX_HEADER
              + "element face 2\nproperty list uchar int vertex_indices\n"
              + "element extra 1\nproperty double w\nend_header\n")
    body = _binary_vertices() + _face_bytes([(0, 1, 2), (2, 1, 0, 1)]) + struct.pack("<d", 9.75)
    (tmp_path / "m.ply").write_bytes(header.encode() + body)
    ply = read_ply(tmp_path / "m.ply")
    assert ply["vertex"]["x"].tolist() == [0.5, 1.0, 2.5]
    assert ply["vertex"]["z"].tolist() == [2.0, -3.5, 0.125]
    assert ply["vertex"]["alpha"].tolist() == [255, 128, 0]
    faces = ply["face"]["vertex_indices"]
    assert [f.tolist() for f in faces] == [[0, 1, 2], [2, 1, 0, 1]]
    assert ply["extra"]["w"].tolist() == [9.75]


def test_binary_ply_faces_before_vertices_and_big_endian(tmp_path):
    for order, fmt in (("<", "binary_little_endian"), (">", "binary_big_endian")):
        header = (f"ply\nformat {fmt} 1.0\nelement face 2\nproperty list uchar int vertex_indices\n"
                  + VERTEX_HEADER + "end_header\n")
        body = _face_bytes([(0, 1, 2), (1, 2, 0)], order) + _binary_vertices(order)
        (tmp_path / "m.ply").write_bytes(header.encode() + body)
        ply = read_ply(tmp_path / "m.ply")
        assert ply["face"]["vertex_indices"].tolist() == [[0, 1, 2], [1, 2, 0]]
        xyz, rgb = read_coloured_vertices(tmp_path / "m.ply")
        assert xyz.tolist() == [list(v[:3]) for v in VERTICES]
        assert rgb.tolist() == [list(v[3:6]) for v in VERTICES]
        assert xyz.dtype == np.float32 and rgb.dtype == np.uint8


def test_ascii_ply(tmp_path):
    text = ("ply\r\nformat ascii 1.0\r\n" + VERTEX_HEADER.replace("\n", "\r\n")
            + "element face 2\r\nproperty list uchar int vertex_indices\r\nend_header\r\n"
            + "0.5 -1.25 2 10 20 30 255\r\n1 0 -3.5 40 50 60 128\r\n2.5 4 0.125 255 0 7 0\r\n"
            + "3 0 1 2\r\n4 2 1 0 1\r\n")
    (tmp_path / "a.ply").write_text(text, newline="")
    ply = read_ply(tmp_path / "a.ply")
    assert ply["vertex"]["y"].tolist() == [-1.25, 0.0, 4.0]
    assert ply["vertex"]["red"].dtype == np.uint8 and ply["vertex"]["red"].tolist() == [10, 40, 255]
    assert [f.tolist() for f in ply["face"]["vertex_indices"]] == [[0, 1, 2], [2, 1, 0, 1]]


def test_write_ply_bytes_are_scannet_layout(tmp_path):
    xyz = [[0.5, -1.25, 2.0], [1.0, 0.0, -3.5], [2.5, 4.0, 0.125]]
    write_ply(tmp_path / "w.ply", xyz, [[10, 20, 30], [40, 50, 60], [255, 0, 7]], faces=[[0, 1, 2]])
    data = (tmp_path / "w.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert header.decode().splitlines() == [
        "ply", "format binary_little_endian 1.0", "comment VCGLIB generated", "element vertex 3",
        "property float x", "property float y", "property float z", "property uchar red",
        "property uchar green", "property uchar blue", "property uchar alpha", "element face 1",
        "property list uchar int vertex_indices"]
    expected = b"".join(struct.pack("<fffBBBB", *p, *c, 255) for p, c in
                        zip(xyz, [(10, 20, 30), (40, 50, 60), (255, 0, 7)]))
    assert body == expected + struct.pack("<B3i", 3, 0, 1, 2)


def _valid_ply(tmp_path):
    path = tmp_path / "v.ply"
    write_ply(path, np.zeros((4, 3)), np.zeros((4, 3)), faces=[[0, 1, 2], [1, 2, 3]])
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d[:-5], "truncated PLY data: the file ends inside element 'face'"),
    (lambda d: d[:d.index(b"end_header\n") + 11 + 20],  # 20 of the 4 * 16 vertex bytes
     "truncated PLY data: the file ends inside element 'vertex'"),
    (lambda d: d.replace(b"binary_little_endian", b"binary_middle_endian"), "unsupported PLY format"),
    (lambda d: d.replace(b"ply\n", b"plx\n", 1), "bad PLY header: the file does not start with 'ply'"),
    (lambda d: d.replace(b"end_header", b"end_hedder"), "bad PLY header: no 'end_header'"),
    (lambda d: d.replace(b"property float y", b"property float8 y"), "unknown property type 'float8'"),
    (lambda d: d.replace(b"property uchar red\nproperty uchar green\nproperty uchar blue\n", b""),
     "colourless PLY"),
])
def test_ply_errors_name_the_file(tmp_path, edit, message):
    path = _valid_ply(tmp_path)
    path.write_bytes(edit(path.read_bytes()))
    with pytest.raises(DataFormatError) as err:
        read_coloured_vertices(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_ply_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")


# ----------------------------------------------------------------------------------- label tsv
def test_read_label_map_official_header(tmp_path):
    labels = read_label_map(write_labels_tsv(tmp_path / "l.tsv"))
    assert labels.nyu40_ids == {"wall": 1, "chair": 5, "floor": 2, "table": 7, "kitchen cabinets": 3,
                                "ceiling": 22, "trash can": 39, "kitchen counter": 12}
    with pytest.raises(DataFormatError, match=r"label 'sofa chair' is not a raw_category of .*l\.tsv"):
        labels.nyu40_id("sofa chair", "somewhere")


def test_label_tsv_errors(tmp_path):
    path = tmp_path / "l.tsv"
    path.write_text("id\traw_category\tcategory\n1\twall\twall\n")
    with pytest.raises(DataFormatError, match="no column nyu40id"):
        read_label_map(path)
    path.write_text("\t".join(LABELS_TSV_HEADER) + "\n"
                    + "1\twall\twall\t8277\t1\n2\tchair\tchair\t4646\tx\n")
    with pytest.raises(DataFormatError, match=r"l\.tsv: line 3: nyu40id 'x'"):
        read_label_map(path)


# ------------------------------------------------------------------------------ prepared scenes
# scene0000_00 (see official_formats): wall | chair | ceiling (nyu 22, not a class) | table |
# unannotated | chair | floor | kitchen counter (nyu 12) | trash can (nyu 39, otherfurniture)
SEMANTIC_0 = [0, 0, 4, 4, 4, IGN, IGN, 6, 6, IGN, IGN, 4, 1, 1, 11, 19]
INSTANCE_0 = [IGN, IGN, 0, 0, 0, IGN, IGN, 1, 1, IGN, IGN, 0, IGN, IGN, 2, 3]
GT_0 = [1000, 1000, 5001, 5001, 5001, 0, 0, 7002, 7002, 0, 0, 5001, 2000, 2000, 12003, 39004]
# scene0001_00: table | table | kitchen cabinets listed twice: the later copy (group 3) wins,
# group 2 keeps no vertex and gets no instance id.
SEMANTIC_1 = [6, 6, 6, 2]
INSTANCE_1 = [0, 0, 1, 2]
GT_1 = [7001, 7001, 7002, 3003]


@pytest.fixture
def raw(tmp_path):
    return write_mini_scannet(tmp_path / "raw")


def _gt(out, name):
    return [int(v) for v in (out / "gt" / f"{name}.txt").read_text().split()]


def test_prepare_scene_exact_labels(raw, tmp_path):
    out = tmp_path / "out"
    assert prepare_scene(raw["scans"] / "scene0000_00", read_label_map(raw["tsv"]), out) == "scene0000_00"
    scene = load_scene(out / "scenes" / "scene0000_00.npz")
    assert scene["semantic"].tolist() == SEMANTIC_0
    assert scene["instance"].tolist() == INSTANCE_0
    xyz, rgb = mini_vertices(len(MINI_SEG_INDICES))
    np.testing.assert_array_equal(scene["xyz"], xyz)
    np.testing.assert_allclose(scene["rgb"], rgb.astype(np.float64) / 127.5 - 1, atol=1e-6)
    assert scene["rgb"].min() >= -1 and scene["rgb"].max() <= 1
    assert _gt(out, "scene0000_00") == GT_0


def test_prepare_scannet_meta_and_splits(raw, tmp_path):
    out = tmp_path / "out"
    prepare_scannet(raw["scans"], raw["tsv"], out, workers=2, progress=False,
                    split_files={"train": raw["train_list"], "val": raw["val_list"]})
    meta = read_meta(out)
    assert meta["name"] == "scannet"
    assert meta["class_names"][:2] == ["wall", "floor"] and meta["class_names"][-1] == "otherfurniture"
    assert meta["benchmark_ids"] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39]
    assert meta["instance_classes"] == list(range(2, 20))
    assert meta["splits"] == {"train": ["scene0000_00"], "val": ["scene0001_00"]}
    second = load_scene(out / "scenes" / "scene0001_00.npz")
    assert second["semantic"].tolist() == SEMANTIC_1 and second["instance"].tolist() == INSTANCE_1
    assert _gt(out, "scene0001_00") == GT_1
    assert load_scene(out / "scenes" / "scene0000_00.npz")["instance"].tolist() == INSTANCE_0

    prepare_scannet(raw["scans"], raw["tsv"], tmp_path / "out2", progress=False)
    assert read_meta(tmp_path / "out2")["splits"] == {"train": ["scene0000_00", "scene0001_00"], "val": []}


# --------------------------------------------------------------------------------- bad inputs
def _truncate(p):
    p["ply"].write_bytes(p["ply"].read_bytes()[:-3])


def _colourless(p):
    xyz, _ = mini_vertices(4)
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\n"
              "property float y\nproperty float z\nend_header\n")
    p["ply"].write_bytes(header.encode() + xyz.astype("<f4").tobytes())


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


BAD_SCENES = {
    "missing file": (lambda p: p["segs"].unlink(), "segs.json: file not found"),
    "truncated ply": (_truncate, "truncated PLY data"),
    "colourless ply": (_colourless, "colourless PLY"),
    "segment missing from segs": (
        lambda p: _edit_json(p["aggregation"], lambda d: d["segGroups"][1]["segments"].append(999)),
        "aggregation.json: segGroup 1 ('table') references segment id 999"),
    "unknown label": (
        lambda p: _edit_json(p["aggregation"], lambda d: d["segGroups"][0].update(label="spaceship")),
        "label 'spaceship' is not a raw_category of"),
    "vertex count mismatch": (
        lambda p: _edit_json(p["segs"], lambda d: d["segIndices"].pop()),
        "3 segment ids for the 4 vertices"),
}


def _leftovers(out, name):
    return [p.name for p in out.rglob("*") if p.is_file() and (name in p.name or p.suffix == ".tmp")]


@pytest.mark.parametrize("case", list(BAD_SCENES))
def test_bad_scene_stops_the_run_and_leaves_no_file(raw, tmp_path, case):
    edit, message = BAD_SCENES[case]
    bad = raw["scans"] / "scene0001_00"
    edit(scannet_paths(bad))
    out = tmp_path / "out"
    with pytest.raises(PrepareError) as err:
        prepare_scannet(raw["scans"], raw["tsv"], out, workers=2 if case == "unknown label" else 1,
                        progress=False)
    assert f"cannot prepare {bad}" in str(err.value) and message in str(err.value)
    assert _leftovers(out, "scene0001_00") == []
    assert not (out / "meta.json").exists()


def test_skip_bad_logs_and_continues(raw, tmp_path):
    _edit_json(scannet_paths(raw["scans"] / "scene0000_00")["aggregation"],
               lambda d: d["segGroups"][0].update(label="spaceship"))
    meta = prepare_scannet(raw["scans"], raw["tsv"], tmp_path / "out", progress=False, skip_bad=True)
    assert meta["skipped"] == ["scene0000_00"]
    assert meta["splits"]["train"] == ["scene0001_00"]
    assert _leftovers(tmp_path / "out", "scene0000_00") == []


def test_failed_gt_write_removes_the_scene_file(raw, tmp_path):
    out = tmp_path / "out"
    (out / "gt" / "scene0000_00.txt").mkdir(parents=True)  # a folder where the gt file must go
    with pytest.raises(OSError):
        prepare_scene(raw["scans"] / "scene0000_00", read_label_map(raw["tsv"]), out)
    assert not (out / "scenes" / "scene0000_00.npz").exists()
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_scene_without_faces_or_with_empty_group(tmp_path):
    # a ply without faces, a group with no segments and only ignored classes: no instances at all
    xyz, rgb = mini_vertices(3)
    scans = tmp_path / "scans"
    write_scannet_scene(scans, "scene0002_00", xyz, rgb, [4, 4, 8], [("ceiling", [4]), ("chair", [])],
                        faces=np.zeros((0, 3), int))
    out = tmp_path / "out"
    prepare_scene(scans / "scene0002_00", read_label_map(write_labels_tsv(tmp_path / "l.tsv")), out)
    scene = load_scene(out / "scenes" / "scene0002_00.npz")
    assert scene["semantic"].tolist() == [IGN, IGN, IGN] and scene["instance"].tolist() == [IGN, IGN, IGN]
    assert _gt(out, "scene0002_00") == [0, 0, 0]


# ---------------------------------------------------------------------------------------- CLI
def _cli(*args):
    script = REPO / "data_scripts" / "prepare_scannet.py"
    return subprocess.run([sys.executable, str(script), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli(raw, tmp_path):
    out = tmp_path / "out"
    run = _cli("--scans", raw["scans"], "--labels-tsv", raw["tsv"], "--out", out, "--quiet",
               "--train-list", raw["train_list"], "--val-list", raw["val_list"])
    assert run.returncode == 0, run.stderr
    assert "train 1, val 1" in run.stdout
    assert read_meta(out)["splits"]["val"] == ["scene0001_00"]
    assert _gt(out, "scene0000_00") == GT_0

    _edit_json(scannet_paths(raw["scans"] / "scene0001_00")["aggregation"],
               lambda d: d["segGroups"][0].update(label="spaceship"))
    bad_label = _cli("--scans", raw["scans"], "--labels-tsv", raw["tsv"], "--out", tmp_path / "o2", "--quiet")
    no_scans = _cli("--scans", tmp_path / "nowhere", "--labels-tsv", raw["tsv"], "--out", tmp_path / "o3")
    for run, problem in ((bad_label, "label 'spaceship'"),
                         (no_scans, "nowhere: ScanNet scans folder not found")):
        assert run.returncode == 1
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prepare_scannet: error:") and problem in lines[0]
