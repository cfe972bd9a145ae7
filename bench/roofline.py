"""How far is Phi's training step from what this CPU can do? A roofline row group.

    python bench/roofline.py [--voxels 50000] [--size small] [--threads 1] [--real]

For one training step of the Sparse U-Net (the ``sparse`` group's step of ``bench_sparse.unet_step``:
forward, loss, backward, SGD, the SparseTensor and its neighbour maps rebuilt):

- the floating-point work of every convolution, counted from its kernel map
  (``KernelMap.flops``: 2 x pairs x C_in x C_out forward, twice that backward), and of the
  1x1x1 shortcuts (2 x voxels x C_in x C_out, x 3);
- the time of each convolution, forward + backward, run alone on the step's own inputs and maps
  (``GatherGemmScatter``), summed per layer kind: submanifold 3^3, strided (down), transposed
  (up), linear (shortcut); and the whole step's time;
- the machine's GEMM peak measured in the same run and thread count: the best rate of
  ``torch.mm`` on a large square problem and at the step's typical shapes (a kernel offset's
  pairs x C x C);
- achieved GFLOP/s and the fraction of that peak, per kind and for the whole step (the step's
  figure counts only the convolutions' and shortcuts' arithmetic: batch norm, ReLU, the map
  search and the loss are time without GEMM work, which is what keeps the step off the peak).

Where the compiled CPU kernels run (``twist_lib/sparse/native.py``: one thread, float32, an
AVX-512 CPU), the step is timed twice, with them (the default; the per-kind figures use them too)
and with the torch ops alone (``TWIST_NATIVE=0``), and the group prints the speed-up.

``--real`` takes a batch of 4 scenes of the ``cpu`` profile's synthetic benchmark (when
``data/synthetic_cpu`` exists) instead of ``bench_sparse.scene_of_voxels``: its neighbourhoods
are denser (real surfaces), which changes the arithmetic per voxel.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_sparse import scene_of_voxels  # noqa: E402
from twist_lib import sparse  # noqa: E402
from twist_lib.network import MODEL_SIZES, SparseUNet  # noqa: E402
from twist_lib.sparse import native, torch_backend  # noqa: E402

KINDS = ("submanifold 3^3", "strided (down)", "transposed (up)", "linear (shortcut)")


def _median_time(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gemm_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """GFLOP/s of ``torch.mm`` on an (m, k) @ (k, n) float32 problem."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    return 2 * m * k * n / _median_time(lambda: torch.mm(a, b), repeats) / 1e9


def step_inputs(voxels: int, real: bool, seed: int = 0):
    """``(coords, feats)`` of the step: a real 4-scene batch, or ``scene_of_voxels``."""
    if real:
        from twist_lib.config import Config
        from twist_lib.data.batch import collate
        from twist_lib.data.dataset import SceneDataset
        cfg = Config.for_profile("cpu")
        if not (Path(cfg.data_root) / "meta.json").exists():
            raise FileNotFoundError(f"{cfg.data_root}: no cpu benchmark; run make data first")
        ds = SceneDataset(cfg.data_root, "val", voxel_size=cfg.voxel_size)
        batch = collate([ds[i] for i in range(4)], cfg.voxel_size)
        return batch["voxel_coords"], batch["voxel_feats"]
    xyz = scene_of_voxels(voxels, seed)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(xyz), 1), np.int64), xyz], 1)).int()
    return coords, torch.rand(len(xyz), 3) * 2 - 1


def _layers(net: nn.Module, x) -> list[tuple[str, torch.Tensor, torch.Tensor, object]]:
    """``(kind, input feats, weight, kernel map or None)`` of every convolution and shortcut of
    one forward pass (the maps the layers built, from the tensor's coordinate manager)."""
    found = []

    def hook(kind):
        def record(module, args, output):
            inp = args[0]
            if kind == "linear (shortcut)":
                found.append((kind, inp.detach(), module.weight.detach().t().contiguous(), None))
                return
            if kind == "submanifold 3^3":
                kmap = torch_backend.submanifold_map(inp.manager, inp.stride, module.kernel_size)
            elif kind == "strided (down)":
                kmap = torch_backend.down_map(inp.manager, inp.stride)
            else:
                kmap = torch_backend.down_map(inp.manager, args[1].stride).transposed()
            found.append((kind, inp.feats.detach(), module.weight.detach(), kmap))
        return record

    handles = []
    for module in net.modules():
        kind = {sparse.SubMConv3d: "submanifold 3^3", sparse.DownConv3d: "strided (down)",
                sparse.UpConv3d: "transposed (up)"}.get(type(module))
        if kind is None and isinstance(module, nn.Linear):
            kind = "linear (shortcut)"
        if kind:
            handles.append(module.register_forward_hook(hook(kind)))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return found


