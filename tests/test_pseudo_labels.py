"""Module C, pseudo labels (paper Sec. 4.3, eqs. 6-8; Tables 4-5): labelling against brute-force
loops and hand-computed values, the ablation switches, the files and their quality."""
import os
import re

import numpy as np
import pytest
import torch

from twist_lib.data import DataFormatError, SceneDataset
from twist_lib.data.splits import write_label_splits
from twist_lib.evaluation.pseudo import PseudoLabelQuality
from twist_lib.data.pseudo_files import (LABEL_KEYS, pseudo_label_path, read_pseudo_labels,
                                         write_pseudo_labels)
from twist_lib.evaluation.pseudo import pseudo_dir_quality
from twist_lib.pseudo_labels import (make_pseudo_labels, pointwise_pseudo_labels,
                                     proposal_pseudo_labels)
from twist_lib.synthetic import generate_dataset

IG = -100
INSTANCE_CLASSES = (2, 3, 5)


# --------------------------------------------------------------------------- references
def ref_proposal(xyz, offset, ids, cls, score, threshold):
    """Eqs. 6-8 by loops over proposals and points, in Python floats."""
    n = len(xyz)
    sem, inst = [IG] * n, [IG] * n
    off, valid = np.zeros((n, 3)), [False] * n
    for j in range(len(score)):
        members = [i for i in range(n) if ids[i] == j]
        if not members or not score[j] > threshold:
            continue
        centre = [sum(float(xyz[i][d]) + float(offset[i][d]) for i in members) / len(members)
                  for d in range(3)]
        for i in members:
            sem[i], inst[i], valid[i] = int(cls[j]), j, True
            off[i] = [centre[d] - float(xyz[i][d]) for d in range(3)]
    return {"semantic": np.array(sem), "offset": off, "offset_valid": np.array(valid),
            "instance": np.array(inst)}


def ref_pointwise(probs, offset, threshold, instance_classes):
    """Point-wise confidence thresholding, one point at a time."""
    n = len(probs)
    sem, off, valid = [IG] * n, np.zeros((n, 3)), [False] * n
    for i in range(n):
        row = [float(v) for v in probs[i]]
        best = max(range(len(row)), key=lambda k: row[k])
        if row[best] > threshold:
            sem[i] = best
            if best in instance_classes:
                valid[i], off[i] = True, offset[i]
    return {"semantic": np.array(sem), "offset": off, "offset_valid": np.array(valid),
            "instance": np.full(n, IG)}


def assert_labels(got, want, keys=LABEL_KEYS):
    for k in keys:
        if k == "offset":
            np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=0, atol=1e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=k)


def random_scene(seed, n=400, n_prop=15, n_classes=8):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
    offset = rng.normal(0, 0.5, (n, 3)).astype(np.float32)
    ids = rng.integers(-1, n_prop - 1, n)            # the last proposal id has no point
    cls = rng.integers(0, n_classes, n_prop)
    score = rng.uniform(0, 1, n_prop)
    score[:2] = [0.5, 0.5000001]                     # the threshold itself is dropped
    logits = rng.normal(0, 2, (n, n_classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return dict(xyz=xyz, offset=offset, ids=ids, cls=cls, score=score, probs=probs)


@pytest.fixture(scope="module")
def scene():
    return random_scene(0)


# --------------------------------------------------------------------------- module C
@pytest.mark.parametrize("seed,threshold", [(0, 0.5), (1, 0.5), (2, 0.8)])
def test_proposal_labels_match_brute_force(seed, threshold):
    s = random_scene(seed)
    s["score"][:2] = [threshold, np.nextafter(threshold, 1)]     # the threshold itself is dropped
    got = proposal_pseudo_labels(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], threshold)
    want = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], threshold)
    assert_labels(got, want)
    assert want["offset_valid"].any() and not want["offset_valid"].all()
    assert (got["instance"][s["ids"] == 0] == IG).all()     # score exactly 0.5: dropped
    assert (got["instance"][s["ids"] == 1] == 1).all()      # just above: kept


