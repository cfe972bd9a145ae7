"""Voxelisation, augmentations, offset targets, collate and SceneDataset, each checked against a
brute-force reference written here."""
import math

import numpy as np
import pytest
import torch

from twist_lib.data import (BATCH_KEYS, IGNORE_INDEX, ColourShift, Compose, ElasticDistortion,
                            RandomCrop, RandomFlipX, RandomJitterMatrix, RandomRotateZ,
                            SceneDataset, collate, default_train_transforms, instance_offsets,
                            make_meta, save_scene, scene_path, voxel_mean, voxelize, write_meta)


def make_scene(n=3000, seed=0, name="scene0"):
    """A 6 x 5 x 3 m room; instances = 1.5 x 1.25 m cells below z = 1 m; a per-point id array."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([0, 0, 0], [6, 5, 3], size=(n, 3)).astype(np.float32)
    cell = (xyz[:, 0] // 1.5).astype(np.int64) * 4 + (xyz[:, 1] // 1.25).astype(np.int64)
    instance = np.where(xyz[:, 2] < 1.0, cell, IGNORE_INDEX)
    semantic = np.where(instance >= 0, instance % 5 + 1, 0)
    semantic[rng.random(n) < 0.05] = IGNORE_INDEX
    rgb = np.stack([np.linspace(-1, 1, n), rng.uniform(-0.9, 0.9, n), rng.uniform(-1, 1, n)], 1)
    return {"xyz": xyz, "rgb": rgb.astype(np.float32), "semantic": semantic.astype(np.int64),
            "instance": instance.astype(np.int64), "name": name, "point_id": np.arange(n)}


def brute_force_offsets(xyz, instance):
    xyz = np.asarray(xyz, dtype=np.float64)
    out = np.zeros_like(xyz)
    for i in range(len(xyz)):
        if instance[i] != IGNORE_INDEX:
            members = [j for j in range(len(xyz)) if instance[j] == instance[i]]
            out[i] = xyz[members].mean(axis=0) - xyz[i]
    return out


def assert_aligned(out, orig):
    """Every per-point array of ``out`` is the rows ``point_id`` of the original; no reordering."""
    pid = out["point_id"]
    assert (np.diff(pid) > 0).all()
    for key in ("semantic", "instance"):
        np.testing.assert_array_equal(out[key], orig[key][pid])
    for key in ("xyz", "rgb", "semantic", "instance"):
        assert len(out[key]) == len(pid)


# ---------------------------------------------------------------- voxelize

def test_voxelize_matches_dict_reference():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(-1.0, 1.0, size=(2000, 3))
    xyz[:50] = np.round(xyz[:50] / 0.05) * 0.05  # points on voxel faces
    coords, p2v, v2p = voxelize(xyz, voxel_size=0.05)
    cells = [tuple(math.floor(v / 0.05) for v in p) for p in xyz]
    lo = [min(c[d] for c in cells) for d in range(3)]
    cells = [tuple(c[d] - lo[d] for d in range(3)) for c in cells]
    first = {}
    for i, c in enumerate(cells):
        first.setdefault(c, i)
    ordered = sorted(first)
    row = {c: r for r, c in enumerate(ordered)}
    np.testing.assert_array_equal(coords, np.array(ordered))
    np.testing.assert_array_equal(p2v, [row[c] for c in cells])
    np.testing.assert_array_equal(v2p, [first[c] for c in ordered])
    assert coords.dtype == np.int32 and p2v.dtype == np.int64 and v2p.dtype == np.int64
    assert coords.min() == 0


def test_voxel_mean_numpy_and_torch_match_loop():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(500, 4))
    p2v = rng.integers(0, 40, size=500)
    ref = np.zeros((41, 4))  # voxel 40 is empty -> 0
    for v in range(41):
        if (p2v == v).any():
            ref[v] = values[p2v == v].mean(axis=0)
    np.testing.assert_allclose(voxel_mean(values, p2v, 41), ref, atol=1e-12)
    got = voxel_mean(torch.from_numpy(values), torch.from_numpy(p2v), 41)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_voxelize_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        voxelize(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="units"):
        voxelize(np.array([[0, 0, 0], [1e6, 0, 0]]), 0.02)


# ---------------------------------------------------------------- linear augmentations

def fitted_matrix(before, after):
    m, *_ = np.linalg.lstsq(before.astype(np.float64), after.astype(np.float64), rcond=None)
    np.testing.assert_allclose(before @ m, after, atol=1e-4)  # the map is exactly linear
    return m


def test_rotation_is_rigid_about_z_and_keeps_labels():
    scene = make_scene()
    out = RandomRotateZ()(scene, np.random.default_rng(3))
    m = fitted_matrix(scene["xyz"], out["xyz"])
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-5)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(out["xyz"][:, 2], scene["xyz"][:, 2], atol=1e-6)
    assert not np.allclose(m, np.eye(3), atol=1e-3)
    # instance-relative geometry: distances inside an instance are unchanged
    members = np.flatnonzero(scene["instance"] == 5)
    d0 = np.linalg.norm(scene["xyz"][members, None] - scene["xyz"][None, members], axis=-1)
    d1 = np.linalg.norm(out["xyz"][members, None] - out["xyz"][None, members], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-4)
    assert_aligned(out, scene)


def test_flip_negates_x_only_and_both_outcomes_occur():
    scene = make_scene(500)
    flipped = set()
    for seed in range(20):
        out = RandomFlipX()(scene, np.random.default_rng(seed))
        np.testing.assert_array_equal(out["xyz"][:, 1:], scene["xyz"][:, 1:])
        same = np.array_equal(out["xyz"][:, 0], scene["xyz"][:, 0])
        assert same or np.array_equal(out["xyz"][:, 0], -scene["xyz"][:, 0])
        flipped.add(not same)
        assert_aligned(out, scene)
    assert flipped == {True, False}


def test_jitter_matrix_is_a_small_linear_map():
    scene = make_scene()
    out = RandomJitterMatrix(0.1)(scene, np.random.default_rng(4))
    m = fitted_matrix(scene["xyz"], out["xyz"])
    assert 0 < np.abs(m - np.eye(3)).max() < 0.6
    # relative vectors inside an instance transform by the same matrix
    members = np.flatnonzero(scene["instance"] == 3)
    rel = scene["xyz"][members] - scene["xyz"][members[0]]
    np.testing.assert_allclose(out["xyz"][members] - out["xyz"][members[0]], rel @ m, atol=1e-4)
    assert_aligned(out, scene)


# ---------------------------------------------------------------- elastic, crop, colour

def test_elastic_is_smooth_scales_with_magnitude_and_keeps_order():
    scene = make_scene()
    near = scene["xyz"] + np.float32(1e-3)  # each point's 1 mm neighbour
    both = {**scene, "xyz": np.concatenate([scene["xyz"], near]), "point_id": None}
    n = len(scene["xyz"])
    out1 = ElasticDistortion(0.24, 0.8)(both, np.random.default_rng(5))
    out2 = ElasticDistortion(0.24, 1.6)(both, np.random.default_rng(5))
    d1 = out1["xyz"].astype(np.float64) - both["xyz"]
    d2 = out2["xyz"].astype(np.float64) - both["xyz"]
    np.testing.assert_allclose(d2, 2 * d1, atol=1e-5)
    typical = np.linalg.norm(d1[:n], axis=1).mean()
    assert 0.01 < typical < 0.5
    jump = np.linalg.norm(d1[:n] - d1[n:], axis=1)
    assert jump.max() < 0.05 * typical  # neighbours move together: the field is continuous
    np.testing.assert_array_equal(out1["semantic"], both["semantic"])


def in_box_mask(xyz, kept):
    lo, hi = kept[:, :2].min(0), kept[:, :2].max(0)
    return np.all((xyz[:, :2] >= lo) & (xyz[:, :2] <= hi), axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crop_is_contiguous_bounded_and_aligned(seed):
    scene = make_scene(5000)
    out = RandomCrop(max_points=1200, initial_size=6.0, step=0.5)(scene, np.random.default_rng(seed))
    assert 0 < len(out["xyz"]) <= 1200
    # spatially contiguous: exactly the points inside the kept points' x-y box are kept
    np.testing.assert_array_equal(np.flatnonzero(in_box_mask(scene["xyz"], out["xyz"])),
                                  out["point_id"])
    np.testing.assert_array_equal(out["xyz"], scene["xyz"][out["point_id"]])
    np.testing.assert_array_equal(out["rgb"], scene["rgb"][out["point_id"]])
    assert_aligned(out, scene)
    assert len(scene["xyz"]) == 5000  # input untouched


def test_crop_leaves_small_scenes_and_handles_duplicates():
    scene = make_scene(800)
    assert RandomCrop(max_points=800)(scene, np.random.default_rng(0)) is scene
    dup = make_scene(300)
    dup["xyz"][:] = dup["xyz"][0]  # all points identical: no box can hold only 50
    out = RandomCrop(max_points=50, initial_size=4, step=1)(dup, np.random.default_rng(0))
    assert len(out["xyz"]) == 50
    assert_aligned(out, dup)


def test_colour_shift_is_one_shift_per_channel_then_clipped():
    scene = make_scene()
    out = ColourShift(0.3)(scene, np.random.default_rng(6))
    assert out["rgb"].min() >= -1 and out["rgb"].max() <= 1
    diff = out["rgb"].astype(np.float64) - scene["rgb"]
    for c in range(3):
        unclipped = np.abs(out["rgb"][:, c]) < 0.999
        assert np.ptp(diff[unclipped, c]) < 1e-6
    assert np.abs(diff).max() > 1e-3
    np.testing.assert_array_equal(out["xyz"], scene["xyz"])


def test_default_transforms_reproducible_aligned_and_bounded():
    scene = make_scene(6000)
    t = default_train_transforms(max_points=2500)
    a = t(scene, np.random.default_rng(7))
    b = t(scene, np.random.default_rng(7))
    c = t(scene, np.random.default_rng(8))
    for key in ("xyz", "rgb", "semantic", "instance", "point_id"):
        np.testing.assert_array_equal(a[key], b[key])
    assert len(a["xyz"]) <= 2500
    assert len(a["xyz"]) != len(c["xyz"]) or not np.array_equal(a["xyz"], c["xyz"])
    assert_aligned(a, scene)
    assert a["xyz"].dtype == np.float32 and a["rgb"].dtype == np.float32
    np.testing.assert_array_equal(scene["point_id"], np.arange(6000))  # input untouched
    assert isinstance(t, Compose) and "ElasticDistortion" in repr(t)


# ---------------------------------------------------------------- offsets

def test_instance_offsets_match_brute_force():
    scene = make_scene(400)
    out = default_train_transforms(max_points=300)(scene, np.random.default_rng(9))
    off = instance_offsets(out["xyz"], out["instance"])
    np.testing.assert_allclose(off, brute_force_offsets(out["xyz"], out["instance"]), atol=1e-5)
    assert (off[out["instance"] == IGNORE_INDEX] == 0).all()
    assert off.dtype == np.float32


# ---------------------------------------------------------------- collate

def test_collate_batch_matches_references():
    scenes = [make_scene(700, seed=s, name=f"s{s}") for s in range(3)]
    scenes[1]["instance"] = np.where(scenes[1]["instance"] >= 0, scenes[1]["instance"] * 7 + 3,
                                     IGNORE_INDEX)  # sparse ids
    batch = collate(scenes, voxel_size=0.1, use_xyz_features=True)
    assert set(batch) == set(BATCH_KEYS)
    n = sum(len(s["xyz"]) for s in scenes)
    assert batch["xyz"].shape == (n, 3) and batch["feats"].shape == (n, 6)
    assert batch["names"] == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(batch["point_offsets"], [0, 700, 1400, 2100])
    seen = set()
    for b, s in enumerate(scenes):
        rows = slice(700 * b, 700 * (b + 1))
        assert (batch["batch_index"][rows] == b).all()
        np.testing.assert_array_equal(batch["xyz"][rows], s["xyz"])
        np.testing.assert_array_equal(batch["semantic"][rows], s["semantic"])
        np.testing.assert_allclose(batch["feats"][rows, 3:], s["xyz"] - s["xyz"].mean(0), atol=1e-5)
        np.testing.assert_allclose(batch["offset"][rows], brute_force_offsets(s["xyz"], s["instance"]),
                                   atol=1e-5)
        # instance ids: a bijection per scene, -100 kept, disjoint from other scenes
        inst = batch["instance"][rows].numpy()
        np.testing.assert_array_equal(inst == IGNORE_INDEX, s["instance"] == IGNORE_INDEX)
        pairs = set(zip(s["instance"][inst >= 0].tolist(), inst[inst >= 0].tolist()))
        assert len({p[0] for p in pairs}) == len(pairs) == len({p[1] for p in pairs})
        ids = {p[1] for p in pairs}
        assert not ids & seen
        seen |= ids
        # p2v: the voxel of every point is floor(xyz / 0.1) shifted to min 0, in its own scene
        grid = np.floor(s["xyz"].astype(np.float64) / 0.1).astype(np.int64)
        grid -= grid.min(0)
        vox = batch["voxel_coords"][batch["p2v"][rows]].numpy()
        np.testing.assert_array_equal(vox[:, 0], b)
        np.testing.assert_array_equal(vox[:, 1:], grid)
    assert seen == set(range(len(seen)))
    keys = {tuple(r) for r in batch["voxel_coords"].tolist()}
    assert len(keys) == len(batch["voxel_coords"])  # no voxel listed twice
    # voxel_feats: mean of the feats of the voxel's points
    p2v = batch["p2v"].numpy()
    for v in np.random.default_rng(0).choice(len(keys), 50, replace=False):
        np.testing.assert_allclose(batch["voxel_feats"][v], batch["feats"][p2v == v].mean(0), atol=1e-5)
    dtypes = {"xyz": torch.float32, "feats": torch.float32, "semantic": torch.int64,
              "instance": torch.int64, "voxel_coords": torch.int32, "p2v": torch.int64,
              "offset": torch.float32, "voxel_feats": torch.float32, "batch_index": torch.int64}
    for key, dtype in dtypes.items():
        assert batch[key].dtype == dtype, key


def test_collate_rgb_only_features():
    batch = collate([make_scene(200)])
    np.testing.assert_array_equal(batch["feats"], batch["rgb"])


# ---------------------------------------------------------------- dataset

@pytest.fixture
def data_root(tmp_path):
    names = [f"room{i}" for i in range(6)]
    for i, name in enumerate(names):
        scene = make_scene(1500, seed=i, name=name)
        del scene["point_id"]
        save_scene(scene_path(tmp_path, name), scene)
    splits = {"train": names[:5], "val": names[5:], "labelled_20": names[1:2],
              "labelled_40": names[1:3]}
    write_meta(tmp_path, make_meta("toy", [f"c{k}" for k in range(6)], range(1, 6), splits=splits))
    return tmp_path


def test_dataset_splits(data_root):
    assert SceneDataset(data_root, "labelled", label_ratio=40).names == ["room1", "room2"]
    assert SceneDataset(data_root, "unlabelled", label_ratio=40).names == ["room0", "room3", "room4"]
    assert SceneDataset(data_root, "val").names == ["room5"]
    assert len(SceneDataset(data_root, "train")) == 5


def test_dataset_items_are_augmented_aligned_with_consistent_offsets(data_root):
    t = default_train_transforms(max_points=900, colour_sigma=0)
    ds = SceneDataset(data_root, "train", transforms=t, seed=3)
    item = ds[2]
    stored = make_scene(1500, seed=2)
    pid = np.rint((item["rgb"][:, 0].astype(np.float64) + 1) / 2 * 1499).astype(int)  # rgb[:,0] encodes the index
    assert len(item["xyz"]) <= 900
    np.testing.assert_array_equal(item["semantic"], stored["semantic"][pid])
    np.testing.assert_array_equal(item["instance"], stored["instance"][pid])
    assert not np.allclose(item["xyz"], stored["xyz"][pid], atol=1e-2)  # it was augmented
    np.testing.assert_allclose(item["offset"], brute_force_offsets(item["xyz"], item["instance"]),
                               atol=1e-5)


def test_dataset_reproducible_per_seed_epoch_index(data_root):
    t = default_train_transforms(max_points=900)
    ds = SceneDataset(data_root, "train", transforms=t, seed=1)
    a, b = ds[1], ds[1]
    np.testing.assert_array_equal(a["xyz"], b["xyz"])
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["xyz"][:10], a["xyz"][:10])
    other = SceneDataset(data_root, "train", transforms=t, seed=2)
    assert not np.array_equal(other[1]["xyz"][:10], a["xyz"][:10])
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[1]["xyz"], a["xyz"])  # the cache was not modified


def test_unlabelled_view_hides_labels(data_root):
    ds = SceneDataset(data_root, "unlabelled", label_ratio=20,
                      transforms=default_train_transforms(max_points=900))
    for i in range(len(ds)):
        item = ds[i]
        assert (item["semantic"] == IGNORE_INDEX).all() and (item["instance"] == IGNORE_INDEX).all()
        assert (item["offset"] == 0).all()
    gt = ds.ground_truth(0)
    stored = make_scene(1500, seed=0)
    np.testing.assert_array_equal(gt["semantic"], stored["semantic"])
    np.testing.assert_array_equal(gt["xyz"], stored["xyz"])
    np.testing.assert_allclose(gt["offset"][:50],
                               brute_force_offsets(stored["xyz"], stored["instance"])[:50], atol=1e-5)


def test_dataset_errors(data_root):
    scene_path(data_root, "room3").unlink()
    with pytest.raises(FileNotFoundError, match="room3.npz") as e:
        SceneDataset(data_root, "train")
    assert "meta.json" in str(e.value)
    with pytest.raises(ValueError, match=r"meta.json.*labelled_5.*available splits.*labelled_20"):
        SceneDataset(data_root, "labelled", label_ratio=5)
    with pytest.raises(ValueError, match="label_ratio"):
        SceneDataset(data_root, "unlabelled")
    with pytest.raises(ValueError, match="unknown split"):
        SceneDataset(data_root, "test")


def test_dataloader_with_collate_fn(data_root):
    ds = SceneDataset(data_root, "labelled", label_ratio=40, voxel_size=0.05, use_xyz_features=True,
                      transforms=default_train_transforms(max_points=1000))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)
    batch = next(iter(loader))
    assert batch["names"] == ["room1", "room2"]
    assert batch["feats"].shape[1] == 6 and batch["voxel_feats"].shape[1] == 6
    np.testing.assert_allclose(batch["offset"][: batch["point_offsets"][1]],
                               ds[0]["offset"], atol=0)