def _layer_time(kind, feats, weight, kmap) -> float:
    """Forward + backward of one layer alone, on its own input and map."""
    feats = feats.clone().requires_grad_()
    weight = weight.clone().requires_grad_()

    def run():
        out = feats @ weight if kmap is None else torch_backend.GatherGemmScatter.apply(
            feats, weight, kmap)
        out.backward(torch.ones_like(out))
    return _median_time(run)


def _layer_flops(feats, weight, kmap) -> int:
    cin, cout = weight.shape[-2], weight.shape[-1]
    forward = 2 * len(feats) * cin * cout if kmap is None else kmap.flops(cin, cout)
    return 3 * forward


def roofline(voxels: int = 50_000, size: str = "small", real: bool = False,
             seed: int = 0) -> list[tuple[str, float, str]]:
    """The group's rows: ``(figure, value, unit)``."""
    torch.manual_seed(seed)
    coords, feats = step_inputs(voxels, real, seed)
    m = MODEL_SIZES[size].m
    net, head = SparseUNet(feats.shape[1], MODEL_SIZES[size]), nn.Linear(m, 20)
    labels = torch.randint(0, 20, (len(coords),))
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)

    def step():
        x = sparse.SparseTensor(coords, feats, backend="torch")
        loss = F.cross_entropy(head(net(x).feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step_s = _median_time(step)
    compiled = native.enabled and native.library() is not None and torch.get_num_threads() == 1
    if compiled:  # the same step with the torch ops alone, for the side-by-side figure
        native.enabled = False
        torch_ops_s = _median_time(step)
        native.enabled = True
    layers = _layers(net, sparse.SparseTensor(coords, feats, backend="torch"))
    per_kind = {k: [0, 0.0, 0] for k in KINDS}          # flops, seconds, layers
    pairs0 = None
    for kind, f, w, kmap in layers:
        per_kind[kind][0] += _layer_flops(f, w, kmap)
        per_kind[kind][1] += _layer_time(kind, f, w, kmap)
        per_kind[kind][2] += 1
        if pairs0 is None and kmap is not None:
            pairs0 = kmap.num_pairs() / kmap.n_in
    rates = {f"GEMM {n} x {k} x {c}": gemm_rate(n, k, c) for n, k, c in
             ((2048, 2048, 2048), (10_000, m, m), (10_000, 2 * m, 2 * m), (2_000, 4 * m, 4 * m))}
    peak = max(rates.values())
    rows = [("voxels", len(coords), "voxels"),
            ("pairs per voxel, finest submanifold map", pairs0, "pairs")]
    rows += [(name, rate, "GFLOP/s") for name, rate in rates.items()]
    rows.append(("GEMM peak (the best of the GEMMs above)", peak, "GFLOP/s"))
    total_flops = 0
    for kind, (flops, seconds, count) in per_kind.items():
        if not count:
            continue
        total_flops += flops
        rows += [(f"{kind}: {count} layers, fwd+bwd work", flops / 1e9, "GFLOP"),
                 (f"{kind}: time alone", seconds, "s"),
                 (f"{kind}: achieved", flops / seconds / 1e9, "GFLOP/s"),
                 (f"{kind}: share of GEMM peak", 100 * flops / seconds / 1e9 / peak, "%")]
    conv_s = sum(v[1] for v in per_kind.values())
    if compiled:
        rows += [(f"{size} step at {len(coords) // 1000}k voxels, torch ops only", torch_ops_s, "s"),
                 ("step: speed-up of the compiled kernels", torch_ops_s / step_s, "x"),
                 ("step with torch ops only: share of GEMM peak",
                  100 * total_flops / torch_ops_s / 1e9 / peak, "%")]
    rows += [(f"{size} step at {len(coords) // 1000}k voxels"
              + (", compiled kernels" if compiled else ""), step_s, "s"),
             ("step: convolutions alone", conv_s, "s"),
             ("step: convolution + shortcut work", total_flops / 1e9, "GFLOP"),
             ("step: achieved", total_flops / step_s / 1e9, "GFLOP/s"),
             ("step: share of GEMM peak", 100 * total_flops / step_s / 1e9 / peak, "%")]
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voxels", type=int, default=50_000)
    p.add_argument("--size", default="small", choices=sorted(MODEL_SIZES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--real", action="store_true", help="a 4-scene batch of the cpu benchmark")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    for figure, value, unit in roofline(a.voxels, a.size, a.real):
        print(f"{figure:52s} {value:10.4g} {unit}")


if __name__ == "__main__":
    main()
