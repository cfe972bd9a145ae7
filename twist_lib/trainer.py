"""Training machinery: the Sup-only baseline Phi ("Sup-only", paper Sec. 3 and 5.1), and the
base class the self-training rounds extend (:mod:`twist_lib.self_training`).

A job is one :class:`~twist_lib.config.Config` and one run folder::

    RUN/config.yaml          the resolved config
    RUN/log.csv              one row per logged step: losses, learning rate, validation metrics
    RUN/checkpoints/last.pt  modules + optimizers + step, written atomically every ckpt_every steps
    RUN/checkpoints/final.pt the last step's state
    RUN/metrics.json         the final validation metrics

``Trainer(cfg).fit()`` trains; ``Trainer(cfg, resume=True).fit()`` continues a killed run from its
last checkpoint with the same step count, optimizer state and data order; ``resume="auto"``
resumes when the run folder has a checkpoint and starts fresh otherwise.

Under ``torchrun --nproc_per_node=N`` the same code trains data-parallel
(:mod:`twist_lib.distributed`): rank r takes scenes ``[r::N]`` of every step's batch, gradients
are averaged over the ranks after ``backward``, batch norm is per rank, and rank 0 alone
validates and writes the run folder; ``resume`` loads the same checkpoint on every rank.

Like detectron2's trainer, everything a training scheme varies comes from overridable methods:
:meth:`Trainer.build_datasets`, :meth:`~Trainer.build_models`, :meth:`~Trainer.build_optimizers`,
:meth:`~Trainer.step_sources` (which datasets feed each step) and
:meth:`~Trainer.compute_losses`. A checkpoint is a state dict of *named* modules and optimizers,
so a subclass with more networks (Phi and Psi) saves and resumes with the same code. And, like
detectron2's ``SimpleTrainer``, :meth:`~Trainer.fit` is a loop of :meth:`~Trainer.train_step`
calls with hooks around them (:mod:`twist_lib.hooks`): logging, validation, checkpoints and the
progress bar are the default hooks (:meth:`~Trainer.build_hooks`); more can be added with
:meth:`~Trainer.register_hooks` (e.g. a :class:`~twist_lib.hooks.StepTimer`).
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path

import numpy as np
import torch

from . import distributed as dist
from .checkpoints import load_weights, save_state
from .config import Config
from .data.dataset import SceneDataset
from .data.ensure import ensure_dataset
from .data.transforms import default_train_transforms
from .hooks import (CsvLog, CsvWriter, PeriodicCheckpointer, PeriodicValidation, ProgressBar,
                    StepScalars)
from .inference import evaluate_model
from .losses import phi_loss
from .network import build_model

__all__ = ["Trainer", "train", "resolve_device", "sgd", "BatchStream", "StepBatches", "CsvLog",
           "poly_lr"]


def resolve_device(name: str) -> torch.device:
    """The config's ``device``; under torchrun, ``auto``/``cuda`` is ``cuda:LOCAL_RANK``."""
    if name == "auto":
        return dist.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return dist.local_device(torch.device(name))


def poly_lr(step: int, total: int, power: float) -> float:
    """Polynomial decay factor ``(1 - step/total)^power`` (paper Sec. 5.1)."""
    return max(0.0, 1.0 - step / max(1, total)) ** power


class BatchStream:
    """Seeded, resumable stream of index batches over ``n`` items: epoch e uses permutation
    ``seed + e``; the batch of step s is the same whether or not the run was interrupted."""

    def __init__(self, n: int, batch_size: int, seed: int, what: str = "the labelled split"):
        if n == 0:
            raise ValueError(f"{what} is empty")
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.per_epoch = self.n // self.bs

    def batch_at(self, step: int) -> tuple[int, list[int]]:
        """``(epoch, indices)`` of training step ``step`` (0-based)."""
        epoch, b = divmod(step, self.per_epoch)
        order = np.random.default_rng(self.seed + epoch).permutation(self.n)
        return epoch, order[b * self.bs:(b + 1) * self.bs].tolist()


class StepBatches(torch.utils.data.Dataset):
    """Item k = the collated batch of training step ``start + k``, for a DataLoader whose
    workers load and augment batches ahead of the training step. ``rank``/``world``: this
    process takes indices ``[rank::world]`` of every source's batch (data-parallel training).

    ``sources`` is a list of ``(dataset, stream)`` pairs: every step takes its scenes from each
    source in turn (the baseline: the labelled split; a self-training round: labelled, then
    unlabelled) and collates them into one batch whose ``labelled`` flags say which is which.
    Every batch depends only on its step (:class:`BatchStream`, :meth:`SceneDataset.generator`),
    so the workers produce the same batches as the training process would, in any order."""

    def __init__(self, sources, start: int, stop: int, rank: int = 0, world: int = 1):
        self.sources, self.start, self.stop = list(sources), start, stop
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, k: int) -> dict:
        if not 0 <= k < len(self):
            raise IndexError(f"step batch {k} outside 0..{len(self) - 1}")
        scenes = []
        for dataset, stream in self.sources:
            epoch, indices = stream.batch_at(self.start + k)
            dataset.set_epoch(epoch)
            scenes += [dataset[i] for i in indices[self.rank::self.world]]
        return self.sources[0][0].collate_fn(scenes)


