"""TWIST's self-training rounds (paper Sec. 4, Fig. 2): the whole method.

Round 0 (step i, "initialisation"): Phi is trained on the labelled scenes with eq. (1), Psi
alongside it with eq. (5) on the proposals module A forms on those scenes (Sup-only + Psi). Or
round 0 is taken from an existing Sup-only checkpoint (``init_checkpoint``; also how "TWIST +
CSC" starts); Psi is then trained on the frozen Phi for ``psi_init_steps`` steps if the
checkpoint has none. ``init_checkpoint=baseline`` names the Sup-only run folder that
``python -m twist_lib train`` writes for the same dataset, profile and ratio
(:func:`baseline_run_dir`), trained first if it holds no final checkpoint.

Round t >= 1:

1. *pseudo-label generation* (step ii): every unlabelled scene goes through Phi_{t-1} (eval
   mode), module A, Psi_{t-1} (module B) and module C, batched and without gradients; the labels
   are written to ``RUN/round_<t>/pseudo/<scene>.npz`` (:func:`pseudo_label_split`);
2. their quality against the ground truth is measured in a separate step that training never
   reads (``pseudo_quality.json``);
3. *training* (step iii): Phi_t starts from Phi_{t-1} and trains on (labelled, unlabelled)
   pairs with ``L^Phi = L^l + L^u`` (eqs. 3-4), Psi alongside (:class:`RoundTrainer`).

Run folder::

    RUN/config.yaml
    RUN/rounds.csv                       one row per finished round (Table 7 / Fig. 4a)
    RUN/round_<t>/checkpoints/{last,final}.pt   Phi and Psi, their optimizers, the step
    RUN/round_<t>/pseudo/<scene>.npz     round t's pseudo labels (t >= 1)
    RUN/round_<t>/pseudo_quality.json    sem_acc, offset_error, coverage, per scene
    RUN/round_<t>/{log.csv,metrics.json,timing.json}

Every stage is resumable: pseudo labels are written scene by scene (atomically) and a round's
labels are complete when ``pseudo/_complete.json`` exists; training resumes from
``last.pt``; a finished round (``metrics.json``) is never redone.

Under ``torchrun --nproc_per_node=N`` (:mod:`twist_lib.distributed`) each rank pseudo-labels its
share ``[r::N]`` of the unlabelled scenes and trains on its share of every batch; rank 0 alone
writes ``_complete.json`` (once every scene's file is there), measures the pseudo-label quality,
validates and writes the run folder, while the others wait.
"""
from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed as dist
from .atomic import atomic_csv, atomic_json
from .checkpoints import has_module, load_models, load_weights, round_checkpoint
from .config import BASELINE, Config
from .data.batch import collate, to_device
from .data.dataset import SceneDataset
from .data.ensure import ensure_dataset
from .data.pseudo_files import pseudo_label_path, write_pseudo_labels
from .evaluation.pseudo import pseudo_dir_quality
from .inference import evaluate_model
from .losses import split_phi_loss
from .proposals import background_classes, propose
from .pseudo_labels import empty_labels, make_pseudo_labels
from .psi_training import augment_and_score, training_samples
from .recorrection import build_psi, psi_features
from .trainer import BatchStream, Trainer, resolve_device, sgd, train

ROUND_KEYS = ("round", "AP", "AP50", "AP25", "miou", "macc", "sem_acc", "sem_macc",
              "object_sem_acc", "offset_error", "coverage", "pseudo_s", "quality_s", "train_s")


