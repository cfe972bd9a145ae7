"""The package side of the book's module B and C pages (``twist_lib.book.proposal_study`` and
``twist_lib.book.pseudo_study``): ``trained_psi`` (trains once, reuses, resumes), one scene through
modules A -> B -> C (``scene_proposals``, checked with an oracle Phi and against the pipeline's
own pseudo-labelling), the augmentation and label helpers against hand-made scenes, and the
plotting helpers of ``twist_lib.book.viz_proposals``."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from twist_lib import book
from twist_lib.book import proposal_study, pseudo_study
from twist_lib.book import viz_proposals as vp
from twist_lib.config import Config
from twist_lib.data import SceneDataset
from twist_lib.data.transforms import instance_offsets
from twist_lib.proposals import background_classes
from twist_lib.evaluation import pseudo_dir_quality
from twist_lib.pseudo_labels import make_pseudo_labels
from twist_lib.recorrection import build_psi
from twist_lib.object_samples import proposal_targets
from twist_lib.self_training import pseudo_label_split

IG = -100


# ----------------------------------------------------------------------------------------------
# fixtures: a tiny synthetic benchmark, a smoke config, an oracle Phi
# ----------------------------------------------------------------------------------------------
def smoke_cfg(data_root, run_dir, **kw) -> Config:
    values = dict(data_root=str(data_root), run_dir=str(run_dir), label_ratio="50", progress=False,
                  cpu_threads=1, steps=4, ckpt_every=2, psi_init_steps=3, val_scenes=2,
                  cluster_min_points=5)
    values.update(kw)
    return Config.for_profile("smoke", **values)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """A smoke baseline and the Psi ``trained_psi`` trains on it, once for the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = smoke_cfg(data_root, tmp_path_factory.mktemp("run"))
        phi, psi, meta = proposal_study.trained_psi(cfg)
    finally:
        torch.set_num_threads(before)
    return cfg, phi, psi, meta


class OraclePhi(torch.nn.Module):
    """A Phi that predicts the truth of every scene of ``root`` (looked up by name, so unlabelled
    scenes too): one-hot true classes (unlabelled points: class 0, wall), true offsets, and
    rgb + xyz as its 6 "backbone features"."""

    def __init__(self, root, meta: dict):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))    # gives the module a device
        self.size = SimpleNamespace(m=6)
        self.k = int(meta["num_classes"])
        self.truth = {}
        for split in ("labelled", "unlabelled", "val"):
            ds = SceneDataset(root, split, label_ratio="50")
            for i in range(len(ds)):
                gt = ds.ground_truth(i)
                self.truth[ds.names[i]] = (torch.as_tensor(gt["semantic"]),
                                           torch.as_tensor(gt["offset"]))

    def forward(self, batch):
        sem = torch.cat([self.truth[n][0] for n in batch["names"]]).clamp(min=0)
        off = torch.cat([self.truth[n][1] for n in batch["names"]]).float()
        return {"semantic_logits": 10.0 * torch.nn.functional.one_hot(sem, self.k).float(),
                "offset": off, "features": torch.cat([batch["rgb"], batch["xyz"]], dim=1)}


@pytest.fixture(scope="module")
def oracle(data_root):
    """Oracle Phi and a Psi whose outputs do not depend on its input: every proposal gets
    class K-1 with certainty sigmoid(3), so module C keeps them all, deterministically."""
    cfg = smoke_cfg(data_root, data_root / "unused")
    meta = SceneDataset(data_root, "val").meta
    phi = OraclePhi(data_root, meta).eval()
    psi = build_psi(cfg, meta, phi.size.m).eval()
    with torch.no_grad():
        for head in (psi.score_head[-1], psi.class_head[-1]):
            head.weight.zero_()
        psi.score_head[-1].bias.fill_(3.0)
        psi.class_head[-1].bias.copy_(torch.arange(meta["num_classes"], dtype=torch.float32))
    return cfg, phi, psi, meta


