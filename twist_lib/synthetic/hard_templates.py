"""More templates for the eight classes of :mod:`.furniture`, for the hard variant: each class
draws one of several shapes, the original builder among them (:data:`TEMPLATES`, weights per
class), so a class is no longer one parametric family.

The new shapes are the ones a real scan mixes into a class and that overlap other classes:
an upholstered armchair is a chair that looks like a one-seat sofa, a bar chair is a stool with
a back, a desk with a hutch carries shelves like a bookshelf, a nightstand or a wall cabinet is
a cabinet, a futon is a bed without a frame, a daybed a bed with a back like a sofa.
"""
from __future__ import annotations

import numpy as np

from .classes import BED, BOOKSHELF, CABINET, CHAIR, DESK, LAMP, SOFA, TABLE
from .furniture import (BUILDERS, Furniture, drawer_stack_parts, leg_parts, bed, bookshelf, cabinet, chair, desk,
                        lamp, sofa, table)
from .materials import pick
from .parts import PartsBuilder, PartSet


# --- chair ------------------------------------------------------------------------------------
def office_chair(rng) -> Furniture:
    """A cross base on the floor, a gas pole, a seat and a back on a post; sometimes arms."""
    w, d = rng.uniform(0.44, 0.56), rng.uniform(0.42, 0.52)
    seat_h = rng.uniform(0.42, 0.52)
    frame, cover = pick(rng, "metal"), pick(rng, "fabric", "leather")
    b = PartsBuilder()
    arm = rng.uniform(0.26, 0.34)
    b.box((-arm, -0.025, 0.02), (arm, 0.025, 0.07), frame)
    b.box((-0.025, -arm, 0.02), (0.025, arm, 0.07), frame)
    for x, y in ((arm, 0), (-arm, 0), (0, arm), (0, -arm)):
        b.cylinder(x * 0.9, y * 0.9, 0.025, 0.0, 0.02, frame)
    b.cylinder(0.0, 0.0, 0.025, 0.07, seat_h - 0.08, frame)
    b.box((-w / 2, -d / 2, seat_h - 0.08), (w / 2, d / 2, seat_h), cover)
    back_z0, back_h = seat_h + rng.uniform(0.05, 0.12), rng.uniform(0.35, 0.6)
    b.box((-0.03, d / 2, seat_h - 0.06), (0.03, d / 2 + 0.04, back_z0 + 0.1), frame)
    b.box((-w / 2 + 0.02, d / 2, back_z0), (w / 2 - 0.02, d / 2 + rng.uniform(0.05, 0.09), back_z0 + back_h),
          cover)
    if rng.random() < 0.5:
        for sx in (-1, 1):
            x0, x1 = (w / 2, w / 2 + 0.05) if sx > 0 else (-w / 2 - 0.05, -w / 2)
            b.box((x0, -0.02, seat_h - 0.04), (x1, 0.02, seat_h + 0.18), frame)
            b.box((x0, -d / 2 + 0.08, seat_h + 0.18), (x1, d / 2 - 0.05, seat_h + 0.22), frame)
    return Furniture(CHAIR, b.build())


def bar_chair(rng) -> Furniture:
    """A tall seat on four legs with a footrest and a low back."""
    w, seat_h = rng.uniform(0.36, 0.46), rng.uniform(0.62, 0.8)
    frame, seat = pick(rng, "wood", "metal"), pick(rng, "wood", "fabric", "leather")
    b = PartsBuilder()
    b.box((-w / 2, -w / 2, seat_h - 0.04), (w / 2, w / 2, seat_h), seat)
    leg_parts(b, w / 2 - 0.03, w / 2 - 0.03, seat_h - 0.04, 0.03, frame, rng.random() < 0.5)
    b.box((-w / 2 + 0.03, -w / 2 + 0.015, 0.25), (w / 2 - 0.03, -w / 2 + 0.045, 0.28), frame)
    b.box((-w / 2, w / 2 - 0.03, seat_h), (w / 2, w / 2, seat_h + rng.uniform(0.2, 0.35)), seat)
    return Furniture(CHAIR, b.build())


