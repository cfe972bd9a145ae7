"""Builders of the hard variant's seven new classes (door, refrigerator, counter, toilet, sink,
bathtub, otherfurniture) and :func:`stretch`, the random proportions every hard object gets.

Same object frame as :mod:`.furniture` (origin on the floor at the footprint's centre, front
towards -y, back towards +y), except the door leaf, whose origin is its hinge. Each class has
several templates, and the confusions are those of a real scan: a mini fridge or a counter
next to a low cabinet, a stool next to a chair, an ottoman next to a sofa's cushion, a cart or
a crate stack next to a shelf.
"""
from __future__ import annotations

import numpy as np

from .classes import BATHTUB, COUNTER, DOOR, OTHERFURNITURE, REFRIGERATOR, SINK, TOILET
from .furniture import Furniture, leg_parts
from .materials import any_colour, pick
from .parts import CYLINDER, PartsBuilder, PartSet

# Extra palettes of the hard variant (kept out of materials.MATERIALS, whose size the cpu
# benchmark's random draws depend on).
CERAMIC = ((0.94, 0.94, 0.92), (0.90, 0.91, 0.93), (0.86, 0.85, 0.80))
APPLIANCE = ((0.93, 0.93, 0.91), (0.70, 0.71, 0.73), (0.20, 0.20, 0.21), (0.55, 0.56, 0.58))


def tone(rng: np.random.Generator, options, jitter: float = 0.03) -> np.ndarray:
    """A colour from ``options`` with a small random tint."""
    base = np.asarray(options[rng.integers(len(options))], dtype=np.float64)
    return np.clip(base + rng.normal(0.0, jitter, 3), 0.0, 1.0)


def stretch(furn: Furniture, rng: np.random.Generator, spread: float) -> Furniture:
    """Random proportions: x and y scaled by independent factors in ``[1 - spread, 1 + spread]``,
    z (heights are more standard than widths: seats, table tops) in ``[1 - spread / 2, 1 +
    spread / 2]``, about the object's origin (the floor stays at z = 0); cylinders stay round,
    their radius scaled by the geometric mean of the x and y factors."""
    if spread <= 0:
        return furn
    s = 1.0 + rng.uniform(-1.0, 1.0, 3) * (spread, spread, spread / 2)
    p = furn.parts
    lo, hi = p.lo * s, p.hi * s
    cyl = p.kind == CYLINDER
    if cyl.any():
        centre = (lo[cyl, :2] + hi[cyl, :2]) / 2
        radius = (p.hi[cyl, 0] - p.lo[cyl, 0]) / 2 * np.sqrt(s[0] * s[1])
        lo[cyl, :2], hi[cyl, :2] = centre - radius[:, None], centre + radius[:, None]
    return Furniture(furn.cls, PartSet(p.kind, lo, hi, p.color, p.faces))


def door(rng: np.random.Generator, width: float, height: float) -> Furniture:
    """A door leaf hinged at its origin: x in [0, width] along the leaf, y in [0, t] its
    thickness, with a handle on both sides; plain, panelled or glazed (a frame only)."""
    t = rng.uniform(0.035, 0.05)
    col = pick(rng, "wood", "paint", "laminate")
    handle = pick(rng, "metal")
    b = PartsBuilder()
    if rng.random() < 0.15:  # glazed: the glass is not scanned, only the frame
        f = rng.uniform(0.08, 0.14)
        b.box((0.0, 0.0, 0.0), (f, t, height), col).box((width - f, 0.0, 0.0), (width, t, height), col)
        b.box((f, 0.0, 0.0), (width - f, t, rng.uniform(0.2, 0.9)), col)
        b.box((f, 0.0, height - f), (width - f, t, height), col)
    else:
        b.box((0.0, 0.0, 0.0), (width, t, height), col)
        if rng.random() < 0.4:  # raised panels on the room side (+y)
            for z0, z1 in ((0.15, 0.9), (1.1, height - 0.15)):
                b.box((0.12, t, z0), (width - 0.12, t + 0.012, z1), col)
    hz = rng.uniform(0.95, 1.05)
    for y0, y1 in ((-0.06, -0.012), (t, t + 0.05)):
        b.box((width - 0.12, y0, hz - 0.015), (width - 0.05, y1, hz + 0.015), handle)
    return Furniture(DOOR, b.build())


