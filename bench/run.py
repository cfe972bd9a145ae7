"""The benchmark suite: one table (printed and written as CSV) with a per-stage breakdown.

    python bench/run.py [--quick] [--only GROUP ...] [--csv PATH] [--profile cpu] [--threads 1]

Each row is ``group, figure, value, unit, machine``; ``machine`` is the CPU model and torch's
thread count, or the GPU's name for figures measured on CUDA. The CSV goes to
``runs/bench/<date>.csv`` unless ``--csv`` says otherwise (``runs/`` is git-ignored). The groups
call the functions of the scripts beside this file:

- ``sparse`` (``bench_sparse.unet_step``): one Sparse U-Net step (forward, loss, backward, SGD;
  SparseTensor rebuilt) per available backend, at 50k / 150k / 250k voxels, ``small`` and
  ``paper`` model sizes (``--quick``: 50k, ``small``), with peak memory on CUDA ("n/a" on the
  CPU, where no honest per-step figure exists in one process);
- ``module_a`` (``bench_clustering.module_a_scaling``): ``semantic_bfs`` against point count on
  uniformly sampled surfaces (10k, 40k, 160k, 250k; ``--quick``: 10k, 40k) beside the plain
  cKDTree baseline in the same run, asserting the same partition, and time(4N) / time(N);
- ``self_training`` (``bench_self_training.measure``, always with its ``--quick`` settings):
  pseudo-labelling scenes/s; one self-training step split into data loading, Phi fwd+bwd,
  module A, Psi fwd+bwd (one step's proposals), optimiser; the Sup-only step and the ratio;
- ``data_loading``: scenes/s through ``SceneDataset`` (train split, the train augmentations,
  no in-memory cache) and ``collate`` in a ``DataLoader`` with 0, 2 and 4 workers
  (``--quick``: 0 and 2);
- ``synthetic`` (``bench_synthetic.scene_rate``): scenes/s of the synthetic generator;
- ``roofline`` (``roofline.roofline``): the U-Net step's arithmetic counted from its kernel maps,
  its achieved GFLOP/s per layer kind and in all, against the GEMM peak measured in the same run
  (``--quick``: the same, 50k voxels; the full suite adds a real 4-scene batch of the ``cpu``
  benchmark when it exists).

Absolute times depend on what else runs on the machine; compare rows of one run only.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402

from bench_self_training import cpu_model  # noqa: E402  (bench/ is on sys.path above)

GROUPS = ("sparse", "module_a", "self_training", "data_loading", "synthetic", "roofline")
COLUMNS = ("group", "figure", "value", "unit", "machine")


def machine(device="cpu") -> str:
    """The CPU model and torch threads, or the GPU's name for a CUDA device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} torch threads"


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, group, figure, value, unit, device="cpu"):
        if isinstance(value, float):
            value = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        self.rows.append(dict(group=group, figure=figure, value=str(value), unit=unit,
                              machine=machine(device)))
        print(f"  {group:13s} {figure:48s} {value:>10} {unit}", flush=True)

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def print(self) -> None:
        widths = {c: max(len(c), *(len(r[c]) for r in self.rows)) for c in COLUMNS}
        print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
        print("  ".join("-" * widths[c] for c in COLUMNS))
        for r in self.rows:
            print("  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip())


# ----------------------------------------------------------------------------- the groups

def bench_sparse(table: Table, quick: bool, device: str) -> None:
    from bench_sparse import unet_step
    from twist_lib import sparse
    backends = sparse.available_backends()
    if device.startswith("cuda") and "minkowski" in backends:
        import MinkowskiEngine as ME
        if not ME.is_cuda_available():
            backends.remove("minkowski")
    from twist_lib.sparse import native
    variants = [(b, native.enabled, b) for b in backends]
    if device == "cpu" and native.enabled and native.library() is not None:
        # the torch backend twice: its torch ops alone, and with the compiled kernels (native.py)
        variants[0:1] = [("torch", False, "torch (torch ops)"),
                         ("torch", True, "torch (compiled kernels)")]
    for backend, compiled, label in variants:
        native.enabled = compiled
        for size in (("small",) if quick else ("small", "paper")):
            for voxels in ((50_000,) if quick else (50_000, 150_000, 250_000)):
                r = unet_step(backend, voxels, size, device=device, steps=1 if quick else 3)
                name = f"{label} {size} {r['voxels'] // 1000}k voxels"
                table.add("sparse", f"{name}: fwd+bwd step", r["step_s"], "s", device)
                peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2 ** 30:.3f}"
                table.add("sparse", f"{name}: peak memory", peak, "GiB", device)


def bench_module_a(table: Table, quick: bool, device: str) -> None:
    from bench_clustering import module_a_scaling
    sizes = (10_000, 40_000) if quick else (10_000, 40_000, 160_000, 250_000)
    rows = module_a_scaling(sizes, repeats=3 if quick else 5)
    for r in rows:
        k = f"{r['points'] // 1000}k points"
        table.add("module_a", f"semantic_bfs {k}", r["semantic_bfs_s"] * 1e3, "ms")
        table.add("module_a", f"cKDTree baseline {k}", r["baseline_s"] * 1e3, "ms")
        table.add("module_a", f"semantic_bfs / baseline {k}",
                  r["semantic_bfs_s"] / r["baseline_s"], "x")
    for a, b in zip(rows, rows[1:]):
        if b["points"] == 4 * a["points"]:
            pair = f"{b['points'] // 1000}k / {a['points'] // 1000}k"
            table.add("module_a", f"semantic_bfs time(4N)/time(N) {pair}",
                      b["semantic_bfs_s"] / a["semantic_bfs_s"], "x")
            table.add("module_a", f"baseline time(4N)/time(N) {pair}",
                      b["baseline_s"] / a["baseline_s"], "x")


