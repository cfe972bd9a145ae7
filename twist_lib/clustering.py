"""Module A: semantic-guided instance proposals (paper Sec. 3 and 4.1; the book's appendix,
Conventions: "Module A clustering").

PointGroup's clustering, which TWIST uses unchanged, runs a breadth-first search over the
foreground points on their *shifted* coordinates ``p + o_hat``: two points are neighbours when they
have the same predicted class and squared distance ``d^2 < r^2`` (strict), and every BFS tree with
at least ``min_points`` points becomes an instance proposal (PointGroup's values ``r = 0.03 m`` and
``min_points = 50``, wall/floor excluded on ScanNet; book appendix, Module A). The trees a BFS
finds are exactly the connected components of that neighbour graph, so :func:`semantic_bfs`
computes the components directly, with one of two neighbour searches (below); the grid search never
materialises the (possibly dense) edge list.

The neighbour graph and its components are built by :mod:`twist_lib.neighbour_graph`, which
documents its two exact searches (a cell grid on any device; scipy's k-d tree for sparse CPU
input) and its two solvers (``"scipy"``, ``"torch"``). Every choice gives the same partition as a
brute-force O(N^2) BFS evaluated in float64 (the tests check this), including points exactly at
distance ``r``, which are *not* joined.

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

import torch

from .neighbour_graph import (cell_keys, sort_cells, component_per_point,
                              component_per_point_kdtree, mean_cell_mates)

BACKENDS = ("auto", "scipy", "torch")
SEARCHES = ("auto", "grid", "kdtree")
_KDTREE_MAX_CELL_MATES = 3.0  # "auto" uses the k-d tree up to this mean cell occupancy



def semantic_bfs(points, classes, radius: float, min_points: int, ignore_classes=(), *,
                 backend: str = "auto", search: str = "auto", chunk_pairs: int = 1 << 21,
                 progress: bool = False):
    """Cluster same-class points closer than ``radius`` into proposals (paper Sec. 3, 4.1).

    Parameters
    ----------
    points : array or tensor, (N, 3) float
        Shifted coordinates ``p + o_hat`` (paper Sec. 3; PointGroup clusters the shifted points).
    classes : array or tensor, (N,) int
        Predicted class per point. Negative classes (``-100``) are never clustered.
    radius : float
        Neighbour radius ``r``; points are joined when ``d^2 < r^2`` (PointGroup's value,
        0.03 m; book appendix, Module A).
    min_points : int
        Smallest cluster kept as a proposal, >= 1 (PointGroup's value, 50; book appendix, Module A).
    ignore_classes : iterable of int
        Classes never clustered, e.g. wall and floor on ScanNet (only foreground is clustered; book
        appendix, Module A).
    backend : {"auto", "scipy", "torch"}
        Connected-components solver (module docstring); the grid search always runs on the
        input's device.
    search : {"auto", "grid", "kdtree"}
        Neighbour search (module docstring, "Two neighbour searches"): the cell grid (any
        device), scipy's k-d tree (CPU input and the scipy solver only), or ``"auto"``: the k-d
        tree for sparse CPU input, the grid otherwise. Every choice gives the same result.
    chunk_pairs : int
        Most point pairs tested at once in the grid's exhaustive step (bounds memory, ~100
        bytes each).
    progress : bool
        Show a tqdm bar over the grid's exhaustive step.

    Returns
    -------
    array or tensor, (N,) int64
        Proposal id per point, ``-1`` for points in no proposal; ids are ``0..P-1`` ordered by
        the smallest point index of each proposal. NumPy in -> NumPy out; a tensor in -> a
        tensor on the same device.
    """
    xyz, cls = _check_inputs(points, classes)
    r2 = _check_parameters(radius, min_points, backend, search, chunk_pairs)
    if backend == "auto":
        backend = "scipy" if xyz.device.type == "cpu" else "torch"
    if search == "kdtree" and (xyz.device.type != "cpu" or backend != "scipy"):
        raise ValueError("semantic_bfs: search='kdtree' needs CPU input and the scipy backend, "
                         f"got {xyz.device.type} input and backend {backend!r}")
    ignore = torch.as_tensor(list(ignore_classes), dtype=torch.int64, device=cls.device)
    fg = torch.nonzero((cls >= 0) & ~torch.isin(cls, ignore)).squeeze(1)
    ids = torch.full((len(cls),), -1, dtype=torch.int64, device=cls.device)
    if len(fg):
        xyz, cls = xyz[fg], cls[fg]
        cells = sort_cells(*cell_keys(xyz, cls, float(radius)))
        if search == "auto":
            search = "grid"
            if xyz.device.type == "cpu" and backend == "scipy":
                if mean_cell_mates(cells[2]) <= _KDTREE_MAX_CELL_MATES:
                    search = "kdtree"
        if search == "kdtree":
            labels = component_per_point_kdtree(xyz, cls, cells[0], float(radius), r2)
        else:
            labels = component_per_point(xyz, cells, r2, backend, chunk_pairs, progress)
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


def _check_parameters(radius, min_points, backend, search, chunk_pairs) -> float:
    """Validate the scalar parameters; return ``r^2`` in float64."""
    if not (isinstance(radius, numbers.Real) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"semantic_bfs: 'radius' must be a positive finite number, got {radius!r}")
    if not (isinstance(min_points, numbers.Integral) and min_points >= 1):
        raise ValueError(f"semantic_bfs: 'min_points' must be an integer >= 1, got {min_points!r}")
    if backend not in BACKENDS:
        raise ValueError(f"semantic_bfs: 'backend' must be one of {BACKENDS}, got {backend!r}")
    if search not in SEARCHES:
        raise ValueError(f"semantic_bfs: 'search' must be one of {SEARCHES}, got {search!r}")
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