# ----------------------------------------------------------------------------------------------
# trained_psi
# ----------------------------------------------------------------------------------------------
def test_trained_psi_trains_on_the_frozen_baseline_into_its_run_folder(trained):
    cfg, phi, psi, meta = trained
    run = Path(cfg.run_dir) / proposal_study.PSI_DIR
    assert proposal_study.psi_config(cfg).run_dir == str(run)
    assert (run / "checkpoints" / "final.pt").exists() and (run / "metrics.json").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["test_time_recorrection"] is True and saved["run_dir"] == str(run)
    assert not phi.training and not psi.training
    ckpt = torch.load(run / "checkpoints" / "final.pt", weights_only=False)
    assert ckpt["step"] == cfg.psi_init_steps
    for k, v in psi.state_dict().items():
        assert torch.equal(v, ckpt["modules"]["psi"][k]), k
    baseline = torch.load(Path(cfg.run_dir) / "checkpoints" / "final.pt", weights_only=False)
    for k, v in ckpt["modules"]["phi"].items():                    # Phi stayed frozen
        assert torch.equal(v, baseline["modules"]["phi"][k]), k
    assert "psi" not in baseline["modules"]
    assert book.run_metrics(proposal_study.psi_config(cfg))["num_scenes"] == 2


def test_trained_psi_reuses_its_checkpoint(trained, monkeypatch):
    cfg, _, psi, _ = trained

    def refuse(*a, **kw):
        raise AssertionError("trained_psi trained again although psi/checkpoints/final.pt exists")

    monkeypatch.setattr(proposal_study, "RoundTrainer", refuse)
    monkeypatch.setattr("twist_lib.trainer.train", refuse)
    _, again, _ = proposal_study.trained_psi(cfg)
    for k, v in psi.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_trained_psi_resumes_a_killed_run(data_root, tmp_path, trained, one_thread):
    cfg0 = trained[0]
    cfg = smoke_cfg(data_root, tmp_path / "run")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for name in ("final.pt", "metrics.json"):                     # the same baseline
        src = Path(cfg0.run_dir) / ("checkpoints" if name.endswith(".pt") else "") / name
        dst = tmp_path / "run" / ("checkpoints" if name.endswith(".pt") else "") / name
        dst.write_bytes(src.read_bytes())
    psi_run = Path(proposal_study.psi_config(cfg).run_dir)
    proposal_study.trained_psi(cfg)
    (psi_run / "checkpoints" / "final.pt").unlink()                # killed before the end
    last = torch.load(psi_run / "checkpoints" / "last.pt", weights_only=False)
    assert last["step"] == cfg.psi_init_steps
    _, psi, _ = proposal_study.trained_psi(cfg)                    # resumes: no step is redone
    final = torch.load(psi_run / "checkpoints" / "final.pt", weights_only=False)
    assert final["step"] == cfg.psi_init_steps
    for k, v in last["modules"]["psi"].items():
        assert torch.equal(v, final["modules"]["psi"][k]), k


# ----------------------------------------------------------------------------------------------
# one scene through modules A -> B -> C
# ----------------------------------------------------------------------------------------------
def test_scene_proposals_with_an_oracle_phi_finds_the_objects(oracle, data_root):
    cfg, phi, psi, meta = oracle
    ds = SceneDataset(data_root, "labelled", label_ratio="50")
    scene = ds[0]
    props = proposal_study.scene_proposals(phi, psi, scene, cfg, meta)
    inst, sem = scene["instance"], scene["semantic"]
    objects = [i for i in np.unique(inst[inst >= 0])
               if (inst == i).sum() >= cfg.cluster_min_points
               and sem[inst == i][0] not in background_classes(meta)]
    assert len(props) == len(objects) > 0
    n = len(scene["xyz"])
    assert props.xyz.shape == (n, 3) and props.probs.shape == (n, meta["num_classes"])
    assert props.features.shape == (n, 6) and props.proposal_ids.shape == (n,)
    assert set(np.unique(props.proposal_ids)) == {-1, *range(len(props))}
    np.testing.assert_allclose(props.iou, 1.0)
    iou, cls = proposal_targets(props.proposal_ids, inst, sem, len(props))
    np.testing.assert_array_equal(props.iou, iou)
    np.testing.assert_array_equal(props.true_class, cls)
    np.testing.assert_array_equal(props.majority_class, props.true_class)
    np.testing.assert_array_equal(props.psi_class, meta["num_classes"] - 1)
    np.testing.assert_allclose(props.psi_score, 1 / (1 + math.exp(-3)), rtol=1e-6)
    np.testing.assert_array_equal(props.semantic, np.clip(sem, 0, None))
    assert props.members(0).sum() == (props.proposal_ids == 0).sum()
    without = proposal_study.scene_proposals(phi, None, scene, cfg, meta)  # module B off
    np.testing.assert_array_equal(without.psi_class, without.majority_class)
    np.testing.assert_array_equal(without.psi_score, without.majority_score)


