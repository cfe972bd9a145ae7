"""nn.Modules on :class:`~twist_lib.sparse.tensor.SparseTensor` (the book's appendix, Conventions:
"Backbone and heads" and "Sparse convolution backends").

The modules own their parameters in one layout for every backend, so a state_dict trained with
one backend loads into another: convolution weight (K, cin, cout) with the kernel offsets in
lexicographic ``(dx, dy, dz)`` order, ``dz`` fastest (``{-1,0,1}^3`` for kernel 3, ``{0,1}^3`` for
the k2 s2 down / up convolutions); optional bias (cout,).  The backend is a property of the input
tensor (``x.backend``), not of the module.  BatchNorm, ReLU and :func:`cat` act on the feature
rows only and are the same for every backend.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from twist_lib.sparse import minkowski_backend, native, spconv_backend, torch_backend
from twist_lib.sparse.kernels import kernel_offsets
from twist_lib.sparse.tensor import SparseTensor



class Sequential(nn.Sequential):
    """``nn.Sequential`` of SparseTensor -> SparseTensor modules, in which a :class:`BatchNorm`
    followed by a :class:`ReLU` runs as one fused op where the compiled kernels apply
    (:meth:`BatchNorm.forward_relu`); the modules and the state_dict stay those of
    ``nn.Sequential``."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        modules, i = list(self), 0
        while i < len(modules):
            module, after = modules[i], modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(module, BatchNorm) and isinstance(after, ReLU) and module.fuses_relu(
                    x.feats):
                x, i = x.replace_feats(module.forward_relu(x.feats)), i + 2
            else:
                x, i = module(x), i + 1
        return x


def _runs_on_minkowski(x: SparseTensor) -> bool:
    """Whether a convolution of ``x`` goes to MinkowskiEngine.

    MinkowskiEngine 0.5.4 crashes (segfault) on empty coordinate maps; an empty input is sent to
    the torch backend, which returns the same (empty) result.
    """
    return x.backend == "minkowski" and x.feats.shape[0] > 0


def _runs_on_spconv(x: SparseTensor) -> bool:
    """Whether a convolution of ``x`` goes to spconv (empty inputs go to the torch backend:
    spconv cannot build a rulebook on an empty grid)."""
    return x.backend == "spconv" and x.feats.shape[0] > 0


class _SparseConvBase(nn.Module):
    """Weight (K, cin, cout), optional bias; MinkowskiEngine's uniform initialisation."""

    def __init__(self, cin: int, cout: int, kernel_size: int, bias: bool, fan: int):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, kernel_size
        volume = len(kernel_offsets(kernel_size))
        bound = 1.0 / math.sqrt(fan * volume)
        self.weight = nn.Parameter(torch.empty(volume, cin, cout).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(cout).uniform_(-bound, bound)) if bias else None

    def _check(self, x: SparseTensor) -> None:
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"twist_lib/sparse/layers.py: {type(self).__name__} expects "
                             f"{self.in_channels} input channels, got {x.feats.shape[1]}")

    def _finish(self, feats: torch.Tensor) -> torch.Tensor:
        return feats if self.bias is None else feats + self.bias.to(feats.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}")


