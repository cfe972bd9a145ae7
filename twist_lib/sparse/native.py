"""The compiled CPU kernels of the pure-PyTorch backend (``native_pairs.cpp``), optional.

One kernel offset of a sparse convolution is ``out[o] += feats[i] @ W[k]`` over the offset's
``(i, o)`` pairs (:mod:`twist_lib.sparse.torch_backend`). In torch ops that is a gather
(``index_select``), a GEMM and a scatter (``index_add_``): three passes over memory and two
temporaries per offset, which keep the ``small`` U-Net's step near a fifth of the CPU's GEMM peak
(bench/NOTES.md, "Speed"). The C++ kernels do the three in one pass, keeping the output rows in
vector registers, for the forward, the input gradient and the weight gradient.

They are built on first use with the system's C++ compiler (``$CXX``, else ``c++``; flags
``-O3 -march=native``) into ``$TWIST_CACHE`` (default ``~/.cache/twist_lib``), one library per
source, compiler and CPU, and loaded with :mod:`ctypes`: no build step, no new dependency. They
run where they help and nowhere else: float32 CPU tensors, one torch thread (the runs of this
project; with more threads torch's own kernels are parallel and these are not), an AVX-512 CPU,
output widths 16, 32, 48, 64, 80 (every convolution of the ``tiny`` and ``small`` models and of
Psi). Anything else, a failed build, or ``TWIST_NATIVE=0`` in the environment, takes the torch
ops, which compute the same sums (tests/test_sparse.py checks both paths against dense conv3d).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("native_pairs.cpp")
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
WIDTHS = (16, 32, 48, 64, 80)
enabled = os.environ.get("TWIST_NATIVE", "1") != "0"  # benchmarks and tests switch it
_lib = None
_tried = False
BUILD_ERROR = ""


def _cpu_id() -> str:
    try:
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith(("flags", "model name"))][:2]
    except OSError:
        flags = []
    return platform.machine() + "".join(flags)


def _compiler() -> list[str]:
    return os.environ.get("CXX", "c++").split()


def library_path() -> Path:
    """Where the library for this source, compiler and CPU is (or will be) built."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(_compiler() + FLAGS).encode(), _cpu_id().encode()):
        key.update(part)
    cache = Path(os.environ.get("TWIST_CACHE", Path.home() / ".cache" / "twist_lib"))
    return cache / "native" / f"native_pairs_{key.hexdigest()[:16]}.so"


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: build, then rename
        out = Path(tmp) / target.name
        proc = subprocess.run([*_compiler(), *FLAGS, "-o", str(out), str(SOURCE)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip()[-2000:] or f"exit status {proc.returncode}")
        os.replace(out, target)


def library():
    """The loaded library, built first if needed; None where it cannot be (reason:
    :data:`BUILD_ERROR`) or where the CPU has no AVX-512 (the plain loops would not beat torch)."""
    global _lib, _tried, BUILD_ERROR
    if not _tried:
        _tried = True
        try:
            path = library_path()
            if not path.is_file():
                _build(path)
            lib = ctypes.CDLL(str(path))
            for name in ("twist_gemm_pairs", "twist_outer_pairs"):
                getattr(lib, name).argtypes = [ctypes.c_void_p] * 5 + [
                    ctypes.c_int64, ctypes.c_int, ctypes.c_int]
            for name, pointers in (("twist_bn_relu_fwd", 5), ("twist_bn_relu_bwd_reduce", 7),
                                   ("twist_bn_relu_bwd_dx", 9), ("twist_col_stats", 3)):
                getattr(lib, name).argtypes = [ctypes.c_void_p] * pointers + [
                    ctypes.c_int64, ctypes.c_int]
            if lib.twist_native_simd() != 1:
                raise RuntimeError("no AVX-512 on this CPU")
            _lib = lib
        except Exception as e:  # noqa: BLE001 - any failure means: use the torch ops
            BUILD_ERROR = f"{type(e).__name__}: {e}"
            warnings.warn(f"twist_lib/sparse/native.py: compiled sparse kernels unavailable "
                          f"({BUILD_ERROR}); using the torch ops", RuntimeWarning, stacklevel=2)
    return _lib


def usable(feats: torch.Tensor, width: int, norm: bool = False) -> bool:
    """Whether a kernel that writes rows of ``width`` floats runs natively on ``feats``: a
    convolution's for ``width`` in :data:`WIDTHS`, batch norm + ReLU's (``norm``) for multiples
    of 16 up to 1024."""
    fits = width % 16 == 0 and 0 < width <= 1024 if norm else width in WIDTHS
    return (enabled and fits and feats.device.type == "cpu"
            and feats.dtype == torch.float32 and torch.get_num_threads() == 1
            and library() is not None)


def _ptrs(*tensors) -> list[int]:
    return [t.data_ptr() for t in tensors]


def gemm_pairs(feats, w, out, src, dst) -> None:
    """``out[dst[p]] += feats[src[p]] @ w`` for every pair, in place (all contiguous)."""
    _lib.twist_gemm_pairs(*_ptrs(feats, w, out, src, dst), src.numel(), feats.shape[1],
                          out.shape[1])


def outer_pairs(feats, grad, grad_w, src, dst) -> None:
    """``grad_w += feats[src]^T @ grad[dst]``, in place (all contiguous)."""
    _lib.twist_outer_pairs(*_ptrs(feats, grad, grad_w, src, dst), src.numel(), feats.shape[1],
                           grad.shape[1])


def column_stats(x) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of ``x`` (N, C): the mean and the biased variance, in float64 (two passes:
    the variance from centred squares)."""
    stats = torch.empty(2, x.shape[1], dtype=torch.float64)
    _lib.twist_col_stats(*_ptrs(x, stats[0], stats[1]), *x.shape)
    return stats[0], stats[1]


def bn_relu_forward(x, mean, scale, beta) -> torch.Tensor:
    """``max(0, (x - mean) * scale + beta)`` row by row (x (N, C) contiguous; the rest (C,))."""
    y = torch.empty_like(x)
    _lib.twist_bn_relu_fwd(*_ptrs(x, mean, scale, beta, y), *x.shape)
    return y


def bn_relu_sums(x, grad, mean, scale, beta) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, in float64: ``sum g'`` and ``sum g' (x - mean)``, where ``g'`` is ``grad``
    where the forward's ``(x - mean) * scale + beta > 0`` (the ReLU let it through), else 0."""
    sums = torch.zeros(2, x.shape[1], dtype=torch.float64)
    _lib.twist_bn_relu_bwd_reduce(*_ptrs(x, grad, mean, scale, beta, sums[0], sums[1]),
                                  *x.shape)
    return sums[0], sums[1]


def bn_relu_dx(x, grad, mean, scale, beta, a, b, d) -> torch.Tensor:
    """``dx = a g' + b (x - mean) + d`` row by row (``g'`` as in :func:`bn_relu_sums`)."""
    dx = torch.empty_like(x)
    _lib.twist_bn_relu_bwd_dx(*_ptrs(x, grad, mean, scale, beta, a, b, d, dx), *x.shape)
    return dx
