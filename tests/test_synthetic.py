"""The synthetic benchmark: determinism, labels, scan properties, layout, dataset files, CLI.

Geometry checks use hand-built rooms and brute-force references (Monte Carlo volume samples,
KD-tree nearest distances, the benchmark encoding decoded by hand), never the generator itself.
"""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from twist_lib.data.io import load_scene, read_meta, validate_scene, write_meta
from twist_lib.synthetic import (SYNTHETIC_CLASS_NAMES, SYNTHETIC_INSTANCE_CLASSES, SIZES,
                                 generate_dataset, generate_scene)
from twist_lib.synthetic.classes import CABINET, CHAIR, DESK, FLOOR, TABLE, WALL
from twist_lib.synthetic.furniture import Furniture
from twist_lib.synthetic.parts import PartsBuilder
from twist_lib.synthetic.room import Placed, Room, build_room
from twist_lib.synthetic.scene import DOWNWARD_KEEP, scan_room

REPO = Path(__file__).resolve().parents[1]
N_SCENES = 20


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene((0, i)) for i in range(N_SCENES)]


def _instances(scene):
    ins = scene["instance"]
    return {int(k): np.flatnonzero(ins == k) for k in np.unique(ins[ins >= 0])}


# --- determinism -----------------------------------------------------------------------------
def test_same_seed_same_scene_other_seed_differs():
    a, b, c = generate_scene(7), generate_scene(7), generate_scene(8)
    for key in ("xyz", "rgb", "semantic", "instance"):
        np.testing.assert_array_equal(a[key], b[key])
    assert len(a["xyz"]) != len(c["xyz"]) or not np.array_equal(a["xyz"], c["xyz"])


def test_unknown_size_is_an_error():
    with pytest.raises(ValueError, match="huge"):
        generate_scene(0, size="huge")


# --- labels and sizes ------------------------------------------------------------------------
def test_scenes_are_valid_and_labels_consistent(scenes):
    n_classes = len(SYNTHETIC_CLASS_NAMES)
    for scene in scenes:
        validate_scene(scene, scene["name"])
        assert scene["xyz"].dtype == np.float32 and scene["rgb"].dtype == np.float32
        sem, ins = scene["semantic"], scene["instance"]
        assert sem.min() >= 0 and sem.max() < n_classes  # every point is labelled
        assert np.all(ins[np.isin(sem, (WALL, FLOOR))] == -100)
        assert (sem == WALL).any() and (sem == FLOOR).any()
        inst = _instances(scene)
        assert sorted(inst) == list(range(len(inst)))  # ids 0..I-1
        for idx in inst.values():
            classes = np.unique(sem[idx])
            assert len(classes) == 1 and classes[0] in SYNTHETIC_INSTANCE_CLASSES
        assert np.all(ins[np.isin(sem, SYNTHETIC_INSTANCE_CLASSES)] >= 0)


def test_cpu_point_and_object_counts(scenes):
    for scene in scenes:
        assert 10_000 <= len(scene["xyz"]) <= 30_000, scene["name"]
        assert 4 <= len(_instances(scene)) <= 12, scene["name"]
        extent = scene["xyz"].max(0) - scene["xyz"].min(0)
        assert np.all(extent[:2] < 5.6) and np.all(extent[:2] > 2.9)


def test_at_least_eight_instance_classes_appear(scenes):
    present = set()
    for scene in scenes:
        present |= set(np.unique(scene["semantic"][scene["instance"] >= 0]).tolist())
    assert len(present) >= 8


def test_colour_is_shared_across_confusable_classes(scenes):
    """Some chair and some sofa (table / desk, cabinet / bookshelf) have mean colours closer than
    two instances of one material usually are (jitter 0.04 per channel in [0, 1] is ~0.14 here)."""
    means = {}
    for scene in scenes:
        for idx in _instances(scene).values():
            means.setdefault(int(scene["semantic"][idx[0]]), []).append(scene["rgb"][idx].mean(0))
    names = {n: i for i, n in enumerate(SYNTHETIC_CLASS_NAMES)}
    for a, b in (("chair", "sofa"), ("table", "desk"), ("cabinet", "bookshelf")):
        d = np.linalg.norm(np.array(means[names[a]])[:, None] - np.array(means[names[b]])[None], axis=2)
        assert d.min() < 0.15, (a, b)


