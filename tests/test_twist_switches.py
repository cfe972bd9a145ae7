"""Every TWIST ablation switch (paper Sec. 5.3, Tables 4-6, Fig. 4b) changes what it should and
nothing else.

Phi and Psi are replaced by small stub modules whose outputs are chosen by hand (class
probabilities, offsets, backbone features; Psi's class and certainty per proposal), so every
expected pseudo label, sample and target below is computed by hand or by a brute-force loop,
never by the code under test.

Hand-made unlabelled scenes (points on lines 2 cm apart, radius 3 cm, min 3 points; background
classes 0, 1; instance classes 2..9)::

    s0: A  10 pts class 2, p = 0.9         -> proposal 0, score 0.9
        B   8 pts class 4, p = 0.4         -> proposal 1, score 0.4
        W   5 pts class 0 (wall), p = 0.95 -> never clustered
    s1: C   7 pts class 5, p = .7/.35 alt. -> proposal 0, score (4*.7 + 3*.35)/7 = 0.55
        D   2 pts class 6, p = 0.95        -> too small
        E2  6 pts class 2 (p2=.8, p3=.1)   -> proposal 1, score 0.8   } touching: one proposal of
        E3  4 pts class 3 (p3=.6, p2=.3)   -> proposal 2, score 0.6   } class 2, score 0.6 when
                                                                         class-agnostic
"""

import numpy as np
import pytest
import torch
from torch import nn

import twist_lib.psi_training as psi_training
import twist_lib.self_training as self_training
from twist_lib.config import Config
from twist_lib.data.batch import collate
from twist_lib.data.dataset import SceneDataset
from twist_lib.data.io import make_meta, save_scene, scene_path, write_meta
from twist_lib.inference import evaluate_model
from twist_lib.data.pseudo_files import pseudo_label_path, read_pseudo_labels, write_pseudo_labels
from twist_lib.object_samples import Samples
from twist_lib.proposals import propose
from twist_lib.psi_training import augment_and_score, training_samples
from twist_lib.recorrection import build_psi, psi_features
from twist_lib.self_training import RoundTrainer, pseudo_label_split

IG = -100
K = 10
BACKGROUND = [0, 1]
INSTANCE_CLASSES = list(range(2, 10))
META = make_meta("hand", [f"c{k}" for k in range(K)], INSTANCE_CLASSES)


# ============================================================================ hand-made scenes
def _probs(top, p):
    row = np.full(K, (1 - p) / (K - 1))
    row[top] = p
    return row


def _mixed(p2, p3):
    row = np.full(K, (1 - p2 - p3) / (K - 2))
    row[2], row[3] = p2, p3
    return row


# (scene, part, first x, per-point probability rows, code seen by the stub Psi)
PARTS = [
    ("s0", "A", 0.0, [_probs(2, 0.9)] * 10, 1),
    ("s0", "B", 1.0, [_probs(4, 0.4)] * 8, 2),
    ("s0", "W", 2.0, [_probs(0, 0.95)] * 5, 0),
    ("s1", "C", 0.0, [_probs(5, 0.7), _probs(5, 0.35)] * 3 + [_probs(5, 0.7)], 3),
    ("s1", "D", 1.0, [_probs(6, 0.95)] * 2, 0),
    ("s1", "E2", 2.0, [_mixed(0.8, 0.1)] * 6, 4),
    ("s1", "E3", 2.12, [_mixed(0.3, 0.6)] * 4, 5),
]


def hand_scenes():
    """``{name: dict(scene=scene dict, probs, offset, features, part={part: local rows})}``."""
    rng = np.random.default_rng(0)
    out = {}
    for name in ("s0", "s1"):
        xyz, probs, codes, part_rows = [], [], [], {}
        for scene, part, x0, rows, code in PARTS:
            if scene != name:
                continue
            start = len(xyz)
            for k, row in enumerate(rows):
                xyz.append([x0 + 0.02 * k, 0.0, 0.0])
                probs.append(row)
                codes.append(code)
            part_rows[part] = np.arange(start, len(xyz))
        n = len(xyz)
        xyz = np.asarray(xyz, np.float32)
        probs = np.asarray(probs, np.float64)
        offset = rng.uniform(-0.003, 0.003, (n, 3)).astype(np.float32)
        features = np.c_[codes, rng.normal(size=(n, 3))].astype(np.float32)
        rgb = np.c_[0.1 * np.asarray(codes), rng.uniform(-1, 1, (n, 2))].astype(np.float32)
        scene = {"xyz": xyz, "rgb": rgb, "semantic": probs.argmax(1).astype(np.int64),
                 "instance": np.full(n, IG, np.int64), "name": name}
        out[name] = dict(scene=scene, probs=probs, offset=offset, features=features,
                         part=part_rows)
    return out


SCENES = hand_scenes()


