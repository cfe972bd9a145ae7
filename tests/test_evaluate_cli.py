"""The `python -m twist_lib.evaluate` command line, run as a subprocess on benchmark-format folders."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twist_lib.data.io import make_meta, write_meta
from twist_lib.evaluation import write_predictions

REPO = Path(__file__).resolve().parents[1]
CHAIR, TABLE = 2, 3  # toy classes: wall 1 (void), chair 2, table 3, lamp 4


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "twist_lib.evaluate", "--no-progress", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def write_ids(path, ids):
    path.write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture
def bench(tmp_path):
    """DATA/meta.json, DATA/gt/{scene_a,scene_b}.txt and PRED/ with predictions.

    scene_a: chair 2001 (400 points) + wall (300); predicted exactly (0.9).
    scene_b: table 3001 (400) + chair 2001 (200); the table is predicted exactly (0.8), the chair
    is not predicted.
    """
    data = tmp_path / "data"
    write_meta(data, make_meta("toy", ["wall", "chair", "table", "lamp"], [1, 2, 3], splits={}))
    gt_a = np.array([2001] * 400 + [1000] * 300)
    gt_b = np.array([3001] * 400 + [2001] * 200)
    (data / "gt").mkdir()
    write_ids(data / "gt/scene_a.txt", gt_a)
    write_ids(data / "gt/scene_b.txt", gt_b)
    pred = tmp_path / "pred"
    write_predictions(pred, "scene_a", [{"mask": gt_a == 2001, "class_id": CHAIR, "score": 0.9}])
    write_predictions(pred, "scene_b", [{"mask": gt_b == 3001, "class_id": TABLE, "score": 0.8}])
    return data, pred


def test_happy_path_prints_the_table_and_the_means(bench, tmp_path):
    data, pred = bench
    out = run_cli("--gt", data / "gt", "--pred", pred, "--meta", data / "meta.json",
                  "--output", tmp_path / "res.csv")
    assert out.returncode == 0, out.stderr
    # chair: one TP (0.9) and one missed GT: p 1 at r 1/2, + (1, 0) -> AP = 1*.25 + 1*.25 = 0.5
    # table: AP 1; lamp: no GT -> nan, left out: mean (0.5 + 1) / 2 = 0.75 at every threshold
    rows = {line.split(":")[0].strip(): line.split(":")[1].split()
            for line in out.stdout.splitlines() if ":" in line and not line.startswith("scenes")}
    assert rows["chair"] == ["0.500"] * 3 and rows["table"] == ["1.000"] * 3
    assert rows["lamp"] == ["nan"] * 3 and rows["average"] == ["0.750"] * 3
    assert "scenes: 2  mAP: 0.7500  AP50: 0.7500  AP25: 0.7500" in out.stdout
    csv = (tmp_path / "res.csv").read_text().splitlines()
    assert csv[0] == "class,class id,ap,ap50,ap25" and csv[1] == "chair,2,0.5,0.5,0.5"


def test_classes_from_the_meta_json_beside_gt_or_a_builtin_dataset(bench):
    data, pred = bench
    assert "mAP: 0.7500" in run_cli("--gt", data / "gt", "--pred", pred).stdout
    # S3DIS ids 1..13 are all instance classes: ids 1 (wall points) -> 'ceiling', 2 'floor',
    # 3 'wall'. Its classes 2 and 3 have the same AP as above; class 1 (scene_a's 300 points of
    # id 1000 are "class 1 without an instance": void) has no GT instance -> nan.
    out = run_cli("--gt", data / "gt", "--pred", pred, "--dataset", "s3dis")
    assert out.returncode == 0, out.stderr
    assert "mAP: 0.7500" in out.stdout


def break_mask_length(pred):
    write_ids(pred / "predicted_masks/scene_a_000.txt", [1] * 10)
    return "scene_a_000.txt", "10 lines, but scene scene_a has 700 points"


def delete_mask(pred):
    (pred / "predicted_masks/scene_b_000.txt").unlink()
    return "scene_b.txt", "scene_b_000.txt not found"


def unparsable_class(pred):
    (pred / "scene_a.txt").write_text("predicted_masks/scene_a_000.txt chair 0.9\n")
    return "scene_a.txt", "must be numbers"


def unknown_class(pred):
    (pred / "scene_a.txt").write_text("predicted_masks/scene_a_000.txt 99 0.9\n")
    return "scene_a.txt", "class id 99 is not a class"


def short_line(pred):
    (pred / "scene_b.txt").write_text("predicted_masks/scene_b_000.txt 3\n")
    return "scene_b.txt, line 1", "expected 'relative/mask/path.txt class_id confidence'"


def missing_prediction_file(pred):
    (pred / "scene_b.txt").unlink()
    return "scene_b.txt", "missing prediction file for ground-truth scene scene_b"


def prediction_without_gt(pred):
    (pred / "scene_c.txt").write_text("")
    return "scene_c.txt", "no ground-truth file"


def bad_gt_line(pred):
    gt = pred.parent / "data/gt/scene_a.txt"
    gt.write_text(gt.read_text().replace("1000\n", "wall\n", 1))
    return "scene_a.txt, line 401", "expected one integer"


def bad_meta(pred):
    (pred.parent / "data/meta.json").write_text("{not json")
    return "meta.json", "Expecting property name"


@pytest.mark.parametrize("breaker", [break_mask_length, delete_mask, unparsable_class, unknown_class,
                                     short_line, missing_prediction_file, prediction_without_gt,
                                     bad_gt_line, bad_meta])
def test_malformed_input_exits_with_one_line_naming_the_file(bench, breaker):
    data, pred = bench
    file_name, message = breaker(pred)
    out = run_cli("--gt", data / "gt", "--pred", pred, "--meta", data / "meta.json")
    assert out.returncode == 1
    assert out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert file_name in lines[0] and message in lines[0], lines[0]


def test_no_class_list_is_an_error(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    out = run_cli("--gt", tmp_path / "gt", "--pred", tmp_path / "pred")
    assert out.returncode == 1 and "give --dataset or --meta" in out.stderr
