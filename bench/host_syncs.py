"""Host synchronisations of one self-training step, per stage: the CUDA-path audit.

On a GPU, every op whose result the host must read before it can go on (``.item()``,
``.tolist()``, ``bool(t)``, ``int(t)``, a copy to the host, a boolean-mask index, ``nonzero``,
``unique``, ``bincount``, ``repeat_interleave`` without ``output_size``) waits for all the work
queued before it. A few per step are harmless; one per point or per proposal serialises the GPU.
This script counts those calls with a ``TorchFunctionMode`` while it runs the stages of one
self-training step: Phi (forward, eqs. 3-4, backward), module A with Psi's training samples,
Psi (features, augmentations, eq. 5, backward) and module C (a batch's pseudo labels, eqs. 6-8).
The calls a code path makes do not depend on the device, so a CPU run audits the CUDA path, with
module A forced onto its torch solver, grid search and torch step 1 (as on CUDA).

The rule it checks: a stage makes the same number of host syncs on a batch with few objects as
on one with many (per scene and per layer is fine; per point or per proposal is not). Module A
and module C run on oracle outputs (true classes, true offsets), so their proposals are the true
objects and their number is known.

    OMP_NUM_THREADS=1 python bench/host_syncs.py [--data DIR] [--scenes 2]

(``--data``: a prepared dataset folder, default the smoke profile's synthetic benchmark,
generated if missing.) ``tests/test_host_syncs.py`` runs the same audit on the test scenes.
"""
from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twist_lib import neighbour_graph, proposals  # noqa: E402
from twist_lib.clustering import semantic_bfs  # noqa: E402
from twist_lib.config import Config  # noqa: E402
from twist_lib.data.batch import collate  # noqa: E402
from twist_lib.data.dataset import SceneDataset  # noqa: E402
from twist_lib.losses import split_phi_loss  # noqa: E402
from twist_lib.network import build_model  # noqa: E402
from twist_lib.proposals import background_classes  # noqa: E402
from twist_lib.psi_training import augment_and_score, training_samples  # noqa: E402
from twist_lib.recorrection import build_psi, psi_features  # noqa: E402
from twist_lib.self_training import label_batch  # noqa: E402

SYNC_OPS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
            "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "bincount"}
STAGES = ("phi", "module_a", "psi", "module_c")


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


class HostSyncCounter(TorchFunctionMode):
    """Counts, by op name, the torch calls that make the host wait for the device (module
    docstring); ``bool-mask index`` counts indexing with a boolean tensor (it runs ``nonzero``),
    ``to(cpu)`` a copy to the host, ``repeat_interleave`` one without ``output_size``."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name in SYNC_OPS:
            self.counts[name] += 1
        elif name in ("__getitem__", "__setitem__", "index_put_", "index_put") and _bool_index(args):
            self.counts["bool-mask index"] += 1
        elif name == "to" and _to_host(args, kwargs):
            self.counts["to(cpu)"] += 1
        elif name == "repeat_interleave" and "output_size" not in kwargs:
            if len(args) < 2 or isinstance(args[1], torch.Tensor):
                self.counts["repeat_interleave"] += 1
        return func(*args, **kwargs)


def _bool_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, (tuple, list)) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _to_host(args, kwargs) -> bool:
    device = kwargs.get("device", args[1] if len(args) > 1 else None)
    return isinstance(device, (str, torch.device)) and torch.device(device).type == "cpu"


@contextmanager
def cuda_choices():
    """Module A as it runs on CUDA: the torch solver and the grid search (``auto`` on a GPU),
    with step 1 in torch (on the CPU it runs in NumPy)."""
    real = proposals.semantic_bfs
    proposals.semantic_bfs = functools.partial(semantic_bfs, backend="torch", search="grid")
    neighbour_graph._NUMPY_ON_CPU = False
    try:
        yield
    finally:
        proposals.semantic_bfs = real
        neighbour_graph._NUMPY_ON_CPU = True


def oracle_outputs(batch: dict, features: torch.Tensor, num_classes: int) -> dict:
    """Phi's outputs as a perfect network would give them: the true class with certainty and
    the true offsets, so module A's proposals are the true objects."""
    semantic = batch["semantic"].clamp(min=0)
    logits = 10.0 * torch.nn.functional.one_hot(semantic, num_classes).float()
    offset = torch.where(batch["offset_valid"][:, None], batch["offset"], torch.zeros_like(batch["offset"]))
    return {"semantic_logits": logits, "offset": offset, "features": features.detach()}


