"""The data convention of pseudo labels (paper Sec. 4.3, eqs. 3-4, Fig. 4b): what the unlabelled
split carries once a round's pseudo labels exist, how augmentations move pseudo offsets, the
batch flags ``offset_valid`` / ``labelled``, the split loss of eqs. (3)-(4) and label noise.

References are independent of the code under test: the pseudo-label arrays written by the test
itself, rotation matrices built here from the generator's draw, point-by-point row matching for
crops, NumPy formulas of eq. (1), and per-instance loops / binomial bounds for label noise.
"""
import math

import numpy as np
import pytest
import torch

from twist_lib.data.batch import collate
from twist_lib.data.dataset import SceneDataset, corrupt_instance_classes
from twist_lib.data.io import load_scene, scene_path
from twist_lib.data.transforms import (Compose, ElasticDistortion, RandomCrop, RandomFlipX,
                                       RandomJitterMatrix, RandomRotateZ)
from twist_lib.losses import phi_loss, split_phi_loss
from twist_lib.data.pseudo_files import pseudo_label_path, write_pseudo_labels

IG = -100


@pytest.fixture(scope="module")
def pseudo(data_root, tmp_path_factory):
    """Random pseudo labels for every unlabelled scene, deliberately unlike the ground truth:
    ``{name: labels}`` and the folder they are written to. ``masked`` = the offsets where
    ``offset_valid``, zero elsewhere."""
    folder = tmp_path_factory.mktemp("pseudo")
    names = SceneDataset(data_root, "unlabelled", label_ratio="50").names
    rng = np.random.default_rng(11)
    written = {}
    for name in names:
        n = len(load_scene(scene_path(data_root, name))["xyz"])
        valid = rng.random(n) < 0.6
        labels = {"semantic": np.where(rng.random(n) < 0.8, rng.integers(0, 10, n), IG),
                  # garbage where offset_valid is False: the dataset must zero it
                  "offset": rng.normal(0, 0.3, (n, 3)).astype(np.float32),
                  "offset_valid": valid,
                  "instance": np.where(valid, rng.integers(0, 7, n), IG)}
        write_pseudo_labels(pseudo_label_path(folder, name), labels)
        written[name] = dict(labels, masked=np.where(valid[:, None], labels["offset"], 0))
    return folder, written


def stored(data_root, name):
    return load_scene(scene_path(data_root, name))


# --------------------------------------------------------------------------- pseudo-labelled items
def test_items_carry_the_pseudo_labels_never_the_ground_truth(data_root, pseudo):
    folder, written = pseudo
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder)
    assert len(ds) == len(written) == 4
    for i, name in enumerate(ds.names):
        item, lab, gt = ds[i], written[name], stored(data_root, name)
        np.testing.assert_array_equal(item["xyz"], gt["xyz"])
        np.testing.assert_array_equal(item["semantic"], lab["semantic"])
        np.testing.assert_array_equal(item["instance"], lab["instance"])
        np.testing.assert_array_equal(item["offset_valid"], lab["offset_valid"])
        np.testing.assert_allclose(item["offset"], lab["masked"], atol=1e-6)
        assert not item["offset"][~lab["offset_valid"]].any()
        assert lab["offset"][~lab["offset_valid"]].any()      # the file had garbage there
        assert item["labelled"] is False
        # the stored ground truth is different and never shows through
        assert (item["semantic"] != gt["semantic"]).mean() > 0.5
        assert (item["instance"] != gt["instance"]).mean() > 0.3
    # without pseudo labels the split carries no label at all
    bare = SceneDataset(data_root, "unlabelled", label_ratio="50")[0]
    assert (bare["semantic"] == IG).all() and (bare["instance"] == IG).all()
    assert not bare["offset_valid"].any() and not bare["offset"].any()


def test_pseudo_labels_belong_to_the_unlabelled_split(data_root, pseudo):
    with pytest.raises(ValueError, match="unlabelled"):
        SceneDataset(data_root, "labelled", label_ratio="50", pseudo_dir=pseudo[0])


