"""The shared material palette: every class draws its parts' colours from the same few materials,
so colour alone never gives the class (a grey-fabric chair next to a grey-fabric sofa, a white
cabinet against a white wall)."""
from __future__ import annotations

import numpy as np

MATERIALS = {
    "wood": ((0.72, 0.55, 0.36), (0.42, 0.27, 0.16), (0.86, 0.74, 0.54), (0.56, 0.32, 0.21)),
    "fabric": ((0.50, 0.50, 0.53), (0.26, 0.36, 0.56), (0.80, 0.73, 0.61), (0.60, 0.22, 0.19),
               (0.36, 0.48, 0.34), (0.30, 0.30, 0.32)),
    "leather": ((0.36, 0.22, 0.14), (0.14, 0.13, 0.13), (0.62, 0.45, 0.30)),
    "metal": ((0.66, 0.67, 0.70), (0.15, 0.15, 0.16), (0.45, 0.46, 0.48)),
    "laminate": ((0.91, 0.91, 0.89), (0.20, 0.20, 0.21), (0.62, 0.62, 0.60), (0.78, 0.70, 0.56)),
    "paint": ((0.92, 0.91, 0.87), (0.86, 0.82, 0.74), (0.76, 0.80, 0.82), (0.83, 0.86, 0.78)),
    "flooring": ((0.72, 0.55, 0.36), (0.56, 0.32, 0.21), (0.50, 0.50, 0.53), (0.62, 0.62, 0.60),
                 (0.30, 0.30, 0.32)),
}


def pick(rng: np.random.Generator, *groups: str, jitter: float = 0.04) -> np.ndarray:
    """A colour in [0, 1] from one of ``groups`` (chosen uniformly), with a small random tint."""
    group = groups[rng.integers(len(groups))] if len(groups) > 1 else groups[0]
    options = MATERIALS[group]
    base = np.asarray(options[rng.integers(len(options))], dtype=np.float64)
    return np.clip(base + rng.normal(0.0, jitter, 3), 0.0, 1.0)


def any_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour from any material (book spines, cushions)."""
    return pick(rng, *MATERIALS, jitter=0.08)
