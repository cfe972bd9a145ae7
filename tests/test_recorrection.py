"""Module B (twist_lib.recorrection) against brute-force loops and hand-computed values."""
import collections
import math

import numpy as np
import pytest
import torch

from twist_lib import object_samples, sparse
from twist_lib.object_samples import (centre_samples, mutate_proposal, mutate_samples,
                                      proposal_targets, sample_targets, transform_samples)
from twist_lib.recorrection import Psi, psi_loss, voxelize_samples

HAVE_ME = "minkowski" in sparse.available_backends()
HAVE_SPCONV = "spconv" in sparse.available_backends()


# ----------------------------------------------------------------------------- targets

def reference_targets(members, instance, semantic):
    """Double loop over samples and instances (ascending ids, strict > keeps the smallest)."""
    inst_ids = sorted({i for i in instance if i != -100})
    out_iou, out_cls = [], []
    for mem in members:
        s = set(mem)
        best, best_id = 0.0, None
        for g in inst_ids:
            gset = {k for k, i in enumerate(instance) if i == g}
            inter = len(s & gset)
            iou = inter / (len(s) + len(gset) - inter)
            if iou > best:
                best, best_id = iou, g
        if best_id is None:
            out_iou.append(0.0)
            out_cls.append(-100)
            continue
        votes = collections.Counter(semantic[k] for k, i in enumerate(instance)
                                    if i == best_id and semantic[k] != -100)
        top = max(votes.values()) if votes else 0
        out_iou.append(best)
        out_cls.append(min(c for c, v in votes.items() if v == top) if votes else -100)
    return np.array(out_iou), np.array(out_cls)


def random_labels(seed, n=80):
    gen = np.random.default_rng(seed)
    instance = gen.choice([-100, 3, 17, 42, 1000, 7], size=n)
    semantic = gen.integers(0, 4, size=n)
    semantic[gen.random(n) < 0.2] = -100
    ids = gen.integers(-1, 6, size=n)
    # proposal 6 overlaps no instance: its points have instance -100
    nothing = np.nonzero(instance == -100)[0][:3]
    ids[nothing] = 6
    ids[(ids == 6) & (instance != -100)] = -1
    return ids, instance, semantic


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposal_targets_match_brute_force(kind, seed):
    ids, instance, semantic = random_labels(seed)
    p = int(ids.max()) + 1
    members = [np.nonzero(ids == j)[0].tolist() for j in range(p)]
    want_iou, want_cls = reference_targets(members, instance.tolist(), semantic.tolist())
    assert want_cls[6] == -100 and want_iou[6] == 0
    args = (ids, instance, semantic) if kind == "numpy" else tuple(map(torch.as_tensor,
                                                                       (ids, instance, semantic)))
    iou, cls = proposal_targets(*args)
    assert isinstance(iou, np.ndarray if kind == "numpy" else torch.Tensor)
    assert isinstance(cls, np.ndarray if kind == "numpy" else torch.Tensor)
    iou, cls = np.asarray(iou), np.asarray(cls)
    assert iou.dtype == np.float32 and cls.dtype == np.int64
    np.testing.assert_allclose(iou, want_iou, rtol=1e-6)
    np.testing.assert_array_equal(cls, want_cls)
    # num_proposals adds empty proposals at the end
    iou9, cls9 = proposal_targets(ids, instance, semantic, num_proposals=p + 2)
    np.testing.assert_array_equal(np.asarray(cls9)[p:], [-100, -100])
    np.testing.assert_allclose(np.asarray(iou9)[:p], want_iou, rtol=1e-6)


def test_sample_targets_overlapping_samples_match_brute_force():
    gen = np.random.default_rng(5)
    _, instance, semantic = random_labels(5, n=60)
    p = 9
    pairs = sorted({(int(gen.integers(60)), int(gen.integers(p))) for _ in range(200)})
    point_idx = torch.tensor([a for a, _ in pairs])
    sample_idx = torch.tensor([b for _, b in pairs])
    members = [[a for a, b in pairs if b == j] for j in range(p)]
    want_iou, want_cls = reference_targets(members, instance.tolist(), semantic.tolist())
    iou, cls = sample_targets(point_idx, sample_idx, p, torch.as_tensor(instance),
                              torch.as_tensor(semantic))
    np.testing.assert_allclose(iou.numpy(), want_iou, rtol=1e-6)
    np.testing.assert_array_equal(cls.numpy(), want_cls)


