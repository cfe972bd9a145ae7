"""The network Phi of the supervised baseline (paper Sec. 3; the book's appendix, Conventions:
"Backbone and heads").

Phi = Sparse U-Net + semantic head + offset head (PointGroup conventions):

- U-Net over 2 cm voxels with widths ``[m, 2m, ..., L*m]``; each level has ``blocks`` residual
  blocks (BN-ReLU-SubMConv3x3x3, twice, plus identity or 1x1 projection); going down is a k2 s2
  convolution, going up a transposed k2 s2 convolution whose output is concatenated with the skip
  and reduced back to the level's width.
- Semantic head: ``Linear(m, K)``; offset head: ``Linear-BN-ReLU-Linear(3)`` on point features.

Two named sizes (:data:`MODEL_SIZES`): ``small`` trains on the CPU synthetic benchmark in minutes;
``paper`` is PointGroup's m=32, 7-level, 2-block U-Net for a GPU. (The paper itself uses CSC's
Res16UNet34C in MinkowskiEngine, Sec. 5.1; we keep PointGroup's U-Net, which every one of our
sparse backends runs with the same weights: the book's appendix, Conventions: "Backbone and
heads".)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import sparse


@dataclass(frozen=True)
class ModelSize:
    """Width ``m``, number of levels and residual blocks per level of the U-Net."""
    m: int
    levels: int
    blocks: int


MODEL_SIZES = {
    "tiny": ModelSize(m=8, levels=3, blocks=1),     # smoke tests: seconds
    "small": ModelSize(m=16, levels=5, blocks=1),   # CPU synthetic benchmark: minutes
    "paper": ModelSize(m=32, levels=7, blocks=2),   # PointGroup's U-Net, for a GPU
}


def model_size(name: str) -> ModelSize:
    if name not in MODEL_SIZES:
        raise ValueError(f"unknown model size '{name}'; choose one of {sorted(MODEL_SIZES)}")
    return MODEL_SIZES[name]


class ResidualBlock(nn.Module):
    """(BN-ReLU-SubMConv3) x 2 plus a shortcut (identity, or a 1x1x1 conv when widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # a 1x1x1 convolution is a per-voxel linear map: the same weights on both backends
        self.shortcut = None if cin == cout else nn.Linear(cin, cout, bias=False)
        self.body = sparse.Sequential(
            sparse.BatchNorm(cin), sparse.ReLU(), sparse.SubMConv3d(cin, cout, kernel_size=3),
            sparse.BatchNorm(cout), sparse.ReLU(), sparse.SubMConv3d(cout, cout, kernel_size=3),
        )

    def forward(self, x):
        identity = x.feats if self.shortcut is None else self.shortcut(x.feats)
        y = self.body(x)
        return y.replace_feats(y.feats + identity)


def _blocks(cin: int, cout: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(cin if i == 0 else cout, cout) for i in range(n)])


class UNetLevel(nn.Module):
    """One level of the U-Net: blocks, then (if not the deepest) down -> inner level -> up -> merge."""

    def __init__(self, widths: list[int], blocks: int):
        super().__init__()
        c = widths[0]
        self.encode = _blocks(c, c, blocks)
        self.inner = None
        if len(widths) > 1:
            c2 = widths[1]
            self.down = sparse.Sequential(sparse.BatchNorm(c), sparse.ReLU(), sparse.DownConv3d(c, c2))
            self.inner = UNetLevel(widths[1:], blocks)
            self.up_norm = sparse.Sequential(sparse.BatchNorm(c2), sparse.ReLU())
            self.up = sparse.UpConv3d(c2, c)
            self.decode = _blocks(2 * c, c, blocks)

    def forward(self, x):
        x = self.encode(x)
        if self.inner is None:
            return x
        y = self.inner(self.down(x))
        y = self.up(self.up_norm(y), x)
        return self.decode(sparse.cat(x, y))


class SparseUNet(nn.Module):
    """Input conv + recursive U-Net + output BN-ReLU; returns voxel features of width m."""

    def __init__(self, in_channels: int, size: ModelSize):
        super().__init__()
        widths = [size.m * (i + 1) for i in range(size.levels)]
        self.stem = sparse.SubMConv3d(in_channels, size.m, kernel_size=3)
        self.unet = UNetLevel(widths, size.blocks)
        self.out = sparse.Sequential(sparse.BatchNorm(size.m), sparse.ReLU())

    def forward(self, x):
        return self.out(self.unet(self.stem(x)))


class Phi(nn.Module):
    """The baseline network Phi (paper Sec. 3): per-point semantic logits and offsets.

    ``forward(batch)`` reads the batch dict of :mod:`twist_lib.data.batch` (``voxel_coords``,
    ``voxel_feats``, ``p2v``) and returns ``{"semantic_logits": (N, K), "offset": (N, 3),
    "features": (N, m)}`` for every input point (voxel features gathered through ``p2v``).
    """

    def __init__(self, in_channels: int, num_classes: int, size: str | ModelSize = "small",
                 backend: str = "auto"):
        super().__init__()
        self.size = model_size(size) if isinstance(size, str) else size
        self.size_name = size if isinstance(size, str) else None
        self.in_channels, self.num_classes = in_channels, num_classes
        self.backend = sparse.resolve_backend(backend)
        m = self.size.m
        self.backbone = SparseUNet(in_channels, self.size)
        self.semantic_head = nn.Linear(m, num_classes)
        self.offset_head = nn.Sequential(nn.Linear(m, m), nn.BatchNorm1d(m), nn.ReLU(), nn.Linear(m, 3))

    def forward(self, batch: dict) -> dict:
        x = sparse.SparseTensor(batch["voxel_coords"], batch["voxel_feats"], backend=self.backend)
        voxel_features = self.backbone(x).feats
        features = voxel_features[batch["p2v"]]
        return {
            "semantic_logits": self.semantic_head(features),
            "offset": self.offset_head(features),
            "features": features,
        }

    def signature(self) -> dict:
        """What a checkpoint must agree on to load into this model."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "m": self.size.m, "levels": self.size.levels, "blocks": self.size.blocks}


def in_channels(cfg) -> int:
    """Input channels of Phi for a config: rgb, plus xyz when ``use_xyz_features``."""
    return 6 if cfg.use_xyz_features else 3


def build_model(cfg, meta: dict) -> Phi:
    """Phi as a config and a dataset's ``meta.json`` describe it."""
    return Phi(in_channels(cfg), meta["num_classes"], size=cfg.model_size, backend=cfg.backend)
