"""Module B: the proposal re-correction network Psi (paper Sec. 4.2, Fig. 3, Table 6).

Psi takes one object-level sample per instance proposal, the concatenation of its points'
coordinates and backbone features (``k_j`` in R^{N_j x (3+F)}, Sec. 4.2 "Input Data"), and
predicts a semantic class ``e_j`` and an instance certainty score ``v_j`` in (0, 1).

- per-sample re-voxelisation into a small grid, :func:`voxelize_samples`; the small sparse
  encoder + two MLP heads, :class:`Psi`; the loss L^Psi = L^Psi_sem + L^Psi_sc, :func:`psi_loss`;
- Psi for a config, :func:`build_psi`, and what it reads besides xyz, :func:`psi_features`;
- inference (Sec. 4.3 and the test-time re-correction of Sec. 5.3): :func:`recorrect` runs Psi
  on every proposal of a batch at once and returns each proposal's re-predicted class ``e_j``
  and certainty ``v_j``.

The samples themselves (membership rows, their IoU targets, the mutation and transformation
augmentations) are :mod:`twist_lib.object_samples`; how a round trains Psi is
:mod:`twist_lib.psi_training`. The encoder is the U-Net of :mod:`twist_lib.network` with fewer
levels and channels ("a much smaller decoder with fewer layers and stages ... with a
voxelization size of 2.0 cm", Sec. 5).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import sparse
from .network import ModelSize, SparseUNet
from .object_samples import Samples, centre_samples, segment_extreme, segment_mean


# ----------------------------------------------------------------------------- voxelisation

def voxelize_samples(xyz, feats, sample_idx, num_samples: int, grid: int = 14,
                     min_voxel: float = 0.02):
    """Re-voxelise every sample into its own ``grid ** 3`` cells (PointGroup / HAIS ScoreNet input).

    Per sample, ``edge = max(extent / grid, min_voxel)`` with ``extent`` the largest side of the
    sample's bounding box (a sample fits in ``grid`` cells, never finer than the scene's 2 cm
    voxels, Sec. 5); ``coords = clamp(floor((xyz - min) / edge), 0, grid - 1)``. Features are
    averaged per voxel. Returns ``coords`` (V, 4) int32 ``(sample, x, y, z)``, ``voxel_feats``
    (V, C) and ``point_to_voxel`` (M,) int64.
    """
    p = int(num_samples)
    sample_idx = sample_idx.long()
    lo = segment_extreme(xyz, sample_idx, p, "amin")
    hi = segment_extreme(xyz, sample_idx, p, "amax")
    extent = (hi - lo).max(dim=1).values
    edge = torch.clamp(extent / grid, min=min_voxel)
    cell = torch.floor((xyz - lo[sample_idx]) / edge[sample_idx].unsqueeze(1))
    cell = cell.clamp(0, grid - 1).long()
    key = ((sample_idx * grid + cell[:, 0]) * grid + cell[:, 1]) * grid + cell[:, 2]
    keys, p2v = torch.unique(key, return_inverse=True)
    coords = torch.stack([keys // grid ** 3, keys // grid ** 2 % grid, keys // grid % grid,
                          keys % grid], dim=1).int()
    return coords, segment_mean(feats, p2v, len(keys)), p2v


# ----------------------------------------------------------------------------- the network Psi

class Psi(nn.Module):
    """The re-correction module Psi (Sec. 4.2, Fig. 3): sparse encoder + class and score heads.

    ``forward(xyz, feats, sample_idx, num_samples)`` takes the member points of all samples
    (``xyz`` centred on their sample, ``feats`` the backbone features, so ``in_channels = 3 + F``),
    re-voxelises them (:func:`voxelize_samples`), runs every sample as one batch item of a single
    sparse tensor through the U-Net of :mod:`twist_lib.network`, max-pools each sample's voxels
    and returns ``{"class_logits": (P, K), "score_logit": (P,), "score": (P,)}`` where ``score``
    is the sigmoid certainty ``v_j``. A sample with no points pools to zeros.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, levels: int = 2,
                 blocks: int = 1, grid: int = 14, min_voxel: float = 0.02, backend: str = "auto"):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.width, self.levels, self.blocks = width, levels, blocks
        self.grid, self.min_voxel = grid, min_voxel
        self.backend = sparse.resolve_backend(backend)
        self.encoder = SparseUNet(in_channels, ModelSize(m=width, levels=levels, blocks=blocks))
        self.class_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                        nn.Linear(width, num_classes))
        self.score_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, xyz, feats, sample_idx, num_samples: int) -> dict:
        p = int(num_samples)
        inputs = torch.cat([xyz.to(feats.dtype), feats], dim=1)
        if p == 0 or len(inputs) == 0:
            return self._heads(inputs.new_zeros((p, self.width)))
        coords, voxel_feats, _ = voxelize_samples(xyz, inputs, sample_idx, p, self.grid,
                                                  self.min_voxel)
        x = sparse.SparseTensor(coords, voxel_feats, backend=self.backend)
        with self._batchnorm_guard(coords):
            voxels = self.encoder(x).feats
        seg = coords[:, 0].long().unsqueeze(1).expand_as(voxels)
        pooled = voxels.new_zeros((p, voxels.shape[1]))
        pooled = pooled.scatter_reduce(0, seg, voxels, "amax", include_self=False)
        return self._heads(pooled)

    def _heads(self, pooled: torch.Tensor) -> dict:
        logit = self.score_head(pooled).squeeze(1)
        return {"class_logits": self.class_head(pooled), "score_logit": logit,
                "score": torch.sigmoid(logit)}

    def _batchnorm_guard(self, coords: torch.Tensor):
        """Run BatchNorm on running statistics when a training batch has a single voxel at the
        coarsest level (batch statistics of one value are undefined; nn.BatchNorm1d raises)."""
        if not self.training:
            return contextlib.nullcontext()
        step = 2 ** (self.levels - 1)
        coarse = torch.cat([coords[:, :1], torch.div(coords[:, 1:], step, rounding_mode="floor")],
                           dim=1)
        if len(torch.unique(coarse, dim=0)) > 1:
            return contextlib.nullcontext()
        return _eval_batchnorm(self.encoder)

    def signature(self) -> dict:
        """What a checkpoint must agree on to load into this model."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "width": self.width, "levels": self.levels, "blocks": self.blocks,
                "grid": self.grid, "min_voxel": self.min_voxel}


@contextlib.contextmanager
def _eval_batchnorm(module: nn.Module):
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


# ----------------------------------------------------------------------------- loss

def psi_loss(out: dict, iou, cls, class_iou: float = 0.5) -> dict:
    """L^Psi = L^Psi_sem + L^Psi_sc (Sec. 4.2).

    ``psi_score`` is eq. (5): binary cross entropy of ``v_j = sigmoid(score_logit)`` against the
    soft target ``iou_j``, averaged over all M samples. ``psi_class`` is the cross entropy of
    ``class_logits`` against ``cls`` over the samples with ``iou > class_iou`` (0.5 in the paper)
    only, 0 when there are none. No samples -> zeros that still carry a graph.
    """
    logit, logits = out["score_logit"], out["class_logits"]
    zero = logit.sum() * 0.0 + logits.sum() * 0.0
    iou = torch.as_tensor(iou, device=logit.device).to(logit.dtype)
    cls = torch.as_tensor(cls, device=logit.device).long()
    score = F.binary_cross_entropy_with_logits(logit, iou) if len(logit) else zero
    use = (iou > class_iou) & (cls >= 0)
    klass = F.cross_entropy(logits[use], cls[use]) if bool(use.any()) else zero
    return {"psi_score": score, "psi_class": klass, "loss": score + klass}


# ----------------------------------------------------------------------------- Psi in the pipeline

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


@torch.no_grad()
def recorrect(psi: Psi, xyz: torch.Tensor, feats: torch.Tensor, samples: Samples):
    """Psi's re-predicted class ``e_j`` and certainty score ``v_j`` of every sample (Sec. 4.3),
    in eval mode: ``(classes int64 (P,), scores float32 (P,))``."""
    was_training = psi.training
    psi.eval()
    local = centre_samples(xyz.float()[samples.point_idx], samples.sample_idx, samples.n)
    pred = psi(local, feats[samples.point_idx].float(), samples.sample_idx, samples.n)
    psi.train(was_training)
    return pred["class_logits"].argmax(1), pred["score"].float()
