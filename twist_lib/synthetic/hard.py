"""The hard variant's scan: a room of :mod:`.hard_room` seen from a few viewpoints, as a
hand-held RGB-D scan sees it.

Steps 1-4 of :mod:`.scene` (surface sampling, hidden contact faces, downward faces, door and
window openings) and then, unless ``clean``:

5. viewpoints: ``scanners`` positions at ``scanner_height``, 0.4 m from the walls and outside
   every object's footprint;
6. a point is kept only if some viewpoint sees it: its face looks towards that viewpoint and no
   big part (both its larger extents at least ``occluder_size``) lies between, in the
   viewpoint's azimuth / elevation box of that part (occlusion shadows behind sofas, under
   tables, on the wall behind a wardrobe; tops of tall furniture are not seen);
7. uneven density: a point survives with probability ``falloff * waves * dark``: the distance to
   the nearest viewpoint (``1 / (1 + (d / density_falloff)^2)``), a smooth random field
   (three sine waves of 1-3 m wavelength, amplitude ``density_waves``) and the surface's
   brightness (black and shiny surfaces return fewer points, down to ``dark_keep``);
8. scanner holes (more and larger than the cpu size's);
9. colour: the shading of :mod:`.scene`, then per scene a white balance (per-channel gains, sd
   ``white_balance``), a brightness in ``brightness`` and a smooth illumination field across the
   room (amplitude ``light_field``), per-point noise ``rgb_noise``; position noise ``xyz_noise``.

Unannotated clutter (:func:`.hard_furniture.clutter`) gets semantic and instance -100. The knobs
(``quoted`` above) are the fields of :class:`.scene.HardPreset`, with a table of their values.
"""
from __future__ import annotations

import numpy as np

from ..data.classes import IGNORE_INDEX
from .hard_room import build_hard_room
from .parts import rotate_z, sample_surfaces
from .room import Room
from .scene import (VARIANT_GENERATORS, HardPreset, compact, in_holes, in_openings,
                    keep_in_range, part_table, visible)


def generate_hard_scene(seed, preset: HardPreset, name: str, clean: bool = False) -> dict:
    """One scene of the hard variant (see :func:`.scene.generate_scene`)."""
    rng = np.random.default_rng(seed)
    room = build_hard_room(rng, preset.side, preset.height, preset.objects, spread=preset.spread,
                           gap=preset.gap, clutter=preset.clutter, door_leaf=preset.door_leaf)
    return {**scan_hard_room(room, preset, rng, clean), "name": name}


def scan_hard_room(room: Room, preset: HardPreset, rng: np.random.Generator, clean: bool = False) -> dict:
    """Scan a room (module docstring, steps 1-9), keeping the point count in ``preset.points``."""
    parts, yaw, shift, sem, inst = part_table(room, rng)
    inst[sem == IGNORE_INDEX] = IGNORE_INDEX  # clutter: no instance either
    views = _viewpoints(room, preset, rng)
    field = _wave_params(rng, preset.density_waves, (1.0, 3.0))
    occluders = _occluder_corners(parts, yaw, shift, preset.occluder_size, first=len(room.shell()))
    luminance = parts.color.mean(axis=1)

    def draw(density):
        points, normals, part = sample_surfaces(parts, yaw, shift, density, rng)
        if not clean:  # step 7 first: it is the cheapest and thins the most
            prob = _density(points, luminance[part], views, field, preset)
            sub = np.flatnonzero(rng.random(len(points)) < prob)
            points, normals, part = points[sub], normals[sub], part[sub]
        keep = visible(room, points, normals, rng)
        keep &= ~in_openings(room, points, part)
        if not clean:
            keep &= _seen(points, normals, part, views, occluders, keep)
            keep &= ~in_holes(points, keep, preset, rng)
        return points, normals, part, keep
    points, normals, part = keep_in_range(draw, preset.density, preset.points, 4, rng)
    rgb = _hard_colours(parts.color[part], normals, points, preset, rng, clean)
    if not clean:
        points = points + rng.normal(0.0, preset.xyz_noise, points.shape)
    order = rng.permutation(len(points))
    return {"xyz": points[order].astype(np.float32), "rgb": rgb[order].astype(np.float32),
            "semantic": sem[part][order], "instance": compact(inst[part][order])}


def _viewpoints(room: Room, preset: HardPreset, rng) -> np.ndarray:
    """(V, 3) scanner positions: 0.4 m from the walls, outside the objects' footprints."""
    n = int(rng.integers(preset.scanners[0], preset.scanners[1] + 1))
    out = []
    for _ in range(n):
        for _try in range(12):
            c = np.array([rng.uniform(0.4, room.lx - 0.4), rng.uniform(0.4, room.ly - 0.4),
                          rng.uniform(*preset.scanner_height)])
            if not any(_in_footprint(c, obj) for obj in room.objects):
                break
        out.append(c)
    return np.array(out)


def _in_footprint(c, obj) -> bool:
    local = rotate_z((c - (obj.x, obj.y, 0.0))[None], -obj.yaw)[0]
    f = obj.furniture
    return bool(np.all(local[:2] > f.lo[:2] - 0.15) and np.all(local[:2] < f.hi[:2] + 0.15))