def test_eqs_7_8_by_hand():
    # proposal 0: shifted points p + o_hat = (0,0,0), (3,0,0), (0,3,3) -> centre (1,1,1), which
    # is not the centroid of the points themselves (2/3, 2/3, 0); proposal 1 scores exactly 0.5
    xyz = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [5, 5, 5], [9, 9, 9]], dtype=np.float32)
    o_hat = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 3], [1, 1, 1], [2, 2, 2]], dtype=np.float32)
    out = proposal_pseudo_labels(xyz, o_hat, [0, 0, 0, 1, -1], [4, 7], [0.9, 0.5])
    np.testing.assert_array_equal(out["semantic"], [4, 4, 4, IG, IG])
    np.testing.assert_array_equal(out["instance"], [0, 0, 0, IG, IG])
    np.testing.assert_array_equal(out["offset_valid"], [True, True, True, False, False])
    np.testing.assert_allclose(out["offset"], [[1, 1, 1], [-1, 1, 1], [1, -1, 1], [0] * 3, [0] * 3])
    np.testing.assert_allclose(out["offset"][:3] + xyz[:3], np.ones((3, 3)))


def test_no_proposals_and_bad_inputs():
    xyz = np.zeros((3, 3), np.float32)
    out = proposal_pseudo_labels(xyz, xyz, [-1, -1, -1], np.zeros(0, int), np.zeros(0))
    assert_labels(out, {"semantic": [IG] * 3, "offset": np.zeros((3, 3)),
                        "offset_valid": [False] * 3, "instance": [IG] * 3})
    with pytest.raises(ValueError, match="proposal_ids"):
        proposal_pseudo_labels(xyz, xyz, [0, 1, 2], [1, 1], [0.9, 0.9])
    with pytest.raises(ValueError, match="offset"):
        proposal_pseudo_labels(xyz, xyz[:, :2], [0, 0, 0], [1], [0.9])
    with pytest.raises(ValueError, match="proposal_class"):
        proposal_pseudo_labels(xyz, xyz, [0, 0, 0], [1, 2], [0.9])


def test_numpy_and_torch_kinds(scene):
    s = scene
    want = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    dtypes = {"semantic": (np.int64, torch.int64), "offset": (np.float32, torch.float32),
              "offset_valid": (np.bool_, torch.bool), "instance": (np.int64, torch.int64)}
    np_out = proposal_pseudo_labels(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"])
    offset_t = torch.from_numpy(s["offset"]).requires_grad_()         # a network output
    t_out = proposal_pseudo_labels(torch.from_numpy(s["xyz"]), offset_t, torch.from_numpy(s["ids"]),
                                   torch.from_numpy(s["cls"]), torch.from_numpy(s["score"]))
    pw_np = pointwise_pseudo_labels(s["probs"], s["offset"], 0.5, INSTANCE_CLASSES)
    pw_t = pointwise_pseudo_labels(torch.from_numpy(s["probs"]).float(), offset_t, 0.5,
                                   torch.tensor(INSTANCE_CLASSES))
    for out in (np_out, pw_np):
        assert set(out) == set(LABEL_KEYS)
        assert all(isinstance(v, np.ndarray) and v.dtype == dtypes[k][0] for k, v in out.items())
    for out in (t_out, pw_t):
        assert all(isinstance(v, torch.Tensor) and v.dtype == dtypes[k][1] and not v.requires_grad
                   for k, v in out.items())
    assert_labels(np_out, want)
    assert_labels({k: v.numpy() for k, v in t_out.items()}, want)
    assert_labels({k: v.numpy() for k, v in pw_t.items()},
                  ref_pointwise(s["probs"], s["offset"], 0.5, INSTANCE_CLASSES))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_on_device(scene):
    s = scene
    cuda = {k: torch.as_tensor(v).cuda() for k, v in s.items()}
    out = make_pseudo_labels(cuda["xyz"], cuda["probs"], cuda["offset"], cuda["ids"], cuda["cls"],
                             cuda["score"], instance_classes=INSTANCE_CLASSES,
                             offset_to_semantic=False)
    assert all(v.is_cuda for v in out.values())
    want = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    want["semantic"] = ref_pointwise(s["probs"], s["offset"], 0.9, INSTANCE_CLASSES)["semantic"]
    assert_labels({k: v.cpu().numpy() for k, v in out.items()}, want)


# --------------------------------------------------------------------------- point-wise
@pytest.mark.parametrize("threshold,classes", [(0.5, INSTANCE_CLASSES), (0.8, (0, 7)), (0.3, ())])
def test_pointwise_matches_brute_force(scene, threshold, classes):
    got = pointwise_pseudo_labels(scene["probs"], scene["offset"], threshold, classes)
    want = ref_pointwise(scene["probs"], scene["offset"], threshold, classes)
    assert_labels(got, want)
    assert (want["semantic"] != IG).any() and (want["semantic"] == IG).any()


def test_pointwise_threshold_is_strict():
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.95, 0.05], [0.5, 0.5]])
    off = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = pointwise_pseudo_labels(probs, off, 0.9, instance_classes=[1])
    np.testing.assert_array_equal(out["semantic"], [IG, IG, 0, IG])     # 0.9 is not > 0.9
    np.testing.assert_array_equal(out["offset_valid"], [False] * 4)     # class 0: background
    out = pointwise_pseudo_labels(probs, off, 0.85, instance_classes=[1])
    np.testing.assert_array_equal(out["semantic"], [0, 1, 0, IG])
    np.testing.assert_array_equal(out["offset_valid"], [False, True, False, False])
    np.testing.assert_array_equal(out["offset"], [[0, 0, 0], [3, 4, 5], [0, 0, 0], [0, 0, 0]])