def refrigerator(rng: np.random.Generator) -> Furniture:
    """A tall box with one or two doors and long handles; sometimes side-by-side or a mini fridge."""
    style = rng.choice(["top", "single", "side", "mini"], p=[0.45, 0.2, 0.2, 0.15])
    w = rng.uniform(0.85, 0.95) if style == "side" else rng.uniform(0.55, 0.75)
    d = rng.uniform(0.5, 0.6) if style == "mini" else rng.uniform(0.62, 0.78)
    h = rng.uniform(0.8, 0.9) if style == "mini" else rng.uniform(1.6, 1.95)
    body, handle = tone(rng, APPLIANCE), tone(rng, APPLIANCE)
    b = PartsBuilder()
    kick = rng.uniform(0.03, 0.08)
    b.box((-w / 2 + 0.02, -d / 2 + 0.06, 0.0), (w / 2 - 0.02, d / 2, kick), tone(rng, APPLIANCE))
    b.box((-w / 2, -d / 2 + 0.04, kick), (w / 2, d / 2, h), body)
    y = -d / 2 + 0.04
    if style == "side":
        doors = [(-w / 2, 0.0, kick, h), (0.0, w / 2, kick, h)]
    elif style == "top":
        split = h - rng.uniform(0.4, 0.6)
        doors = [(-w / 2, w / 2, kick, split), (-w / 2, w / 2, split, h)]
    else:
        doors = [(-w / 2, w / 2, kick, h)]
    for i, (x0, x1, z0, z1) in enumerate(doors):
        b.box((x0 + 0.003, y - 0.03, z0 + 0.003), (x1 - 0.003, y, z1 - 0.003), body)
        hx = x1 - 0.06 if (style != "side" or i == 0) else x0 + 0.06
        hl = min(0.8, 0.6 * (z1 - z0))
        zm = (z0 + z1) / 2
        b.box((hx - 0.015, y - 0.08, zm - hl / 2), (hx + 0.015, y - 0.03, zm + hl / 2), handle)
    return Furniture(REFRIGERATOR, b.build())


def counter(rng: np.random.Generator) -> Furniture:
    """A kitchen run: base units with doors and drawers under a worktop that overhangs the
    front, on a recessed plinth; sometimes an L with a return towards the front."""
    length, d, h = rng.uniform(1.2, 3.2), rng.uniform(0.58, 0.66), rng.uniform(0.86, 0.93)
    top_t = rng.uniform(0.03, 0.05)
    body, front = pick(rng, "laminate", "wood"), pick(rng, "laminate", "wood", "paint")
    worktop, handle = pick(rng, "laminate", "wood"), pick(rng, "metal")
    b = PartsBuilder()
    under, kick = h - top_t, rng.uniform(0.08, 0.14)

    def run(x0, x1, y0, y1, front_y):
        b.box((x0, y0 + 0.06, 0.0), (x1, y1, kick), body)
        b.box((x0, y0 + 0.02, kick), (x1, y1, under), body)
        n = max(1, int(round((x1 - x0) / rng.uniform(0.4, 0.6))))
        edges = np.linspace(x0, x1, n + 1)
        for a, c in zip(edges[:-1], edges[1:]):
            b.box((a + 0.003, front_y - 0.018, kick + 0.004), (c - 0.003, front_y, under - 0.004), front)
            xm = (a + c) / 2
            b.box((xm - 0.08, front_y - 0.04, under - 0.08), (xm + 0.08, front_y - 0.018, under - 0.06),
                  handle)

    run(-length / 2, length / 2, -d / 2, d / 2, -d / 2 + 0.02)
    b.box((-length / 2, -d / 2 - rng.uniform(0.0, 0.03), under), (length / 2, d / 2, h), worktop)
    if rng.random() < 0.3:  # return: a second run at one end, reaching towards the front
        ret = rng.uniform(0.6, 1.3)
        sx = rng.choice((-1, 1))
        x0, x1 = (length / 2 - d, length / 2) if sx > 0 else (-length / 2, -length / 2 + d)
        b.box((x0 + 0.02, -d / 2 - ret, kick), (x1 - 0.02, -d / 2 - 0.02, under), body)
        b.box((x0, -d / 2 - ret - 0.02, under), (x1, -d / 2 - 0.0, h), worktop)
    return Furniture(COUNTER, b.build())


