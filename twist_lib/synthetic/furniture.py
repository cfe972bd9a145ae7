"""Object builders: one function per instance class, each returning a :class:`Furniture` whose
parts are drawn with random sizes, styles and materials.

Object frame: origin on the floor at the centre of the footprint, z up, the *front* (where one
sits, the doors, the open side of a shelf) towards -y and the *back* towards +y, so an object
stands against a wall with its +y side on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import BED, BOOKSHELF, CABINET, CHAIR, DESK, LAMP, SOFA, TABLE
from .materials import any_colour, pick
from .parts import PartsBuilder, PartSet


@dataclass(frozen=True)
class Furniture:
    """One object: its semantic class and its parts in the object frame."""

    cls: int
    parts: PartSet

    @property
    def lo(self) -> np.ndarray:
        return self.parts.lo.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.parts.hi.max(axis=0)

    @property
    def width(self) -> float:
        return float(self.hi[0] - self.lo[0])


def leg_parts(b: PartsBuilder, x, y, z1, thickness, color, round_legs: bool, cy: float = 0.0):
    """Four legs from the floor to ``z1`` with centres at (±x, cy ± y)."""
    for sx in (-1, 1):
        for sy in (-1, 1):
            px, py = sx * x, cy + sy * y
            if round_legs:
                b.cylinder(px, py, thickness / 2, 0.0, z1, color)
            else:
                h = thickness / 2
                b.box((px - h, py - h, 0.0), (px + h, py + h, z1), color)


def chair(rng: np.random.Generator) -> Furniture:
    """Seat on four legs (or a swivel base), a slab or rail back, optional cushion and arms."""
    w, d = rng.uniform(0.40, 0.56), rng.uniform(0.40, 0.54)
    seat_h, seat_t = rng.uniform(0.42, 0.50), rng.uniform(0.025, 0.06)
    frame, seat_col = pick(rng, "wood", "metal"), pick(rng, "wood", "fabric", "leather")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2, seat_h - seat_t), (w / 2, d / 2, seat_h), seat_col)
    leg_t = rng.uniform(0.025, 0.045)
    if rng.random() < 0.25:  # swivel: a pole on a low disc
        b.cylinder(0.0, 0.0, rng.uniform(0.22, 0.30), 0.0, rng.uniform(0.03, 0.06), frame)
        b.cylinder(0.0, 0.0, rng.uniform(0.02, 0.035), 0.0, seat_h - seat_t, frame)
    else:
        inset = rng.uniform(0.0, 0.03) + leg_t / 2
        leg_parts(b, w / 2 - inset, d / 2 - inset, seat_h - seat_t, leg_t, frame, rng.random() < 0.5)
    back_h, back_t = rng.uniform(0.30, 0.50), rng.uniform(0.025, 0.06)
    top = seat_h + back_h
    if rng.random() < 0.6:  # solid back slab
        b.box((-w / 2, d / 2 - back_t, seat_h), (w / 2, d / 2, top), seat_col)
    else:  # two posts and a top rail
        rail_h = rng.uniform(0.06, 0.14)
        for sx in (-1, 1):
            b.box((sx * w / 2 - (sx > 0) * leg_t, d / 2 - back_t, seat_h),
                  (sx * w / 2 + (sx < 0) * leg_t, d / 2, top - rail_h), frame)
        b.box((-w / 2, d / 2 - back_t, top - rail_h), (w / 2, d / 2, top), seat_col)
    cushion_t = 0.0
    if rng.random() < 0.3:
        cushion_t = rng.uniform(0.03, 0.07)
        b.box((-w / 2 + 0.02, -d / 2 + 0.02, seat_h), (w / 2 - 0.02, d / 2 - back_t, seat_h + cushion_t),
              pick(rng, "fabric"))
    if rng.random() < 0.25:  # arms: a post and a rest on each side
        arm_h, arm_w = seat_h + cushion_t + rng.uniform(0.17, 0.24), rng.uniform(0.04, 0.08)
        for sx in (-1, 1):
            x0, x1 = (w / 2, w / 2 + arm_w) if sx > 0 else (-w / 2 - arm_w, -w / 2)
            b.box((x0, -d / 2 + 0.06, seat_h - seat_t), (x1, -d / 2 + 0.06 + arm_w, arm_h - 0.03), frame)
            b.box((x0, -d / 2 + 0.03, arm_h - 0.03), (x1, d / 2 - back_t, arm_h), seat_col)
    return Furniture(CHAIR, b.build())


def sofa(rng: np.random.Generator) -> Furniture:
    """Base, two arms, a back, 1-3 seat cushions, optional back cushions and short legs."""
    w, d = rng.uniform(1.35, 2.4), rng.uniform(0.80, 1.0)
    z0 = rng.uniform(0.05, 0.14) if rng.random() < 0.5 else 0.0
    body = pick(rng, "fabric", "leather")
    cushion_col = body if rng.random() < 0.7 else pick(rng, "fabric")
    arm_w, arm_h = rng.uniform(0.10, 0.25), rng.uniform(0.55, 0.70)
    back_t, back_h = rng.uniform(0.15, 0.25), rng.uniform(0.75, 0.95)
    base_top, cushion_t = rng.uniform(0.26, 0.34), rng.uniform(0.10, 0.15)
    inner = w / 2 - arm_w
    b = PartsBuilder()
    b.box((-inner, -d / 2, z0), (inner, d / 2 - back_t, base_top), body)
    for sx in (-1, 1):
        b.box((min(sx * inner, sx * w / 2), -d / 2, z0), (max(sx * inner, sx * w / 2), d / 2, arm_h), body)
    b.box((-inner, d / 2 - back_t, z0), (inner, d / 2, back_h), body)
    n = int(rng.integers(1, 4))
    edges = np.linspace(-inner, inner, n + 1)
    for x0, x1 in zip(edges[:-1], edges[1:]):
        b.box((x0 + 0.005, -d / 2 + 0.02, base_top), (x1 - 0.005, d / 2 - back_t, base_top + cushion_t),
              cushion_col)
        if rng.random() < 0.5:
            b.box((x0 + 0.01, d / 2 - back_t - rng.uniform(0.10, 0.18), base_top + cushion_t),
                  (x1 - 0.01, d / 2 - back_t, back_h - 0.05), cushion_col)
    if z0 > 0:
        leg_parts(b, w / 2 - 0.05, d / 2 - 0.05, z0, 0.04, pick(rng, "wood", "metal"), rng.random() < 0.5)
    return Furniture(SOFA, b.build())


def table(rng: np.random.Generator, style: str | None = None) -> Furniture:
    """A top on four legs (``rect``), on a pedestal (``round``) or low (``coffee``)."""
    style = style or ("rect", "rect", "rect", "round")[rng.integers(4)]
    top_col = pick(rng, "wood", "laminate")
    leg_col = top_col if rng.random() < 0.5 else pick(rng, "metal", "wood")
    top_t = rng.uniform(0.03, 0.06)
    b = PartsBuilder()
    if style == "round":
        r, h = rng.uniform(0.40, 0.60), rng.uniform(0.72, 0.78)
        b.cylinder(0.0, 0.0, r, h - top_t, h, top_col)
        b.cylinder(0.0, 0.0, rng.uniform(0.04, 0.08), 0.0, h - top_t, leg_col)
        b.cylinder(0.0, 0.0, rng.uniform(0.22, 0.32), 0.0, rng.uniform(0.02, 0.05), leg_col)
        return Furniture(TABLE, b.build())
    if style == "coffee":
        w, d, h = rng.uniform(0.8, 1.3), rng.uniform(0.45, 0.7), rng.uniform(0.38, 0.48)
    else:
        w, d, h = rng.uniform(0.8, 2.0), rng.uniform(0.7, 1.1), rng.uniform(0.72, 0.78)
    b.box((-w / 2, -d / 2, h - top_t), (w / 2, d / 2, h), top_col)
    leg_t, inset = rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.10)
    leg_parts(b, w / 2 - inset - leg_t / 2, d / 2 - inset - leg_t / 2, h - top_t, leg_t, leg_col,
          rng.random() < 0.4)
    if style == "coffee" and rng.random() < 0.5:  # lower shelf between the legs
        x, y = w / 2 - inset - leg_t, d / 2 - inset - leg_t
        z = rng.uniform(0.08, 0.15)
        b.box((-x, -y, z), (x, y, z + 0.02), top_col)
    elif style == "rect" and rng.random() < 0.4:  # apron under the top
        x, y, ah = w / 2 - inset - leg_t, d / 2 - inset - leg_t, rng.uniform(0.05, 0.09)
        for sy in (-1, 1):
            b.box((-x, sy * y - 0.01, h - top_t - ah), (x, sy * y + 0.01, h - top_t), leg_col)
    return Furniture(TABLE, b.build())


def drawer_stack_parts(b: PartsBuilder, rng, x0, x1, y_front, z0, z1, color, handle_col):
    """Drawer fronts (thin slabs proud of ``y_front``) with small handles, between z0 and z1."""
    n = int(rng.integers(2, 5))
    edges = np.linspace(z0, z1, n + 1)
    for a, c in zip(edges[:-1], edges[1:]):
        b.box((x0 + 0.005, y_front - 0.018, a + 0.004), (x1 - 0.005, y_front, c - 0.004), color)
        xm, zm = (x0 + x1) / 2, (a + c) / 2
        b.box((xm - 0.05, y_front - 0.035, zm - 0.01), (xm + 0.05, y_front - 0.018, zm + 0.01), handle_col)


def desk(rng: np.random.Generator) -> Furniture:
    """A top on legs with a modesty panel, or on one or two drawer pedestals with side panels."""
    w, d, h = rng.uniform(1.0, 1.7), rng.uniform(0.55, 0.80), rng.uniform(0.72, 0.77)
    top_t = rng.uniform(0.025, 0.045)
    top_col = pick(rng, "wood", "laminate")
    frame = top_col if rng.random() < 0.5 else pick(rng, "metal", "laminate")
    b = PartsBuilder()
    b.box((-w / 2, -d / 2, h - top_t), (w / 2, d / 2, h), top_col)
    under = h - top_t
    if rng.random() < 0.45:
        leg_t = rng.uniform(0.04, 0.07)
        leg_parts(b, w / 2 - 0.03 - leg_t / 2, d / 2 - 0.03 - leg_t / 2, under, leg_t, frame,
              rng.random() < 0.4)
        if rng.random() < 0.7:
            b.box((-w / 2 + 0.03 + leg_t, d / 2 - 0.05, under - rng.uniform(0.25, 0.4)),
                  (w / 2 - 0.03 - leg_t, d / 2 - 0.03, under), frame)
        return Furniture(DESK, b.build())
    ped_w, panel_t = rng.uniform(0.35, 0.45), rng.uniform(0.02, 0.04)
    sides = (-1, 1) if rng.random() < 0.35 else (int(rng.choice((-1, 1))),)
    handle = pick(rng, "metal")
    for sx in (-1, 1):
        if sx in sides:
            x0, x1 = (w / 2 - ped_w, w / 2) if sx > 0 else (-w / 2, -w / 2 + ped_w)
            b.box((x0, -d / 2 + 0.02, 0.0), (x1, d / 2, under), frame)
            drawer_stack_parts(b, rng, x0, x1, -d / 2 + 0.02, 0.02, under, top_col, handle)
        else:
            x0 = w / 2 - panel_t if sx > 0 else -w / 2
            b.box((x0, -d / 2 + 0.02, 0.0), (x0 + panel_t, d / 2, under), frame)
    return Furniture(DESK, b.build())


def cabinet(rng: np.random.Generator, tall: bool | None = None, max_width: float = 1.2) -> Furniture:
    """A closed box with doors or drawers and handles; low (sideboard, nightstand) or tall."""
    tall = rng.random() < 0.3 if tall is None else tall
    w, d = rng.uniform(0.4, max_width), rng.uniform(0.35, 0.6)
    h = rng.uniform(1.5, 2.0) if tall else rng.uniform(0.45, 0.9)
    body, handle = pick(rng, "wood", "laminate"), pick(rng, "metal")
    front = body if rng.random() < 0.6 else pick(rng, "wood", "laminate")
    plinth = rng.uniform(0.04, 0.10) if rng.random() < 0.5 else 0.0
    b = PartsBuilder()
    if plinth:
        b.box((-w / 2 + 0.03, -d / 2 + 0.05, 0.0), (w / 2 - 0.03, d / 2, plinth), body)
    b.box((-w / 2, -d / 2 + 0.02, plinth), (w / 2, d / 2, h), body)
    if rng.random() < 0.4:  # top slab overhanging the front and sides
        b.box((-w / 2 - 0.015, -d / 2, h), (w / 2 + 0.015, d / 2, h + 0.03), front)
    y = -d / 2 + 0.02
    if not tall and rng.random() < 0.4:
        drawer_stack_parts(b, rng, -w / 2, w / 2, y, plinth, h, front, handle)
    else:
        n = 1 if w < 0.6 else 2
        edges = np.linspace(-w / 2, w / 2, n + 1)
        for i, (a, c) in enumerate(zip(edges[:-1], edges[1:])):
            b.box((a + 0.004, y - 0.018, plinth + 0.005), (c - 0.004, y, h - 0.005), front)
            hx = c - 0.05 if i == 0 else a + 0.05
            zm = h - 0.25 if tall or h > 0.7 else (plinth + h) / 2
            b.box((hx - 0.01, y - 0.035, zm - 0.08), (hx + 0.01, y - 0.018, zm + 0.08), handle)
    return Furniture(CABINET, b.build())


def bookshelf(rng: np.random.Generator) -> Furniture:
    """Open box (sides, top, bottom, back) with shelves, mostly filled with runs of books;
    sometimes closed doors over the lowest compartment."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.40), rng.uniform(1.0, 2.0)
    t, plinth = rng.uniform(0.015, 0.03), rng.uniform(0.0, 0.08)
    wood = pick(rng, "wood", "laminate")
    b = PartsBuilder()
    for sx in (-1, 1):
        x0 = w / 2 - t if sx > 0 else -w / 2
        b.box((x0, -d / 2, 0.0), (x0 + t, d / 2, h), wood)
    b.box((-w / 2 + t, d / 2 - 0.01, plinth + t), (w / 2 - t, d / 2, h - t), wood)  # back panel
    n = max(2, int(round(h / rng.uniform(0.30, 0.42))))
    levels = np.linspace(plinth, h - t, n + 1)
    for z in levels:
        b.box((-w / 2 + t, -d / 2, z), (w / 2 - t, d / 2 - 0.01, z + t), wood)
    if plinth:
        b.box((-w / 2 + t, -d / 2 + 0.02, 0.0), (w / 2 - t, d / 2 - 0.01, plinth), wood)
    doors = rng.random() < 0.25
    for i, (z0, z1) in enumerate(zip(levels[:-1] + t, levels[1:])):
        if doors and i == 0:
            b.box((-w / 2 + t + 0.003, -d / 2, z0 + 0.003), (w / 2 - t - 0.003, -d / 2 + 0.018, z1 - 0.003), wood)
        elif rng.random() < 0.75:
            _books(b, rng, -w / 2 + t, w / 2 - t, d, z0, z1)
    return Furniture(BOOKSHELF, b.build())


