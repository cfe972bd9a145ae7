"""How good is module B? Psi's classes and certainty scores against the truth, per proposal.

For scenes with ground truth (the val split), :func:`proposal_table` runs Phi, module A and Psi
exactly as pseudo-labelling does (eval mode, no augmentation) and lists every proposal with its
true IoU and class (:func:`twist_lib.object_samples.proposal_targets`), the class by majority vote
and its mean probability (what TWIST uses with module B off), and Psi's class and certainty.
:func:`summarise` turns the table into the figures the book's module B page shows: how many
wrong classes Psi corrects and how many right ones it breaks, and how well its score separates
proposals with IoU above 0.5 from the rest (the paper's threshold, Sec. 4.3).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.batch import collate, to_device
from ..object_samples import sample_targets
from ..proposals import background_classes, propose

COLUMNS = ("scene", "size", "iou", "true_class", "majority_class", "majority_score",
           "psi_class", "psi_score")


@torch.no_grad()
def proposal_table(phi, psi, dataset, cfg, meta: dict, device, max_scenes: int | None = None,
                   batch_size: int = 4) -> dict:
    """Every proposal of the first ``max_scenes`` scenes of ``dataset``: a dict of NumPy
    arrays named :data:`COLUMNS` (``scene`` = index into ``dataset``)."""
    n = len(dataset) if not max_scenes else min(max_scenes, len(dataset))
    phi.eval()
    background = background_classes(meta)
    parts = {k: [] for k in COLUMNS}
    for start in tqdm(range(0, n, batch_size), desc="proposals", disable=not cfg.progress,
                      leave=False):
        scenes = [dataset[i] for i in range(start, min(n, start + batch_size))]
        batch = to_device(collate(scenes, cfg.voxel_size, cfg.use_xyz_features), device)
        props = propose(phi(batch), batch, cfg, background, psi=psi)
        samples = props.samples
        if samples.n == 0:
            continue
        iou, cls = sample_targets(samples.point_idx, samples.sample_idx, samples.n,
                                  batch["instance"], batch["semantic"])
        scene_of = batch["batch_index"][samples.point_idx]
        first = torch.zeros(samples.n, dtype=torch.int64, device=scene_of.device)
        first.scatter_reduce_(0, samples.sample_idx, scene_of, "amax", include_self=False)
        sizes = torch.bincount(samples.sample_idx, minlength=samples.n)
        columns = {
            "scene": first + start, "size": sizes, "iou": iou, "true_class": cls,
            "majority_class": props.majority_class, "majority_score": props.majority_score,
            "psi_class": props.classes, "psi_score": props.scores}
        for k, v in columns.items():
            parts[k].append(v.cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def summarise(table: dict, threshold: float = 0.5) -> dict:
    """Module B's figures on a :func:`proposal_table`.

    Class figures are over the proposals that match an object (IoU > 0.5, where a class is
    defined): ``majority_acc`` and ``psi_acc``, ``corrected`` (majority wrong, Psi right) and
    ``broken`` (majority right, Psi wrong). Score figures over all proposals: ``kept`` (score
    above ``threshold``), the precision of keeping (``kept_precision``: share of kept proposals
    with IoU > 0.5) and the recall of good proposals (``good_recall``), for Psi's score and for
    the majority score, and the correlation of Psi's score with the IoU.
    """
    iou = np.asarray(table["iou"], dtype=np.float64)
    good = iou > 0.5
    out = {"proposals": int(len(iou)), "good": int(good.sum())}
    truth = table["true_class"][good]
    maj_ok = table["majority_class"][good] == truth
    psi_ok = table["psi_class"][good] == truth
    out.update(majority_acc=_mean(maj_ok), psi_acc=_mean(psi_ok),
               corrected=int((~maj_ok & psi_ok).sum()), broken=int((maj_ok & ~psi_ok).sum()))
    for name in ("psi", "majority"):
        kept = np.asarray(table[f"{name}_score"]) > threshold
        out[f"{name}_kept"] = int(kept.sum())
        out[f"{name}_kept_precision"] = _mean(good[kept])
        out[f"{name}_good_recall"] = _mean(kept[good])
    score = np.asarray(table["psi_score"], dtype=np.float64)
    out["psi_score_iou_corr"] = (float(np.corrcoef(score, iou)[0, 1])
                                 if len(iou) > 1 and score.std() > 0 and iou.std() > 0
                                 else float("nan"))
    return out


def _mean(x) -> float:
    x = np.asarray(x)
    return float(x.mean()) if len(x) else float("nan")