def _rotation_z(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def test_rotation_turns_the_pseudo_offsets_with_the_points(data_root, pseudo):
    """RandomRotateZ draws theta = u * 2 pi from the item's generator; row vectors turn as
    ``x @ R``, so the offset of the rotated scene is the stored pseudo offset times R."""
    folder, written = pseudo
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder,
                      transforms=RandomRotateZ(), seed=5)
    ds.set_epoch(3)
    for i in (0, 2):
        name = ds.names[i]
        theta = np.random.default_rng([5, 3, i]).random() * 2 * math.pi
        r = _rotation_z(theta)
        item, lab = ds[i], written[name]
        p = stored(data_root, name)["xyz"].astype(np.float64)
        np.testing.assert_allclose(item["xyz"], p @ r, atol=1e-5)
        want = np.where(lab["offset_valid"][:, None], lab["offset"].astype(np.float64) @ r, 0)
        np.testing.assert_allclose(item["offset"], want, atol=2e-5)
        assert abs(theta) > 0.1   # a real rotation, so an unrotated offset would fail
        assert np.abs(item["offset"] - lab["masked"]).max() > 0.05


def test_flip_jitter_rotation_move_the_centres_like_points(data_root, pseudo):
    """Transformed (p + o) minus transformed p, with p + o transformed *as points* by the same
    draws (a linear transform's draws do not depend on the coordinates)."""
    folder, written = pseudo
    t = Compose([RandomJitterMatrix(0.1), RandomFlipX(1.0), RandomRotateZ()])
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder, transforms=t,
                      seed=2)
    i = 1
    name = ds.names[i]
    lab = written[name]
    p = stored(data_root, name)["xyz"]
    moved_p = t({"xyz": p}, ds.generator(i))["xyz"].astype(np.float64)
    moved_c = t({"xyz": (p + lab["offset"]).astype(np.float32)}, ds.generator(i))["xyz"]
    want = np.where(lab["offset_valid"][:, None], moved_c - moved_p, 0)
    item = ds[i]
    np.testing.assert_allclose(item["xyz"], moved_p, atol=1e-5)
    np.testing.assert_allclose(item["offset"], want, atol=3e-5)
    # a flipped x: the offset's x component changed sign up to the small jitter/rotation mix
    assert np.abs(item["offset"] - lab["masked"]).max() > 0.05


def test_elastic_distortion_moves_the_centres_through_the_same_field(data_root, pseudo):
    folder, written = pseudo
    elastic = ElasticDistortion(0.5, 0.4)   # coarse and strong: displacements of centimetres
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder,
                      transforms=elastic, seed=4)
    i = 3
    name = ds.names[i]
    lab = written[name]
    p = stored(data_root, name)["xyz"].astype(np.float64)
    c = (stored(data_root, name)["xyz"] + lab["offset"]).astype(np.float32).astype(np.float64)
    field = elastic.field(p, ds.generator(i))      # the item's field: same generator state
    want_p = p + field(p) * 0.4
    want = np.where(lab["offset_valid"][:, None], (c + field(c) * 0.4) - want_p, 0)
    item = ds[i]
    np.testing.assert_allclose(item["xyz"], want_p, atol=1e-5)
    np.testing.assert_allclose(item["offset"], want, atol=3e-5)
    # the field differs between a point and its centre, so the offsets really changed
    valid = lab["offset_valid"]
    assert np.abs(item["offset"][valid] - lab["offset"][valid]).max() > 1e-3


def test_crop_keeps_pseudo_labels_aligned_with_their_points(data_root, pseudo):
    folder, written = pseudo
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder,
                      transforms=RandomCrop(max_points=3000, initial_size=2.0, step=0.2), seed=1)
    for i in range(2):
        name = ds.names[i]
        lab, p = written[name], stored(data_root, name)["xyz"]
        item = ds[i]
        assert 0 < len(item["xyz"]) <= 3000 < len(p)
        row_of = {tuple(x): k for k, x in enumerate(p.tolist())}
        assert len(row_of) == len(p)                 # rows identifiable by their coordinates
        rows = np.array([row_of[tuple(x)] for x in item["xyz"].tolist()])
        assert (np.diff(rows) > 0).all()             # a subset, in the original order
        np.testing.assert_array_equal(item["semantic"], lab["semantic"][rows])
        np.testing.assert_array_equal(item["instance"], lab["instance"][rows])
        np.testing.assert_array_equal(item["offset_valid"], lab["offset_valid"][rows])
        np.testing.assert_allclose(item["offset"], lab["masked"][rows], atol=1e-6)


