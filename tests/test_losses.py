"""Eqs. (1)-(2) against a per-point reference written out by hand."""
import math

import numpy as np
import torch

from twist_lib.losses import offset_loss, phi_loss, semantic_loss


def reference_offset_loss(pred, target, valid):
    """Eq. (2), point by point: mean over valid points of |o - o_hat|_1 - cos(o, o_hat)."""
    l1, cos, n = 0.0, 0.0, 0
    for p, t, v in zip(pred, target, valid):
        if not v:
            continue
        n += 1
        l1 += sum(abs(a - b) for a, b in zip(p, t))
        cos += sum(a * b for a, b in zip(p, t)) / (math.sqrt(sum(a * a for a in p)) * math.sqrt(sum(b * b for b in t)))
    return l1 / n, -cos / n


def test_offset_loss_matches_per_point_reference():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    valid = rng.random(50) < 0.6
    l1, direction = offset_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(valid))
    ref_l1, ref_dir = reference_offset_loss(pred, target, valid)
    assert abs(float(l1) - ref_l1) < 1e-5 and abs(float(direction) - ref_dir) < 1e-5


def test_offset_loss_hand_case():
    # one valid point: pred (1,0,0), target (0,2,0): L1 = 1 + 2 = 3, cos = 0; the invalid one is ignored
    pred = torch.tensor([[1.0, 0, 0], [5.0, 5, 5]])
    target = torch.tensor([[0.0, 2, 0], [0.0, 0, 0]])
    l1, direction = offset_loss(pred, target, torch.tensor([True, False]))
    assert float(l1) == 3.0 and abs(float(direction)) < 1e-7
    # same direction: cos = 1 -> direction term -1
    _, direction = offset_loss(torch.tensor([[0.0, 0, 3]]), torch.tensor([[0.0, 0, 1]]), torch.tensor([True]))
    assert abs(float(direction) + 1.0) < 1e-6


def test_losses_with_nothing_valid_are_zero_and_differentiable():
    logits = torch.randn(4, 3, requires_grad=True)
    pred = torch.randn(4, 3, requires_grad=True)
    ls = semantic_loss(logits, torch.full((4,), -100))
    l1, ld = offset_loss(pred, torch.zeros(4, 3), torch.zeros(4, dtype=torch.bool))
    (ls + l1 + ld).backward()
    assert float(ls.detach()) == 0 and float(l1.detach()) == 0 and float(ld.detach()) == 0
    assert logits.grad is not None and pred.grad is not None


def test_phi_loss_is_eq1_sum_and_ignores_minus_100():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [9.0, -9.0]])
    semantic = torch.tensor([0, 1, -100])
    # CE by hand over the first two points
    ce = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e))) / 2
    out = {"semantic_logits": logits, "offset": torch.tensor([[1.0, 0, 0]] * 3)}
    losses = phi_loss(out, semantic, torch.tensor([[1.0, 0, 0]] * 3), torch.tensor([0, -100, -100]))
    assert abs(float(losses["semantic"]) - ce) < 1e-6
    assert float(losses["offset_l1"]) == 0.0 and abs(float(losses["offset_dir"]) + 1) < 1e-6
    assert abs(float(losses["loss"]) - (ce + 0.0 - 1.0)) < 1e-6