class SubMConv3d(_SparseConvBase):
    """Submanifold convolution (odd kernel, stride 1): output voxels = input voxels.

    ``out[u] = sum_k x[u + d_k * stride] @ weight[k]`` over active voxels only, i.e. a dense
    ``conv3d`` with ``padding = kernel_size // 2`` on zero-filled inputs, read at the active sites.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, bias: bool = False):
        if kernel_size % 2 == 0:
            raise ValueError(f"twist_lib/sparse/layers.py: SubMConv3d needs an odd kernel_size, "
                             f"got {kernel_size}")
        super().__init__(cin, cout, kernel_size, bias, fan=cin)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check(x)
        if _runs_on_minkowski(x):
            feats = minkowski_backend.submanifold_conv(x.feats, self.weight, x.manager, x.stride,
                                                       self.kernel_size)
        elif _runs_on_spconv(x):
            feats = spconv_backend.submanifold_conv(x.feats, self.weight, x.manager, x.stride,
                                                    self.kernel_size)
        else:
            kmap = torch_backend.submanifold_map(x.manager, x.stride, self.kernel_size)
            feats = torch_backend.sparse_conv(x.feats, self.weight, kmap)
        return x.replace_feats(self._finish(feats))


class DownConv3d(_SparseConvBase):
    """Kernel-2 stride-2 convolution: stride ``s`` -> ``2s``.

    Output voxels are ``unique(floor(c / 2s) * 2s)``; each receives its (up to 8) children
    ``p + d * s``, ``d`` in ``{0,1}^3``, i.e. dense ``conv3d(kernel=2, stride=2)`` read at the
    output sites.
    """

    def __init__(self, cin: int, cout: int, bias: bool = False):
        super().__init__(cin, cout, 2, bias, fan=cin)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check(x)
        if _runs_on_minkowski(x):
            feats = minkowski_backend.down_conv(x.feats, self.weight, x.manager, x.stride)
        elif _runs_on_spconv(x):
            feats = spconv_backend.down_conv(x.feats, self.weight, x.manager, x.stride)
        else:
            kmap = torch_backend.down_map(x.manager, x.stride)
            feats = torch_backend.sparse_conv(x.feats, self.weight, kmap)
        return SparseTensor.from_manager(x.manager, 2 * x.stride, self._finish(feats), x.backend)


class UpConv3d(_SparseConvBase):
    """Kernel-2 stride-2 transposed convolution back onto the finer tensor ``target``.

    ``target`` must be the tensor ``x`` was down-sampled from (same coordinate manager, half the
    stride).  Each target voxel ``c`` receives ``x[p] @ weight[k]`` from its parent ``p`` with
    ``d_k = (c - p) / s``, i.e. dense ``conv_transpose3d(kernel=2, stride=2)`` read at the target.
    """

    def __init__(self, cin: int, cout: int, bias: bool = False):
        super().__init__(cin, cout, 2, bias, fan=cout)

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:
        self._check(x)
        if target.manager is not x.manager or x.stride != 2 * target.stride:
            raise ValueError("twist_lib/sparse/layers.py: UpConv3d target must be the tensor the "
                             f"input was down-sampled from (input stride {x.stride}, target stride "
                             f"{target.stride}, same coordinate manager: "
                             f"{target.manager is x.manager})")
        if _runs_on_minkowski(x):
            feats = minkowski_backend.up_conv(x.feats, self.weight, x.manager, target.stride)
        elif _runs_on_spconv(x):
            feats = spconv_backend.up_conv(x.feats, self.weight, x.manager, target.stride)
        else:
            kmap = torch_backend.down_map(x.manager, target.stride).transposed()
            feats = torch_backend.sparse_conv(x.feats, self.weight, kmap)
        return target.replace_feats(self._finish(feats))


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the feature rows (all voxels of the batch are the samples)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(super().forward(x.feats))

    def fuses_relu(self, feats: torch.Tensor) -> bool:
        """Whether :meth:`forward_relu` runs on ``feats`` (training mode, the compiled kernels)."""
        return (self.training and self.affine and self.track_running_stats
                and feats.shape[0] > 1 and native.usable(feats, feats.shape[1], norm=True))

    def forward_relu(self, feats: torch.Tensor) -> torch.Tensor:
        """``relu(batch_norm(feats))`` in training mode as one op (:class:`BatchNormReLU`), the
        running statistics updated as ``nn.BatchNorm1d`` does."""
        feats = feats.contiguous()
        with torch.no_grad():
            mean, var = native.column_stats(feats)  # float64 (torch.var_mean: 10x slower here)
            self.num_batches_tracked.add_(1)
            f = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
            n = feats.shape[0]
            self.running_mean.mul_(1 - f).add_(mean.float(), alpha=f)
            self.running_var.mul_(1 - f).add_((var * (n / (n - 1))).float(), alpha=f)
        return BatchNormReLU.apply(feats, self.weight, self.bias, mean.float().contiguous(),
                                   torch.rsqrt(var + self.eps).float().contiguous())


class BatchNormReLU(torch.autograd.Function):
    """``max(0, gamma (x - mean) invstd + beta)`` with the batch's ``mean`` and ``invstd``, on the
    compiled kernels (:mod:`twist_lib.sparse.native`): one pass forward, two backward, where
    batch norm then ReLU in torch ops take two and three. The backward is batch norm's (the
    statistics' own gradients included) applied to the gradient that the ReLU lets through:
    ``dx = gamma invstd (g' - sum(g') / N) - gamma invstd^3 sum(g' (x - mean)) / N (x - mean)``."""

    @staticmethod
    def forward(ctx, feats, weight, bias, mean, invstd):
        scale = (weight * invstd).detach().contiguous()
        beta = bias.detach().contiguous()
        ctx.save_for_backward(feats, weight, mean, invstd, scale, beta)
        return native.bn_relu_forward(feats, mean, scale, beta)

    @staticmethod
    def backward(ctx, grad):
        feats, weight, mean, invstd, scale, beta = ctx.saved_tensors
        grad, n = grad.contiguous(), feats.shape[0]
        sum_g, sum_gx = native.bn_relu_sums(feats, grad, mean, scale, beta)
        w, inv = weight.detach().double(), invstd.double()
        a, b, d = (t.float().contiguous() for t in (
            w * inv, -w * inv ** 3 * sum_gx / n, -w * inv * sum_g / n))
        dx = native.bn_relu_dx(feats, grad, mean, scale, beta, a, b, d)
        return dx, (sum_gx * inv).float(), sum_g.float(), None, None


class ReLU(nn.Module):
    """ReLU on the feature rows."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(F.relu(x.feats))


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate the features of tensors on the same coordinates (U-Net skip connections)."""
    first = tensors[0]
    for other in tensors[1:]:
        if other.manager is not first.manager or other.stride != first.stride:
            raise ValueError("twist_lib/sparse/layers.py: cat needs tensors on the same "
                             f"coordinates (strides {first.stride} and {other.stride}, same "
                             f"coordinate manager: {other.manager is first.manager})")
    return first.replace_feats(torch.cat([t.feats for t in tensors], dim=1))