# --------------------------------------------------------------------------- ablation switches
def call(s, **kw):
    return make_pseudo_labels(s["xyz"], s["probs"], s["offset"], s["ids"], s["cls"], s["score"],
                              instance_classes=INSTANCE_CLASSES, **kw)


def test_switches(scene):
    s = scene
    prop = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    point = ref_pointwise(s["probs"], s["offset"], 0.9, INSTANCE_CLASSES)
    none_sem, no_off = np.full(len(s["xyz"]), IG), {"offset": np.zeros((len(s["xyz"]), 3)),
                                                   "offset_valid": np.zeros(len(s["xyz"]), bool)}
    assert (prop["semantic"] != point["semantic"]).any()
    assert_labels(call(s), prop)                                        # Table 4 groups V-VI
    assert_labels(call(s, update="pointwise"), point)                   # group IV
    assert_labels(call(s, update="pointwise", pointwise_threshold=0.6),
                  ref_pointwise(s["probs"], s["offset"], 0.6, INSTANCE_CLASSES))
    assert_labels(call(s, update="pointwise", offset_to_semantic=False), point)
    assert_labels(call(s, threshold=0.7),
                  ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.7))
    # Table 5, off-to-sem blocked: point-wise semantics, offsets (and instances) of eqs. 7-8
    assert_labels(call(s, offset_to_semantic=False), {**prop, "semantic": point["semantic"]})
    # group III (offsets only) and group II (semantics only), each on both strategies
    assert_labels(call(s, use_semantic=False), {**prop, "semantic": none_sem})
    assert_labels(call(s, use_offset=False), {**prop, **no_off})
    assert_labels(call(s, update="pointwise", use_semantic=False), {**point, "semantic": none_sem})
    assert_labels(call(s, update="pointwise", use_offset=False), {**point, **no_off})
    with pytest.raises(ValueError, match="unknown pseudo-label update"):
        call(s, update="mean-shift")


def test_unused_inputs_may_be_none(scene):
    s = scene
    out = make_pseudo_labels(s["xyz"], None, s["offset"], s["ids"], s["cls"], s["score"],
                             instance_classes=INSTANCE_CLASSES)
    assert_labels(out, ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5))
    out = make_pseudo_labels(None, s["probs"], s["offset"], None, None, None,
                             instance_classes=INSTANCE_CLASSES, update="pointwise")
    assert_labels(out, ref_pointwise(s["probs"], s["offset"], 0.9, INSTANCE_CLASSES))


