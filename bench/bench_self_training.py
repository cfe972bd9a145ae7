"""Cost of TWIST's self-training (twist_lib.self_training) against a Sup-only step, on one machine.

    python bench/bench_self_training.py [--profile cpu] [--init CKPT] [--steps 5] [--scenes 16]
                                        [--threads 1] [--quick] [key=value ...]

``--profile`` and ``key=value`` build the config as ``python -m twist_lib`` does (profile
defaults, then overrides); the profile's synthetic dataset is generated if missing. ``--init``
loads Phi (and Psi, if the checkpoint has one) from a Sup-only checkpoint or run folder
(``RUN/checkpoints/final.pt``, else ``last.pt``); without it Phi and Psi are freshly built, so
module A sees an untrained Phi's predictions and the module-A / Psi / pseudo-label figures are
not those of a real round (pass ``--init runs/sup_cpu_5pct`` for those). ``--quick`` = 2 timed
steps and as few scenes as one step needs. Everything is written to a temporary folder.

Figures (one table, with the CPU model, torch threads and the load average, since the figures
depend on what else runs on the machine):

1. *pseudo-labelling*: scenes per second of :func:`~twist_lib.self_training.pseudo_label_split`
   (Phi + modules A, B, C, eval mode, no gradients, ``pseudo_batch_size`` scenes per forward,
   files written) over ``--scenes`` unlabelled scenes, after one warm-up batch on other scenes.
   Multiply by the unlabelled split's size for a round's step ii.
2. *one self-training step* (:class:`~twist_lib.self_training.RoundTrainer`, round 1, on
   ``batch_size`` labelled + ``unlabelled_batch_size`` scenes pseudo-labelled in 1; the unlabelled
   source draws only from those scenes), split as ``RoundTrainer.compute_losses`` and
   ``Trainer.train_step`` run it, each piece timed with ``time.perf_counter()`` and averaged over
   ``--steps`` steps after 2 warm-up steps:

   - data loading: the step's collated batch (``StepBatches(sources, step, step + 1)[0]``:
     augmentation, pseudo-label files read, voxelisation), moved to the device;
   - Phi forward + backward: Phi, ``split_phi_loss`` (L^l + L^u, eqs. 3-4) and its backward;
   - module A: :func:`~twist_lib.psi_training.training_samples` (clustering on the labelled
     scenes plus ground-truth samples);
   - Psi forward + backward: :func:`~twist_lib.psi_training.augment_and_score` (mutation,
     transformation, Psi, eq. 5 + L_sem) and its backward;
   - optimiser step: the finite-loss check and both SGD steps (plus the poly learning rate).

   ``train_step`` runs one backward of ``L^Phi + L^Psi``; here the two terms are back-propagated
   separately (the same gradients: Psi's input features are detached unless ``psi_backprop``,
   in which case Psi's backward also reaches Phi). The check row times the unmodified
   ``RoundTrainer.train_step`` (plus loading) over the same number of steps, for comparison
   with the sum of the pieces.
3. *one Sup-only step* (:class:`~twist_lib.trainer.Trainer`, same config and Phi): loading,
   forward + backward (eq. 1), optimiser step; and the ratio self-training step / Sup-only step.
   A self-training step sees twice the scenes (labelled + unlabelled) plus module A and Psi; the
   goal is a ratio of at most 2.2.

Scenes are loaded into the datasets' in-memory caches before timing (as after the first epoch),
so data loading is augmentation + voxelisation (+ reading pseudo-label files), not disk reads of
the scenes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from twist_lib.config import Config
from twist_lib.data.dataset import SceneDataset
from twist_lib.data.ensure import ensure_dataset
from twist_lib.losses import split_phi_loss
from twist_lib.network import build_model
from twist_lib.pseudo_labels import pseudo_label_path
from twist_lib.psi_training import augment_and_score, build_psi, psi_features, training_samples
from twist_lib.self_training import RoundTrainer, _previous_models, pseudo_label_split
from twist_lib.trainer import StepBatches, Trainer, load_weights, poly_lr, resolve_device

WARMUP = 2
GOAL_RATIO = 2.2


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_checkpoint(path: str) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/final.pt`` (else ``last.pt``)."""
    p = Path(path)
    if p.is_dir():
        for name in ("final.pt", "last.pt"):
            if (p / "checkpoints" / name).exists():
                return p / "checkpoints" / name
        raise FileNotFoundError(f"{p}: no checkpoints/final.pt or checkpoints/last.pt")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    return p


