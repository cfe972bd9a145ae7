"""Module A as the book uses it: clustering a prediction (guided or class-agnostic), re-clustering
a stored prediction, the benchmark of stored predictions, mixed-class proposals, background classes.

References are independent of the code under test: hand-made scenes with known proposals, a
per-proposal loop for the mixed-class count, and :func:`evaluate_instances` /
:func:`semantic_scores` for the benchmark.
"""
import math

import numpy as np
import pytest
import torch

from twist_lib.config import Config
from twist_lib.data import gt_ids, read_meta
from twist_lib.data.dataset import SceneDataset
from twist_lib.evaluation import ClassSpec, evaluate_instances, semantic_scores
from twist_lib.proposals import background_classes, cluster_prediction
from twist_lib.inference import (ScenePrediction,
                                 evaluate_model, evaluate_predictions, mixed_proposals,
                                 predict_scene, recluster, true_class_probs)
from twist_lib.synthetic import generate_dataset

K = 5                      # classes: 0 wall, 1 floor (background), 2 chair, 3 sofa, 4 table
BACKGROUND = (0, 1)
CHAIR, TABLE = 2, 4
STEP = 0.02                # point spacing along the line; radius 0.03 joins neighbours only


def touching_scene():
    """A line of points: 10 chair points, then 6 table points touching them, then 4 wall points
    touching the table, then 5 chair points far away. Offsets are zero."""
    x = np.r_[np.arange(20) * STEP, 5 + np.arange(5) * STEP]
    xyz = np.c_[x, np.zeros_like(x), np.zeros_like(x)]
    semantic = np.r_[[CHAIR] * 10, [TABLE] * 6, [0] * 4, [CHAIR] * 5]
    instance = np.r_[[0] * 10, [1] * 6, [-100] * 4, [2] * 5]
    probs = np.full((len(x), K), 0.05)
    probs[np.arange(len(x)), semantic] = 0.8
    return {"xyz": xyz, "semantic": semantic, "instance": instance, "name": "line",
            "probs": probs, "offset": np.zeros_like(xyz)}


def as_prediction(scene, probs=None):
    probs = scene["probs"] if probs is None else probs
    return ScenePrediction(scene["name"], scene["xyz"], probs, scene["offset"],
                           proposal_ids=np.full(len(probs), -1), classes=np.zeros(0, np.int64),
                           scores=np.zeros(0))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_guided_keeps_touching_objects_apart_class_agnostic_joins_them(kind):
    s = touching_scene()
    conv = (lambda a: torch.as_tensor(a, dtype=torch.float32)) if kind == "torch" else (lambda a: a)
    args = conv(s["xyz"]), conv(s["probs"]), conv(s["offset"])

    ids, props = cluster_prediction(*args, BACKGROUND, 0.03, 1)
    assert isinstance(ids, torch.Tensor) == (kind == "torch")
    assert isinstance(props.scores, torch.Tensor) == (kind == "torch")
    ids, classes, scores = (np.asarray(t) for t in (ids, props.classes, props.scores))
    np.testing.assert_array_equal(ids, np.r_[[0] * 10, [1] * 6, [-1] * 4, [2] * 5])
    np.testing.assert_array_equal(classes, [CHAIR, TABLE, CHAIR])
    np.testing.assert_allclose(scores, 0.8, rtol=1e-6)

    ids, props = cluster_prediction(*args, BACKGROUND, 0.03, 1, class_agnostic=True)
    ids, classes, scores = (np.asarray(t) for t in (ids, props.classes, props.scores))
    np.testing.assert_array_equal(ids, np.r_[[0] * 16, [-1] * 4, [1] * 5])  # wall stays out
    np.testing.assert_array_equal(classes, [CHAIR, CHAIR])                  # majority: 10 of 16
    np.testing.assert_allclose(scores, [(10 * 0.8 + 6 * 0.05) / 16, 0.8], rtol=1e-6)

    # the minimum size drops the 6-point table (guided) but not the 16-point mixture
    ids, _ = cluster_prediction(*args, BACKGROUND, 0.03, 7)
    np.testing.assert_array_equal(np.asarray(ids), np.r_[[0] * 10, [-1] * 10, [-1] * 5])
    ids, _ = cluster_prediction(*args, BACKGROUND, 0.03, 7, class_agnostic=True)
    np.testing.assert_array_equal(np.asarray(ids), np.r_[[0] * 16, [-1] * 9])
    # a radius above the 5 m gap joins the far chair as well
    ids, _ = cluster_prediction(*args, BACKGROUND, 6.0, 1)
    np.testing.assert_array_equal(np.asarray(ids), np.r_[[0] * 10, [1] * 6, [-1] * 4, [0] * 5])


