"""spconv 2.x backend (optional; the import is guarded and lazy).

Install ``spconv-cu126`` (it bundles its CUDA runtime and also runs on the CPU); the CPU-only
``spconv`` wheel is not supported (it gave wrong results with more than one thread).

What spconv does here: it builds the rulebooks ("indice pairs": for each kernel offset, the
``(in_row, out_row)`` pairs) with ``spconv.pytorch.ops.get_indice_pairs`` and runs the
gather-GEMM-scatter forward and backward with ``ops.indice_conv`` / ``ops.indice_conv_backward``
(the same calls spconv's own autograd Functions make; wrapped here in :class:`_SpconvConv`, whose
backward runs with autocast off -- spconv's own Functions crash when ``backward()`` is called
inside a CPU bfloat16 autocast region), always with ``ConvAlgo.Native``: on the CPU it is the
only algorithm, and on CUDA it is the one whose rulebook is a plain pair list that can be re-mapped
onto the library's rows (the implicit-GEMM rulebooks are sorted masks per output row).

How the results equal the torch backend's (:mod:`twist_lib.sparse.torch_backend`):

- coordinates: the library's coordinate set at stride ``s`` is handed to spconv as grid indices
  ``(batch, (x - lo) / s, (y - lo) / s, (z - lo) / s)`` with ``lo`` a multiple of ``2s``, so
  spconv's k2 s2 output ``floor(g / 2)`` is exactly the library's ``floor(c / 2s) * 2s``;
- kernel order: the spatial axes are passed in ``(x, y, z)`` order, so spconv's flattened kernel
  index is the library's lexicographic ``(dx, dy, dz)`` order, ``dz`` fastest; the weight
  (K, cin, cout) only needs the transpose to spconv's KRSC layout (cout, K, cin), through which the
  gradient flows back to the library's parameter;
- rows: a submanifold rulebook already refers to the input rows (the library's); for the k2 s2
  rulebook spconv's output rows are re-mapped to the library's rows of the ``2s`` set
  (:meth:`CoordinateManager.lookup`), so outputs come out in the library's row order and no feature
  permutation is needed.  The up convolution reuses the down rulebook with ``inverse=True``.

Rulebooks are cached per coordinate manager in ``manager.cache["spconv"]``.  Parity with dense
conv3d and with the torch backend (forward and gradients, float64) is tested in
``tests/test_sparse.py``.  Its speed against the torch backend is measured in ``bench/NOTES.md``
("Backend choices").
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.autograd.function import once_differentiable

_SPCONV = None  # SimpleNamespace(ops, ConvAlgo) once imported
_TRIED = False
#: Why spconv could not be imported (``None`` while it imports or has not been tried yet).
IMPORT_ERROR: str | None = None


def _load():
    """Import spconv on first use (the import takes seconds, so ``import twist_lib`` skips it)."""
    global _SPCONV, _TRIED, IMPORT_ERROR
    if not _TRIED:
        _TRIED = True
        try:
            from spconv.core import ConvAlgo
            from spconv.pytorch import ops
            _SPCONV = SimpleNamespace(ops=ops, ConvAlgo=ConvAlgo)
        except (ImportError, OSError, RuntimeError) as error:  # the torch backend is used instead
            IMPORT_ERROR = f"{type(error).__name__}: {error}"
    return _SPCONV


def is_available() -> bool:
    """Whether spconv can be imported (imports it on the first call)."""
    return _load() is not None


def _spconv():
    sp = _load()
    if sp is None:
        raise ImportError(f"twist_lib/sparse/spconv_backend.py: spconv is not available "
                          f"({IMPORT_ERROR}); pip install spconv-cu126")
    return sp


def _grid(manager, stride: int, align: int):
    """spconv indices (N, 4) int32 of the set at ``stride``, batch size, spatial shape and ``lo``.

    ``lo`` is a multiple of ``align * stride`` and the shape a multiple of ``align`` on every
    axis, so that spconv's k2 s2 output cells are the library's parents and none is cut off.
    """
    coords = manager.coords(stride).long()
    step = align * stride
    lo = torch.div(coords[:, 1:].min(0).values, step, rounding_mode="floor") * step
    grid = torch.div(coords[:, 1:] - lo, stride, rounding_mode="floor")
    shape = grid.max(0).values + 1
    shape = (torch.div(shape + align - 1, align, rounding_mode="floor") * align).tolist()
    indices = torch.cat([coords[:, :1], grid], 1).int().contiguous()
    return indices, int(coords[:, 0].max()) + 1, shape, lo


def _cache(manager) -> dict:
    return manager.cache.setdefault("spconv", {})


def _subm_rulebook(manager, stride: int, kernel_size: int):
    """(pairs (2, K, N), counts (K,)) of a submanifold convolution at ``stride``, cached."""
    key = ("subm", stride, kernel_size)
    cache = _cache(manager)
    if key not in cache:
        sp = _spconv()
        indices, batch, shape, _ = _grid(manager, stride, 1)
        k, pad = [kernel_size] * 3, [kernel_size // 2] * 3
        _, pairs, counts = sp.ops.get_indice_pairs(indices, batch, shape, sp.ConvAlgo.Native,
                                                   k, [1] * 3, pad, [1] * 3, [0] * 3, subm=True)
        cache[key] = (pairs, counts)
    return cache[key]


def _down_rulebook(manager, stride: int):
    """(pairs (2, 8, N), counts (8,)) of the k2 s2 convolution ``stride`` -> ``2 * stride``.

    ``pairs[1]`` holds rows of the library's ``2 * stride`` set (re-mapped from spconv's own
    output rows); ``pairs[0]`` rows of the ``stride`` set.  Cached.
    """
    key = ("down", stride)
    cache = _cache(manager)
    if key not in cache:
        sp = _spconv()
        indices, batch, shape, lo = _grid(manager, stride, 2)
        out_inds, pairs, counts = sp.ops.get_indice_pairs(
            indices, batch, shape, sp.ConvAlgo.Native, [2] * 3, [2] * 3, [0] * 3, [1] * 3,
            [0] * 3)
        coarse = manager.coords(2 * stride)
        spconv_coords = torch.cat([out_inds[:, :1].long(), out_inds[:, 1:].long() * 2 * stride
                                   + lo], 1)
        rows = manager.lookup(2 * stride, spconv_coords)
        if rows.numel() != coarse.shape[0] or bool((rows < 0).any()):
            raise RuntimeError("twist_lib/sparse/spconv_backend.py: spconv's k2 s2 output voxels "
                               f"at stride {2 * stride} differ from the library's")
        out_rows = pairs[1].long()
        pairs = torch.stack([pairs[0], torch.where(out_rows >= 0, rows[out_rows.clamp(min=0)],
                                                   out_rows).to(pairs.dtype)]).contiguous()
        cache[key] = (pairs, counts)
    return cache[key]


class _SpconvConv(torch.autograd.Function):
    """spconv's Native gather-GEMM-scatter on a rulebook; filters in KRSC (cout, K, cin)."""

    @staticmethod
    def forward(ctx, feats, filters, pairs, counts, n_out: int, inverse: bool, subm: bool):
        ctx.save_for_backward(feats, filters)
        ctx.rulebook = (pairs, counts, inverse, subm)
        return _spconv().ops.indice_conv(feats, filters, pairs, counts, n_out, inverse, subm,
                                         algo=_spconv().ConvAlgo.Native)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        feats, filters = ctx.saved_tensors
        pairs, counts, inverse, subm = ctx.rulebook
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            grad_feats, grad_filters = _spconv().ops.indice_conv_backward(
                feats, filters, grad_out.to(feats.dtype).contiguous(), pairs, counts, inverse,
                subm, algo=_spconv().ConvAlgo.Native)
        return grad_feats, grad_filters, None, None, None, None, None