def test_scene_proposals_of_an_unlabelled_scene_have_no_targets(oracle, data_root):
    cfg, phi, psi, meta = oracle
    scene = SceneDataset(data_root, "unlabelled", label_ratio="50")[0]
    props = proposal_study.scene_proposals(phi, psi, scene, cfg, meta)
    assert len(props) > 0
    np.testing.assert_array_equal(props.iou, 0.0)
    np.testing.assert_array_equal(props.true_class, IG)


def test_comparison_agrees_with_the_pipelines_pseudo_labelling(oracle, data_root, tmp_path,
                                                                one_thread):
    """The book's TWIST column is what a self-training round writes and scores with the paper's
    module C (the module C page shows it as written: both extensions off)."""
    cfg, phi, psi, meta = oracle
    unl = SceneDataset(data_root, "unlabelled", label_ratio="50")
    comp = pseudo_study.pseudo_label_comparison(phi, psi, unl, cfg, meta)
    paper = dataclasses.replace(cfg, pseudo_background=0.0, pseudo_offset_spread=0.0)
    pseudo_label_split(phi, psi, unl, tmp_path / "pseudo", paper, meta, torch.device("cpu"))
    round_quality = pseudo_dir_quality(tmp_path / "pseudo", unl)
    ours = comp["quality"]["psi"]
    assert comp["scenes"] == len(unl) and len(ours["per_scene"]) == len(unl)
    for key in ("n_points", "n_pseudo", "n_sem_scored", "n_offset_scored"):
        assert ours[key] == round_quality[key], key
    for key in ("sem_acc", "coverage", "offset_error"):
        assert ours[key] == pytest.approx(round_quality[key], rel=1e-6), key
    # the oracle's proposals are the objects: module C without Psi labels them perfectly
    assert comp["quality"]["majority"]["sem_acc"] == 1.0
    assert comp["quality"]["majority"]["offset_error"] == pytest.approx(0.0, abs=1e-5)
    assert comp["objects"]["majority"]["coverage"] > 0.9
    # point-wise thresholding on one-hot probabilities labels every point
    assert comp["quality"]["pointwise"]["coverage"] == 1.0
    audit = pseudo_study.audit_rates(comp["audit"]["majority"])
    assert audit["labelled"]["label_acc"] == 1.0 and audit["rejected"]["points"] == 0
    assert sum(audit[g]["share"] for g in pseudo_study.AUDIT_GROUPS) == pytest.approx(1.0)
    assert set(comp["audit"]) == {"majority", "psi"}
    small = pseudo_study.pseudo_label_comparison(phi, psi, unl, cfg, meta, max_scenes=2)
    assert small["scenes"] == 2 and small["quality"]["psi"]["n_points"] == sum(
        len(unl.ground_truth(i)["xyz"]) for i in range(2))


# ----------------------------------------------------------------------------------------------
# module B helpers on a hand-made scene
# ----------------------------------------------------------------------------------------------
def two_boxes(seed=0):
    """Two touching objects on a floor: object 0 (class 2) a box [0,1]^3, object 1 (class 3)
    a box [1.1,2]x[0,1]^2, and floor points (class 1, no object) around them."""
    rng = np.random.default_rng(seed)
    a = rng.uniform([0, 0, 0], [1, 1, 1], (400, 3))
    b = rng.uniform([1.1, 0, 0], [2, 1, 1], (300, 3))
    floor = np.c_[rng.uniform(-1, 3, (300, 2)), np.zeros(300)]
    xyz = np.concatenate([a, b, floor]).astype(np.float32)
    instance = np.r_[np.zeros(400), np.ones(300), np.full(300, IG)].astype(np.int64)
    semantic = np.r_[np.full(400, 2), np.full(300, 3), np.full(300, 1)].astype(np.int64)
    return {"name": "boxes", "xyz": xyz, "instance": instance, "semantic": semantic,
            "offset": instance_offsets(xyz, instance)}


