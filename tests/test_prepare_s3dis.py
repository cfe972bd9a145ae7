"""S3DIS preparation from miniature official raw rooms.

Expected labels are written out by hand from ``official_formats.MINI_S3DIS`` (the book's
appendix, Conventions: "Data formats": 13 classes, all instance classes; one annotation file =
one instance; ids = class index + 1).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from official_formats import MINI_S3DIS, write_mini_s3dis, write_s3dis_room
from twist_lib.data import DataFormatError, load_scene, read_meta
from twist_lib.prepare import PrepareError, prepare_s3dis
from twist_lib.prepare.s3dis import read_annotation_file

REPO = Path(__file__).resolve().parents[1]

# room -> (xyz, rgb, semantic, instance, gt), in natural file order; empty files, the " (1)"
# copy and non-.txt files contribute nothing; stairs -> clutter (12).
EXPECTED = {
    "Area_1_hallway_1": (  # ceiling_1 (NUL separator, trailing space), wall_3
        [[-1.5, -2.5, 3.0], [-1.0, -2.5, 3.0], [-2.0, 0.0, 1.5]],
        [[185, 187, 182], [0, 0, 255], [90, 90, 90]],
        [0, 0, 2], [0, 0, 1], [1001, 1001, 3002]),
    "Area_1_office_1": (  # chair_1, chair_2, chair_10, stairs_1, table_1
        [[1.0, 2.0, 0.5], [1.5, 2.0, 0.5], [2.0, 1.0, 0.5], [3.0, 1.0, 0.25], [0.5, 0.5, 0.125],
         [4.0, 4.0, 0.75], [4.5, 4.0, 0.75]],
        [[10, 20, 30], [11, 21, 31], [13, 23, 33], [12, 22, 32], [200, 201, 202], [100, 110, 120],
         [101, 111, 121]],
        [7, 7, 7, 7, 12, 8, 8], [0, 0, 1, 2, 3, 4, 4], [8001, 8001, 8002, 8003, 13004, 9005, 9005]),
    "Area_5_conferenceRoom_1": (  # board_2, sofa_1
        [[6.0, 9.0, 1.5], [7.0, 8.0, 0.5]], [[250, 250, 250], [50, 60, 70]],
        [11, 10], [0, 1], [12001, 11002]),
}


@pytest.fixture
def root(tmp_path):
    return write_mini_s3dis(tmp_path / "raw")


def _check_room(out, name):
    xyz, rgb, semantic, instance, gt = EXPECTED[name]
    scene = load_scene(out / "scenes" / f"{name}.npz")
    assert scene["name"] == name
    np.testing.assert_array_equal(scene["xyz"], np.array(xyz, np.float32))
    np.testing.assert_allclose(scene["rgb"], np.array(rgb) / 127.5 - 1, atol=1e-6)
    assert scene["semantic"].tolist() == semantic
    assert scene["instance"].tolist() == instance
    assert [int(v) for v in (out / "gt" / f"{name}.txt").read_text().split()] == gt


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_s3dis_exact_labels_and_meta(root, tmp_path, workers):
    out = tmp_path / "out"
    prepare_s3dis(root, out, areas=(1, 5), val_area=5, progress=False, workers=workers)
    for name in EXPECTED:
        _check_room(out, name)
    assert sorted(p.stem for p in (out / "scenes").iterdir()) == sorted(EXPECTED)
    meta = read_meta(out)
    assert meta["name"] == "s3dis" and meta["val_area"] == 5
    assert meta["class_names"] == ["ceiling", "floor", "wall", "beam", "column", "window", "door",
                                   "chair", "table", "bookcase", "sofa", "board", "clutter"]
    assert meta["instance_classes"] == list(range(13))
    assert meta["benchmark_ids"] == list(range(1, 14))
    assert meta["splits"] == {"train": ["Area_1_hallway_1", "Area_1_office_1"],
                              "val": ["Area_5_conferenceRoom_1"]}


@pytest.mark.parametrize("text, xyz, rgb", [
    ("1 2 3 4 5 6\t\r\n-0.5 0 1e-3 255 0 9  \n\n", [[1, 2, 3], [-0.5, 0, 1e-3]], [[4, 5, 6], [255, 0, 9]]),
    ("1 2 3 4\x005 6\n", [[1, 2, 3]], [[4, 5, 6]]),
    ("", np.zeros((0, 3)), np.zeros((0, 3))),
])
def test_annotation_lines_tolerated(tmp_path, text, xyz, rgb):
    path = tmp_path / "chair_1.txt"
    path.write_bytes(text.encode("latin-1"))
    got_xyz, got_rgb = read_annotation_file(path)
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)
    assert got_rgb.dtype == np.uint8


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4 5 6\n1 2 3 4 5\n", "line 2: expected 6 values (x y z r g b), found 5"),
    ("1 2 3 4 5 6\n\n1 2 x 4 5 6\n", "line 3: non-numeric value"),
    ("1 2 3 4 5 6 7\n1 2 3 4 5 6 7\n", "line 1: expected 6 values (x y z r g b), found 7"),
    ("1 2 3 4 5 6\n1 2 3 4 5 256\n", "line 2: colours must be integers in 0..255"),
    ("1 2 3 4.5 5 6\n", "line 1: colours must be integers in 0..255"),
    ("1 nan 3 4 5 6\n", "line 1: non-finite coordinate"),
    ("1 2 3 185\x01 187 182\n", "line 1: non-numeric value: '1 2 3 185\\x01 187 182'"),
])
def test_malformed_line_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "chair_1.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataFormatError) as err:
        read_annotation_file(path)
    assert str(err.value).startswith(f"{path}: {message}")


BAD_ROOMS = {
    "empty room": ({"board_1.txt": "", "wall_1.txt": "\n"}, "Area_1/storage_1: empty room"),
    "no Annotations": (None, "Area_1/storage_1: empty room: no Annotations folder"),
    "unknown class": ({"chair_1.txt": "1 2 3 4 5 6\n", "spaceship_1.txt": "1 2 3 4 5 6\n"},
                      "Annotations/spaceship_1.txt: unknown S3DIS class 'spaceship'"),
    "malformed line": ({"chair_1.txt": "1 2 3 4 5 6\n1 2 3 4 5 6 7\n"},
                       "Annotations/chair_1.txt: line 2: expected 6 values"),
}


@pytest.mark.parametrize("case", list(BAD_ROOMS))
def test_bad_room_stops_the_run_and_leaves_no_file(root, tmp_path, case):
    files, message = BAD_ROOMS[case]
    if files is None:
        (root / "Area_1" / "storage_1").mkdir()
    else:
        write_s3dis_room(root, "Area_1/storage_1", files)
    out = tmp_path / "out"
    with pytest.raises(PrepareError) as err:
        prepare_s3dis(root, out, areas=(1, 5), progress=False)
    assert f"cannot prepare {root / 'Area_1' / 'storage_1'}" in str(err.value)
    assert message in str(err.value)
    leftovers = [p for p in out.rglob("*") if p.is_file() and ("storage_1" in p.name or p.suffix == ".tmp")]
    assert leftovers == [] and not (out / "meta.json").exists()


def test_skip_bad_and_missing_area(root, tmp_path):
    write_s3dis_room(root, "Area_1/storage_1", {"chair_1.txt": "1 2 3\n"})
    meta = prepare_s3dis(root, tmp_path / "out", areas=(1, 5), progress=False, skip_bad=True)
    assert meta["skipped"] == ["Area_1_storage_1"]
    assert meta["splits"]["train"] == ["Area_1_hallway_1", "Area_1_office_1"]
    with pytest.raises(FileNotFoundError, match="Area_2: S3DIS area folder not found"):
        prepare_s3dis(root, tmp_path / "out2", progress=False)


def _cli(*args):
    return subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_s3dis.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli(root, tmp_path):
    out = tmp_path / "out"
    run = _cli("--root", root, "--out", out, "--areas", "1", "5", "--val-area", "5", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "train 2, val 1" in run.stdout
    _check_room(out, "Area_1_office_1")
    assert read_meta(out)["splits"]["val"] == ["Area_5_conferenceRoom_1"]

    write_s3dis_room(root, "Area_5/office_9", {"table_1.txt": "1 2 3 4 5 6\n0 0 0 1 1\n"})
    run = _cli("--root", root, "--out", tmp_path / "o2", "--areas", "1", "5", "--quiet")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    # stderr: the logged warning about the " (1)" duplicate, then the one-line error
    *warnings, error = run.stderr.strip().splitlines()
    assert [w.split(": ")[-1] for w in warnings] == ["skipping a duplicate copy of wall_3.txt"]
    assert error.startswith("prepare_s3dis: error:") and "office_9/Annotations/table_1.txt: line 2" in error


def test_mini_rooms_cover_the_documented_quirks():
    # guards the fixture itself: the quirks the expected values above rely on are present
    hallway = MINI_S3DIS["Area_1/hallway_1"]
    assert "\x00" in hallway["ceiling_1.txt"] and "wall_3 (1).txt" in hallway and hallway["board_1.txt"] == ""
    assert "stairs_1.txt" in MINI_S3DIS["Area_1/office_1"]
