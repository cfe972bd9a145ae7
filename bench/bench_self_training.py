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
2. *one self-training step*: the real :meth:`Trainer.fit` of a
   :class:`~twist_lib.self_training.RoundTrainer` (round 1, on ``batch_size`` labelled +
   ``unlabelled_batch_size`` scenes pseudo-labelled in 1; the unlabelled source draws only from
   those scenes) with no hooks but the bench's: a :class:`~twist_lib.hooks.StepTimer` (the wait
   for each batch and each ``train_step``, synchronising CUDA) and :class:`PartTimes`, which
   splits the real ``train_step`` by timing the calls it makes (wrapped for the timed steps,
   never a copy of the step's code). Means over ``--steps`` steps after 2 warm-up steps:

   - data loading: the wait for the step's batch in ``fit`` (``Trainer.batches``: augmentation,
     pseudo-label files read, voxelisation, the copy to the device; in this process unless
     ``num_workers`` is set);
   - Phi forward + backward: ``compute_losses`` less module A and Psi's forward (Phi and
     ``split_phi_loss``, L^l + L^u, eqs. 3-4), plus the backward from the end of Psi's (the last
     gradient of a Psi parameter) to the first optimizer step;
   - module A: :func:`~twist_lib.psi_training.training_samples` (clustering on the labelled
     scenes plus ground-truth samples), as ``compute_losses`` calls it;
   - Psi forward + backward: ``psi_features`` and
     :func:`~twist_lib.psi_training.augment_and_score` (mutation, transformation, Psi, eq. 5 +
     L_sem), plus the backward until the last Psi parameter has its gradient. ``train_step``
     runs one backward of ``L^Phi + L^Psi``; autograd runs the newer nodes first, so Psi's part
     (built after Phi's) is done before Phi's starts — checked on every step (the note says so);
   - optimiser step: the rest of ``train_step``: the poly learning rate, both SGD steps, the
     losses read back.

   The check row is ``fit`` over ``--steps`` more steps with the StepTimer alone (loading +
   ``train_step``, nothing wrapped), for comparison with the sum of the pieces.
3. *one Sup-only step* (:class:`~twist_lib.trainer.Trainer`'s ``fit``, same config and Phi, the
   same hooks): loading, forward + backward (eq. 1), optimiser step; and the ratio
   self-training step / Sup-only step. A self-training step sees twice the scenes (labelled +
   unlabelled) plus module A and Psi; the goal is a ratio of at most 2.2.

Scenes are loaded into the datasets' in-memory caches before timing (as after the first epoch),
so data loading is augmentation + voxelisation (+ reading pseudo-label files), not disk reads of
the scenes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import twist_lib.self_training as self_training
from twist_lib.checkpoints import has_module, load_weights
from twist_lib.config import Config
from twist_lib.data.dataset import SceneDataset
from twist_lib.data.ensure import ensure_dataset
from twist_lib.data.pseudo_files import pseudo_label_path
from twist_lib.hooks import HookBase, StepTimer
from twist_lib.network import build_model
from twist_lib.recorrection import build_psi
from twist_lib.self_training import RoundTrainer, previous_models, pseudo_label_split
from twist_lib.trainer import Trainer, resolve_device

WARMUP = 2
GOAL_RATIO = 2.2
# what RoundTrainer.compute_losses calls, by its names in twist_lib.self_training
MODULE_A_CALLS = ("training_samples",)
PSI_CALLS = ("psi_features", "augment_and_score")


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_caches(trainer: Trainer, stop: int) -> None:
    """Load every scene steps ``0..stop-1`` use into its dataset's in-memory cache."""
    for dataset, stream in trainer.sources:
        for step in range(stop):
            for i in stream.batch_at(step)[1]:
                dataset._stored(i)


# ---------------------------------------------------------------------------------- figure 1

def pseudo_label_models(cfg: Config, meta: dict, init: Path | None):
    """Phi and Psi in eval mode (from ``init`` as a round builds them, else fresh), the
    unlabelled split and the device."""
    if init is not None and has_module(init, "psi"):
        return previous_models(cfg, init)
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
    phi, psi, dataset, meta, device = pseudo_label_models(cfg, meta, init)
    names = list(dataset.names)
    if len(names) < scenes:
        raise SystemExit(f"--scenes {scenes}: the unlabelled split has only {len(names)} scenes")
    warm = names[scenes:scenes + cfg.pseudo_batch_size] or names[:cfg.pseudo_batch_size]
    dataset.names = warm  # warm-up batch on other scenes (when there are any), thrown away
    pseudo_label_split(phi, psi, dataset, tmp / "pseudo_warmup", cfg, meta, device)
    dataset.names = names[:scenes]
    for i in range(scenes):  # scenes read from the in-memory cache, as for training
        dataset._stored(i)
    sync(device)
    start = time.perf_counter()
    n = pseudo_label_split(phi, psi, dataset, pseudo_dir, cfg, meta, device)
    sync(device)
    return {"scenes": n, "seconds": time.perf_counter() - start, "names": set(dataset.names)}


# ------------------------------------------------------------------------- figures 2 and 3

class PartTimes(HookBase):
    """Splits the real ``train_step`` of the first ``steps`` steps of ``fit`` into the parts of
    the module docstring, by timing (``time.perf_counter()``, synchronising CUDA) the calls it
    makes: ``trainer.compute_losses``; module A's and Psi's functions as ``compute_losses`` finds
    them in :mod:`twist_lib.self_training`; the gradients of Psi's and Phi's parameters as
    backward accumulates them; the optimizers' ``step``. The wrappers are removed after those
    steps. ``records``: one dict per step (seconds per part, points, module A samples)."""

    def __init__(self, steps: int):
        self.steps, self.records, self._undo = steps, [], []

    def before_train(self) -> None:
        t = self.trainer
        self._wrap(t, "compute_losses", "forward")
        if "psi" in t.models:
            for name in MODULE_A_CALLS:
                self._wrap(self_training, name, "module_a")
            for name in PSI_CALLS:
                self._wrap(self_training, name, "psi_fwd")
            self._grad_hooks(t.models["psi"], "psi_grad_last", last=True)
        self._grad_hooks(t.models["phi"], "phi_grad_first", last=False)
        for opt in t.optimizers.values():
            self._undo.append(opt.register_step_pre_hook(lambda *a: self._mark("opt_start")).remove)

    def before_step(self) -> None:
        self._now = {"module_a": 0.0, "psi_fwd": 0.0}
        self._mark("start")

    def after_step(self) -> None:
        if not self._undo:
            return
        self._mark("end")
        self._now["psi_samples"] = self.trainer.last_losses.get("psi_samples", 0)
        self.records.append(self._parts(self._now))
        if len(self.records) == self.steps:
            self.after_train()

    def after_train(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _mark(self, key: str, first: bool = True) -> None:
        if first and key in self._now:
            return
        sync(self.trainer.device)
        self._now[key] = time.perf_counter()

    def _wrap(self, owner, name: str, part: str) -> None:
        """Replace ``owner.name`` with a timed call of itself (an instance attribute on the
        trainer, a module attribute on twist_lib.self_training) until ``after_train``."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            sync(self.trainer.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            sync(self.trainer.device)
            end = time.perf_counter()
            self._now[part] = self._now.get(part, 0.0) + end - start
            self._now[f"{part}_end"] = end
            if part == "forward":
                self._now["points"] = len(args[0]["xyz"])
            elif part == "module_a":
                self._now["module_a_samples"] = out.n
            return out

        setattr(owner, name, timed)
        on_trainer = owner is self.trainer
        self._undo.append(lambda: delattr(owner, name) if on_trainer
                          else setattr(owner, name, original))

    def _grad_hooks(self, module, key: str, last: bool) -> None:
        for param in module.parameters():
            if param.requires_grad:
                hook = param.register_post_accumulate_grad_hook(
                    lambda _p: self._mark(key, first=not last))
                self._undo.append(hook.remove)

    @staticmethod
    def _parts(now: dict) -> dict:
        psi_end = now.get("psi_grad_last", now["forward_end"])
        fwd_phi = now["forward"] - now["module_a"] - now["psi_fwd"]
        return {"phi": fwd_phi + now["opt_start"] - psi_end, "module_a": now["module_a"],
                "psi": now["psi_fwd"] + psi_end - now["forward_end"],
                "opt": now["end"] - now["start"] - now["forward"] - now["opt_start"]
                + now["forward_end"],
                "psi_first": now.get("phi_grad_first", psi_end) >= psi_end,
                **{k: now.get(k, 0) for k in ("points", "module_a_samples", "psi_samples")}}


class BenchRoundTrainer(RoundTrainer):
    """A round whose unlabelled source draws only from the scenes pseudo-labelled here, and whose
    ``fit`` runs the bench's hooks alone (no log, validation or checkpoints)."""

    def build_datasets(self) -> dict:
        datasets = super().build_datasets()
        unl = datasets["unlabelled"]
        unl.names = [n for n in unl.names if pseudo_label_path(self.pseudo_dir, n).exists()]
        return datasets

    def build_hooks(self) -> list:
        return []


class BenchTrainer(Trainer):
    """The Sup-only trainer, its ``fit`` running the bench's hooks alone."""

    def build_hooks(self) -> list:
        return []


def timed_fit(trainer: Trainer, parts: int) -> tuple[StepTimer, PartTimes]:
    """``trainer.fit()`` with a StepTimer (first, synchronising CUDA) and PartTimes for the
    first ``parts`` steps; the caches of all its steps' scenes are filled first."""
    warm_caches(trainer, trainer.total_steps)
    timer, pieces = StepTimer(sync=True), PartTimes(parts)
    trainer.register_hooks([timer, pieces])
    trainer.fit()
    return timer, pieces


def step_figures(timer: StepTimer, pieces: PartTimes, steps: int) -> dict:
    """Means over the ``steps`` steps after the warm-up: the parts (``load`` = the batch wait),
    their ``total``, points, module A and Psi samples per step, and ``check`` = the mean loading +
    ``train_step`` of the steps after those, when the fit ran any."""
    records = pieces.records[WARMUP:]
    mean = statistics.fmean
    out = {k: mean(r[k] for r in records) for k in ("phi", "module_a", "psi", "opt", "points",
                                                     "module_a_samples", "psi_samples")}
    out["load"] = mean(timer.data_s[WARMUP:WARMUP + steps])
    out["total"] = out["load"] + sum(out[k] for k in ("phi", "module_a", "psi", "opt"))
    out["psi_first"] = all(r["psi_first"] for r in records)
    check = timer.total_s[WARMUP + steps:]
    out["check"] = mean(check) if check else float("nan")
    return out


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

        # 2. self-training steps: fit, its parts timed, then as it is (the check row)
        st = BenchRoundTrainer(cfg, 1, tmp / "round_1", pseudo_dir=pseudo_dir, init_from=init,
                               steps=WARMUP + 2 * steps)
        self_fig = step_figures(*timed_fit(st, WARMUP + steps), steps)

        # 3. Sup-only steps
        # as many steps as the round above: the profile's own `steps` (2000 at cpu) would
        # train a whole Sup-only run inside the bench
        sup = BenchTrainer(dataclasses.replace(cfg, steps=WARMUP + 2 * steps), run_dir=tmp / "sup")
        if init is not None:
            load_weights(sup.models["phi"], init, map_location=sup.device, name="phi")
        sup_fig = step_figures(*timed_fit(sup, WARMUP + steps), steps)
    return {"rows": table_rows(cfg, init, pl, st, steps, self_fig, sup_fig),
            "figures": figures(pl, self_fig, sup_fig), "device": st.device}


def table_rows(cfg, init, pl, st, steps, f, s) -> list:
    """The printed table: machine, config, then the three figures."""
    ratio = f["total"] / s["total"]
    psi_note = ("Psi from the checkpoint" if init is not None and has_module(init, "psi")
                else "Psi fresh")
    return [
        ("machine", cpu_model(), f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
         f", load avg {os.getloadavg()[0]:.1f}, device {st.device}"),
        ("config", f"profile {cfg.profile}", f"model {cfg.model_size}, voxel {cfg.voxel_size} m, "
         f"batch {cfg.batch_size} labelled + {cfg.unlabelled_batch} unlabelled, backend "
         f"{st.models['phi'].backend}, num_workers {cfg.num_workers}"),
        ("Phi / Psi", str(init) if init else "freshly built (untrained)", psi_note),
        ("1. pseudo-labelling", f"{pl['scenes'] / pl['seconds']:.2f} scenes/s",
         f"{pl['scenes']} scenes in {pl['seconds']:.2f} s, {cfg.pseudo_batch_size} per forward"),
        ("2. self-training step", "", f"RoundTrainer.fit, mean of {steps} steps after {WARMUP} "
         f"warm-up; {f['points']:.0f} points/step"),
        ("   data loading", f"{f['load']:.3f} s", "the wait for the batch in fit"),
        ("   Phi fwd+bwd (L^l+L^u)", f"{f['phi']:.3f} s", ""),
        ("   module A", f"{f['module_a']:.3f} s",
         f"{f['module_a_samples']:.0f} samples (proposals + GT, capped)"),
        ("   Psi fwd+bwd", f"{f['psi']:.3f} s", f"{f['psi_samples']:.0f} samples after mutation; "
         f"Psi's backward before Phi's: {'yes' if f['psi_first'] else 'NO (split approximate)'}"),
        ("   optimiser step", f"{f['opt']:.3f} s", "Phi + Psi SGD, lr, losses read back"),
        ("   total", f"{f['total']:.3f} s", ""),
        ("   check: train_step as is", f"{f['check']:.3f} s",
         f"loading + RoundTrainer.train_step, {steps} more steps, nothing wrapped"),
        ("3. Sup-only step", "", f"Trainer.fit; {s['points']:.0f} points/step"),
        ("   data loading", f"{s['load']:.3f} s", ""),
        ("   Phi fwd+bwd (eq. 1)", f"{s['phi']:.3f} s", ""),
        ("   optimiser step", f"{s['opt']:.3f} s", ""),
        ("   total", f"{s['total']:.3f} s", ""),
        ("ratio self / Sup-only", f"{ratio:.2f}x",
         f"goal <= {GOAL_RATIO}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'}"),
    ]


def figures(pl, f, s) -> dict:
    """The figures ``bench/run.py`` tabulates."""
    return {
        "pseudo_label_scenes_per_s": pl["scenes"] / pl["seconds"],
        **{f"self_training_{k}_s": f[k] for k in ("load", "phi", "module_a", "psi", "opt",
                                                  "total")},
        "self_training_train_step_s": f["check"],
        "psi_samples_per_step": f["psi_samples"],
        "sup_only_total_s": s["total"],
        "ratio_self_over_sup": f["total"] / s["total"],
    }


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