def test_targets_without_instances_or_samples():
    iou, cls = proposal_targets(np.array([0, 0, 1]), np.full(3, -100), np.zeros(3, int))
    np.testing.assert_array_equal(iou, [0, 0])
    np.testing.assert_array_equal(cls, [-100, -100])
    iou, cls = proposal_targets(torch.full((4,), -1), torch.arange(4), torch.zeros(4, dtype=int))
    assert iou.shape == (0,) and cls.shape == (0,)


# ----------------------------------------------------------------------------- mutation

def brute_box(xyz, mask, ratio):
    """Per-point test against the box of extent ratio * (max - min) about the box centre."""
    mem = [p for p, m in zip(xyz.tolist(), mask.tolist()) if m]
    r = np.broadcast_to(np.asarray(ratio, dtype=float), (3,))
    lo = [min(p[a] for p in mem) for a in range(3)]
    hi = [max(p[a] for p in mem) for a in range(3)]
    c = [(lo[a] + hi[a]) / 2 for a in range(3)]
    h = [r[a] * (hi[a] - lo[a]) / 2 for a in range(3)]
    return np.array([all(c[a] - h[a] <= p[a] <= c[a] + h[a] for a in range(3))
                     for p in xyz.tolist()])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("ratio", [0.7, 1.3, (0.8, 1.1, 1.25)])
def test_mutate_proposal_matches_brute_force(kind, ratio):
    gen = np.random.default_rng(3)
    xyz = gen.uniform(0, 2, size=(300, 3))
    mask = (np.abs(xyz - 1).max(axis=1) < 0.4) & (gen.random(300) < 0.7)
    want = brute_box(xyz, mask, ratio)
    got = mutate_proposal(*((xyz, mask) if kind == "numpy" else
                            (torch.as_tensor(xyz), torch.as_tensor(mask))), ratio)
    assert isinstance(got, np.ndarray if kind == "numpy" else torch.Tensor)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_mutate_proposal_ratio_one_is_the_bounding_box():
    gen = np.random.default_rng(4)
    xyz = gen.uniform(0, 2, size=(300, 3))
    mask = (np.abs(xyz - 1).max(axis=1) < 0.5) & (gen.random(300) < 0.5)
    got = mutate_proposal(xyz, mask, 1.0)
    lo, hi = xyz[mask].min(0), xyz[mask].max(0)
    in_box = np.array([all(lo[a] <= p[a] <= hi[a] for a in range(3)) for p in xyz])
    np.testing.assert_array_equal(got, in_box)
    assert got[mask].all() and got.sum() > mask.sum()


def two_adjacent_boxes(n=400, gap=0.05):
    gen = np.random.default_rng(6)
    a = gen.uniform(0, 1, size=(n, 3))
    b = gen.uniform(0, 1, size=(n, 3)) + [1 + gap, 0, 0]
    xyz = np.concatenate([a, b])
    instance = np.repeat([0, 1], n)
    return xyz, instance, np.repeat([2, 5], n)


def test_mutation_crops_and_expands_adjacent_objects():
    xyz, instance, semantic = two_adjacent_boxes()
    object_a = instance == 0
    shrunk = mutate_proposal(xyz, object_a, 0.7)
    assert shrunk.sum() < object_a.sum() and not (shrunk & ~object_a).any()
    grown = mutate_proposal(xyz, object_a, 1.3)
    assert (grown & (instance == 1)).any() and grown[object_a].all()
    for mask in (shrunk, grown):
        iou, cls = proposal_targets(np.where(mask, 0, -1), instance, semantic)
        assert iou[0] < 0.95 and cls[0] == 2
    iou, _ = proposal_targets(np.where(object_a, 0, -1), instance, semantic)
    assert iou[0] == 1.0