class StubPhi(nn.Module):
    """Phi with chosen outputs: log-probabilities as logits, offsets, features = w * chosen."""

    def __init__(self, scenes=SCENES):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.scenes = scenes

    def forward(self, batch):
        parts = [self.scenes[name] for name in batch["names"]]
        logits = torch.from_numpy(np.log(np.concatenate([p["probs"] for p in parts]))).float()
        out = {"semantic_logits": logits,
               "offset": torch.from_numpy(np.concatenate([p["offset"] for p in parts])),
               "features": torch.from_numpy(np.concatenate([p["features"] for p in parts])) * self.w}
        assert len(logits) == len(batch["xyz"])
        return out


class StubPsi(nn.Module):
    """Psi whose class and certainty of a sample are a table lookup of the code in its points'
    first input feature (divided by ``scale``); records every call."""

    def __init__(self, table, scale=1.0):
        super().__init__()
        self.table, self.scale, self.calls = table, scale, []
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, xyz, feats, sample_idx, num_samples):
        self.calls.append((xyz.detach().clone(), feats.detach().clone(), sample_idx.clone(),
                           int(num_samples)))
        code = torch.zeros(num_samples).scatter_reduce(
            0, sample_idx, (feats[:, 0].detach() / self.scale).round(), "amax", include_self=False)
        cls = torch.tensor([self.table[int(c)][0] for c in code], dtype=torch.int64)
        score = torch.tensor([self.table[int(c)][1] for c in code], dtype=torch.float32)
        logit = torch.log(score / (1 - score)) + self.b
        return {"class_logits": nn.functional.one_hot(cls, K).float() * 10 + self.b,
                "score_logit": logit, "score": torch.sigmoid(logit)}


# A -> dropped, B -> kept as class 3, C -> kept as 9, E2 -> dropped, E3 -> kept as 8
PSI_TABLE = {1: (7, 0.2), 2: (3, 0.8), 3: (9, 0.51), 4: (1, 0.3), 5: (8, 0.95)}


def cfg_for(tmp_path, **kw):
    base = dict(data_root=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), label_ratio="50",
                progress=False, cluster_radius=0.03, cluster_min_points=3, pseudo_threshold=0.5,
                pointwise_threshold=0.85, voxel_size=0.02, use_xyz_features=False,
                pseudo_background=0.0, pseudo_offset_spread=0.0)  # the paper's letter
    base.update(kw)
    return Config.for_profile("smoke", **base).validate()


@pytest.fixture(scope="module")
def hand_root(tmp_path_factory):
    """A dataset folder holding the hand scenes as the unlabelled split (plus one labelled)."""
    root = tmp_path_factory.mktemp("hand")
    for name, s in SCENES.items():
        save_scene(scene_path(root, name), s["scene"])
    lab = dict(SCENES["s0"]["scene"], name="l0")
    save_scene(scene_path(root, "l0"), lab)
    write_meta(root, dict(META, splits={"train": ["l0", "s0", "s1"], "val": ["l0"],
                                        "labelled_50": ["l0"]}))
    return root


def expected_labels(name, kept, semantic=None, offset=True):
    """Hand expectation: ``kept`` = [(part names, class, proposal id)] of the kept proposals.
    Offsets by eqs. 7-8 computed here in float64; ``semantic`` overrides the classes."""
    s = SCENES[name]
    n = len(s["scene"]["xyz"])
    p = s["scene"]["xyz"].astype(np.float64)
    o = s["offset"].astype(np.float64)
    lab = {"semantic": np.full(n, IG), "offset": np.zeros((n, 3)),
           "offset_valid": np.zeros(n, bool), "instance": np.full(n, IG)}
    for parts, cls, pid in kept:
        rows = np.concatenate([s["part"][q] for q in parts])
        centre = (p[rows] + o[rows]).mean(0)
        lab["semantic"][rows] = cls
        lab["offset"][rows] = centre - p[rows]
        lab["offset_valid"][rows] = True
        lab["instance"][rows] = pid
    if semantic is not None:
        lab["semantic"] = semantic
    if not offset:
        lab["offset"][:] = 0
        lab["offset_valid"][:] = False
    return lab


def pointwise_semantic(name, threshold=0.85):
    probs = SCENES[name]["probs"]
    return np.where(probs.max(1) > threshold, probs.argmax(1), IG)


def assert_labels(got, want):
    for k in ("semantic", "offset_valid", "instance"):
        np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=k)
    np.testing.assert_allclose(np.asarray(got["offset"]), want["offset"], atol=1e-6)


def label_split(root, tmp_path, cfg, psi=None, tag="p"):
    """pseudo_label_split with the stub Phi; the written files, read back."""
    ds = SceneDataset(root, "unlabelled", label_ratio="50", voxel_size=cfg.voxel_size)
    out = tmp_path / tag
    assert pseudo_label_split(StubPhi(), psi, ds, out, cfg, META, "cpu") == 2
    return {name: read_pseudo_labels(pseudo_label_path(out, name)) for name in ds.names}


