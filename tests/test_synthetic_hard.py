"""The hard variant of the synthetic benchmark (``size="hard"``, profile ``hard``): determinism,
labels, the long tail, touching objects, occlusion, colour shifts, dataset files, the 100 % split,
and that the default cpu size is untouched by it.

Checks use hand-made inputs and brute-force references (KD-tree distances, a box occluder in
front of a plane of points), never the generator's own intermediate results.
"""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twist_lib.config import Config
from twist_lib.data import make_label_splits, read_meta, write_label_splits
from twist_lib.data.io import load_scene, validate_scene
from twist_lib.synthetic import SIZES, generate_dataset, generate_scene
from twist_lib.synthetic.classes import (BATHTUB, CHAIR, DOOR, FLOOR, HARD_CLASS_NAMES, HARD_INSTANCE_CLASSES,
                                         SINK, SYNTHETIC_CLASS_NAMES, TOILET, WALL)
from twist_lib.synthetic.furniture import Furniture
from twist_lib.synthetic.hard import _density, _hard_colours, _seen, _wave_params
from twist_lib.synthetic.hard_furniture import otherfurniture, stretch
from twist_lib.synthetic.hard_room import build_hard_room
from twist_lib.synthetic.hard_templates import TEMPLATES
from twist_lib.synthetic.parts import CYLINDER, PartsBuilder, rotate_z
from twist_lib.synthetic.room import Placed, rot2, _separated, build_room

REPO = Path(__file__).resolve().parents[1]
N_SCENES = 60


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene((0, i), "hard") for i in range(N_SCENES)]


def _instances(scene):
    ins = scene["instance"]
    return {int(k): np.flatnonzero(ins == k) for k in np.unique(ins[ins >= 0])}


# --- the cpu size is unchanged -------------------------------------------------------------------
# Point count, semantic histogram, instance count and coordinate / colour sums of three cpu scenes
# as generated before the hard variant existed: its code must not change a single random draw.
CPU_FINGERPRINTS = {
    (0, 0): (16372, [8841, 3199, 341, 0, 0, 773, 900, 0, 2318], 4, 76091.9292818881, 8574.251919210401),
    (0, 1): (19372, [11056, 5465, 627, 0, 412, 0, 1582, 0, 0, 230], 7, 111753.21552536661, 9312.44659571852),
    (0, 2): (14689, [6992, 2851, 480, 1390, 0, 2085, 685, 0, 0, 206], 9, 67375.60995582145,
             2366.8336110568853),
}


@pytest.mark.parametrize("seed", list(CPU_FINGERPRINTS))
def test_cpu_scenes_are_unchanged(seed):
    n, hist, n_inst, xyz_sum, rgb_sum = CPU_FINGERPRINTS[seed]
    scene = generate_scene(seed)
    assert len(scene["xyz"]) == n
    assert np.bincount(scene["semantic"]).tolist() == hist
    assert int(scene["instance"].max()) + 1 == n_inst
    assert scene["xyz"].astype(np.float64).sum() == pytest.approx(xyz_sum, abs=1e-3)
    assert scene["rgb"].astype(np.float64).sum() == pytest.approx(rgb_sum, abs=1e-3)


# The same for two hard scenes as calibrated (bench/NOTES.md, "Hard benchmark"; data/synthetic_hard):
# a change of the hard generator changes the benchmark, whose curve must then be measured again.
HARD_FINGERPRINTS = {
    (0, 0): (16935, [9307, 2806, 438, 957, 0, 0, 329, 0, 1189, 214, 1219, 0, 0, 0, 0, 0, 476], 0, 9,
             79865.74486561058, 8649.000847686679),
    (0, 1): (21393, [11707, 4565, 1002, 0, 1131, 0, 791, 0, 0, 109, 533, 603, 0, 0, 0, 0, 832], 120, 9,
             111417.37817813206, 24038.612946663077),
}


@pytest.mark.parametrize("seed", list(HARD_FINGERPRINTS))
def test_hard_scenes_are_the_calibrated_ones(seed):
    n, hist, unlabelled, n_inst, xyz_sum, rgb_sum = HARD_FINGERPRINTS[seed]
    scene = generate_scene(seed, "hard")
    sem = scene["semantic"]
    assert len(sem) == n and int((sem < 0).sum()) == unlabelled
    assert np.bincount(sem[sem >= 0], minlength=len(HARD_CLASS_NAMES)).tolist() == hist
    assert int(scene["instance"].max()) + 1 == n_inst
    assert scene["xyz"].astype(np.float64).sum() == pytest.approx(xyz_sum, abs=1e-3)
    assert scene["rgb"].astype(np.float64).sum() == pytest.approx(rgb_sum, abs=1e-3)


