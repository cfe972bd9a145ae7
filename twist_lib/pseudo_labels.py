"""Module C: proposal-based pseudo-label update (paper Sec. 4.3, eqs. 6-8), its ablations
(Sec. 5.3, Tables 4-5), the pseudo-label files of a self-training round and their quality.

Every labelling function takes NumPy arrays or torch tensors and returns the same kind (torch on
the input's device) as a *label dict* of four per-point arrays::

    semantic      int64   (N,)    pseudo class S~, -100 (IGNORE_INDEX) = no pseudo class
    offset        float32 (N, 3)  pseudo offset O~, zeros where offset_valid is False
    offset_valid  bool    (N,)    points whose pseudo offset is supervised
    instance      int64   (N,)    id of the kept proposal the point belongs to, -100 elsewhere
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

Files and quality
-----------------
A round writes one ``<pseudo_dir>/<scene>.npz`` per unlabelled scene (:func:`write_pseudo_labels`,
atomic). :func:`pseudo_label_quality` then compares those files with the ground truth (Fig. 4's
"Sem. Acc." and "Off. Error", plus coverage) in a separate step; training never reads it.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.classes import IGNORE_INDEX
from .data.io import DataFormatError, _atomic_write
from .evaluation.pseudo import PseudoLabelQuality

LABEL_KEYS = ("semantic", "offset", "offset_valid", "instance")
UPDATES = ("proposal", "pointwise")
SCORE_THRESHOLD = 0.5  # Sec. 4.3: proposals "with a score higher than 0.5" are used


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


def _check_points(name: str, arr: torch.Tensor, n: int, width=None) -> None:
    shape = (n,) if width is None else (n, width)
    if tuple(arr.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(arr.shape)}")


# --------------------------------------------------------------------------- labelling
def _proposal_labels(xyz, offset, proposal_ids, proposal_class, proposal_score, threshold, dev,
                     max_spread=0.0):
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
    kept = torch.zeros(n, dtype=torch.bool, device=xyz.device)
    if n_prop:
        kept = (ids >= 0) & (score > threshold)[ids.clamp(min=0)]
    members = ids[kept]
    # eq. 7: a~_j = mean of p_i + o_hat_i over the proposal, one scatter in float64
    sums = torch.zeros((n_prop, 3), dtype=torch.float64, device=xyz.device)
    sums.index_add_(0, members, (xyz + o_hat)[kept])
    counts = torch.bincount(members, minlength=n_prop).clamp(min=1)
    centres = sums / counts[:, None]
    labels = _empty_labels(n, xyz.device)
    labels["semantic"][kept] = cls[members]                                   # eq. 6
    offset_valid = kept.clone()
    if max_spread > 0:
        offset_valid[kept] = _centre_spread(xyz + o_hat, kept, members, centres)[members] <= max_spread
    labels["offset"][offset_valid] = (centres[ids[offset_valid]]
                                      - xyz[offset_valid]).to(torch.float32)  # eq. 8
    labels["offset_valid"] = offset_valid
    labels["instance"][kept] = members
    return labels


def _centre_spread(shifted, kept, members, centres) -> torch.Tensor:
    """Per proposal: the mean distance of its shifted points ``p + o_hat`` from their mean
    ``a~_j`` (eq. 7). A whole, single object votes for one centre (small spread); two merged
    objects or a fragment with inconsistent offsets vote for several (large spread)."""
    dist = torch.linalg.vector_norm(shifted[kept] - centres[members], dim=1)
    total = torch.zeros(len(centres), dtype=dist.dtype, device=dist.device)
    total.index_add_(0, members, dist)
    return total / torch.bincount(members, minlength=len(centres)).clamp(min=1)


def _background_labels(labels, probs, background, threshold, dev) -> None:
    """Give unlabelled points that Phi puts in a background class (``background``, e.g. wall
    and floor) with probability above ``threshold`` that class as pseudo semantic (in place)."""
    probs = _t(probs, dev, torch.float32)
    conf, cls = probs.max(dim=1)
    bg = _t(list(background), probs.device, torch.int64).reshape(-1)
    add = (labels["semantic"] == IGNORE_INDEX) & (conf > threshold) & torch.isin(cls, bg)
    labels["semantic"] = torch.where(add, cls, labels["semantic"])


def proposal_pseudo_labels(xyz, offset, proposal_ids, proposal_class, proposal_score,
                           threshold: float = SCORE_THRESHOLD, max_spread: float = 0.0) -> dict:
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
    """
    dev = _device(xyz)
    labels = _proposal_labels(xyz, offset, proposal_ids, proposal_class, proposal_score,
                              threshold, dev, max_spread)
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
                       background_classes=(), background_threshold: float = 0.0) -> dict:
    """One scene's pseudo labels with the ablation switches of Tables 4-5.

    * ``update="proposal"``: module C (:func:`proposal_pseudo_labels`, eqs. 6-8, Table 4
      groups V-VI); ``"pointwise"``: module C off, :func:`pointwise_pseudo_labels` with
      ``pointwise_threshold`` for everything (groups II-IV). Other values raise ValueError.
    * ``offset_to_semantic=False`` (Table 5, "off-to-sem" blocked): the semantics come from
      point-wise thresholding while the offsets stay those of eqs. 7-8.
    * ``use_semantic=False``: no pseudo semantic (Table 4 group III, offsets only).
    * ``use_offset=False``: no pseudo offset (Table 4 group II, semantics only).
    * ``max_spread``: the centre-consistency check of :func:`proposal_pseudo_labels`.
    * ``background_threshold > 0`` (this implementation's extension, proposal update only):
      points in no kept proposal whose argmax class is one of ``background_classes`` with a
      probability strictly above the threshold get that class as pseudo semantic. Module A
      never forms proposals of background classes (wall, floor), so eq. 6 labels only objects;
      without background labels L^u teaches "every labelled point is an object" and Phi's
      background recall drops. No offset is given (background has no instance).

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
                                  threshold, dev, max_spread)
        if not offset_to_semantic:
            labels["semantic"] = _pointwise_labels(probs, offset, pointwise_threshold,
                                                   instance_classes, dev)["semantic"]
        elif background_threshold > 0 and len(background_classes):
            _background_labels(labels, probs, background_classes, background_threshold, dev)
    if not use_semantic:
        labels["semantic"] = torch.full_like(labels["semantic"], IGNORE_INDEX)
    if not use_offset:
        labels["offset"] = torch.zeros_like(labels["offset"])
        labels["offset_valid"] = torch.zeros_like(labels["offset_valid"])
    return _out(labels, dev)


# --------------------------------------------------------------------------- files
def pseudo_label_path(pseudo_dir, scene_name: str) -> Path:
    """The pseudo-label file of a scene: ``pseudo_dir / f"{scene_name}.npz"``."""
    return Path(pseudo_dir) / f"{scene_name}.npz"


def _validated(arrays: dict, where: str, num_points=None) -> dict:
    """The four label arrays with canonical dtypes; :class:`DataFormatError` naming ``where``."""
    missing = [k for k in LABEL_KEYS if k not in arrays]
    if missing:
        raise DataFormatError(f"{where}: missing pseudo-label array(s) {missing}")
    a = {k: np.asarray(arrays[k]) for k in LABEL_KEYS}
    kinds = {"semantic": "iu", "offset": "f", "offset_valid": "b", "instance": "iu"}
    for key, kind in kinds.items():
        if a[key].dtype.kind not in kind:
            raise DataFormatError(f"{where}: '{key}' has dtype {a[key].dtype}")
    n = len(a["semantic"]) if a["semantic"].ndim else -1
    shapes = {"semantic": (n,), "offset": (n, 3), "offset_valid": (n,), "instance": (n,)}
    for key, shape in shapes.items():
        if a[key].shape != shape:
            raise DataFormatError(f"{where}: '{key}' must have shape {shape}, got {a[key].shape}")
    if num_points is not None and n != num_points:
        raise DataFormatError(f"{where}: pseudo labels for {n} points, the scene has {num_points}")
    for key in ("semantic", "instance"):
        if ((a[key] < 0) & (a[key] != IGNORE_INDEX)).any():
            raise DataFormatError(f"{where}: '{key}' has negative ids other than {IGNORE_INDEX}")
    if not np.isfinite(a["offset"]).all():
        raise DataFormatError(f"{where}: 'offset' has NaN or infinite values")
    return {"semantic": a["semantic"].astype(np.int64), "offset": a["offset"].astype(np.float32),
            "offset_valid": a["offset_valid"], "instance": a["instance"].astype(np.int64)}


def write_pseudo_labels(path, labels: dict) -> Path:
    """Write a label dict (NumPy or torch) as a compressed ``.npz``, atomically (temporary file,
    then rename; parent folders are created). Returns the path."""
    path = Path(path)
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
              for k, v in labels.items() if k in LABEL_KEYS}
    arrays = _validated(arrays, str(path))
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_pseudo_labels(path, num_points=None) -> dict:
    """Read a file of :func:`write_pseudo_labels` back as a NumPy label dict.

    Raises FileNotFoundError for a missing file and :class:`DataFormatError` (a ValueError) for
    an unreadable one, a missing key, wrong shapes or dtypes, or a point count other than
    ``num_points``; every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pseudo-label file not found")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(f"{path}: not a readable pseudo-label .npz file ({e})") from e
    return _validated(arrays, str(path), num_points)