# --------------------------------------------------------------------------- files
def test_file_round_trip_and_atomic_write(tmp_path, scene, monkeypatch):
    s = scene
    labels = proposal_pseudo_labels(torch.from_numpy(s["xyz"]), torch.from_numpy(s["offset"]),
                                    torch.from_numpy(s["ids"]), s["cls"], s["score"])
    path = pseudo_label_path(tmp_path / "round_1" / "pseudo", "scene_0007")
    assert path == tmp_path / "round_1" / "pseudo" / "scene_0007.npz"
    assert write_pseudo_labels(path, labels) == path
    assert os.listdir(path.parent) == ["scene_0007.npz"]                 # no temporary left
    back = read_pseudo_labels(path, num_points=len(s["xyz"]))
    for k in LABEL_KEYS:
        assert isinstance(back[k], np.ndarray)
        np.testing.assert_array_equal(back[k], labels[k].numpy())
    # a write that fails half-way leaves the previous file intact and no temporary behind
    def broken(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        write_pseudo_labels(path, {k: v[:5] for k, v in labels.items()})
    monkeypatch.undo()
    assert os.listdir(path.parent) == ["scene_0007.npz"]
    assert len(read_pseudo_labels(path)["semantic"]) == len(s["xyz"])


def good_arrays(n=6):
    return {"semantic": np.full(n, 3), "offset": np.zeros((n, 3), np.float32),
            "offset_valid": np.ones(n, bool), "instance": np.zeros(n, np.int64)}


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "npy", "no_key", "shape",
                                  "offset_dtype", "valid_dtype", "negative", "count"])
def test_bad_files_name_the_file(tmp_path, case):
    path = tmp_path / "scene_a.npz"
    arrays = good_arrays()
    if case == "garbage":
        path.write_bytes(b"not an npz at all")
    elif case == "truncated":
        np.savez_compressed(path, **arrays)
        path.write_bytes(path.read_bytes()[:40])
    elif case == "npy":
        with open(path, "wb") as f:
            np.save(f, arrays["semantic"])
    elif case != "missing":
        arrays = {"no_key": {k: v for k, v in arrays.items() if k != "instance"},
                  "shape": {**arrays, "offset": np.zeros((6, 2), np.float32)},
                  "offset_dtype": {**arrays, "offset": np.zeros((6, 3), np.int64)},
                  "valid_dtype": {**arrays, "offset_valid": np.ones(6, np.int64)},
                  "negative": {**arrays, "semantic": np.full(6, -1)},
                  "count": arrays}[case]
        np.savez_compressed(path, **arrays)
    error = FileNotFoundError if case == "missing" else DataFormatError
    with pytest.raises(error, match=re.escape(str(path))):
        read_pseudo_labels(path, num_points=5 if case == "count" else None)


def test_writing_bad_labels_fails_before_touching_disk(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(DataFormatError, match="offset"):
        write_pseudo_labels(path, {**good_arrays(), "offset": np.zeros((5, 3), np.float32)})
    assert not path.exists() and os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- quality
def test_offset_valid_in_pseudo_dir_quality():
    gt_sem, gt_inst = [0, 1, 1, 2], [IG, 0, 0, 1]
    gt_off = np.zeros((4, 3))
    off = np.array([[9, 9, 9], [3, 4, 0], [0, 0, 0], [0, 6, 8]], float)
    # offsets without semantics (Table 4 group III): default convention scores no offset
    q = PseudoLabelQuality(3).add([IG] * 4, off, gt_sem, gt_off, gt_inst).result()
    assert np.isnan(q["offset_error"]) and q["coverage"] == 0
    # point 0 has no gt instance; points 1 and 3 scored: (5 + 10) / 2
    q = PseudoLabelQuality(3).add([IG] * 4, off, gt_sem, gt_off, gt_inst,
                                  offset_valid=[True, True, False, True]).result()
    assert q["offset_error"] == pytest.approx(7.5) and q["n_offset_scored"] == 2
    assert q["coverage"] == 0 and np.isnan(q["sem_acc"])


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 10, size="cpu", seed=3, val_fraction=0.2, progress=False)
    write_label_splits(root, ratios=(20,), seed=0)
    return SceneDataset(root, "unlabelled", label_ratio=20)