def test_same_class_instances_are_packed_closely(scenes):
    """Rows of chairs, desks side by side, tucked chairs: in several scenes two instances of the
    same class come closer than 0.3 m (nearest points, KD-tree)."""
    packed = 0
    for scene in scenes:
        inst, sem = _instances(scene), scene["semantic"]
        by_class = {}
        for k, idx in inst.items():
            by_class.setdefault(int(sem[idx[0]]), []).append(idx)
        closest = np.inf
        for group in by_class.values():
            for i in range(len(group)):
                tree = cKDTree(scene["xyz"][group[i]])
                for j in range(i + 1, len(group)):
                    closest = min(closest, tree.query(scene["xyz"][group[j]])[0].min())
        packed += closest < 0.3
    assert packed >= 4


def test_scannet_size():
    scene = generate_scene((0, 1), size="scannet")
    validate_scene(scene)
    assert 100_000 <= len(scene["xyz"]) <= 200_000
    assert len(_instances(scene)) >= 12


# --- layout: nothing interpenetrates -----------------------------------------------------------
def _world_samples(p: Placed, rng, per_part=200):
    """Uniform samples inside every part's box (cylinders by their bounding box), world frame."""
    parts = p.furniture.parts
    u = rng.random((len(parts), per_part, 3))
    local = parts.lo[:, None] + u * (parts.hi - parts.lo)[:, None]
    local = local.reshape(-1, 3)
    c, s = np.cos(p.yaw), np.sin(p.yaw)
    return np.column_stack([c * local[:, 0] - s * local[:, 1] + p.x,
                            s * local[:, 0] + c * local[:, 1] + p.y, local[:, 2]])


def _inside_boxes(world, p: Placed, shrink=1e-3):
    c, s = np.cos(-p.yaw), np.sin(-p.yaw)
    dx, dy = world[:, 0] - p.x, world[:, 1] - p.y
    local = np.column_stack([c * dx - s * dy, s * dx + c * dy, world[:, 2]])
    lo, hi = p.furniture.parts.lo + shrink, p.furniture.parts.hi - shrink
    return np.any(np.all((local[:, None] > lo[None]) & (local[:, None] < hi[None]), axis=2), axis=1)


def test_layouts_stay_in_the_room_and_never_interpenetrate():
    rng = np.random.default_rng(0)
    tucked = 0
    for seed in range(12):
        room = build_room(np.random.default_rng(seed), scale=1 + seed % 2, side=(4.0, 7.0))
        samples = [_world_samples(p, rng) for p in room.objects]
        for a, pts in enumerate(samples):
            assert pts[:, 0].min() >= -1e-6 and pts[:, 0].max() <= room.lx + 1e-6
            assert pts[:, 1].min() >= -1e-6 and pts[:, 1].max() <= room.ly + 1e-6
            for b, other in enumerate(room.objects):
                if a != b:
                    assert not _inside_boxes(pts, other).any(), (seed, a, b)
        # a chair is "tucked" when the front of its seat is under a table or desk top
        for seat in (p for p in room.objects if p.furniture.cls == CHAIR):
            front = seat.to_world((0.0, seat.furniture.lo[1] + 0.02))
            for host in (p for p in room.objects if p.furniture.cls in (TABLE, DESK)):
                tucked += _inside_boxes(np.array([[*front, host.furniture.hi[2] - 0.01]]), host, 0).any()
    assert tucked >= 3


