"""Benchmark twist_lib.sparse: one training step of a Sparse U-Net on a ScanNet-size voxel set.

The network follows PointGroup's UBlock (the book's appendix, Conventions: "Backbone and heads"):
widths m, 2m, ..., L*m,
2 residual blocks (BN-ReLU-SubMConv3x3x3, twice) per level, down = conv k2 s2, up = transposed
conv k2 s2 + skip concatenation, then a linear semantic head.  The scene is the surface of an
indoor-like room (floor, three walls, furniture boxes) voxelised at 2 cm.

Each step rebuilds the SparseTensor (so neighbour-map construction is timed, as in training
where every batch has new coordinates), runs forward, cross-entropy, backward and an SGD step;
the same is then timed on one SparseTensor whose neighbour maps are already built.
Every backend runs in its own subprocess so that its peak RSS is its own.

Usage::

    python bench/bench_sparse.py                       # every available backend, CPU, 2 threads
    python bench/bench_sparse.py --backend torch --device cuda --steps 10

:func:`unet_step` (used by ``bench/run.py``) times the same kind of step in-process for
twist_lib's own U-Net (:class:`twist_lib.network.SparseUNet` at a named
:data:`~twist_lib.network.MODEL_SIZES` size) on a room scaled to a given voxel count.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from twist_lib import sparse

VOXEL = 0.02  # metres (paper Sec. 5.1: voxel size 2 cm)


def _face(origin, u, v):
    """Voxel coordinates of an axis-aligned rectangle origin + a*u + b*v, a, b in [0, 1]."""
    steps_u = max(int(np.linalg.norm(u) / VOXEL), 1)
    steps_v = max(int(np.linalg.norm(v) / VOXEL), 1)
    a, b = np.meshgrid(np.linspace(0, 1, steps_u + 1), np.linspace(0, 1, steps_v + 1))
    pts = origin + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v
    return np.floor(pts / VOXEL).astype(np.int64)


def _box_faces(lo, hi, with_bottom=True):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = np.diag(hi - lo)
    faces = [_face(lo, dx, dy) if with_bottom else None, _face(lo + dz, dx, dy),
             _face(lo, dx, dz), _face(lo + dy, dx, dz), _face(lo, dy, dz), _face(lo + dx, dy, dz)]
    return [f for f in faces if f is not None]


def indoor_scene(seed: int, room=(4.2, 3.6, 2.4), boxes=6) -> np.ndarray:
    """(M, 3) unique voxel coordinates of a room's floor, three walls and furniture boxes."""
    rng = np.random.default_rng(seed)
    w, d, h = room
    faces = [_face(np.zeros(3), np.array([w, 0, 0]), np.array([0, d, 0])),
             _face(np.zeros(3), np.array([w, 0, 0]), np.array([0, 0, h])),
             _face(np.zeros(3), np.array([0, d, 0]), np.array([0, 0, h])),
             _face(np.array([w, 0, 0]), np.array([0, d, 0]), np.array([0, 0, h]))]
    for _ in range(boxes):
        size = rng.uniform([0.4, 0.4, 0.4], [1.8, 1.2, 1.6])
        corner = rng.uniform([0, 0, 0], [w - size[0], d - size[1], 0])
        faces += _box_faces(corner, corner + size, with_bottom=False)
    return np.unique(np.concatenate(faces), axis=0)


class ResidualBlock(nn.Module):
    """(BN-ReLU-SubMConv3) x2 plus identity (or a 1x1 SubMConv when the width changes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.skip = nn.Identity() if cin == cout else sparse.SubMConv3d(cin, cout, kernel_size=1)
        self.body = nn.Sequential(sparse.BatchNorm(cin), sparse.ReLU(), sparse.SubMConv3d(cin, cout),
                                  sparse.BatchNorm(cout), sparse.ReLU(),
                                  sparse.SubMConv3d(cout, cout))

    def forward(self, x):
        return x.replace_feats(self.body(x).feats + self.skip(x).feats)


class UBlock(nn.Module):
    """PointGroup's recursive U-Net level: blocks, down, inner level, up, concat, blocks."""

    def __init__(self, widths: list[int], reps: int = 2):
        super().__init__()
        w = widths[0]
        self.head = nn.Sequential(*[ResidualBlock(w, w) for _ in range(reps)])
        self.inner = None
        if len(widths) > 1:
            self.down = nn.Sequential(sparse.BatchNorm(w), sparse.ReLU(),
                                      sparse.DownConv3d(w, widths[1]))
            self.inner = UBlock(widths[1:], reps)
            self.up_norm = nn.Sequential(sparse.BatchNorm(widths[1]), sparse.ReLU())
            self.up = sparse.UpConv3d(widths[1], w)
            self.tail = nn.Sequential(ResidualBlock(2 * w, w),
                                      *[ResidualBlock(w, w) for _ in range(reps - 1)])

    def forward(self, x):
        x = self.head(x)
        if self.inner is None:
            return x
        deep = self.up(self.up_norm(self.inner(self.down(x))), x)
        return self.tail(sparse.cat(x, deep))