def armchair(rng) -> Furniture:
    """An upholstered one-seat chair: base, two broad arms, a thick back, a cushion (a chair in
    ScanNet, a small sofa to the eye)."""
    w, d = rng.uniform(0.68, 0.9), rng.uniform(0.7, 0.9)
    col = pick(rng, "fabric", "leather")
    arm_w, arm_h = rng.uniform(0.1, 0.18), rng.uniform(0.55, 0.68)
    back_t, back_h = rng.uniform(0.12, 0.2), rng.uniform(0.75, 0.95)
    z0 = rng.uniform(0.08, 0.15) if rng.random() < 0.5 else 0.0
    b = PartsBuilder()
    inner = w / 2 - arm_w
    b.box((-inner, -d / 2, z0), (inner, d / 2 - back_t, rng.uniform(0.3, 0.36)), col)
    for sx in (-1, 1):
        b.box((min(sx * inner, sx * w / 2), -d / 2, z0), (max(sx * inner, sx * w / 2), d / 2, arm_h), col)
    b.box((-inner, d / 2 - back_t, z0), (inner, d / 2, back_h), col)
    if z0:
        leg_parts(b, w / 2 - 0.05, d / 2 - 0.05, z0, 0.035, pick(rng, "wood", "metal"), rng.random() < 0.5)
    return Furniture(CHAIR, b.build())


def sled_chair(rng) -> Furniture:
    """A stacking chair: two floor rails rising into uprights, a thin seat and back."""
    w, d, seat_h = rng.uniform(0.42, 0.5), rng.uniform(0.42, 0.5), rng.uniform(0.43, 0.47)
    frame, shell = pick(rng, "metal"), pick(rng, "laminate", "fabric", "wood")
    b = PartsBuilder()
    for sx in (-1, 1):
        x = sx * (w / 2 - 0.02)
        b.box((x - 0.012, -d / 2, 0.0), (x + 0.012, d / 2, 0.024), frame)
        b.box((x - 0.012, -d / 2, 0.024), (x + 0.012, -d / 2 + 0.024, seat_h - 0.02), frame)
        b.box((x - 0.012, d / 2 - 0.024, 0.024), (x + 0.012, d / 2, seat_h + 0.4), frame)
    b.box((-w / 2, -d / 2, seat_h - 0.02), (w / 2, d / 2 - 0.03, seat_h), shell)
    b.box((-w / 2, d / 2 - 0.03, seat_h + rng.uniform(0.12, 0.2)), (w / 2, d / 2, seat_h + 0.4), shell)
    return Furniture(CHAIR, b.build())


# --- sofa, table, desk --------------------------------------------------------------------------
def sectional(rng) -> Furniture:
    """A sofa with a chaise reaching forwards at one end (an L)."""
    base = sofa(rng)
    b, p = PartsBuilder(), base.parts
    lo, hi = base.lo, base.hi
    seat_top = float(np.median(p.hi[:, 2][p.hi[:, 2] < 0.5])) if np.any(p.hi[:, 2] < 0.5) else 0.42
    cw, reach = rng.uniform(0.6, 0.8), rng.uniform(0.5, 0.8)
    x0 = hi[0] - cw if rng.random() < 0.5 else lo[0]
    b.box((x0, lo[1] - reach, 0.0), (x0 + cw, lo[1] - 0.002, seat_top), p.color[0])
    return Furniture(SOFA, PartSet.concat([p, b.build()]))


def trestle_table(rng) -> Furniture:
    """A top on two panel legs joined by a stretcher."""
    w, d, h = rng.uniform(1.2, 2.4), rng.uniform(0.7, 1.0), rng.uniform(0.72, 0.78)
    col = pick(rng, "wood", "laminate")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), col)
    for sx in (-1, 1):
        x = sx * (w / 2 - rng.uniform(0.15, 0.3))
        b.box((x - 0.03, -d / 2 + 0.08, 0.0), (x + 0.03, d / 2 - 0.08, h - 0.04), col)
    b.box((-w / 2 + 0.3, -0.03, 0.3), (w / 2 - 0.3, 0.03, 0.38), col)
    return Furniture(TABLE, b.build())


def side_table(rng) -> Furniture:
    """A small table (side, bedside or bar height), square or round."""
    h = rng.uniform(1.0, 1.1) if rng.random() < 0.25 else rng.uniform(0.45, 0.65)
    col = pick(rng, "wood", "laminate", "metal")
    b = PartsBuilder()
    if rng.random() < 0.5:
        r = rng.uniform(0.2, 0.32)
        b.cylinder(0.0, 0.0, r, h - 0.03, h, col).cylinder(0.0, 0.0, 0.03, 0.0, h - 0.03, col)
        b.cylinder(0.0, 0.0, r * 0.7, 0.0, 0.025, col)
    else:
        s = rng.uniform(0.38, 0.6)
        b.box((-s / 2, -s / 2, h - 0.03), (s / 2, s / 2, h), col)
        leg_parts(b, s / 2 - 0.03, s / 2 - 0.03, h - 0.03, 0.035, col, rng.random() < 0.5)
    return Furniture(TABLE, b.build())


