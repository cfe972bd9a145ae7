"""Module A: semantic-guided instance proposals (paper Sec. 3 and 4.1; SPEC.md "Module A clustering").

PointGroup's clustering, which TWIST uses unchanged, runs a breadth-first search over the
foreground points on their *shifted* coordinates ``p + o_hat``: two points are neighbours when
they have the same predicted class and squared distance ``d^2 < r^2`` (strict), and every BFS
tree with at least ``min_points`` points becomes an instance proposal (SPEC: ``r = 0.03 m``,
``min_points = 50``, wall/floor excluded on ScanNet). The trees a BFS finds are exactly the
connected components of that neighbour graph, so :func:`semantic_bfs` computes the components
directly, without ever materialising the (possibly dense) edge list.

Algorithm (O(N log N) for bounded density, exact)
--------------------------------------------------
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

Distances are computed in float64 as ``dx*dx + dy*dy + dz*dz`` and compared with
``float(radius)**2``; the bounding-box tests use the same formula on per-axis gaps, and since
IEEE rounding is monotone they can never disagree with the point-pair test. The result is
therefore the same partition as a brute-force O(N^2) BFS evaluated in float64 (the tests check
this), including points exactly at distance ``r``, which are *not* joined. (PointGroup's CUDA
ball query works in float32 and caps neighbours at 1000; here the rule is applied exactly.)

Backends
--------
Steps 1-3 are torch operations and run on the device of the input (NumPy input runs on the
CPU). The connected components (steps 3-4) are computed by

- ``"scipy"``: :func:`scipy.sparse.csgraph.connected_components` (CPU);
- ``"torch"``: min-label hooking with pointer jumping (``scatter_reduce`` ``amin`` iterated to
  convergence), all torch operations, so the whole pipeline stays on a CUDA device.

``backend="auto"`` picks ``"torch"`` for tensors on a GPU and ``"scipy"`` on the CPU (NumPy or
CPU tensors): on the CPU the two measured within noise of each other on the realistic benchmark
(``bench/bench_clustering.py``) and scipy's linear-time solver has no iteration count that
depends on the graph.

Proposals
---------
:func:`proposals_from_ids` turns the per-point ids into proposals for module B (Sec. 4.2): a CSR
list of member points, the proposal class as the majority of its points' predicted classes (the
paper's "combination of the per-point semantic predictions") and, when probabilities are given,
the score used for evaluation: the mean probability of that class over the proposal's points.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

BACKENDS = ("auto", "scipy", "torch")
_CELL_SHRINK = 1.0 - 1e-7   # cell side = r / sqrt(3) * _CELL_SHRINK (see module docstring)
_MAX_CELL_INDEX = 1 << 22   # |p| / s above this would let float rounding break step 1's margin
# (dx, dy) of the positive half of the 5x5 neighbourhood; (0, 0) covers dz = 1, 2 only.
_HALF_XY = tuple((dx, dy) for dx in range(3) for dy in range(-2, 3) if dx > 0 or dy >= 0)


def semantic_bfs(points, classes, radius: float, min_points: int, ignore_classes=(), *,
                 backend: str = "auto", chunk_pairs: int = 1 << 21, progress: bool = False):
    """Cluster same-class points closer than ``radius`` into proposals (paper Sec. 3, 4.1).

    Parameters
    ----------
    points : array or tensor, (N, 3) float
        Shifted coordinates ``p + o_hat`` (SPEC: PointGroup clusters the shifted points).
    classes : array or tensor, (N,) int
        Predicted class per point. Negative classes (``-100``) are never clustered.
    radius : float
        Neighbour radius ``r``; points are joined when ``d^2 < r^2`` (SPEC: 0.03 m).
    min_points : int
        Smallest cluster kept as a proposal, >= 1 (SPEC: 50).
    ignore_classes : iterable of int
        Classes never clustered, e.g. wall and floor on ScanNet (SPEC: foreground only).
    backend : {"auto", "scipy", "torch"}
        Connected-components solver (module docstring); the neighbour search always runs on
        the input's device.
    chunk_pairs : int
        Most point pairs tested at once in the exhaustive step (bounds memory, ~100 bytes each).
    progress : bool
        Show a tqdm bar over the exhaustive step.

    Returns
    -------
    array or tensor, (N,) int64
        Proposal id per point, ``-1`` for points in no proposal; ids are ``0..P-1`` ordered by
        the smallest point index of each proposal. NumPy in -> NumPy out; a tensor in -> a
        tensor on the same device.
    """
    xyz, cls = _check_inputs(points, classes)
    r2 = _check_parameters(radius, min_points, backend, chunk_pairs)
    if backend == "auto":
        backend = "scipy" if xyz.device.type == "cpu" else "torch"
    ignore = torch.as_tensor(list(ignore_classes), dtype=torch.int64, device=cls.device)
    fg = torch.nonzero((cls >= 0) & ~torch.isin(cls, ignore)).squeeze(1)
    ids = torch.full((len(cls),), -1, dtype=torch.int64, device=cls.device)
    if len(fg):
        labels = _component_per_point(xyz[fg], cls[fg], float(radius), r2, backend,
                                      chunk_pairs, progress)
        ids[fg] = _number_clusters(labels, fg, min_points)
    return ids if isinstance(points, torch.Tensor) else ids.numpy()


@dataclass(frozen=True)
class Proposals:
    """Instance proposals in CSR form (NumPy arrays or tensors, like the ids they came from).

    Attributes
    ----------
    offsets : (P + 1,) int64
        Proposal ``j`` owns ``indices[offsets[j]:offsets[j + 1]]``.
    indices : (M,) int64
        Point indices grouped by proposal, ascending within each proposal.
    classes : (P,) int64
        Majority predicted class of each proposal's points (ties: the smallest class).
    scores : (P,) float or None
        Mean probability of ``classes[j]`` over proposal ``j``'s points, the proposal score used
        for evaluation; ``None`` when only classes were given.
    """

    offsets: object
    indices: object
    classes: object
    scores: object = None

    def __len__(self) -> int:
        return len(self.classes)

    def members(self, j: int):
        """Point indices of proposal ``j``."""
        return self.indices[int(self.offsets[j]):int(self.offsets[j + 1])]


def proposals_from_ids(proposal_ids, semantic) -> Proposals:
    """Group points by proposal id and give each proposal a class and a score (Sec. 4.1-4.2).

    Parameters
    ----------
    proposal_ids : array or tensor, (N,) int
        Output of :func:`semantic_bfs`: ids ``0..P-1`` (each used), ``-1`` = no proposal.
    semantic : array or tensor, (N,) int or (N, K) float
        Predicted class per point, or class probabilities per point (predicted class = argmax).

    Returns
    -------
    Proposals
        NumPy arrays for NumPy ids, tensors on the ids' device for tensor ids.
    """
    as_numpy = not isinstance(proposal_ids, torch.Tensor)
    ids = torch.as_tensor(proposal_ids).detach()
    sem = torch.as_tensor(semantic, device=ids.device).detach()
    _check_proposal_inputs(ids, sem)
    members = torch.nonzero(ids >= 0).squeeze(1)
    pid = ids[members]
    n_prop = int(pid.max()) + 1 if len(pid) else 0
    counts = torch.bincount(pid, minlength=n_prop)
    if bool((counts == 0).any()):
        raise ValueError("proposals_from_ids: proposal ids must be consecutive 0..P-1, "
                         f"id {int(torch.nonzero(counts == 0)[0])} has no points")
    point_class = sem.argmax(1) if sem.ndim == 2 else sem.to(torch.int64)
    member_class = point_class[members]
    if bool((member_class < 0).any()):
        raise ValueError("proposals_from_ids: a point inside a proposal has a negative class")
    if sem.ndim == 2:
        n_cls = sem.shape[1]
    else:
        n_cls = int(member_class.max()) + 1 if len(pid) else 1
    votes = torch.bincount(pid * n_cls + member_class, minlength=n_prop * n_cls)
    prop_class = votes.view(n_prop, n_cls).argmax(1)
    scores = None
    if sem.ndim == 2:
        prob = sem[members, prop_class[pid]]
        scores = torch.zeros(n_prop, dtype=sem.dtype, device=sem.device).index_add_(0, pid, prob)
        scores = scores / counts
    offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    indices = members[torch.argsort(pid, stable=True)]
    out = (offsets, indices, prop_class, scores)
    if as_numpy:
        out = tuple(None if t is None else t.cpu().numpy() for t in out)
    return Proposals(*out)


# ----------------------------------------------------------------------------- input checks

def _check_inputs(points, classes):
    """Return ``(xyz float64 (N, 3), classes int64 (N,))`` as tensors on the points' device."""
    xyz = torch.as_tensor(points).detach()
    cls = torch.as_tensor(classes, device=xyz.device).detach()
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"semantic_bfs: 'points' must have shape (N, 3), got {tuple(xyz.shape)}")
    if cls.shape != (len(xyz),):
        raise ValueError(f"semantic_bfs: 'classes' must have shape ({len(xyz)},), "
                         f"got {tuple(cls.shape)}")
    if cls.is_floating_point() or cls.is_complex() or cls.dtype == torch.bool:
        raise ValueError(f"semantic_bfs: 'classes' must be integers, got {cls.dtype}")
    xyz = xyz.to(torch.float64)
    if not bool(torch.isfinite(xyz).all()):
        raise ValueError("semantic_bfs: 'points' has NaN or infinite coordinates")
    return xyz, cls.to(torch.int64)