# --------------------------------------------------------------------------- collate
def test_collate_offset_valid_and_labelled_flags(data_root, pseudo):
    folder, written = pseudo
    labelled = SceneDataset(data_root, "labelled", label_ratio="50")
    unl = SceneDataset(data_root, "unlabelled", label_ratio="50", pseudo_dir=folder)
    bare = SceneDataset(data_root, "unlabelled", label_ratio="50")
    items = [labelled[0], unl[1], bare[2], labelled[1]]
    batch = collate(items)
    np.testing.assert_array_equal(batch["labelled"].numpy(), [True, False, False, True])
    po = batch["point_offsets"].numpy()
    valid, inst = batch["offset_valid"].numpy(), batch["instance"].numpy()
    assert batch["offset_valid"].dtype == torch.bool and batch["labelled"].dtype == torch.bool
    for b, item in enumerate(items):
        lo, hi = po[b], po[b + 1]
        if b in (0, 3):   # a labelled scene: offset_valid is instance != -100 (ground truth)
            gt_inst = stored(data_root, labelled.names[0 if b == 0 else 1])["instance"]
            np.testing.assert_array_equal(valid[lo:hi], gt_inst != IG)
            np.testing.assert_array_equal(valid[lo:hi], inst[lo:hi] != IG)
            assert valid[lo:hi].any() and not valid[lo:hi].all()
        elif b == 1:      # the pseudo-labelled scene: its own offset_valid
            np.testing.assert_array_equal(valid[lo:hi], written[unl.names[1]]["offset_valid"])
        else:             # no labels at all
            assert not valid[lo:hi].any()
    # plain scene dicts without the flags: labelled, valid where there is an instance
    raw = [{"xyz": np.random.default_rng(0).random((6, 3)).astype(np.float32),
            "rgb": np.zeros((6, 3), np.float32), "semantic": np.array([2, 2, 0, 3, 3, 0]),
            "instance": np.array([4, 4, IG, 9, 9, IG]), "name": "raw"}]
    batch = collate(raw)
    np.testing.assert_array_equal(batch["labelled"].numpy(), [True])
    np.testing.assert_array_equal(batch["offset_valid"].numpy(), [1, 1, 0, 1, 1, 0])


# --------------------------------------------------------------------------- eqs. (1), (3), (4)
def _ref_eq1(logits, offset_pred, semantic, offset, valid):
    """Eq. (1) in NumPy: CE over labelled points + mean L1 + mean (-cos) over valid points."""
    logits, offset_pred, offset = (np.asarray(a, np.float64) for a in (logits, offset_pred, offset))
    keep = semantic != IG
    lse = np.log(np.exp(logits).sum(1))
    ce = (lse - logits[np.arange(len(logits)), np.where(keep, semantic, 0)])[keep].mean() \
        if keep.any() else 0.0
    if valid.any():
        d = offset_pred[valid] - offset[valid]
        l1 = np.abs(d).sum(1).mean()
        a, b = offset[valid], offset_pred[valid]
        cos = (a * b).sum(1) / ((np.linalg.norm(a, axis=1) + 1e-8) * (np.linalg.norm(b, axis=1) + 1e-8))
        dirl = -cos.mean()
    else:
        l1 = dirl = 0.0
    return ce + l1 + dirl, ce, l1, dirl