# --- determinism ---------------------------------------------------------------------------------
def test_same_seed_same_scene_other_seed_differs():
    a, b, c = generate_scene((4, 2), "hard"), generate_scene((4, 2), "hard"), generate_scene((4, 3), "hard")
    for key in ("xyz", "rgb", "semantic", "instance"):
        np.testing.assert_array_equal(a[key], b[key])
    assert len(a["xyz"]) != len(c["xyz"]) or not np.array_equal(a["xyz"], c["xyz"])
    d = generate_scene((5, 2), "hard")  # another dataset seed
    assert len(a["xyz"]) != len(d["xyz"]) or not np.array_equal(a["xyz"], d["xyz"])


def test_clean_scan_has_no_noise_but_same_labels_kind():
    scene = generate_scene((0, 3), "hard", clean=True)
    validate_scene(scene)
    assert len(scene["xyz"]) > 0


def test_hard_content_is_the_same_room_without_the_scan_nuisance():
    """size hard_content: the hard rooms (same seed, same room and objects), every point kept
    with the same probability and no shadows, so every class the hard scan shows is there."""
    preset = SIZES["hard_content"]
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 5, (500, 3))
    views = np.array([[0.5, 0.5, 1.5], [4.5, 4.5, 1.2]])
    lum = rng.uniform(0, 1, 500)
    prob = _density(points, lum, views, _wave_params(rng, preset.density_waves, (1.0, 3.0)), preset)
    np.testing.assert_allclose(prob, 1.0, atol=1e-6)
    for i in range(3):
        hard, content = generate_scene((0, i), "hard"), generate_scene((0, i), "hard_content")
        validate_scene(content)
        assert content["semantic"].max() < len(HARD_CLASS_NAMES)
        assert set(np.unique(hard["semantic"])) <= set(np.unique(content["semantic"]))
        assert content["instance"].max() >= hard["instance"].max()


# --- labels --------------------------------------------------------------------------------------
def test_scenes_are_valid_and_labels_consistent(scenes):
    assert HARD_CLASS_NAMES[: len(SYNTHETIC_CLASS_NAMES)] == SYNTHETIC_CLASS_NAMES
    for scene in scenes:
        validate_scene(scene, scene["name"])
        sem, ins = scene["semantic"], scene["instance"]
        assert set(np.unique(sem).tolist()) <= {-100} | set(range(len(HARD_CLASS_NAMES)))
        assert np.all(ins[np.isin(sem, (WALL, FLOOR, -100))] == -100)  # clutter: no instance either
        assert (sem == WALL).any() and (sem == FLOOR).any()
        inst = _instances(scene)
        assert sorted(inst) == list(range(len(inst)))
        for idx in inst.values():
            classes = np.unique(sem[idx])
            assert len(classes) == 1 and classes[0] in HARD_INSTANCE_CLASSES
        assert np.all(ins[np.isin(sem, HARD_INSTANCE_CLASSES)] >= 0)
        assert 10_000 <= len(sem) <= 32_000


def test_unannotated_clutter_appears(scenes):
    assert sum((s["semantic"] == -100).any() for s in scenes) >= N_SCENES // 3


def test_long_tailed_class_frequencies():
    """All 15 instance classes appear; chairs in most scenes, bathtubs and toilets in few."""
    present = [set(np.unique(s["semantic"][s["instance"] >= 0]).tolist())
               for s in (generate_scene((0, i), "hard") for i in range(200))]
    freq = {c: sum(c in p for p in present) / len(present) for c in HARD_INSTANCE_CLASSES}
    assert all(f > 0 for f in freq.values()), freq
    assert freq[CHAIR] > 0.5
    assert freq[BATHTUB] < 0.08 and freq[TOILET] < 0.1
    assert sorted(freq.values())[-1] / sorted(freq.values())[0] > 10