def count_stages(cfg: Config, batch: dict, phi, psi, meta: dict) -> dict:
    """``{stage: Counter of sync ops}`` for one step on ``batch``, plus ``"proposals"``: how
    many proposals module A formed on the oracle outputs."""
    background, counts = background_classes(meta), {}
    generator = torch.Generator().manual_seed(0)
    with HostSyncCounter() as c:
        out = phi(batch)
        split_phi_loss(out, batch)["loss"].backward()
    counts["phi"] = c.counts
    oracle = oracle_outputs(batch, out["features"], len(meta["class_names"]))
    with cuda_choices():
        with HostSyncCounter() as c:
            samples = training_samples(batch, oracle, cfg, background, generator)
        counts["module_a"] = c.counts
        with HostSyncCounter() as c:
            terms = augment_and_score(psi, samples, batch, psi_features(cfg, batch, oracle), cfg,
                                      generator)
            terms["loss"].backward()
        counts["psi"] = c.counts
        with HostSyncCounter() as c:
            labels = list(label_batch(lambda _: oracle, psi.eval(), batch, cfg, meta, background))
        counts["module_c"] = c.counts
    counts["proposals"] = samples.n
    counts["pseudo_instances"] = sum(int(v["instance"].max()) + 1 for _, v in labels)
    return counts


def batches_by_objects(dataset: SceneDataset, cfg: Config, scenes: int = 2):
    """Two batches of ``scenes`` scenes: the ones with the fewest and the most objects."""
    loaded = [dataset[i] for i in range(len(dataset))]
    loaded.sort(key=lambda sc: len(np.unique(sc["instance"][sc["instance"] >= 0])))
    out = {}
    for key, chosen in (("few", loaded[:scenes]), ("many", loaded[-scenes:])):
        batch = collate(chosen, cfg.voxel_size, cfg.use_xyz_features)
        batch["labelled"] = torch.tensor([b % 2 == 0 for b in range(scenes)])  # L^l and L^u
        out[key] = batch
    return out


def audit(data_root, profile: str = "smoke", scenes: int = 2, **overrides) -> dict:
    """The audit on ``data_root``'s train split: ``{"few": counts, "many": counts}``."""
    torch.manual_seed(0)
    cfg = Config.for_profile(profile, data_root=str(data_root), **overrides)
    dataset = SceneDataset(cfg.data_root, "train", voxel_size=cfg.voxel_size,
                           use_xyz_features=cfg.use_xyz_features)
    meta = dataset.meta
    phi = build_model(cfg, meta)
    psi = build_psi(cfg, meta, phi.size.m)
    return {key: count_stages(cfg, batch, phi, psi, meta)
            for key, batch in batches_by_objects(dataset, cfg, scenes).items()}


def report(result: dict) -> str:
    few, many = result["few"], result["many"]
    lines = [f"proposals (module A on oracle outputs): few {few['proposals']}, many {many['proposals']}",
             "| stage | host syncs, few objects | host syncs, many objects | ops (many) |",
             "|---|---:|---:|---|"]
    for stage in STAGES:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(many[stage].items()))
        lines.append(f"| {stage} | {sum(few[stage].values())} | {sum(many[stage].values())} | {ops} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="", help="prepared dataset (default: the smoke benchmark)")
    p.add_argument("--scenes", type=int, default=2, help="scenes per batch")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = args.data
    if not data:
        from twist_lib.data.ensure import ensure_dataset
        cfg = Config.for_profile("smoke")
        ensure_dataset(cfg)
        data = cfg.data_root
    result = audit(data, scenes=args.scenes)
    print(report(result))
    grows = [s for s in STAGES if sum(result["few"][s].values()) != sum(result["many"][s].values())]
    print("stages whose syncs depend on the objects: " + (", ".join(grows) if grows else "none"))


if __name__ == "__main__":
    main()