def has_psi(ckpt: Path) -> bool:
    return "psi" in torch.load(ckpt, map_location="cpu", weights_only=False).get("modules", {})


class Clock:
    """Accumulates ``time.perf_counter()`` intervals per named piece (synchronising CUDA)."""

    def __init__(self, device: torch.device):
        self.device, self.times, self._t = device, {}, None

    def start(self) -> None:
        self._sync()
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.times.setdefault(name, []).append(now - self._t)
        self._t = now

    def mean(self, name: str) -> float:
        return statistics.fmean(self.times[name])

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def warm_caches(trainer: Trainer, stop: int) -> None:
    """Load every scene steps ``0..stop-1`` use into its dataset's in-memory cache."""
    for dataset, stream in trainer.sources:
        for step in range(stop):
            for i in stream.batch_at(step)[1]:
                dataset._stored(i)


def set_lr(trainer: Trainer) -> None:
    factor = poly_lr(trainer.step, trainer.total_steps, trainer.cfg.poly_power)
    for opt in trainer.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * factor


def check_finite(trainer: Trainer, loss) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{trainer.stage}, step {trainer.step}: loss is {loss.item()}")


# ---------------------------------------------------------------------------------- figure 1

def pseudo_label_models(cfg: Config, meta: dict, init: Path | None, tmp: Path):
    """Phi and Psi in eval mode (from ``init`` as a round builds them, else fresh), the
    unlabelled split and the device."""
    if init is not None and has_psi(init):
        return _previous_models(cfg, init, tmp)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    phi = build_model(cfg, meta).to(device)
    if init is not None:
        load_weights(phi, init, map_location=device, name="phi")
    psi = build_psi(cfg, meta, phi.size.m).to(device)
    dataset = SceneDataset(cfg.data_root, "unlabelled", label_ratio=cfg.label_ratio,
                           voxel_size=cfg.voxel_size, use_xyz_features=cfg.use_xyz_features)
    return phi.eval(), psi.eval(), dataset, meta, device


def bench_pseudo_labelling(cfg, meta, init, scenes: int, pseudo_dir: Path, tmp: Path) -> dict:
    phi, psi, dataset, meta, device = pseudo_label_models(cfg, meta, init, tmp)
    names = list(dataset.names)
    if len(names) < scenes:
        raise SystemExit(f"--scenes {scenes}: the unlabelled split has only {len(names)} scenes")
    warm = names[scenes:scenes + cfg.pseudo_batch_size] or names[:cfg.pseudo_batch_size]
    dataset.names = warm  # warm-up batch on other scenes (when there are any), thrown away
    pseudo_label_split(phi, psi, dataset, tmp / "pseudo_warmup", cfg, meta, device)
    dataset.names = names[:scenes]
    for i in range(scenes):  # scenes read from the in-memory cache, as for training
        dataset._stored(i)
    clock = Clock(device)
    clock.start()
    n = pseudo_label_split(phi, psi, dataset, pseudo_dir, cfg, meta, device)
    clock.lap("pseudo")
    seconds = clock.mean("pseudo")
    return {"scenes": n, "seconds": seconds, "names": set(dataset.names)}


# ---------------------------------------------------------------------------------- figure 2

class BenchRoundTrainer(RoundTrainer):
    """A round whose unlabelled source draws only from the scenes pseudo-labelled here."""

    def build_datasets(self) -> dict:
        datasets = super().build_datasets()
        unl = datasets["unlabelled"]
        unl.names = [n for n in unl.names if pseudo_label_path(self.pseudo_dir, n).exists()]
        return datasets


def self_training_step(trainer: RoundTrainer, clock: Clock, stats: dict) -> None:
    """One step of ``RoundTrainer.train_step`` with its pieces timed (module docstring)."""
    cfg, phi, psi = trainer.cfg, trainer.models["phi"], trainer.models["psi"]
    use_amp = cfg.amp and trainer.device.type == "cuda"
    clock.start()
    batch = to_device(StepBatches(trainer.sources, trainer.step, trainer.step + 1)[0],
                      trainer.device)
    clock.lap("load")
    for opt in trainer.optimizers.values():
        opt.zero_grad(set_to_none=True)
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=use_amp):
        out = phi(batch)
        losses = split_phi_loss(out, batch)
    losses["loss"].backward(retain_graph=cfg.psi_backprop)
    clock.lap("phi")
    generator = torch.Generator().manual_seed(hash((cfg.seed, trainer.round, trainer.step))
                                              % (2 ** 63))
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=use_amp):
        samples = training_samples(batch, out, cfg, trainer.background, generator)
    clock.lap("module_a")
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=use_amp):
        feats = psi_features(cfg, batch, out)
        psi_terms = augment_and_score(psi, samples, batch, feats, cfg, generator)
    psi_terms["loss"].backward()
    clock.lap("psi")
    set_lr(trainer)
    check_finite(trainer, losses["loss"] + psi_terms["loss"].detach())
    for opt in trainer.optimizers.values():
        opt.step()
    trainer.step += 1
    clock.lap("opt")
    stats.setdefault("points", []).append(len(batch["xyz"]))
    stats.setdefault("psi_samples", []).append(psi_terms["psi_samples"])
    stats.setdefault("module_a", []).append(samples.n)