def batch_of_two_scenes():
    """Two scenes on top of each other in space (so crossing scenes would be visible)."""
    xyz, instance, _ = two_adjacent_boxes(n=120)
    xyz = torch.as_tensor(np.concatenate([xyz, xyz + 0.01]))
    scene = torch.repeat_interleave(torch.tensor([0, 1]), len(xyz) // 2)
    gen = np.random.default_rng(8)
    pairs = set()
    for j in range(7):
        s = j % 2
        base = np.nonzero(np.concatenate([instance, instance]) == j % 3 % 2)[0]
        base = base[(base >= s * 240) & (base < (s + 1) * 240)]
        pairs |= {(int(q), j) for q in base[gen.random(len(base)) < 0.6]}
    # sample 7: two opposite corners of scene 0 -> a strong crop leaves its box empty
    corner = [int(xyz[:240].sum(1).argmin()), int(xyz[:240].sum(1).argmax())]
    pairs |= {(c, 7) for c in corner}
    pairs = sorted(pairs)
    return (xyz, scene, torch.tensor([a for a, _ in pairs]), torch.tensor([b for _, b in pairs]))


def loop_of_mutate_proposal(xyz, scene, point_idx, sample_idx, p, ratios):
    out = []
    for j in range(p):
        mem = point_idx[sample_idx == j]
        s = int(scene[mem[0]])
        pts = torch.nonzero(scene == s).squeeze(1)
        mask = torch.zeros(len(xyz), dtype=torch.bool)
        mask[mem] = True
        new = pts[mutate_proposal(xyz[pts], mask[pts], ratios[j])]
        out += [(int(q), j) for q in (new if len(new) else mem)]
    return sorted(out, key=lambda t: (t[1], t[0]))


@pytest.mark.parametrize("per_axis", [False, True])
def test_mutate_samples_equals_loop_and_stays_in_scene(per_axis, monkeypatch):
    xyz, scene, point_idx, sample_idx = batch_of_two_scenes()
    p = 8
    gen = torch.Generator().manual_seed(1)
    ratios = 0.7 + 0.6 * torch.rand((p, 3) if per_axis else (p,), generator=gen,
                                    dtype=torch.float64)
    ratios[0] = 1.0                                 # points on the box faces stay in
    ratios[7] = 0.05
    want = loop_of_mutate_proposal(xyz, scene, point_idx, sample_idx, p, ratios)
    for chunk in (object_samples.MUTATE_CHUNK, 100):
        monkeypatch.setattr(object_samples, "MUTATE_CHUNK", chunk)
        new_p, new_s = mutate_samples(xyz, scene, point_idx, sample_idx, p, ratios)
        assert list(zip(new_p.tolist(), new_s.tolist())) == want
    sample_scene = torch.tensor([int(scene[point_idx[sample_idx == j][0]]) for j in range(p)])
    assert torch.equal(scene[new_p], sample_scene[new_s])
    assert sorted(new_p[new_s == 7].tolist()) == sorted(point_idx[sample_idx == 7].tolist())
    assert (new_s < 7).sum() > 0 and set(new_s.tolist()) == set(range(p))
    none = mutate_samples(xyz, scene, point_idx[:0], sample_idx[:0], 0, torch.zeros(0))
    assert none[0].shape == (0,) and none[1].shape == (0,)


# ----------------------------------------------------------------------------- transformation

def test_transform_rotation_keeps_xy_norm_and_seed_fixes_output():
    gen = torch.Generator().manual_seed(0)
    xyz = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    sample_idx = torch.arange(50) % 4
    out = transform_samples(xyz, sample_idx, 4, torch.Generator().manual_seed(3),
                            scale=(1.0, 1.0), translate=0.0)
    torch.testing.assert_close(out[:, :2].norm(dim=1), xyz[:, :2].norm(dim=1))
    torch.testing.assert_close(out[:, 2], xyz[:, 2])
    assert not torch.allclose(out, xyz)
    again = transform_samples(xyz, sample_idx, 4, torch.Generator().manual_seed(3),
                              scale=(1.0, 1.0), translate=0.0)
    assert torch.equal(out, again)
    other = transform_samples(xyz, sample_idx, 4, torch.Generator().manual_seed(4))
    assert not torch.allclose(other, transform_samples(xyz, sample_idx, 4,
                                                       torch.Generator().manual_seed(3)))


def test_transform_scaling_and_translation_ranges():
    xyz = torch.rand(60, 3, dtype=torch.float64) + 0.5
    sample_idx = torch.arange(60) % 3
    factor = transform_samples(xyz, sample_idx, 3, torch.Generator().manual_seed(1),
                               rotate=False, translate=0.0) / xyz
    for j in range(3):
        f = factor[sample_idx == j]
        assert torch.allclose(f, f[0].expand_as(f)) and ((f >= 0.8) & (f <= 1.2)).all()
    shift = transform_samples(xyz, sample_idx, 3, torch.Generator().manual_seed(1),
                              rotate=False, scale=None, translate=0.1) - xyz
    for j in range(3):
        t = shift[sample_idx == j]
        assert torch.allclose(t, t[0].expand_as(t)) and (t.abs() <= 0.1).all()


def test_centre_samples_matches_loop():
    xyz = torch.rand(40, 3, dtype=torch.float64)
    sample_idx = torch.arange(40) % 5
    out = centre_samples(xyz, sample_idx, 5)
    for j in range(5):
        rows = [r for r in range(40) if sample_idx[r] == j]
        mean = [sum(float(xyz[r, a]) for r in rows) / len(rows) for a in range(3)]
        for r in rows:
            assert out[r].tolist() == pytest.approx([float(xyz[r, a]) - mean[a] for a in range(3)])


# ----------------------------------------------------------------------------- voxelisation

def reference_voxels(xyz, feats, sample_idx, grid, min_voxel):
    """Per-sample dict (sample, x, y, z) -> list of the feature rows of its points."""
    cells = collections.defaultdict(list)
    for j in sorted(set(sample_idx)):
        rows = [r for r in range(len(xyz)) if sample_idx[r] == j]
        lo = [min(xyz[r][a] for r in rows) for a in range(3)]
        extent = max(max(xyz[r][a] for r in rows) - lo[a] for a in range(3))
        edge = max(extent / grid, min_voxel)
        for r in rows:
            c = tuple(min(max(math.floor((xyz[r][a] - lo[a]) / edge), 0), grid - 1)
                      for a in range(3))
            cells[(j,) + c].append(feats[r])
    return cells


def voxel_batch():
    gen = np.random.default_rng(9)
    sizes = [10.0, 0.05, 0.6, 1.3]            # a huge sample, a tiny one, two ordinary ones
    xyz, sample_idx = [], []
    for j, size in enumerate(sizes):
        n = 150
        xyz.append(gen.uniform(-size / 2, size / 2, size=(n, 3)) * [1, 0.7, 0.4] + j)
        sample_idx += [j] * n
    return (torch.as_tensor(np.concatenate(xyz)), torch.as_tensor(gen.normal(size=(600, 2))),
            torch.tensor(sample_idx))


def test_voxelize_samples_matches_brute_force():
    xyz, feats, sample_idx = voxel_batch()
    coords, vfeats, p2v = voxelize_samples(xyz, feats, sample_idx, 4, grid=14, min_voxel=0.02)
    assert coords.dtype == torch.int32 and coords.shape[1] == 4
    cells = reference_voxels(xyz.tolist(), feats.tolist(), sample_idx.tolist(), 14, 0.02)
    got = {tuple(c): f for c, f in zip(coords.tolist(), vfeats.tolist())}
    assert set(got) == set(cells)
    for key, rows in cells.items():
        mean = [sum(r[k] for r in rows) / len(rows) for k in range(2)]
        assert got[key] == pytest.approx(mean, abs=1e-12)
    for r in range(len(xyz)):
        assert feats[r].tolist() in cells[tuple(coords[p2v[r]].tolist())]
    # the 10 m sample spans exactly the grid along its long axis
    huge = coords[coords[:, 0] == 0]
    assert huge[:, 1].min() == 0 and huge[:, 1].max() == 13 and huge[:, 1:].max() <= 13
    # the 5 cm sample: edge = max(0.05 / 14, 0.02) = 2 cm -> x cells 0, 1, 2
    tiny = coords[coords[:, 0] == 1]
    assert set(tiny[:, 1].tolist()) == {0, 1, 2}


# ----------------------------------------------------------------------------- Psi

def random_samples(seed, p=5, n=40, channels=4, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    sample_idx = torch.arange(p).repeat_interleave(n)
    xyz = (torch.rand(p * n, 3, generator=gen, dtype=dtype) - 0.5) * 0.6
    feats = torch.randn(p * n, channels, generator=gen, dtype=dtype)
    return xyz, feats, sample_idx


def randomise_batchnorm(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def test_psi_shapes_signature_and_empty_input():
    torch.manual_seed(0)
    model = Psi(3 + 4, num_classes=6)
    xyz, feats, sample_idx = random_samples(0)
    out = model(xyz, feats, sample_idx, 5)
    assert out["class_logits"].shape == (5, 6)
    assert out["score_logit"].shape == (5,) and out["score"].shape == (5,)
    torch.testing.assert_close(out["score"], torch.sigmoid(out["score_logit"]))
    assert model.signature() == {"in_channels": 7, "num_classes": 6, "width": 16, "levels": 2,
                                 "blocks": 1, "grid": 14, "min_voxel": 0.02}
    empty = model(xyz[:0], feats[:0], sample_idx[:0], 0)
    assert empty["class_logits"].shape == (0, 6) and empty["score"].shape == (0,)
    loss = psi_loss(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long))["loss"]
    loss.backward()
    assert float(loss.detach()) == 0.0
    # training batches with one voxel, or two voxels in one cell of the coarse level (BatchNorm
    # cannot take batch statistics of a single value)
    for pts in ([[0.0, 0, 0]] * 3, [[0.0, 0, 0], [0.021, 0, 0]]):
        one = model(torch.tensor(pts), torch.randn(len(pts), 4),
                    torch.zeros(len(pts), dtype=torch.long), 1)
        assert torch.isfinite(one["score"]).all()
    assert model.training


def test_psi_eval_outputs_do_not_depend_on_the_other_samples():
    torch.manual_seed(1)
    model = Psi(3 + 4, num_classes=3).double()
    randomise_batchnorm(model)
    model.eval()
    xyz, feats, sample_idx = random_samples(2, p=4, dtype=torch.float64)
    xyz[sample_idx == 3] = 0.0                     # one sample is a single voxel
    with torch.no_grad():
        together = model(xyz, feats, sample_idx, 4)
        for j in range(4):
            rows = sample_idx == j
            alone = model(xyz[rows], feats[rows], torch.zeros(int(rows.sum()), dtype=torch.long), 1)
            for key in together:
                torch.testing.assert_close(alone[key][0], together[key][j], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", [
    pytest.param("minkowski", marks=[pytest.mark.minkowski, pytest.mark.skipif(
        not HAVE_ME, reason="MinkowskiEngine is not installed")]),
    pytest.param("spconv", marks=pytest.mark.skipif(not HAVE_SPCONV,
                                                    reason="spconv is not installed"))])
@pytest.mark.parametrize("train", [False, True])
def test_psi_backends_agree(train, backend):
    torch.manual_seed(2)
    ref = Psi(3 + 4, num_classes=3, backend="torch").double()
    randomise_batchnorm(ref)
    me = Psi(3 + 4, num_classes=3, backend=backend).double()
    me.load_state_dict(ref.state_dict())
    ref.train(train)
    me.train(train)
    xyz, feats, sample_idx = random_samples(3, dtype=torch.float64)
    a, b = ref(xyz, feats, sample_idx, 5), me(xyz, feats, sample_idx, 5)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-7, atol=1e-9)