class RoundTrainer(Trainer):
    """One round's training stage: Phi on labelled (+ pseudo-labelled) scenes, Psi alongside.

    ``pseudo_dir`` = the round's pseudo labels (None in round 0: labelled scenes only);
    ``init_from`` = the checkpoint whose Phi (and Psi, if it has one) a fresh round starts from;
    ``train_phi=False`` trains Psi alone on a frozen Phi (round 0 from an ``init_checkpoint``).
    """

    def __init__(self, cfg: Config, round_index: int, run_dir, pseudo_dir=None, init_from=None,
                 train_phi: bool = True, steps: int | None = None, resume: bool | str = False):
        self.round, self.pseudo_dir, self.train_phi = round_index, pseudo_dir, train_phi
        self._steps = steps if steps is not None else (cfg.steps if round_index == 0
                                                      else cfg.round_steps)
        self.stage = f"round {round_index}" + ("" if train_phi else " (Psi on a frozen Phi)")
        super().__init__(cfg, resume=resume, run_dir=run_dir)
        self.background = background_classes(self.meta)
        if self.step == 0 and init_from is not None:
            load_weights(self.models["phi"], init_from, map_location=self.device, name="phi")
            try:
                load_weights(self.models["psi"], init_from, map_location=self.device, name="psi")
            except KeyError:
                pass  # a Sup-only checkpoint: Psi starts fresh

    @property
    def total_steps(self) -> int:
        return self._steps

    def build_datasets(self) -> dict:
        datasets = super().build_datasets()
        if self.pseudo_dir is not None:
            cfg = self.cfg
            datasets["unlabelled"] = SceneDataset(
                cfg.data_root, "unlabelled", label_ratio=cfg.label_ratio,
                voxel_size=cfg.voxel_size, transforms=self.train_transforms(),
                seed=cfg.seed + 1000 * self.round, use_xyz_features=cfg.use_xyz_features,
                pseudo_dir=self.pseudo_dir)
        return datasets

    def build_models(self) -> dict:
        models = super().build_models()
        psi = build_psi(self.cfg, self.meta, models["phi"].size.m)
        return {**models, "psi": psi.to(self.device)}

    def build_optimizers(self) -> dict:
        opts = {"psi": sgd(self.models["psi"], self.cfg.psi_lr, self.cfg)}
        if self.train_phi:
            lr = self.cfg.lr if self.round == 0 else (self.cfg.round_lr or self.cfg.lr)
            opts = {"phi": sgd(self.models["phi"], lr, self.cfg), **opts}
        return opts

    @property
    def optimizer(self):
        return self.optimizers["phi" if self.train_phi else "psi"]

    def step_sources(self) -> list:
        cfg, seed = self.cfg, self.cfg.seed + 1000 * self.round
        train = self.datasets["train"]
        sources = [(train, BatchStream(len(train), cfg.batch_size, seed))]
        if "unlabelled" in self.datasets:
            unl = self.datasets["unlabelled"]
            sources.append((unl, BatchStream(len(unl), cfg.unlabelled_batch, seed + 1,
                                             what="the unlabelled split")))
        return sources

    def compute_losses(self, batch: dict) -> dict:
        """``L^Phi + L^Psi``: eqs. (3)-(4) for Phi, eq. (5) + L_sem for Psi."""
        phi = self.models["phi"]
        if self.train_phi:
            out = phi(batch)
            losses = split_phi_loss(out, batch)
        else:
            phi.eval()
            with torch.no_grad():
                out = phi(batch)
            losses = {"loss": 0.0}
        generator = torch.Generator().manual_seed(
            hash((self.cfg.seed, self.round, self.step)) % (2 ** 63))
        samples = training_samples(batch, out, self.cfg, self.background, generator)
        feats = psi_features(self.cfg, batch, out)
        psi_terms = augment_and_score(self.models["psi"], samples, batch, feats, self.cfg,
                                      generator)
        losses.update({k: v for k, v in psi_terms.items() if k != "loss"})
        losses["loss"] = losses["loss"] + psi_terms["loss"]
        return losses

    def validate(self) -> dict:
        psi = self.models["psi"] if self.cfg.test_time_recorrection else None
        return evaluate_model(self.model, self.datasets["val"], self.meta, self.cfg,
                              device=self.device, psi=psi)


# ---------------------------------------------------------------------------------- step ii