class Trainer:
    """Trains Phi on the labelled split with eq. (1) (the Sup-only baseline); see the module
    docstring for the run folder and the methods a subclass overrides.

    ``run_dir`` overrides the config's run folder (a self-training round trains in
    ``RUN/round_<t>``); ``stage`` names the job in messages (e.g. ``"round 2"``).
    """

    stage = "training"

    def __init__(self, cfg: Config, resume: bool | str = False, run_dir=None):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir) if run_dir is not None else cfg.resolved_run_dir()
        self.ckpt_dir = self.run_dir / "checkpoints"
        dist.init_from_env(cfg.device)  # joins torchrun's process group (no-op otherwise)
        self.device = resolve_device(cfg.device)
        if cfg.cpu_threads > 0:
            # torch threads spin-wait on a core another job holds (bench/NOTES.md, "Threads on a
            # shared CPU"): one thread per job when jobs share the machine.
            torch.set_num_threads(cfg.cpu_threads)
        with dist.main_first():  # rank 0 generates missing synthetic data, the others wait
            self.meta = ensure_dataset(cfg)
        torch.manual_seed(cfg.seed)
        self.datasets = self.build_datasets()
        self._check_val_split()
        self.models = self.build_models()
        self.optimizers = self.build_optimizers()
        self.step = 0
        self.sources = self.step_sources()
        dist.check_batch_sizes(self.sources)
        if resume == "auto":
            resume = (self.ckpt_dir / "last.pt").exists()
        if resume:
            self.load_checkpoint(self.ckpt_dir / "last.pt")
        elif (self.ckpt_dir / "last.pt").exists():
            raise FileExistsError(f"{self.run_dir}: a run is already there; pass resume=True "
                                  "(--resume) to continue it, or choose another run_dir")
        dist.broadcast_modules(self.models.values())  # identical start on every rank, as DDP
        self._hooks = []
        self.register_hooks(self.build_hooks())

    # -- what a training scheme builds (override these) ---------------------------------------
    def build_datasets(self) -> dict:
        """``{"train": the labelled split, augmented; "val": the val split}``."""
        cfg = self.cfg
        return {
            "train": SceneDataset(
                cfg.data_root, "labelled", label_ratio=cfg.label_ratio, voxel_size=cfg.voxel_size,
                transforms=self.train_transforms(), seed=cfg.seed,
                use_xyz_features=cfg.use_xyz_features, label_noise=cfg.label_noise),
            "val": SceneDataset(cfg.data_root, "val", voxel_size=cfg.voxel_size,
                                use_xyz_features=cfg.use_xyz_features),
        }

    def train_transforms(self):
        return default_train_transforms(max_points=self.cfg.max_points, elastic=self.cfg.elastic)

    def build_models(self) -> dict:
        """Named modules, on the training device: ``{"phi": Phi}``."""
        return {"phi": build_model(self.cfg, self.meta).to(self.device)}

    def build_optimizers(self) -> dict:
        """Named optimizers; each param group's ``initial_lr`` is decayed by :func:`poly_lr`."""
        cfg = self.cfg
        return {"phi": sgd(self.models["phi"], cfg.lr, cfg)}

    def step_sources(self) -> list:
        """``(dataset, BatchStream)`` pairs whose scenes make up every step's batch."""
        train = self.datasets["train"]
        return [(train, BatchStream(len(train), self.cfg.batch_size, self.cfg.seed))]

    @property
    def total_steps(self) -> int:
        return self.cfg.steps

    def compute_losses(self, batch: dict) -> dict:
        """The losses of one batch; ``loss`` is what is minimised (here eq. 1)."""
        out = self.model(batch)
        return phi_loss(out, batch["semantic"], batch["offset"], offset_valid=batch["offset_valid"])

    def validate(self) -> dict:
        return evaluate_model(self.model, self.datasets["val"], self.meta, self.cfg,
                              device=self.device)

    # -- conveniences ----------------------------------------------------------------------------
    @property
    def model(self):
        """Phi, the network that is evaluated."""
        return self.models["phi"]

    @property
    def optimizer(self):
        return self.optimizers["phi"]

    def _check_val_split(self) -> None:
        if len(self.datasets["val"]) == 0:
            hint = ("; a synthetic benchmark needs at least 5 scenes (every 5th scene is a val "
                    "scene)" if self.cfg.dataset == "synthetic" else "; prepare it with a val list")
            raise ValueError(f"{Path(self.cfg.data_root) / 'meta.json'}: the val split is empty, "
                             f"so the run could not be evaluated{hint}")

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"modules": {k: m.state_dict() for k, m in self.models.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "signatures": {k: m.signature() for k, m in self.models.items()},
                "step": self.step, "config": self.cfg.to_dict(),
                "torch_rng": torch.get_rng_state()}

    def save_checkpoint(self, name: str = "last.pt") -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        return save_state(self.state_dict(), self.ckpt_dir / name)

    def load_checkpoint(self, path: Path, optimizers: bool = True) -> dict:
        """Restore every named module (and optimizer, step and RNG) from ``path``."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: nothing to resume (no checkpoint in {self.run_dir})")
        ckpt = None
        for name, module in self.models.items():
            ckpt = load_weights(module, path, map_location=self.device, name=name)
        if optimizers:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
            self.step = ckpt["step"]
            torch.set_rng_state(ckpt["torch_rng"])
        return ckpt

    # -- training --------------------------------------------------------------------------------
    def batches(self):
        """The batches of steps ``self.step .. total_steps - 1`` on the training device, loaded in
        this process (``num_workers = 0``) or by a DataLoader's worker processes."""
        steps = StepBatches(self.sources, self.step, self.total_steps,
                            rank=dist.rank(), world=dist.world_size())
        if self.cfg.num_workers > 0:
            loader = torch.utils.data.DataLoader(
                steps, batch_size=None, shuffle=False, num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda", prefetch_factor=2)
        else:
            loader = (steps[k] for k in range(len(steps)))
        for batch in loader:
            yield {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                   for k, v in batch.items()}

    def train_step(self, batch: dict) -> dict:
        """One step on ``batch``: the poly learning rate of paper Sec. 5.1, :meth:`compute_losses`
        (bf16 autocast on CUDA when ``cfg.amp``), one backward, gradients averaged over the
        ranks, every optimizer's step; returns the losses as floats."""
        factor = poly_lr(self.step, self.total_steps, self.cfg.poly_power)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
        use_amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = self.compute_losses(batch)
        loss = dist.all_reduce_mean(losses["loss"])  # over the ranks: all of them stop alike
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{self.stage}, step {self.step}: loss is {loss.item()}; the last good "
                f"checkpoint is {self.ckpt_dir / 'last.pt'} (lower lr or check the data)")
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        dist.average_gradients(self.optimizers.values())  # DDP's update (see distributed.py)
        for opt in self.optimizers.values():
            opt.step()
        self.step += 1
        losses["loss"] = loss  # logged: the mean over ranks; the other terms are this rank's
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}

    def _validate_on_main(self) -> dict:
        """Rank 0 validates (the others wait) and every rank gets its metrics."""
        return dist.broadcast_object(self.validate() if dist.is_main() else None)

    # -- hooks (twist_lib.hooks) -----------------------------------------------------------------
    def build_hooks(self) -> list:
        """The hooks ``fit`` runs, in order (:mod:`twist_lib.hooks`): progress bar, the log row's
        losses, validation every ``val_every`` steps and at the end, ``log.csv``, checkpoints
        every ``ckpt_every`` steps and at the end (with ``final.pt`` and ``metrics.json``)."""
        return [ProgressBar(), StepScalars(), PeriodicValidation(), CsvWriter(),
                PeriodicCheckpointer()]

    def register_hooks(self, new_hooks) -> None:
        """Append ``new_hooks`` to the hooks ``fit`` runs (in order); a hook's ``trainer`` is a
        weak proxy of this trainer, as in detectron2."""
        for h in new_hooks:
            h.trainer = weakref.proxy(self)
        self._hooks.extend(new_hooks)

    def _call_hooks(self, event: str) -> None:
        for h in self._hooks:
            getattr(h, event)()

    def _timed_batches(self):
        """:meth:`batches`, keeping the seconds waited for each batch in ``self.data_time``."""
        batches = iter(self.batches())
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            self.data_time = time.perf_counter() - start
            yield batch

    def fit(self) -> dict:
        """Train from ``self.step`` to ``total_steps`` (the poly schedule of paper Sec. 5.1 runs
        over all of them), with the hooks around every step; returns the final validation's
        metrics. Rank 0 alone writes the run folder; every rank returns once it is complete."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if dist.is_main():
            self.cfg.save(self.run_dir / "config.yaml")
        for m in self.models.values():
            m.train()
        self.last_losses, self.data_time, self.log_row, self.val_metrics = {}, 0.0, None, {}
        self._call_hooks("before_train")
        for batch in self._timed_batches():
            self._call_hooks("before_step")
            self.last_losses = self.train_step(batch)
            self._call_hooks("after_step")
        self._call_hooks("after_train")
        dist.barrier()  # the other ranks go on only once final.pt and metrics.json are there
        return self.val_metrics


def sgd(module, lr: float, cfg: Config) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay (paper Sec. 5.1); every param group keeps
    its ``initial_lr``, which :meth:`Trainer.train_step` decays with :func:`poly_lr`."""
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    for group in opt.param_groups:
        group["initial_lr"] = lr
    return opt


def train(cfg: Config, resume: bool | str = False) -> dict:
    """Train the Sup-only baseline for ``cfg``; returns the final validation metrics. Under
    torchrun this joins the process group and leaves it at the end."""
    with dist.session(cfg.device):
        return Trainer(cfg, resume=resume).fit()
