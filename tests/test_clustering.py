"""Module A clustering (twist_lib.clustering) against an explicit brute-force BFS."""
import collections
import functools
import math

import numpy as np
import pytest
import torch

from twist_lib.clustering import proposals_from_ids, semantic_bfs
from twist_lib.neighbour_graph import _CELL_SHRINK

# (input kind, backend): NumPy -> CPU path (scipy components), tensors -> both solvers.
PATHS = [("numpy", "auto"), ("torch", "torch"), ("torch", "scipy")]


def reference_bfs(points, classes, radius, min_points, ignore_classes=()):
    """Queue-based BFS over all pairs with d^2 < r^2 (float64) and the same class.

    Starting a BFS at every unvisited point in index order numbers the kept clusters by their
    smallest point index, the order ``semantic_bfs`` promises.
    """
    p = np.asarray(points, dtype=np.float64)
    c = np.asarray(classes)
    n = len(p)
    usable = (c >= 0) & ~np.isin(c, list(ignore_classes))
    ids = np.full(n, -1, dtype=np.int64)
    visited = np.zeros(n, dtype=bool)
    next_id = 0
    for seed in range(n):
        if visited[seed] or not usable[seed]:
            continue
        visited[seed] = True
        queue, members = collections.deque([seed]), [seed]
        while queue:
            i = queue.popleft()
            for j in range(n):
                d = p[j] - p[i]
                if (not visited[j] and usable[j] and c[j] == c[i]
                        and d[0] * d[0] + d[1] * d[1] + d[2] * d[2] < radius ** 2):
                    visited[j] = True
                    queue.append(j)
                    members.append(j)
        if len(members) >= min_points:
            ids[members] = next_id
            next_id += 1
    return ids


def run(points, classes, radius, min_points, ignore=(), *, kind="numpy", backend="auto", **kw):
    """semantic_bfs on NumPy or torch input; the result as a NumPy array (type checked)."""
    if kind == "torch":
        out = semantic_bfs(torch.as_tensor(points), torch.as_tensor(classes), radius, min_points,
                           ignore, backend=backend, **kw)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
        return out.numpy()
    out = semantic_bfs(points, classes, radius, min_points, ignore, backend=backend, **kw)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    return out