def _run(feats, weight, pairs, counts, n_out: int, inverse: bool = False,
         subm: bool = False) -> torch.Tensor:
    """Apply an spconv conv Function with the library's weight (K, cin, cout); autocast-aware.

    Runs in the autocast dtype when autocast is on, else in ``feats.dtype``; dtypes spconv's
    Native path is not known to support here (bfloat16 anywhere, float16 on the CPU) run in float32.
    """
    device_type = feats.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) \
        else feats.dtype
    supported = (torch.float32, torch.float64) + ((torch.float16,) if device_type == "cuda" else ())
    if dtype not in supported:
        dtype = torch.float32
    filters = weight.to(dtype).permute(2, 0, 1).contiguous()  # KRSC: (cout, K, cin)
    with torch.autocast(device_type=device_type, enabled=False):
        return _SpconvConv.apply(feats.to(dtype).contiguous(), filters, pairs, counts, n_out,
                                 inverse, subm)


def submanifold_conv(feats, weight, manager, stride: int, kernel_size: int) -> torch.Tensor:
    """Stride-1 convolution whose output voxels are the input voxels."""
    pairs, counts = _subm_rulebook(manager, stride, kernel_size)
    return _run(feats, weight, pairs, counts, feats.shape[0], subm=True)


def down_conv(feats, weight, manager, stride: int) -> torch.Tensor:
    """Kernel-2 stride-2 convolution from ``stride`` onto the library's ``2 * stride`` voxels."""
    pairs, counts = _down_rulebook(manager, stride)
    return _run(feats, weight, pairs, counts, manager.size(2 * stride))


def up_conv(feats, weight, manager, stride: int) -> torch.Tensor:
    """Kernel-2 stride-2 transposed convolution from ``2 * stride`` back onto ``stride``."""
    pairs, counts = _down_rulebook(manager, stride)
    return _run(feats, weight, pairs, counts, manager.size(stride), inverse=True)
