"""Module C: proposal-based pseudo-label update (paper Sec. 4.3, eqs. 6-8), its ablations
(Sec. 5.3, Tables 4-5), the pseudo-label files of a self-training round and their quality.

Every labelling function takes NumPy arrays or torch tensors and returns the same kind (torch on
the input's device) as a *label dict* of four per-point arrays (the format of the round's
files, :mod:`twist_lib.data.pseudo_files`)::

    semantic      int64   (N,)    pseudo class S~, -100 (IGNORE_INDEX) = no pseudo class
    offset        float32 (N, 3)  pseudo offset O~, zeros where offset_valid is False
    offset_valid  bool    (N,)    points whose pseudo offset is supervised
    instance      int64   (N,)    id of the kept proposal (or of its part, ``split_parts``) the
                                  point belongs to, -100 elsewhere
                                  (only to draw the pseudo instances; never used for training)

Strategies
----------
* :func:`proposal_pseudo_labels` is TWIST's module C. Proposals whose instance certainty score
  from module B is *strictly* above 0.5 ("higher than 0.5", Sec. 4.3) label all their points:
  the class is the proposal's re-predicted class (eq. 6) and the offset points to the proposal's
  mean-shift centre, the mean of ``p + o_hat`` over the proposal (eqs. 7-8).
* :func:`pointwise_pseudo_labels` is the "naive thresholding strategy discussed in Sec. 4" that
  Table 4 (groups II-IV) starts from and that Sec. 4 calls vulnerable to noise (Fig. 1a): a
  point is labelled with its argmax class when its top softmax probability exceeds a threshold,
  and its pseudo offset is Phi's own prediction ``o_hat`` on confident points of instance classes.
* :func:`make_pseudo_labels` puts the ablation switches of Tables 4-5 in one place.

The three equations of module C are one public function each, which the module C page shows:
:func:`pseudo_semantic` (eq. 6), :func:`proposal_centres` (eq. 7) and :func:`pseudo_offsets`
(eq. 8); :func:`kept_points` is the score filter before them.

A round writes its labels as one ``<pseudo_dir>/<scene>.npz`` per unlabelled scene
(:mod:`twist_lib.data.pseudo_files`); their quality against the ground truth (Fig. 4) is
:func:`twist_lib.evaluation.pseudo_dir_quality`, a separate step that training never reads.
"""
from __future__ import annotations

import numpy as np
import torch

from .data.classes import IGNORE_INDEX

UPDATES = ("proposal", "pointwise")
SCORE_THRESHOLD = 0.5  # Sec. 4.3: proposals "with a score higher than 0.5" are used
# split_by_votes: parts are separate objects when their centres lie this many part spreads apart
# (a ball's mean distance from its centre is 3/4 of its radius, so 4 spreads = 3 radii: clumps
# with a clear gap). On the cpu benchmark's unlabelled scenes (5 %, round 1, 60 scenes) the cuts
# of merged proposals measured 2.7-8.9 (17 of 20 >= 4), those of single objects 0.9-3.0.
SPLIT_SEPARATION = 4.0


# --------------------------------------------------------------------------- array kinds
def _device(ref):
    """The device results go to: the tensor's, or None for NumPy (= CPU, returned as NumPy)."""
    return ref.device if isinstance(ref, torch.Tensor) else None