def toy_batch(seed, pairs=12, n=60):
    """Pairs of touching boxes of two classes; samples = pure boxes or a box merged with its
    neighbour. Features: a noisy one-hot of the point's class."""
    gen = torch.Generator().manual_seed(seed)
    xyz, inst, sem = [], [], []
    for k in range(2 * pairs):
        size = 0.2 + 0.3 * torch.rand(3, generator=gen)
        xyz.append(torch.rand(n, 3, generator=gen) * size + torch.tensor([k // 2 * 3 + k % 2 * 0.5,
                                                                          0, 0]))
        inst.append(torch.full((n,), k))
        sem.append(torch.full((n,), int(torch.randint(2, (1,), generator=gen))))
    xyz, inst, sem = torch.cat(xyz), torch.cat(inst), torch.cat(sem)
    feats = torch.nn.functional.one_hot(sem, 2).float() + 0.3 * torch.randn(len(sem), 2,
                                                                             generator=gen)
    merged = torch.arange(pairs) % 2 == 0
    key = torch.where(merged[inst // 2], inst // 2 * 2, inst)    # merged pair: one sample
    ids, sample_idx = torch.unique(key, return_inverse=True)
    point_idx = torch.arange(len(xyz))
    iou, cls = sample_targets(point_idx, sample_idx, len(ids), inst, sem)
    return centre_samples(xyz, sample_idx, len(ids)), feats, sample_idx, len(ids), iou, cls


def test_psi_learns_a_toy_problem():
    torch.manual_seed(0)
    xyz, feats, sample_idx, p, iou, cls = toy_batch(0)
    assert (iou == 1).any() and (iou < 0.7).any()
    model = Psi(3 + 2, num_classes=2, backend="torch")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        loss = psi_loss(model(xyz, feats, sample_idx, p), iou, cls)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    floor = float(torch.nn.functional.binary_cross_entropy(iou, iou))  # entropy of the targets
    assert losses[-1] - floor < 0.3 * (losses[0] - floor), (losses[0], losses[-1], floor)
    model.eval()
    with torch.no_grad():
        out = model(xyz, feats, sample_idx, p)
    assert (out["score"][iou == 1] > 0.75).all() and (out["score"][iou < 0.7] < 0.75).all()
    assert torch.equal(out["class_logits"].argmax(1)[iou > 0.5], cls[iou > 0.5])


# ----------------------------------------------------------------------------- loss

def test_psi_loss_matches_hand_computed_values():
    out = {"score_logit": torch.tensor([0.0, 2.0, -1.0, 0.5], requires_grad=True),
           "class_logits": torch.tensor([[5.0, 0, 0], [1.0, 0.0, -1.0], [0, 0, 9.0], [0, 3.0, 0]],
                                        requires_grad=True)}
    iou = torch.tensor([0.5, 1.0, 0.0, 0.8])       # 0.5 is not > 0.5: only samples 1 and 3
    cls = torch.tensor([2, 0, -100, 1])
    got = psi_loss(out, iou, cls)
    sig = lambda z: 1 / (1 + math.exp(-z))
    bce = [-(t * math.log(sig(z)) + (1 - t) * math.log(1 - sig(z)))
           for z, t in zip([0.0, 2.0, -1.0, 0.5], [0.5, 1.0, 0.0, 0.8])]
    ce1 = math.log(1 + math.exp(-1) + math.exp(-2))               # logits (1, 0, -1), class 0
    ce3 = -3 + math.log(2 + math.exp(3))                           # logits (0, 3, 0), class 1
    assert got["psi_score"].item() == pytest.approx(sum(bce) / 4, rel=1e-6)
    assert got["psi_class"].item() == pytest.approx((ce1 + ce3) / 2, rel=1e-6)
    assert got["loss"].item() == pytest.approx(sum(bce) / 4 + (ce1 + ce3) / 2, rel=1e-6)
    none = psi_loss(out, torch.tensor([0.5, 0.2, 0.0, 0.1]), cls)
    assert none["psi_class"].item() == 0.0
    none["loss"].backward()
    assert out["class_logits"].grad is not None