class SparseUNet(nn.Module):
    def __init__(self, cin: int, m: int, levels: int, classes: int):
        super().__init__()
        self.stem = sparse.SubMConv3d(cin, m)
        self.unet = UBlock([m * (i + 1) for i in range(levels)])
        self.out = nn.Sequential(sparse.BatchNorm(m), sparse.ReLU())
        self.classifier = nn.Linear(m, classes)

    def forward(self, x):
        return self.classifier(self.out(self.unet(self.stem(x))).feats)


def scene_of_voxels(voxels: int, seed: int = 0) -> np.ndarray:
    """(voxels, 3) unique voxel coordinates: :func:`indoor_scene` with the room's floor plan
    scaled so that it has at least ``voxels`` voxels, then a random subset of exactly that many."""
    base = (4.2, 3.6, 2.4)
    scale = 1.0
    for _ in range(4):
        room = (base[0] * scale, base[1] * scale, base[2])
        xyz = indoor_scene(seed, room=room, boxes=max(6, int(6 * scale * scale)))
        if len(xyz) >= voxels:
            break
        scale *= float(np.sqrt(voxels / len(xyz))) * 1.05
    rng = np.random.default_rng(seed)
    return xyz[np.sort(rng.choice(len(xyz), min(voxels, len(xyz)), replace=False))]


def unet_step(backend: str, voxels: int, size: str = "small", device: str = "cpu",
              steps: int = 2, seed: int = 0) -> dict:
    """Forward + cross-entropy + backward + SGD step of :class:`twist_lib.network.SparseUNet`
    (``size`` from :data:`~twist_lib.network.MODEL_SIZES`) plus a linear head, on
    :func:`scene_of_voxels`, the SparseTensor rebuilt every step (neighbour maps included).
    Returns the median step time over ``steps`` steps after one warm-up and, on CUDA, the peak
    allocated memory (``None`` on the CPU: no honest per-step figure there)."""
    from twist_lib.network import MODEL_SIZES, SparseUNet as TwistUNet
    dev = torch.device(device)
    torch.manual_seed(seed)
    xyz = scene_of_voxels(voxels, seed)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(xyz), 1), np.int64), xyz], 1)).int()
    feats = torch.rand(len(xyz), 3) * 2 - 1
    labels = torch.randint(0, 20, (len(xyz),))
    coords, feats, labels = coords.to(dev), feats.to(dev), labels.to(dev)
    net = TwistUNet(3, MODEL_SIZES[size]).to(dev)
    head = nn.Linear(MODEL_SIZES[size].m, 20).to(dev)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)

    def step():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        x = sparse.SparseTensor(coords, feats, backend=backend)
        loss = F.cross_entropy(head(net(x).feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = [step() for _ in range(steps)]
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return dict(backend=backend, size=size, voxels=len(xyz), device=str(dev),
                params=sum(p.numel() for p in net.parameters()),
                step_s=float(np.median(times)), peak_bytes=peak)


def run_backend(args) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    xyz = indoor_scene(args.seed)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(xyz), 1), np.int64), xyz], 1)).int()
    feats = torch.cat([torch.rand(len(xyz), 3) * 2 - 1, torch.from_numpy(xyz * VOXEL).float()], 1)
    labels = torch.randint(0, 20, (len(xyz),))
    coords, feats, labels = coords.to(device), feats.to(device), labels.to(device)
    net = SparseUNet(6, args.m, args.levels, 20).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20

    def step(make_input):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = F.cross_entropy(net(make_input()), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def fresh():
        return sparse.SparseTensor(coords, feats, backend=args.backend)

    step(fresh)  # warm-up
    times = [step(fresh) for _ in range(args.steps)]
    cached = fresh()
    step(lambda: cached)  # builds the maps
    cached_times = [step(lambda: cached) for _ in range(args.steps)]
    result = dict(backend=args.backend, device=args.device, threads=args.threads,
                  voxels=len(xyz), m=args.m, levels=args.levels,
                  params=sum(p.numel() for p in net.parameters()),
                  step_s=float(np.median(times)), step_s_min=float(min(times)),
                  cached_step_s=float(np.median(cached_times)),
                  rss_before_gib=rss_before,
                  rss_peak_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)
    if device.type == "cuda":
        result["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="all", choices=["all", "torch", "minkowski", "spconv"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line (internal)")
    args = parser.parse_args()
    if args.backend != "all":
        result = run_backend(args)
        print(json.dumps(result) if args.json else result)
        return
    backends = sparse.available_backends()
    if args.device.startswith("cuda") and "minkowski" in backends:
        import MinkowskiEngine as ME
        if not ME.is_cuda_available():
            backends.remove("minkowski")
            print("minkowski: skipped, this MinkowskiEngine build has no CUDA")
    for backend in backends:
        cmd = [sys.executable, __file__, "--backend", backend, "--json"] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("backend", "json")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        line = (f"{r['backend']:>9} on {r['device']} ({r['threads']} threads): {r['voxels']} voxels,"
                f" m={r['m']} levels={r['levels']} ({r['params'] / 1e6:.2f} M params): "
                f"{r['step_s']:.2f} s/step (min {r['step_s_min']:.2f}; "
                f"{r['cached_step_s']:.2f} with cached maps), "
                f"peak RSS {r['rss_peak_gib']:.2f} GiB (before steps {r['rss_before_gib']:.2f})")
        if "cuda_peak_gib" in r:
            line += f", CUDA peak {r['cuda_peak_gib']:.2f} GiB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