def l_desk(rng) -> Furniture:
    """A corner desk: a main top and a return top at one end, on panel legs."""
    w, d, h = rng.uniform(1.2, 1.7), rng.uniform(0.6, 0.75), rng.uniform(0.72, 0.76)
    ret, rd = rng.uniform(0.8, 1.3), rng.uniform(0.45, 0.6)
    col, frame = pick(rng, "wood", "laminate"), pick(rng, "metal", "laminate")
    sx = rng.choice((-1, 1))
    b = PartsBuilder()
    b.box((-w / 2, -d / 2, h - 0.03), (w / 2, d / 2, h), col)
    x0, x1 = (w / 2 - rd, w / 2) if sx > 0 else (-w / 2, -w / 2 + rd)
    b.box((x0, -d / 2 - ret, h - 0.03), (x1, -d / 2, h), col)
    xo = -w / 2 if sx > 0 else w / 2 - 0.03
    b.box((xo, -d / 2, 0.0), (xo + 0.03, d / 2, h - 0.03), frame)
    b.box((x0, -d / 2 - ret, 0.0), (x1, -d / 2 - ret + 0.03, h - 0.03), frame)
    return Furniture(DESK, b.build())


def hutch_desk(rng) -> Furniture:
    """A desk with a shelf hutch standing on the back of its top."""
    base = desk(rng)
    b, p = PartsBuilder(), base.parts
    lo, hi = base.lo, base.hi
    top, hd = hi[2], rng.uniform(0.22, 0.32)
    col, hh = p.color[0], rng.uniform(0.5, 0.9)
    y0 = hi[1] - hd
    for x in (lo[0], hi[0] - 0.02):
        b.box((x, y0, top), (x + 0.02, hi[1], top + hh), col)
    b.box((lo[0] + 0.02, hi[1] - 0.015, top), (hi[0] - 0.02, hi[1], top + hh), col)
    for z in np.linspace(top + hh / 2, top + hh - 0.02, 2):
        b.box((lo[0] + 0.02, y0, z), (hi[0] - 0.02, hi[1] - 0.015, z + 0.02), col)
    return Furniture(DESK, PartSet.concat([p, b.build()]))


# --- cabinet, bookshelf -------------------------------------------------------------------------
def wardrobe(rng) -> Furniture:
    """A tall, wide, deep cabinet with two or three full-height doors."""
    w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.52, 0.65), rng.uniform(1.8, 2.2)
    body, handle = pick(rng, "wood", "laminate", "paint"), pick(rng, "metal")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2 + 0.02, 0.0), (w / 2, d / 2, h), body)
    n = 2 if w < 1.3 else 3
    edges = np.linspace(-w / 2, w / 2, n + 1)
    for a, c in zip(edges[:-1], edges[1:]):
        b.box((a + 0.003, -d / 2, 0.06), (c - 0.003, -d / 2 + 0.02, h - 0.03), body)
        b.box((c - 0.05, -d / 2 - 0.03, h / 2 - 0.15), (c - 0.03, -d / 2, h / 2 + 0.15), handle)
    return Furniture(CABINET, b.build())


def file_cabinet(rng) -> Furniture:
    """A narrow metal or laminate cabinet with two to four drawers."""
    w, d, h = rng.uniform(0.38, 0.5), rng.uniform(0.45, 0.65), rng.uniform(0.6, 1.35)
    body = pick(rng, "metal", "laminate")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2 + 0.02, 0.0), (w / 2, d / 2, h), body)
    drawer_stack_parts(b, rng, -w / 2, w / 2, -d / 2 + 0.02, 0.02, h, body, pick(rng, "metal"))
    return Furniture(CABINET, b.build())


def nightstand(rng) -> Furniture:
    """A small cabinet: a drawer over an open shelf, on legs or not."""
    w, d, h = rng.uniform(0.38, 0.55), rng.uniform(0.3, 0.45), rng.uniform(0.45, 0.65)
    col = pick(rng, "wood", "laminate", "paint")
    b = PartsBuilder()
    z0 = rng.uniform(0.1, 0.2) if rng.random() < 0.4 else 0.0
    if z0:
        leg_parts(b, w / 2 - 0.03, d / 2 - 0.03, z0, 0.03, col, rng.random() < 0.5)
    b.box((-w / 2, -d / 2, z0), (w / 2, d / 2, z0 + 0.02), col)
    for sx in (-1, 1):
        x = sx * (w / 2 - 0.01)
        b.box((x - 0.01, -d / 2, z0 + 0.02), (x + 0.01, d / 2, h - 0.18), col)
    b.box((-w / 2 + 0.02, d / 2 - 0.01, z0 + 0.02), (w / 2 - 0.02, d / 2, h - 0.18), col)
    b.box((-w / 2, -d / 2, h - 0.18), (w / 2, d / 2, h), col)
    b.box((-0.05, -d / 2 - 0.02, h - 0.1), (0.05, -d / 2, h - 0.08), pick(rng, "metal"))
    return Furniture(CABINET, b.build())