def fake_props(scene, ids, classes=None, scores=None, probs=None, offset=None):
    n, p = len(scene["xyz"]), int(ids.max()) + 1
    k = 5
    if probs is None:
        probs = np.eye(k, dtype=np.float32)[np.clip(scene["semantic"], 0, None)]
    iou, cls = proposal_targets(ids, scene["instance"], scene["semantic"], p)
    classes = np.arange(p) if classes is None else np.asarray(classes)
    scores = np.full(p, 0.9) if scores is None else np.asarray(scores)
    return proposal_study.SceneProposals(
        name=scene["name"], xyz=scene["xyz"], probs=probs,
        offset=scene["offset"] if offset is None else offset, features=np.zeros((n, 2)),
        proposal_ids=ids, majority_class=classes, majority_score=scores, psi_class=classes,
        psi_score=scores, iou=iou, true_class=cls)


def test_five_augmentations_transform_keeps_the_sample_mutation_changes_it():
    scene = two_boxes()
    members = scene["instance"] == 0
    aug = proposal_study.five_augmentations(scene, members, crop=0.7, expand=1.3, seed=1)
    assert list(aug) == ["rotation", "translation", "scaling", "crop", "expand"]
    centred = scene["xyz"][members] - scene["xyz"][members].mean(0)
    for name in ("rotation", "translation", "scaling"):
        a = aug[name]
        assert a["kind"] == "transformation" and a["iou_before"] == a["iou_after"] == 1.0
        np.testing.assert_allclose(a["before"], centred, atol=1e-5)
        assert a["after"].shape == a["before"].shape and not np.allclose(a["after"], a["before"])
    rot = aug["rotation"]                                   # about z: xy norms and z unchanged
    np.testing.assert_allclose(np.linalg.norm(rot["after"][:, :2], axis=1),
                               np.linalg.norm(rot["before"][:, :2], axis=1), atol=1e-5)
    np.testing.assert_allclose(rot["after"][:, 2], rot["before"][:, 2], atol=1e-6)
    shift = aug["translation"]["after"] - aug["translation"]["before"]
    assert np.allclose(shift, shift[0], atol=1e-6) and np.abs(shift[0]).max() <= 0.1
    crop, expand = aug["crop"], aug["expand"]
    assert crop["kind"] == expand["kind"] == "mutation"
    assert crop["lost"] > 0 and not (crop["after_mask"] & ~members).any()
    assert crop["iou_after"] == pytest.approx(crop["after_mask"].sum() / members.sum())
    assert (expand["after_mask"] >= members).all() and expand["lost"] == 0
    gained = expand["after_mask"] & ~members
    assert expand["added"] == gained.sum() > 0
    assert expand["added_other"] == (gained & (scene["instance"] == 1)).sum() > 0
    inter = (expand["after_mask"] & members).sum()
    union = expand["after_mask"].sum() + members.sum() - inter
    assert expand["iou_after"] == pytest.approx(inter / union)


def test_mutation_curve_grows_with_the_ratio():
    scene = two_boxes()
    members = scene["instance"] == 0
    curve = proposal_study.mutation_curve(scene, members, [0.5, 0.8, 1.0, 1.2, 1.5])
    assert curve["ratio"] == [0.5, 0.8, 1.0, 1.2, 1.5]
    assert curve["points"] == sorted(curve["points"])
    assert curve["points"][2] >= members.sum()             # the own box holds all its points
    assert curve["iou"][2] == max(curve["iou"]) and curve["iou"][-1] < curve["iou"][2]


def test_pick_sample_prefers_the_sample_with_intruding_neighbours():
    scene = two_boxes()
    ids = np.where(scene["instance"] == 0, 0, -1)
    far = scene["xyz"][:, 0] < -0.5                          # a proposal of floor points, alone
    ids[far] = 1
    props = fake_props(scene, ids)
    mask, what = proposal_study.pick_sample(props, scene, -1)
    assert (mask == (ids == 0)).all() and what.startswith("proposal 0 of module A")
    mask, _ = proposal_study.pick_sample(props, scene, 1)
    assert (mask == far).all()
    mask, _ = proposal_study.pick_sample(props, scene, 3)  # modulo the count
    assert (mask == far).all()
    none = fake_props(scene, np.r_[0, np.full(len(ids) - 1, -1)])
    none = proposal_study.SceneProposals(**{**none.__dict__, "majority_class": np.zeros(0, int),
                                            "proposal_ids": np.full(len(ids), -1)})
    mask, what = proposal_study.pick_sample(none, scene, -1)
    assert "ground-truth object" in what and ((mask == (scene["instance"] == 0)).all()
                                              or (mask == (scene["instance"] == 1)).all())
    with pytest.raises(ValueError, match="boxes"):
        proposal_study.pick_sample(none, {**scene, "instance": np.full(len(ids), IG)}, -1)


