"""The neighbour graph of module A and its connected components (used by
:func:`twist_lib.clustering.semantic_bfs`; paper Sec. 3 and 4.1).

Two points are neighbours when they have the same class and squared distance ``d^2 < r^2``
(strict). The components of that graph are PointGroup's BFS trees. Two exact searches build it.

Grid search (O(N log N) for bounded density, exact; any device)
----------------------------------------------------------------
1. Hash every foreground point to a cell of side ``s = r / sqrt(3) * (1 - 1e-7)`` keyed by
   (class, cell x, cell y, cell z). Two points of one cell are always neighbours (their
   squared distance is below ``3 s^2 < r^2``, with the factor ``1 - 1e-7`` absorbing
   rounding), so a cell is a single node of a *cell graph* and its points never need testing.
2. Points within ``r`` lie at most two cells apart per axis, so each cell is paired with the
   occupied cells among the 62 "positive" offsets of ``[-2, 2]^3`` (each unordered pair once).
   Cells are found by binary search in the sorted keys: one search per (dx, dy), as the five
   dz neighbours are consecutive keys.
3. Each candidate cell pair is decided as cheaply as possible, in this order:
   bounding boxes of the two cells (gap ``>= r``: no edge; farthest corners ``< r``: edge);
   one test between representative points (the point nearest each box centre); and, only for
   pairs whose cells are still in different components, an exhaustive test of all point pairs,
   processed in chunks of at most ``chunk_pairs`` point pairs (memory guard) with the components
   recomputed after every chunk so that pairs already joined are skipped. In dense clusters
   (shifted points pile up near object centres) the first two steps join almost everything,
   which is what keeps the cost near linear. (The cost is not bounded in the worst case:
   two crowded same-class cells just over ``r`` apart cost the product of their sizes.)
4. Connected components of the cell graph give each point its cluster; clusters smaller than
   ``min_points`` are dropped and the rest numbered ``0..P-1`` by their smallest point index.

k-d tree search (CPU, sparse input)
-----------------------------------
When the points are sparse at the scale of the cells (about one point per cell, e.g. Phi's
shifted points early in training, or surfaces at the 2 cm voxel spacing), almost every cell is
its own node and steps 2-3 test millions of candidate cell pairs with many vectorised passes;
there :func:`scipy.spatial.cKDTree` is faster (measured in ``bench/NOTES.md``). After step 1's
keys and sort (points ordered by class, then cell), one tree per class returns every pair within
``r * (1 + 1e-6)`` (``query_pairs``, a superset of the edges: the tree's own rounding is far
below that margin), and each pair is kept only when ``dx*dx + dy*dy + dz*dz < r^2`` in float64,
the grid's own test, so both searches build the same graph; then
:func:`scipy.sparse.csgraph.connected_components` and step 4, unchanged. Its cost grows with the
number of pairs within ``r``, which is quadratic in the local density, so it is only used for
sparse input.

``search="auto"`` (the default) takes the k-d tree for CPU input with the scipy solver when the
mean number of points sharing a point's (class, cell), ``sum n_c^2 / N``, is at most 3 (the
measured break-even; the realistic scene of ``bench/bench_clustering.py`` is at 4-20), the grid
otherwise. Both are exact, so the choice changes the time only, never the result;
``search="grid"`` or ``"kdtree"`` forces one. Errors about too large coordinates (step 1) are
raised whichever search runs.

Distances are computed in float64 as ``dx*dx + dy*dy + dz*dz`` and compared with
``float(radius)**2``; the bounding-box tests use the same formula on per-axis gaps, and since
IEEE rounding is monotone they can never disagree with the point-pair test. The result is
therefore the same partition as a brute-force O(N^2) BFS evaluated in float64 (the tests check
this), including points exactly at distance ``r``, which are *not* joined. (PointGroup's CUDA
ball query works in float32 and caps neighbours at 1000; here the rule is applied exactly.)

Backends
--------
Steps 1-3 of the grid search are torch operations and run on the device of the input (NumPy
input runs on the CPU), except step 1's keys and sort of CPU input, computed in NumPy (the same
IEEE operations, so the same keys; a radix sort below ``_NUMPY_SORT_MAX`` keys): there they cost
half or less (``bench/NOTES.md``, change 3). The connected components (steps 3-4) are computed by

- ``"scipy"``: :func:`scipy.sparse.csgraph.connected_components` (CPU);
- ``"torch"``: min-label hooking with pointer jumping (``scatter_reduce`` ``amin`` iterated to
  convergence), all torch operations, so the whole pipeline stays on a CUDA device.

``backend="auto"`` picks ``"torch"`` for tensors on a GPU and ``"scipy"`` on the CPU (NumPy or
CPU tensors): on the CPU the two measured within noise of each other on the realistic benchmark
(``bench/bench_clustering.py``) and scipy's linear-time solver has no iteration count that
depends on the graph. The k-d tree search always uses scipy's solver, so ``backend="torch"``
keeps the whole pipeline in torch operations (the grid search), as on a GPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

_KDTREE_RADIUS_PAD = 1.0 + 1e-6  # the k-d tree query radius: a superset of the d^2 < r^2 pairs
_KDTREE_LEAFSIZE = 16
_CELL_SHRINK = 1.0 - 1e-7   # cell side = r / sqrt(3) * _CELL_SHRINK (see above)
_MAX_CELL_INDEX = 1 << 22   # |p| / s above this would let float rounding break step 1's margin
# CPU keys below this count are radix-sorted in NumPy (:func:`_sort_cells_numpy`), more by torch:
# measured crossover ~120k keys (10k: 0.08 vs 0.41 ms; 250k: 6.5 vs 3.7 ms).
_NUMPY_SORT_MAX = 1 << 17
# Step 1 of CPU input in NumPy (keys and the sort above); False runs torch's step 1 as on a GPU
# (tests, and bench/host_syncs.py auditing the CUDA path on the CPU).
_NUMPY_ON_CPU = True
# (dx, dy) of the positive half of the 5x5 neighbourhood; (0, 0) covers dz = 1, 2 only.
_HALF_XY = tuple((dx, dy) for dx in range(3) for dy in range(-2, 3) if dx > 0 or dy >= 0)


def component_per_point(xyz, cells, r2, backend, chunk_pairs, progress):
    """Grid search: component label (in ``0..N-1``) of every point of the same-class
    ``d^2 < r^2`` graph, given the points' cells (:func:`sort_cells`)."""
    order, starts, counts, keys, strides = cells
    xyz = xyz[order]                      # points grouped by cell from here on
    lo, hi = _cell_boxes(xyz, counts)
    rep = _representatives(xyz, counts, lo, hi)
    edges, undecided = [], []
    for cell_a, cell_b in _candidate_cell_pairs(keys, strides):
        joined, maybe = _cheap_tests(xyz, r2, lo, hi, rep, cell_a, cell_b)
        edges.append((cell_a[joined], cell_b[joined]))
        undecided.append((cell_a[maybe], cell_b[maybe]))
    comp = _components(len(counts), edges, backend)
    cell_a, cell_b = (torch.cat(c) for c in zip(*undecided))
    comp = _exhaustive_pairs(xyz, r2, starts, counts, cell_a, cell_b, comp, edges, backend,
                             chunk_pairs, progress)
    labels = torch.empty_like(order)
    labels[order] = torch.repeat_interleave(comp, counts)
    return labels


