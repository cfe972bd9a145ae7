"""Pure-PyTorch sparse convolution: hashed neighbour search + gather-GEMM-scatter.

No compilation; every step is a torch op, so it runs on CPU and CUDA alike (parity with dense
conv3d: ``tests/test_sparse.py``; the book's appendix, Conventions: "Sparse convolution
backends").

A convolution with kernel offsets ``d_k`` computes, for every output voxel ``u``,

    out[u] = sum_k feats[u + d_k * stride] @ W[k]        (only over active input voxels)

which is stored as a :class:`KernelMap`: for each offset ``k`` the pairs ``(in_row, out_row)``
of voxels it connects.  Maps are built once per coordinate set and cached on the
:class:`~twist_lib.sparse.tensor.CoordinateManager` (``manager.cache``).

Kernel offsets come in the order every backend shares (:mod:`twist_lib.sparse.kernels`), so
checkpoints are portable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from twist_lib.sparse import native
from twist_lib.sparse.kernels import kernel_offsets

if TYPE_CHECKING:
    from twist_lib.sparse.tensor import CoordinateManager


@dataclass(frozen=True)
class KernelMap:
    """Per kernel offset ``k``: ``pairs[k] = (in_rows, out_rows)`` with equal lengths.

    ``pairs[k] = None`` marks the identity (every row to itself, the centre of a submanifold
    kernel), which is computed without gather and scatter.
    """

    pairs: list[tuple[torch.Tensor, torch.Tensor] | None]
    n_in: int
    n_out: int

    def transposed(self) -> "KernelMap":
        """The map of the transposed convolution (same weights, inputs and outputs swapped)."""
        pairs = [None if p is None else (p[1], p[0]) for p in self.pairs]
        return KernelMap(pairs, self.n_out, self.n_in)

    def centre(self) -> int | None:
        """The identity offset's index (a submanifold kernel's centre), or None."""
        return next((k for k, p in enumerate(self.pairs) if p is None), None)

    def num_pairs(self) -> int:
        """Every (input, output) pair of every offset; the identity counts ``n_in`` pairs."""
        return sum(self.n_in if p is None else len(p[0]) for p in self.pairs)

    def flops(self, cin: int, cout: int) -> int:
        """Floating-point operations of one forward pass with ``cin`` -> ``cout`` channels:
        ``2 * pairs * cin * cout`` (a multiply and an add per pair and weight). The backward
        pass costs twice this (the input and the weight gradients)."""
        return 2 * self.num_pairs() * cin * cout


def submanifold_map(manager: CoordinateManager, stride: int, kernel_size: int) -> KernelMap:
    """Neighbour map of a submanifold convolution (output voxels = input voxels), cached.

    Offset ``k`` and its mirror ``K-1-k`` (``d_{K-1-k} = -d_k`` in the lexicographic order) connect
    the same voxel pairs in opposite directions, so only half of the offsets are searched.
    """
    key = ("subm", stride, kernel_size)
    if key not in manager.cache:
        coords = manager.coords(stride).long()
        offsets = torch.tensor(kernel_offsets(kernel_size), dtype=torch.int64, device=coords.device)
        n_kernel = offsets.shape[0]
        pairs: list = [None] * n_kernel  # the centre stays None: the identity
        for k in range(n_kernel // 2):
            query = coords.clone()
            query[:, 1:] += offsets[k] * stride
            found_in = manager.lookup(stride, query)
            out_rows = torch.nonzero(found_in >= 0).squeeze(1)
            in_rows = found_in[out_rows]
            pairs[k] = (in_rows, out_rows)
            pairs[n_kernel - 1 - k] = (out_rows, in_rows)
        manager.cache[key] = KernelMap(pairs, coords.shape[0], coords.shape[0])
    return manager.cache[key]


def down_map(manager: CoordinateManager, stride: int) -> KernelMap:
    """Map of the kernel-2 stride-2 convolution from ``stride`` to ``2 * stride``, cached.

    Every input voxel ``c`` feeds exactly one output, its parent ``p = floor(c / 2s) * 2s``, through
    the offset ``(c - p) / s`` in ``{0, 1}^3``.
    """
    key = ("down", stride)
    if key not in manager.cache:
        parents = manager.parents(stride)
        fine = manager.coords(stride).long()
        coarse = manager.coords(2 * stride).long()
        offset = torch.div(fine[:, 1:] - coarse[parents, 1:], stride, rounding_mode="floor")
        k_index = offset[:, 0] * 4 + offset[:, 1] * 2 + offset[:, 2]
        order = torch.argsort(k_index, stable=True)
        counts = torch.bincount(k_index, minlength=8).tolist()
        pairs = [(rows, parents[rows]) for rows in torch.split(order, counts)]
        manager.cache[key] = KernelMap(pairs, fine.shape[0], coarse.shape[0])
    return manager.cache[key]


class GatherGemmScatter(torch.autograd.Function):
    """``out[o] += feats[i] @ W[k]`` over the map's pairs; memory-lean backward.

    Only ``feats`` and ``weight`` are saved; the gathered rows are recomputed in backward
    (plain autograd would keep every offset's gathered copy: about 6x the memory, as measured in
    the book's appendix, Conventions: "Sparse convolution backends").
    """

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ctx.kmap = kmap
        feats, weight = feats.contiguous(), weight.contiguous()
        ctx.save_for_backward(feats, weight)
        centre = kmap.centre()  # the identity starts the sum: no zero-filled output to add to
        out = feats @ weight[centre] if centre is not None else feats.new_zeros(
            kmap.n_out, weight.shape[2])
        fused = native.usable(feats, weight.shape[2])  # the compiled kernels (native.py)
        for pair, w in zip(kmap.pairs, weight):
            if pair is None:
                continue
            elif pair[0].numel() and fused:
                native.gemm_pairs(feats, w, out, *pair)
            elif pair[0].numel():
                out.index_add_(0, pair[1], feats.index_select(0, pair[0]) @ w)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        want_feats, want_weight = ctx.needs_input_grad[:2]
        centre = ctx.kmap.centre()
        grad_feats = None if not want_feats else grad_out @ weight[centre].t() if (
            centre is not None) else torch.zeros_like(feats)
        grad_weight = torch.zeros_like(weight) if want_weight else None
        fused_feats = want_feats and native.usable(grad_out, weight.shape[1])
        fused_weight = want_weight and native.usable(grad_out, weight.shape[2])
        w_t = weight.transpose(1, 2).contiguous() if fused_feats else None
        for k, pair in enumerate(ctx.kmap.pairs):
            if pair is None:
                if want_weight:
                    grad_weight[k] = feats.t() @ grad_out
                continue
            if not pair[0].numel():
                continue
            in_rows, out_rows = pair
            if fused_feats:
                native.gemm_pairs(grad_out, w_t[k], grad_feats, out_rows, in_rows)
            if fused_weight:
                native.outer_pairs(feats, grad_out, grad_weight[k], in_rows, out_rows)
            if (want_feats and not fused_feats) or (want_weight and not fused_weight):
                grad_rows = grad_out.index_select(0, out_rows)
                if want_feats and not fused_feats:
                    grad_feats.index_add_(0, in_rows, grad_rows @ weight[k].t())
                if want_weight and not fused_weight:
                    grad_weight[k] = feats.index_select(0, in_rows).t() @ grad_rows
        return grad_feats, grad_weight, None


def sparse_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Apply the map with weight (K, cin, cout); autocast-aware.

    Under autocast the convolution runs in the autocast dtype (inputs and weight cast to it),
    otherwise in ``feats.dtype`` (the weight is cast to it).
    """
    device_type = feats.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = feats.dtype
    with torch.autocast(device_type=device_type, enabled=False):
        return GatherGemmScatter.apply(feats.to(dtype), weight.to(dtype), kmap)