def _check_parameters(radius, min_points, backend, chunk_pairs) -> float:
    """Validate the scalar parameters; return ``r^2`` in float64."""
    if not (isinstance(radius, numbers.Real) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"semantic_bfs: 'radius' must be a positive finite number, got {radius!r}")
    if not (isinstance(min_points, numbers.Integral) and min_points >= 1):
        raise ValueError(f"semantic_bfs: 'min_points' must be an integer >= 1, got {min_points!r}")
    if backend not in BACKENDS:
        raise ValueError(f"semantic_bfs: 'backend' must be one of {BACKENDS}, got {backend!r}")
    if not (isinstance(chunk_pairs, numbers.Integral) and chunk_pairs >= 1):
        raise ValueError(f"semantic_bfs: 'chunk_pairs' must be an integer >= 1, got {chunk_pairs!r}")
    return float(radius) ** 2


def _check_proposal_inputs(ids, sem):
    if ids.ndim != 1 or ids.is_floating_point():
        raise ValueError(f"proposals_from_ids: 'proposal_ids' must be a 1-D integer array, "
                         f"got shape {tuple(ids.shape)} of {ids.dtype}")
    if sem.ndim not in (1, 2) or len(sem) != len(ids):
        raise ValueError(f"proposals_from_ids: 'semantic' must have shape ({len(ids)},) or "
                         f"({len(ids)}, K), got {tuple(sem.shape)}")
    if sem.ndim == 1 and sem.is_floating_point():
        raise ValueError("proposals_from_ids: 1-D 'semantic' must hold integer classes")
    if bool((ids < -1).any()):
        raise ValueError("proposals_from_ids: 'proposal_ids' must be >= -1")