def cell_keys(xyz, cls, radius):
    """Step 1's (class, cell) key of every point.

    Returns ``(dims, key)``: the grid's size per axis (cells shifted to start at 0, plus two
    empty layers) and the (N,) int64 keys. Raises step 1's errors (coordinates or grid too
    large for the radius) whichever search then runs, so both accept the same inputs. CPU
    input is computed in NumPy, other devices in torch (same operations, same keys).
    """
    side = radius / math.sqrt(3.0) * _CELL_SHRINK
    if _NUMPY_ON_CPU and xyz.device.type == "cpu":
        return _cell_keys_numpy(xyz.numpy(), cls.numpy(), side, radius)
    return _cell_keys_torch(xyz, cls, side, radius)


def _cell_keys_torch(xyz, cls, side, radius):
    """:func:`cell_keys` in torch operations (any device)."""
    cell = torch.floor(xyz / side)
    low, high = torch.aminmax(cell, dim=0)
    _check_cell_range(low.tolist(), high.tolist(), xyz, radius)
    cell = (cell - low).to(torch.int64)        # exact: integers far below 2^53
    # Two empty layers on top of every axis: a key plus an offset in [-2, 2]^3 that borrows
    # from (or carries into) the next digit lands in an empty layer, never on another cell.
    dims = [int(d) + 3 for d in (high - low).tolist()]
    cls = cls - cls.min()
    _check_grid_size(int(cls.max()) + 1, dims, radius)
    key = ((cls * dims[0] + cell[:, 0]) * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    return dims, key


def _cell_keys_numpy(xyz, cls, side, radius):
    """:func:`cell_keys` in NumPy for CPU input (axes as contiguous rows); returns a tensor."""
    cell = np.divide(xyz.T, side, order="C")   # (3, N)
    np.floor(cell, out=cell)
    low, high = cell.min(1), cell.max(1)
    _check_cell_range(low.tolist(), high.tolist(), xyz, radius)
    dims = [int(d) + 3 for d in (high - low).tolist()]   # two empty layers, as in torch
    cell -= low[:, None]
    cell = cell.astype(np.int64)               # exact: integers far below 2^53
    key = cls - cls.min()
    _check_grid_size(int(key.max()) + 1, dims, radius)
    for axis in range(3):
        key *= dims[axis]
        key += cell[axis]
    return dims, torch.from_numpy(key)


def _check_cell_range(low, high, xyz, radius):
    """Step 1's error for cell indices (``low``, ``high``: per-axis lists) beyond
    ``_MAX_CELL_INDEX``, where float rounding could break the cell margin."""
    if max(-min(low), max(high)) > _MAX_CELL_INDEX:   # max |cell index|
        raise ValueError(f"semantic_bfs: coordinates up to {float(abs(xyz).max()):.3g} are too "
                         f"large for radius {radius:g} (|p| / r must stay below "
                         f"{_MAX_CELL_INDEX / math.sqrt(3):.3g}); recentre the points")


def _check_grid_size(n_classes, dims, radius):
    """Step 1's error for a (class, cell) grid too large for 64-bit keys."""
    if n_classes * dims[0] * dims[1] * dims[2] >= 1 << 62:
        raise ValueError(f"semantic_bfs: the grid of {dims} cells of radius {radius:g} is too "
                         "large for 64-bit keys; the points span too wide a region")


def mean_cell_mates(counts) -> float:
    """Mean over the points of how many points share their (class, cell): ``sum n_c^2 / N``."""
    return float((counts * counts).sum()) / float(counts.sum())


def sort_cells(dims, key):
    """Sort points by (class, cell) key.

    Returns the sorting permutation (stable: ties in point order), each cell's first sorted
    position and size, the sorted unique keys and the key strides of x and y (z has stride 1).
    """
    strides = (dims[1] * dims[2], dims[2])
    if _NUMPY_ON_CPU and key.device.type == "cpu" and 0 < len(key) < _NUMPY_SORT_MAX:
        return (*_sort_cells_numpy(key.numpy()), strides)
    key, order = torch.sort(key, stable=True)
    keys, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts, keys, strides


def _sort_cells_numpy(key):
    """:func:`sort_cells` for smaller CPU input: a least-significant-digit radix sort of the
    (non-negative) keys, one stable NumPy sort of 16-bit digits (itself a radix sort) per pass."""
    order = np.arange(len(key))
    for shift in range(0, int(key.max()).bit_length(), 16):
        digit = (np.take(key, order) >> shift).astype(np.uint16)     # the low 16 bits
        order = np.take(order, np.argsort(digit, kind="stable"))
    key = np.take(key, order)
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    counts = np.diff(starts, append=len(key))
    return tuple(torch.from_numpy(a) for a in (order, starts, counts, key[starts]))


def _candidate_cell_pairs(keys, strides):
    """Yield, per (dx, dy), the occupied cell pairs ``(a, b)`` at the positive offsets of
    ``[-2, 2]^3`` (62 in all), one group at a time to bound memory."""
    n = len(keys)
    own = torch.arange(n, device=keys.device)
    for dx, dy in _HALF_XY:
        cell_a, cell_b = [], []
        base = keys + dx * strides[0] + dy * strides[1]
        first, width = (base + 1, 2) if dx == dy == 0 else (base - 2, 5)
        last = first + width - 1
        start = torch.searchsorted(keys, first)
        for step in range(width):
            other = start + step
            inside = other < n
            hit = inside & (keys[other.clamp(max=n - 1)] <= last)
            cell_a.append(own[hit])
            cell_b.append(other[hit])
        yield torch.cat(cell_a), torch.cat(cell_b)


def _cell_boxes(xyz, counts):
    """Per-cell axis-aligned bounding box ``(lo, hi)`` of the (cell-sorted) points."""
    cell = torch.repeat_interleave(torch.arange(len(counts), device=xyz.device), counts)
    index = cell[:, None].expand(-1, 3)
    lo = xyz.new_zeros(len(counts), 3).scatter_reduce(0, index, xyz, "amin", include_self=False)
    hi = xyz.new_zeros(len(counts), 3).scatter_reduce(0, index, xyz, "amax", include_self=False)
    return lo, hi


def _squared_norm(d):
    """``dx*dx + dy*dy + dz*dz`` in this fixed order (every distance test uses it)."""
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]


