"""Which sparse backend runs: the names, what imports here, and what ``"auto"`` picks.

Its own module so that the tensor type (:mod:`twist_lib.sparse.tensor`) and the backends
(:mod:`twist_lib.sparse.torch_backend`, :mod:`twist_lib.sparse.minkowski_backend`,
:mod:`twist_lib.sparse.spconv_backend`) do not import each other to decide it.
"""
from __future__ import annotations

import torch

from twist_lib.sparse import minkowski_backend, spconv_backend

BACKENDS = ("torch", "minkowski", "spconv")

_OPTIONAL = {
    "minkowski": (minkowski_backend, "MinkowskiEngine", "install MinkowskiEngine 0.5.4"),
    "spconv": (spconv_backend, "spconv", "pip install spconv-cu126"),
}


def available_backends() -> list[str]:
    """Names of the backends that can run here, ``"torch"`` first (always), then ``"minkowski"``
    and ``"spconv"`` where they import (asking imports spconv, which takes a few seconds)."""
    return ["torch"] + [name for name, (module, _, _) in _OPTIONAL.items()
                        if module.is_available()]


def resolve_backend(name: str = "auto") -> str:
    """Turn ``"auto" | "torch" | "minkowski" | "spconv"`` into a concrete backend name.

    ``"auto"`` picks the pure-PyTorch backend on the CPU (without importing the optional
    libraries).  With a CUDA device it picks spconv when it imports, else MinkowskiEngine when it
    imports, else torch: on the CPU, MinkowskiEngine 0.5.4 is several times slower than the torch
    backend on the same U-Net step and spconv's CPU path too little faster to make an optional
    dependency (whose import alone takes seconds) the default (figures: ``bench/NOTES.md``,
    "Backend choices"; ``bench/run.py`` group ``sparse`` measures every available backend).  Ask
    for ``"minkowski"`` or ``"spconv"`` explicitly to use them on the CPU.
    """
    if name == "auto":
        if torch.cuda.is_available():
            for candidate in ("spconv", "minkowski"):
                if _OPTIONAL[candidate][0].is_available():
                    return candidate
        return "torch"
    if name not in BACKENDS:
        raise ValueError(f"twist_lib/sparse/backends.py: unknown sparse backend {name!r}; "
                         f"choose one of 'auto', {', '.join(map(repr, BACKENDS))}")
    if name in _OPTIONAL and not _OPTIONAL[name][0].is_available():
        module, library, install = _OPTIONAL[name]
        raise ImportError(f"twist_lib/sparse/backends.py: backend {name!r} was requested but "
                          f"{library} cannot be imported ({module.IMPORT_ERROR}); {install} or "
                          "use backend='torch'")
    return name