def _hand_batch(labelled):
    g = torch.Generator().manual_seed(0)
    sizes = [4, 3, 5]
    n = sum(sizes)
    batch = {"batch_index": torch.repeat_interleave(torch.arange(3), torch.tensor(sizes)),
             "labelled": torch.tensor(labelled),
             "semantic": torch.tensor([1, 0, IG, 2, 3, 3, IG, 0, 1, 1, IG, 2]),
             "offset": torch.randn(n, 3, generator=g),
             "offset_valid": torch.tensor([1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)}
    out = {"semantic_logits": torch.randn(n, 4, generator=g),
           "offset": torch.randn(n, 3, generator=g)}
    return batch, out


def test_split_loss_is_eq1_on_each_part():
    batch, out = _hand_batch([True, False, True])
    got = split_phi_loss(out, batch)
    point_lab = batch["labelled"][batch["batch_index"]].numpy()
    total = 0.0
    for suffix, rows in (("l", point_lab), ("u", ~point_lab)):
        idx = np.flatnonzero(rows)
        want = _ref_eq1(out["semantic_logits"].numpy()[idx], out["offset"].numpy()[idx],
                        batch["semantic"].numpy()[idx], batch["offset"].numpy()[idx],
                        batch["offset_valid"].numpy()[idx])
        for k, w in zip(("loss", "semantic", "offset_l1", "offset_dir"), want):
            assert float(got[f"{k}_{suffix}"]) == pytest.approx(w, rel=1e-5, abs=1e-6), (k, suffix)
        # and phi_loss on that part alone gives the same terms
        sub = {"semantic_logits": out["semantic_logits"][idx], "offset": out["offset"][idx]}
        alone = phi_loss(sub, batch["semantic"][idx], batch["offset"][idx],
                         offset_valid=batch["offset_valid"][idx])
        assert float(alone["loss"]) == pytest.approx(float(got[f"loss_{suffix}"]), rel=1e-6)
        total += want[0]
    assert float(got["loss"]) == pytest.approx(total, rel=1e-5)
    # a batch-wide mean would weight the parts by their point counts: not what eqs. (3)-(4) say
    everything = _ref_eq1(out["semantic_logits"].numpy(), out["offset"].numpy(),
                          batch["semantic"].numpy(), batch["offset"].numpy(),
                          batch["offset_valid"].numpy())[0]
    assert abs(float(got["loss"]) - everything) > 1e-3
    # the unlabelled scene's labels never enter L^l, and vice versa
    batch2 = dict(batch, semantic=batch["semantic"].clone(), offset=batch["offset"].clone())
    batch2["semantic"][4:7] = torch.tensor([0, 1, 2])
    batch2["offset"][4:7] += 1.0
    got2 = split_phi_loss(out, batch2)
    assert float(got2["loss_l"]) == pytest.approx(float(got["loss_l"]), rel=1e-7)
    assert float(got2["loss_u"]) != pytest.approx(float(got["loss_u"]), rel=1e-3)


def test_split_loss_of_an_all_labelled_batch_is_eq1():
    batch, out = _hand_batch([True, True, True])
    got = split_phi_loss(out, batch)
    want = _ref_eq1(out["semantic_logits"].numpy(), out["offset"].numpy(),
                    batch["semantic"].numpy(), batch["offset"].numpy(),
                    batch["offset_valid"].numpy())
    assert float(got["loss"]) == pytest.approx(want[0], rel=1e-5)
    assert not any(k.endswith("_u") for k in got)


def test_split_loss_gradients_reach_only_supervised_points():
    batch, out = _hand_batch([False, True, False])
    out = {k: v.clone().requires_grad_(True) for k, v in out.items()}
    split_phi_loss(out, batch)["loss"].backward()
    sem_rows = (batch["semantic"] != IG).numpy()
    np.testing.assert_array_equal(out["semantic_logits"].grad.abs().sum(1).numpy() > 0, sem_rows)
    np.testing.assert_array_equal(out["offset"].grad.abs().sum(1).numpy() > 0,
                                  batch["offset_valid"].numpy())


# --------------------------------------------------------------------------- label noise (Fig. 4b)
INSTANCE_CLASSES = [2, 3, 4, 5, 6, 7, 8, 9]


def _many_instances(n_inst=2000, seed=0, name="many"):
    rng = np.random.default_rng(seed)
    inst = np.repeat(np.arange(n_inst), 3)
    cls = rng.choice(INSTANCE_CLASSES, n_inst)
    n_bg = 50
    return {"xyz": rng.random((3 * n_inst + n_bg, 3)).astype(np.float32),
            "rgb": rng.random((3 * n_inst + n_bg, 3)).astype(np.float32),
            "semantic": np.r_[cls[inst], rng.integers(0, 2, n_bg)].astype(np.int64),
            "instance": np.r_[inst, np.full(n_bg, IG)].astype(np.int64), "name": name}


def test_label_noise_corrupts_about_the_fraction_with_another_class():
    scene = _many_instances()
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in scene.items()}
    out = corrupt_instance_classes(scene, 0.5, INSTANCE_CLASSES, seed=7)
    for k in ("xyz", "rgb", "instance"):                 # only the classes change
        np.testing.assert_array_equal(out[k], before[k])
    np.testing.assert_array_equal(scene["semantic"], before["semantic"])   # input untouched
    bg = scene["instance"] == IG
    np.testing.assert_array_equal(out["semantic"][bg], before["semantic"][bg])
    changed, moves = 0, np.zeros((10, 10), int)
    for i in range(2000):
        pts = np.flatnonzero(scene["instance"] == i)
        new = np.unique(out["semantic"][pts])
        assert len(new) == 1                              # one class over all its points
        old = int(before["semantic"][pts[0]])
        if new[0] != old:
            changed += 1
            assert new[0] in INSTANCE_CLASSES
            moves[old, new[0]] += 1
    sd = math.sqrt(2000 * 0.25)
    assert abs(changed - 1000) < 5 * sd
    # the wrong class is uniform over the 7 other instance classes
    per_target = moves.sum(0)[INSTANCE_CLASSES]
    assert (abs(per_target - changed / 8) < 0.35 * changed / 8).all()
    for c in INSTANCE_CLASSES:
        others = [moves[c, d] for d in INSTANCE_CLASSES if d != c]
        assert moves[c, c] == 0 and min(others) > 0