def _books(b: PartsBuilder, rng, x0, x1, d, z0, z1):
    """A run of upright books standing on a shelf between x0 and x1."""
    x = x0 + rng.uniform(0.0, 0.3) * (x1 - x0)
    end = x1 - rng.uniform(0.0, 0.3) * (x1 - x0)
    while True:
        bw = rng.uniform(0.03, 0.09)
        if x + bw > end:
            break
        bh, bd = rng.uniform(0.55, 0.9) * (z1 - z0), rng.uniform(0.6, 0.9) * d
        b.box((x, d / 2 - 0.01 - bd, z0), (x + bw, d / 2 - 0.01, z0 + bh), any_colour(rng))
        x += bw + 0.002


def bed(rng: np.random.Generator) -> Furniture:
    """Frame (on legs or not), mattress, headboard at +y, optional footboard, pillows, duvet."""
    w = rng.uniform(0.9, 1.1) if rng.random() < 0.45 else rng.uniform(1.4, 1.9)
    length = rng.uniform(1.95, 2.15)
    frame_col, linen = pick(rng, "wood", "fabric", "laminate"), pick(rng, "fabric", "paint")
    z0 = rng.uniform(0.06, 0.15) if rng.random() < 0.5 else 0.0
    frame_top = rng.uniform(0.22, 0.38)
    head_t = rng.uniform(0.04, 0.10)
    y0, y1 = -length / 2, length / 2 - head_t
    b = PartsBuilder()
    b.box((-w / 2, y0, z0), (w / 2, y1, frame_top), frame_col)
    b.box((-w / 2, y1, 0.0), (w / 2, length / 2, rng.uniform(0.8, 1.2)), frame_col)
    if rng.random() < 0.3:
        b.box((-w / 2, y0, 0.0), (w / 2, y0 + head_t, frame_top + rng.uniform(0.1, 0.3)), frame_col)
        y0 += head_t
    m_top = frame_top + rng.uniform(0.15, 0.25)
    b.box((-w / 2 + 0.02, y0 + 0.02, frame_top), (w / 2 - 0.02, y1, m_top), linen)
    n_pillows = 1 if w < 1.2 else 2
    edges = np.linspace(-w / 2 + 0.06, w / 2 - 0.06, n_pillows + 1)
    pillow_col = linen if rng.random() < 0.5 else pick(rng, "fabric")
    for a, c in zip(edges[:-1], edges[1:]):
        b.box((a + 0.02, y1 - rng.uniform(0.35, 0.5), m_top), (c - 0.02, y1 - 0.03, m_top + rng.uniform(0.08, 0.15)),
              pillow_col)
    if rng.random() < 0.6:  # duvet over the front part, hanging down the sides
        yd = y1 - rng.uniform(0.5, 0.7)
        b.box((-w / 2 - 0.02, y0 - 0.02, m_top - rng.uniform(0.1, 0.2)), (w / 2 + 0.02, yd, m_top + 0.03),
              pick(rng, "fabric"))
    if z0 > 0:
        leg_parts(b, w / 2 - 0.05, (y1 + length / 2) / 2 - 0.05, z0, 0.05, frame_col, False,
              cy=(y1 - length / 2) / 2)
    return Furniture(BED, b.build())