@torch.no_grad()
def pseudo_label_split(phi, psi, dataset: SceneDataset, pseudo_dir, cfg: Config, meta: dict,
                       device) -> int:
    """Pseudo-label every scene of ``dataset`` (the unlabelled split, no augmentation) with
    modules A -> B -> C into ``pseudo_dir``; scenes whose file exists are skipped (resume).
    Under torchrun each rank labels its share ``[r::N]`` of the scenes and all wait for each
    other at the end. Returns the number of scenes labelled now (by all ranks)."""
    pseudo_dir = Path(pseudo_dir)
    todo = [i for i in dist.shard(range(len(dataset)))
            if not pseudo_label_path(pseudo_dir, dataset.names[i]).exists()]
    background = background_classes(meta)
    phi.eval()
    mine = len(dist.shard(range(len(dataset))))
    bar = tqdm(total=mine, initial=mine - len(todo), desc="pseudo-label",
               disable=not cfg.progress or not dist.is_main())
    for start in range(0, len(todo), cfg.pseudo_batch_size):
        scenes = [dataset[i] for i in todo[start:start + cfg.pseudo_batch_size]]
        batch = to_device(collate(scenes, cfg.voxel_size, cfg.use_xyz_features), device)
        for name, labels in label_batch(phi, psi, batch, cfg, meta, background):
            write_pseudo_labels(pseudo_label_path(pseudo_dir, name), labels)
        bar.update(len(scenes))
    bar.close()
    dist.barrier()
    return dist.all_reduce_sum(len(todo))


def label_batch(phi, psi, batch, cfg, meta, background):
    """``(scene name, pseudo labels)`` of every scene of one batch: Phi, modules A and B
    (:func:`~twist_lib.proposals.propose`; module B off, Table 4: no Psi), then module C."""
    props = propose(phi(batch), batch, cfg, background, psi=psi if cfg.recorrection else None)
    for b in props.scenes:
        lo, hi = int(batch["point_offsets"][b]), int(batch["point_offsets"][b + 1])
        own = props.of_scene(b)
        labels = make_pseudo_labels(
            batch["xyz"][lo:hi], props.probs[lo:hi], props.offset[lo:hi],
            props.scene_ids(batch, b), props.classes[own], props.scores[own],
            instance_classes=meta["instance_classes"], threshold=cfg.pseudo_threshold,
            update=cfg.pseudo_update, pointwise_threshold=cfg.pointwise_threshold,
            use_semantic=cfg.pseudo_semantic, use_offset=cfg.pseudo_offset,
            offset_to_semantic=cfg.offset_to_semantic, max_spread=cfg.pseudo_offset_spread,
            split_parts=cfg.pseudo_offset_split, min_points=cfg.cluster_min_points,
            background_classes=background, background_threshold=cfg.pseudo_background,
            point_confidence=cfg.pseudo_point_confidence)
        yield batch["names"][b], {k: v.cpu() for k, v in labels.items()}


# ---------------------------------------------------------------------------------- rounds

def run_twist(cfg: Config, resume: bool = False, root=".") -> list[dict]:
    """Round 0 plus ``cfg.rounds`` self-training rounds; returns the rows of ``rounds.csv``.

    ``resume=True`` continues a run folder wherever it stopped (pseudo-labelling or training of
    any round); without it an existing run folder is an error. ``root``: the folder below which
    ``init_checkpoint=baseline`` finds (or trains) the Sup-only run (:func:`baseline_run_dir`).
    Under torchrun this joins the process group (every rank runs it; rank 0 writes) and leaves
    it at the end."""
    with dist.session(cfg.device):
        run = cfg.resolved_run_dir("twist")
        if dist.agree((run / "config.yaml").exists()) and not resume:
            raise FileExistsError(f"{run}: a TWIST run is already there; pass --resume to "
                                  "continue it, or choose another run_dir")
        run.mkdir(parents=True, exist_ok=True)
        if dist.is_main():
            cfg.save(run / "config.yaml")
        rows = []
        for t in range(cfg.rounds + 1):
            rows.append(run_round(cfg, run, t, root))
            if dist.is_main():
                _write_rows(run / "rounds.csv", rows)
                print(_round_line(rows[-1]), flush=True)
        return rows