# ----------------------------------------------------------------------------------------------
# module C helpers
# ----------------------------------------------------------------------------------------------
def test_pseudo_labels_by_each_strategy_is_make_pseudo_labels():
    scene = two_boxes()
    ids = np.where(scene["instance"] >= 0, scene["instance"], -1)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(5, 0.3), len(ids)).astype(np.float32)
    props = fake_props(scene, ids, classes=[2, 4], scores=[0.9, 0.2], probs=probs,
                       offset=rng.normal(0, 0.1, (len(ids), 3)).astype(np.float32))
    props = proposal_study.SceneProposals(**{**props.__dict__,
                                             "majority_class": np.array([3, 3]),
                                             "majority_score": np.array([0.6, 0.7])})
    cfg = Config.for_profile("smoke")
    meta = {"instance_classes": [2, 3, 4]}
    psi = pseudo_study.pseudo_labels_by(props, "psi", cfg, meta)
    want = make_pseudo_labels(props.xyz, probs, props.offset, ids, [2, 4], [0.9, 0.2],
                              instance_classes=[2, 3, 4], threshold=cfg.pseudo_threshold)
    for k in want:
        np.testing.assert_array_equal(psi[k], want[k])
    assert (psi["semantic"][ids == 0] == 2).all() and (psi["semantic"][ids != 0] == IG).all()
    maj = pseudo_study.pseudo_labels_by(props, "majority", cfg, meta)
    assert (maj["semantic"][ids >= 0] == 3).all()
    point = pseudo_study.pseudo_labels_by(props, "pointwise", cfg, meta)
    conf = probs.max(1) > cfg.pointwise_threshold
    np.testing.assert_array_equal(point["semantic"] >= 0, conf)
    with pytest.raises(ValueError, match="strategy"):
        pseudo_study.pseudo_labels_by(props, "oracle", cfg, meta)
    assert set(pseudo_study.PSEUDO_STRATEGIES) == {"pointwise", "majority", "psi"}


def test_pseudo_centre_is_eq7_and_matched_object_its_truth():
    scene = two_boxes()
    ids = np.where(scene["instance"] >= 0, scene["instance"], -1)
    o_hat = np.random.default_rng(1).normal(0, 0.05, (len(ids), 3)).astype(np.float32)
    props = fake_props(scene, ids, scores=[0.9, 0.3], offset=o_hat)
    labels = pseudo_study.pseudo_labels_by(props, "psi", Config.for_profile("smoke"),
                                           {"instance_classes": [2, 3]})
    m = ids == 0
    np.testing.assert_allclose(pseudo_study.pseudo_centre(scene["xyz"], labels, 0),
                               (scene["xyz"][m] + o_hat[m]).astype(np.float64).mean(0), atol=1e-5)
    assert pseudo_study.pseudo_centre(scene["xyz"], labels, 1) is None  # rejected: no centre
    some_of_b = (scene["instance"] == 1) & (scene["xyz"][:, 0] < 1.3)
    obj, centre = pseudo_study.matched_object(scene, m | some_of_b)
    assert obj == 0
    np.testing.assert_allclose(centre, scene["xyz"][m].astype(np.float64).mean(0), atol=1e-5)
    assert pseudo_study.matched_object(scene, scene["instance"] < 0) == (-100, None)