def _cheap_tests(xyz, r2, lo, hi, rep, cell_a, cell_b):
    """Decide cell pairs without visiting all their points: ``(joined, undecided)`` masks.

    A pair is joined when its boxes' farthest corners are closer than ``r`` or its two
    representatives are; it is dropped when its boxes are ``r`` or more apart. The box bounds
    hold for every point pair's computed ``d^2`` exactly, because rounding is monotone.
    """
    gap = torch.maximum(lo[cell_b] - hi[cell_a], lo[cell_a] - hi[cell_b]).clamp(min=0)
    far = torch.maximum(hi[cell_b] - lo[cell_a], hi[cell_a] - lo[cell_b])
    maybe = _squared_norm(gap) < r2
    joined = _squared_norm(far) < r2
    maybe &= ~joined
    joined |= maybe & (_squared_norm(xyz[rep[cell_a]] - xyz[rep[cell_b]]) < r2)
    return joined, maybe & ~joined


def _representatives(xyz, counts, lo, hi):
    """Sorted position of each cell's point nearest its box centre (ties: the first one)."""
    cell = torch.repeat_interleave(torch.arange(len(counts), device=xyz.device), counts)
    dist = _squared_norm(xyz - (lo + hi)[cell] / 2)
    best = dist.new_full((len(counts),), math.inf).scatter_reduce(0, cell, dist, "amin")
    position = torch.arange(len(xyz), device=xyz.device)
    position = torch.where(dist == best[cell], position, len(xyz))
    return counts.new_full((len(counts),), len(xyz)).scatter_reduce(0, cell, position, "amin")


