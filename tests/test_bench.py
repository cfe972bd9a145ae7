"""bench/run.py: the suite's cheapest group runs in-process and writes the documented CSV."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402
from bench_clustering import kdtree_baseline, same_partition, surface_patches  # noqa: E402

from twist_lib.clustering import semantic_bfs  # noqa: E402


def test_module_a_group_writes_the_csv(tmp_path, monkeypatch):
    import bench_clustering
    real = bench_clustering.module_a_scaling
    monkeypatch.setattr(bench_clustering, "module_a_scaling",
                        lambda sizes, repeats: real((2000, 8000), repeats=1))
    out = tmp_path / "bench.csv"
    bench_run.run(["module_a"], quick=True, csv_path=out)
    rows = list(csv.DictReader(out.open()))
    assert rows and list(rows[0]) == list(bench_run.COLUMNS)
    assert {r["group"] for r in rows} == {"module_a"}
    assert {r["unit"] for r in rows} == {"ms", "x"}
    assert all(r["machine"] and float(r["value"]) > 0 for r in rows)
    assert any(r["figure"].startswith("semantic_bfs time(4N)/time(N)") for r in rows)


@pytest.mark.parametrize("search", ["grid", "kdtree"])
def test_surface_scene_matches_the_kdtree_baseline(search):
    xyz, cls = surface_patches(3000, seed=1)
    ids = semantic_bfs(xyz, cls, 0.03, 50, search=search)
    assert same_partition(ids, kdtree_baseline(xyz, cls, 0.03, 50))
    assert np.array_equal(ids, semantic_bfs(xyz, cls, 0.03, 50))


def test_same_partition_detects_a_difference():
    a = np.array([0, 0, 1, 1, -1])
    assert same_partition(a, np.array([5, 5, 2, 2, -1]))
    assert not same_partition(a, np.array([5, 5, 5, 2, -1]))
    assert not same_partition(a, np.array([5, 5, 2, 2, 3]))


def _error_scene():
    """Objects (class, points): A (2, 100) and B (2, 150) touching, C (3, 100), D (2, 100),
    E (3, 100), F (3, 100). Predictions: A+B as one chair-class instance, C with class 2,
    D in two pieces of 40 points, nothing on E, F exactly."""
    from twist_lib.inference import ScenePrediction
    sizes, classes = [100, 150, 100, 100, 100, 100], [2, 2, 3, 2, 3, 3]
    instance = np.repeat(np.arange(6), sizes)
    semantic = np.repeat(classes, sizes)
    ids = np.full(len(instance), -1)
    ids[instance <= 1] = 0
    ids[instance == 2] = 1
    d = np.flatnonzero(instance == 3)
    ids[d[:40]], ids[d[40:80]] = 2, 3
    ids[instance == 5] = 4
    n = len(ids)
    pred = ScenePrediction("s", np.zeros((n, 3)), np.zeros((n, 4)), np.zeros((n, 3)), ids,
                           classes=np.array([2, 2, 2, 2, 3]), scores=np.full(5, 0.9))
    return pred, {"name": "s", "instance": instance, "semantic": semantic}


def test_instance_errors_bins_and_oracles_by_hand():
    import instance_errors as ie
    from twist_lib.evaluation import ClassSpec
    spec = ClassSpec(("wall", "floor", "chair", "table"), (1, 2, 3, 4), (2, 3))
    pred, scene = _error_scene()
    # A: best IoU 100/250 = 0.4 but the instance covers all of it -> merged; B: 150/250 = 0.6
    # hit; C: IoU 1 with class 2 -> class; D: pieces of 40 + 40 -> split; E missed; F hit
    assert ie.error_bins(pred, scene, spec, min_size=50) == {
        "hit": 2, "class": 1, "merged": 1, "split": 1, "missed": 1}
    assert ie.error_bins(pred, scene, spec, min_size=120)["hit"] == 1   # only B is big enough
    fixed = ie.oracle(pred, scene, true_class=True, true_score=False)
    np.testing.assert_array_equal(fixed.classes, [2, 3, 2, 2, 3])      # majority true class
    scored = ie.oracle(pred, scene, true_class=False, true_score=True)
    np.testing.assert_allclose(scored.scores, [0.6, 0.0, 0.4, 0.4, 1.0])  # best same-class IoU