def test_label_audit_groups_every_point_once():
    scene = two_boxes()
    n = len(scene["xyz"])
    ids = np.where(scene["instance"] >= 0, scene["instance"], -1)
    ids[:50] = -1                                            # 50 object points in no proposal
    probs = np.eye(5, dtype=np.float32)[np.clip(scene["semantic"], 0, None)]
    probs[:20] = np.eye(5)[4]                                # Phi wrong on 20 of them
    probs[100:130] = np.eye(5)[3]                            # and on 30 points of proposal 0
    props = fake_props(scene, ids, classes=[2, 3], scores=[0.9, 0.3], probs=probs)
    meta = {"instance_classes": [2, 3, 4], "class_names": ["wall", "floor", "a", "b", "c"],
            "num_classes": 5}
    labels = pseudo_study.pseudo_labels_by(props, "psi", Config.for_profile("smoke"), meta)
    audit = pseudo_study.label_audit(props, labels, scene, meta)
    groups = {g: audit[g]["points"] for g in pseudo_study.AUDIT_GROUPS}
    assert groups == {"labelled": 350, "rejected": 300, "no_proposal": 50, "background": 300}
    assert sum(groups.values()) == n
    assert audit["labelled"]["phi_correct"] == 320 and audit["labelled"]["label_correct"] == 350
    assert audit["no_proposal"]["phi_correct"] == 30
    assert audit["background"]["true_background"] == 300
    assert audit["changes"]["fixed"] == 30 and audit["changes"]["broken"] == 0
    assert audit["changes"]["offset_scored"] == 350
    rates = pseudo_study.audit_rates(pseudo_study.merge_audits([audit, audit]))
    assert rates["labelled"]["points"] == 700
    assert rates["labelled"]["share"] == pytest.approx(350 / n)
    assert rates["labelled"]["phi_acc"] == pytest.approx(320 / 350)
    assert rates["changes"]["offset_error_phi"] == pytest.approx(0.0, abs=1e-6)   # true offsets
    nothing = {**labels, "semantic": np.full(n, IG), "offset_valid": np.zeros(n, bool)}
    empty = pseudo_study.audit_rates(pseudo_study.label_audit(props, nothing, scene, meta))
    assert empty["labelled"]["points"] == 0 and math.isnan(empty["labelled"]["phi_acc"])
    assert math.isnan(empty["changes"]["offset_error_pseudo"])