def _occluder_corners(parts, yaw, shift, size: float, first: int):
    """(K,) part indices and (K, 8, 3) world corners of the parts that cast shadows: object
    parts (index >= ``first``, the shell comes first) whose two larger extents are >= ``size``."""
    ext = np.sort(parts.hi - parts.lo, axis=1)
    big = np.flatnonzero((ext[:, 1] >= size) & (np.arange(len(parts)) >= first))
    corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
    lo, hi = parts.lo[big], parts.hi[big]
    local = lo[:, None] + corners[None] * (hi - lo)[:, None]
    world = rotate_z(local.reshape(-1, 3), np.repeat(yaw[big], 8)) + np.repeat(shift[big], 8, axis=0)
    return big, world.reshape(-1, 8, 3)


def _seen(points, normals, part, views, occluders, keep) -> np.ndarray:
    """(M,) bool: some viewpoint sees the point (front-facing and not in a shadow)."""
    seen = np.zeros(len(points), dtype=bool)
    todo = np.flatnonzero(keep)
    big, corners = occluders
    for c in views:
        idx = todo[~seen[todo]]
        d = points[idx] - c
        front = np.sum(normals[idx] * d, axis=1) < 0
        idx, d = idx[front], d[front]
        r = np.hypot(d[:, 0], d[:, 1])
        az, el = np.arctan2(d[:, 1], d[:, 0]), np.arctan2(d[:, 2], r)
        order = np.argsort(az)
        az_sorted = az[order]
        shadow = np.zeros(len(idx), dtype=bool)
        for k in range(len(big)):
            q = corners[k] - c
            rq = np.hypot(q[:, 0], q[:, 1])
            if rq.min() < 0.3:
                continue
            a = np.arctan2(q[:, 1], q[:, 0])
            a0 = a.mean() if np.ptp(a) < np.pi else np.arctan2(np.sin(a).sum(), np.cos(a).sum())
            rel = (a - a0 + np.pi) % (2 * np.pi) - np.pi
            if np.ptp(rel) >= np.pi:
                continue
            e = np.arctan2(q[:, 2], rq)
            for lo, hi in _az_ranges(a0 + rel.min(), a0 + rel.max()):
                cand = order[np.searchsorted(az_sorted, lo):np.searchsorted(az_sorted, hi)]
                hit = ((el[cand] >= e.min()) & (el[cand] <= e.max()) & (r[cand] > rq.max())
                       & (part[idx[cand]] != big[k]))
                shadow[cand[hit]] = True
        seen[idx[~shadow]] = True
    return seen


def _az_ranges(lo: float, hi: float):
    """[lo, hi] in azimuth, as one or two ranges inside [-pi, pi]."""
    lo, hi = (lo + np.pi) % (2 * np.pi) - np.pi, (hi + np.pi) % (2 * np.pi) - np.pi
    return [(lo, hi)] if lo <= hi else [(lo, np.pi), (-np.pi, hi)]


def _wave_params(rng, amplitude: float, wavelength) -> tuple:
    """Three random plane waves: (3, 3) wave vectors, (3,) phases, the amplitude."""
    k = rng.normal(size=(3, 3))
    k *= (2 * np.pi / rng.uniform(*wavelength, 3) / np.linalg.norm(k, axis=1))[:, None]
    return k, rng.uniform(0, 2 * np.pi, 3), amplitude


def _waves(points, params) -> np.ndarray:
    k, phase, amplitude = params
    arg = points @ k.T
    arg += phase
    return np.sin(arg, out=arg).sum(axis=1) * (amplitude / np.sqrt(3))


def _density(points, lum, views, field, preset: HardPreset) -> np.ndarray:
    """(M,) keep probability of step 7 (``lum``: (M,) luminance of each point's surface)."""
    d2 = None
    for v in views:
        e = (points[:, 0] - v[0]) ** 2 + (points[:, 1] - v[1]) ** 2 + (points[:, 2] - v[2]) ** 2
        d2 = e if d2 is None else np.minimum(d2, e)
    falloff = 1.0 / (1.0 + d2 / preset.density_falloff ** 2)
    dark = preset.dark_keep + (1 - preset.dark_keep) * np.clip(lum / 0.35, 0.0, 1.0)
    prob = falloff * np.exp(_waves(points, field)) * dark
    return np.clip(prob / np.quantile(prob[::7], 0.95), 0.0, 1.0)  # a subsample's quantile: cheap


def _hard_colours(base, normals, points, preset: HardPreset, rng, clean: bool) -> np.ndarray:
    """Step 9: shading, then the scene's white balance, brightness, illumination field, noise."""
    light = np.array([0.3, 0.2, 0.93])
    shade = 0.78 + 0.22 * (normals @ (light / np.linalg.norm(light)))
    rgb = base * shade[:, None]
    if not clean:
        gains = 1.0 + rng.normal(0.0, preset.white_balance, 3)
        bright = rng.uniform(*preset.brightness)
        light_field = 1.0 + _waves(points, _wave_params(rng, preset.light_field, (3.0, 8.0)))
        rgb = rgb * gains * bright * light_field[:, None] + rng.normal(0.0, preset.rgb_noise, rgb.shape)
    return np.clip(rgb, 0.0, 1.0) * 2.0 - 1.0


VARIANT_GENERATORS[HardPreset] = generate_hard_scene  # size="hard" in scene.generate_scene