# --- the scan: hidden faces, density ---------------------------------------------------------
@pytest.fixture(scope="module")
def scanned_room():
    """A 3 x 3 m room with a box cabinet flush against wall 2 (y = 3) and a stool (one leg under a
    seat) at a yaw, scanned densely without noise."""
    grey = (0.5, 0.5, 0.5)
    box = Furniture(CABINET, PartsBuilder().box((-0.4, -0.2, 0), (0.4, 0.2, 1.0), grey).build())
    stool = Furniture(CHAIR, PartsBuilder().box((-0.02, -0.02, 0), (0.02, 0.02, 0.45), grey)
                      .box((-0.2, -0.2, 0.45), (0.2, 0.2, 0.5), grey).build())
    objects = (Placed(box, 0.0, 1.5, 3.0 - 0.2 - 0.001), Placed(stool, 0.3, 0.8, 1.0))
    room = Room(3.0, 3.0, 2.5, "test", objects, (), np.full(3, 0.6), np.full(3, 0.9))
    preset = dataclasses.replace(SIZES["cpu"], density=20_000.0, points=(1, 10**9))
    return room, scan_room(room, preset, np.random.default_rng(0), clean=True), preset.density


def _stool_frame(xyz):
    c, s = np.cos(-0.3), np.sin(-0.3)
    dx, dy = xyz[:, 0] - 0.8, xyz[:, 1] - 1.0
    return np.column_stack([c * dx - s * dy, s * dx + c * dy, xyz[:, 2]])


def test_faces_touching_the_floor_or_a_wall_are_not_scanned(scanned_room):
    _, scene, _ = scanned_room
    xyz, sem, ins = scene["xyz"], scene["semantic"], scene["instance"]
    objects = ins >= 0
    assert not np.any(objects & (xyz[:, 2] == 0.0))          # no bottom faces
    assert np.any(objects & (xyz[:, 2] < 0.02))              # though the sides reach the floor
    cab = objects & (sem == CABINET)
    assert not np.any(cab & (xyz[:, 1] == np.float32(0.2 + (3.0 - 0.2 - 0.001))))  # no back face
    floor = xyz[sem == FLOOR]
    under_box = (np.abs(floor[:, 0] - 1.5) < 0.38) & (np.abs(floor[:, 1] - 2.799) < 0.18)
    assert not under_box.any()
    leg = _stool_frame(floor)
    assert not np.any((np.abs(leg[:, 0]) < 0.018) & (np.abs(leg[:, 1]) < 0.018))
    behind = xyz[(sem == WALL) & (xyz[:, 1] == np.float32(3.0))]
    assert len(behind) > 1000
    assert not np.any((np.abs(behind[:, 0] - 1.5) < 0.38) & (behind[:, 2] < 0.98))


def test_contact_between_parts_is_hidden_and_downward_faces_thinned(scanned_room):
    _, scene, density = scanned_room
    stool = _stool_frame(scene["xyz"][scene["semantic"] == CHAIR])
    at_contact = np.abs(stool[:, 2] - 0.45) < 1e-6
    in_patch = (np.abs(stool[:, 0]) < 0.019) & (np.abs(stool[:, 1]) < 0.019)
    assert not np.any(at_contact & in_patch)        # leg top and the seat under it
    expected = DOWNWARD_KEEP * (0.4**2 - 0.04**2) * density
    assert abs(np.sum(at_contact & ~in_patch) - expected) < 5 * np.sqrt(expected)


def test_surface_density_is_uniform(scanned_room):
    """Point counts on faces of different areas follow area * density (Poisson, 5 sigma)."""
    _, scene, density = scanned_room
    xyz, sem = scene["xyz"], scene["semantic"]
    cab = xyz[sem == CABINET]
    for on_face, area in (
        (np.abs(cab[:, 1] - np.float32(3.0 - 0.4 - 0.001)) < 1e-6, 0.8 * 1.0),   # front
        (np.abs(cab[:, 2] - 1.0) < 1e-6, 0.8 * 0.4),                               # top
        (np.abs(cab[:, 0] - 1.1) < 1e-6, 0.4 * 1.0),                               # side
    ):
        expected = area * density
        assert abs(on_face.sum() - expected) < 5 * np.sqrt(expected)