# ============================================================================ module B on / off
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_recorrection_off_majority_class_and_mean_probability(hand_root, tmp_path, threshold):
    cfg = cfg_for(tmp_path, recorrection=False, pseudo_threshold=threshold)
    psi = StubPsi(PSI_TABLE)
    got = label_split(hand_root, tmp_path, cfg, psi=psi)
    assert psi.calls == []                       # module B off: Psi is never asked
    scores = {"A": 0.9, "C": 0.55, "E2": 0.8, "E3": 0.6}          # B (0.4) is never kept
    kept0 = [(["A"], 2, 0)] if scores["A"] > threshold else []
    kept1 = [(["C"], 5, 0), (["E2"], 2, 1), (["E3"], 3, 2)]
    kept1 = [k for k in kept1 if scores[k[0][0]] > threshold]
    assert_labels(got["s0"], expected_labels("s0", kept0))
    assert_labels(got["s1"], expected_labels("s1", kept1))


def test_recorrection_off_class_agnostic_majority_over_mixed_points(hand_root, tmp_path):
    """semantic_to_offset off: E2 + E3 form one proposal; its class is the majority (class 2,
    6 of 10 points) for all its points, its score the mean P(class 2) = (6*.8 + 4*.3)/10."""
    cfg = cfg_for(tmp_path, recorrection=False, semantic_to_offset=False)
    got = label_split(hand_root, tmp_path, cfg)
    assert_labels(got["s1"], expected_labels("s1", [(["C"], 5, 0), (["E2", "E3"], 2, 1)]))
    cfg = cfg_for(tmp_path, recorrection=False, semantic_to_offset=False, pseudo_threshold=0.61)
    got = label_split(hand_root, tmp_path, cfg, tag="q")          # 0.6 is not above 0.61
    assert_labels(got["s1"], expected_labels("s1", []))


@pytest.mark.parametrize("psi_input", ["features", "rgb"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_recorrection_on_writes_psi_classes_and_scores(hand_root, tmp_path, psi_input, batch_size):
    cfg = cfg_for(tmp_path, recorrection=True, psi_input=psi_input, pseudo_batch_size=batch_size)
    psi = StubPsi(PSI_TABLE, scale=1.0 if psi_input == "features" else 0.1)
    got = label_split(hand_root, tmp_path, cfg, psi=psi)
    assert_labels(got["s0"], expected_labels("s0", [(["B"], 3, 1)]))
    assert_labels(got["s1"], expected_labels("s1", [(["C"], 9, 0), (["E3"], 8, 2)]))
    assert len(psi.calls) == 2 // batch_size            # one Psi call per pseudo-label batch
    # Psi saw every proposal's points with the configured features, in proposal order
    _, feats, sample_idx, n = psi.calls[-1]
    key = "features" if psi_input == "features" else "rgb"
    names = ["s1"] if batch_size == 1 else ["s0", "s1"]
    parts = {"s0": ("A", "B"), "s1": ("C", "E2", "E3")}
    src = np.concatenate([(SCENES[m]["features"] if key == "features" else SCENES[m]["scene"]["rgb"])
                          [np.concatenate([SCENES[m]["part"][q] for q in parts[m]])] for m in names])
    sizes = [len(SCENES[m]["part"][q]) for m in names for q in parts[m]]
    assert n == len(sizes)
    np.testing.assert_allclose(feats.numpy(), src, atol=1e-6)
    np.testing.assert_array_equal(sample_idx.numpy(), np.repeat(np.arange(n), sizes))


def test_psi_is_run_in_eval_mode_and_restored(hand_root, tmp_path):
    cfg = cfg_for(tmp_path)
    seen = []

    class ModeSpy(StubPsi):
        def forward(self, *a):
            seen.append(self.training)
            return super().forward(*a)

    psi = ModeSpy(PSI_TABLE).train()
    label_split(hand_root, tmp_path, cfg, psi=psi)
    assert seen == [False] and psi.training


# ============================================================================ module C switches
def test_pseudo_switches_reach_the_written_files(hand_root, tmp_path):
    kept0 = [(["A"], 2, 0)]
    kept1 = [(["C"], 5, 0), (["E2"], 2, 1), (["E3"], 3, 2)]
    base = dict(recorrection=False)

    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, offset_to_semantic=False, **base), tag="a")
    for name, kept in (("s0", kept0), ("s1", kept1)):   # semantics point-wise, offsets eqs. 7-8
        assert_labels(got[name], expected_labels(name, kept, semantic=pointwise_semantic(name)))
    # W (wall, 0.95) and D (0.95, in no proposal) get point-wise classes; B / C / E none
    assert (got["s0"]["semantic"][SCENES["s0"]["part"]["W"]] == 0).all()
    assert (got["s1"]["semantic"][SCENES["s1"]["part"]["D"]] == 6).all()

    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_semantic=False, **base), tag="b")
    for name, kept in (("s0", kept0), ("s1", kept1)):
        want = expected_labels(name, kept, semantic=np.full(len(SCENES[name]["probs"]), IG))
        assert_labels(got[name], want)

    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_offset=False, **base), tag="c")
    for name, kept in (("s0", kept0), ("s1", kept1)):
        assert_labels(got[name], expected_labels(name, kept, offset=False))

    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_update="pointwise", **base),
                      tag="d")
    for name in ("s0", "s1"):   # argmax of confident points; Phi's own offsets on instance classes
        s = SCENES[name]
        sem = pointwise_semantic(name)
        valid = (sem >= 2)
        want = {"semantic": sem, "offset_valid": valid, "instance": np.full(len(sem), IG),
                "offset": np.where(valid[:, None], s["offset"], 0)}
        assert_labels(got[name], want)
    assert got["s0"]["offset_valid"].sum() == 10 and got["s1"]["offset_valid"].sum() == 2