def wall_cabinet(rng, bottom: float | None = None) -> Furniture:
    """A shallow cabinet hung on a wall, its bottom ``bottom`` metres above the floor."""
    w, d, h = rng.uniform(0.5, 1.6), rng.uniform(0.3, 0.36), rng.uniform(0.5, 0.8)
    z0 = rng.uniform(1.4, 1.55) if bottom is None else bottom
    body = pick(rng, "laminate", "wood", "paint")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2 + 0.02, z0), (w / 2, d / 2, z0 + h), body)
    n = max(1, int(round(w / 0.5)))
    edges = np.linspace(-w / 2, w / 2, n + 1)
    for a, c in zip(edges[:-1], edges[1:]):
        b.box((a + 0.003, -d / 2, z0 + 0.003), (c - 0.003, -d / 2 + 0.02, z0 + h - 0.003), body)
    return Furniture(CABINET, b.build())


def cube_shelf(rng) -> Furniture:
    """A grid of open cubes without a back, some holding boxes or books."""
    nx, nz = int(rng.integers(2, 5)), int(rng.integers(1, 5))
    cell, d, t = rng.uniform(0.3, 0.4), rng.uniform(0.3, 0.4), rng.uniform(0.015, 0.03)
    w, h = nx * cell + t, nz * cell + t
    col = pick(rng, "wood", "laminate", "paint")
    b = PartsBuilder()
    for x in np.linspace(-w / 2, w / 2 - t, nx + 1):
        b.box((x, -d / 2, 0.0), (x + t, d / 2, h), col)
    for i, z in enumerate(np.linspace(0.0, h - t, nz + 1)):
        b.box((-w / 2 + t, -d / 2, z), (w / 2 - t, d / 2, z + t), col)
        if i < nz:
            for j in range(nx):
                if rng.random() < 0.35:
                    x0 = -w / 2 + t + j * cell
                    b.box((x0 + 0.02, -d / 2 + 0.02, z + t),
                          (x0 + cell - t - 0.02, d / 2 - 0.01, z + cell * 0.8),
                          pick(rng, "fabric", "wood", "paint"))
    return Furniture(BOOKSHELF, b.build())


def low_bookshelf(rng) -> Furniture:
    """A wide, low bookshelf (the height of a sideboard)."""
    for _ in range(20):
        shelf = bookshelf(rng)
        if shelf.hi[2] < 1.2:
            return shelf
    return shelf


# --- bed, lamp ----------------------------------------------------------------------------------
def bunk_bed(rng) -> Furniture:
    """Two single frames with mattresses on four corner posts."""
    w, length = rng.uniform(0.9, 1.05), rng.uniform(1.95, 2.1)
    frame, linen = pick(rng, "wood", "metal"), pick(rng, "fabric", "paint")
    b = PartsBuilder()
    top = rng.uniform(1.5, 1.75)
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - 0.03), sy * (length / 2 - 0.03)
            b.box((x - 0.03, y - 0.03, 0.0), (x + 0.03, y + 0.03, top + 0.35), frame)
    for z in (rng.uniform(0.2, 0.3), top - 0.5):
        b.box((-w / 2 + 0.06, -length / 2 + 0.06, z), (w / 2 - 0.06, length / 2 - 0.06, z + 0.06), frame)
        b.box((-w / 2 + 0.07, -length / 2 + 0.07, z + 0.06), (w / 2 - 0.07, length / 2 - 0.07, z + 0.22),
              linen)
    b.box((-w / 2 + 0.06, length / 2 - 0.06, top - 0.28), (w / 2 - 0.06, length / 2 - 0.03, top + 0.3), frame)
    return Furniture(BED, b.build())


