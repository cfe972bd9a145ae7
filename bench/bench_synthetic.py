"""Speed of the synthetic benchmark generator: scenes/s and points/scene for both sizes, and the
target "200 cpu-size scenes in under a minute on 2 cores" (generate_dataset, 2 workers, to disk).

    python bench/bench_synthetic.py [--cpu-scenes 200] [--scannet-scenes 4] [--workers 2]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twist_lib.synthetic import generate_dataset, generate_scene  # noqa: E402


def scene_rate(size: str, n: int) -> dict:
    """Generate ``n`` scenes of ``size`` in this process: ``{"scenes_per_s", "points"}`` (mean
    points per scene, min, max). Used by ``bench/run.py``."""
    start = time.perf_counter()
    counts = [len(generate_scene((0, i), size)["xyz"]) for i in range(n)]
    dt = time.perf_counter() - start
    return {"scenes_per_s": n / dt, "points": float(np.mean(counts)), "min": min(counts),
            "max": max(counts)}


def time_scenes(size: str, n: int) -> None:
    r = scene_rate(size, n)
    print(f"generate_scene size={size:8s} {n:4d} scenes, 1 process: {r['scenes_per_s']:7.2f} "
          f"scenes/s, {r['points']:9.0f} points/scene (min {r['min']}, max {r['max']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-scenes", type=int, default=200)
    parser.add_argument("--scannet-scenes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    time_scenes("cpu", 50)
    time_scenes("scannet", args.scannet_scenes)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(tmp, args.cpu_scenes, size="cpu", workers=args.workers, progress=False)
        dt = time.perf_counter() - start
        mb = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
    print(f"generate_dataset size=cpu {args.cpu_scenes} scenes, {args.workers} workers, to disk: "
          f"{dt:.1f} s ({args.cpu_scenes / dt:.1f} scenes/s, {mb:.0f} MiB; target < 60 s for 200)")


if __name__ == "__main__":
    main()