def test_pseudo_labelled_split_then_trains_on_exactly_these_files(hand_root, tmp_path):
    cfg = cfg_for(tmp_path, recorrection=True)
    got = label_split(hand_root, tmp_path, cfg, psi=StubPsi(PSI_TABLE))
    ds = SceneDataset(hand_root, "unlabelled", label_ratio="50", pseudo_dir=tmp_path / "p")
    batch = collate([ds[0], ds[1]])
    np.testing.assert_array_equal(batch["semantic"].numpy(),
                                  np.r_[got["s0"]["semantic"], got["s1"]["semantic"]])
    np.testing.assert_array_equal(batch["offset_valid"].numpy(),
                                  np.r_[got["s0"]["offset_valid"], got["s1"]["offset_valid"]])
    np.testing.assert_allclose(batch["offset"].numpy(),
                               np.r_[got["s0"]["offset"], got["s1"]["offset"]], atol=1e-6)
    assert not batch["labelled"].any()


# ============================================================================ module A guidance
def test_semantic_to_offset_off_joins_touching_classes(tmp_path):
    s = SCENES["s1"]
    batch = collate([s["scene"]], voxel_size=0.02)
    probs = torch.from_numpy(s["probs"]).float()
    offset = torch.from_numpy(s["offset"])

    def sets(cfg):
        out = {"semantic_logits": torch.log(probs.clamp_min(1e-12)), "offset": offset,
               "features": torch.zeros(len(probs), 1)}   # softmax(log p) = p
        props = propose(out, batch, cfg, BACKGROUND)
        samples = props.samples
        members = [sorted(samples.point_idx[samples.sample_idx == j].tolist())
                   for j in range(samples.n)]
        return members, props.majority_class.tolist()

    part = {k: v.tolist() for k, v in s["part"].items()}
    guided, classes = sets(cfg_for(tmp_path, semantic_to_offset=True))
    assert guided == [part["C"], part["E2"], part["E3"]] and classes == [5, 2, 3]
    agnostic, classes = sets(cfg_for(tmp_path, semantic_to_offset=False))
    assert agnostic == [part["C"], part["E2"] + part["E3"]] and classes == [5, 2]


# ============================================================================ Psi's input
def test_psi_input_builds_and_feeds_what_it_says(tmp_path):
    batch = collate([SCENES["s0"]["scene"]], voxel_size=0.02)
    out = StubPhi()(batch)
    rgb_cfg = cfg_for(tmp_path, psi_input="rgb")
    assert build_psi(rgb_cfg, META, feature_width=16).in_channels == 6
    assert psi_features(rgb_cfg, batch, out) is batch["rgb"]
    feat_cfg = cfg_for(tmp_path, psi_input="features")
    assert build_psi(feat_cfg, META, feature_width=16).in_channels == 3 + 16
    feats = psi_features(feat_cfg, batch, out)
    np.testing.assert_array_equal(feats.numpy(), SCENES["s0"]["features"])


@pytest.mark.parametrize("backprop", [False, True])
def test_psi_backprop_lets_psi_loss_reach_phi(tmp_path, backprop):
    cfg = cfg_for(tmp_path, psi_backprop=backprop, psi_augment="none")
    batch = collate([SCENES["s0"]["scene"]], voxel_size=0.02)
    phi = StubPhi()
    out = phi(batch)
    feats = psi_features(cfg, batch, out)
    assert feats.requires_grad == backprop
    psi = build_psi(cfg, META, feature_width=4)
    part = SCENES["s0"]["part"]
    rows = np.r_[part["A"], part["B"]]
    samples = Samples(torch.from_numpy(rows), torch.from_numpy(np.repeat([0, 1], [10, 8])), 2)
    batch["instance"] = torch.from_numpy(np.r_[np.zeros(10), np.ones(8), np.full(5, IG)]).long()
    loss = augment_and_score(psi, samples, batch, feats, cfg, torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in psi.parameters())
    if backprop:
        assert phi.w.grad is not None and phi.w.grad.abs() > 0
    else:
        assert phi.w.grad is None