# --- shapes and layout ---------------------------------------------------------------------------
def test_several_templates_per_class_and_stretch():
    assert all(len(options) >= 2 for options in TEMPLATES.values())
    rng = np.random.default_rng(0)
    kinds = {}
    for _ in range(60):
        f = otherfurniture(rng)
        kinds.setdefault(len(f.parts), f)
    assert len(kinds) >= 4  # part counts differ between templates
    b = PartsBuilder().box((-0.5, -0.25, 0.0), (0.5, 0.25, 0.8), (0.5, 0.5, 0.5))
    b.cylinder(0.2, 0.1, 0.1, 0.8, 1.0, (0.5, 0.5, 0.5))
    f = Furniture(CHAIR, b.build())
    g = stretch(f, np.random.default_rng(1), 0.2)
    ext_f, ext_g = f.parts.hi - f.parts.lo, g.parts.hi - g.parts.lo
    scale = ext_g[0] / ext_f[0]
    assert np.all((scale > 0.8 - 1e-9) & (scale < 1.2 + 1e-9)) and not np.allclose(scale, 1)
    assert g.parts.lo[:, 2].min() == 0.0                       # still on the floor
    cyl = g.parts.kind == CYLINDER
    np.testing.assert_allclose(ext_g[cyl, 0], ext_g[cyl, 1])   # cylinders stay round


def _touching_same_class(room, gap=0.02) -> int:
    """Pairs of annotated same-class objects with parts closer than ``gap`` (separating axes)."""
    objs = [o for o in room.objects if o.furniture.cls >= 0]
    n = 0
    for i, a in enumerate(objs):
        for b in objs[i + 1:]:
            if a.furniture.cls == b.furniture.cls:
                yaw_b = np.full(len(b.furniture.parts), b.yaw)
                n += not _separated(a.footprints(), a.yaw, b.footprints(), yaw_b, gap).all()
    return n


def _hard_room(i):
    p = SIZES["hard"]
    return build_hard_room(np.random.default_rng((0, i)), p.side, p.height, p.objects, spread=p.spread,
                           gap=p.gap, clutter=p.clutter, door_leaf=p.door_leaf)


def test_same_class_objects_touch():
    """Desk islands, joined tables, twin beds, rows of chairs, runs of cabinets, matching copies
    side by side: most hard rooms hold two same-class objects within 2 cm of each other, few
    cpu rooms do (the cpu layouts keep 1.5 cm plus a random gap)."""
    cpu = SIZES["cpu"]
    hard = [_touching_same_class(_hard_room(i)) for i in range(40)]
    easy = [_touching_same_class(build_room(np.random.default_rng((0, i)), cpu.side, cpu.height, cpu.objects,
                                            cpu.scale)) for i in range(40)]
    assert sum(n > 0 for n in hard) >= 20 and np.mean(hard) > 4 * np.mean(easy)


def _samples_inside(p: Placed, rng, shrink=1e-3, per_part=100):
    parts = p.furniture.parts
    u = rng.random((len(parts), per_part, 3))
    local = (parts.lo + shrink)[:, None] + u * (parts.hi - parts.lo - 2 * shrink)[:, None]
    return rotate_z(local.reshape(-1, 3), p.yaw) + (p.x, p.y, 0.0)


def _inside(world, p: Placed):
    local = rotate_z(world - (p.x, p.y, 0.0), -p.yaw)
    lo, hi = p.furniture.parts.lo, p.furniture.parts.hi
    return np.any(np.all((local[:, None] > lo[None]) & (local[:, None] < hi[None]), axis=2), axis=1)


def test_hard_layouts_never_interpenetrate():
    """Objects (clutter on tops, sinks on counters and the door leaf included) never overlap,
    and all but the door leaf (whose outer handle is outside when closed) stay in the room."""
    rng = np.random.default_rng(0)
    for i in range(10):
        room = _hard_room(i)
        samples = [_samples_inside(p, rng) for p in room.objects]
        for a, pts in enumerate(samples):
            if room.objects[a].furniture.cls != DOOR:
                assert pts[:, 0].min() >= -1e-6 and pts[:, 0].max() <= room.lx + 1e-6
                assert pts[:, 1].min() >= -1e-6 and pts[:, 1].max() <= room.ly + 1e-6
            for b, other in enumerate(room.objects):
                if a != b:
                    assert not _inside(pts, other).any(), (i, a, b)