def write_from_gt(dataset, pseudo_dir, shift=(0.0, 0.0, 0.0), semantic=True):
    """Pseudo labels from the ground truth: gt class, gt offset (+ shift) on instance points."""
    n_labelled = n_points = 0
    for i, name in enumerate(dataset.names):
        gt = dataset.ground_truth(i)
        on_inst = gt["instance"] != IG
        write_pseudo_labels(pseudo_label_path(pseudo_dir, name), {
            "semantic": gt["semantic"] if semantic else np.full(len(on_inst), IG),
            "offset": np.where(on_inst[:, None], gt["offset"] + np.float32(shift), 0),
            "offset_valid": on_inst, "instance": gt["instance"]})
        n_labelled += int((gt["semantic"] != IG).sum())
        n_points += len(on_inst)
    return n_labelled / n_points


def test_quality_of_perfect_labels(unlabelled, tmp_path):
    assert len(unlabelled) == 6
    coverage = write_from_gt(unlabelled, tmp_path)
    q = pseudo_dir_quality(tmp_path, unlabelled, progress=True)
    assert q["sem_acc"] == 1 and q["sem_macc"] == 1 and q["offset_error"] == 0
    assert q["coverage"] == pytest.approx(coverage) and 0 < coverage <= 1
    assert q["n_offset_scored"] > 0
    assert [r["name"] for r in q["per_scene"]] == unlabelled.names
    for row, i in zip(q["per_scene"], range(len(unlabelled))):
        gt = unlabelled.ground_truth(i)
        assert set(row) == {"name", "sem_acc", "coverage", "offset_error"}
        assert row["sem_acc"] == 1 and row["offset_error"] == 0
        assert row["coverage"] == pytest.approx(np.mean(gt["semantic"] != IG))


def test_quality_of_shifted_offsets_without_semantics(unlabelled, tmp_path):
    write_from_gt(unlabelled, tmp_path, shift=(0.3, 0.0, 0.4), semantic=False)
    q = pseudo_dir_quality(tmp_path, unlabelled)
    assert q["offset_error"] == pytest.approx(0.5, abs=1e-5) and q["coverage"] == 0
    assert all(r["offset_error"] == pytest.approx(0.5, abs=1e-5) for r in q["per_scene"])


def test_quality_missing_file_is_named(unlabelled, tmp_path):
    write_from_gt(unlabelled, tmp_path)
    gone = pseudo_label_path(tmp_path, unlabelled.names[2])
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(gone))):
        pseudo_dir_quality(tmp_path, unlabelled)


# --------------------------------------------------------------------------- extensions
def ref_spread(xyz, offset, ids, score, threshold):
    """Per kept proposal, the mean distance of p + o_hat from its mean, by loops."""
    out = {}
    for j in range(len(score)):
        members = [i for i in range(len(xyz)) if ids[i] == j]
        if not members or not score[j] > threshold:
            continue
        shifted = [[float(xyz[i][d]) + float(offset[i][d]) for d in range(3)] for i in members]
        centre = [sum(p[d] for p in shifted) / len(shifted) for d in range(3)]
        out[j] = sum(sum((p[d] - centre[d]) ** 2 for d in range(3)) ** 0.5
                     for p in shifted) / len(shifted)
    return out


def test_centre_spread_check_matches_brute_force(scene):
    s = scene
    spread = ref_spread(s["xyz"], s["offset"], s["ids"], s["score"], 0.5)
    limit = float(np.median(list(spread.values())))
    want = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    drop = np.array([i >= 0 and spread.get(int(i), 0) > limit for i in want["instance"]])
    assert drop.any() and (want["offset_valid"] & ~drop).any()
    want["offset_valid"] = want["offset_valid"] & ~drop
    want["offset"][drop] = 0.0                      # classes and instances stay
    assert_labels(proposal_pseudo_labels(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"],
                                         max_spread=limit), want)
    assert_labels(call(s, max_spread=limit), want)
    assert_labels(call(s, max_spread=1e9), ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"],
                                                        s["score"], 0.5))