# ============================================================================ object-level augmentation
def box_scene(n=1500, seed=0):
    """Random points in a 2 x 2 x 0.5 m box; four quadrant instances (classes 2..5) below
    z = 0.4, background above."""
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [2, 2, 0.5]).astype(np.float32)
    quadrant = (xyz[:, 0] > 1).astype(int) * 2 + (xyz[:, 1] > 1)
    fg = xyz[:, 2] < 0.4
    return {"xyz": xyz, "rgb": np.zeros((n, 3), np.float32),
            "semantic": np.where(fg, quadrant + 2, 0).astype(np.int64),
            "instance": np.where(fg, quadrant, IG).astype(np.int64), "name": "box"}


def ball_samples(xyz, centres, radius=0.3):
    sets = [np.flatnonzero(np.linalg.norm(xyz - c, axis=1) < radius) for c in centres]
    return sets, Samples(torch.from_numpy(np.concatenate(sets)),
                         torch.from_numpy(np.repeat(np.arange(len(sets)), [len(s) for s in sets])),
                         len(sets))


def brute_targets(sets, instance, semantic):
    """Best IoU with a ground-truth instance (|S n G| / |S u G|, ties: smallest id) and that
    instance's majority class, by sets."""
    ious, classes = [], []
    ids = sorted(set(instance[instance != IG].tolist()))
    for s in sets:
        s = set(int(i) for i in s)
        best, best_id = 0.0, None
        for g in ids:
            gset = set(np.flatnonzero(instance == g).tolist())
            iou = len(s & gset) / len(s | gset)
            if iou > best:
                best, best_id = iou, g
        ious.append(best)
        if best_id is None:
            classes.append(IG)
        else:
            sem = semantic[instance == best_id]
            classes.append(int(np.bincount(sem[sem >= 0]).argmax()))
    return np.array(ious), np.array(classes)


def box_closed(members, xyz):
    """Whether the members are exactly the scene points inside their own bounding box."""
    lo, hi = xyz[members].min(0), xyz[members].max(0)
    inside = np.flatnonzero(((xyz >= lo) & (xyz <= hi)).all(1))
    return set(inside.tolist()) == set(members.tolist())


def run_augment(tmp_path, monkeypatch, augment, mutation_range=0.3, seed=0):
    scene = box_scene()
    batch = collate([scene], voxel_size=0.02)
    xyz = scene["xyz"].astype(np.float64)
    centres = [[0.5, 0.5, 0.2], [1.5, 0.5, 0.2], [1.0, 1.0, 0.2], [0.5, 1.5, 0.45],
               [1.5, 1.5, 0.3], [0.8, 0.3, 0.1], [1.2, 1.7, 0.25], [0.3, 1.0, 0.3]]
    sets, samples = ball_samples(xyz, np.asarray(centres))
    assert not any(box_closed(s, xyz) for s in sets)       # balls are never whole boxes
    recorded = {}
    real_loss = psi_training.psi_loss

    def spy(pred, iou, cls, *a, **k):
        recorded["iou"], recorded["cls"] = iou.clone(), cls.clone()
        return real_loss(pred, iou, cls, *a, **k)

    monkeypatch.setattr(psi_training, "psi_loss", spy)
    psi = StubPsi({}, scale=1.0)
    psi.forward = lambda local, feats, sample_idx, n: _record(psi, local, feats, sample_idx, n)
    cfg = cfg_for(tmp_path, psi_augment=augment, psi_mutation_range=mutation_range)
    index_feats = torch.arange(len(xyz), dtype=torch.float32)[:, None]   # feature = point index
    augment_and_score(psi, samples, batch, index_feats, cfg, torch.Generator().manual_seed(seed))
    local, feats, sample_idx, n = psi.calls[-1]
    point = feats[:, 0].round().long().numpy()
    new_sets = [np.sort(point[sample_idx.numpy() == j]) for j in range(n)]
    return dict(scene=scene, xyz=xyz, sets=sets, new_sets=new_sets, local=local.numpy(),
                point=point, sample_idx=sample_idx.numpy(), iou=recorded["iou"].numpy(),
                cls=recorded["cls"].numpy())


def _record(psi, local, feats, sample_idx, n):
    psi.calls.append((local.detach().clone(), feats.detach().clone(), sample_idx.clone(), int(n)))
    z = local.sum() * 0 + psi.b
    return {"class_logits": torch.zeros(n, K) + z, "score_logit": torch.zeros(n) + z,
            "score": torch.full((n,), 0.5) + z}


