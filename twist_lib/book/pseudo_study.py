"""Module C's pseudo labels against point-wise thresholding, scored against the hidden ground
truth: the helpers of the book's module C page (``book/module_c.ipynb``, "Module C: from
proposals to pseudo labels"). One scene's proposals come from
:func:`twist_lib.book.proposal_study.scene_proposals` (the module B page's helpers)::

    from twist_lib.book import pseudo_study as pst
    labels = pst.pseudo_labels_by(props, "psi", cfg, meta)     # one of PSEUDO_STRATEGIES
    q = pst.label_quality(labels, gt, num_classes)             # Fig. 4's quality of one scene
    audit = pst.label_audit(props, labels, gt, meta)           # where the labels land
    comp = pst.pseudo_label_comparison(phi, psi, unlabelled, cfg, meta)  # over the split

:func:`pseudo_centre` and :func:`matched_object` read a proposal's pseudo centre (eq. 7) and its
true object's centre back; :func:`merge_audits` and :func:`audit_rates` add audits up over scenes
and turn them into rates per group of :data:`AUDIT_GROUPS`.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..config import Config
from ..evaluation.pseudo import PseudoLabelQuality, pseudo_label_quality
from ..proposals import background_classes
from ..pseudo_labels import make_pseudo_labels
from .proposal_study import SceneProposals, scene_proposals

#: The pseudo-labelling strategies the module C page compares (paper Table 4, groups IV-VI).
PSEUDO_STRATEGIES = {
    "pointwise": "point-wise thresholding (Table 4, IV)",
    "majority": "proposals, majority class and score (module C without B, Table 4, V)",
    "psi": "proposals re-corrected by Ψ (TWIST, Table 4, VI)",
}


def pseudo_labels_by(props: SceneProposals, strategy: str, cfg: Config, meta: dict) -> dict:
    """One scene's pseudo labels (NumPy label dict of :mod:`twist_lib.pseudo_labels`) by one of
    :data:`PSEUDO_STRATEGIES`, all through :func:`~twist_lib.pseudo_labels.make_pseudo_labels`:
    ``pointwise`` (``update="pointwise"``, threshold ``cfg.pointwise_threshold``), ``majority``
    (module C on module A's classes and scores) or ``psi`` (module C on Psi's, TWIST); the
    proposal strategies keep proposals with score above ``cfg.pseudo_threshold``."""
    if strategy not in PSEUDO_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(PSEUDO_STRATEGIES)}")
    if strategy == "pointwise":
        return make_pseudo_labels(props.xyz, props.probs, props.offset, None, None, None,
                                  instance_classes=meta["instance_classes"], update="pointwise",
                                  pointwise_threshold=cfg.pointwise_threshold)
    classes, scores = ((props.majority_class, props.majority_score) if strategy == "majority"
                       else (props.psi_class, props.psi_score))
    return make_pseudo_labels(props.xyz, props.probs, props.offset, props.proposal_ids, classes,
                              scores, instance_classes=meta["instance_classes"],
                              threshold=cfg.pseudo_threshold, update="proposal")


def _quality_args(labels: dict, gt: dict, where=None) -> tuple:
    """Arguments of :meth:`~twist_lib.evaluation.pseudo.PseudoLabelQuality.add` for a label
    dict against ``gt`` (offsets scored where ``offset_valid``), on the points ``where``."""
    valid = np.asarray(labels["offset_valid"], dtype=bool)
    args = (np.asarray(labels["semantic"]), np.where(valid[:, None], labels["offset"], 0.0),
            np.asarray(gt["semantic"]), np.asarray(gt["offset"]), np.asarray(gt["instance"]), valid)
    if where is None:
        return args
    where = np.asarray(where, dtype=bool)
    return tuple(a[where] for a in args)


def label_quality(labels: dict, gt: dict, num_classes: int, where=None) -> dict:
    """Fig. 4's quality of one scene's pseudo labels against its ground truth ``gt`` (a scene
    dict with ``semantic``, ``instance`` and ``offset``, e.g. ``SceneDataset.ground_truth``):
    :func:`twist_lib.evaluation.pseudo.pseudo_label_quality` with offsets scored where
    ``offset_valid``, as :func:`twist_lib.evaluation.pseudo_dir_quality` scores a round;
    ``where`` (boolean mask) restricts it to some points, e.g. the true object points."""
    *args, valid = _quality_args(labels, gt, where)
    return pseudo_label_quality(*args, num_classes, offset_valid=valid)


def object_points(gt: dict, meta: dict):
    """Mask of the points whose true class is an instance class (not wall, floor or unlabelled)."""
    return np.isin(np.asarray(gt["semantic"]), np.asarray(meta["instance_classes"]))


def pseudo_centre(xyz, labels: dict, j: int):
    """Module C's pseudo centre a~_j of proposal ``j`` (eq. 7), read back from its labels:
    ``p_i + o~_i`` is the same point for every member ``i`` (eq. 8). None if ``j`` was not kept."""
    members = np.flatnonzero(np.asarray(labels["instance"]) == j)
    if not len(members):
        return None
    i = members[0]
    return np.asarray(xyz[i], dtype=np.float64) + np.asarray(labels["offset"][i], dtype=np.float64)


def matched_object(gt: dict, members):
    """``(object id, its centre)`` of the true object holding most of the points ``members``
    (boolean mask) in the ground truth ``gt`` (``xyz``, ``instance``, ``offset``: the centre is
    ``xyz + offset`` of its points); ``(-100, None)`` if they hold no object point."""
    inst = np.asarray(gt["instance"])
    hit = np.asarray(members, dtype=bool) & (inst >= 0)
    if not hit.any():
        return -100, None
    ids, counts = np.unique(inst[hit], return_counts=True)
    obj = int(ids[np.argmax(counts)])
    i = int(np.flatnonzero(inst == obj)[0])
    return obj, (np.asarray(gt["xyz"][i], dtype=np.float64)
                 + np.asarray(gt["offset"][i], dtype=np.float64))


AUDIT_GROUPS = {
    "labelled": "pseudo-labelled (in a proposal kept by its score)",
    "rejected": "in a proposal whose score is at most the threshold",
    "no_proposal": "predicted as an object class, in no proposal",
    "background": "predicted as wall or floor (module A never clusters them)",
}


def label_audit(props: SceneProposals, labels: dict, gt: dict, meta: dict) -> dict:
    """Where proposal-based pseudo labels ``labels`` of one scene land, in point counts.

    Every point falls in one group of :data:`AUDIT_GROUPS`; per group: ``points``, ``scored``
    (points with a true class), ``phi_correct`` (Phi's own class right: what a point-wise label
    would have said), ``label_correct`` (the pseudo class right) and ``true_background`` (truly
    wall or floor). Over the pseudo-labelled points with a true class, ``fixed`` (Phi wrong,
    pseudo class right: the proposal's class overrode the point's) and ``broken`` (the
    reverse); over those with a true object, ``offset_scored`` and the summed errors of the
    pseudo offset (``offset_error_pseudo``) and of Phi's own offset (``offset_error_phi``).
    Counts add up over scenes (:func:`merge_audits`); :func:`audit_rates` turns them into rates.
    """
    bg = np.asarray(background_classes(meta))
    phi_cls = props.semantic
    sem = np.asarray(labels["semantic"])
    truth = np.asarray(gt["semantic"])
    has_truth = truth >= 0
    in_prop = props.proposal_ids >= 0
    labelled = sem >= 0
    groups = {"labelled": labelled, "rejected": in_prop & ~labelled,
              "no_proposal": ~in_prop & ~np.isin(phi_cls, bg) & ~labelled,
              "background": ~in_prop & np.isin(phi_cls, bg) & ~labelled}
    out = {}
    for name, mask in groups.items():
        scored = mask & has_truth
        out[name] = {"points": int(mask.sum()), "scored": int(scored.sum()),
                     "phi_correct": int((phi_cls == truth)[scored].sum()),
                     "label_correct": int((sem == truth)[scored].sum()),
                     "true_background": int(np.isin(truth, bg)[mask].sum())}
    scored = labelled & has_truth
    phi_ok, label_ok = phi_cls == truth, sem == truth
    on_object = (labelled & np.asarray(labels["offset_valid"], dtype=bool)
                 & (np.asarray(gt["instance"]) >= 0))
    gt_off = np.asarray(gt["offset"], dtype=np.float64)[on_object]

    def error_sum(offset):
        return float(np.linalg.norm(np.asarray(offset, dtype=np.float64)[on_object] - gt_off,
                                    axis=1).sum())

    out["changes"] = {
        "fixed": int((scored & ~phi_ok & label_ok).sum()),
        "broken": int((scored & phi_ok & ~label_ok).sum()),
        "offset_scored": int(on_object.sum()),
        "offset_error_pseudo": error_sum(labels["offset"]),
        "offset_error_phi": error_sum(props.offset)}
    return out


def merge_audits(audits) -> dict:
    """The sum of several :func:`label_audit` results."""
    total = {}
    for audit in audits:
        for group, counts in audit.items():
            into = total.setdefault(group, {})
            for k, v in counts.items():
                into[k] = into.get(k, 0) + v
    return total


def audit_rates(audit: dict) -> dict:
    """Rates of a :func:`label_audit` (NaN where nothing was counted): per group ``share`` of
    all points, ``phi_acc``, ``label_acc`` and ``background_share``; ``changes`` with the mean
    offset errors ``offset_error_pseudo`` and ``offset_error_phi``."""
    nan = float("nan")
    div = lambda a, b: a / b if b else nan  # noqa: E731
    total = sum(audit[g]["points"] for g in AUDIT_GROUPS)
    out = {g: {**audit[g], "share": div(audit[g]["points"], total),
               "phi_acc": div(audit[g]["phi_correct"], audit[g]["scored"]),
               "label_acc": div(audit[g]["label_correct"], audit[g]["scored"]),
               "background_share": div(audit[g]["true_background"], audit[g]["points"])}
           for g in AUDIT_GROUPS}
    c = audit["changes"]
    out["changes"] = {**c, "offset_error_pseudo": div(c["offset_error_pseudo"], c["offset_scored"]),
                      "offset_error_phi": div(c["offset_error_phi"], c["offset_scored"])}
    return out


def pseudo_label_comparison(phi, psi, dataset, cfg: Config, meta: dict,
                            max_scenes: int | None = None, progress: bool = False) -> dict:
    """The strategies of :data:`PSEUDO_STRATEGIES` on the first ``max_scenes`` scenes of the
    unlabelled split ``dataset`` (all if None or 0), against their ground truth.

    Returns ``{"scenes": n, "quality": {strategy: PseudoLabelQuality result + "per_scene"},
    "objects": {strategy: the same on the true object points only (:func:`object_points`)},
    "audit": {strategy: merged label_audit}}`` (audits for the proposal strategies only).
    The scenes go through :func:`scene_proposals` one at a time;
    ``dataset.ground_truth`` is read for the scoring only.
    """
    n = len(dataset) if not max_scenes else min(max_scenes, len(dataset))
    k = int(meta["num_classes"])
    totals = {s: PseudoLabelQuality(k) for s in PSEUDO_STRATEGIES}
    objects = {s: PseudoLabelQuality(k) for s in PSEUDO_STRATEGIES}
    per_scene = {s: [] for s in PSEUDO_STRATEGIES}
    audits = {s: [] for s in PSEUDO_STRATEGIES if s != "pointwise"}
    for i in tqdm(range(n), desc="pseudo labels", disable=not progress, leave=False):
        props = scene_proposals(phi, psi, dataset[i], cfg, meta)
        gt = dataset.ground_truth(i)
        on_objects = object_points(gt, meta)
        for s in PSEUDO_STRATEGIES:
            labels = pseudo_labels_by(props, s, cfg, meta)
            *args, valid = _quality_args(labels, gt)
            totals[s].add(*args, offset_valid=valid)
            *args, valid = _quality_args(labels, gt, on_objects)
            objects[s].add(*args, offset_valid=valid)
            per_scene[s].append({"name": props.name, **label_quality(labels, gt, k)})
            if s in audits:
                audits[s].append(label_audit(props, labels, gt, meta))
    return {"scenes": n,
            "quality": {s: {**totals[s].result(), "per_scene": per_scene[s]}
                        for s in PSEUDO_STRATEGIES},
            "objects": {s: objects[s].result() for s in PSEUDO_STRATEGIES},
            "audit": {s: merge_audits(a) for s, a in audits.items()}}