def test_label_quality_on_some_points():
    scene = two_boxes()
    ids = np.where(scene["instance"] >= 0, scene["instance"], -1)
    props = fake_props(scene, ids, classes=[2, 4])
    meta = {"instance_classes": [2, 3, 4]}
    labels = pseudo_study.pseudo_labels_by(props, "psi", Config.for_profile("smoke"), meta)
    q = pseudo_study.label_quality(labels, scene, 5)
    assert q["coverage"] == pytest.approx(0.7) and q["sem_acc"] == pytest.approx(400 / 700)
    objects = pseudo_study.object_points(scene, meta)
    assert objects.sum() == 700
    q_obj = pseudo_study.label_quality(labels, scene, 5, where=objects)
    assert q_obj["coverage"] == 1.0 and q_obj["n_points"] == 700
    q_b = pseudo_study.label_quality(labels, scene, 5, where=scene["instance"] == 1)
    assert q_b["sem_acc"] == 0.0 and q_b["offset_error"] == pytest.approx(0.0, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# the plotting helpers
# ----------------------------------------------------------------------------------------------
def test_segments_and_box_edges():
    t = vp.segments(np.zeros((4, 3)), np.ones((4, 3)), "s")
    assert len(t.x) == 12 and np.isnan(np.asarray(t.x, dtype=float)[2::3]).all()
    box = vp.box_edges([0, 0, 0], [1, 2, 3], "box")
    xyz = np.c_[box.x, box.y, box.z].astype(float)
    ends = xyz[~np.isnan(xyz[:, 0])]
    assert len(ends) == 24
    assert {tuple(p) for p in ends} == {(x, y, z) for x in (0, 1) for y in (0, 2) for z in (0, 3)}
    lengths = np.linalg.norm(ends[0::2] - ends[1::2], axis=1)
    assert sorted(lengths) == sorted([1.0] * 4 + [2.0] * 4 + [3.0] * 4)


def test_feature_colours_and_sample_view():
    feats = np.random.default_rng(0).normal(size=(50, 8))
    colours = vp.feature_colours(feats)
    assert len(colours) == 50 and all(c.startswith("rgb(") for c in colours)
    assert vp.feature_colours(np.zeros((0, 8))) == []
    assert len(set(vp.feature_colours(np.ones((3, 2))))) == 1
    scene = two_boxes()
    members = scene["instance"] == 0
    feats = np.random.default_rng(0).normal(size=(len(members), 4))
    fig = vp.show_sample(scene["xyz"], members, feats, max_points=10_000)
    around, sample = fig.data
    assert len(sample.x) == 400 and "400 points, xyz + 4 features" in sample.name
    assert len(around.x) > 0 and fig.layout.scene.aspectmode == "data"
    fig = vp.show_sample(scene["xyz"], members, np.zeros((400, 4)), max_points=100)
    assert len(fig.data[1].x) == 100


def test_show_transform_and_mutation_count_their_points():
    scene = two_boxes()
    members = scene["instance"] == 0
    aug = proposal_study.five_augmentations(scene, members)
    fig = vp.show_transform(aug["rotation"]["before"], aug["rotation"]["after"])
    assert [t.name for t in fig.data][:2] == ["before", "after"] and len(fig.data[1].x) == 400
    e = aug["expand"]
    fig = vp.show_mutation(scene["xyz"], members, e["after_mask"], 1.3, scene["instance"],
                           max_points=10_000)
    names = [t.name for t in fig.data]
    counts = {n.split(":")[0]: int(n.split(": ")[1]) for n in names if ":" in n}
    assert counts["kept"] == 400 and counts["lost"] == 0
    assert counts["gained from a neighbour"] == e["added_other"]
    assert counts["gained"] + counts["gained from a neighbour"] == e["added"]
    assert names[-2:] == ["the sample's box", "box x 1.3"]
    c = aug["crop"]
    fig = vp.show_mutation(scene["xyz"], members, c["after_mask"], 0.7)
    counts = {t.name.split(":")[0]: len(t.x) for t in fig.data if t.mode == "markers"}
    assert counts["lost"] == c["lost"] and counts["kept"] == 400 - c["lost"]


def test_iou_scatter_has_four_quadrants_per_panel():
    iou = np.array([0.9, 0.8, 0.2, 0.6, 0.1])
    scores = {"psi": np.array([0.9, 0.3, 0.7, 0.6, 0.1]), "majority": np.full(5, 0.8)}
    correct = {"psi": np.array([True, False, True, True, True]), "majority": np.ones(5, bool)}
    fig = vp.iou_scatter(iou, scores, threshold=0.5, correct=correct)
    assert len(fig.data) == 8 and len(fig.layout.shapes) == 4
    psi = {t.name: len(t.x) for t in fig.data[:4]}
    assert psi == {"psi: kept, IoU > 0.5: 2": 2, "psi: kept, IoU ≤ 0.5: 1": 1,
                   "psi: dropped, IoU > 0.5: 1": 1, "psi: dropped, IoU ≤ 0.5: 1": 1}
    assert list(fig.data[2].marker.symbol) == ["x"]         # IoU 0.8, dropped, Psi's class wrong
    assert list(fig.data[0].marker.symbol) == ["circle", "circle"]
    assert sum(len(t.x) for t in fig.data[4:]) == 5
    empty = vp.iou_scatter(np.zeros(0), {"psi": np.zeros(0)})
    assert len(empty.data) == 4 and all(len(t.x) == 0 for t in empty.data)


def test_show_pseudo_offsets_draws_eqs_7_and_8():
    scene = two_boxes()
    members = scene["instance"] == 0
    centre = scene["xyz"][members].mean(0)
    fig = vp.show_pseudo_offsets(scene["xyz"], scene["offset"], members, centre, centre + 0.1,
                                 max_segments=25)
    names = [t.name for t in fig.data]
    assert names == ["points p: 400", "shifted p + ô", "Φ's offsets ô",
                     "pseudo offsets õ (eq. 8)", "mean-shift centre ã (eq. 7)", "true centre"]
    pseudo = np.c_[fig.data[3].x, fig.data[3].y, fig.data[3].z].astype(float)
    assert len(pseudo) == 75
    np.testing.assert_allclose(pseudo[1::3], np.repeat(centre[None], 25, 0), atol=1e-6)
    assert len(vp.show_pseudo_offsets(scene["xyz"], scene["offset"], members, centre).data) == 5


def test_show_labels_names_the_unlabelled_points():
    scene = two_boxes()
    sem = scene["semantic"].copy()
    sem[:100] = IG
    fig = vp.show_labels(scene["xyz"], sem, ["wall", "floor", "chair", "sofa", "table"],
                         max_points=10_000)
    names = {t.name: len(t.x) for t in fig.data}
    assert names == {"floor": 300, "chair": 300, "sofa": 300, "no label": 100}