# --- the dataset on disk ---------------------------------------------------------------------
def _decode_gt(path):
    gt = np.loadtxt(path, dtype=np.int64)
    sem = np.where(gt > 0, gt // 1000 - 1, -100)
    ins = np.where(gt % 1000 > 0, gt % 1000 - 1, -100)
    return sem, ins


def test_generate_dataset_writes_meta_scenes_and_gt(tmp_path):
    meta = generate_dataset(tmp_path, 5, seed=3, progress=False)
    assert read_meta(tmp_path) == meta
    names = [f"synthetic_{i:05d}" for i in range(5)]
    assert meta["name"] == "synthetic" and meta["size"] == "cpu" and meta["seed"] == 3
    assert meta["class_names"] == list(SYNTHETIC_CLASS_NAMES)
    assert meta["instance_classes"] == list(SYNTHETIC_INSTANCE_CLASSES)
    assert meta["benchmark_ids"] == list(range(1, len(SYNTHETIC_CLASS_NAMES) + 1))
    assert meta["splits"]["val"] == [names[4]] and meta["splits"]["train"] == names[:4]
    for i, name in enumerate(names):
        scene = load_scene(tmp_path / "scenes" / f"{name}.npz")
        direct = generate_scene((3, i))
        assert scene["name"] == name
        for key in ("xyz", "rgb", "semantic", "instance"):
            np.testing.assert_array_equal(scene[key], direct[key])
        sem, ins = _decode_gt(tmp_path / "gt" / f"{name}.txt")
        np.testing.assert_array_equal(sem, scene["semantic"])
        np.testing.assert_array_equal(ins, scene["instance"])


def test_generate_dataset_resumes_and_grows(tmp_path):
    generate_dataset(tmp_path, 2, progress=False)
    first = tmp_path / "scenes" / "synthetic_00001.npz"
    stamp = first.stat().st_mtime_ns
    meta = read_meta(tmp_path)
    meta["splits"]["labelled_50"] = ["synthetic_00000"]
    write_meta(tmp_path, meta)
    generate_dataset(tmp_path, 2, progress=False)                # nothing to do, splits kept
    assert first.stat().st_mtime_ns == stamp
    assert read_meta(tmp_path)["splits"]["labelled_50"] == ["synthetic_00000"]
    (tmp_path / "scenes" / "synthetic_00000.npz").unlink()
    grown = generate_dataset(tmp_path, 6, progress=False)         # regrows 0, adds 2..5
    assert first.stat().st_mtime_ns == stamp
    assert sorted(p.stem for p in (tmp_path / "scenes").glob("*.npz")) == [f"synthetic_{i:05d}" for i in range(6)]
    assert "labelled_50" not in grown["splits"]                   # stale: the train list changed
    np.testing.assert_array_equal(load_scene(tmp_path / "scenes" / "synthetic_00000.npz")["xyz"],
                                  generate_scene((0, 0))["xyz"])
    generate_dataset(tmp_path, 2, progress=False, overwrite=True)
    assert first.stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="meta.json"):
        generate_dataset(tmp_path, 2, seed=1, progress=False)


def test_generate_dataset_with_workers_matches_serial(tmp_path):
    generate_dataset(tmp_path, 3, seed=5, workers=2, progress=False)
    for i in range(3):
        scene = load_scene(tmp_path / "scenes" / f"synthetic_{i:05d}.npz")
        np.testing.assert_array_equal(scene["xyz"], generate_scene((5, i))["xyz"])


def test_cli(tmp_path):
    script = REPO / "data_scripts" / "make_synthetic.py"
    out = tmp_path / "data"
    run = subprocess.run([sys.executable, str(script), "--out", str(out), "--scenes", "3", "--size", "cpu",
                          "--seed", "1", "--val-fraction", "0.34", "--no-progress"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    meta = read_meta(out)
    assert meta["seed"] == 1 and len(meta["splits"]["val"]) == 1 and len(meta["splits"]["train"]) == 2
    assert len(list((out / "gt").glob("*.txt"))) == 3
    bad = subprocess.run([sys.executable, str(script), "--out", str(out), "--scenes", "3", "--seed", "2"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "meta.json" in bad.stderr
