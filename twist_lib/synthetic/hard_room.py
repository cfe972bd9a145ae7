"""Rooms of the hard variant: eight room types drawn with long-tailed frequencies, objects that
touch, unannotated clutter and door leaves.

Placement uses :class:`.room.Layout` (parts never interpenetrate) with a smaller ``gap``, so
same-class neighbours touch: desks pushed together in islands, tables joined end to end, rows
of chairs side by side, runs of counters, cabinets and shelves, twin beds side by side. Each
object is drawn from its class's templates (:mod:`.hard_templates`, :mod:`.hard_furniture`)
with random proportions (:func:`.hard_furniture.stretch`).

Class frequencies follow the room types (:data:`ROOM_WEIGHTS`): refrigerator, counter and
sink mostly come with kitchens, toilet and bathtub only with bathrooms, so these classes are in
a few percent of the scenes (ScanNet's tail: bathtub, toilet, refrigerator), while chairs,
tables, doors and cabinets are in most.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import (BATHTUB, BED, BOOKSHELF, CABINET, CHAIR, COUNTER, DESK, LAMP, OTHERFURNITURE,
                      REFRIGERATOR, SINK, SOFA, TABLE, TOILET)
from .furniture import Furniture
from .hard_furniture import (bathtub, clutter, counter, door, otherfurniture, refrigerator, sink, stretch,
                             toilet)
from .hard_templates import any_template, nightstand, wall_cabinet
from .materials import pick
from .parts import PartSet
from .room import WALL_YAW, Layout, Placed, Room, door_part, rot2, seats_around, windows

ROOM_WEIGHTS = {"office": 0.19, "dining": 0.15, "living": 0.17, "bedroom": 0.17, "classroom": 0.09,
                "storage": 0.08, "kitchen": 0.09, "bathroom": 0.06}
ROOM_SIDES = {"bathroom": (2.0, 3.2), "kitchen": (2.8, 5.0)}   # others: the preset's side range
# Classes of the objects added at random until the room holds its minimum number of objects.
EXTRA_WEIGHTS = {CHAIR: 0.2, OTHERFURNITURE: 0.2, CABINET: 0.15, TABLE: 0.11, BOOKSHELF: 0.1, DESK: 0.07,
                 LAMP: 0.07, SOFA: 0.05, BED: 0.03, REFRIGERATOR: 0.01, SINK: 0.01}
_NEW = {REFRIGERATOR: refrigerator, COUNTER: counter, TOILET: toilet, SINK: sink, BATHTUB: bathtub,
        OTHERFURNITURE: otherfurniture}


@dataclass
class Draw:
    """What a recipe needs: the generator, the layout and the proportion spread."""

    rng: np.random.Generator
    lay: Layout
    spread: float

    def make(self, cls: int) -> Furniture:
        """One object of class ``cls``: a random template, random proportions."""
        build = _NEW.get(cls)
        furn = build(self.rng) if build else any_template(cls, self.rng)
        return stretch(furn, self.rng, self.spread)

    def wall(self) -> int:
        return int(self.rng.integers(4))


def _on_top(lay: Layout, rng, host: Placed, furn: Furniture, s: float = 0.0, inset: float = 0.0):
    """Put ``furn`` on the highest part of ``host``, ``s`` along the host's x, ``inset`` metres
    in from its front, touching it (``lay.gap`` above)."""
    top = host.furniture.hi[2] + lay.gap
    lifted = Furniture(furn.cls, PartSet(furn.parts.kind, furn.parts.lo + (0, 0, top),
                                         furn.parts.hi + (0, 0, top), furn.parts.color, furn.parts.faces))
    y = host.furniture.lo[1] - furn.lo[1] + inset
    x, yy = host.to_world((s, y))
    return lay.add(lifted, host.yaw + rng.uniform(-0.2, 0.2) * (furn.cls < 0), x, yy)


def _pair(lay: Layout, d: Draw, model: Furniture, host: Placed, side: int):
    """A copy of ``model`` touching ``host``: behind it facing the other way (side 0) or next
    to it along its x axis, on the right or else on the left (side 1)."""
    if side == 0:
        x, y = host.to_world((0.0, host.furniture.hi[1] + model.hi[1] + lay.gap + d.rng.uniform(0.0, 0.01)))
        return lay.add(model, host.yaw + np.pi, x, y)
    right = host.furniture.hi[0] - model.lo[0] + lay.gap + d.rng.uniform(0.0, 0.01)
    left = host.furniture.lo[0] - model.hi[0] - lay.gap - d.rng.uniform(0.0, 0.01)
    for dx in (right, left):
        p = lay.add(model, host.yaw, *host.to_world((dx, 0.0)))
        if p is not None:
            return p
    return None


# --- recipes ------------------------------------------------------------------------------------
def _cabinet_run(d: Draw):
    """One to three identical cabinets side by side along a random wall."""
    model, n, wall = d.make(CABINET), int(d.rng.integers(1, 4)), d.wall()
    return d.lay.row_along_wall([model] * n, wall, d.rng.uniform(0, 1), d.rng, gap=(0, 0.01))


def _office(d: Draw):
    lay, rng = d.lay, d.rng
    model, seat = d.make(DESK), d.make(CHAIR)
    if rng.random() < 0.7:  # islands of desks pushed together, chairs at each
        for _ in range(int(rng.integers(1, 3))):
            first = lay.free(model, rng, margin=1.0)
            if first is None:
                continue
            island = [first]
            for _ in range(int(rng.integers(0, 3))):
                nxt = _pair(lay, d, model, island[-1], 1)
                if nxt is None:
                    break
                island.append(nxt)
            island += [p for p in (_pair(lay, d, model, h, 0) for h in list(island)) if p]
            for host in island:
                lay.facing(host, seat, 1, 0.0, rng.uniform(-0.3, 0.1), rng.uniform(-0.4, 0.4))
    else:
        n = int(rng.integers(2, 5))
        for host in lay.row_along_wall([model] * n, d.wall(), rng.uniform(0.0, 0.6), rng, gap=(0.0, 0.01)):
            lay.facing(host, seat, 1, 0.0, rng.uniform(-0.3, 0.1), rng.uniform(-0.4, 0.4))
    _cabinet_run(d)
    for cls in (OTHERFURNITURE, BOOKSHELF, OTHERFURNITURE):
        if rng.random() < 0.5:
            lay.random_on_wall(d.make(cls), d.wall(), rng)


def _dining(d: Draw):
    lay, rng = d.lay, d.rng
    for _ in range(int(rng.integers(1, 3))):
        model = d.make(TABLE)
        host = lay.free(model, rng, margin=np.linalg.norm(model.hi[:2]) + 0.4)
        if host is None:
            continue
        hosts = [host]
        if rng.random() < 0.5:  # two tables joined end to end
            other = _pair(lay, d, model, host, 1)
            hosts += [other] if other else []
        seat = d.make(CHAIR)
        for h in hosts:
            seats_around(lay, rng, h, seat, [0, 1], 3)
    if rng.random() < 0.6:
        lay.random_on_wall(d.make(CABINET), d.wall(), rng)
    if rng.random() < 0.3:
        lay.random_on_wall(d.make(BOOKSHELF), d.wall(), rng)


def _living(d: Draw):
    lay, rng = d.lay, d.rng
    couch = lay.random_on_wall(d.make(SOFA), d.wall(), rng)
    if couch is not None:
        front = couch.to_world((0.0, couch.furniture.lo[1] - rng.uniform(0.35, 0.55)))
        coffee = d.make(TABLE)
        host = lay.add(coffee, couch.yaw, *(front - rot2(np.array([0.0, coffee.hi[1]]), couch.yaw)))
        if host is not None:
            seat = d.make(CHAIR)
            seats_around(lay, rng, host, seat, [s for s in (2, 3) if rng.random() < 0.6], 1)
        for cls in (TABLE, LAMP):  # side table and lamp next to the sofa
            if rng.random() < 0.6:
                f = d.make(cls)
                s = (couch.furniture.width + f.width) / 2 + lay.gap + rng.uniform(0.0, 0.1)
                lay.add(f, couch.yaw, *couch.to_world((s * rng.choice((-1, 1)), 0.0)))
    for cls, p in ((OTHERFURNITURE, 0.7), (BOOKSHELF, 0.5), (SOFA, 0.25), (OTHERFURNITURE, 0.4)):
        if rng.random() < p:
            lay.random_on_wall(d.make(cls), d.wall(), rng)


def _bedroom(d: Draw):
    lay, rng = d.lay, d.rng
    main_bed = lay.random_on_wall(d.make(BED), d.wall(), rng)
    if main_bed is not None:
        if rng.random() < 0.45:  # twin beds side by side
            _pair(lay, d, main_bed.furniture, main_bed, 1)
        stand = stretch(nightstand(rng), rng, d.spread)
        for sx in (-1, 1):
            if rng.random() < 0.6:
                s = sx * (main_bed.furniture.width / 2 + stand.width / 2 + lay.gap + rng.uniform(0.0, 0.05))
                lay.add(stand, main_bed.yaw, *main_bed.to_world((s, main_bed.furniture.hi[1] - stand.hi[1])))
    for cls, p in ((CABINET, 0.7), (DESK, 0.5), (LAMP, 0.4), (OTHERFURNITURE, 0.4)):
        if rng.random() < p:
            host = lay.random_on_wall(d.make(cls), d.wall(), rng)
            if host is not None and cls == DESK:
                lay.facing(host, d.make(CHAIR), 1, 0.0, rng.uniform(-0.3, 0.1))


def _classroom(d: Draw):
    """Rows of identical chairs packed side by side, sometimes behind rows of joined tables."""
    lay, rng = d.lay, d.rng
    seat, wall = d.make(CHAIR), d.wall()
    gap = lay.gap + rng.uniform(0.0, 0.02)
    tables = rng.random() < 0.4
    row_table = d.make(TABLE) if tables else None
    table_d = row_table.hi[1] - row_table.lo[1] if tables else 0.0
    pitch_x = seat.width + gap
    pitch_y = (seat.hi[1] - seat.lo[1]) + table_d + rng.uniform(0.35, 0.6)
    yaw = WALL_YAW[wall] + np.pi + rng.uniform(-0.05, 0.05)
    across, deep = (lay.lx, lay.ly) if wall in (0, 2) else (lay.ly, lay.lx)
    n_cols = int(min(rng.integers(3, 8), max(1, (across - 0.6) // pitch_x)))
    n_rows = int(min(rng.integers(1, 4), max(1, (deep - 1.2) // pitch_y)))
    per_table = max(1, int(row_table.width // pitch_x)) if tables else 1
    # the block of rows centred in the room, rows going back from the wall the seats face
    centre = np.array([0.0, (n_rows - 1) * pitch_y / 2 - table_d / 2])
    origin = np.array([lay.lx / 2, lay.ly / 2]) - rot2(centre, yaw)
    for r in range(n_rows):
        for c in range(n_cols):
            local = np.array([(c - (n_cols - 1) / 2) * pitch_x, r * pitch_y])
            if tables and c % per_table == 0:
                at = local + ((per_table - 1) * pitch_x / 2, -(row_table.hi[1] - seat.lo[1] + 0.05))
                lay.add(row_table, yaw, *(origin + rot2(at, yaw)))
            lay.add(seat, yaw, *(origin + rot2(local, yaw)))
    lay.random_on_wall(d.make(DESK), wall, rng)
    _cabinet_run(d)


def _storage(d: Draw):
    lay, rng = d.lay, d.rng
    for _ in range(int(rng.integers(1, 3))):
        model = d.make(BOOKSHELF if rng.random() < 0.5 else CABINET)
        lay.row_along_wall([model] * int(rng.integers(1, 4)), d.wall(), rng.uniform(0, 1), rng, gap=(0, 0.01))
    for _ in range(int(rng.integers(3, 8))):
        lay.free(d.make(OTHERFURNITURE), rng)
    if rng.random() < 0.5:
        seat = d.make(CHAIR)
        for _ in range(int(rng.integers(1, 4))):
            lay.free(seat, rng)


def _kitchen(d: Draw):
    lay, rng = d.lay, d.rng
    walls = [d.wall()]
    if rng.random() < 0.5:
        walls.append((walls[0] + 1) % 4)
    fridge_done = rng.random() > 0.85
    for i, wall in enumerate(walls):
        run = d.make(COUNTER)
        start = run.width / 2 + (0.62 if i else 0.0) + rng.uniform(0.0, 0.3)
        host = lay.against_wall(run, wall, start)
        if host is None:
            continue
        if i == 0 and rng.random() < 0.75:  # the sink sits on the counter
            basin = sink(rng, on_top=host.furniture.hi[2] + lay.gap)
            s = rng.uniform(-0.4, 0.4) * max(0.0, run.width - basin.width)
            _on_top(lay, rng, host, basin, s, inset=rng.uniform(0.03, 0.08))
        if not fridge_done:
            f = d.make(REFRIGERATOR)
            at = start + run.width / 2 + f.width / 2 + lay.gap + 0.005
            fridge_done = bool(lay.against_wall(f, wall, at))
        if rng.random() < 0.7:  # wall cabinets above
            top = wall_cabinet(rng, bottom=rng.uniform(1.42, 1.55))
            lay.against_wall(top, wall, start + rng.uniform(-0.3, 0.3) * max(0.0, run.width - top.width))
    if not fridge_done:
        lay.random_on_wall(d.make(REFRIGERATOR), d.wall(), rng)
    if rng.random() < 0.5:
        host = lay.free(d.make(TABLE), rng, margin=0.8)
        if host:
            seats_around(lay, rng, host, d.make(CHAIR), [0, 1], 2)
    for cls in (OTHERFURNITURE, CABINET):
        if rng.random() < 0.5:
            lay.random_on_wall(d.make(cls), d.wall(), rng)


def _bathroom(d: Draw):
    lay, rng = d.lay, d.rng
    if rng.random() < 0.6:  # a tub in a corner, along a wall
        tub = d.make(BATHTUB)
        wall = d.wall()
        lay.against_wall(tub, wall, tub.width / 2 + 0.002 if rng.random() < 0.5 else
                         lay.wall_length(wall) - tub.width / 2 - 0.002)
    if rng.random() < 0.92:
        lay.random_on_wall(d.make(TOILET), d.wall(), rng, tries=20)
    if rng.random() < 0.9:
        if rng.random() < 0.45:  # vanity: a low cabinet with the basin on it
            vanity = lay.random_on_wall(stretch(nightstand(rng), rng, d.spread) if rng.random() < 0.3
                                        else d.make(CABINET), d.wall(), rng, tries=20)
            if vanity is not None and vanity.furniture.hi[2] < 1.0:
                basin = sink(rng, on_top=vanity.furniture.hi[2] + lay.gap)
                _on_top(lay, rng, vanity, basin, 0.0, inset=0.02)
        else:
            lay.random_on_wall(sink(rng), d.wall(), rng, tries=20)
    for cls, p in ((OTHERFURNITURE, 0.5), (CABINET, 0.4)):
        if rng.random() < p:
            lay.random_on_wall(d.make(cls), d.wall(), rng)


RECIPES = {"office": _office, "dining": _dining, "living": _living, "bedroom": _bedroom,
           "classroom": _classroom, "storage": _storage, "kitchen": _kitchen, "bathroom": _bathroom}


def _extra(d: Draw):
    """One more object of a class drawn by :data:`EXTRA_WEIGHTS`; sometimes a copy of one of its
    class already in the room, touching it."""
    classes = list(EXTRA_WEIGHTS)
    w = np.array(list(EXTRA_WEIGHTS.values()))
    cls = classes[d.rng.choice(len(classes), p=w / w.sum())]
    hosts = [p for p in d.lay.placed if p.furniture.cls == cls]
    if hosts and d.rng.random() < 0.6:  # a matching copy next to one already there
        host = hosts[d.rng.integers(len(hosts))]
        placed = _pair(d.lay, d, host.furniture, host, 1)
        if placed is not None:
            return placed
    furn = d.make(cls)
    if cls in (CHAIR, OTHERFURNITURE, TABLE) and d.rng.random() < 0.6:
        return d.lay.free(furn, d.rng)
    return d.lay.random_on_wall(furn, d.wall(), d.rng)


def _scatter_clutter(d: Draw, n: int):
    """``n`` unannotated small things, on the tops of low objects or on the floor."""
    tops = [p for p in d.lay.placed if p.furniture.cls in (TABLE, DESK, COUNTER, CABINET, BED, OTHERFURNITURE)
            and p.furniture.hi[2] < 1.2]
    for _ in range(n):
        thing = clutter(d.rng)
        if tops and d.rng.random() < 0.7:
            host = tops[d.rng.integers(len(tops))]
            room = max(0.0, host.furniture.width - thing.width) / 2
            depth = host.furniture.hi[1] - host.furniture.lo[1] - (thing.hi[1] - thing.lo[1])
            inset = d.rng.uniform(0.02, max(0.03, depth))
            _on_top(d.lay, d.rng, host, thing, d.rng.uniform(-room, room), inset)
        else:
            d.lay.free(thing, d.rng, tries=10)


def build_hard_room(rng: np.random.Generator, side=(3.0, 6.0), height=(2.4, 3.0), objects=(8, 18),
                    spread: float = 0.15, gap: float = 0.003, clutter=(0, 6), door_leaf: float = 0.85,
                    recipe: str | None = None) -> Room:
    """Draw a room of the hard variant and furnish it.

    Parameters
    ----------
    side, height : (float, float)
        Side-length and wall-height ranges, metres (bathrooms and kitchens: :data:`ROOM_SIDES`).
    objects : (int, int)
        Minimum and maximum number of annotated objects (clutter and the door leaf not counted).
    spread : float
        Proportion spread of :func:`.hard_furniture.stretch`.
    gap : float
        Smallest distance between two objects' parts (touching below a voxel).
    clutter : (int, int)
        Range of the number of unannotated small things.
    door_leaf : float
        Probability that the door opening holds a leaf (closed, ajar or open).
    recipe : str, optional
        One of :data:`RECIPES` (drawn by :data:`ROOM_WEIGHTS` by default).
    """
    names = list(ROOM_WEIGHTS)
    w = np.array(list(ROOM_WEIGHTS.values()))
    recipe = recipe or names[rng.choice(len(names), p=w / w.sum())]
    lx, ly = rng.uniform(*ROOM_SIDES.get(recipe, side), size=2)
    lay = Layout(lx, ly, max_objects=objects[1], gap=gap)
    openings = [door_part(lay, rng, height[0]), *windows(lay, rng, (0.6, 1.8))]
    d = Draw(rng, lay, spread)
    RECIPES[recipe](d)
    for _ in range(40):
        if len(lay.placed) >= objects[0]:
            break
        _extra(d)
    lay.max_objects = 10**6  # clutter does not count
    _scatter_clutter(d, int(rng.integers(clutter[0], clutter[1] + 1)))
    placed = list(lay.placed)
    if rng.random() < door_leaf:
        placed.append(_door_leaf(lay, rng, openings[0]))
    return Room(float(lx), float(ly), float(rng.uniform(*height)), recipe, tuple(placed), tuple(openings),
                pick(rng, "flooring"), pick(rng, "paint"))


def _door_leaf(lay: Layout, rng, opening) -> Placed:
    """The leaf of the door opening, hinged at one end and swung into the room (inside the swing
    area :func:`.room.door_part` keeps free): closed, ajar or wide open."""
    wall, s0, s1, _, z1 = opening
    leaf = door(rng, s1 - s0 - 0.06, z1 - 0.01)
    angle = (0.0, rng.uniform(0.15, 0.6), rng.uniform(1.2, 1.55))[rng.choice(3, p=[0.35, 0.3, 0.35])]
    # the hinge 5 cm in from the opening's end, so that the open leaf's thickness stays in the
    # swing area
    hinge = {0: (s0 + 0.05, 0.0), 1: (lay.lx, s0 + 0.05), 2: (s1 - 0.05, lay.ly), 3: (0.0, s1 - 0.05)}[wall]
    base = (0.0, np.pi / 2, np.pi, -np.pi / 2)[wall]
    off = rot2(np.array([0.0, 0.004]), base)
    return Placed(leaf, float(base + angle), float(hinge[0] + off[0]), float(hinge[1] + off[1]))