def _any_pair_within(xyz, r2, a_start, a_len, b_start, b_len):
    """For each task, whether any point of ``a_start + [0, a_len)`` is closer than ``r``
    (``d^2 < r^2``) to any point of ``b_start + [0, b_len)``."""
    sizes = a_len * b_len
    task = torch.repeat_interleave(torch.arange(len(sizes), device=xyz.device), sizes)
    local = torch.arange(len(task), device=xyz.device) - (torch.cumsum(sizes, 0) - sizes)[task]
    width = b_len[task]
    d2 = _squared_norm(xyz[a_start[task] + local // width] - xyz[b_start[task] + local % width])
    hit = torch.zeros(len(sizes), dtype=torch.bool, device=xyz.device)
    hit[task[d2 < r2]] = True
    return hit


def _exhaustive_pairs(xyz, r2, starts, counts, cell_a, cell_b, comp, edges, backend,
                      chunk_pairs, progress):
    """Test all point pairs of the still-undecided cell pairs, chunk by chunk.

    Cell pairs are split into tasks of at most ``chunk_pairs`` point pairs (slicing cell ``a``);
    after each chunk with new edges the components are recomputed and tasks whose two cells are
    already joined are dropped. Returns the final component of every cell.
    """
    a_len, b_len = counts[cell_a], counts[cell_b]
    slice_len = (chunk_pairs // b_len).clamp(min=1)
    n_slices = (a_len + slice_len - 1) // slice_len
    pair = torch.repeat_interleave(torch.arange(len(cell_a), device=xyz.device), n_slices)
    k = torch.arange(len(pair), device=xyz.device) - (torch.cumsum(n_slices, 0) - n_slices)[pair]
    a_start = starts[cell_a][pair] + k * slice_len[pair]
    a_len = torch.minimum(slice_len[pair], a_len[pair] - k * slice_len[pair])
    b_start, b_len = starts[cell_b][pair], b_len[pair]
    task_a, task_b = cell_a[pair], cell_b[pair]
    bar = tqdm(total=int((a_len * b_len).sum()), unit="pair", disable=not progress,
               desc="semantic_bfs exhaustive pairs")
    while True:
        keep = comp[task_a] != comp[task_b]
        bar.update(int((a_len * b_len)[~keep].sum()))
        a_start, a_len, b_start, b_len, task_a, task_b = (
            t[keep] for t in (a_start, a_len, b_start, b_len, task_a, task_b))
        if not len(task_a):
            break
        sizes = a_len * b_len
        take = max(1, int(torch.searchsorted(torch.cumsum(sizes, 0), chunk_pairs, right=True)))
        hit = _any_pair_within(xyz, r2, a_start[:take], a_len[:take], b_start[:take], b_len[:take])
        edges.append((task_a[:take][hit], task_b[:take][hit]))
        if bool(hit.any()):
            comp = _components(len(counts), edges, backend)
        bar.update(int(sizes[:take].sum()))
        a_start, a_len, b_start, b_len, task_a, task_b = (
            t[take:] for t in (a_start, a_len, b_start, b_len, task_a, task_b))
    bar.close()
    return comp


def _components(n, edges, backend):
    """Connected-component label of each of ``n`` nodes given a list of ``(u, v)`` edge chunks."""
    u = torch.cat([e[0] for e in edges])
    v = torch.cat([e[1] for e in edges])
    if backend == "scipy":
        labels = _pair_components(n, u.cpu().numpy(), v.cpu().numpy())
        return torch.from_numpy(labels.astype(np.int64)).to(u.device)
    return _components_torch(n, u, v)


def _components_torch(n, u, v):
    """Min-label hooking + pointer jumping; every label ends as its component's smallest node."""
    parent = torch.arange(n, device=u.device)
    while True:
        root_u, root_v = parent[u], parent[v]
        if bool((root_u == root_v).all()):
            return parent
        low = torch.minimum(root_u, root_v)
        parent.scatter_reduce_(0, root_u, low, "amin")
        parent.scatter_reduce_(0, root_v, low, "amin")
        while True:                                   # pointer jumping until every node is
            grand = parent[parent]                    # one step from its root
            if torch.equal(grand, parent):
                break
            parent = grand


def component_per_point_kdtree(xyz, cls, order, radius, r2):
    """k-d tree search (CPU): component label of every point of the same-class ``d^2 < r^2``
    graph. The points are visited in ``order`` (sorted by class, then cell: :func:`sort_cells`), so
    that each class is one slice with its own tree (no cross-class pairs) and for memory
    locality; each slice's edges come from :func:`_class_edges`."""
    o = order.numpy()
    p = np.take(xyz.numpy(), o, axis=0)
    c = np.take(cls.numpy(), o)
    bounds = np.concatenate([[0], np.flatnonzero(c[1:] != c[:-1]) + 1, [len(p)]]).tolist()
    edges = [(np.zeros(0, dtype=np.intp),) * 2]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop - start > 1:
            edges.append(tuple(e + start for e in _class_edges(p[start:stop], radius, r2)))
    labels = np.empty(len(p), dtype=np.int64)
    labels[o] = _pair_components(len(p), *(np.concatenate(e) for e in zip(*edges)))
    return torch.from_numpy(labels)


def _class_edges(p, radius, r2):
    """Edges ``(i, j)``, ``i < j``, each once, among the points ``p`` of one class. The tree's
    pairs within ``radius * _KDTREE_RADIUS_PAD`` are a superset of the edges; each is kept when
    ``dx*dx + dy*dy + dz*dz < r2`` in float64, the test of the grid search
    (:func:`_squared_norm`), so both searches give the same graph. (Filtering per class keeps
    the temporaries small: reused heap memory, not fresh pages; ``bench/NOTES.md``, change 3.)"""
    tree = cKDTree(p, leafsize=_KDTREE_LEAFSIZE, balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(radius * _KDTREE_RADIUS_PAD, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.take(p, i, axis=0)
    d -= np.take(p, j, axis=0)
    d *= d
    near = (d[:, 0] + d[:, 1]) + d[:, 2] < r2
    return i[near], j[near]


def _pair_components(n, i, j):
    """Connected-component label (int32) of each of ``n`` nodes joined by the undirected edges
    ``(i, j)`` (scipy's solver; both searches' ``"scipy"`` backend).

    Float64 weights spare the solver's input check a second, deduplicating conversion. (Flagging
    the COO matrix ``has_canonical_format`` would save another ~0.5 ms at 10k points, but the flag
    also claims sorted coordinates, which is untrue here; we do not lie to scipy; ``bench/NOTES.md``,
    change 3.)"""
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