def test_centre_spread_drops_a_merged_proposal_by_hand():
    # proposal 0: two points voting for the same centre (spread 0); proposal 1: two objects
    # merged, votes 2 m apart (spread 1 m); both keep their class and instance
    xyz = np.array([[0, 0, 0], [1, 0, 0], [5, 0, 0], [7, 0, 0]], np.float32)
    off = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)
    out = proposal_pseudo_labels(xyz, off, [0, 0, 1, 1], [2, 3], [0.9, 0.9], max_spread=0.5)
    np.testing.assert_array_equal(out["semantic"], [2, 2, 3, 3])
    np.testing.assert_array_equal(out["instance"], [0, 0, 1, 1])
    np.testing.assert_array_equal(out["offset_valid"], [True, True, False, False])
    np.testing.assert_allclose(out["offset"], [[0.5, 0, 0], [-0.5, 0, 0], [0, 0, 0], [0, 0, 0]])
    out = proposal_pseudo_labels(xyz, off, [0, 0, 1, 1], [2, 3], [0.9, 0.9], max_spread=1.0)
    np.testing.assert_array_equal(out["offset_valid"], [True] * 4)     # 1.0 is within 1.0


def _two_clumps():
    """Proposal 0: points on two touching objects (x in [0, 1) and [1, 2)) whose votes p + o_hat
    go to the objects' own centres (0.5, 0, 0) and (1.5, 0, 0), give or take 1 cm: the merged
    proposal's spread is ~0.5 m; proposal 1: three points voting for (5, 0, 0)."""
    rng = np.random.default_rng(0)
    xa = np.c_[rng.uniform(0, 1, 6), np.zeros(6), np.zeros(6)]
    xb = np.c_[rng.uniform(1, 2, 4), np.zeros(4), np.zeros(4)]
    xc = np.array([[4.0, 0, 0], [5, 0, 0], [6, 0, 0]])
    xyz = np.concatenate([xa, xb, xc]).astype(np.float32)
    votes = np.concatenate([np.tile([0.5, 0, 0], (6, 1)), np.tile([1.5, 0, 0], (4, 1)),
                            np.tile([5.0, 0, 0], (3, 1))])
    votes[:10, 1] = rng.uniform(-0.01, 0.01, 10)
    return xyz, (votes - xyz).astype(np.float32), np.array([0] * 10 + [1] * 3)


def test_a_merged_proposal_is_split_into_parts_with_their_own_centres():
    xyz, off, ids = _two_clumps()
    args = (xyz, off, ids, [4, 2], [0.9, 0.9])
    plain = proposal_pseudo_labels(*args, max_spread=0.1)
    np.testing.assert_array_equal(plain["offset_valid"], [False] * 10 + [True] * 3)
    out = proposal_pseudo_labels(*args, max_spread=0.1, split_parts=3, min_points=2)
    np.testing.assert_array_equal(out["offset_valid"], [True] * 13)
    np.testing.assert_array_equal(out["semantic"], [4] * 10 + [2] * 3)     # eq. 6 unchanged
    np.testing.assert_array_equal(out["instance"], [0] * 6 + [2] * 4 + [1] * 3)  # new id 2
    # each part's centre is the mean of its own votes (eq. 7 on the part)
    votes = xyz.astype(np.float64) + off
    for part in (slice(0, 6), slice(6, 10)):
        want = votes[part].mean(0) - xyz[part]
        np.testing.assert_allclose(out["offset"][part], want, atol=1e-6)
    np.testing.assert_allclose(out["offset"][10:], plain["offset"][10:])
    # no cut: parts smaller than min_points, or a single part allowed (split_parts=0)
    for kw in ({"split_parts": 3, "min_points": 5}, {"split_parts": 0}):
        got = proposal_pseudo_labels(*args, max_spread=0.1, **kw)
        np.testing.assert_array_equal(got["offset_valid"], plain["offset_valid"])
        np.testing.assert_array_equal(got["instance"], plain["instance"])
    # the labelling switch passes it through
    got = make_pseudo_labels(xyz, None, *args[1:], instance_classes=INSTANCE_CLASSES,
                             max_spread=0.1, split_parts=3, min_points=2)
    np.testing.assert_array_equal(got["instance"], out["instance"])