def centred(xyz, point, sample_idx, n):
    out = np.zeros((len(point), 3))
    for j in range(n):
        rows = sample_idx == j
        out[rows] = xyz[point[rows]] - xyz[point[rows]].mean(0)
    return out


def _check_targets(r):
    want_iou, want_cls = brute_targets(r["new_sets"], r["scene"]["instance"], r["scene"]["semantic"])
    np.testing.assert_allclose(r["iou"], want_iou, atol=1e-6)
    np.testing.assert_array_equal(r["cls"], want_cls)
    assert (want_iou > 0.05).all() and len(set(want_cls.tolist())) >= 3   # non-trivial targets


def test_psi_augment_none_keeps_module_a_samples(tmp_path, monkeypatch):
    r = run_augment(tmp_path, monkeypatch, "none")
    assert [s.tolist() for s in r["new_sets"]] == [np.sort(s).tolist() for s in r["sets"]]
    _check_targets(r)
    np.testing.assert_allclose(r["local"], centred(r["xyz"], r["point"], r["sample_idx"],
                                                   len(r["sets"])), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_psi_augment_mutation_changes_membership_and_targets_follow(tmp_path, monkeypatch, seed):
    r = run_augment(tmp_path, monkeypatch, "mutation", seed=seed)
    old = {tuple(np.sort(s)) for s in r["sets"]}
    assert len(r["new_sets"]) == len(r["sets"])
    changed = [s for s in r["new_sets"] if tuple(s) not in old]
    assert 1 <= len(changed) < len(r["sets"])           # about half of them, never none or all
    for s in changed:                                    # a mutated sample is a box of the scene
        assert box_closed(s, r["xyz"])
    _check_targets(r)                                    # targets of the new membership
    np.testing.assert_allclose(r["local"], centred(r["xyz"], r["point"], r["sample_idx"],
                                                   len(r["sets"])), atol=1e-5)


def test_psi_mutation_range_zero_mutates_to_the_bounding_box(tmp_path, monkeypatch):
    r = run_augment(tmp_path, monkeypatch, "mutation", mutation_range=0.0)
    boxes = []
    for s in r["sets"]:
        lo, hi = r["xyz"][s].min(0), r["xyz"][s].max(0)
        boxes.append(tuple(np.flatnonzero(((r["xyz"] >= lo) & (r["xyz"] <= hi)).all(1))))
    old = {tuple(np.sort(s)) for s in r["sets"]}
    allowed = old | set(boxes)
    assert all(tuple(s) in allowed for s in r["new_sets"])
    assert any(tuple(s) not in old for s in r["new_sets"])


def test_psi_augment_transform_moves_coordinates_not_targets(tmp_path, monkeypatch):
    r = run_augment(tmp_path, monkeypatch, "transform")
    assert [s.tolist() for s in r["new_sets"]] == [np.sort(s).tolist() for s in r["sets"]]
    _check_targets(r)
    c = centred(r["xyz"], r["point"], r["sample_idx"], len(r["sets"]))
    assert np.abs(r["local"] - c).max() > 0.05
    for j in range(len(r["sets"])):   # z' = s_z * z + t_z per sample (rotation is about z)
        rows = r["sample_idx"] == j
        z, z2 = c[rows, 2], r["local"][rows, 2] - r["local"][rows, 2].mean()
        s_z = (z @ z2) / (z @ z)
        np.testing.assert_allclose(z2, s_z * z, atol=1e-5)
        assert 0.8 - 1e-6 <= s_z <= 1.2 + 1e-6


def test_psi_augment_both_changes_membership_and_coordinates(tmp_path, monkeypatch):
    r = run_augment(tmp_path, monkeypatch, "both")
    old = {tuple(np.sort(s)) for s in r["sets"]}
    assert any(tuple(s) not in old for s in r["new_sets"])
    _check_targets(r)
    c = centred(r["xyz"], r["point"], r["sample_idx"], len(r["sets"]))
    assert np.abs(r["local"] - c).max() > 0.05


# ============================================================================ Psi's training samples
def mixed_batch():
    """A labelled scene (4 ground-truth instances of 5 points, classes 2..5, and 4 wall points)
    and an unlabelled scene carrying 3 pseudo instances; Phi predicts the instances' classes."""
    lab_x = np.r_[[k + 0.02 * i for k in range(4) for i in range(5)], 5 + 0.02 * np.arange(4)]
    lab = {"xyz": np.c_[lab_x, np.zeros((24, 2))].astype(np.float32),
           "rgb": np.zeros((24, 3), np.float32),
           "semantic": np.r_[np.repeat([2, 3, 4, 5], 5), [0] * 4],
           "instance": np.r_[np.repeat([7, 3, 9, 4], 5), [IG] * 4], "name": "lab", "labelled": True}
    unl_x = np.array([k + 0.02 * i for k in range(3) for i in range(6)])
    unl = {"xyz": np.c_[unl_x, np.ones((18, 2))].astype(np.float32),
           "rgb": np.zeros((18, 3), np.float32), "semantic": np.repeat([6, 7, 8], 6),
           "instance": np.repeat([0, 1, 2], 6), "name": "unl", "labelled": False,
           "offset_valid": np.ones(18, bool)}
    batch = collate([lab, unl], voxel_size=0.02)
    probs = np.stack([_probs(int(c), 0.9) for c in batch["semantic"]])
    out = {"semantic_logits": torch.from_numpy(np.log(probs)).float(),
           "offset": torch.zeros(len(probs), 3)}
    return batch, out


def _sample_sets(samples):
    return [tuple(sorted(samples.point_idx[samples.sample_idx == j].tolist()))
            for j in range(samples.n)]


def test_gt_proposals_come_from_labelled_scenes_only(tmp_path):
    batch, out = mixed_batch()
    gt_sets = {tuple(range(5 * k, 5 * k + 5)) for k in range(4)}
    no_props = dict(out, semantic_logits=torch.log(torch.full_like(out["semantic_logits"], 0.1)))
    no_props["semantic_logits"][:, 0] = 0.0                     # Phi says "wall" everywhere
    for count, want in ((0, 0), (2, 2), (4, 4), (50, 4)):
        cfg = cfg_for(tmp_path, psi_gt_proposals=count, psi_max_proposals=200)
        samples = training_samples(batch, no_props, cfg, BACKGROUND, torch.Generator().manual_seed(1))
        sets = _sample_sets(samples)
        assert samples.n == want and len(set(sets)) == want and set(sets) <= gt_sets
    # module A runs on the labelled scene only: its 4 proposals, none of the unlabelled scene's 3
    cfg = cfg_for(tmp_path, psi_gt_proposals=0, psi_max_proposals=200)
    samples = training_samples(batch, out, cfg, BACKGROUND, torch.Generator().manual_seed(1))
    assert set(_sample_sets(samples)) == gt_sets and samples.n == 4
    assert int(samples.point_idx.max()) < 24


def test_psi_max_proposals_caps_with_a_random_subset(tmp_path):
    batch, out = mixed_batch()
    cfg = cfg_for(tmp_path, psi_gt_proposals=4, psi_max_proposals=200)
    full = _sample_sets(training_samples(batch, out, cfg, BACKGROUND, torch.Generator().manual_seed(0)))
    assert len(full) == 8                                  # 4 proposals + 4 ground-truth copies
    cfg = cfg_for(tmp_path, psi_gt_proposals=4, psi_max_proposals=3)
    seen = set()
    for seed in range(6):
        samples = training_samples(batch, out, cfg, BACKGROUND, torch.Generator().manual_seed(seed))
        sets = _sample_sets(samples)
        assert samples.n == 3 and len(sets) == 3
        assert set(sets) <= set(full)
        # membership rows are consistent: 5 points per sample, all of the labelled scene
        assert len(samples.point_idx) == 15
        seen.add(tuple(sets))
    assert len(seen) > 1                                   # a random subset, not a truncation


# ============================================================================ the real dataset
class OraclePhi(nn.Module):
    """Phi predicting the batch's own labels: P(true class) in [0.5, 0.9] per point (wall for
    unlabelled points) and the true offsets."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        sem = batch["semantic"].clamp(min=0)
        n = len(sem)
        p = 0.5 + 0.4 * torch.rand(n, generator=torch.Generator().manual_seed(n))
        probs = ((1 - p) / (K - 1))[:, None].repeat(1, K)
        probs[torch.arange(n), sem] = p
        return {"semantic_logits": probs.log(), "offset": batch["offset"].clone(),
                "features": torch.stack([p, p], 1) * self.w}


class SizePsi(nn.Module):
    """Psi whose class is 2 + (proposal size mod 8) and whose score is 1 / (1 + size / 100)."""

    def forward(self, xyz, feats, sample_idx, n):
        size = torch.bincount(sample_idx, minlength=n)
        cls = 2 + size % 8
        score = 1 / (1 + size.float() / 100)
        return {"class_logits": nn.functional.one_hot(cls, K).float(),
                "score_logit": torch.logit(score), "score": score}


def test_test_time_recorrection_uses_psi_classes_and_scores(data_root, tmp_path):
    cfg = Config.for_profile("smoke", data_root=str(data_root), run_dir=str(tmp_path / "r"),
                             label_ratio="50", progress=False, cluster_min_points=20)
    val = SceneDataset(data_root, "val", voxel_size=cfg.voxel_size)
    meta = val.meta
    plain = evaluate_model(OraclePhi(), val, meta, cfg, device="cpu", keep_predictions=True)
    fixed = evaluate_model(OraclePhi(), val, meta, cfg, device="cpu", keep_predictions=True,
                           psi=SizePsi())
    n_props = 0
    for a, b in zip(plain["predictions"], fixed["predictions"]):
        np.testing.assert_array_equal(a.proposal_ids, b.proposal_ids)   # same proposals
        for j in range(len(a.classes)):
            members = np.flatnonzero(a.proposal_ids == j)
            votes = np.bincount(a.probs[members].argmax(1), minlength=K)
            assert a.classes[j] == votes.argmax()
            assert a.scores[j] == pytest.approx(a.probs[members, votes.argmax()].mean(), rel=1e-5)
            assert b.classes[j] == 2 + len(members) % 8
            assert b.scores[j] == pytest.approx(1 / (1 + len(members) / 100), rel=1e-5)
        n_props += len(a.classes)
    assert n_props >= 5
    assert plain["AP50"] > 0.5 and plain["AP50"] != fixed["AP50"]


def _pseudo_files(data_root, folder):
    ds = SceneDataset(data_root, "unlabelled", label_ratio="50")
    for i, name in enumerate(ds.names):
        n = len(ds[i]["xyz"])
        write_pseudo_labels(pseudo_label_path(folder, name),
                            {"semantic": np.full(n, 2), "offset": np.zeros((n, 3), np.float32),
                             "offset_valid": np.zeros(n, bool), "instance": np.full(n, IG)})


@pytest.mark.parametrize("ttr", [False, True])
def test_round_trainer_switches(data_root, tmp_path, monkeypatch, ttr):
    """test_time_recorrection hands Psi to the evaluation; label_noise reaches the labelled
    training split (never val, never the pseudo-labelled one); psi_input sizes Psi."""
    pseudo_dir = tmp_path / "pseudo"
    _pseudo_files(data_root, pseudo_dir)
    cfg = Config.for_profile("smoke", data_root=str(data_root), run_dir=str(tmp_path / "run"),
                             label_ratio="50", progress=False, label_noise=0.5,
                             test_time_recorrection=ttr, psi_input="rgb" if ttr else "features")
    trainer = RoundTrainer(cfg, 1, tmp_path / "run", pseudo_dir=pseudo_dir)
    assert trainer.models["psi"].in_channels == (6 if ttr else 3 + trainer.models["phi"].size.m)
    captured = {}
    monkeypatch.setattr(self_training, "evaluate_model",
                        lambda *a, **k: captured.update(k) or {"AP50": 0.0})
    trainer.validate()
    assert (captured["psi"] is trainer.models["psi"]) if ttr else captured["psi"] is None

    train, val, unl = (trainer.datasets[k] for k in ("train", "val", "unlabelled"))
    assert train.label_noise == 0.5 and val.label_noise == 0.0 and unl.label_noise == 0.0
    clean = SceneDataset(data_root, "labelled", label_ratio="50", transforms=train.transforms,
                         seed=train.seed)
    changed = 0
    for i in range(len(train)):
        a, b = clean[i], train[i]
        np.testing.assert_array_equal(a["xyz"], b["xyz"])
        for k in np.unique(a["instance"][a["instance"] != IG]):
            pts = a["instance"] == k
            changed += int((a["semantic"][pts] != b["semantic"][pts]).all())
            assert (a["semantic"][pts] == b["semantic"][pts]).all() or \
                (a["semantic"][pts] != b["semantic"][pts]).all()
    assert changed > 0


# ============================================================================ extensions
def test_background_and_spread_extensions_reach_the_written_files(hand_root, tmp_path):
    """pseudo_background: the wall W (p = 0.95, in no proposal) gets class 0 at threshold 0.9,
    nothing at 0.96; D (class 6, an instance class) never. pseudo_offset_spread:
    the hand proposals' votes p + o_hat scatter by at most ~5 mm, so a 0.15 m limit keeps every
    offset and a 0.1 mm limit drops every offset but no class or instance."""
    kept = {"s0": [(["A"], 2, 0)], "s1": [(["C"], 5, 0), (["E2"], 2, 1), (["E3"], 3, 2)]}
    base = dict(recorrection=False)
    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_background=0.9, **base),
                      tag="bg")
    want = expected_labels("s0", kept["s0"])
    want["semantic"][SCENES["s0"]["part"]["W"]] = 0
    assert_labels(got["s0"], want)
    assert_labels(got["s1"], expected_labels("s1", kept["s1"]))
    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_background=0.96, **base),
                      tag="bg2")
    assert_labels(got["s0"], expected_labels("s0", kept["s0"]))
    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_offset_spread=0.15, **base),
                      tag="sp")
    for name in ("s0", "s1"):
        assert_labels(got[name], expected_labels(name, kept[name]))
    got = label_split(hand_root, tmp_path, cfg_for(tmp_path, pseudo_offset_spread=1e-4, **base),
                      tag="sp2")
    for name in ("s0", "s1"):
        assert_labels(got[name], expected_labels(name, kept[name], offset=False))
