"""Sparse 3D convolution with interchangeable backends (the book's appendix, Conventions: "Sparse
convolution backends").

- ``"torch"``: pure PyTorch (hashed neighbour search, gather-GEMM-scatter), no compilation,
  CPU or CUDA (:mod:`twist_lib.sparse.torch_backend`).
- ``"minkowski"``: MinkowskiEngine 0.5.4 when it is installed
  (:mod:`twist_lib.sparse.minkowski_backend`).
- ``"spconv"``: spconv 2.x (``pip install spconv-cu126``; CPU or CUDA) when it is installed
  (:mod:`twist_lib.sparse.spconv_backend`).

Which one runs is decided in :mod:`twist_lib.sparse.backends`; the kernel-offset order all share
lives in :mod:`twist_lib.sparse.kernels`.

Usage::

    from twist_lib import sparse
    x = sparse.SparseTensor(coords, feats, backend="auto")   # coords (M,4) (batch, x, y, z)
    y = sparse.SubMConv3d(3, 16)(x)
    z = sparse.DownConv3d(16, 32)(y)                          # stride 2
    u = sparse.UpConv3d(32, 16)(z, y)                         # back on y's voxels
    s = sparse.cat(y, u)

All backends use the same parameter layout, so a state_dict moves between them unchanged.
"""
from twist_lib.sparse.layers import (BatchNorm, DownConv3d, ReLU, Sequential, SubMConv3d,
                                     UpConv3d, cat)
from twist_lib.sparse.backends import BACKENDS, available_backends, resolve_backend
from twist_lib.sparse.kernels import kernel_offsets
from twist_lib.sparse.tensor import CoordinateManager, SparseTensor

__all__ = ["SparseTensor", "CoordinateManager", "BACKENDS", "available_backends", "resolve_backend",
           "SubMConv3d", "DownConv3d", "UpConv3d", "BatchNorm", "ReLU", "cat", "Sequential",
           "kernel_offsets"]
