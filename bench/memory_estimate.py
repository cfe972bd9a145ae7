"""Memory of one training step of the ``paper`` model at the paper's batch (4 labelled + 4
unlabelled ScanNet-size scenes), estimated from measurements on the CPU.

What a step keeps alive at its peak (just before ``backward``) is what autograd saved for the
backward pass, plus the weights with their gradients and SGD momentum. This script measures the
first exactly, with ``torch.autograd.graph.saved_tensors_hooks`` (the bytes of every distinct
storage autograd keeps; the same on any device for the same ops), for Phi's forward and loss
(eq. 1) on batches of 1 and 2 ScanNet-size synthetic scenes (100-200k points, 2 cm voxels), in
float32 and under bfloat16 autocast, fits ``a + b * voxels`` and extrapolates to 8 scenes.
The backward pass then needs about one more layer's activations and gradients at a time, a small
share of the total; Psi and module A work on proposals (a few hundred thousand points at most)
and add little. A GPU run (``bench/gpu_check.sh``) measures the real peak with
``torch.cuda.max_memory_allocated``.

    OMP_NUM_THREADS=1 python bench/memory_estimate.py [--scenes 1 2] [--target 8]

Takes a few minutes and ~10 GiB of host memory at 2 scenes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twist_lib.config import Config  # noqa: E402
from twist_lib.data.batch import collate  # noqa: E402
from twist_lib.losses import phi_loss  # noqa: E402
from twist_lib.network import Phi  # noqa: E402
from twist_lib.synthetic import generate_scene  # noqa: E402

GiB = 2 ** 30


class SavedBytes:
    """Bytes of the distinct storages autograd saves for backward inside the ``with`` block."""

    def __init__(self):
        self.storages = {}

    def pack(self, t: torch.Tensor):
        s = t.untyped_storage()
        self.storages[s.data_ptr()] = s.nbytes()
        return t

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def scannet_batch(n: int, cfg: Config, seed: int = 0) -> dict:
    scenes = [generate_scene((seed, i), size="scannet") for i in range(n)]
    return collate(scenes, cfg.voxel_size, cfg.use_xyz_features)


def saved_bytes(model, batch: dict, bf16: bool) -> tuple[int, float]:
    """Saved-for-backward bytes of Phi's forward + eq. (1) on ``batch``, and its seconds."""
    t0 = time.time()
    with SavedBytes() as saved, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(batch)
        loss = phi_loss(out, batch["semantic"], batch["offset"], offset_valid=batch["offset_valid"])
    del out, loss
    return saved.total, time.time() - t0


def weight_state_bytes(model) -> int:
    """Weights, their gradients and SGD momentum, float32."""
    return 3 * 4 * sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--target", type=int, default=8, help="scenes per step to extrapolate to")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = Config.for_profile("gpu")
    torch.manual_seed(0)
    rows, voxels = [], []
    model = None
    for n in args.scenes:
        batch = scannet_batch(n, cfg)
        if model is None:
            model = Phi(batch["voxel_feats"].shape[1], 20, size="paper").train()
        v = len(batch["voxel_coords"])
        voxels.append(v)
        for bf16 in (False, True):
            nbytes, secs = saved_bytes(model, batch, bf16)
            rows.append((n, v, len(batch["xyz"]), bf16, nbytes, secs))
            print(f"{n} scene(s), {v} voxels, {len(batch['xyz'])} points, "
                  f"{'bf16 autocast' if bf16 else 'float32'}: saved {nbytes / GiB:.2f} GiB "
                  f"({nbytes / v:.0f} B/voxel), forward {secs:.0f} s", flush=True)
    per_scene = float(np.mean([v / n for n, v in zip(args.scenes, voxels)]))
    target_v = per_scene * args.target
    weights = weight_state_bytes(model)
    print(f"\nparameters {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M; weights + "
          f"grads + momentum {weights / GiB:.2f} GiB; mean {per_scene:.0f} voxels per scene")
    print(f"| precision | saved per voxel | estimate at {args.target} scenes "
          f"({target_v / 1e6:.2f} M voxels): saved + weights |")
    print("|---|---:|---:|")
    for bf16 in (False, True):
        pts = [(v, b) for _, v, _, f, b, _ in rows if f == bf16]
        xs, ys = np.array([v for v, _ in pts], float), np.array([b for _, b in pts], float)
        slope, icpt = np.polyfit(xs, ys, 1) if len(xs) > 1 else (ys[0] / xs[0], 0.0)
        est = icpt + slope * target_v + weights
        print(f"| {'bf16 autocast' if bf16 else 'float32'} | {slope:.0f} B | {est / GiB:.1f} GiB |")


if __name__ == "__main__":
    main()