def test_split_by_votes_takes_the_fewest_parts_that_pass_or_none():
    from twist_lib.pseudo_labels import split_by_votes
    centres = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    votes = centres.repeat_interleave(4, 0) + 0.001 * torch.arange(12.0)[:, None]
    part = split_by_votes(votes, 0.05, 2, 4)
    assert len(set(part.tolist())) == 3                                 # 2 parts fail, 3 pass
    for q in range(3):                                                  # one clump per part
        assert len(set(part[4 * q:4 * q + 4].tolist())) == 1
    assert split_by_votes(votes, 0.05, 2, 2) is None                    # 3 clumps, 2 allowed
    line = torch.stack([torch.linspace(0, 1, 40), torch.zeros(40), torch.zeros(40)], 1)
    assert split_by_votes(line.double(), 0.01, 5, 4) is None            # never within 1 cm
    # two 10 cm cubes of votes (spread ~5 cm each): 60 cm apart they are two objects; 15 cm
    # apart (centres < 4 spreads apart) the clumps touch: one object with diffuse votes
    g = torch.Generator().manual_seed(0)
    for gap, parts in ((0.6, [0] * 30 + [1] * 30), (0.15, None)):
        cubes = torch.rand(60, 3, generator=g, dtype=torch.float64) * 0.1
        cubes[30:, 0] += gap
        got = split_by_votes(cubes, 0.07, 5, 3)
        assert (got if got is None else got.tolist()) == parts


def test_point_confidence_drops_unsure_points_of_kept_proposals_only():
    # proposal 0 (class 2): four points, Phi's p(class 2) = .9 .6 .4 .95; proposal 1 (class 3,
    # score .3) is not kept; point 6 in no proposal is confident floor (class 1)
    xyz = np.array([[0, 0, 0], [.1, 0, 0], [.2, 0, 0], [.3, 0, 0], [2, 0, 0], [2.1, 0, 0],
                    [5, 0, 0]], np.float32)
    probs = np.full((7, 4), 0.0, np.float32)
    probs[:4, 2] = [.9, .6, .4, .95]
    probs[:4, 1] = 1 - probs[:4, 2]
    probs[4:6, 3], probs[6, 1] = 1.0, 0.97
    ids = [0, 0, 0, 0, 1, 1, -1]
    base = dict(instance_classes=INSTANCE_CLASSES, background_classes=(0, 1),
                background_threshold=0.9)
    args = (xyz, probs, np.zeros((7, 3), np.float32), ids, [2, 3], [0.8, 0.3])
    plain = make_pseudo_labels(*args, **base)
    np.testing.assert_array_equal(plain["semantic"], [2, 2, 2, 2, IG, IG, 1])
    got = make_pseudo_labels(*args, **base, point_confidence=0.5)
    np.testing.assert_array_equal(got["semantic"], [2, 2, IG, 2, IG, IG, 1])
    got = make_pseudo_labels(*args, **base, point_confidence=0.9)     # strictly above
    np.testing.assert_array_equal(got["semantic"], [IG, IG, IG, 2, IG, IG, 1])
    for key in ("offset", "offset_valid", "instance"):                # offsets untouched
        np.testing.assert_array_equal(got[key], plain[key])


def test_background_labels_fill_only_unlabelled_background_points(scene):
    s, background = scene, (0, 1)
    got = call(s, background_classes=background, background_threshold=0.6)
    want = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    conf, arg = s["probs"].max(1), s["probs"].argmax(1)
    add = (want["semantic"] == IG) & (conf > 0.6) & np.isin(arg, background)
    assert add.any() and ((want["semantic"] != IG) & (conf > 0.6) & np.isin(arg, background)).any()
    want["semantic"] = np.where(add, arg, want["semantic"])
    assert_labels(got, want)                        # offsets, instances: eqs. 7-8 unchanged
    prop = ref_proposal(s["xyz"], s["offset"], s["ids"], s["cls"], s["score"], 0.5)
    assert_labels(call(s, background_classes=background, background_threshold=0.0), prop)
    assert_labels(call(s, background_classes=(), background_threshold=0.6), prop)
    assert_labels(call(s, update="pointwise", background_classes=background,
                       background_threshold=0.6),
                  ref_pointwise(s["probs"], s["offset"], 0.9, INSTANCE_CLASSES))
    assert (np.asarray(call(s, use_semantic=False, background_classes=background,
                            background_threshold=0.6)["semantic"]) == IG).all()
