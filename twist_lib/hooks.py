"""Hooks around :meth:`twist_lib.trainer.Trainer.fit`'s steps, in the style of detectron2's
``HookBase`` (``detectron2/engine/hooks.py``): everything ``fit`` does besides training —
logging, validation, checkpoints, the progress bar, timing — is a hook, and a subclass or a
benchmark changes it by returning other hooks from :meth:`~twist_lib.trainer.Trainer.build_hooks`
or adding some with :meth:`~twist_lib.trainer.Trainer.register_hooks`.

``fit`` calls, on every hook in registration order::

    hook.before_train()
    for batch in trainer.batches():          # the steps trainer.step .. total_steps - 1
        hook.before_step()
        trainer.last_losses = trainer.train_step(batch)      # trainer.step is now one more
        hook.after_step()
    hook.after_train()                        # only when every step finished without an error

A hook reaches the trainer as ``self.trainer`` (set by ``register_hooks``) and reads what the
trainer keeps for hooks: ``last_losses`` (the step's losses, floats), ``data_time`` (seconds
``fit`` waited for the step's batch), ``log_row`` (this step's row for ``log.csv``: hooks add to
it, :class:`CsvWriter` writes it) and ``val_metrics`` (the latest validation's metrics).

The default hooks, in order (:meth:`Trainer.build_hooks`), reproduce the run folder of the module
docstring of :mod:`twist_lib.trainer`: :class:`ProgressBar`, :class:`StepScalars`,
:class:`PeriodicValidation`, :class:`CsvWriter`, :class:`PeriodicCheckpointer`. Under torchrun
every rank runs every hook (validation is collective: rank 0 validates, the others receive its
metrics); only rank 0 writes files or shows the bar.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed as dist
from .atomic import atomic_csv, atomic_json

__all__ = ["HookBase", "ProgressBar", "StepScalars", "PeriodicValidation", "CsvWriter",
           "PeriodicCheckpointer", "StepTimer", "CsvLog", "val_scalars"]


class HookBase:
    """A hook of :meth:`Trainer.fit` (see the module docstring); every method does nothing here.

    ``self.trainer`` is the trainer the hook was registered with (a weak proxy, as in
    detectron2, so that a hook kept elsewhere does not keep the trainer alive)."""

    trainer = None

    def before_train(self) -> None:
        """Once, before the first step of this ``fit`` (``trainer.step`` is where it starts)."""

    def after_train(self) -> None:
        """Once, after the last step (``trainer.step == trainer.total_steps``)."""

    def before_step(self) -> None:
        """Before every ``train_step``; the step's batch is already loaded."""

    def after_step(self) -> None:
        """After every ``train_step``: ``trainer.step`` counts it, ``trainer.last_losses`` holds
        its losses."""


class ProgressBar(HookBase):
    """The tqdm bar of the job (``trainer.stage``) with the step's loss; rank 0 only, and only
    when ``cfg.progress``."""

    def before_train(self) -> None:
        t = self.trainer
        self.bar = tqdm(total=t.total_steps, initial=t.step, desc=t.stage,
                        disable=not t.cfg.progress or not dist.is_main())

    def after_step(self) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.trainer.last_losses['loss']:.3f}")

    def after_train(self) -> None:
        self.bar.close()