def test_sinks_and_clutter_rest_on_what_holds_them():
    """A sink on a counter or vanity and clutter on a top touch the top they stand on (lifted
    once, not twice); things start on the floor otherwise, or hang on a wall."""
    for i in range(12):
        p = SIZES["hard"]
        room = build_hard_room(np.random.default_rng((1, i)), p.side, p.height, p.objects, spread=p.spread,
                               gap=p.gap, clutter=(4, 6), recipe=("kitchen", "bathroom")[i % 2])
        tops = [o.furniture.hi[2] for o in room.objects]
        for o in room.objects:
            z0 = o.furniture.lo[2]
            if z0 < 1e-9 or o.furniture.cls == DOOR:
                continue
            on_top = min(abs(z0 - t - p.gap) for t in tops) < 1e-6
            centre, half = o.footprints()[:2]
            corners = np.concatenate([centre + rot2(half * s, o.yaw) for s in ((1, 1), (1, -1), (-1, 1), (-1, -1))])
            on_wall = min(corners[:, 0].min(), corners[:, 1].min(), room.lx - corners[:, 0].max(),
                          room.ly - corners[:, 1].max()) < 0.05
            assert on_top or (on_wall and o.furniture.cls != -100), (i, o.furniture.cls, z0)


# --- the scan ------------------------------------------------------------------------------------
def test_occluder_shadows_a_plane_behind_it():
    """A 1 x 1 m box part between a viewpoint and a wall-like plane of points: the points whose
    ray to the viewpoint crosses the box are not seen, the others are."""
    y, z = np.meshgrid(np.linspace(-3, 3, 61), np.linspace(0, 3, 31))
    plane = np.column_stack([np.full(y.size, 4.0), y.ravel(), z.ravel()])
    normals = np.tile([-1.0, 0.0, 0.0], (len(plane), 1))
    view = np.array([[0.0, 0.0, 1.5]])
    lo, hi = np.array([1.9, -0.5, 1.0]), np.array([2.1, 0.5, 2.0])
    corners = np.array([[x, yy, zz] for x in (lo[0], hi[0]) for yy in (lo[1], hi[1])
                        for zz in (lo[2], hi[2])])
    part = np.zeros(len(plane), dtype=np.int64)
    seen = _seen(plane, normals, part, view, (np.array([1]), corners[None]), np.ones(len(plane), bool))
    # exact shadow of the box's front face on the plane x = 4 (a factor 4 / 1.9 .. 4 / 2.1 out)
    ray = plane - view[0]
    hits_front = (np.abs(ray[:, 1] * 1.9 / 4) < 0.5) & (np.abs(1.5 + ray[:, 2] * 1.9 / 4 - 1.5) < 0.5)
    assert not seen[hits_front].any()
    far = (np.abs(plane[:, 1]) > 1.6) | (np.abs(plane[:, 2] - 1.5) > 1.6)
    assert seen[far].all()
    back = _seen(plane, -normals, part, view, (np.array([], dtype=int), np.zeros((0, 8, 3))),
                 np.ones(len(plane), bool))
    assert not back.any()  # faces looking away from every viewpoint are not seen


def test_colour_shifts_between_scenes():
    """Step 9: one grey wall scanned in 20 scenes comes out in different colours (per-scene white
    balance and brightness); with those knobs off, only the per-point noise is left."""
    base = np.full((5000, 3), 0.5)
    normals = np.tile([0.0, -1.0, 0.0], (5000, 1))
    points = np.random.default_rng(0).uniform(0, 3, (5000, 3))
    flat = dataclasses.replace(SIZES["hard"], white_balance=0.0, brightness=(1.0, 1.0), light_field=0.0)
    def spread(preset):
        means = np.array([_hard_colours(base, normals, points, preset, np.random.default_rng(i), False).mean(0)
                          for i in range(20)])
        return means.mean(1).std(), (means[:, 0] / means[:, 2]).std()  # brightness, colour cast
    assert min(spread(SIZES["hard"])) > 0.03 and max(spread(flat)) < 0.01