def _round_line(r: dict) -> str:
    """One printed line per finished round (figures that are missing print as n/a)."""
    def f(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.4f}"
    pseudo = f"  pseudo sem_acc {f('sem_acc')}  coverage {f('coverage')}" if r["round"] else ""
    return (f"round {r['round']}: AP50 {f('AP50')}  AP {f('AP')}  mIoU {f('miou')}{pseudo}"
            f"  ({r['pseudo_s'] + r['quality_s'] + r['train_s']:.0f} s)")


def run_round(cfg: Config, run: Path, t: int, root=".") -> dict:
    """Do (or finish) round ``t`` of the run folder ``run``; return its ``rounds.csv`` row."""
    rdir = run / f"round_{t}"
    if not dist.agree((rdir / "metrics.json").exists()):
        if t == 0:
            _round_zero(cfg, rdir, root)
        else:
            _round(cfg, run, rdir, t)
    metrics = json.loads((rdir / "metrics.json").read_text())
    quality = _read_json(rdir / "pseudo_quality.json")
    timing = _read_json(rdir / "timing.json")
    row = {"round": t, **{k: metrics.get(k) for k in ("AP", "AP50", "AP25", "miou", "macc")},
           **{k: quality.get(k) for k in ("sem_acc", "sem_macc", "object_sem_acc", "offset_error",
                                             "coverage")},
           **{k: round(timing.get(k, 0.0), 1) for k in ("pseudo_s", "quality_s", "train_s")}}
    return row


def baseline_run_dir(cfg: Config, root=".") -> Path:
    """``init_checkpoint=baseline``: the Sup-only run folder of ``cfg``'s dataset, profile and
    label ratio as ``python -m twist_lib train`` names it (``runs/<dataset>_<profile>_<ratio>pct``
    below ``root``), trained there first (:func:`twist_lib.trainer.train`, resumable) when it
    holds no ``checkpoints/final.pt``. The book's pages and ``make main`` share this baseline."""
    run = Path(root) / dataclasses.replace(cfg, run_dir="").resolved_run_dir()
    if not (run / "checkpoints" / "final.pt").exists():
        train(dataclasses.replace(cfg, run_dir=str(run), init_checkpoint=""), resume="auto")
    return run


def init_checkpoint_file(cfg: Config, root=".") -> Path | None:
    """The one place ``init_checkpoint`` is resolved: None when it is empty (round 0 trains
    Phi itself); ``baseline`` -> the final checkpoint of :func:`baseline_run_dir` below
    ``root``; a run folder -> its ``checkpoints/final.pt``; a file -> itself. A missing file is
    a FileNotFoundError naming it."""
    if not cfg.init_checkpoint:
        return None
    init = baseline_run_dir(cfg, root) if cfg.init_checkpoint == BASELINE else Path(cfg.init_checkpoint)
    init = init / "checkpoints" / "final.pt" if init.is_dir() else init
    if not init.exists():
        raise FileNotFoundError(f"{init}: init_checkpoint not found")
    return init


def _round_zero(cfg: Config, rdir: Path, root=".") -> None:
    with _timed(rdir, "train_s"):
        init = init_checkpoint_file(cfg, root)
        if init is None:
            RoundTrainer(cfg, 0, rdir, resume="auto").fit()
            return
        steps = 0 if has_module(init, "psi") else cfg.psi_init_steps
        RoundTrainer(cfg, 0, rdir, init_from=init, train_phi=False, steps=steps,
                     resume="auto").fit()


def uses_pseudo_labels(cfg: Config) -> bool:
    """Whether a round's training reads its pseudo labels. The same-schedule control
    (``pseudo_semantic`` and ``pseudo_offset`` both off) does not: its unlabelled scenes carry no
    class and no offset, and the only other array, ``instance``, is never used for training, so
    its rounds write label files with no label instead of running modules A-C (the same weights,
    tested; ~1/6 of a control run's time on the cpu profile)."""
    return bool(cfg.pseudo_semantic or cfg.pseudo_offset)


