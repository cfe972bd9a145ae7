"""Object-level samples (paper Sec. 4.2, Fig. 3): the proposals Psi reads, their targets and the
two augmentations that diversify them.

A batch's samples are membership rows ``(point_idx[r], sample_idx[r])`` (:class:`Samples`), so
samples may overlap (a mutated box takes in points of other objects) and every operation is
vectorised over all samples of a batch:

- targets: IoU of each sample with its best-matching ground-truth instance and that instance's
  class (the supervision of eq. (5) and of the class head), :func:`sample_targets`,
  :func:`proposal_targets`;
- "geometric mutation" (crop / expand the bounding box by a ratio in [0.7, 1.3], Sec. 4.2 and
  Sec. 5 "Implementation Details"), :func:`mutate_proposal`, :func:`mutate_samples`;
- "geometric transformation" (rotation, translation, point-wise scaling), :func:`transform_samples`;
- centring on each sample (object-level input), :func:`centre_samples`.

The network that reads them is :class:`twist_lib.recorrection.Psi`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .data.classes import IGNORE_INDEX

#: Most (sample, point) box tests :func:`mutate_samples` materialises at once.
MUTATE_CHUNK = 2 ** 24


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


# ----------------------------------------------------------------------------- segment helpers

def segment_extreme(x: torch.Tensor, seg: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    """Per-segment min (``"amin"``) or max (``"amax"``) of the rows of ``x`` (R, C).

    Empty segments get +inf (amin) or -inf (amax).
    """
    fill = math.inf if reduce == "amin" else -math.inf
    out = x.new_full((n, x.shape[1]), fill)
    return out.scatter_reduce(0, seg.unsqueeze(1).expand_as(x), x, reduce, include_self=False)


def segment_mean(x: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """Per-segment mean of the rows of ``x`` (R, C); 0 for empty segments."""
    total = x.new_zeros((n, x.shape[1])).index_add_(0, seg, x)
    count = torch.bincount(seg, minlength=n).clamp_min(1).to(x.dtype)
    return total / count.unsqueeze(1)


# ----------------------------------------------------------------------------- targets (eq. 5)

def sample_targets(point_idx, sample_idx, num_samples: int, instance, semantic):
    """IoU with the best-matching GT instance and its class, per sample (Sec. 4.2, eq. (5)).

    ``IoU(S, G) = |S n G| / (|S| + |G| - |S n G|)``, where ``|S|`` counts every member row (points
    with instance -100 too). The best match is the instance of highest IoU (ties: the smallest
    instance id); its class is the majority ``semantic`` of the instance's points (ignoring -100;
    ties: the smallest class). A sample overlapping no instance gets IoU 0 and class -100.

    All (sample, instance) intersections come from one ``bincount`` over ``sample * I + inst``
    (a dense P x I table). Tensors in, ``(iou float32 (P,), cls int64 (P,))`` out, same device.
    """
    inst = torch.as_tensor(instance)
    dev = inst.device
    pidx = torch.as_tensor(point_idx, device=dev).long()
    sidx = torch.as_tensor(sample_idx, device=dev).long()
    sem = torch.as_tensor(semantic, device=dev).long()
    p = int(num_samples)
    has = inst != IGNORE_INDEX
    ids, compact = torch.unique(inst[has], return_inverse=True)
    n_inst = len(ids)
    iou = torch.zeros(p, dtype=torch.float32, device=dev)
    cls = torch.full((p,), IGNORE_INDEX, dtype=torch.int64, device=dev)
    if p == 0 or n_inst == 0:
        return iou, cls
    point_inst = torch.full_like(inst, -1, dtype=torch.int64)
    point_inst[has] = compact
    inst_size = torch.bincount(compact, minlength=n_inst)
    sample_size = torch.bincount(sidx, minlength=p)
    row_inst = point_inst[pidx]
    hit = row_inst >= 0
    inter = torch.bincount(sidx[hit] * n_inst + row_inst[hit], minlength=p * n_inst)
    inter = inter.view(p, n_inst).double()
    union = sample_size.unsqueeze(1) + inst_size.unsqueeze(0) - inter
    best_iou, best = (inter / union).max(dim=1)
    matched = best_iou > 0
    iou = best_iou.float()
    cls = torch.where(matched, _instance_classes(compact, sem[has], n_inst)[best], cls)
    return iou, cls


def _instance_classes(compact: torch.Tensor, sem: torch.Tensor, n_inst: int) -> torch.Tensor:
    """Majority non-ignored semantic class of each instance (-100 if it has none)."""
    valid = sem >= 0
    n_cls = int(sem[valid].max()) + 1 if bool(valid.any()) else 1
    votes = torch.bincount(compact[valid] * n_cls + sem[valid], minlength=n_inst * n_cls)
    votes = votes.view(n_inst, n_cls)
    return torch.where(votes.sum(1) > 0, votes.argmax(1), torch.full_like(votes[:, 0], -100))


def proposal_targets(proposal_ids, instance, semantic, num_proposals: int | None = None):
    """:func:`sample_targets` for disjoint proposals given as per-point ids (-1 = none).

    NumPy in -> NumPy out, tensors in -> tensors out (on the ids' device). ``P`` is
    ``max(proposal_ids) + 1`` unless ``num_proposals`` is given.
    """
    as_numpy = not isinstance(proposal_ids, torch.Tensor)
    ids = torch.as_tensor(np.asarray(proposal_ids) if as_numpy else proposal_ids).long()
    inst = torch.as_tensor(instance, device=ids.device)
    sem = torch.as_tensor(semantic, device=ids.device)
    members = torch.nonzero(ids >= 0).squeeze(1)
    p = num_proposals if num_proposals is not None else (int(ids.max()) + 1 if len(members) else 0)
    iou, cls = sample_targets(members, ids[members], p, inst, sem)
    return (iou.cpu().numpy(), cls.cpu().numpy()) if as_numpy else (iou, cls)


# ----------------------------------------------------------------------------- geometric mutation

def _scaled_box(lo, hi, ratio):
    """Box of extent ``ratio * (hi - lo)`` about the same centre (Sec. 4.2 "geometric mutation").

    Written as ``lo + (1 - ratio) / 2 * (hi - lo)`` so that ratio 1 gives back exactly
    ``(lo, hi)`` and ratio >= 1 (<= 1) always contains (is contained in) the old box.
    """
    margin = (1.0 - ratio) / 2.0 * (hi - lo)
    return lo + margin, hi - margin


def mutate_proposal(scene_xyz, member_mask, ratio):
    """Crop (ratio < 1) or expand (ratio > 1) one proposal through its bounding box (Sec. 4.2).

    The axis-aligned bounding box of the members is scaled about its centre by ``ratio`` (a
    scalar, or one per axis; the paper draws it in [0.7, 1.3], Sec. 5) and every scene point
    inside the new box or on its faces becomes a member: "remove part of k_j or bring points from
    other objects to k_j". NumPy or torch in, the same kind out; no members -> returned unchanged.
    """
    as_numpy = not isinstance(scene_xyz, torch.Tensor)
    xyz = torch.as_tensor(scene_xyz)
    mask = torch.as_tensor(member_mask, device=xyz.device).bool()
    if not bool(mask.any()):
        return member_mask
    members = xyz[mask]
    ratio = torch.as_tensor(ratio, dtype=xyz.dtype, device=xyz.device)
    lo, hi = _scaled_box(members.min(0).values, members.max(0).values, ratio)
    new = ((xyz >= lo) & (xyz <= hi)).all(dim=1)
    return new.numpy() if as_numpy else new


def mutate_samples(xyz, scene_of_point, point_idx, sample_idx, num_samples: int, ratios):
    """:func:`mutate_proposal` for every sample of a batch (each sample stays in its own scene).

    ``ratios``: (P,) or (P, 3). Returns the new ``(point_idx, sample_idx)`` sorted by sample, then
    point. A sample whose new box would hold no point keeps its original members. Loops over the
    scenes only; at most :data:`MUTATE_CHUNK` (sample, point) tests exist at once.
    """
    p = int(num_samples)
    point_idx, sample_idx = point_idx.long(), sample_idx.long()
    if p == 0:
        return point_idx, sample_idx
    ratios = torch.as_tensor(ratios, dtype=xyz.dtype, device=xyz.device)
    ratios = ratios.reshape(p, -1).expand(p, 3)
    lo = segment_extreme(xyz[point_idx], sample_idx, p, "amin")
    hi = segment_extreme(xyz[point_idx], sample_idx, p, "amax")
    lo, hi = _scaled_box(lo, hi, ratios)
    scene = torch.full((p,), -1, dtype=torch.int64, device=xyz.device)
    scene = scene.scatter_reduce(0, sample_idx, scene_of_point[point_idx].long(), "amax")
    new_p, new_s = [], []
    for s in torch.unique(scene[scene >= 0]).tolist():
        pts = torch.nonzero(scene_of_point == s).squeeze(1)
        smp = torch.nonzero(scene == s).squeeze(1)
        where = xyz[pts].unsqueeze(0)
        step = max(1, MUTATE_CHUNK // max(1, len(pts)))
        for start in range(0, len(smp), step):
            chunk = smp[start:start + step]
            inside = ((where >= lo[chunk].unsqueeze(1))
                      & (where <= hi[chunk].unsqueeze(1))).all(dim=2)
            c, q = torch.nonzero(inside, as_tuple=True)
            new_s.append(chunk[c])
            new_p.append(pts[q])
    new_p = torch.cat(new_p) if new_p else point_idx[:0]
    new_s = torch.cat(new_s) if new_s else sample_idx[:0]
    keep = torch.bincount(new_s, minlength=p) == 0        # empty -> original members
    old = keep[sample_idx]
    out_p = torch.cat([new_p, point_idx[old]])
    out_s = torch.cat([new_s, sample_idx[old]])
    order = torch.argsort(out_s * (len(xyz) + 1) + out_p)
    return out_p[order], out_s[order]


# ----------------------------------------------------------------------------- transformation

def transform_samples(xyz, sample_idx, num_samples: int, generator: torch.Generator,
                      rotate: bool = True, scale=(0.8, 1.2), translate: float = 0.1):
    """The "geometric transformation" augmentation of Sec. 4.2 (Table 6 'trans.'), per sample.

    Our reading of the paper's three terms, for points already centred on their sample:

    - "point-wise scaling": every coordinate of the sample's points is multiplied by a factor
      drawn per sample and per axis from ``U(scale)`` (anisotropic; ``scale=None`` disables it);
    - "rotation": a rotation about the vertical z axis by an angle from ``U[0, 2 pi)`` (indoor
      objects stand upright);
    - "translation": a shift drawn per sample from ``U[-translate, translate]^3`` metres.

    Applied in that order: ``x' = R_z(theta) (s * x) + t``. All random numbers come from
    ``generator`` (7 per sample, drawn even for disabled parts), so a seed fixes the output.
    """
    p = int(num_samples)
    u = torch.rand((p, 7), generator=generator, dtype=torch.float64, device=generator.device)
    u = u.to(device=xyz.device, dtype=xyz.dtype)
    lo, hi = (1.0, 1.0) if scale is None else scale
    factor = lo + (hi - lo) * u[:, :3]
    theta = 2 * math.pi * u[:, 3] if rotate else torch.zeros_like(u[:, 3])
    shift = translate * (2 * u[:, 4:] - 1)
    pts = xyz * factor[sample_idx]
    cos, sin = torch.cos(theta)[sample_idx], torch.sin(theta)[sample_idx]
    x = cos * pts[:, 0] - sin * pts[:, 1]
    y = sin * pts[:, 0] + cos * pts[:, 1]
    return torch.stack([x, y, pts[:, 2]], dim=1) + shift[sample_idx]


def centre_samples(xyz, sample_idx, num_samples: int):
    """Subtract from each row the mean xyz of its sample (Sec. 4.2: object-level input)."""
    return xyz - segment_mean(xyz, sample_idx, int(num_samples))[sample_idx]
