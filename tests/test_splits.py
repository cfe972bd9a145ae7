"""Nested labelled splits, list files, meta.json update and the make_splits.py CLI."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from twist_lib.data import make_label_splits, make_meta, read_meta, write_label_splits, write_meta

REPO = Path(__file__).resolve().parents[1]
TRAIN = [f"scene{i:04d}_00" for i in range(1201)]


def test_nested_prefixes_with_benchmark_sizes():
    splits = make_label_splits(TRAIN, ratios=(20, 1, 10, 5), seed=0)
    # ScanNet data-efficient benchmark: about 12 / 60 / 120 / 240 of 1201 scenes (paper Sec. 5.1;
    # the book's appendix, Conventions: "Data formats")
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"labelled_1": 12, "labelled_5": 60, "labelled_10": 120, "labelled_20": 240}
    order = splits["labelled_20"]
    for key in ("labelled_1", "labelled_5", "labelled_10"):
        assert splits[key] == order[: len(splits[key])]
    assert len(set(order)) == len(order) and set(order) <= set(TRAIN)


def test_seeded():
    a = make_label_splits(TRAIN, seed=3)
    assert a == make_label_splits(list(reversed(TRAIN)), seed=3)  # depends on the set, not its order
    assert a["labelled_20"] != make_label_splits(TRAIN, seed=4)["labelled_20"]


def test_small_sets_fractional_ratio_and_bad_ratio():
    splits = make_label_splits(TRAIN[:30], ratios=(0.5, 1, 50), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"labelled_0.5": 1, "labelled_1": 1,
                                                      "labelled_50": 15}
    assert splits["labelled_0.5"] == splits["labelled_1"]
    with pytest.raises(ValueError, match="percentage"):
        make_label_splits(TRAIN, ratios=(0,))


def test_list_file_order(tmp_path):
    train = TRAIN[:50]
    listed = train[::-1]
    path = tmp_path / "order.txt"
    path.write_text("\n".join(listed) + "\n\n")
    splits = make_label_splits(train, ratios=(10, 20), order_file=path)
    assert splits == {"labelled_10": listed[:5], "labelled_20": listed[:10]}


def test_bad_list_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("scene0000_00\nnot_a_train_scene\n")
    with pytest.raises(ValueError, match=r"bad\.txt.*not_a_train_scene"):
        make_label_splits(TRAIN, order_file=bad)
    short = tmp_path / "short.txt"
    short.write_text("scene0000_00\n")
    with pytest.raises(ValueError, match=r"short\.txt.*needs 12"):
        make_label_splits(TRAIN, ratios=(1,), order_file=short)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        make_label_splits(TRAIN, order_file=tmp_path / "missing.txt")


@pytest.fixture
def root(tmp_path):
    splits = {"train": TRAIN[:100], "val": ["v0", "v1"], "labelled_2": ["stale"]}
    write_meta(tmp_path, make_meta("toy", ["a", "b"], [1], splits=splits))
    return tmp_path


def test_write_label_splits_updates_meta(root):
    splits = write_label_splits(root, ratios=(5, 10), seed=1)
    meta = read_meta(root)
    assert meta["splits"]["train"] == TRAIN[:100] and meta["splits"]["val"] == ["v0", "v1"]
    assert "labelled_2" not in meta["splits"]  # stale splits of another seed are replaced
    assert meta["splits"]["labelled_5"] == splits["labelled_5"] and len(splits["labelled_10"]) == 10
    assert meta["label_splits"] == {"seed": 1, "list_file": None}


def test_cli(root, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("\n".join(TRAIN[99::-1]))
    cmd = [sys.executable, str(REPO / "data_scripts" / "make_splits.py"), "--data", str(root),
           "--ratios", "1", "20", "--list", str(listed)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "labelled_1: 1 scenes" in run.stdout and "labelled_20: 20 scenes" in run.stdout
    meta = json.loads((root / "meta.json").read_text())
    assert meta["splits"]["labelled_20"] == TRAIN[99:79:-1]
    cmd[-1] = str(tmp_path / "nope.txt")
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "nope.txt" in run.stderr
