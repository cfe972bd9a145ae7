"""Module B in the pipeline: Psi's training samples from a batch, and Psi at inference.

Training (paper Sec. 4.2, "Module Training"): at every step, module A (Sec. 4.1) forms proposals
on the *labelled* scenes of the batch from Phi's current predictions; each proposal becomes an
object-level sample ``k_j`` = its points' xyz (centred on the sample) and their backbone features
(Phi's U-Net output, detached unless ``psi_backprop``; or rgb, Table 6 group I). The samples
are diversified by the two augmentations of Fig. 3, then supervised by eq. (5) and the class
cross entropy (:func:`twist_lib.recorrection.psi_loss`) against the ground truth:

- *geometric mutation*: each sample is, with probability 1/2, replaced by all scene points inside
  its bounding box scaled by a ratio in ``[1 - x, 1 + x]`` (paper: [0.7, 1.3]); the IoU target is
  computed after the mutation. Half the samples stay as module A formed them, so Psi also sees
  proposals exactly as pseudo-labelling will show them.
- *geometric transformation*: rotation about z, per-axis scaling and a translation per sample.

Early in round 0, Phi forms few proposals, most of them poor: Psi would see almost no positive
(IoU > 0.5) sample. ``psi_gt_proposals`` ground-truth instances of the labelled scenes are added
to every step's samples (they then go through the same mutation, which jitters them). Measured
(``bench/psi_quality.py``, Psi trained 400 steps at lr 0.02 on a frozen 5 % Sup-only Phi of the
``cpu`` profile, 258 proposals of 30 val scenes): with 8 such samples per step Psi's class was
right on 95.8 % of the proposals with IoU > 0.5 (the majority vote: 95.8 %) and it kept 86 % of
them at score > 0.5 with precision 0.71; without them 92.4 %, 73 % and 0.76. At most ``psi_max_proposals`` samples per step are
kept, a random subset (a truncation in class order would starve the last classes).

Inference (Sec. 4.3 and the test-time re-correction of Sec. 5.3): :func:`recorrect` runs Psi on
every proposal of a batch at once and returns each proposal's re-predicted class ``e_j`` and
certainty ``v_j``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .inference import cluster_prediction
from .recorrection import (Psi, centre_samples, mutate_samples, psi_loss, sample_targets,
                           transform_samples)


def build_psi(cfg, meta: dict, feature_width: int) -> Psi:
    """Psi for a config: input = xyz + backbone features (width of Phi's U-Net) or xyz + rgb."""
    extra = feature_width if cfg.psi_input == "features" else 3
    return Psi(3 + extra, meta["num_classes"], width=cfg.psi_width, levels=cfg.psi_levels,
               grid=cfg.psi_grid, min_voxel=cfg.voxel_size, backend=cfg.backend)


def psi_features(cfg, batch: dict, out: dict) -> torch.Tensor:
    """Per-point input features of Psi besides xyz (Table 6: backbone features or rgb)."""
    if cfg.psi_input == "rgb":
        return batch["rgb"]
    feats = out["features"].float()
    return feats if cfg.psi_backprop else feats.detach()


@dataclass
class Samples:
    """Object-level samples as membership rows: point ``point_idx[r]`` is in sample
    ``sample_idx[r]``; ``n`` samples."""
    point_idx: torch.Tensor
    sample_idx: torch.Tensor
    n: int

    @classmethod
    def empty(cls, device) -> "Samples":
        z = torch.zeros(0, dtype=torch.int64, device=device)
        return cls(z, z.clone(), 0)

    def cat(self, other: "Samples") -> "Samples":
        return Samples(torch.cat([self.point_idx, other.point_idx]),
                       torch.cat([self.sample_idx, other.sample_idx + self.n]), self.n + other.n)

    def subset(self, keep: torch.Tensor) -> "Samples":
        """The samples ``keep`` (indices), renumbered ``0..len(keep)-1`` in that order."""
        new_id = torch.full((self.n,), -1, dtype=torch.int64, device=self.sample_idx.device)
        new_id[keep] = torch.arange(len(keep), device=keep.device)
        rows = new_id[self.sample_idx] >= 0
        return Samples(self.point_idx[rows], new_id[self.sample_idx[rows]], len(keep))


def module_a_proposals(batch: dict, probs: torch.Tensor, offset: torch.Tensor, scenes, cfg,
                       background) -> tuple[Samples, list]:
    """Module A on the given scenes of a batch: all their proposals as one :class:`Samples`
    (batch point indices), plus each scene's ``(first_sample, Proposals)``."""
    samples, per_scene = Samples.empty(probs.device), []
    for b in scenes:
        lo, hi = int(batch["point_offsets"][b]), int(batch["point_offsets"][b + 1])
        ids, props = cluster_prediction(batch["xyz"][lo:hi], probs[lo:hi], offset[lo:hi],
                                        background, cfg.cluster_radius, cfg.cluster_min_points,
                                        class_agnostic=not cfg.semantic_to_offset)
        rows = torch.nonzero(ids >= 0).squeeze(1)
        per_scene.append((samples.n, props))
        samples = samples.cat(Samples(rows + lo, ids[rows], len(props)))
    return samples, per_scene


def ground_truth_samples(batch: dict, scenes: torch.Tensor, count: int,
                         generator: torch.Generator) -> Samples:
    """Up to ``count`` ground-truth instances of the given scenes, drawn at random."""
    instance = batch["instance"]
    in_scene = torch.isin(batch["batch_index"], scenes) & (instance >= 0)
    ids = torch.unique(instance[in_scene])
    if count <= 0 or len(ids) == 0:
        return Samples.empty(instance.device)
    order = torch.randperm(len(ids), generator=generator, device=generator.device).to(ids.device)
    chosen = ids[order[:count]]
    rows = torch.nonzero(torch.isin(instance, chosen) & in_scene).squeeze(1)
    return Samples(rows, torch.searchsorted(chosen.sort().values, instance[rows]), len(chosen))


def training_samples(batch: dict, out: dict, cfg, background,
                     generator: torch.Generator) -> Samples:
    """Psi's raw samples of one step: module A's proposals on the labelled scenes plus
    ``psi_gt_proposals`` ground-truth instances, at most ``psi_max_proposals`` of them."""
    labelled = torch.nonzero(batch["labelled"]).squeeze(1).to(batch["xyz"].device)
    probs = torch.softmax(out["semantic_logits"].detach().float(), dim=1)
    samples, _ = module_a_proposals(batch, probs, out["offset"].detach().float(),
                                    labelled.tolist(), cfg, background)
    samples = samples.cat(ground_truth_samples(batch, labelled, cfg.psi_gt_proposals, generator))
    if samples.n > cfg.psi_max_proposals:
        keep = torch.randperm(samples.n, generator=generator, device=generator.device)
        samples = samples.subset(keep[:cfg.psi_max_proposals].to(samples.sample_idx.device))
    return samples


def augment_and_score(psi: Psi, samples: Samples, batch: dict, feats: torch.Tensor, cfg,
                      generator: torch.Generator) -> dict:
    """Mutation (with its new IoU targets), transformation, Psi, and L^Psi (eq. 5 + L_sem)."""
    xyz = batch["xyz"].float()
    if cfg.psi_augment in ("mutation", "both") and samples.n:
        u = torch.rand((samples.n, 2), generator=generator, device=generator.device).to(xyz.device)
        ratio = 1 + cfg.psi_mutation_range * (2 * u[:, 0] - 1)
        ratio = torch.where(u[:, 1] < 0.5, ratio, torch.full_like(ratio, float("nan")))
        samples = _mutate_some(samples, xyz, batch["batch_index"], ratio)
    iou, cls = sample_targets(samples.point_idx, samples.sample_idx, samples.n,
                              batch["instance"], batch["semantic"])
    local = centre_samples(xyz[samples.point_idx], samples.sample_idx, samples.n)
    if cfg.psi_augment in ("transform", "both") and samples.n:
        local = transform_samples(local, samples.sample_idx, samples.n, generator)
    pred = psi(local, feats[samples.point_idx], samples.sample_idx, samples.n)
    losses = psi_loss(pred, iou, cls)
    return {"loss": losses["loss"], "psi_score": losses["psi_score"],
            "psi_class": losses["psi_class"], "psi_samples": float(samples.n),
            "psi_mean_iou": float(iou.mean()) if samples.n else 0.0}


def _mutate_some(samples: Samples, xyz, scene_of_point, ratio) -> Samples:
    """Mutate the samples whose ratio is finite; keep the others as they are."""
    picked = torch.nonzero(torch.isfinite(ratio)).squeeze(1)
    if len(picked) == 0:
        return samples
    kept = torch.nonzero(~torch.isfinite(ratio)).squeeze(1)
    moved = samples.subset(picked)
    p_idx, s_idx = mutate_samples(xyz, scene_of_point, moved.point_idx, moved.sample_idx,
                                  moved.n, ratio[picked])
    return samples.subset(kept).cat(Samples(p_idx, s_idx, moved.n))


@torch.no_grad()
def recorrect(psi: Psi, xyz: torch.Tensor, feats: torch.Tensor, samples: Samples):
    """Psi's re-predicted class and certainty score of every sample (Sec. 4.3), in eval mode."""
    was_training = psi.training
    psi.eval()
    local = centre_samples(xyz.float()[samples.point_idx], samples.sample_idx, samples.n)
    pred = psi(local, feats[samples.point_idx].float(), samples.sample_idx, samples.n)
    psi.train(was_training)
    return pred["class_logits"].argmax(1), pred["score"].float()
