"""MinkowskiEngine 0.5.4 backend (optional; the import is guarded).

The layers of :mod:`twist_lib.sparse.layers` own their weights in the library's layout
(K, cin, cout) with offsets in lexicographic ``(dx, dy, dz)`` order, ``dz`` fastest
(:func:`twist_lib.sparse.kernels.kernel_offsets`).  MinkowskiEngine enumerates the offsets
of a hyper-cube kernel with ``x`` fastest (``src/kernel_region.hpp``: the iterator increments axis 0
first), so the weight is re-indexed with :func:`minkowski_weight_order` before each call; its
gradient flows back through the indexing.  A state_dict therefore moves between the backends
unchanged.

Each :class:`~twist_lib.sparse.tensor.CoordinateManager` gets one ``ME.CoordinateManager`` (made
lazily, cached in ``manager.cache``) holding the library's coordinate set of every stride used, so
both backends see the same output voxels.  ME stores the rows of a coordinate map in its own
order; features are permuted into it before and back out of it after every convolution.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from twist_lib.sparse.kernels import kernel_offsets

try:
    with warnings.catch_warnings():  # a CPU-only build warns on import that it has no CUDA
        warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")
        import MinkowskiEngine as ME
        from MinkowskiEngineBackend._C import ConvolutionMode
    IMPORT_ERROR = None
except ImportError as error:  # the torch backend is used instead
    ME = None
    IMPORT_ERROR = f"{type(error).__name__}: {error}"


def is_available() -> bool:
    """Whether MinkowskiEngine can be imported."""
    return ME is not None


@lru_cache(maxsize=None)
def minkowski_weight_order(kernel_size: int) -> tuple[int, ...]:
    """Library weight index of each MinkowskiEngine kernel index (ME: x fastest, z slowest)."""
    ours = kernel_offsets(kernel_size)
    axis = sorted({d[0] for d in ours})
    return tuple(ours.index((dx, dy, dz)) for dz in axis for dy in axis for dx in axis)


class _MinkowskiState:
    """An ``ME.CoordinateManager`` mirroring one library coordinate manager."""

    def __init__(self, manager):
        cuda = manager.device.type == "cuda"
        map_type = ME.CoordinateMapType.CUDA if cuda else ME.CoordinateMapType.CPU
        self.manager = manager
        self.me_manager = ME.CoordinateManager(D=3, coordinate_map_type=map_type)
        self.keys: dict = {}
        self.rows: dict = {}  # stride -> (library row of each ME row, ME row of each library row)

    def key(self, stride: int):
        """ME coordinate map key of the library's coordinate set at ``stride``."""
        if stride not in self.keys:
            coords = self.manager.coords(stride).contiguous()
            key, _ = self.me_manager.insert_and_map(coords, tensor_stride=stride,
                                                    string_id=f"twist_s{stride}")
            me_coords = self.me_manager.get_coordinates(key).to(coords.device)
            library_rows = self.manager.lookup(stride, me_coords)
            if library_rows.numel() != coords.shape[0] or bool((library_rows < 0).any()):
                raise RuntimeError("twist_lib/sparse/minkowski_backend.py: MinkowskiEngine's "
                                   f"coordinate map at stride {stride} differs from the library's")
            me_rows = torch.empty_like(library_rows)
            me_rows[library_rows] = torch.arange(library_rows.numel(), device=library_rows.device)
            self.keys[stride] = key
            self.rows[stride] = (library_rows, me_rows)
        return self.keys[stride]

    def to_me(self, stride: int, feats: torch.Tensor) -> torch.Tensor:
        return feats.index_select(0, self.rows[stride][0])

    def from_me(self, stride: int, feats: torch.Tensor) -> torch.Tensor:
        return feats.index_select(0, self.rows[stride][1])


def _state(manager) -> _MinkowskiState:
    if ME is None:
        raise ImportError(f"twist_lib/sparse/minkowski_backend.py: MinkowskiEngine is not "
                          f"available ({IMPORT_ERROR})")
    if "minkowski" not in manager.cache:
        manager.cache["minkowski"] = _MinkowskiState(manager)
    return manager.cache["minkowski"]


@lru_cache(maxsize=None)
def _kernel_generator(kernel_size: int, stride: int):
    return ME.KernelGenerator(kernel_size=kernel_size, stride=stride, dilation=1, dimension=3)


def _convolve(function, feats, weight, manager, in_stride, out_stride, kernel_size, stride):
    """Run an ME convolution Function between two library coordinate sets."""
    state = _state(manager)
    in_key, out_key = state.key(in_stride), state.key(out_stride)
    # ME's CPU kernels exist for float32/float64 only: half-precision inputs run in float32.
    dtype = feats.dtype if feats.dtype in (torch.float32, torch.float64) else torch.float32
    order = torch.tensor(minkowski_weight_order(kernel_size), device=weight.device)
    me_weight = weight.to(dtype).index_select(0, order).contiguous()
    with torch.autocast(device_type=feats.device.type, enabled=False):
        out = function.apply(state.to_me(in_stride, feats.to(dtype)), me_weight,
                             _kernel_generator(kernel_size, stride), ConvolutionMode.DEFAULT,
                             in_key, out_key, state.me_manager)
    return state.from_me(out_stride, out)


def submanifold_conv(feats, weight, manager, stride: int, kernel_size: int) -> torch.Tensor:
    """Stride-1 convolution whose output voxels are the input voxels."""
    return _convolve(ME.MinkowskiConvolutionFunction, feats, weight, manager, stride, stride,
                     kernel_size, 1)


def down_conv(feats, weight, manager, stride: int) -> torch.Tensor:
    """Kernel-2 stride-2 convolution from ``stride`` onto the library's ``2 * stride`` voxels."""
    return _convolve(ME.MinkowskiConvolutionFunction, feats, weight, manager, stride, 2 * stride,
                     2, 2)


def up_conv(feats, weight, manager, stride: int) -> torch.Tensor:
    """Kernel-2 stride-2 transposed convolution from ``2 * stride`` back onto ``stride``."""
    return _convolve(ME.MinkowskiConvolutionTransposeFunction, feats, weight, manager,
                     2 * stride, stride, 2, 2)