# --------------------------------------------------------------------------- quality
def pseudo_label_quality(pseudo_dir, dataset, progress: bool = False) -> dict:
    """Quality of a round's pseudo-label files against the ground truth (Fig. 4).

    For every scene of ``dataset`` (an unlabelled :class:`twist_lib.data.SceneDataset`) reads
    its file in ``pseudo_dir`` and ``dataset.ground_truth(i)``, and accumulates
    :class:`twist_lib.evaluation.pseudo.PseudoLabelQuality` (offsets scored where
    ``offset_valid``). Returns its ``result()`` plus ``per_scene``: a list of dicts with
    ``name``, ``sem_acc``, ``coverage`` and ``offset_error`` of each scene. Run this after the
    labels are written; training never reads it. A missing file is an error naming it.
    """
    paths = [pseudo_label_path(pseudo_dir, name) for name in dataset.names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} pseudo-label file(s) missing in {pseudo_dir}, "
                                f"e.g. {missing[:3]}")
    num_classes = int(dataset.meta["num_classes"])
    objects = dataset.meta["instance_classes"]
    total, per_scene = PseudoLabelQuality(num_classes, object_classes=objects), []
    for i, path in enumerate(tqdm(paths, desc="pseudo-label quality", disable=not progress)):
        gt = dataset.ground_truth(i)
        labels = read_pseudo_labels(path, num_points=len(gt["xyz"]))
        valid = labels["offset_valid"]
        args = (labels["semantic"], np.where(valid[:, None], labels["offset"], 0.0),
                gt["semantic"], gt["offset"], gt["instance"])
        total.add(*args, offset_valid=valid)
        scene = PseudoLabelQuality(num_classes).add(*args, offset_valid=valid).result()
        per_scene.append({"name": dataset.names[i], "sem_acc": scene["sem_acc"],
                          "coverage": scene["coverage"], "offset_error": scene["offset_error"]})
    return {**total.result(), "per_scene": per_scene}
