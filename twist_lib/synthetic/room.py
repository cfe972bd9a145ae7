"""Room layout: a rectangular room, a door, windows, and furniture placed by room-type recipes.

Objects are placed one at a time and kept only if every part stays inside the room and at least
``gap`` away from every part of every object already placed (2-D separating-axis test on the
parts' rotated footprints, plus their height ranges). Parts, not whole objects, are tested, so a
chair can slide under a table top until its back or arms would touch it ("tucked in") while
never interpenetrating it.

The recipes make the benchmark hard on purpose: rows of identical chairs side by side, runs of
identical desks, cabinets and bookshelves touching along a wall, nightstands next to beds, chairs
tucked under tables and desks, armchairs next to sofas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .classes import FLOOR, WALL
from .furniture import Furniture, bed, bookshelf, cabinet, chair, desk, lamp, sofa, table
from .materials import pick
from .parts import PartsBuilder, PartSet

WALL_OFFSET = 0.001  # objects "against" a wall stand this far from it
# Yaw that turns an object's +y (its back) towards each wall: 0 at y=0, 1 at x=lx, 2 at y=ly, 3 at x=0.
WALL_YAW = (np.pi, -np.pi / 2, 0.0, np.pi / 2)


def rot2(xy: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)


@dataclass(frozen=True)
class Placed:
    """A furniture object at a pose: world = rotate_z(local, yaw) + (x, y, 0)."""

    furniture: Furniture
    yaw: float
    x: float
    y: float

    def footprints(self):
        """World centre (P, 2), half extents (P, 2) and z ranges (P,), (P,) of the parts."""
        lo, hi = self.furniture.parts.lo, self.furniture.parts.hi
        centre = rot2((lo[:, :2] + hi[:, :2]) / 2, self.yaw) + (self.x, self.y)
        return centre, (hi[:, :2] - lo[:, :2]) / 2, lo[:, 2], hi[:, 2]

    def to_world(self, local_xy) -> np.ndarray:
        return rot2(np.asarray(local_xy, dtype=np.float64), self.yaw) + (self.x, self.y)


def _separated(a, yaw_a: float, b, yaw_b: np.ndarray, gap: float) -> np.ndarray:
    """(n, m) bool: parts of ``a`` (n, one yaw) and ``b`` (m, per-part yaws) are at least ``gap``
    apart along some axis of either footprint, or in height (separating-axis theorem)."""
    ca, ha, za0, za1 = a
    cb, hb, zb0, zb1 = b
    ua = np.array([np.cos(yaw_a), np.sin(yaw_a)])
    va = np.array([-ua[1], ua[0]])
    ub = np.stack([np.cos(yaw_b), np.sin(yaw_b)], axis=1)[None]
    vb = np.stack([-ub[..., 1], ub[..., 0]], axis=2)
    d = cb[None] - ca[:, None]
    sep = (za1[:, None] + gap <= zb0[None]) | (zb1[None] + gap <= za0[:, None])
    for axis in (ua[None, None], va[None, None], ub, vb):
        ra = ha[:, None, 0] * np.abs(axis @ ua) + ha[:, None, 1] * np.abs(axis @ va)
        rb = hb[None, :, 0] * np.abs(np.sum(ub * axis, -1)) + hb[None, :, 1] * np.abs(np.sum(vb * axis, -1))
        sep |= np.abs(np.sum(d * axis, -1)) >= ra + rb + gap
    return sep


@dataclass
class Layout:
    """Furniture placed so far in an ``lx`` x ``ly`` room, and the collision test."""

    lx: float
    ly: float
    max_objects: int
    gap: float = 0.015
    placed: list = field(default_factory=list)
    _blocks: list = field(default_factory=list)  # (footprints, yaw) of placed objects and reserved zones

    def fits(self, furn: Furniture, yaw: float, x: float, y: float) -> bool:
        cand = Placed(furn, yaw, x, y)
        centre, half, z0, z1 = cand.footprints()
        corners = np.concatenate([centre + rot2(half * s, yaw) for s in ((1, 1), (1, -1), (-1, 1), (-1, -1))])
        if corners.min() < -1e-9 or np.any(corners.max(axis=0) > (self.lx + 1e-9, self.ly + 1e-9)):
            return False
        a = (centre, half, z0, z1)
        for b, yaw_b in self._blocks:
            if not self._near(corners, b):
                continue
            if not _separated(a, yaw, b, np.full(len(b[0]), yaw_b), self.gap).all():
                return False
        return True

    def _near(self, corners: np.ndarray, b) -> bool:
        """Cheap test on circles around the two objects before the part-level one."""
        radius_b = np.linalg.norm(b[1], axis=1)
        lo_b, hi_b = (b[0] - radius_b[:, None]).min(0), (b[0] + radius_b[:, None]).max(0)
        return bool(np.all(corners.min(0) < hi_b + self.gap) and np.all(corners.max(0) > lo_b - self.gap))

    def add(self, furn: Furniture, yaw: float, x: float, y: float) -> Placed | None:
        """Place ``furn`` if there is room for one more object and it fits; the placement or None."""
        if self.full or not self.fits(furn, yaw, x, y):
            return None
        p = Placed(furn, float(yaw), float(x), float(y))
        self.placed.append(p)
        self._blocks.append((p.footprints(), p.yaw))
        return p

    def reserve(self, x0: float, y0: float, x1: float, y1: float, height: float = 2.1) -> None:
        """Keep an axis-aligned floor area free (the swing of a door)."""
        centre = np.array([[(x0 + x1) / 2, (y0 + y1) / 2]])
        half = np.array([[(x1 - x0) / 2, (y1 - y0) / 2]])
        self._blocks.append(((centre, half, np.zeros(1), np.full(1, height)), 0.0))

    @property
    def full(self) -> bool:
        return len(self.placed) >= self.max_objects

    # --- placements -------------------------------------------------------------------------
    def wall_length(self, wall: int) -> float:
        return self.lx if wall in (0, 2) else self.ly

    def against_wall(self, furn: Furniture, wall: int, s: float, offset: float = WALL_OFFSET) -> Placed | None:
        """Back of ``furn`` on ``wall`` (0: y=0, 1: x=lx, 2: y=ly, 3: x=0), centred ``s`` metres
        along it, ``offset`` metres off it."""
        depth = furn.hi[1] + offset
        x, y = {0: (s, depth), 1: (self.lx - depth, s), 2: (s, self.ly - depth), 3: (depth, s)}[wall]
        return self.add(furn, WALL_YAW[wall], x, y)

    def random_on_wall(self, furn: Furniture, wall: int, rng, offset: float = WALL_OFFSET,
                       tries: int = 8) -> Placed | None:
        half = furn.width / 2
        length = self.wall_length(wall)
        if length < 2 * half:
            return None
        for _ in range(tries):
            p = self.against_wall(furn, wall, rng.uniform(half, length - half), offset)
            if p:
                return p
        return None

    def row_along_wall(self, items: list, wall: int, s0: float, rng, gap=(0.0, 0.05)) -> list:
        """Objects side by side along ``wall`` from ``s0``, ``gap`` metres apart (uniform range)."""
        placed, s = [], s0
        for furn in items:
            s += furn.width / 2
            if s + furn.width / 2 > self.wall_length(wall):
                break
            p = self.against_wall(furn, wall, s, WALL_OFFSET + rng.uniform(0.0, 0.01))
            if p:
                placed.append(p)
            s += furn.width / 2 + self.gap + rng.uniform(*gap)
        return placed

    def free(self, furn: Furniture, rng, tries: int = 30, margin: float = 0.0) -> Placed | None:
        """Anywhere at a random yaw, the origin at least ``margin`` from the walls if possible."""
        mx, my = min(margin, self.lx / 2), min(margin, self.ly / 2)
        for _ in range(tries):
            p = self.add(furn, rng.uniform(-np.pi, np.pi), rng.uniform(mx, self.lx - mx),
                         rng.uniform(my, self.ly - my))
            if p:
                return p
        return None

    def facing(self, host: Placed, furn: Furniture, side: int, s: float, offset: float,
               yaw_jitter: float = 0.0, max_offset: float = 0.6) -> Placed | None:
        """Put a seat at ``side`` (0: +y, 1: -y, 2: +x, 3: -x of the host's footprint), ``s`` along
        that side, facing the host, its front ``offset`` metres from the host's edge (negative =
        tucked under); ``s`` is the host-frame x (sides 0, 1) or y (sides 2, 3). Backs off in 4 cm
        steps until it fits or ``max_offset`` is passed."""
        e = np.array(((0, 1), (0, -1), (1, 0), (-1, 0))[side], dtype=np.float64)
        along = np.array((1.0, 0.0) if side < 2 else (0.0, 1.0))
        edge = host.furniture.hi[:2] @ np.maximum(e, 0) + host.furniture.lo[:2] @ np.minimum(e, 0)
        yaw = host.yaw + np.arctan2(-e[0], e[1]) + yaw_jitter
        while offset <= max_offset:
            local = e * (edge + offset - furn.lo[1]) + along * s
            x, y = host.to_world(local)
            p = self.add(furn, yaw, x, y)
            if p or self.full:
                return p
            offset += 0.04
        return None


# --- recipes ------------------------------------------------------------------------------------
def seats_around(lay: Layout, rng, host: Placed, seat: Furniture, sides, per_side_max: int):
    """Identical seats around ``host`` on the given sides, evenly spread and tucked in."""
    for side in sides:
        ext = host.furniture.hi - host.furniture.lo
        length = ext[0] if side < 2 else ext[1]
        n = int(rng.integers(1, max(1, min(per_side_max, int(length / (seat.width + 0.08)))) + 1))
        for i in range(n):
            centre = (host.furniture.hi + host.furniture.lo)[0 if side < 2 else 1] / 2
            s = centre + (i + 0.5 - n / 2) * length / n + rng.uniform(-0.03, 0.03)
            lay.facing(host, seat, side, s, rng.uniform(-0.3, 0.15), rng.uniform(-0.15, 0.15))


def _dining(lay: Layout, rng, k: int):
    for _ in range(k):
        model = table(rng, "round" if rng.random() < 0.25 else "rect")
        host = lay.free(model, rng, margin=np.linalg.norm(model.hi[:2]) + 0.5)
        if host:
            sides = [0, 1] + [s for s in (2, 3) if rng.random() < 0.4]
            seats_around(lay, rng, host, chair(rng), sides, 4)
    _side_furniture(lay, rng, k)


def _office(lay: Layout, rng, k: int):
    wall = int(rng.integers(4))
    model, seat = desk(rng), chair(rng)
    n = int(rng.integers(1, 2 + 2 * k))
    for host in lay.row_along_wall([model] * n, wall, rng.uniform(0.0, 0.8), rng, gap=(0.0, 0.08)):
        lay.facing(host, seat, 1, 0.0, rng.uniform(-0.3, 0.1), rng.uniform(-0.3, 0.3))
    if k > 1:
        _dining(lay, rng, 1)
    else:
        _side_furniture(lay, rng, 1)


def _living(lay: Layout, rng, k: int):
    for _ in range(k):
        couch = lay.random_on_wall(sofa(rng), int(rng.integers(4)), rng)
        if couch is None:
            continue
        front = couch.to_world((0.0, couch.furniture.lo[1] - rng.uniform(0.35, 0.55)))
        coffee = table(rng, "coffee")
        host = lay.add(coffee, couch.yaw + rng.uniform(-0.1, 0.1), *(front - rot2(np.array(
            [0.0, coffee.hi[1]]), couch.yaw)))
        if host and rng.random() < 0.8:
            seats_around(lay, rng, host, chair(rng), [s for s in (2, 3) if rng.random() < 0.6], 1)
        light = lamp(rng)
        lamp_s = (couch.furniture.width + light.width) / 2 + rng.uniform(0.05, 0.25)
        lay.add(light, 0.0, *couch.to_world((lamp_s * rng.choice((-1, 1)), 0.0)))
    _side_furniture(lay, rng, k)


def _bedroom(lay: Layout, rng, k: int):
    for _ in range(k):
        bunk = lay.random_on_wall(bed(rng), int(rng.integers(4)), rng)
        if bunk is None:
            continue
        stand = cabinet(rng, tall=False, max_width=0.6)
        for sx in (-1, 1):
            if rng.random() < 0.7:
                s = sx * (bunk.furniture.width / 2 + stand.width / 2 + lay.gap + rng.uniform(0.0, 0.1))
                x, y = bunk.to_world((s, bunk.furniture.hi[1] - stand.hi[1]))
                lay.add(stand, bunk.yaw, x, y)
    if rng.random() < 0.6:
        lay.random_on_wall(cabinet(rng, tall=True), int(rng.integers(4)), rng)
    if rng.random() < 0.6:
        host = lay.random_on_wall(desk(rng), int(rng.integers(4)), rng)
        if host:
            lay.facing(host, chair(rng), 1, 0.0, rng.uniform(-0.3, 0.1))
    _side_furniture(lay, rng, k)


def _classroom(lay: Layout, rng, k: int):
    """Rows of identical chairs packed side by side, a desk or table in front."""
    seat, wall = chair(rng), int(rng.integers(4))
    gap = lay.gap + rng.uniform(0.0, 0.12)
    pitch_x, pitch_y = seat.width + gap, (seat.hi[1] - seat.lo[1]) + rng.uniform(0.35, 0.7)
    n_rows, n_cols = int(rng.integers(1, 2 + k)), int(rng.integers(3, 4 + 2 * k))
    yaw = WALL_YAW[wall] + np.pi + rng.uniform(-0.08, 0.08)  # facing the wall
    origin = np.array([rng.uniform(0.2, 0.8) * lay.lx, rng.uniform(0.2, 0.8) * lay.ly])
    front = lay.free(desk(rng) if rng.random() < 0.5 else table(rng, "rect"), rng)
    for r in range(n_rows):
        for c in range(n_cols):
            local = np.array([(c - (n_cols - 1) / 2) * pitch_x, r * pitch_y])
            lay.add(seat, yaw, *(origin + rot2(local, yaw)))
    if front is None:
        lay.free(table(rng, "rect"), rng)
    _side_furniture(lay, rng, k)


def _side_furniture(lay: Layout, rng, k: int):
    """Runs of identical cabinets or bookshelves along walls, sometimes a sofa, and a lamp."""
    for _ in range(k):
        wall = int(rng.integers(4))
        model = cabinet(rng) if rng.random() < 0.5 else bookshelf(rng)
        n = int(rng.integers(1, 4))
        lay.row_along_wall([model] * n, wall, rng.uniform(0.0, 1.0), rng, gap=(0.0, 0.04))
    if rng.random() < 0.5:
        lay.random_on_wall(bookshelf(rng) if rng.random() < 0.5 else cabinet(rng), int(rng.integers(4)), rng)
    if rng.random() < 0.25:
        lay.random_on_wall(sofa(rng), int(rng.integers(4)), rng)
    if rng.random() < 0.5:
        lay.random_on_wall(lamp(rng), int(rng.integers(4)), rng, offset=rng.uniform(0.05, 0.4))


RECIPES = {"dining": _dining, "office": _office, "living": _living, "bedroom": _bedroom,
           "classroom": _classroom}
_EXTRAS = (
    lambda lay, rng: lay.free(chair(rng), rng),
    lambda lay, rng: lay.random_on_wall(lamp(rng), int(rng.integers(4)), rng, offset=rng.uniform(0.05, 0.5)),
    lambda lay, rng: lay.random_on_wall(cabinet(rng), int(rng.integers(4)), rng),
    lambda lay, rng: lay.random_on_wall(bookshelf(rng), int(rng.integers(4)), rng),
    lambda lay, rng: lay.random_on_wall(sofa(rng), int(rng.integers(4)), rng),
    lambda lay, rng: lay.free(table(rng), rng),
    lambda lay, rng: lay.random_on_wall(desk(rng), int(rng.integers(4)), rng),
    lambda lay, rng: lay.random_on_wall(bed(rng), int(rng.integers(4)), rng),
)


# --- the room -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Room:
    """Room box (floor at z=0, walls at x=0, x=lx, y=0, y=ly), its furniture, the wall openings
    (wall, s0, s1, z0, z1) of the door and windows, and the floor / wall colours."""

    lx: float
    ly: float
    height: float
    recipe: str
    objects: tuple
    openings: tuple
    floor_color: np.ndarray
    wall_color: np.ndarray

    def shell(self) -> PartSet:
        """Floor slab (top face only) and the four walls (inner face only) as world parts."""
        b = PartsBuilder()
        only = lambda f: tuple(i == f for i in range(6))  # noqa: E731
        lx, ly, h, t = self.lx, self.ly, self.height, 0.1
        b.box((0, 0, -t), (lx, ly, 0), self.floor_color, only(5))
        b.box((0, -t, 0), (lx, 0, h), self.wall_color, only(3))       # wall 0, y = 0
        b.box((lx, 0, 0), (lx + t, ly, h), self.wall_color, only(0))  # wall 1, x = lx
        b.box((0, ly, 0), (lx, ly + t, h), self.wall_color, only(2))  # wall 2, y = ly
        b.box((-t, 0, 0), (0, ly, h), self.wall_color, only(1))       # wall 3, x = 0
        return b.build()

    @staticmethod
    def shell_classes() -> tuple:
        return (FLOOR, WALL, WALL, WALL, WALL)


def build_room(rng: np.random.Generator, side=(3.0, 5.5), height=(2.4, 2.8), objects=(4, 12),
               scale: int = 1, recipe: str | None = None) -> Room:
    """Draw a room and furnish it.

    Parameters
    ----------
    side, height : (float, float)
        Ranges of the room's side lengths and wall height (metres).
    objects : (int, int)
        Minimum and maximum number of furniture objects.
    scale : int
        Recipe multiplier (1: a small room with one group, 2: ScanNet-like rooms with more groups).
    recipe : str, optional
        One of :data:`RECIPES` (random by default).
    """
    lx, ly = rng.uniform(*side, size=2)
    lay = Layout(lx, ly, max_objects=objects[1])
    openings = [door_part(lay, rng, height[0]), *windows(lay, rng, (0.8, 2.0))]
    recipe = recipe or list(RECIPES)[rng.integers(len(RECIPES))]
    RECIPES[recipe](lay, rng, scale)
    for _ in range(40):
        if len(lay.placed) >= objects[0]:
            break
        _EXTRAS[rng.integers(len(_EXTRAS))](lay, rng)
    return Room(float(lx), float(ly), float(rng.uniform(*height)), recipe, tuple(lay.placed),
                tuple(openings), pick(rng, "flooring"), pick(rng, "paint"))


def windows(lay: Layout, rng, width) -> list[tuple]:
    """0-2 window openings ``(wall, s0, s1, z0, z1)``, each ``width`` (a range) wide, 0.8-1.0 m
    above the floor and 1.9-2.2 m at the top, on a random wall."""
    out = []
    for _ in range(int(rng.integers(0, 3))):
        wall = int(rng.integers(4))
        w = rng.uniform(*width)
        s0 = rng.uniform(0.2, max(0.2, lay.wall_length(wall) - w - 0.2))
        out.append((wall, s0, s0 + w, rng.uniform(0.8, 1.0), rng.uniform(1.9, 2.2)))
    return out


def door_part(lay: Layout, rng, height: float):
    """A door opening on a random wall; the floor in front of it is kept free."""
    wall, width = int(rng.integers(4)), rng.uniform(0.8, 1.0)
    s0 = rng.uniform(0.1, lay.wall_length(wall) - width - 0.1)
    depth = width  # the door leaf swings into the room
    if wall == 0:
        lay.reserve(s0, 0.0, s0 + width, depth)
    elif wall == 1:
        lay.reserve(lay.lx - depth, s0, lay.lx, s0 + width)
    elif wall == 2:
        lay.reserve(s0, lay.ly - depth, s0 + width, lay.ly)
    else:
        lay.reserve(0.0, s0, depth, s0 + width)
    return wall, s0, s0 + width, 0.0, min(2.05, height - 0.1)