def bench_self_training(table: Table, quick: bool, profile: str, threads: int) -> None:
    from bench_self_training import measure
    out = measure(profile=profile, quick=True, threads=threads)
    f, dev = out["figures"], str(out["device"])
    g = "self_training"
    table.add(g, "pseudo-labelling", f["pseudo_label_scenes_per_s"], "scenes/s", dev)
    for key, name in (("load", "data loading"), ("phi", "Phi fwd+bwd"),
                      ("module_a", "module A"), ("psi", "Psi fwd+bwd (one step's proposals)"),
                      ("opt", "optimiser step"), ("total", "total")):
        table.add(g, f"self-training step: {name}", f[f"self_training_{key}_s"], "s", dev)
    table.add(g, "self-training step: train_step as is", f["self_training_train_step_s"], "s",
              dev)
    table.add(g, "Psi samples per step", f["psi_samples_per_step"], "samples", dev)
    table.add(g, "Sup-only step: total", f["sup_only_total_s"], "s", dev)
    table.add(g, "ratio self-training / Sup-only step", f["ratio_self_over_sup"], "x", dev)


def bench_data_loading(table: Table, quick: bool, profile: str) -> None:
    from twist_lib.config import Config
    from twist_lib.data.ensure import ensure_dataset
    cfg = Config.from_sources(profile=profile, overrides=["progress=false"]).validate()
    ensure_dataset(cfg)
    batches = 3 if quick else 10
    for workers in ((0, 2) if quick else (0, 2, 4)):
        rate = _loading_rate(cfg, workers, batches)
        table.add("data_loading", f"{workers} workers, batch {cfg.batch_size} (profile {profile})",
                  rate, "scenes/s")


def _loading_rate(cfg, workers: int, batches: int) -> float:
    """Scenes per second through SceneDataset (train split, train augmentations, no in-memory
    cache) and collate in a DataLoader with ``workers`` workers, over ``batches`` batches after
    the first (which pays the workers' start-up)."""
    from torch.utils.data import DataLoader
    from twist_lib.data.dataset import SceneDataset
    from twist_lib.data.transforms import default_train_transforms
    ds = SceneDataset(cfg.data_root, "train", label_ratio=cfg.label_ratio,
                      transforms=default_train_transforms(cfg.max_points, elastic=cfg.elastic),
                      voxel_size=cfg.voxel_size, use_xyz_features=cfg.use_xyz_features,
                      cache=False)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=ds.collate_fn)
    it = iter(loader)
    next(it)                      # the first batch pays the workers' start-up
    start, scenes = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        scenes += len(batch["names"])
    return scenes / (time.perf_counter() - start)


def bench_synthetic(table: Table, quick: bool) -> None:
    from bench_synthetic import scene_rate
    r = scene_rate("cpu", 5 if quick else 50)
    table.add("synthetic", "generate_scene size=cpu, 1 process", r["scenes_per_s"], "scenes/s")
    table.add("synthetic", "points per scene (size=cpu)", r["points"], "points")


# ----------------------------------------------------------------------------- main

def bench_roofline(table: Table, quick: bool) -> None:
    from roofline import roofline
    inputs = [("50k", dict(voxels=50_000))]
    if not quick and (ROOT / "data" / "synthetic_cpu" / "meta.json").exists():
        inputs.append(("real batch", dict(real=True)))
    for tag, kwargs in inputs:
        for figure, value, unit in roofline(**kwargs):
            table.add("roofline", f"{tag}: {figure}", float(value), unit)


def run(groups=GROUPS, quick: bool = False, csv_path=None, profile: str = "cpu",
        threads: int = 1, device: str = "cpu") -> Table:
    """Run ``groups`` in order, print the table and write it to ``csv_path``."""
    torch.set_num_threads(threads)
    table = Table()
    started = time.perf_counter()
    for group in groups:
        print(f"[{group}]", flush=True)
        if group == "sparse":
            bench_sparse(table, quick, device)
        elif group == "module_a":
            bench_module_a(table, quick, device)
        elif group == "self_training":
            bench_self_training(table, quick, profile, threads)
        elif group == "data_loading":
            bench_data_loading(table, quick, profile)
        elif group == "roofline":
            bench_roofline(table, quick)
        elif group == "synthetic":
            bench_synthetic(table, quick)
        else:
            raise ValueError(f"unknown group {group!r}; choose from {GROUPS}")
        torch.set_num_threads(threads)      # a group may have changed it
    print()
    table.print()
    print(f"\n{len(table.rows)} rows in {time.perf_counter() - started:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if csv_path is not None:
        table.write_csv(Path(csv_path))
        print(f"written to {csv_path}")
    return table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the smallest settings (about a minute "
                   "per group on a loaded 2-core CPU)")
    p.add_argument("--only", nargs="+", choices=GROUPS, metavar="GROUP",
                   help=f"run only these groups ({', '.join(GROUPS)})")
    p.add_argument("--csv", default=None,
                   help="CSV path (default runs/bench/<date>.csv under the repository)")
    p.add_argument("--profile", default="cpu", help="config profile for the self-training and "
                   "data-loading groups (smoke | cpu | gpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device of the sparse U-Net group")
    a = p.parse_args(argv)
    csv_path = a.csv or ROOT / "runs" / "bench" / f"{datetime.date.today().isoformat()}.csv"
    run(a.only or GROUPS, a.quick, csv_path, a.profile, a.threads, a.device)


if __name__ == "__main__":
    main()
