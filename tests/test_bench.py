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
