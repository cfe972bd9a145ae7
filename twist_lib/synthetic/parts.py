"""Parametric parts and scan-like surface sampling.

Every object is a set of *parts* in its own frame: axis-aligned boxes (seats, slabs, legs,
shelves, cushions) and vertical cylinders (round legs, poles, lamp shades, round table tops).
A part is stored by its bounding box ``lo``/``hi``; a cylinder's radius is half its x extent.

Faces are numbered per part. Box face ``f``: axis ``f // 2``, side ``f % 2`` (0 = the ``lo``
side, 1 = the ``hi`` side), i.e. -x, +x, -y, +y, -z, +z. Cylinder face 0 = the side, 1 = the
bottom cap, 2 = the top cap (3..5 unused).

Sampling is vectorised over all faces of a scene: each face gets a Poisson number of points with
mean ``area * density`` (uniform surface density), the points are drawn uniformly on the face and
moved by their part's pose (yaw about z, then a shift).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX, CYLINDER = 0, 1
FACES_PER_PART = 6
ALL_FACES = (True,) * FACES_PER_PART


@dataclass(frozen=True)
class PartSet:
    """Parts as arrays: ``kind`` (P,) BOX/CYLINDER, ``lo``/``hi`` (P, 3) bounds, ``color`` (P, 3)
    in [0, 1], ``faces`` (P, 6) bool, the faces that exist for a scanner at all."""

    kind: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    color: np.ndarray
    faces: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def concat(sets) -> "PartSet":
        sets = list(sets)
        return PartSet(*(np.concatenate([getattr(s, f) for s in sets])
                         for f in ("kind", "lo", "hi", "color", "faces")))


class PartsBuilder:
    """Collects parts one call at a time; :meth:`build` returns the :class:`PartSet`."""

    def __init__(self):
        self._rows = []

    def box(self, lo, hi, color, faces=ALL_FACES) -> "PartsBuilder":
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if np.any(hi <= lo):
            raise ValueError(f"box part with empty extent: lo={lo}, hi={hi}")
        self._rows.append((BOX, lo, hi, color, faces))
        return self

    def cylinder(self, x, y, radius, z0, z1, color) -> "PartsBuilder":
        if radius <= 0 or z1 <= z0:
            raise ValueError(f"cylinder part with empty extent: r={radius}, z={z0}..{z1}")
        lo = np.array([x - radius, y - radius, z0])
        hi = np.array([x + radius, y + radius, z1])
        self._rows.append((CYLINDER, lo, hi, color, (True, True, True, False, False, False)))
        return self

    def build(self) -> PartSet:
        kind, lo, hi, color, faces = zip(*self._rows)
        return PartSet(np.array(kind, dtype=np.int8), np.stack(lo), np.stack(hi),
                       np.stack([np.asarray(c, dtype=np.float64) for c in color]),
                       np.array(faces, dtype=bool))


def face_areas(parts: PartSet) -> np.ndarray:
    """(P, 6) area of every face, 0 for faces that do not exist."""
    ext = parts.hi - parts.lo
    box = np.stack([ext[:, 1] * ext[:, 2]] * 2 + [ext[:, 0] * ext[:, 2]] * 2
                   + [ext[:, 0] * ext[:, 1]] * 2, axis=1)
    r, h = ext[:, 0] / 2, ext[:, 2]
    zero = np.zeros_like(r)
    cyl = np.stack([2 * np.pi * r * h, np.pi * r**2, np.pi * r**2, zero, zero, zero], axis=1)
    return np.where((parts.kind == BOX)[:, None], box, cyl) * parts.faces


def rotate_z(points: np.ndarray, yaw) -> np.ndarray:
    """Rotate (M, 3) points about the z axis by ``yaw`` (scalar or (M,)) radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = points[:, 0], points[:, 1]
    return np.stack([c * x - s * y, s * x + c * y, points[:, 2]], axis=1)


def sample_surfaces(parts: PartSet, yaw: np.ndarray, shift: np.ndarray, density: float,
                    rng: np.random.Generator):
    """Sample the visible-for-a-scanner faces of ``parts`` at ``density`` points per m².

    Parameters
    ----------
    parts : PartSet
        P parts in their objects' frames.
    yaw, shift : (P,), (P, 3)
        Pose of each part's object: world = rotate_z(local, yaw) + shift.
    density : float
        Expected points per square metre (uniform over the surface).

    Returns
    -------
    points, normals : (M, 3) float64
        World positions and outward unit normals.
    part : (M,) int64
        Index of the part each point lies on.
    """
    counts = rng.poisson(face_areas(parts).ravel() * density)
    flat = np.repeat(np.arange(counts.size), counts)
    part, face = flat // FACES_PER_PART, flat % FACES_PER_PART
    m = len(flat)
    u = rng.random((m, 3))
    lo, hi = parts.lo[part], parts.hi[part]
    rows = np.arange(m)

    # boxes: uniform in the bounding box, then snap the face's axis onto the face
    points = lo + u * (hi - lo)
    axis, side = face // 2, face % 2
    points[rows, axis] = np.where(side == 1, hi[rows, axis], lo[rows, axis])
    normals = np.zeros((m, 3))
    normals[rows, axis] = 2.0 * side - 1.0

    cyl = parts.kind[part] == CYLINDER
    if cyl.any():
        points[cyl], normals[cyl] = _cylinder_points(lo[cyl], hi[cyl], face[cyl], u[cyl])
    return rotate_z(points, yaw[part]) + shift[part], rotate_z(normals, yaw[part]), part


def _cylinder_points(lo, hi, face, u):
    centre = (lo[:, :2] + hi[:, :2]) / 2
    radius = (hi[:, 0] - lo[:, 0]) / 2
    theta = 2 * np.pi * u[:, 0]
    direction = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    on_side = face == 0
    rho = np.where(on_side, radius, radius * np.sqrt(u[:, 1]))
    z = np.where(on_side, lo[:, 2] + u[:, 2] * (hi[:, 2] - lo[:, 2]),
                 np.where(face == 1, lo[:, 2], hi[:, 2]))
    points = np.column_stack([centre + rho[:, None] * direction, z])
    normals = np.column_stack([np.where(on_side[:, None], direction, 0.0),
                               np.where(on_side, 0.0, np.where(face == 1, -1.0, 1.0))])
    return points, normals


def inside_any(points: np.ndarray, parts: PartSet) -> np.ndarray:
    """(M,) bool: the point lies strictly inside at least one of ``parts`` (same frame)."""
    p = points[:, None, :]
    lo, hi = parts.lo[None], parts.hi[None]
    in_box = np.all((p > lo) & (p < hi), axis=2)
    centre = (lo[..., :2] + hi[..., :2]) / 2
    radius = (hi[..., 0] - lo[..., 0]) / 2
    in_disc = np.sum((p[..., :2] - centre) ** 2, axis=2) < radius**2
    in_cyl = in_disc & (p[..., 2] > lo[..., 2]) & (p[..., 2] < hi[..., 2])
    return np.where(parts.kind[None] == BOX, in_box, in_cyl).any(axis=1)
