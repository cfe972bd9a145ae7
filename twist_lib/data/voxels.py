"""Voxelisation of a point cloud onto the sparse grid the backbone convolves (paper Sec. 5.1: voxel
size 2 cm, i.e. PointGroup's scale 50; the book's appendix, Conventions: "Backbone and heads").

Every point falls into the voxel ``floor(xyz / voxel_size)``; the grid is shifted so that the
smallest occupied index along each axis is 0. Voxels are numbered in lexicographic (x, y, z)
order of their grid coordinates, so the result does not depend on the order of the points.
"""
from __future__ import annotations

import numpy as np
import torch

VOXEL_SIZE = 0.02
# Three non-negative indices are packed into one int64 key: 21 bits each (2,097,152 voxels
# per axis, i.e. 41 km at 2 cm) keeps the key below 2**63.
_KEY_BITS = 21


def voxel_grid_coords(xyz, voxel_size: float = VOXEL_SIZE) -> np.ndarray:
    """Integer grid index of every point, shifted so the minimum along each axis is 0.

    Parameters
    ----------
    xyz : array (N, 3)
        Point coordinates in metres.
    voxel_size : float
        Edge length of a voxel in metres.

    Returns
    -------
    int64 array (N, 3)
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise ValueError(f"voxelize: xyz must have shape (N, 3) with N > 0, got {xyz.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxelize: voxel_size must be positive, got {voxel_size}")
    grid = np.floor(xyz / voxel_size).astype(np.int64)
    return grid - grid.min(axis=0)


def voxelize(xyz, voxel_size: float = VOXEL_SIZE):
    """Group the points of one scene into voxels.

    Parameters
    ----------
    xyz : array (N, 3)
        Point coordinates in metres.
    voxel_size : float
        Edge length of a voxel in metres (default 0.02, paper Sec. 5.1).

    Returns
    -------
    coords : int32 array (M, 3)
        Grid coordinates of the M occupied voxels, minimum 0 per axis, sorted lexicographically.
    p2v : int64 array (N,)
        Row of ``coords`` each point falls into: ``coords[p2v] == voxel_grid_coords(xyz)``.
    v2p : int64 array (M,)
        One representative point per voxel: the first point (lowest index) that falls into it.
    """
    grid = voxel_grid_coords(xyz, voxel_size)
    extent = grid.max(axis=0)
    if (extent >= 1 << _KEY_BITS).any():
        raise ValueError(f"voxelize: the scene spans {extent.tolist()} voxels of {voxel_size} m, "
                         f"more than {1 << _KEY_BITS} along an axis; check the units of xyz")
    key = (grid[:, 0] << (2 * _KEY_BITS)) | (grid[:, 1] << _KEY_BITS) | grid[:, 2]
    _, v2p, p2v = np.unique(key, return_index=True, return_inverse=True)
    coords = grid[v2p].astype(np.int32)
    return coords, p2v.astype(np.int64).reshape(-1), v2p.astype(np.int64)


def voxel_mean(values, p2v, num_voxels: int):
    """Average point features into their voxels.

    Parameters
    ----------
    values : numpy array or torch tensor (N, C) or (N,)
        Per-point values.
    p2v : integer array / tensor (N,)
        Voxel row of each point (from :func:`voxelize`).
    num_voxels : int
        M, the number of voxels. Voxels without points get 0.

    Returns
    -------
    (M, C) or (M,) array of the same library (numpy -> numpy float, torch -> torch) as ``values``.
    """
    if isinstance(values, torch.Tensor):
        p2v = torch.as_tensor(p2v, dtype=torch.long, device=values.device)
        values = values if values.is_floating_point() else values.float()
        sums = values.new_zeros((num_voxels,) + tuple(values.shape[1:])).index_add_(0, p2v, values)
        counts = torch.bincount(p2v, minlength=num_voxels).clamp_(min=1).to(values.dtype)
        return sums / counts.view((-1,) + (1,) * (values.dim() - 1))
    values = np.asarray(values)
    values = values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)
    p2v = np.asarray(p2v, dtype=np.int64)
    sums = np.zeros((num_voxels,) + values.shape[1:], dtype=values.dtype)
    np.add.at(sums, p2v, values)
    counts = np.maximum(np.bincount(p2v, minlength=num_voxels), 1).astype(values.dtype)
    return sums / counts.reshape((-1,) + (1,) * (values.ndim - 1))