def no_pseudo_labels(dataset: SceneDataset, pseudo_dir) -> None:
    """A label file with no label at all for every scene of ``dataset`` (this rank's share)."""
    for i in dist.shard(range(len(dataset))):
        path = pseudo_label_path(pseudo_dir, dataset.names[i])
        if not path.exists():
            write_pseudo_labels(path, empty_labels(len(dataset[i]["xyz"])))


def _round(cfg: Config, run: Path, rdir: Path, t: int) -> None:
    previous = round_checkpoint(run, t - 1)
    pseudo_dir = rdir / "pseudo"
    if not dist.agree((pseudo_dir / "_complete.json").exists()):
        with _timed(rdir, "pseudo_s"):
            pseudo_dir.mkdir(parents=True, exist_ok=True)
            if uses_pseudo_labels(cfg):
                phi, psi, dataset, meta, device = previous_models(cfg, previous)
                pseudo_label_split(phi, psi, dataset, pseudo_dir, cfg, meta, device)  # all ranks
            else:
                dataset = SceneDataset(cfg.data_root, "unlabelled", label_ratio=cfg.label_ratio)
                no_pseudo_labels(dataset, pseudo_dir)
                dist.barrier()
            missing = [n for n in dataset.names if not pseudo_label_path(pseudo_dir, n).exists()]
            if missing:  # never mark a round complete that a rank left unfinished
                raise FileNotFoundError(f"{pseudo_dir}: no pseudo labels for {len(missing)} "
                                        f"scene(s), e.g. {missing[:3]}; rerun with --resume")
            if dist.is_main():
                atomic_json(pseudo_dir / "_complete.json", {"scenes": len(dataset)})
    if not dist.agree((rdir / "pseudo_quality.json").exists()):
        with _timed(rdir, "quality_s"):
            if dist.is_main():  # rank 0 alone (reads files only); the others wait
                dataset = SceneDataset(cfg.data_root, "unlabelled", label_ratio=cfg.label_ratio)
                quality = pseudo_dir_quality(pseudo_dir, dataset, progress=cfg.progress)
                atomic_json(rdir / "pseudo_quality.json", quality)
            dist.barrier()
    with _timed(rdir, "train_s"):
        RoundTrainer(cfg, t, rdir, pseudo_dir=pseudo_dir, init_from=previous, resume="auto").fit()


def previous_models(cfg: Config, checkpoint: Path):
    """Phi_{t-1} and Psi_{t-1} from ``checkpoint`` (eval mode), and the unlabelled split they
    label: ``(phi, psi, dataset, meta, device)``."""
    with dist.main_first():
        meta = ensure_dataset(cfg)
    device = resolve_device(cfg.device)
    phi, psi = load_models(checkpoint, cfg, meta, device, psi=True)
    dataset = SceneDataset(cfg.data_root, "unlabelled", label_ratio=cfg.label_ratio,
                           voxel_size=cfg.voxel_size, use_xyz_features=cfg.use_xyz_features)
    return phi, psi, dataset, meta, device


@contextmanager
def _timed(rdir: Path, key: str):
    """Add the wall time of the block to ``rdir/timing.json[key]`` (kept across resumes)."""
    t0 = time.time()
    try:
        yield
    finally:
        rdir.mkdir(parents=True, exist_ok=True)
        if dist.is_main():
            timing = _read_json(rdir / "timing.json")
            timing[key] = timing.get(key, 0.0) + time.time() - t0
            atomic_json(rdir / "timing.json", timing)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_rows(path: Path, rows: list[dict]) -> None:
    atomic_csv(path, [{k: _fmt(r.get(k)) for k in ROUND_KEYS} for r in rows], ROUND_KEYS)


def _fmt(value):
    return "" if value is None else (round(value, 5) if isinstance(value, float) else value)


__all__ = ["RoundTrainer", "pseudo_label_split", "run_twist", "run_round", "ROUND_KEYS",
           "baseline_run_dir", "init_checkpoint_file", "previous_models"]
