"""Sparse voxel tensors and the coordinate manager they share.

A :class:`SparseTensor` is a set of unique integer voxel coordinates ``(batch, x, y, z)`` with one
feature row per voxel.  Coordinates are always expressed in stride-1 voxel units (the
MinkowskiEngine convention): a tensor at stride ``s`` has spatial coordinates that are multiples of
``s``.

Every tensor carries a :class:`CoordinateManager`.  The manager owns the coordinate sets of one
input at every stride reached by down-sampling (down = conv k2 s2; the book's appendix,
Conventions: "Backbone and heads"), sorted int64 hash keys for neighbour search, and a cache in
which the backends keep their neighbour maps, so that the maps of one resolution are built once
and shared by every layer that runs at that resolution.  Layer outputs and
:meth:`SparseTensor.replace_feats` keep the manager.
"""
from __future__ import annotations

import torch

from twist_lib.sparse.backends import resolve_backend

#: Extra room (in voxels) kept around the input's bounding box by the key codec, so that the
#: coordinates of coarser strides (floor towards -inf) still have valid keys.  Supports strides up
#: to 1024.
KEY_MARGIN = 1024

class _KeyCodec:
    """Bijective int64 hash of ``(batch, x, y, z)`` inside a padded bounding box.

    The box is the input's bounding box grown by :data:`KEY_MARGIN` voxels on the spatial axes.
    Keys are row-major (batch slowest, z fastest), so sorting keys sorts coordinates
    lexicographically.
    """

    def __init__(self, coords: torch.Tensor):
        if coords.shape[0] == 0:
            lo = [0, 0, 0, 0]
            hi = [0, 0, 0, 0]
        else:
            lo = coords.min(0).values.tolist()
            hi = coords.max(0).values.tolist()
        lo = [lo[0]] + [v - KEY_MARGIN for v in lo[1:]]
        hi = [hi[0]] + [v + KEY_MARGIN for v in hi[1:]]
        size = [h - l + 1 for l, h in zip(lo, hi)]
        if size[0] * size[1] * size[2] * size[3] >= 2 ** 62:
            raise ValueError("twist_lib/sparse/tensor.py: coordinates span too large a box to hash "
                             f"into int64 keys (batch range {size[0]}, spatial extents {size[1:]})")
        mult = [size[1] * size[2] * size[3], size[2] * size[3], size[3], 1]
        device = coords.device
        self.lo = torch.tensor(lo, dtype=torch.int64, device=device)
        self.size = torch.tensor(size, dtype=torch.int64, device=device)
        self.mult = torch.tensor(mult, dtype=torch.int64, device=device)

    def encode(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of ``coords`` (M,4) and a mask of the rows that lie inside the box."""
        rel = coords.long() - self.lo
        inside = ((rel >= 0) & (rel < self.size)).all(dim=1)
        return (rel * self.mult).sum(dim=1), inside

    def decode(self, keys: torch.Tensor) -> torch.Tensor:
        """Coordinates (M,4) int32 of keys made by :meth:`encode`."""
        rel = (keys.unsqueeze(1) // self.mult) % self.size
        return (rel + self.lo).int()


class _CoordinateSet:
    """The unique coordinates of one stride with their sorted keys (for searchsorted lookups)."""

    def __init__(self, coords: torch.Tensor, sorted_keys: torch.Tensor, order: torch.Tensor):
        self.coords = coords            # (M,4) int32, row order of the tensors at this stride
        self.sorted_keys = sorted_keys  # (M,) int64 ascending
        self.order = order              # (M,) row of each sorted key


class CoordinateManager:
    """Coordinate sets of one input at every stride, plus the backends' neighbour-map cache.

    Parameters
    ----------
    coords : torch.Tensor
        (M, 4) integer ``(batch, x, y, z)`` coordinates at ``stride``, unique.
    stride : int
        Tensor stride of ``coords``; spatial coordinates must be multiples of it.

    Attributes
    ----------
    cache : dict
        Free-form cache for the backends (neighbour maps keyed by kind and stride, the
        MinkowskiEngine coordinate manager).  Everything in it is derived from the coordinates.
    """

    def __init__(self, coords: torch.Tensor, stride: int):
        self.root_stride = stride
        self.device = coords.device
        self.cache: dict = {}
        self._codec = _KeyCodec(coords)
        keys, _ = self._codec.encode(coords)
        sorted_keys, order = torch.sort(keys)
        if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
            raise ValueError("twist_lib/sparse/tensor.py: SparseTensor coordinates must be unique "
                             "(quantise points to voxels and pool their features first)")
        self._sets = {stride: _CoordinateSet(coords.int().contiguous(), sorted_keys, order)}
        self._parents: dict[int, torch.Tensor] = {}

    def coords(self, stride: int) -> torch.Tensor:
        """(M, 4) int32 coordinates at ``stride`` (down-sampled on first request)."""
        return self._set(stride).coords

    def size(self, stride: int) -> int:
        """Number of voxels at ``stride``."""
        return self._set(stride).coords.shape[0]

    def parents(self, stride: int) -> torch.Tensor:
        """Row at ``2 * stride`` of the parent ``floor(c / 2s) * 2s`` of every row at ``stride``."""
        if stride not in self._parents:
            self._downsample(stride)
        return self._parents[stride]

    def lookup(self, stride: int, query: torch.Tensor) -> torch.Tensor:
        """Row at ``stride`` of each query coordinate (Q, 4), or -1 where it is not active."""
        cset = self._set(stride)
        n = cset.sorted_keys.numel()
        if n == 0:
            return torch.full((query.shape[0],), -1, dtype=torch.int64, device=query.device)
        keys, inside = self._codec.encode(query)
        pos = torch.searchsorted(cset.sorted_keys, keys).clamp_(max=n - 1)
        found = inside & (cset.sorted_keys[pos] == keys)
        return torch.where(found, cset.order[pos], torch.full_like(pos, -1))

    def _set(self, stride: int) -> _CoordinateSet:
        if stride not in self._sets:
            if stride % 2 or stride // 2 < self.root_stride:
                raise ValueError(f"twist_lib/sparse/tensor.py: stride {stride} cannot be reached by "
                                 f"halving resolution from stride {self.root_stride}")
            self._downsample(stride // 2)
        return self._sets[stride]

    def _downsample(self, stride: int) -> None:
        """Create the ``2 * stride`` set: unique ``floor(c / 2s) * 2s`` in sorted-key order."""
        fine = self._set(stride).coords.long()
        step = 2 * stride
        coarse = fine.clone()
        coarse[:, 1:] = torch.div(fine[:, 1:], step, rounding_mode="floor") * step
        keys, inside = self._codec.encode(coarse)
        if not bool(inside.all()):
            raise ValueError(f"twist_lib/sparse/tensor.py: stride {step} exceeds the key margin "
                             f"({KEY_MARGIN} voxels)")
        unique_keys, parents = torch.unique(keys, sorted=True, return_inverse=True)
        order = torch.arange(unique_keys.numel(), device=unique_keys.device)
        self._sets[step] = _CoordinateSet(self._codec.decode(unique_keys), unique_keys, order)
        self._parents[stride] = parents


class SparseTensor:
    """Unique voxel coordinates with one feature row each.

    Parameters
    ----------
    coords : torch.Tensor
        (M, 4) integer ``(batch, x, y, z)`` in stride-1 voxel units, unique rows; spatial
        coordinates must be multiples of ``stride``.  Negative coordinates are fine.
    feats : torch.Tensor
        (M, C) features, same device as ``coords``.
    stride : int
        Tensor stride (1 for the input voxels; 2, 4, ... after down-sampling).
    backend : str
        ``"auto"``, ``"torch"``, ``"minkowski"`` or ``"spconv"`` (see
        :func:`twist_lib.sparse.backends.resolve_backend`); selects how the
        convolutions of :mod:`twist_lib.sparse.layers` run on this tensor and its descendants.
    """

    def __init__(self, coords: torch.Tensor, feats: torch.Tensor, stride: int = 1,
                 backend: str = "auto"):
        _check_inputs(coords, feats, stride)
        self._init(CoordinateManager(coords, int(stride)), int(stride), feats,
                   resolve_backend(backend))

    @classmethod
    def from_manager(cls, manager: CoordinateManager, stride: int, feats: torch.Tensor,
                     backend: str) -> "SparseTensor":
        """A tensor on the coordinates ``manager`` holds at ``stride`` (used by the layers)."""
        if feats.dim() != 2 or feats.shape[0] != manager.size(stride):
            raise ValueError(f"twist_lib/sparse/tensor.py: features of shape {tuple(feats.shape)} "
                             f"do not match the {manager.size(stride)} voxels at stride {stride}")
        tensor = cls.__new__(cls)
        tensor._init(manager, stride, feats, backend)
        return tensor

    def _init(self, manager: CoordinateManager, stride: int, feats: torch.Tensor, backend: str):
        self.manager = manager
        self.stride = stride
        self.feats = feats
        self.backend = backend

    @property
    def coords(self) -> torch.Tensor:
        """(M, 4) int32 ``(batch, x, y, z)`` coordinates, in the row order of :attr:`feats`."""
        return self.manager.coords(self.stride)

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coordinates (and cached neighbour maps), new features (M, C')."""
        return SparseTensor.from_manager(self.manager, self.stride, feats, self.backend)

    def __repr__(self) -> str:
        return (f"SparseTensor(voxels={self.feats.shape[0]}, channels={self.feats.shape[1]}, "
                f"stride={self.stride}, backend={self.backend!r}, device={self.device})")


def _check_inputs(coords: torch.Tensor, feats: torch.Tensor, stride) -> None:
    where = "twist_lib/sparse/tensor.py: SparseTensor"
    if not isinstance(coords, torch.Tensor) or coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"{where} coords must be an (M, 4) tensor of (batch, x, y, z), got "
                         f"{getattr(coords, 'shape', type(coords))}")
    if coords.dtype.is_floating_point or coords.dtype == torch.bool:
        raise TypeError(f"{where} coords must be integers, got {coords.dtype}")
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(f"{where} feats must be (M, C) with M = {coords.shape[0]} coordinate rows, "
                         f"got {getattr(feats, 'shape', type(feats))}")
    if feats.device != coords.device:
        raise ValueError(f"{where} coords on {coords.device} but feats on {feats.device}")
    if int(stride) < 1:
        raise ValueError(f"{where} stride must be >= 1, got {stride}")
    if coords.shape[0] and bool((coords[:, 0] < 0).any()):
        raise ValueError(f"{where} batch indices must be >= 0")
    if int(stride) > 1 and bool((coords[:, 1:] % int(stride) != 0).any()):
        raise ValueError(f"{where} spatial coordinates must be multiples of stride {stride} "
                         "(coordinates are in stride-1 voxel units)")
