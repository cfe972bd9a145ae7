"""Kernel offsets in the library's weight order, shared by every sparse backend.

Kernel offset order (so a state_dict moves between backends unchanged): lexicographic over
``(dx, dy, dz)`` with ``dz`` fastest, i.e. ``itertools.product(r, r, r)`` with
``r = range(-(k // 2), k // 2 + 1)`` for odd kernel sizes and ``r = range(2)`` for the k2 s2
down / up convolutions. A backend whose library enumerates offsets differently permutes its
weights to this order (:mod:`twist_lib.sparse.minkowski_backend`).
"""
from __future__ import annotations

import itertools


def kernel_offsets(kernel_size: int) -> list[tuple[int, int, int]]:
    """Kernel offsets in the library's weight order (see module docstring).

    Odd sizes are centred (``{-1, 0, 1}^3`` for 3); size 2 is ``{0, 1}^3`` (stride-2 down/up).
    """
    if kernel_size == 2:
        axis = range(2)
    elif kernel_size % 2 == 1 and kernel_size > 0:
        axis = range(-(kernel_size // 2), kernel_size // 2 + 1)
    else:
        raise ValueError(f"twist_lib/sparse/kernels.py: kernel_size must be odd or 2, "
                         f"got {kernel_size}")
    return list(itertools.product(axis, axis, axis))