def _t(x, device, dtype) -> torch.Tensor:
    """``x`` (NumPy, torch or a sequence) as a detached tensor of ``dtype`` on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device or "cpu", dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device or "cpu")


def _out(labels: dict, device) -> dict:
    """Return the label dict as tensors on ``device``, or as NumPy when ``device`` is None."""
    if device is None:
        return {k: v.cpu().numpy() for k, v in labels.items()}
    return {k: v.to(device) for k, v in labels.items()}


def _empty_labels(n: int, device) -> dict:
    """A label dict with no pseudo label at all."""
    return {"semantic": torch.full((n,), IGNORE_INDEX, dtype=torch.int64, device=device),
            "offset": torch.zeros((n, 3), dtype=torch.float32, device=device),
            "offset_valid": torch.zeros(n, dtype=torch.bool, device=device),
            "instance": torch.full((n,), IGNORE_INDEX, dtype=torch.int64, device=device)}


def empty_labels(n: int) -> dict:
    """The label dict of a scene of ``n`` points with no pseudo label at all (NumPy)."""
    return _out(_empty_labels(n, "cpu"), None)


def _check_points(name: str, arr: torch.Tensor, n: int, width=None) -> None:
    shape = (n,) if width is None else (n, width)
    if tuple(arr.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(arr.shape)}")


# --------------------------------------------------------------------------- labelling
def kept_points(proposal_ids, proposal_score, threshold: float = SCORE_THRESHOLD):
    """The points module C labels (Sec. 4.3): members of a proposal whose certainty score is
    *strictly* above ``threshold`` ("a score higher than 0.5"). Tensors ``proposal_ids`` (N,)
    (-1 = no proposal) and ``proposal_score`` (P,) in, a bool tensor (N,) out."""
    if len(proposal_score) == 0:
        return torch.zeros(len(proposal_ids), dtype=torch.bool, device=proposal_ids.device)
    return (proposal_ids >= 0) & (proposal_score > threshold)[proposal_ids.clamp(min=0)]


def pseudo_semantic(proposal_ids, proposal_class, kept):
    """Eq. (6): ``S~_i = e_hat_j`` for every kept point ``i`` of proposal ``j``, -100 elsewhere
    (tensors; int64 (N,))."""
    out = torch.full(proposal_ids.shape, IGNORE_INDEX, dtype=torch.int64,
                     device=proposal_ids.device)
    out[kept] = proposal_class[proposal_ids[kept]]
    return out


def proposal_centres(shifted, proposal_ids, kept, num_proposals: int):
    """Eq. (7): the mean-shift centre ``a~_j = mean_i (p_i + o_hat_i)`` of every proposal over its
    kept points; ``shifted`` = ``p + o_hat`` (N, 3). One scatter in ``shifted``'s dtype (module C
    uses float64); a proposal with no kept point gets the origin. Returns (P, 3)."""
    members = proposal_ids[kept]
    sums = torch.zeros((num_proposals, 3), dtype=shifted.dtype, device=shifted.device)
    sums.index_add_(0, members, shifted[kept])
    counts = torch.bincount(members, minlength=num_proposals).clamp(min=1)
    return sums / counts[:, None]


def pseudo_offsets(xyz, centres, proposal_ids, valid):
    """Eq. (8): ``O~_i = a~_j - p_i`` for every point ``i`` of ``valid`` in proposal ``j``, zeros
    elsewhere (float32 (N, 3))."""
    out = torch.zeros((len(xyz), 3), dtype=torch.float32, device=xyz.device)
    out[valid] = (centres[proposal_ids[valid]] - xyz[valid]).to(torch.float32)
    return out


def centre_spread(shifted, proposal_ids, kept, centres) -> torch.Tensor:
    """Per proposal: the mean distance of its kept shifted points ``p + o_hat`` from their centre
    ``a~_j`` (eq. 7). A whole, single object votes for one centre (small spread); two merged
    objects or a fragment with inconsistent offsets vote for several (large spread)."""
    members = proposal_ids[kept]
    dist = torch.linalg.vector_norm(shifted[kept] - centres[members], dim=1)
    total = torch.zeros(len(centres), dtype=dist.dtype, device=dist.device)
    total.index_add_(0, members, dist)
    return total / torch.bincount(members, minlength=len(centres)).clamp(min=1)


def _kmeans_parts(votes, k: int, iters: int = 10):
    """Part index (n,) of every vote after ``iters`` Lloyd steps of k-means on ``votes`` (n, 3),
    started deterministically from farthest points (the vote farthest from the mean, then the
    vote farthest from the centres so far)."""
    centres = votes[torch.linalg.vector_norm(votes - votes.mean(0), dim=1).argmax()][None]
    for _ in range(k - 1):
        far = torch.cdist(votes, centres).min(dim=1).values.argmax()
        centres = torch.cat([centres, votes[far][None]])
    for _ in range(iters):
        part = torch.cdist(votes, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, part, votes)
        counts = torch.bincount(part, minlength=k)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return torch.cdist(votes, centres).argmin(dim=1)


def split_by_votes(votes, max_spread: float, min_points: int, max_parts: int):
    """This implementation's extension of eq. 7: the votes ``p + o_hat`` (n, 3) of one proposal
    whose spread fails the check of :func:`centre_spread`, cut into the fewest ``k`` parts
    (2 <= k <= ``max_parts``, k-means on the votes) whose own spreads are all within
    ``max_spread``, each part at least ``min_points`` points, and whose centres lie at least
    :data:`SPLIT_SEPARATION` times the largest part spread apart. Returns the part index (n,)
    of every vote (parts numbered in the order of their first vote), or None when there is no
    such cut (the proposal then gets no pseudo offset).

    A proposal that joins two touching objects of one class has two tight, distant clumps of
    votes; eq. 7's single mean lies between them, so the spread check drops all its points and
    the contact region, where a network's offsets are worst, never gets a pseudo offset. Each
    part's own centre (eq. 7 on the part) gives those points one. One object whose votes are
    merely diffuse also splits into parts within the spread, but their clumps touch; cutting it
    would teach the network to split it, hence the separation test."""
    n = len(votes)
    everyone = torch.ones(n, dtype=torch.bool, device=votes.device)
    for k in range(2, max_parts + 1):
        if n < k * min_points:
            return None
        part = _kmeans_parts(votes, k)
        if torch.bincount(part, minlength=k).min() < min_points:
            return None
        centres = proposal_centres(votes, part, everyone, k)
        spreads = centre_spread(votes, part, everyone, centres)
        if bool((spreads <= max_spread).all()):
            if torch.pdist(centres).min() < SPLIT_SEPARATION * spreads.max():
                return None                     # the clumps touch: one object, not k
            first = torch.full((k,), n, dtype=torch.int64, device=votes.device)
            first.scatter_reduce_(0, part, torch.arange(n, device=votes.device), "amin")
            return torch.argsort(torch.argsort(first))[part]   # parts in order of first vote
    return None


def _split_wide(shifted, ids, kept, wide, max_spread, min_points, max_parts):
    """New proposal ids after :func:`split_by_votes` on every ``wide`` proposal: the first part
    keeps the proposal's id, the others get ids after the last proposal's."""
    ids = ids.clone()
    next_id = len(wide)
    for j in torch.nonzero(wide).flatten().tolist():
        members = torch.nonzero(kept & (ids == j)).flatten()
        part = split_by_votes(shifted[members], max_spread, min_points, max_parts)
        if part is None:
            continue
        for q in range(1, int(part.max()) + 1):
            ids[members[part == q]] = next_id
            next_id += 1
    return ids, next_id


def _proposal_labels(xyz, offset, proposal_ids, proposal_class, proposal_score, threshold, dev,
                     max_spread=0.0, split_parts=0, min_points=1):
    """Eqs. 6-8 on tensors (see :func:`proposal_pseudo_labels`)."""
    xyz = _t(xyz, dev, torch.float64)
    n = len(xyz)
    _check_points("xyz", xyz, n, 3)
    o_hat = _t(offset, dev, torch.float64)
    _check_points("offset", o_hat, n, 3)
    ids = _t(proposal_ids, dev, torch.int64)
    _check_points("proposal_ids", ids, n)
    cls = _t(proposal_class, dev, torch.int64).reshape(-1)
    score = _t(proposal_score, dev, torch.float64).reshape(-1)
    n_prop = len(score)
    if len(cls) != n_prop:
        raise ValueError(f"proposal_class has {len(cls)} entries, proposal_score {n_prop}")
    if n and (ids.min() < -1 or ids.max() >= n_prop):
        raise ValueError(f"proposal_ids must lie in [-1, {n_prop - 1}] ({n_prop} proposals)")
    kept = kept_points(ids, score, threshold)
    shifted = xyz + o_hat
    centres = proposal_centres(shifted, ids, kept, n_prop)                   # eq. 7
    labels = _empty_labels(n, xyz.device)
    labels["semantic"] = pseudo_semantic(ids, cls, kept)                     # eq. 6
    offset_valid = kept.clone()
    if max_spread > 0:
        spread = centre_spread(shifted, ids, kept, centres)
        if split_parts > 1 and bool((spread > max_spread).any()):
            ids, n_prop = _split_wide(shifted, ids, kept, spread > max_spread, max_spread,
                                      min_points, split_parts)
            centres = proposal_centres(shifted, ids, kept, n_prop)           # eq. 7 per part
            spread = centre_spread(shifted, ids, kept, centres)
        offset_valid[kept] = spread[ids[kept]] <= max_spread
    labels["offset"] = pseudo_offsets(xyz, centres, ids, offset_valid)       # eq. 8
    labels["offset_valid"] = offset_valid
    labels["instance"][kept] = ids[kept]
    return labels


def confident_semantic(semantic, probs, threshold: float):
    """Eq. 6's classes ``semantic`` (N,) kept only where Phi's probability ``probs`` (N, K) of
    the class is strictly above ``threshold``, -100 elsewhere (this implementation's extension).

    Module A joins the points Phi gives one class, so a proposal also holds the floor or wall
    points around an object's foot that Phi took for the object, and eq. 6 then confirms the
    mistake at exactly the points that bridge two touching objects. Those points are less sure
    than the object's own (book: the experiments page, "Why TWIST equals its control at 5 %")."""
    labelled = semantic != IGNORE_INDEX
    p = torch.zeros(len(semantic), dtype=probs.dtype, device=probs.device)
    p[labelled] = probs[labelled, semantic[labelled]]
    return torch.where(labelled & (p > threshold), semantic, torch.full_like(semantic, IGNORE_INDEX))


def _background_labels(labels, probs, background, threshold, dev) -> None:
    """Give unlabelled points that Phi puts in a background class (``background``, e.g. wall
    and floor) with probability above ``threshold`` that class as pseudo semantic (in place)."""
    probs = _t(probs, dev, torch.float32)
    conf, cls = probs.max(dim=1)
    bg = _t(list(background), probs.device, torch.int64).reshape(-1)
    add = (labels["semantic"] == IGNORE_INDEX) & (conf > threshold) & torch.isin(cls, bg)
    labels["semantic"] = torch.where(add, cls, labels["semantic"])


def proposal_pseudo_labels(xyz, offset, proposal_ids, proposal_class, proposal_score,
                           threshold: float = SCORE_THRESHOLD, max_spread: float = 0.0,
                           split_parts: int = 0, min_points: int = 1) -> dict:
    """Module C (Sec. 4.3): pseudo labels of one unlabelled scene from its instance proposals.

    ``xyz``, ``offset`` (N, 3): the points ``p`` and Phi's predicted offsets ``o_hat``;
    ``proposal_ids`` (N,): each point's proposal id, -1 for none (module A,
    :func:`twist_lib.clustering.semantic_bfs`); ``proposal_class``, ``proposal_score`` (P,): the
    re-predicted class ``e_hat_j`` and instance certainty ``v_hat_j`` of module B, indexed by id.

    Every point of a proposal with ``score > threshold`` (strictly) gets the proposal's class
    (eq. 6) and the offset ``a~_j - p_i`` (eq. 8) to its mean-shift centre
    ``a~_j = mean(p_i + o_hat_i)`` (eq. 7, computed in float64), ``offset_valid`` True and
    ``instance`` = the proposal id; all other points get no label. Returns the module's label
    dict, of the kind of ``xyz``.

    ``max_spread > 0`` (metres) is this implementation's extension, not the paper's: a kept
    proposal's points get a pseudo offset only when its shifted points ``p + o_hat`` lie on
    average within ``max_spread`` of their mean ``a~_j``; its class is kept either way. Eq. 7
    assumes one object per proposal; a proposal that merges two objects (or a fragment whose
    offsets disagree) has a mean between the true centres, and eq. 8 would then teach offsets
    that point at empty space. The book's pipeline page ("Why the offsets need a consistency
    check") shows what it measured on the synthetic benchmark. 0 = the paper's eqs. 7-8 as
    written.

    ``split_parts >= 2`` (extension, needs ``max_spread > 0``): a kept proposal that fails the
    spread check is first cut by :func:`split_by_votes` into at most ``split_parts`` parts of at
    least ``min_points`` points that each pass it; each part then gets eqs. 7-8 of its own and a
    new ``instance`` id (after the last proposal's); the class stays the proposal's (eq. 6).
    0 = no split.
    """
    dev = _device(xyz)
    labels = _proposal_labels(xyz, offset, proposal_ids, proposal_class, proposal_score,
                              threshold, dev, max_spread, split_parts, min_points)
    return _out(labels, dev)


def _pointwise_labels(probs, offset, threshold, instance_classes, dev):
    """Point-wise confidence thresholding on tensors (see :func:`pointwise_pseudo_labels`)."""
    probs = _t(probs, dev, torch.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, K), got {tuple(probs.shape)}")
    n = len(probs)
    offset = _t(offset, dev, torch.float32)
    _check_points("offset", offset, n, 3)
    conf, cls = probs.max(dim=1)
    confident = conf > threshold
    if not isinstance(instance_classes, torch.Tensor):
        instance_classes = list(instance_classes)
    inst_classes = _t(instance_classes, probs.device, torch.int64).reshape(-1)
    labels = _empty_labels(n, probs.device)
    labels["semantic"] = torch.where(confident, cls, labels["semantic"])
    labels["offset_valid"] = confident & torch.isin(cls, inst_classes)
    labels["offset"] = torch.where(labels["offset_valid"][:, None], offset, labels["offset"])
    return labels


def pointwise_pseudo_labels(probs, offset, threshold: float, instance_classes) -> dict:
    """The naive point-wise confidence thresholding of Sec. 4 / Table 4 (groups II-IV).

    ``probs`` (N, K): Phi's softmax class probabilities; ``offset`` (N, 3): its offsets
    ``o_hat``. A point whose top probability is strictly above ``threshold`` gets its argmax
    class as pseudo semantic (any class, background included); confident points whose argmax
    class is in ``instance_classes`` keep ``o_hat`` as pseudo offset (``offset_valid``). No
    proposals are involved, so ``instance`` is all -100. This is the baseline module C improves
    on: labels are decided point by point, with no intra-proposal consistency (Fig. 1a).
    Returns the module's label dict, of the kind of ``probs``.
    """
    dev = _device(probs)
    return _out(_pointwise_labels(probs, offset, threshold, instance_classes, dev), dev)


def make_pseudo_labels(xyz, probs, offset, proposal_ids, proposal_class, proposal_score, *,
                       instance_classes, threshold: float = SCORE_THRESHOLD,
                       update: str = "proposal", pointwise_threshold: float = 0.9,
                       use_semantic: bool = True, use_offset: bool = True,
                       offset_to_semantic: bool = True, max_spread: float = 0.0,
                       split_parts: int = 0, min_points: int = 1,
                       background_classes=(), background_threshold: float = 0.0,
                       point_confidence: float = 0.0) -> dict:
    """One scene's pseudo labels with the ablation switches of Tables 4-5.

    * ``update="proposal"``: module C (:func:`proposal_pseudo_labels`, eqs. 6-8, Table 4
      groups V-VI); ``"pointwise"``: module C off, :func:`pointwise_pseudo_labels` with
      ``pointwise_threshold`` for everything (groups II-IV). Other values raise ValueError.
    * ``offset_to_semantic=False`` (Table 5, "off-to-sem" blocked): the semantics come from
      point-wise thresholding while the offsets stay those of eqs. 7-8.
    * ``use_semantic=False``: no pseudo semantic (Table 4 group III, offsets only).
    * ``use_offset=False``: no pseudo offset (Table 4 group II, semantics only).
    * ``max_spread``, ``split_parts``, ``min_points``: the centre-consistency check of
      :func:`proposal_pseudo_labels` and the split of the proposals that fail it.
    * ``background_threshold > 0`` (this implementation's extension, proposal update only):
      points in no kept proposal whose argmax class is one of ``background_classes`` with a
      probability strictly above the threshold get that class as pseudo semantic. Module A
      never forms proposals of background classes (wall, floor), so eq. 6 labels only objects;
      without background labels L^u teaches "every labelled point is an object" and Phi's
      background recall drops. No offset is given (background has no instance).

    * ``point_confidence > 0`` (this implementation's extension, proposal update with
      ``offset_to_semantic``): a point of a kept proposal keeps eq. 6's class only where Phi's
      probability of that class is strictly above it (:func:`confident_semantic`), before the
      background labels.

    The switches never change ``instance``. ``probs`` may be None when it is not used
    (``update="proposal"`` with ``offset_to_semantic``), the proposal arguments when
    ``update="pointwise"``. Returns the module's label dict, of the kind of ``offset``.
    """
    if update not in UPDATES:
        raise ValueError(f"unknown pseudo-label update {update!r}; choose one of {UPDATES}")
    dev = _device(offset)
    if update == "pointwise":
        labels = _pointwise_labels(probs, offset, pointwise_threshold, instance_classes, dev)
    else:
        labels = _proposal_labels(xyz, offset, proposal_ids, proposal_class, proposal_score,
                                  threshold, dev, max_spread, split_parts, min_points)
        if not offset_to_semantic:
            labels["semantic"] = _pointwise_labels(probs, offset, pointwise_threshold,
                                                   instance_classes, dev)["semantic"]
        else:
            if point_confidence > 0:
                labels["semantic"] = confident_semantic(labels["semantic"],
                                                        _t(probs, dev, torch.float32),
                                                        point_confidence)
            if background_threshold > 0 and len(background_classes):
                _background_labels(labels, probs, background_classes, background_threshold, dev)
    if not use_semantic:
        labels["semantic"] = torch.full_like(labels["semantic"], IGNORE_INDEX)
    if not use_offset:
        labels["offset"] = torch.zeros_like(labels["offset"])
        labels["offset_valid"] = torch.zeros_like(labels["offset_valid"])
    return _out(labels, dev)