def test_label_noise_leaves_unlabelled_points_of_an_instance_unlabelled():
    scene = _many_instances(200)
    scene["semantic"][::7] = IG                       # some instance points carry no class
    out = corrupt_instance_classes(scene, 1.0, INSTANCE_CLASSES, seed=3)["semantic"]
    np.testing.assert_array_equal(out == IG, scene["semantic"] == IG)
    for i in range(200):
        pts = (scene["instance"] == i) & (scene["semantic"] != IG)
        old = np.bincount(scene["semantic"][pts]).argmax()
        assert len(np.unique(out[pts])) == 1 and out[pts][0] != old


def test_label_noise_is_seeded_by_seed_and_name_and_zero_is_a_no_op():
    scene = _many_instances(300)
    a = corrupt_instance_classes(scene, 0.3, INSTANCE_CLASSES, seed=1)["semantic"]
    b = corrupt_instance_classes(dict(scene), 0.3, INSTANCE_CLASSES, seed=1)["semantic"]
    np.testing.assert_array_equal(a, b)
    c = corrupt_instance_classes(scene, 0.3, INSTANCE_CLASSES, seed=2)["semantic"]
    d = corrupt_instance_classes({**scene, "name": "other"}, 0.3, INSTANCE_CLASSES, seed=1)["semantic"]
    assert (a != c).any() and (a != d).any()
    zero = corrupt_instance_classes(scene, 0.0, INSTANCE_CLASSES, seed=1)
    np.testing.assert_array_equal(zero["semantic"], scene["semantic"])
    every = corrupt_instance_classes(scene, 1.0, INSTANCE_CLASSES, seed=1)["semantic"]
    fg = scene["instance"] != IG
    assert (every[fg] != scene["semantic"][fg]).all()


def test_labelled_split_applies_label_noise_and_the_val_split_never_does(data_root):
    clean = SceneDataset(data_root, "labelled", label_ratio="50", seed=3)
    noisy = SceneDataset(data_root, "labelled", label_ratio="50", seed=3, label_noise=0.5)
    changed = total = 0
    for i in range(len(clean)):
        a, b = clean[i], noisy[i]
        np.testing.assert_array_equal(a["xyz"], b["xyz"])
        np.testing.assert_array_equal(a["instance"], b["instance"])
        np.testing.assert_array_equal(a["offset"], b["offset"])
        bg = a["instance"] == IG
        np.testing.assert_array_equal(a["semantic"][bg], b["semantic"][bg])
        for k in np.unique(a["instance"][~bg]):
            pts = a["instance"] == k
            new = np.unique(b["semantic"][pts])
            assert len(new) == 1 and new[0] in INSTANCE_CLASSES
            total += 1
            changed += int(new[0] != np.bincount(a["semantic"][pts]).argmax())
        noisy.set_epoch(5)                                 # the same corruption every epoch
        np.testing.assert_array_equal(noisy[i]["semantic"], b["semantic"])
        noisy.set_epoch(0)
    assert total >= 15 and 0 < changed < total
    assert abs(changed - 0.5 * total) < 4 * math.sqrt(0.25 * total)
    # the benchmark's ground truth is never corrupted
    with pytest.raises(ValueError, match="label_noise"):
        SceneDataset(data_root, "val", label_noise=0.5)
    val = SceneDataset(data_root, "val")
    for i in range(len(val)):
        np.testing.assert_array_equal(val[i]["semantic"], stored(data_root, val.names[i])["semantic"])