def toilet(rng: np.random.Generator) -> Furniture:
    """Bowl on a pedestal with a seat and a tank at the back; or wall-hung with a flush plate;
    round or square bowl; lid up or down."""
    white = tone(rng, CERAMIC)
    seat_col = white if rng.random() < 0.7 else pick(rng, "wood", "laminate")
    depth = rng.uniform(0.62, 0.74)
    back = depth / 2
    b = PartsBuilder()
    hung = rng.random() < 0.25
    tank_d = rng.uniform(0.05, 0.08) if hung else rng.uniform(0.15, 0.22)
    tank_w = rng.uniform(0.36, 0.5)
    if hung:
        b.box((-tank_w / 2, back - tank_d, rng.uniform(0.85, 1.0)), (tank_w / 2, back, rng.uniform(1.1, 1.2)),
              white)
    else:
        b.box((-tank_w / 2, back - tank_d, rng.uniform(0.35, 0.42)),
              (tank_w / 2, back, rng.uniform(0.72, 0.84)), white)
    r, seat_h = rng.uniform(0.17, 0.21), rng.uniform(0.38, 0.43)
    cy = back - tank_d - r + 0.04
    z0 = rng.uniform(0.25, 0.3) if hung else rng.uniform(0.16, 0.22)
    if rng.random() < 0.7:
        b.cylinder(0.0, cy, r, z0, seat_h - 0.03, white)
        b.cylinder(0.0, cy, r + 0.01, seat_h - 0.03, seat_h, seat_col)
    else:
        b.box((-r, cy - r, z0), (r, cy + r, seat_h - 0.03), white)
        b.box((-r - 0.01, cy - r - 0.01, seat_h - 0.03), (r + 0.01, cy + r + 0.01, seat_h), seat_col)
    if hung:
        b.box((-0.12, cy, z0), (0.12, back - tank_d, seat_h - 0.03), white)
    else:
        b.box((-0.11, cy - 0.12, 0.0), (0.11, back - tank_d, z0), white)
    if rng.random() < 0.35:  # lid up, leaning on the tank
        b.box((-r, back - tank_d - 0.03, seat_h), (r, back - tank_d, seat_h + 2 * r), seat_col)
    return Furniture(TOILET, b.build())


def _basin(b: PartsBuilder, w, d, z0, depth, t, color, cy: float = 0.0):
    """An open basin: four rims and a bottom, bottom face at ``z0``."""
    z1 = z0 + depth
    b.box((-w / 2, cy - d / 2, z0), (w / 2, cy + d / 2, z0 + 0.03), color)
    b.box((-w / 2, cy - d / 2, z0 + 0.03), (w / 2, cy - d / 2 + t, z1), color)
    b.box((-w / 2, cy + d / 2 - t, z0 + 0.03), (w / 2, cy + d / 2, z1), color)
    b.box((-w / 2, cy - d / 2 + t, z0 + 0.03), (-w / 2 + t, cy + d / 2 - t, z1), color)
    b.box((w / 2 - t, cy - d / 2 + t, z0 + 0.03), (w / 2, cy + d / 2 - t, z1), color)


def sink(rng: np.random.Generator, on_top: float | None = None) -> Furniture:
    """A basin with a tap: on a pedestal or hung on the wall; or, given ``on_top`` (the height
    of the vanity cabinet or counter it will sit on, touching an object of another class), the
    basin alone with its bottom at z = 0, for the caller to lift there (a kitchen sink on a
    counter is wider, and often steel)."""
    kitchen = on_top is not None and on_top > 0.84
    color = pick(rng, "metal") if kitchen and rng.random() < 0.7 else tone(rng, CERAMIC)
    w = rng.uniform(0.5, 0.9) if kitchen else rng.uniform(0.42, 0.62)
    d = rng.uniform(0.4, 0.5) if kitchen else rng.uniform(0.32, 0.48)
    depth, t = rng.uniform(0.1, 0.2), rng.uniform(0.025, 0.05)
    b = PartsBuilder()
    if on_top is not None:
        z0 = 0.0
    else:
        z0 = rng.uniform(0.68, 0.78)
        if rng.random() < 0.6:  # pedestal
            if rng.random() < 0.5:
                b.cylinder(0.0, 0.0, rng.uniform(0.07, 0.11), 0.0, z0, color)
            else:
                b.box((-0.09, -0.06, 0.0), (0.09, d / 2, z0), color)
    _basin(b, w, d, z0, depth, t, color)
    tap = pick(rng, "metal")
    top = z0 + depth
    b.box((-0.02, d / 2 - 0.05, top), (0.02, d / 2 - 0.01, top + rng.uniform(0.12, 0.3)), tap)
    return Furniture(SINK, b.build())