def lamp(rng: np.random.Generator) -> Furniture:
    """A floor lamp: base, pole and shade, round or square."""
    h = rng.uniform(1.3, 1.8)
    metal, shade = pick(rng, "metal", "wood"), pick(rng, "fabric", "paint")
    shade_r, shade_h = rng.uniform(0.14, 0.25), rng.uniform(0.18, 0.35)
    base_r, base_h = rng.uniform(0.12, 0.20), rng.uniform(0.02, 0.05)
    b = PartsBuilder()
    if rng.random() < 0.7:
        b.cylinder(0.0, 0.0, base_r, 0.0, base_h, metal)
        b.cylinder(0.0, 0.0, shade_r, h - shade_h, h, shade)
    else:
        b.box((-base_r, -base_r, 0.0), (base_r, base_r, base_h), metal)
        b.box((-shade_r, -shade_r, h - shade_h), (shade_r, shade_r, h), shade)
    b.cylinder(0.0, 0.0, rng.uniform(0.01, 0.02), base_h, h - shade_h, metal)
    return Furniture(LAMP, b.build())


BUILDERS = {CHAIR: chair, SOFA: sofa, TABLE: table, DESK: desk, CABINET: cabinet,
            BOOKSHELF: bookshelf, BED: bed, LAMP: lamp}