def futon(rng) -> Furniture:
    """A mattress on a low platform or on the floor, pillows, no headboard."""
    w, length = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1)
    linen = pick(rng, "fabric", "paint")
    b = PartsBuilder()
    z = rng.uniform(0.08, 0.18) if rng.random() < 0.6 else 0.0
    if z:
        b.box((-w / 2 - 0.05, -length / 2 - 0.05, 0.0), (w / 2 + 0.05, length / 2 + 0.05, z),
              pick(rng, "wood"))
    top = z + rng.uniform(0.12, 0.22)
    b.box((-w / 2, -length / 2, z), (w / 2, length / 2, top), linen)
    b.box((-w / 2 + 0.05, length / 2 - 0.45, top), (w / 2 - 0.05, length / 2 - 0.05, top + 0.1),
          pick(rng, "fabric"))
    return Furniture(BED, b.build())


def daybed(rng) -> Furniture:
    """A single mattress in a frame with a back along its length and two ends, like a sofa."""
    w, length = rng.uniform(0.85, 1.0), rng.uniform(1.95, 2.05)
    frame, linen = pick(rng, "wood", "metal", "paint"), pick(rng, "fabric")
    b = PartsBuilder()
    b.box((-length / 2, -w / 2, 0.0), (length / 2, w / 2, 0.3), frame)
    b.box((-length / 2 + 0.05, -w / 2 + 0.02, 0.3), (length / 2 - 0.05, w / 2 - 0.05, 0.48), linen)
    b.box((-length / 2, w / 2 - 0.05, 0.3), (length / 2, w / 2, rng.uniform(0.8, 1.0)), frame)
    for sx in (-1, 1):
        x = sx * (length / 2 - 0.025)
        b.box((x - 0.025, -w / 2, 0.3), (x + 0.025, w / 2 - 0.05, rng.uniform(0.75, 0.95)), frame)
    return Furniture(BED, b.build())


def arc_lamp(rng) -> Furniture:
    """A heavy base, a pole and a long horizontal arm with the shade hanging at its end."""
    h, reach = rng.uniform(1.7, 2.0), rng.uniform(0.6, 1.2)
    metal, shade = pick(rng, "metal"), pick(rng, "fabric", "paint", "metal")
    b = PartsBuilder()
    b.box((-0.15, -0.15, 0.0), (0.15, 0.15, 0.05), metal)
    b.cylinder(0.0, 0.0, 0.02, 0.05, h, metal)
    b.box((-0.02, -reach, h - 0.04), (0.02, 0.02, h), metal)
    r = rng.uniform(0.15, 0.25)
    b.cylinder(0.0, -reach, r, h - 0.04 - rng.uniform(0.15, 0.3), h - 0.04, shade)
    return Furniture(LAMP, b.build())


def tripod_lamp(rng) -> Furniture:
    """Three thin legs under a cylindrical shade."""
    h, spread = rng.uniform(1.3, 1.7), rng.uniform(0.18, 0.3)
    legs, shade = pick(rng, "wood", "metal"), pick(rng, "fabric", "paint")
    b = PartsBuilder()
    sh = rng.uniform(0.25, 0.4)
    for a in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
        b.cylinder(spread * np.cos(a), spread * np.sin(a), 0.015, 0.0, h - sh, legs)
    b.cylinder(0.0, 0.0, rng.uniform(0.2, 0.3), h - sh, h, shade)
    return Furniture(LAMP, b.build())


# Per class: (template, weight); the original builders of :mod:`.furniture` stay the most common.
TEMPLATES = {
    CHAIR: ((chair, 0.4), (office_chair, 0.25), (armchair, 0.12), (bar_chair, 0.08), (sled_chair, 0.15)),
    SOFA: ((sofa, 0.75), (sectional, 0.25)),
    TABLE: ((table, 0.6), (trestle_table, 0.15), (side_table, 0.25)),
    DESK: ((desk, 0.55), (l_desk, 0.2), (hutch_desk, 0.25)),
    CABINET: ((cabinet, 0.4), (wardrobe, 0.15), (file_cabinet, 0.15), (nightstand, 0.2), (wall_cabinet, 0.1)),
    BOOKSHELF: ((bookshelf, 0.55), (cube_shelf, 0.3), (low_bookshelf, 0.15)),
    BED: ((bed, 0.6), (bunk_bed, 0.15), (futon, 0.15), (daybed, 0.1)),
    LAMP: ((lamp, 0.6), (arc_lamp, 0.2), (tripod_lamp, 0.2)),
}
assert set(TEMPLATES) == set(BUILDERS)


def any_template(cls: int, rng: np.random.Generator) -> Furniture:
    """One object of class ``cls`` from one of its :data:`TEMPLATES`, drawn by weight."""
    options = TEMPLATES[cls]
    w = np.array([p for _, p in options])
    return options[rng.choice(len(options), p=w / w.sum())][0](rng)
