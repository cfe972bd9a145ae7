"""One synthetic scene: furnish a room, scan it, label the points.

The "scan" (all vectorised numpy):

1. every face of every part gets points in proportion to its area (uniform surface density);
2. a point is dropped when it cannot be seen: moving it 1 cm along its normal lands inside
   another part (leg tops under seats, the floor under a cabinet, the wall behind a bookshelf),
   below the floor (faces touching the floor) or behind a wall (faces touching a wall);
3. faces looking down (the underside of a table top) keep only a fraction of their points;
4. door and window openings are cut out of the walls, and a few random spheres are cut out of
   everything (scanner holes);
5. gaussian position noise, per-scene lighting, per-point colour noise; rgb goes to [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..data.classes import IGNORE_INDEX
from .parts import PartSet, inside_any, rotate_z, sample_surfaces
from .room import Room, build_room

VISIBILITY_EPS = 0.01       # metres a point is pushed along its normal for the visibility test
DOWNWARD_KEEP = 0.3         # fraction of points kept on faces that look down


@dataclass(frozen=True)
class SizePreset:
    """Scene size; ``density`` (points per m² of surface) is the main knob, ``points`` the range
    the point count is kept in (the density is lowered for big rooms, raised for small ones)."""

    side: tuple
    height: tuple
    objects: tuple
    scale: int
    density: float
    points: tuple
    holes: tuple
    hole_radius: tuple
    xyz_noise: float
    rgb_noise: float


@dataclass(frozen=True)
class HardPreset(SizePreset):
    """The hard variant (:mod:`.hard`, :mod:`.hard_room`): the :class:`SizePreset` fields plus

    ==================  ============  ========================================================
    knob                value         meaning
    ==================  ============  ========================================================
    spread              0.15          random proportions: x, y scaled by [1 - s, 1 + s],
                                      z by [1 - s / 2, 1 + s / 2]
    gap                 0.003         closest distance between objects (m): neighbours touch
    clutter             (0, 6)        unannotated small things per scene (label -100)
    door_leaf           0.85          chance that the door opening holds a leaf (class door)
    scanners            (3, 5)        viewpoints of the scan
    scanner_height      (1.2, 1.7)    their height (m)
    occluder_size       0.2           parts with both larger extents >= this (m) cast shadows
    density_falloff     3.5           d0 of the keep probability 1 / (1 + (d / d0)^2), d the
                                      distance to the nearest viewpoint (m)
    density_waves       0.3           amplitude of the smooth random density field (log)
    dark_keep           0.5           keep probability of black surfaces (1 from luminance 0.35)
    white_balance       0.05          sd of the per-scene per-channel colour gains
    brightness          (0.85, 1.15)  per-scene brightness factor
    light_field         0.08          amplitude of the smooth illumination field (3-8 m waves)
    ==================  ============  ========================================================
    """

    spread: float = 0.15
    gap: float = 0.003
    clutter: tuple = (0, 6)
    door_leaf: float = 0.85
    scanners: tuple = (3, 5)
    scanner_height: tuple = (1.2, 1.7)
    occluder_size: float = 0.2
    density_falloff: float = 3.5
    density_waves: float = 0.3
    dark_keep: float = 0.5
    white_balance: float = 0.05
    brightness: tuple = (0.85, 1.15)
    light_field: float = 0.08


# the hard variant at the cpu size (module docstring of .hard; book: "The synthetic benchmark
# and the profiles"): 17 classes, a long tail, touching objects, occlusion, uneven density
_HARD = HardPreset(side=(3.0, 6.0), height=(2.4, 3.0), objects=(8, 18), scale=1, density=380.0,
                   points=(10_000, 32_000), holes=(3, 8), hole_radius=(0.08, 0.4), xyz_noise=0.006,
                   rgb_noise=0.035)

SIZES = {
    "cpu": SizePreset(side=(3.0, 5.5), height=(2.3, 2.7), objects=(4, 12), scale=1, density=260.0,
                      points=(10_000, 30_000), holes=(2, 5), hole_radius=(0.08, 0.3),
                      xyz_noise=0.005, rgb_noise=0.03),
    "scannet": SizePreset(side=(4.5, 9.0), height=(2.5, 3.0), objects=(12, 35), scale=2, density=1000.0,
                          points=(100_000, 200_000), holes=(4, 10), hole_radius=(0.08, 0.35),
                          xyz_noise=0.004, rgb_noise=0.03),
    "hard": _HARD,
    # a probe of the hard variant: its rooms (17 classes, long tail, templates, touching objects,
    # clutter) scanned without the scan's nuisance (no occlusion shadows, even density, no
    # colour shifts), to tell which hardness slows learning and which makes labels matter;
    # density 270 for about as many points per scene as the hard scan
    "hard_content": replace(_HARD, density=270.0, occluder_size=1e3,
                            density_falloff=1e6, density_waves=0.0, dark_keep=1.0,
                            white_balance=0.0, brightness=(1.0, 1.0), light_field=0.0),
}


# Scene generators of the preset types that are not plain SizePresets: ``type -> f(seed, preset,
# name, clean)``. The hard variant's module registers itself (``twist_lib.synthetic`` imports it),
# which keeps this module free of imports of the modules built on it.
VARIANT_GENERATORS: dict = {}


def size_preset(size: str) -> SizePreset:
    if size not in SIZES:
        raise ValueError(f"unknown synthetic scene size '{size}' (expected one of {sorted(SIZES)})")
    return SIZES[size]


def scene_name(seed) -> str:
    return "synthetic_" + "_".join(str(int(s)) for s in np.atleast_1d(seed))


def generate_scene(seed, size: str = "cpu", name: str | None = None, clean: bool = False) -> dict:
    """Generate one scene of the synthetic benchmark.

    Parameters
    ----------
    seed : int or tuple of int
        Everything in the scene is a function of this (``numpy.random.default_rng(seed)``);
        :func:`~twist_lib.synthetic.benchmark.generate_dataset` uses ``(seed, i)`` for scene i.
    size : {"cpu", "scannet", "hard", "hard_content"}
        ``cpu``: 3-5.5 m rooms, 4-12 objects, 10-30k points; ``scannet``: 4.5-9 m rooms,
        12-35 objects, 100-200k points; ``hard``: the hard variant (:class:`HardPreset`,
        :mod:`.hard`), 17 classes, 3-6 m rooms, 8-18 objects, 10-32k points; ``hard_content``:
        its rooms without the scan's occlusion, uneven density and colour shifts (:data:`SIZES`).
    name : str, optional
        Scene name (default ``synthetic_<seed>``).
    clean : bool
        No position / colour noise and no scanner holes (for tests and figures).

    Returns
    -------
    dict
        The scene dict of :mod:`twist_lib.data.io`: xyz, rgb in [-1, 1], semantic (wall and
        floor are classes 0 and 1 with instance -100), instance (0..I-1), name.
    """
    preset = size_preset(size)
    variant = VARIANT_GENERATORS.get(type(preset))
    if variant is not None:
        return variant(seed, preset, name or scene_name(seed), clean)
    rng = np.random.default_rng(seed)
    room = build_room(rng, preset.side, preset.height, preset.objects, preset.scale)
    return {**scan_room(room, preset, rng, clean), "name": name or scene_name(seed)}


def scan_room(room: Room, preset: SizePreset, rng: np.random.Generator, clean: bool = False) -> dict:
    """Scan a furnished room (module docstring, steps 1-5) at ``preset.density``, keeping the point
    count in ``preset.points`` (resampled denser if too few, thinned uniformly if too many).

    Returns the scene arrays xyz, rgb, semantic, instance (no name).
    """
    parts, yaw, shift, sem, inst = part_table(room, rng)

    def draw(density):
        points, normals, part = sample_surfaces(parts, yaw, shift, density, rng)
        keep = visible(room, points, normals, rng)
        keep &= ~in_openings(room, points, part)
        if not clean:
            keep &= ~in_holes(points, keep, preset, rng)
        return points, normals, part, keep
    points, normals, part = keep_in_range(draw, preset.density, preset.points, 3, rng)
    rgb = _colours(parts.color[part], normals, 0.0 if clean else preset.rgb_noise, rng)
    if not clean:
        points = points + rng.normal(0.0, preset.xyz_noise, points.shape)
    order = rng.permutation(len(points))
    return {"xyz": points[order].astype(np.float32), "rgb": rgb[order].astype(np.float32),
            "semantic": sem[part][order], "instance": compact(inst[part][order])}


def keep_in_range(draw, density: float, points: tuple[int, int], tries: int, rng):
    """``draw(density) -> (points, normals, part, keep)`` until at least ``points[0]`` points are
    kept (at most ``tries`` draws, the density raised each time), then the kept points thinned
    uniformly (which keeps the density uniform) to at most ``points[1]``."""
    lo_n, hi_n = points
    for _ in range(tries):
        xyz, normals, part, keep = draw(density)
        n = int(keep.sum())
        if n >= lo_n:
            break
        density *= 1.15 * lo_n / max(n, 1)
    idx = np.flatnonzero(keep)
    if len(idx) > hi_n:
        idx = np.sort(rng.choice(idx, hi_n, replace=False))
    return xyz[idx], normals[idx], part[idx]


def part_table(room: Room, rng):
    """All parts of the scene with their pose and labels."""
    shell = room.shell()
    sets, yaws, shifts = [shell], [np.zeros(len(shell))], [np.zeros((len(shell), 3))]
    sem = [np.array(room.shell_classes())]
    inst = [np.full(len(shell), IGNORE_INDEX)]
    for i, obj in enumerate(room.objects):
        p = obj.furniture.parts
        tint = rng.uniform(0.93, 1.07)  # identical copies still differ a little
        sets.append(PartSet(p.kind, p.lo, p.hi, np.clip(p.color * tint, 0, 1), p.faces))
        yaws.append(np.full(len(p), obj.yaw))
        shifts.append(np.tile([obj.x, obj.y, 0.0], (len(p), 1)))
        sem.append(np.full(len(p), obj.furniture.cls))
        inst.append(np.full(len(p), i))
    cat = np.concatenate
    return (PartSet.concat(sets), cat(yaws), cat(shifts), cat(sem).astype(np.int64),
            cat(inst).astype(np.int64))


def visible(room: Room, points, normals, rng) -> np.ndarray:
    """(M,) bool: the point's surface can be seen (module docstring, steps 2-3). Only the points
    inside an object's bounding box are tested against its parts (the same result, faster for
    objects of many parts such as shelves of books)."""
    q = points + VISIBILITY_EPS * normals
    keep = ((q[:, 0] > 0) & (q[:, 0] < room.lx) & (q[:, 1] > 0) & (q[:, 1] < room.ly) & (q[:, 2] > 0))
    for obj in room.objects:
        f = obj.furniture
        radius = np.linalg.norm(np.maximum(np.abs(f.lo[:2]), np.abs(f.hi[:2]))) + VISIBILITY_EPS
        near = np.flatnonzero(keep & (np.abs(q[:, 0] - obj.x) < radius) & (np.abs(q[:, 1] - obj.y) < radius)
                              & (q[:, 2] < f.hi[2]))
        local = rotate_z(q[near] - (obj.x, obj.y, 0.0), -obj.yaw)
        box = np.flatnonzero(np.all((local > f.lo) & (local < f.hi), axis=1))
        keep[near[box[inside_any(local[box], f.parts)]]] = False
    down = normals[:, 2] < -0.5
    keep &= ~down | (rng.random(len(points)) < DOWNWARD_KEEP)
    return keep


def in_openings(room: Room, points, part) -> np.ndarray:
    """(M,) bool: wall points inside a door or window opening (shell parts 1..4 are walls 0..3)."""
    out = np.zeros(len(points), dtype=bool)
    for wall, s0, s1, z0, z1 in room.openings:
        along = points[:, 0] if wall in (0, 2) else points[:, 1]
        out |= (part == wall + 1) & (along > s0) & (along < s1) & (points[:, 2] > z0) & (points[:, 2] < z1)
    return out


def in_holes(points, keep, preset: SizePreset, rng) -> np.ndarray:
    """(M,) bool: inside one of a few random spheres centred on kept points."""
    out = np.zeros(len(points), dtype=bool)
    candidates = np.flatnonzero(keep)
    for _ in range(int(rng.integers(preset.holes[0], preset.holes[1] + 1))):
        centre = points[rng.choice(candidates)]
        out |= np.sum((points - centre) ** 2, axis=1) < rng.uniform(*preset.hole_radius) ** 2
    return out


def _colours(base, normals, noise: float, rng) -> np.ndarray:
    """Shaded colours in [-1, 1]: light from above and one side, per-point noise."""
    light = np.array([0.3, 0.2, 0.93])
    shade = 0.78 + 0.22 * (normals @ (light / np.linalg.norm(light)))
    rgb = base * shade[:, None]
    if noise:
        rgb = rgb + rng.normal(0.0, noise, rgb.shape)
    return np.clip(rgb, 0.0, 1.0) * 2.0 - 1.0


def compact(instance: np.ndarray) -> np.ndarray:
    """Renumber instance ids to 0..I-1 (objects cut away entirely leave no gap), keep -100."""
    out = np.full_like(instance, IGNORE_INDEX)
    valid = instance != IGNORE_INDEX
    out[valid] = np.unique(instance[valid], return_inverse=True)[1]
    return out
