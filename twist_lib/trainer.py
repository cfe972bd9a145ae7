"""Training the supervised baseline Phi ("Sup-only", paper Sec. 3 and 5.1).

A job is one :class:`~twist_lib.config.Config` and one run folder::

    RUN/config.yaml          the resolved config
    RUN/log.csv              one row per logged step: losses, learning rate, validation metrics
    RUN/checkpoints/last.pt  model + optimizer + step, written atomically every ckpt_every steps
    RUN/checkpoints/final.pt the last step's weights
    RUN/metrics.json         the final validation metrics

``Trainer(cfg).fit()`` trains; ``Trainer(cfg, resume=True).fit()`` continues a killed run from its
last checkpoint with the same step count, optimizer state and data order; ``resume="auto"``
resumes when the run folder has a checkpoint and starts fresh otherwise.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .data import read_meta
from .data.dataset import SceneDataset
from .data.splits import labelled_split_name, ratio_key, write_label_splits
from .data.transforms import default_train_transforms
from .inference import evaluate_model
from .losses import phi_loss
from .network import Phi


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def ensure_dataset(cfg: Config) -> dict:
    """Return the dataset's meta, generating the synthetic benchmark when needed.

    A synthetic folder of this config's ``synthetic_size`` and ``synthetic_seed`` (or a missing
    one) is brought to ``synthetic_scenes`` scenes (scenes already on disk are kept, the rest
    generated) and given its label-ratio splits when they are missing. A folder prepared
    otherwise (another seed or size from ``data_scripts/make_synthetic.py``, ScanNet, S3DIS) is
    used as it is. The synthetic data depend on ``synthetic_seed`` only, so runs with different
    ``seed`` values share one dataset.
    """
    root = Path(cfg.data_root)
    meta = read_meta(root) if (root / "meta.json").exists() else None
    ours = cfg.dataset == "synthetic" and (meta is None or (
        meta.get("name") == "synthetic" and meta.get("size") == cfg.synthetic_size
        and meta.get("seed") == cfg.synthetic_seed))
    if ours:
        from .synthetic import generate_dataset
        if meta is None or meta.get("n_scenes") != cfg.synthetic_scenes:
            if meta is not None:
                print(f"{root}: holds {meta.get('n_scenes')} scenes, the config asks for "
                      f"{cfg.synthetic_scenes}; bringing it to that number")
            meta = generate_dataset(root, cfg.synthetic_scenes, size=cfg.synthetic_size,
                                    seed=cfg.synthetic_seed, progress=cfg.progress,
                                    workers=min(8, os.cpu_count() or 1))
        if labelled_split_name(cfg.label_ratio) not in meta["splits"]:
            ratios = {ratio_key(r): r for r in (1, 5, 10, 20, cfg.label_ratio)}
            write_label_splits(root, ratios=list(ratios.values()), seed=cfg.synthetic_seed)
            meta = read_meta(root)
    if meta is None:
        meta = read_meta(root)  # names the missing meta.json of an unprepared folder
    if labelled_split_name(cfg.label_ratio) not in meta["splits"]:
        raise KeyError(
            f"{root / 'meta.json'}: no labelled split for label_ratio={cfg.label_ratio} "
            f"(have {sorted(meta['splits'])}); run data_scripts/make_splits.py --data {root} "
            f"--ratios {cfg.label_ratio}")
    return meta


def in_channels(cfg: Config) -> int:
    return 6 if cfg.use_xyz_features else 3


def build_model(cfg: Config, meta: dict) -> Phi:
    return Phi(in_channels(cfg), meta["num_classes"], size=cfg.model_size, backend=cfg.backend)


def poly_lr(step: int, total: int, power: float) -> float:
    """Polynomial decay factor ``(1 - step/total)^power`` (paper Sec. 5.1)."""
    return max(0.0, 1.0 - step / max(1, total)) ** power


def load_weights(model: Phi, path, map_location="cpu") -> dict:
    """Load a checkpoint's weights, with a clear error when it belongs to another model size."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    theirs, ours = ckpt.get("signature"), model.signature()
    if theirs != ours:
        raise ValueError(f"{path}: checkpoint of a different model ({theirs}) than this config "
                         f"builds ({ours}); check model_size, use_xyz_features and the dataset")
    model.load_state_dict(ckpt["model"])
    return ckpt


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class BatchStream:
    """Seeded, resumable stream of index batches over ``n`` items: epoch e uses permutation
    ``seed + e``; the batch of step s is the same whether or not the run was interrupted."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n == 0:
            raise ValueError("the labelled split is empty")
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.per_epoch = self.n // self.bs

    def batch_at(self, step: int) -> tuple[int, list[int]]:
        """``(epoch, indices)`` of training step ``step`` (0-based)."""
        epoch, b = divmod(step, self.per_epoch)
        order = np.random.default_rng(self.seed + epoch).permutation(self.n)
        return epoch, order[b * self.bs:(b + 1) * self.bs].tolist()


class StepBatches(torch.utils.data.Dataset):
    """Item k = the collated batch of training step ``start + k``, for a DataLoader whose
    workers load and augment batches ahead of the training step. Every batch depends only on
    its step (:class:`BatchStream`, :meth:`SceneDataset.generator`), so the workers produce the
    same batches as the training process would, in any order."""

    def __init__(self, dataset: SceneDataset, stream: BatchStream, start: int, stop: int):
        self.dataset, self.stream, self.start, self.stop = dataset, stream, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, k: int) -> dict:
        if not 0 <= k < len(self):
            raise IndexError(f"step batch {k} outside 0..{len(self) - 1}")
        epoch, indices = self.stream.batch_at(self.start + k)
        self.dataset.set_epoch(epoch)
        return self.dataset.collate_fn([self.dataset[i] for i in indices])


class Trainer:
    """Trains Phi on the labelled split with eq. (1); see the module docstring for the run folder."""

    def __init__(self, cfg: Config, resume: bool | str = False):
        self.cfg = cfg
        self.run_dir = cfg.resolved_run_dir()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.device)
        if cfg.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0 = load in this process), got {cfg.num_workers}")
        if cfg.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0 (0 = torch's default), got {cfg.cpu_threads}")
        if cfg.cpu_threads > 0:
            # Measured on a 2-core machine: torch with 2 threads while another job holds a core
            # ran sparse convolution up to 350x slower than with 1 (threads spin-wait on each other).
            torch.set_num_threads(cfg.cpu_threads)
        self.meta = ensure_dataset(cfg)
        torch.manual_seed(cfg.seed)
        self.train_set = SceneDataset(
            cfg.data_root, "labelled", label_ratio=cfg.label_ratio, voxel_size=cfg.voxel_size,
            transforms=default_train_transforms(max_points=cfg.max_points, elastic=cfg.elastic),
            seed=cfg.seed, use_xyz_features=cfg.use_xyz_features)
        self.val_set = SceneDataset(cfg.data_root, "val", voxel_size=cfg.voxel_size,
                                    use_xyz_features=cfg.use_xyz_features)
        if len(self.val_set) == 0:
            hint = ("; a synthetic benchmark needs at least 5 scenes (every 5th scene is a val "
                    "scene)" if cfg.dataset == "synthetic" else "; prepare it with a val list")
            raise ValueError(f"{Path(cfg.data_root) / 'meta.json'}: the val split is empty, so "
                             f"the run could not be evaluated{hint}")
        self.model = build_model(cfg, self.meta).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.step = 0
        self.stream = BatchStream(len(self.train_set), cfg.batch_size, cfg.seed)
        if resume == "auto":
            resume = (self.ckpt_dir / "last.pt").exists()
        if resume:
            self._resume()
        elif (self.ckpt_dir / "last.pt").exists():
            raise FileExistsError(f"{self.run_dir}: a run is already there; pass resume=True "
                                  "(--resume) to continue it, or choose another run_dir")

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, name: str = "last.pt") -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / name
        _atomic_torch_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                            "step": self.step, "config": self.cfg.to_dict(),
                            "signature": self.model.signature(),
                            "torch_rng": torch.get_rng_state()}, path)
        return path

    def _resume(self):
        path = self.ckpt_dir / "last.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path}: nothing to resume (no checkpoint in {self.run_dir})")
        ckpt = load_weights(self.model, path, map_location=self.device)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])

    # -- training --------------------------------------------------------------------------------
    def batches(self):
        """The batches of steps ``self.step .. cfg.steps - 1`` on the training device, loaded in
        this process (``num_workers = 0``) or by a DataLoader's worker processes."""
        steps = StepBatches(self.train_set, self.stream, self.step, self.cfg.steps)
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
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * poly_lr(self.step, cfg.steps, cfg.poly_power)
        use_amp = cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = self.model(batch)
        losses = phi_loss(out, batch["semantic"], batch["offset"], batch["instance"])
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"step {self.step}: loss is {losses['loss'].item()}; "
                                     "lower lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def validate(self) -> dict:
        return evaluate_model(self.model, self.val_set, self.meta, self.cfg, device=self.device)

    def fit(self) -> dict:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.run_dir / "config.yaml")
        log = CsvLog(self.run_dir / "log.csv", after_step=self.step)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not cfg.progress)
        self.model.train()
        t0, metrics = time.time(), {}
        for batch in self.batches():
            losses = self.train_step(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}")
            row = None
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                row = {"step": self.step, "time_s": round(time.time() - t0, 2),
                       "lr": self.optimizer.param_groups[0]["lr"], **losses}
            if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                metrics = self.validate()
                self.model.train()
                row = {**(row or {"step": self.step}), **_scalars(metrics)}
            if row:
                log.write(row)
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        metrics = self.validate()
        log.write({"step": self.step, **_scalars(metrics)})
        self.save_checkpoint("final.pt")
        (self.run_dir / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))
        return metrics


def _scalars(metrics: dict) -> dict:
    return {f"val_{k}": round(float(v), 5) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


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
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


def train(cfg: Config, resume: bool | str = False) -> dict:
    """Train the Sup-only baseline for ``cfg``; returns the final validation metrics."""
    return Trainer(cfg, resume=resume).fit()