class StepScalars(HookBase):
    """Every ``period`` steps (default ``cfg.log_every``) and at the last step, starts
    ``trainer.log_row`` with ``step``, ``time_s`` (wall seconds since training began), ``lr``
    (``trainer.optimizer``'s first param group, after the poly decay of paper Sec. 5.1), the
    step's losses and, on CUDA, ``gpu_mem_gib`` (this rank's peak so far). Register it before
    :class:`PeriodicValidation`: the time and memory are those of the step, not the validation."""

    def __init__(self, period: int | None = None):
        self.period = period

    def before_train(self) -> None:
        self.t0 = time.time()

    def after_step(self) -> None:
        t = self.trainer
        period = self.period or t.cfg.log_every
        if t.step % period and t.step != t.total_steps:
            return
        row = {"step": t.step, "time_s": round(time.time() - self.t0, 2),
               "lr": t.optimizer.param_groups[0]["lr"], **t.last_losses}
        if t.device.type == "cuda":
            row["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(t.device) / 2**30, 2)
        t.log_row = row


class PeriodicValidation(HookBase):
    """Validates every ``period`` steps (default ``cfg.val_every``; 0 = never during training)
    before the last one, and once after the last step; the metrics go to ``trainer.val_metrics``
    and, as ``val_*`` scalars, into ``trainer.log_row`` (after the step's losses; at the end a
    row of ``step`` and ``val_*`` alone). Rank 0 validates, the other ranks wait and receive the
    metrics (``Trainer._validate_on_main``); the modules go back to training mode after."""

    def __init__(self, period: int | None = None):
        self.period = period

    def after_step(self) -> None:
        t = self.trainer
        period = t.cfg.val_every if self.period is None else self.period
        if period and t.step % period == 0 and t.step < t.total_steps:
            self._validate()
            for m in t.models.values():
                m.train()
            t.log_row = {**(t.log_row or {"step": t.step}), **val_scalars(t.val_metrics)}

    def after_train(self) -> None:
        self._validate()
        self.trainer.log_row = {"step": self.trainer.step, **val_scalars(self.trainer.val_metrics)}

    def _validate(self) -> None:
        self.trainer.val_metrics = self.trainer._validate_on_main()


class CsvWriter(HookBase):
    """Writes ``trainer.log_row``, when a hook before it filled one this step (or at the end),
    as a row of ``RUN/log.csv`` (:class:`CsvLog`: on resume the rows after the checkpoint's step
    are dropped); rank 0 writes, every rank clears the row."""

    def before_train(self) -> None:
        t = self.trainer
        self.log = CsvLog(t.run_dir / "log.csv", after_step=t.step) if dist.is_main() else None

    def after_step(self) -> None:
        row, self.trainer.log_row = self.trainer.log_row, None
        if row and self.log is not None:
            self.log.write(row)

    after_train = after_step


class PeriodicCheckpointer(HookBase):
    """``checkpoints/last.pt`` every ``period`` steps (default ``cfg.ckpt_every``) and at the
    last step; after training (and the final validation) ``checkpoints/final.pt`` and
    ``metrics.json`` (``trainer.val_metrics``, written atomically). Rank 0 only."""

    def __init__(self, period: int | None = None):
        self.period = period

    def after_step(self) -> None:
        t = self.trainer
        if dist.is_main() and (t.step % (self.period or t.cfg.ckpt_every) == 0
                               or t.step == t.total_steps):
            t.save_checkpoint()

    def after_train(self) -> None:
        t = self.trainer
        if dist.is_main():
            t.save_checkpoint("final.pt")
            atomic_json(t.run_dir / "metrics.json", t.val_metrics)


class StepTimer(HookBase):
    """Per step: ``data_s``, the seconds ``fit`` waited for the batch (``trainer.data_time``),
    and ``step_s``, the seconds from this hook's ``before_step`` to its ``after_step`` (the
    ``train_step``; register the timer first, or it also counts the ``after_step`` work of the
    hooks before it); ``steps`` = the step count after each.

    ``sync=True`` waits for the CUDA device at both ends, so that the batch's copies to the
    device count as data loading and the step's kernels as the step (on the CPU: no effect).
    Without it the step still ends close to the device (``train_step`` reads its losses)."""

    def __init__(self, sync: bool = False):
        self.sync = sync
        self.data_s: list[float] = []
        self.step_s: list[float] = []
        self.steps: list[int] = []

    def before_step(self) -> None:
        before = time.perf_counter()
        self._sync()
        self._start = time.perf_counter()
        self.data_s.append(self.trainer.data_time + self._start - before)

    def after_step(self) -> None:
        self._sync()
        self.step_s.append(time.perf_counter() - self._start)
        self.steps.append(self.trainer.step)

    @property
    def total_s(self) -> list[float]:
        """Data wait + step, per step."""
        return [d + s for d, s in zip(self.data_s, self.step_s)]

    def _sync(self) -> None:
        if self.sync and self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)


def val_scalars(metrics: dict) -> dict:
    """The numbers of a validation's metrics as ``val_<name>`` log columns (5 decimals)."""
    return {f"val_{k}": round(float(v), 5) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class CsvLog:
    """CSV log whose header grows with new keys; the file is rewritten atomically on each row.

    On resume, rows logged after the checkpoint's step (``after_step``) are dropped: those steps
    are trained again.
    """

    def __init__(self, path: Path, after_step: int = 0):
        self.path = Path(path)
        rows = list(csv.DictReader(self.path.open())) if self.path.exists() else []
        self.rows = [r for r in rows if int(r["step"]) <= after_step]

    def write(self, row: dict) -> None:
        self.rows.append({k: row[k] for k in row})
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        atomic_csv(self.path, self.rows, keys)
