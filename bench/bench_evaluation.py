"""Speed of the ScanNet-benchmark evaluation (twist_lib.evaluation) on ScanNet-sized scenes.

Each scene: 150k points, 40 % wall/floor/unannotated, the rest split into ~40 GT instances of the
18 ScanNet instance classes; ~60 predictions per scene (noisy copies of GT instances, duplicates
and random blobs, scores with ties). Prints the time to add the scenes to an InstanceEvaluator,
to compute the AP table, and to write and read one scene's prediction files.
ScanNet val has 312 scenes: multiply the per-scene figures.

    python bench/bench_evaluation.py [--scenes 20] [--points 150000]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from twist_lib.evaluation import ClassSpec, InstanceEvaluator, read_predictions, write_predictions

SPEC = ClassSpec.builtin("scannet")


def make_scene(rng, n_points: int):
    ids = np.array(SPEC.instance_benchmark_ids)
    gt = rng.choice([0, 1000, 2000], n_points)            # unannotated, wall, floor
    fg = rng.permutation(n_points)[: int(0.6 * n_points)]
    cuts = np.sort(rng.choice(np.arange(1, len(fg)), 39, replace=False))
    objects = np.split(fg, cuts)
    for k, idx in enumerate(objects):
        gt[idx] = rng.choice(ids) * 1000 + k + 1
    preds = []
    for idx in objects:
        for _ in range(rng.integers(1, 3)):
            mask = np.zeros(n_points, dtype=bool)
            mask[idx[rng.random(len(idx)) < rng.uniform(0.5, 1.0)]] = True
            mask[rng.integers(0, n_points, rng.integers(0, 500))] = True
            preds.append({"mask": mask, "class_id": int(gt[idx[0]] // 1000),
                          "score": round(float(rng.random()), 2)})
    return gt, preds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--points", type=int, default=150_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    scenes = [make_scene(rng, args.points) for _ in range(args.scenes)]
    n_preds = sum(len(p) for _, p in scenes)
    ev = InstanceEvaluator(SPEC)
    t0 = time.perf_counter()
    for k, (gt, preds) in enumerate(scenes):
        ev.add_scene(preds, gt, str(k))
    t1 = time.perf_counter()
    result = ev.result()
    t2 = time.perf_counter()
    print(f"{args.scenes} scenes x {args.points} points, {n_preds / args.scenes:.0f} predictions/scene")
    print(f"add_scene: {(t1 - t0) / args.scenes * 1e3:.1f} ms/scene")
    print(f"result (18 classes x 10 thresholds): {t2 - t1:.2f} s "
          f"({(t2 - t1) / args.scenes * 1e3:.1f} ms/scene)   mAP {result['AP']:.3f}")
    gt, preds = scenes[0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_predictions(tmp, "scene", preds)
        t1 = time.perf_counter()
        read_predictions(tmp, "scene", len(gt), SPEC)
        t2 = time.perf_counter()
    print(f"write_predictions: {(t1 - t0) * 1e3:.0f} ms/scene, read_predictions: "
          f"{(t2 - t1) * 1e3:.0f} ms/scene ({len(preds)} masks)")


if __name__ == "__main__":
    main()