# ----------------------------------------------------------------------------- the algorithm

def _component_per_point(xyz, cls, radius, r2, backend, chunk_pairs, progress):
    """Component label (in ``0..N-1``) of every point of the same-class ``d^2 < r^2`` graph."""
    order, starts, counts, keys, strides = _cells(xyz, cls, radius)
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


def _cells(xyz, cls, radius):
    """Sort points by (class, cell) key.

    Returns the sorting permutation, each cell's first sorted position and size, the sorted
    unique keys and the key strides of x and y (z has stride 1).
    """
    side = radius / math.sqrt(3.0) * _CELL_SHRINK
    cell = torch.floor(xyz / side)
    if float(cell.abs().max()) > _MAX_CELL_INDEX:
        raise ValueError(f"semantic_bfs: coordinates up to {float(xyz.abs().max()):.3g} are too "
                         f"large for radius {radius:g} (|p| / r must stay below "
                         f"{_MAX_CELL_INDEX / math.sqrt(3):.3g}); recentre the points")
    cell = cell.to(torch.int64)
    cell = cell - cell.min(0).values
    # Two empty layers on top of every axis: a key plus an offset in [-2, 2]^3 that borrows
    # from (or carries into) the next digit lands in an empty layer, never on another cell.
    dims = [int(d) + 3 for d in cell.max(0).values]
    cls = cls - cls.min()
    if (int(cls.max()) + 1) * dims[0] * dims[1] * dims[2] >= 1 << 62:
        raise ValueError(f"semantic_bfs: the grid of {dims} cells of radius {radius:g} is too "
                         "large for 64-bit keys; the points span too wide a region")
    strides = (dims[1] * dims[2], dims[2])
    key = ((cls * dims[0] + cell[:, 0]) * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    key, order = torch.sort(key, stable=True)
    keys, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts, keys, strides


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
        graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u.cpu().numpy(), v.cpu().numpy())),
                           shape=(n, n))
        labels = connected_components(graph, directed=False)[1]
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


def _number_clusters(labels, point_index, min_points):
    """Drop clusters under ``min_points``; number the rest by their smallest ``point_index``."""
    n = len(labels)
    size = torch.bincount(labels, minlength=n)
    first = point_index.new_full((n,), torch.iinfo(torch.int64).max)
    first = first.scatter_reduce(0, labels, point_index, "amin")
    kept = torch.nonzero(size >= min_points).squeeze(1)
    kept = kept[torch.argsort(first[kept])]
    new_id = torch.full((n,), -1, dtype=torch.int64, device=labels.device)
    new_id[kept] = torch.arange(len(kept), device=labels.device)
    return new_id[labels]
