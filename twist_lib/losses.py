"""Losses of Phi: eq. (1) L = L_s + L_o, with the offset loss of eq. (2).

Used for labelled scenes (eq. 1) and, with pseudo labels in place of labels, for unlabelled scenes
(eq. 4); ignore = -100 everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.classes import IGNORE_INDEX


def semantic_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_s: cross entropy over points whose label is not -100 (0 when there are none)."""
    if not (target != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def offset_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """L_o of eq. (2), split into its two terms ``(l1, direction)``.

    Over the points with a valid instance (``valid``), the L1 term is ``|o - o_hat|_1`` (summed over
    x, y, z) and the direction term is ``-cos(o, o_hat)``, both averaged over those points
    (PointGroup's normalisation; the paper writes 1/N for a scene whose N points all carry an
    offset). Returns zeros when no point is valid.
    """
    pred, target = pred.float(), target.float()
    n = valid.sum()
    if n == 0:
        zero = pred.sum() * 0.0
        return zero, zero
    w = valid.float()
    l1 = ((pred - target).abs().sum(dim=1) * w).sum() / n
    t_dir = target / (target.norm(dim=1, keepdim=True) + eps)
    p_dir = pred / (pred.norm(dim=1, keepdim=True) + eps)
    direction = -((t_dir * p_dir).sum(dim=1) * w).sum() / n
    return l1, direction


def phi_loss(out: dict, semantic: torch.Tensor, offset: torch.Tensor,
             instance: torch.Tensor | None = None, offset_valid: torch.Tensor | None = None) -> dict:
    """Eq. (1): ``L = L_s + L_o`` for one batch; returns every term and their sum as ``loss``.

    ``offset_valid`` marks the points whose offset is supervised; by default
    ``instance != -100``.
    """
    if offset_valid is None:
        offset_valid = instance != IGNORE_INDEX
    ls = semantic_loss(out["semantic_logits"], semantic)
    l1, ldir = offset_loss(out["offset"], offset, offset_valid)
    return {"loss": ls + l1 + ldir, "semantic": ls, "offset_l1": l1, "offset_dir": ldir}


def split_phi_loss(out: dict, batch: dict) -> dict:
    """Eqs. (3)-(4): ``L^Phi = L^l + L^u`` with each term the loss of eq. (1) averaged over the
    points of its own scenes: the labelled scenes against their labels, the unlabelled ones
    against their pseudo labels (``batch["labelled"]`` says which is which). Returns ``loss``
    and every term of both, suffixed ``_l`` and ``_u``; a batch without unlabelled scenes gives
    exactly eq. (1)."""
    point_labelled = batch["labelled"].to(batch["batch_index"].device)[batch["batch_index"]]
    result, total = {}, 0.0
    for suffix, mask in (("l", point_labelled), ("u", ~point_labelled)):
        if not bool(mask.any()):
            continue
        semantic = torch.where(mask, batch["semantic"], torch.full_like(batch["semantic"], IGNORE_INDEX))
        terms = phi_loss(out, semantic, batch["offset"], offset_valid=batch["offset_valid"] & mask)
        total = total + terms["loss"]
        result.update({f"{k}_{suffix}": v for k, v in terms.items()})
    result["loss"] = total
    return result