def random_case(seed):
    """Varied random inputs: blobs (dense cells), uniform clouds, dyadic lattices (exact ties)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 260))
    kind = seed % 3
    if kind == 0:       # a few blobs of very different spreads: many points per cell
        centres = rng.uniform(0, 0.4, (int(rng.integers(1, 6)), 3))
        spread = rng.choice([0.003, 0.01, 0.03, 0.08], len(centres))
        which = rng.integers(0, len(centres), n)
        points = centres[which] + rng.normal(size=(n, 3)) * spread[which, None]
    elif kind == 1:     # uniform, density from very sparse to dense
        points = rng.uniform(-1, 1, (n, 3)) * rng.choice([0.05, 0.2, 0.6])
    else:               # multiples of 1/64: many pairs at exactly d = r
        points = rng.integers(-12, 12, (n, 3)) / 64.0
    radius = float(rng.choice([1 / 16, 1 / 8, 0.05, 0.03]))
    n_classes = int(rng.integers(1, 5))
    classes = rng.integers(0, n_classes, n)
    classes[rng.random(n) < 0.1] = -100
    ignore = (0,) if n_classes > 2 and rng.random() < 0.5 else ()
    if rng.random() < 0.3:
        points = points.astype(np.float32)       # float32 input is widened exactly
    return points, classes, radius, int(rng.integers(1, 8)), ignore


@functools.lru_cache(maxsize=None)
def random_case_expected(seed):
    return reference_bfs(*random_case(seed))


@pytest.mark.parametrize("kind,backend", PATHS)
@pytest.mark.parametrize("chunk_pairs", [1 << 21, 7, 1])
def test_random_inputs_match_brute_force(kind, backend, chunk_pairs):
    for seed in range(40):
        points, classes, radius, min_points, ignore = random_case(seed)
        expected = random_case_expected(seed)
        got = run(points, classes, radius, min_points, ignore, kind=kind, backend=backend,
                  chunk_pairs=chunk_pairs)
        np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}")


@pytest.mark.parametrize("kind,backend", PATHS)
def test_dense_clumps_of_one_class(kind, backend):
    # Tens of points per cell, clumps with gaps near r: the exhaustive step decides some pairs.
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0, 0], [0.052, 0, 0], [0.0, 0.075, 0.01], [0.3, 0.3, 0.3]])
    points = np.concatenate([c + rng.uniform(-0.011, 0.011, (150, 3)) for c in centres])
    classes = np.full(len(points), 3)
    expected = reference_bfs(points, classes, 0.03, 1)
    assert 1 < expected.max() + 1 < len(points)        # the case is not trivial either way
    np.testing.assert_array_equal(run(points, classes, 0.03, 1, kind=kind, backend=backend,
                                      chunk_pairs=50), expected)


@pytest.mark.parametrize("kind,backend", PATHS)
def test_empty_and_single_point(kind, backend):
    assert run(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 0.03, 1, kind=kind,
               backend=backend).shape == (0,)
    one = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(run(one, [4], 0.03, 1, kind=kind, backend=backend), [0])
    np.testing.assert_array_equal(run(one, [4], 0.03, 2, kind=kind, backend=backend), [-1])
    np.testing.assert_array_equal(run(one, [-100], 0.03, 1, kind=kind, backend=backend), [-1])


@pytest.mark.parametrize("kind,backend", PATHS)
def test_exact_distance_r_is_not_joined(kind, backend):
    # A 4x4x4 lattice with spacing 0.25: axis neighbours are at exactly d = r = 0.25.
    points = np.stack(np.meshgrid(*[np.arange(4) * 0.25] * 3, indexing="ij"), -1).reshape(-1, 3)
    classes = np.zeros(len(points), dtype=np.int64)
    np.testing.assert_array_equal(run(points, classes, 0.25, 1, kind=kind, backend=backend),
                                  np.arange(len(points)))
    just_above = float(np.nextafter(0.25, 1.0))          # r^2 > 0.0625 in float64
    np.testing.assert_array_equal(run(points, classes, just_above, 1, kind=kind, backend=backend),
                                  np.zeros(len(points)))


@pytest.mark.parametrize("kind,backend", PATHS)
@pytest.mark.parametrize("step", [(3, 4, 0), (2, 2, 1), (1, 2, 2), (0, 0, 5)])
def test_off_axis_boundary(kind, backend, step):
    # Displacement step * h with |step| a whole number (5 or 3) of h = 1/16: d^2 == r^2 exactly.
    h = 1 / 16
    length = math.sqrt(sum(s * s for s in step)) * h
    origins = np.random.default_rng(1).integers(-40, 40, (30, 3)) * h
    points = np.concatenate([origins, origins + np.array(step) * h])
    classes = np.r_[np.arange(30), np.arange(30)]        # pair k alone has class k
    apart = run(points, classes, length, 2, kind=kind, backend=backend)
    np.testing.assert_array_equal(apart, np.full(60, -1))
    below = points.copy()
    below[30:] -= np.sign(step) * 2.0 ** -30            # exactly representable, d < r now
    joined = run(below, classes, length, 2, kind=kind, backend=backend)
    np.testing.assert_array_equal(joined, classes)


# Two 3-point clumps, each inside one cell (r = 1: cell side 0.577), whose only link is one pair
# at exactly d = r: in the first its two points are the cells' representatives (nearest the box
# centres); in the second they are not, so only the exhaustive step sees the pair.
LINKED_AT_R = [
    ([[0.25, 0.5, 0.0], [0.5625, 0.125, 0.25], [0.1875, 0.5625, 0.0625]],
     [[0.375, 0.0625, -0.9375], [0.25, 0.5, -1.0], [0.125, 0.5, -1.0]]),
    ([[0.125, 0.3125, 0.25], [0.0625, 0.0, 0.0625], [0.3125, 0.4375, 0.4375]],
     [[0.0, 0.375, -0.875], [0.0625, 0.0, -0.9375], [0.5, 0.0625, -1.0]]),
]


@pytest.mark.parametrize("kind,backend", PATHS)
@pytest.mark.parametrize("clump_a,clump_b", LINKED_AT_R)
def test_clumps_linked_only_at_distance_r(kind, backend, clump_a, clump_b):
    a, b = np.array(clump_a), np.array(clump_b)
    d = a[:, None] - b[None]
    d2 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]
    assert (d2 == 1).sum() == 1 and (d2 >= 1).all()     # the construction
    i, j = np.argwhere(d2 == 1)[0]
    points, classes = np.concatenate([a, b]), np.zeros(6, dtype=np.int64)
    expected = reference_bfs(points, classes, 1.0, 1)
    assert expected.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(run(points, classes, 1.0, 1, kind=kind, backend=backend),
                                  expected)
    points[3 + j] -= np.sign(b[j] - a[i]) * 2.0 ** -30   # now d < r: one cluster
    expected = reference_bfs(points, classes, 1.0, 1)
    assert expected.tolist() == [0] * 6
    np.testing.assert_array_equal(run(points, classes, 1.0, 1, kind=kind, backend=backend),
                                  expected)


@pytest.mark.parametrize("kind,backend", PATHS)
def test_pairs_two_cells_apart_on_every_axis_are_found(kind, backend):
    # White box: with cell side s (module docstring), a = s - eta and b = 2s + eta per axis lie
    # two cells apart on all three axes yet have d^2 < r^2; the corner offsets must be searched.
    radius = 0.03
    side = radius / math.sqrt(3.0) * _CELL_SHRINK
    a = np.full(3, side * (1 - 1e-8))
    b = np.full(3, side * (2 + 1e-8))
    points = np.stack([a, b])
    assert reference_bfs(points, [1, 1], radius, 1).tolist() == [0, 0]
    np.testing.assert_array_equal(run(points, [1, 1], radius, 1, kind=kind, backend=backend),
                                  [0, 0])


@pytest.mark.parametrize("kind,backend", PATHS)
def test_all_points_one_class(kind, backend):
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 0.2, (300, 3))
    classes = np.full(300, 7)
    np.testing.assert_array_equal(run(points, classes, 0.03, 3, kind=kind, backend=backend),
                                  reference_bfs(points, classes, 0.03, 3))


@pytest.mark.parametrize("kind,backend", PATHS)
def test_ignored_and_negative_classes_are_never_clustered(kind, backend):
    # One tight clump, every point within r of every other; classes interleaved.
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 0.01, (12, 3))
    classes = np.array([0, 1, 2, -100, 0, 1, 2, -100, 0, 1, 2, -5])
    got = run(points, classes, 0.03, 1, (0, 2), kind=kind, backend=backend)
    # Only class 1 (points 1, 5, 9) is clustered: one proposal; all others -1.
    np.testing.assert_array_equal(got, np.where(classes == 1, 0, -1))


@pytest.mark.parametrize("kind,backend", PATHS)
def test_min_points_keeps_clusters_of_exactly_that_size(kind, backend):
    # Chains of 3, 4 and 5 points (spacing 0.02 < r) far apart, in shuffled order.
    chains = [np.c_[np.arange(k) * 0.02, np.zeros(k), np.zeros(k)] + [i, 0, 0]
              for i, k in enumerate((3, 4, 5))]
    sizes = np.repeat([3, 4, 5], [3, 4, 5])
    perm = np.random.default_rng(2).permutation(12)
    points, sizes = np.concatenate(chains)[perm], sizes[perm]
    classes = np.zeros(12, dtype=np.int64)
    got = run(points, classes, 0.03, 4, kind=kind, backend=backend)
    assert (got[sizes == 3] == -1).all()
    for size in (4, 5):
        assert len(set(got[sizes == size])) == 1 and got[sizes == size][0] >= 0
    # Ids are numbered by smallest point index.
    first = sorted(np.nonzero(sizes == size)[0].min() for size in (4, 5))
    assert got[first[0]] == 0 and got[first[1]] == 1


def test_types_follow_the_input():
    points = np.random.default_rng(0).uniform(0, 0.05, (20, 3)).astype(np.float32)
    classes = np.zeros(20, dtype=np.int32)
    out = semantic_bfs(points, classes, 0.03, 1)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    out_t = semantic_bfs(torch.from_numpy(points), torch.from_numpy(classes), 0.03, 1)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.int64
    assert out_t.device == torch.device("cpu")
    np.testing.assert_array_equal(out_t.numpy(), out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_brute_force():
    for seed in range(12):
        points, classes, radius, min_points, ignore = random_case(seed)
        got = semantic_bfs(torch.as_tensor(points).cuda(), torch.as_tensor(classes).cuda(),
                           radius, min_points, ignore)
        assert got.is_cuda
        np.testing.assert_array_equal(got.cpu().numpy(), random_case_expected(seed))


GOOD = dict(points=np.zeros((4, 3)), classes=np.zeros(4, int), radius=0.03, min_points=1)


@pytest.mark.parametrize("change,match", [
    (dict(points=np.zeros((4, 2))), "'points' must have shape"),
    (dict(classes=np.zeros(3, int)), "'classes' must have shape"),
    (dict(classes=np.zeros(4)), "must be integers"),
    (dict(points=np.full((4, 3), np.nan)), "NaN"),
    (dict(radius=0.0), "radius"),
    (dict(radius=float("inf")), "radius"),
    (dict(min_points=0), "min_points"),
    (dict(backend="gpu"), "backend"),
    (dict(chunk_pairs=0), "chunk_pairs"),
    (dict(points=np.array([[1e9, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])), "too large"),
])
def test_bad_input_raises(change, match):
    with pytest.raises(ValueError, match=match):
        semantic_bfs(**{**GOOD, **change})


# ----------------------------------------------------------------------------- proposals


@pytest.mark.parametrize("as_torch", [False, True])
def test_proposals_majority_class_and_score(as_torch):
    ids = np.array([1, 0, 0, -1, 1, 0, 1, 0, 1])
    probs = np.array([
        [0.1, 0.7, 0.2],   # 1 -> class 1
        [0.6, 0.3, 0.1],   # 0 -> class 0
        [0.2, 0.2, 0.6],   # 0 -> class 2
        [0.9, 0.05, 0.05],  # none
        [0.3, 0.4, 0.3],   # 1 -> class 1
        [0.5, 0.1, 0.4],   # 0 -> class 0
        [0.1, 0.1, 0.8],   # 1 -> class 2
        [0.4, 0.35, 0.25],  # 0 -> class 0
        [0.2, 0.5, 0.3],   # 1 -> class 1
    ])
    # Proposal 0 = points 1, 2, 5, 7: classes 0, 2, 0, 0 -> class 0, score (.6+.2+.5+.4)/4.
    # Proposal 1 = points 0, 4, 6, 8: classes 1, 1, 2, 1 -> class 1, score (.7+.4+.1+.5)/4.
    wrap = torch.as_tensor if as_torch else np.asarray
    props = proposals_from_ids(wrap(ids), wrap(probs))
    assert len(props) == 2
    np.testing.assert_array_equal(np.asarray(props.offsets), [0, 4, 8])
    np.testing.assert_array_equal(np.asarray(props.members(0)), [1, 2, 5, 7])
    np.testing.assert_array_equal(np.asarray(props.members(1)), [0, 4, 6, 8])
    np.testing.assert_array_equal(np.asarray(props.classes), [0, 1])
    np.testing.assert_allclose(np.asarray(props.scores), [1.7 / 4, 1.7 / 4])
    assert isinstance(props.indices, torch.Tensor) == as_torch
    by_class = proposals_from_ids(wrap(ids), wrap(probs.argmax(1)))
    np.testing.assert_array_equal(np.asarray(by_class.classes), [0, 1])
    assert by_class.scores is None


def test_proposals_tie_goes_to_the_smallest_class_and_empty_input():
    props = proposals_from_ids(np.array([0, 0, 0, 0]), np.array([5, 3, 5, 3]))
    np.testing.assert_array_equal(props.classes, [3])
    empty = proposals_from_ids(np.full(3, -1), np.zeros((3, 4)))
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and empty.scores.shape == (0,)


def test_proposals_from_semantic_bfs_output():
    points, classes, radius, min_points, ignore = random_case(0)
    ids = semantic_bfs(points, classes, radius, min_points, ignore)
    props = proposals_from_ids(ids, classes)
    for j in range(len(props)):
        members = props.members(j)
        np.testing.assert_array_equal(members, np.nonzero(ids == j)[0])
        assert (classes[members] == props.classes[j]).all()   # clusters are single-class


@pytest.mark.parametrize("ids,semantic,match", [
    (np.array([0, 2, 2]), np.zeros(3, int), "consecutive"),
    (np.array([0, 0, -3]), np.zeros(3, int), ">= -1"),
    (np.array([0, 0, 1]), np.zeros(2, int), "shape"),
    (np.array([0, 0, 1]), np.array([1, -100, 2]), "negative class"),
    (np.array([0.0, 1.0]), np.zeros(2, int), "integer"),
])
def test_proposals_bad_input_raises(ids, semantic, match):
    with pytest.raises(ValueError, match=match):
        proposals_from_ids(ids, semantic)


@pytest.mark.parametrize("search", ["grid", "kdtree"])
def test_each_neighbour_search_matches_brute_force(search):
    """Both searches, forced, on the random cases and at exactly d = r (ties not joined)."""
    for seed in range(40):
        points, classes, radius, min_points, ignore = random_case(seed)
        got = run(points, classes, radius, min_points, ignore, backend="scipy", search=search)
        np.testing.assert_array_equal(got, random_case_expected(seed), err_msg=f"seed {seed}")
    lattice = np.stack(np.meshgrid(*[np.arange(4) * 0.25] * 3, indexing="ij"), -1).reshape(-1, 3)
    zeros = np.zeros(len(lattice), dtype=np.int64)
    np.testing.assert_array_equal(run(lattice, zeros, 0.25, 1, backend="scipy", search=search),
                                  np.arange(len(lattice)))
    with pytest.raises(ValueError, match="kdtree"):
        semantic_bfs(torch.as_tensor(lattice), torch.as_tensor(zeros), 0.25, 1, backend="torch",
                     search="kdtree")