def bathtub(rng: np.random.Generator) -> Furniture:
    """A tub along a wall: four walls and a bottom, or a panelled box with a rim; sometimes on feet."""
    length, w, h = rng.uniform(1.45, 1.8), rng.uniform(0.68, 0.82), rng.uniform(0.48, 0.6)
    t = rng.uniform(0.05, 0.12)
    white = tone(rng, CERAMIC)
    b = PartsBuilder()
    z0 = rng.uniform(0.1, 0.16) if rng.random() < 0.25 else 0.0
    if z0:
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.cylinder(sx * (length / 2 - 0.15), sy * (w / 2 - 0.12), 0.035, 0.0, z0, pick(rng, "metal"))
    b.box((-length / 2, -w / 2, z0), (length / 2, w / 2, z0 + 0.08), white)
    b.box((-length / 2, -w / 2, z0 + 0.08), (length / 2, -w / 2 + t, z0 + h), white)
    b.box((-length / 2, w / 2 - t, z0 + 0.08), (length / 2, w / 2, z0 + h), white)
    b.box((-length / 2, -w / 2 + t, z0 + 0.08), (-length / 2 + t, w / 2 - t, z0 + h), white)
    b.box((length / 2 - t, -w / 2 + t, z0 + 0.08), (length / 2, w / 2 - t, z0 + h), white)
    if rng.random() < 0.3:  # a tap on the wall side
        b.box((length / 2 - 0.3, w / 2 - t, z0 + h), (length / 2 - 0.2, w / 2, z0 + h + 0.12),
              pick(rng, "metal"))
    return Furniture(BATHTUB, b.build())


# --- otherfurniture: ScanNet's catch-all, many unrelated templates ------------------------------
def _stool(b, rng):
    h, r = rng.uniform(0.45, 0.8), rng.uniform(0.16, 0.22)
    frame, seat = pick(rng, "wood", "metal"), pick(rng, "wood", "fabric", "leather")
    b.cylinder(0.0, 0.0, r, h - 0.04, h, seat)
    leg_parts(b, r * 0.6, r * 0.6, h - 0.04, 0.03, frame, rng.random() < 0.5)
    if h > 0.6:  # footrest
        b.box((-r * 0.6, -r * 0.6 - 0.015, 0.25), (r * 0.6, -r * 0.6 + 0.015, 0.28), frame)


def _drum_or_block(b, rng, col, h, p_drum, radius, width, depth):
    """A cylinder of a radius in ``radius`` (probability ``p_drum``) or a box of a width and
    depth in those ranges, ``h`` high, standing on the floor."""
    if rng.random() < p_drum:
        b.cylinder(0.0, 0.0, rng.uniform(*radius), 0.0, h, col)
    else:
        w, d = rng.uniform(*width), rng.uniform(*depth)
        b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), col)


def _ottoman(b, rng):
    col = pick(rng, "fabric", "leather")
    _drum_or_block(b, rng, col, rng.uniform(0.35, 0.46), 0.5, (0.22, 0.38), (0.45, 1.0), (0.4, 0.7))


def _bin(b, rng):
    col = pick(rng, "metal", "laminate", "paint")
    _drum_or_block(b, rng, col, rng.uniform(0.3, 0.7), 0.6, (0.12, 0.2), (0.25, 0.4), (0.2, 0.35))


def _crates(b, rng):
    z = 0.0
    for _ in range(int(rng.integers(1, 4))):
        w, d, h = rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.45)
        x, y = rng.uniform(-0.04, 0.04, 2)
        b.box((x - w / 2, y - d / 2, z), (x + w / 2, y + d / 2, z + h),
              pick(rng, "wood", "laminate", "fabric"))
        z += h + 0.001


def _cart(b, rng):
    w, d, h = rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.6), rng.uniform(0.7, 1.0)
    frame, shelf = pick(rng, "metal"), pick(rng, "metal", "laminate", "wood")
    leg_parts(b, w / 2 - 0.02, d / 2 - 0.02, h, 0.03, frame, rng.random() < 0.5)
    for z in np.linspace(0.12, h - 0.02, int(rng.integers(2, 4))):
        b.box((-w / 2 + 0.04, -d / 2 + 0.04, z), (w / 2 - 0.04, d / 2 - 0.04, z + 0.02), shelf)