def test_recluster_with_the_one_hot_oracle():
    s = touching_scene()
    wrong = s["probs"].copy()
    wrong[7:10] = wrong[7:10][:, [0, 1, TABLE, 3, CHAIR]]   # chair points 7..9 predicted as table
    pred = as_prediction(s, wrong)

    phi = recluster(pred, 0.03, 1, BACKGROUND)
    np.testing.assert_array_equal(phi.proposal_ids, np.r_[[0] * 7, [1] * 9, [-1] * 4, [2] * 5])
    np.testing.assert_array_equal(phi.classes, [CHAIR, TABLE, CHAIR])
    assert phi.probs is pred.probs and pred.proposal_ids.max() == -1   # the input is unchanged

    onehot = true_class_probs(s["semantic"], K)
    expected = np.zeros((len(s["semantic"]), K), np.float32)
    for i, c in enumerate(s["semantic"]):
        expected[i, c] = 1
    np.testing.assert_array_equal(onehot, expected)
    oracle = recluster(pred, 0.03, 1, BACKGROUND, probs=onehot)
    np.testing.assert_array_equal(oracle.proposal_ids, np.r_[[0] * 10, [1] * 6, [-1] * 4, [2] * 5])
    np.testing.assert_array_equal(oracle.classes, [CHAIR, TABLE, CHAIR])
    np.testing.assert_array_equal(oracle.scores, 1.0)
    np.testing.assert_array_equal(oracle.semantic, s["semantic"])
    np.testing.assert_array_equal(oracle.offset, pred.offset)
    agnostic = recluster(pred, 0.03, 1, BACKGROUND, class_agnostic=True, probs=onehot)
    np.testing.assert_array_equal(agnostic.proposal_ids, np.r_[[0] * 16, [-1] * 4, [1] * 5])


def test_true_class_probs_of_unlabelled_points_are_zero():
    probs = true_class_probs(np.array([2, -100, 0]), 3)
    np.testing.assert_array_equal(probs, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    assert probs.dtype == np.float32


def mixed_reference(pred, scene, min_fraction=0.1):
    """The book's original per-proposal loop."""
    count = 0
    for j in range(len(pred.classes)):
        members = pred.proposal_ids == j
        inst = scene["instance"][members]
        objects, sizes = np.unique(inst[inst >= 0], return_counts=True)
        big = objects[sizes >= min_fraction * members.sum()]
        classes = {int(np.bincount(scene["semantic"][scene["instance"] == o]).argmax()) for o in big}
        count += len(classes) >= 2
    return count


def test_mixed_proposals_against_a_loop():
    s = touching_scene()
    assert mixed_proposals(recluster(as_prediction(s), 0.03, 1, BACKGROUND), s) == 0
    agnostic = recluster(as_prediction(s), 0.03, 1, BACKGROUND, class_agnostic=True)
    assert mixed_proposals(agnostic, s) == 1

    rng = np.random.default_rng(0)
    for trial in range(200):
        n, n_obj, n_prop = rng.integers(1, 300), rng.integers(0, 12), rng.integers(0, 15)
        instance = rng.integers(-1, n_obj, n) if n_obj else np.full(n, -1)
        instance = np.where(instance < 0, -100, instance * 3 + 7)          # sparse object ids
        obj_class = rng.integers(0, 6, 3 * n_obj + 8)
        semantic = np.where(instance >= 0, obj_class[instance.clip(0)], rng.integers(0, 6, n))
        flip = rng.random(n) < 0.2                                        # impure objects
        semantic[flip] = rng.integers(0, 6, flip.sum())
        ids = rng.integers(-1, n_prop, n) if n_prop else np.full(n, -1)
        used = np.unique(ids[ids >= 0])                                   # ids 0..P-1, each used
        ids = np.where(ids >= 0, np.searchsorted(used, ids), -1)
        pred = ScenePrediction("r", np.zeros((n, 3)), np.zeros((n, 6)), np.zeros((n, 3)), ids,
                               np.zeros(len(used), np.int64), np.zeros(len(used)))
        scene = {"instance": instance, "semantic": semantic}
        fraction = rng.choice([0.1, 0.3, 0.5])
        assert mixed_proposals(pred, scene, fraction) == mixed_reference(pred, scene, fraction), trial


def test_background_ids():
    scannet = ClassSpec.builtin("scannet")
    assert scannet.background_ids == (0, 1)
    assert [scannet.names[c] for c in scannet.background_ids] == ["wall", "floor"]
    synthetic = ClassSpec.builtin("synthetic")
    assert [synthetic.names[c] for c in synthetic.background_ids] == ["wall", "floor"]
    assert ClassSpec.builtin("s3dis").background_ids == ()
    assert ClassSpec(["a", "b", "c", "d"], [1, 2, 3, 4], [3, 1]).background_ids == (0, 2)
    meta = {"class_names": list(scannet.names), "num_classes": 20, "instance_classes": list(range(2, 20))}
    assert background_classes(meta) == [0, 1]


# ------------------------------------------------------------------------- the benchmark

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 6, size="cpu", seed=5, val_fraction=0.5, progress=False)
    return root


