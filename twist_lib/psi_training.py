"""How Psi trains (paper Sec. 4.2, "Module Training"): its samples of one step and its loss.

At every step, module A (Sec. 4.1, :func:`twist_lib.proposals.propose`) forms proposals on the
*labelled* scenes of the batch from Phi's current predictions; each proposal becomes an
object-level sample ``k_j`` = its points' xyz (centred on the sample) and their backbone features
(Phi's U-Net output, detached unless ``psi_backprop``; or rgb, Table 6 group I). The samples
are diversified by the two augmentations of Fig. 3 (:mod:`twist_lib.object_samples`), then
supervised by eq. (5) and the class cross entropy (:func:`twist_lib.recorrection.psi_loss`)
against the ground truth:

- *geometric mutation*: each sample is, with probability 1/2, replaced by all scene points inside
  its bounding box scaled by a ratio in ``[1 - x, 1 + x]`` (paper: [0.7, 1.3]); the IoU target is
  computed after the mutation. Half the samples stay as module A formed them, so Psi also sees
  proposals exactly as pseudo-labelling will show them.
- *geometric transformation*: rotation about z, per-axis scaling and a translation per sample.

Early in round 0, Phi forms few proposals, most of them poor: Psi would see almost no positive
(IoU > 0.5) sample. ``psi_gt_proposals`` ground-truth instances of the labelled scenes are added
to every step's samples (they then go through the same mutation, which jitters them); what they
change is measured in ``bench/NOTES.md`` ("Psi's extra ground-truth samples"). At most
``psi_max_proposals`` samples per step are kept, a random subset (a truncation in class order
would starve the last classes).

Psi at inference (:func:`twist_lib.recorrection.recorrect`) runs inside
:func:`twist_lib.proposals.propose`.
"""
from __future__ import annotations

import torch

from .object_samples import (Samples, centre_samples, mutate_samples, sample_targets,
                             transform_samples)
from .proposals import propose
from .recorrection import Psi, psi_loss


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
    samples = propose(out, batch, cfg, background, scenes=labelled.tolist()).samples
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