def plain_step(trainer: Trainer, clock: Clock, name: str) -> None:
    """``trainer.train_step`` as it is, plus loading (the check row)."""
    clock.start()
    batch = to_device(StepBatches(trainer.sources, trainer.step, trainer.step + 1)[0],
                      trainer.device)
    trainer.train_step(batch)
    clock.lap(name)


# ---------------------------------------------------------------------------------- figure 3

def sup_only_step(trainer: Trainer, clock: Clock, stats: dict) -> None:
    """One step of ``Trainer.train_step`` (eq. 1) with its pieces timed."""
    use_amp = trainer.cfg.amp and trainer.device.type == "cuda"
    clock.start()
    batch = to_device(StepBatches(trainer.sources, trainer.step, trainer.step + 1)[0],
                      trainer.device)
    clock.lap("load")
    set_lr(trainer)
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=use_amp):
        losses = trainer.compute_losses(batch)
    check_finite(trainer, losses["loss"])
    for opt in trainer.optimizers.values():
        opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    clock.lap("phi")
    for opt in trainer.optimizers.values():
        opt.step()
    trainer.step += 1
    clock.lap("opt")
    stats.setdefault("points", []).append(len(batch["xyz"]))


# ---------------------------------------------------------------------------------- main

def measure(profile: str = "cpu", init_arg: str = "", n_steps: int = 5, n_scenes: int = 16,
            quick: bool = False, threads: int = 1, overrides=()) -> dict:
    """Run the three figures (module docstring) and return ``{"rows": [(figure, value, note)],
    "figures": {name: seconds or rate}, "device": torch.device}``; ``main`` prints the rows.
    Sets torch's CPU threads to ``threads``."""
    torch.set_num_threads(threads)
    init = resolve_checkpoint(init_arg) if init_arg else None
    steps = 2 if quick else n_steps
    with tempfile.TemporaryDirectory(prefix="bench_self_training_") as tmp:
        tmp = Path(tmp)
        cfg = Config.from_sources(profile=profile, overrides=[
            f"run_dir={tmp / 'run'}", "progress=false", f"cpu_threads={threads}",
            "val_every=0", *overrides]).validate()
        meta = ensure_dataset(cfg)
        scenes = cfg.unlabelled_batch if quick else max(n_scenes, cfg.unlabelled_batch)
        if scenes != n_scenes and not quick:
            print(f"--scenes raised to {scenes}: a step takes unlabelled_batch_size scenes")
        pseudo_dir = tmp / "round_1" / "pseudo"

        # 1. pseudo-labelling throughput
        pl = bench_pseudo_labelling(cfg, meta, init, scenes, pseudo_dir, tmp)

        # 2. one self-training step, in pieces; then train_step as it is
        st = BenchRoundTrainer(cfg, 1, tmp / "round_1", pseudo_dir=pseudo_dir, init_from=init,
                               steps=WARMUP + 2 * steps)
        warm_caches(st, WARMUP + 2 * steps)
        for m in st.models.values():
            m.train()
        st_clock, st_stats = Clock(st.device), {}
        for k in range(WARMUP + steps):
            self_training_step(st, st_clock, st_stats)
            if k == WARMUP - 1:
                st_clock.times, st_stats = {}, {}
        for _ in range(steps):
            plain_step(st, st_clock, "train_step")

        # 3. one Sup-only step
        sup = Trainer(cfg, run_dir=tmp / "sup")
        if init is not None:
            load_weights(sup.models["phi"], init, map_location=sup.device, name="phi")
        warm_caches(sup, WARMUP + steps)
        sup.model.train()
        sup_clock, sup_stats = Clock(sup.device), {}
        for k in range(WARMUP + steps):
            sup_only_step(sup, sup_clock, sup_stats)
            if k == WARMUP - 1:
                sup_clock.times, sup_stats = {}, {}

    st_pieces = ("load", "phi", "module_a", "psi", "opt")
    st_total = sum(st_clock.mean(k) for k in st_pieces)
    sup_total = sum(sup_clock.mean(k) for k in ("load", "phi", "opt"))
    ratio = st_total / sup_total
    mean = statistics.fmean
    rows = [
        ("machine", cpu_model(), f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
         f", load avg {os.getloadavg()[0]:.1f}, device {st.device}"),
        ("config", f"profile {cfg.profile}", f"model {cfg.model_size}, voxel {cfg.voxel_size} m, "
         f"batch {cfg.batch_size} labelled + {cfg.unlabelled_batch} unlabelled, backend "
         f"{st.models['phi'].backend}"),
        ("Phi / Psi", str(init) if init else "freshly built (untrained)",
         "Psi from the checkpoint" if init is not None and has_psi(init) else "Psi fresh"),
        ("1. pseudo-labelling", f"{pl['scenes'] / pl['seconds']:.2f} scenes/s",
         f"{pl['scenes']} scenes in {pl['seconds']:.2f} s, {cfg.pseudo_batch_size} per forward"),
        ("2. self-training step", "", f"mean of {steps} steps after {WARMUP} warm-up; "
         f"{mean(st_stats['points']):.0f} points/step"),
        ("   data loading", f"{st_clock.mean('load'):.3f} s", ""),
        ("   Phi fwd+bwd (L^l+L^u)", f"{st_clock.mean('phi'):.3f} s", ""),
        ("   module A", f"{st_clock.mean('module_a'):.3f} s",
         f"{mean(st_stats['module_a']):.0f} samples (proposals + GT, capped)"),
        ("   Psi fwd+bwd", f"{st_clock.mean('psi'):.3f} s",
         f"{mean(st_stats['psi_samples']):.0f} samples after mutation"),
        ("   optimiser step", f"{st_clock.mean('opt'):.3f} s", "Phi + Psi SGD"),
        ("   total", f"{st_total:.3f} s", ""),
        ("   check: train_step as is", f"{st_clock.mean('train_step'):.3f} s",
         f"loading + RoundTrainer.train_step, {steps} more steps"),
        ("3. Sup-only step", "", f"{mean(sup_stats['points']):.0f} points/step"),
        ("   data loading", f"{sup_clock.mean('load'):.3f} s", ""),
        ("   Phi fwd+bwd (eq. 1)", f"{sup_clock.mean('phi'):.3f} s", ""),
        ("   optimiser step", f"{sup_clock.mean('opt'):.3f} s", ""),
        ("   total", f"{sup_total:.3f} s", ""),
        ("ratio self / Sup-only", f"{ratio:.2f}x",
         f"goal <= {GOAL_RATIO}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'}"),
    ]
    figures = {
        "pseudo_label_scenes_per_s": pl["scenes"] / pl["seconds"],
        **{f"self_training_{k}_s": st_clock.mean(k) for k in st_pieces},
        "self_training_total_s": st_total,
        "self_training_train_step_s": st_clock.mean("train_step"),
        "psi_samples_per_step": mean(st_stats["psi_samples"]),
        "sup_only_total_s": sup_total,
        "ratio_self_over_sup": ratio,
    }
    return {"rows": rows, "figures": figures, "device": st.device}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", help="config profile (smoke | cpu | gpu)")
    p.add_argument("--init", default="", help="Sup-only checkpoint or run folder to load Phi "
                   "(and Psi, if there) from; default: freshly built models")
    p.add_argument("--steps", type=int, default=5, help=f"timed steps (after {WARMUP} warm-up)")
    p.add_argument("--scenes", type=int, default=16, help="unlabelled scenes to pseudo-label")
    p.add_argument("--quick", action="store_true", help="2 timed steps, the fewest scenes")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("overrides", nargs="*", help="config key=value overrides")
    a = p.parse_args()
    rows = measure(a.profile, a.init, a.steps, a.scenes, a.quick, a.threads, a.overrides)["rows"]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'figure':<{w0}}  {'value':<{w1}}  notes")
    print("-" * (w0 + w1 + 40))
    for name, value, note in rows:
        print(f"{name:<{w0}}  {value:<{w1}}  {note}".rstrip())


if __name__ == "__main__":
    main()
