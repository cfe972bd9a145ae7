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
             instance: torch.Tensor) -> dict:
    """Eq. (1): ``L = L_s + L_o`` for one batch; returns every term and their sum as ``loss``.

    ``instance != -100`` marks the points whose offset is supervised.
    """
    ls = semantic_loss(out["semantic_logits"], semantic)
    l1, ldir = offset_loss(out["offset"], offset, instance != IGNORE_INDEX)
    return {"loss": ls + l1 + ldir, "semantic": ls, "offset_l1": l1, "offset_dir": ldir}