class OracleModel(torch.nn.Module):
    """The ground truth as prediction (one-hot logits, exact offsets); with ``noise`` a share of
    the points gets a random class and a random offset, so the benchmark is not trivial."""

    def __init__(self, num_classes, noise=0.0):
        super().__init__()
        self.num_classes, self.noise = num_classes, noise
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        sem = batch["semantic"].clamp(min=0)
        offset = batch["offset"].clone()
        if self.noise:
            g = torch.Generator().manual_seed(len(sem))
            hit = torch.rand(len(sem), generator=g) < self.noise
            sem = torch.where(hit, torch.randint(0, self.num_classes, sem.shape, generator=g), sem)
            offset[hit] = torch.rand(int(hit.sum()), 3, generator=g) - 0.5
        logits = torch.nn.functional.one_hot(sem, self.num_classes).float() * 5
        return {"semantic_logits": logits, "offset": offset}


def bench_cfg(**kw):
    return Config.for_profile("smoke", **{"cluster_radius": 0.03, "cluster_min_points": 5,
                                          "eval_min_region": 20, "val_scenes": 0,
                                          "progress": False, **kw})


def test_evaluate_predictions_of_the_ground_truth_is_perfect(data_root):
    meta = read_meta(data_root)
    spec = ClassSpec.from_meta(meta)
    scenes = [s for s in SceneDataset(data_root, "val")]
    preds = []
    for s in scenes:
        objects = np.unique(s["instance"][(s["instance"] >= 0)
                                          & ~np.isin(s["semantic"], spec.background_ids)])
        ids = np.where(np.isin(s["instance"], objects), np.searchsorted(objects, s["instance"]), -1)
        classes = np.array([np.bincount(s["semantic"][s["instance"] == o]).argmax() for o in objects])
        probs = true_class_probs(s["semantic"], spec.num_classes)
        preds.append(ScenePrediction(s["name"], s["xyz"], probs, s["offset"], ids, classes,
                                     np.ones(len(objects))))
    result = evaluate_predictions(preds, scenes, spec, min_region_size=20)
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)
    assert result["miou"] == pytest.approx(1.0) and result["macc"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        evaluate_predictions(preds, scenes[:-1], spec)


def test_evaluate_predictions_equals_evaluate_model(data_root):
    meta = read_meta(data_root)
    spec = ClassSpec.from_meta(meta)
    val = SceneDataset(data_root, "val")
    cfg = bench_cfg()
    model = OracleModel(meta["num_classes"], noise=0.3)
    from_model = evaluate_model(model, val, meta, cfg, keep_predictions=True)
    assert 0 < from_model["AP"] < 1 and 0 < from_model["miou"] < 1

    scenes = [val[i] for i in range(len(val))]
    preds = [predict_scene(model, s, meta, cfg) for s in scenes]
    for a, b in zip(preds, from_model["predictions"]):
        np.testing.assert_array_equal(a.proposal_ids, b.proposal_ids)
    result = evaluate_predictions(preds, scenes, spec, cfg.eval_min_region)
    for key in ("AP", "AP50", "AP25", "miou", "macc"):
        assert result[key] == pytest.approx(from_model[key], nan_ok=True), key

    # independent accumulation: the benchmark over all scenes at once, the confusion matrix of
    # the concatenated points
    reference = evaluate_instances([p.instances(spec) for p in preds],
                                   [gt_ids(s["semantic"], s["instance"], spec.benchmark_ids)
                                    for s in scenes], spec, min_region_size=cfg.eval_min_region)
    sem = semantic_scores(np.concatenate([p.semantic for p in preds]),
                          np.concatenate([s["semantic"] for s in scenes]), spec.num_classes)
    for key in ("AP", "AP50", "AP25"):
        assert result[key] == pytest.approx(reference[key], nan_ok=True), key
    assert result["miou"] == pytest.approx(sem["miou"]) and result["macc"] == pytest.approx(sem["macc"])

    # re-clustering the stored predictions at the same settings changes nothing
    again = [recluster(p, cfg.cluster_radius, cfg.cluster_min_points, spec.background_ids)
             for p in preds]
    again = evaluate_predictions(again, scenes, spec, cfg.eval_min_region)
    assert again["AP"] == pytest.approx(result["AP"])


# ------------------------------------------- module A's step 1 and k-d tree components (CPU)
# Step 1 of CPU input runs in NumPy (keys, and a radix sort below _NUMPY_SORT_MAX keys), other
# devices in torch; both implementations are checked here against scalar Python / NumPy
# references on the CPU, and the k-d tree search's components against a union-find.

from twist_lib import neighbour_graph as ng  # noqa: E402
from twist_lib.clustering import semantic_bfs  # noqa: E402


def reference_cell_keys(points, classes, radius):
    """Step 1's keys, one point at a time in Python floats and ints."""
    side = radius / math.sqrt(3.0) * ng._CELL_SHRINK
    cells = [[math.floor(v / side) for v in p] for p in points.tolist()]
    low = [min(c[a] for c in cells) for a in range(3)]
    dims = [max(c[a] for c in cells) - low[a] + 3 for a in range(3)]
    keys = []
    for cell, k in zip(cells, classes.tolist()):
        key = k - int(classes.min())
        for a in range(3):
            key = key * dims[a] + cell[a] - low[a]
        keys.append(key)
    return dims, keys


def step1_implementations():
    """``name -> f(xyz, cls, radius)`` for the NumPy and the torch keys (tensors in and out)."""
    def numpy_keys(xyz, cls, radius):
        return ng._cell_keys_numpy(xyz.numpy(), cls.numpy(), side(radius), radius)

    def torch_keys(xyz, cls, radius):
        return ng._cell_keys_torch(xyz, cls, side(radius), radius)

    def side(radius):
        return radius / math.sqrt(3.0) * ng._CELL_SHRINK
    return {"numpy": numpy_keys, "torch": torch_keys}


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_cell_keys_match_a_python_reference(impl):
    keys_of = step1_implementations()[impl]
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(1, 300))
        radius = float(rng.choice([0.03, 0.05, 1 / 16]))
        points = rng.uniform(-1, 1, (n, 3)) * rng.choice([0.01, 0.3, 3.0]) + rng.uniform(-5, 5, 3)
        if trial % 4 == 0:
            points = np.round(points * 64) / 64          # exact multiples: cell boundaries
        classes = rng.choice([3, 7, 8, 100], n)
        dims, keys = keys_of(torch.from_numpy(points), torch.from_numpy(classes), radius)
        ref_dims, ref_keys = reference_cell_keys(points, classes, radius)
        assert dims == ref_dims, trial
        assert keys.dtype == torch.int64 and keys.tolist() == ref_keys, trial


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_cell_keys_errors(impl):
    keys_of = step1_implementations()[impl]
    side = 0.03 / math.sqrt(3.0) * ng._CELL_SHRINK
    cls = torch.zeros(2, dtype=torch.int64)
    far = torch.tensor([[1e9, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"coordinates up to 1e\+09 are too large for radius 0.03"):
        keys_of(far, cls, 0.03)
    wide = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64) * 2e6 * side
    with pytest.raises(ValueError, match="too large for 64-bit keys"):
        keys_of(wide, cls, 0.03)
    with pytest.raises(ValueError, match="too large for 64-bit keys"):   # the CPU path
        semantic_bfs(wide.numpy(), cls.numpy(), 0.03, 1)


@pytest.mark.parametrize("branch", ["numpy radix sort", "torch sort"])
def test_cells_match_a_stable_argsort(branch, monkeypatch):
    if branch == "torch sort":
        monkeypatch.setattr(ng, "_NUMPY_SORT_MAX", 0)
    rng = np.random.default_rng(4)
    for top in (1, 5, 17, 33, 62):                     # one to four 16-bit digits
        for n in (1, 2, 50, 3000):
            key = rng.integers(0, 1 << top, n, dtype=np.int64)
            key[rng.random(n) < 0.3] = key[0]          # many ties
            order, starts, counts, keys, strides = ng.sort_cells([4, 5, 6], torch.from_numpy(key))
            ref = np.argsort(key, kind="stable")
            uniq, first, size = np.unique(key[ref], return_index=True, return_counts=True)
            np.testing.assert_array_equal(order.numpy(), ref)
            np.testing.assert_array_equal(starts.numpy(), first)
            np.testing.assert_array_equal(counts.numpy(), size)
            np.testing.assert_array_equal(keys.numpy(), uniq)
            assert strides == (30, 6) and order.dtype == counts.dtype == torch.int64


def union_find_partition(n, edges):
    """Component of each node by a plain union-find, renumbered by first occurrence."""
    parent = list(range(n))

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a
    for a, b in edges:
        parent[root(a)] = root(b)
    return first_occurrence([root(a) for a in range(n)])


def first_occurrence(labels):
    seen = {}
    return [seen.setdefault(x, len(seen)) for x in np.asarray(labels).tolist()]


def test_pair_components_match_a_union_find():
    rng = np.random.default_rng(5)
    for trial in range(30):
        n = int(rng.integers(1, 200))
        m = int(rng.integers(0, 2 * n))
        pairs = {tuple(sorted(rng.integers(0, n, 2))) for _ in range(m)}
        pairs = sorted((a, b) for a, b in pairs if a != b)
        rng.shuffle(pairs)                              # unsorted rows, as the tree gives them
        i = np.array([a for a, _ in pairs], dtype=np.intp)
        j = np.array([b for _, b in pairs], dtype=np.intp)
        got = ng._pair_components(n, i, j)
        assert first_occurrence(got) == union_find_partition(n, pairs), trial


def dense_reference(points, classes, radius, min_points):
    """All-pairs d^2 < r^2 (float64, same class), components by union-find, then the size
    filter and ids numbered by smallest point index."""
    p = points.astype(np.float64)
    d = p[:, None, :] - p[None, :, :]
    near = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2] < radius ** 2)
    near &= classes[:, None] == classes[None, :]
    comp = np.array(union_find_partition(len(p), zip(*np.nonzero(np.triu(near, 1)))))
    ids, kept = np.full(len(p), -1), [c for c in dict.fromkeys(comp.tolist())
                                      if (comp == c).sum() >= min_points]
    for new, c in enumerate(kept):
        ids[comp == c] = new
    return ids


@pytest.mark.parametrize("impl", ["numpy", "torch"])
@pytest.mark.parametrize("search", ["grid", "kdtree"])
def test_semantic_bfs_with_each_step1_matches_a_dense_reference(impl, search, monkeypatch):
    """The whole CPU pipeline with step 1 in NumPy or (as on a GPU) in torch with torch's sort."""
    if impl == "torch":
        monkeypatch.setattr(ng, "_NUMPY_ON_CPU", False)
    rng = np.random.default_rng(6)
    for trial in range(6):
        n = int(rng.integers(50, 600))
        points = np.c_[rng.uniform(0, 0.4, (n, 2)), rng.uniform(-0.002, 0.002, n)]
        if trial % 2:
            points = np.round(points * 64) / 64        # many pairs at exactly d = r
        classes = rng.integers(0, 3, n)
        got = semantic_bfs(points, classes, 1 / 32, 3, search=search)
        np.testing.assert_array_equal(got, dense_reference(points, classes, 1 / 32, 3), trial)