def test_keep_probability_falls_with_distance_and_darkness():
    """Step 7's keep probability: lower far from every viewpoint and on black surfaces."""
    preset = dataclasses.replace(SIZES["hard"], density_waves=0.0)
    x = np.linspace(0.0, 8.0, 81)
    points = np.column_stack([x, np.zeros_like(x), np.full_like(x, 1.5)])
    views = np.array([[0.0, 0.0, 1.5]])
    field = _wave_params(np.random.default_rng(0), 0.0, (1.0, 3.0))
    lum = np.repeat([0.8, 0.05], len(x))  # a bright and a black surface at the same places
    prob = _density(np.concatenate([points, points]), lum, views, field, preset)
    bright, dark = prob[: len(x)], prob[len(x):]
    assert np.all(np.diff(bright) <= 1e-12) and bright[0] == 1.0
    falloff = 1 / (1 + (x / preset.density_falloff) ** 2)
    np.testing.assert_allclose(bright[-1] / bright[40], falloff[-1] / falloff[40], rtol=1e-6)  # unclipped
    np.testing.assert_allclose(dark[40:] / bright[40:], preset.dark_keep + (1 - preset.dark_keep) * 0.05 / 0.35,
                               rtol=1e-6)


def test_uneven_density(scenes):
    """Floor points per 0.5 m cell vary more in hard scenes than in cpu scenes (density falloff
    from the viewpoints, random density field, shadows)."""
    def cv(scene):
        floor = scene["xyz"][scene["semantic"] == FLOOR]
        cells = np.unique(np.floor(floor[:, :2] / 0.5).astype(int), axis=0, return_counts=True)[1]
        return cells.std() / cells.mean()
    cpu = np.median([cv(generate_scene((0, i))) for i in range(20)])
    assert np.median([cv(s) for s in scenes[:20]]) > 1.1 * cpu


# --- dataset, splits, profile --------------------------------------------------------------------
def test_generate_hard_dataset_meta_and_gt(tmp_path):
    meta = generate_dataset(tmp_path, 3, size="hard", seed=2, progress=False)
    assert meta["size"] == "hard" and meta["class_names"] == list(HARD_CLASS_NAMES)
    assert meta["instance_classes"] == list(HARD_INSTANCE_CLASSES)
    assert meta["benchmark_ids"] == list(range(1, len(HARD_CLASS_NAMES) + 1))
    for i in range(3):
        name = f"synthetic_{i:05d}"
        scene, direct = load_scene(tmp_path / "scenes" / f"{name}.npz"), generate_scene((2, i), "hard")
        np.testing.assert_array_equal(scene["xyz"], direct["xyz"])
        gt = np.loadtxt(tmp_path / "gt" / f"{name}.txt", dtype=np.int64)
        sem = np.where(gt > 0, gt // 1000 - 1, -100)
        ins = np.where(gt % 1000 > 0, gt % 1000 - 1, -100)
        np.testing.assert_array_equal(sem, scene["semantic"])
        np.testing.assert_array_equal(ins, scene["instance"])


def test_cli_hard_size(tmp_path):
    out = tmp_path / "data"
    run = subprocess.run([sys.executable, str(REPO / "data_scripts" / "make_synthetic.py"), "--out", str(out),
                          "--scenes", "2", "--size", "hard", "--workers", "2", "--no-progress"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_meta(out)["num_classes"] == len(HARD_CLASS_NAMES)
    np.testing.assert_array_equal(load_scene(out / "scenes" / "synthetic_00001.npz")["rgb"],
                                  generate_scene((0, 1), "hard")["rgb"])


def test_label_ratio_100_is_the_whole_train_list(tmp_path):
    train = [f"s{i:04d}" for i in range(1200)]
    splits = make_label_splits(train, ratios=(1, 5, 10, 20, 100), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"labelled_1": 12, "labelled_5": 60, "labelled_10": 120,
                                                      "labelled_20": 240, "labelled_100": 1200}
    assert set(splits["labelled_100"]) == set(train)
    assert splits["labelled_20"] == splits["labelled_100"][:240]  # still nested prefixes
    generate_dataset(tmp_path, 5, size="hard", progress=False)
    written = write_label_splits(tmp_path, ratios=(20, 100), seed=0)
    assert sorted(written["labelled_100"]) == sorted(read_meta(tmp_path)["splits"]["train"])


def test_hard_profile():
    cfg = Config.for_profile("hard")
    cpu = Config.for_profile("cpu")
    assert cfg.synthetic_size == "hard" and cfg.data_root == "data/synthetic_hard"
    assert cfg.synthetic_size in SIZES
    for key in ("model_size", "voxel_size", "cluster_radius", "batch_size", "synthetic_scenes"):
        assert getattr(cfg, key) == getattr(cpu, key), key