def _coat_rack(b, rng):
    h, col = rng.uniform(1.6, 1.9), pick(rng, "wood", "metal")
    b.cylinder(0.0, 0.0, rng.uniform(0.15, 0.22), 0.0, 0.03, col)
    b.cylinder(0.0, 0.0, 0.02, 0.03, h, col)
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        x, y = 0.02 + 0.08 * abs(sx), 0.02 + 0.08 * abs(sy)
        b.box((min(0, sx) * x - 0.01, min(0, sy) * y - 0.01, h - 0.2),
              (max(0, sx) * x + 0.01, max(0, sy) * y + 0.01, h - 0.17), col)
    if rng.random() < 0.6:  # a coat hanging on it
        b.box((-0.22, 0.03, h - 0.95), (0.22, 0.2, h - 0.2), any_colour(rng))


def _tv_stand(b, rng):
    w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.35, 0.5), rng.uniform(0.4, 0.6)
    b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), pick(rng, "wood", "laminate"))
    tw = min(w - 0.05, rng.uniform(0.8, 1.4))
    black = tone(rng, APPLIANCE[2:3])
    b.box((-0.15, -0.1, h), (0.15, 0.1, h + 0.03), black)
    b.box((-tw / 2, -0.03, h + 0.08), (tw / 2, 0.03, h + 0.08 + tw * 0.58), black)
    b.box((-0.04, -0.02, h + 0.03), (0.04, 0.02, h + 0.08), black)


def _piano(b, rng):
    w, d, h = rng.uniform(1.35, 1.55), rng.uniform(0.5, 0.65), rng.uniform(1.05, 1.3)
    col = pick(rng, "wood") if rng.random() < 0.4 else tone(rng, APPLIANCE[2:3])
    b.box((-w / 2, 0.0, 0.0), (w / 2, d / 2, h), col)
    b.box((-w / 2, -d / 2, 0.62), (w / 2, 0.0, 0.74), col)
    for sx in (-1, 1):
        x = sx * (w / 2 - 0.04)
        b.box((x - 0.04, -d / 2, 0.0), (x + 0.04, -d / 2 + 0.06, 0.62), col)


def _bench(b, rng):
    w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.3, 0.45), rng.uniform(0.42, 0.48)
    col = pick(rng, "wood", "metal", "fabric")
    b.box((-w / 2, -d / 2, h - 0.05), (w / 2, d / 2, h), col)
    for sx in (-1, 1):
        x = sx * (w / 2 - 0.06)
        b.box((x - 0.03, -d / 2 + 0.02, 0.0), (x + 0.03, d / 2 - 0.02, h - 0.05), col)


OTHER_TEMPLATES = {"stool": _stool, "ottoman": _ottoman, "bin": _bin, "crates": _crates, "cart": _cart,
                   "coat_rack": _coat_rack, "tv_stand": _tv_stand, "piano": _piano, "bench": _bench}
OTHER_WEIGHTS = {"stool": 0.16, "ottoman": 0.12, "bin": 0.18, "crates": 0.16, "cart": 0.1, "coat_rack": 0.07,
                 "tv_stand": 0.1, "piano": 0.03, "bench": 0.08}


def otherfurniture(rng: np.random.Generator, template: str | None = None) -> Furniture:
    """One of :data:`OTHER_TEMPLATES` (drawn by :data:`OTHER_WEIGHTS`)."""
    if template is None:
        names = list(OTHER_WEIGHTS)
        template = names[rng.choice(len(names), p=np.array(list(OTHER_WEIGHTS.values())))]
    b = PartsBuilder()
    OTHER_TEMPLATES[template](b, rng)
    return Furniture(OTHERFURNITURE, b.build())


def clutter(rng: np.random.Generator) -> Furniture:
    """An unannotated small thing (a bag, a box, a pile of papers, a plant pot) whose points get
    semantic and instance -100, as the unlabelled points of a real scan."""
    b = PartsBuilder()
    w, d, h = rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35), rng.uniform(0.04, 0.4)
    if rng.random() < 0.3:
        b.cylinder(0.0, 0.0, w / 2, 0.0, h, any_colour(rng))
    else:
        b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), any_colour(rng))
    return Furniture(-100, b.build())
