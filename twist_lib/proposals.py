"""One step, written once: Phi's outputs -> module A's proposals -> (optionally) module B.

Every place that turns Phi's prediction into instance proposals goes through :func:`propose`:
pseudo-labelling (:func:`twist_lib.self_training.pseudo_label_split`, paper Sec. 4.3), Psi's
training samples (:func:`twist_lib.psi_training.training_samples`, Sec. 4.2), inference and
the test-time re-correction (:func:`twist_lib.inference.predict_scene`, Sec. 3 and 5.3), and
the book's pages that look inside a round. Its result, :class:`BatchProposals`, is one typed
record for all proposals of a batch:

1. Phi's outputs as module A reads them: class probabilities (softmax of the logits) and
   offsets ``o_hat`` (:func:`point_predictions`);
2. module A (Sec. 4.1): per scene, points of the same predicted class are grouped on their
   shifted coordinates ``p + o_hat`` (:func:`cluster_prediction`); each proposal gets the
   majority class of its points and the mean probability of that class as its score;
3. module B (Sec. 4.2-4.3), when a Psi is given: Psi re-predicts every proposal's class ``e_j``
   and scores it with its certainty ``v_j`` (:func:`twist_lib.recorrection.recorrect`);
   otherwise the proposal keeps module A's class and score (module B off, Table 4).

The proposals of all scenes are one :class:`~twist_lib.object_samples.Samples` (membership
rows in batch point indices), numbered scene after scene, so Psi runs once per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .clustering import Proposals, proposals_from_ids, semantic_bfs
from .evaluation import ClassSpec
from .object_samples import Samples
from .recorrection import psi_features, recorrect

__all__ = ["BatchProposals", "propose", "point_predictions", "cluster_prediction",
           "background_classes"]


def background_classes(meta: dict) -> list[int]:
    """Semantic classes that are never instances (ScanNet: wall, floor): module A skips them
    (:attr:`~twist_lib.evaluation.ClassSpec.background_ids` of the ``meta.json`` dict)."""
    return list(ClassSpec.from_meta(meta).background_ids)


def point_predictions(out: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Phi's per-point prediction as module A reads it: ``(probs (N, K), offset (N, 3))``, the
    softmax of the semantic logits and the offsets ``o_hat``, in float32 and detached."""
    probs = torch.softmax(out["semantic_logits"].detach().float(), dim=1)
    return probs, out["offset"].detach().float()


def cluster_prediction(xyz, probs, offset, background, radius: float, min_points: int,
                       class_agnostic: bool = False):
    """Module A on one scene's prediction (paper Sec. 3 and 4.1): ``(proposal_ids, Proposals)``.

    ``xyz``, ``offset`` (N, 3) and ``probs`` (N, K) (NumPy or tensors). Points whose predicted
    class is not in ``background`` are clustered on their shifted coordinates ``xyz + offset``;
    guided (the default) joins only points of the same predicted class, ``class_agnostic``
    joins foreground points of any class (the paper's "semantic-to-offset off" ablation,
    Table 5). Each proposal's class is the majority of its points' predicted classes and its
    score the mean probability of that class (:func:`~twist_lib.clustering.proposals_from_ids`).
    """
    as_numpy = not isinstance(probs, torch.Tensor)
    probs_t = torch.as_tensor(probs)
    shifted = (torch.as_tensor(xyz, device=probs_t.device)
               + torch.as_tensor(offset, device=probs_t.device))
    classes = probs_t.argmax(1)
    if class_agnostic:
        bg = torch.as_tensor(list(background), dtype=torch.int64, device=classes.device)
        classes = torch.where(torch.isin(classes, bg), torch.full_like(classes, -100),
                              torch.zeros_like(classes))
        background = ()
    ids = semantic_bfs(shifted, classes, radius, min_points, ignore_classes=background)
    props = proposals_from_ids(ids, probs_t)
    if as_numpy:
        ids = ids.cpu().numpy()
        props = Proposals(*(None if t is None else t.cpu().numpy() for t in
                            (props.offsets, props.indices, props.classes, props.scores)))
    return ids, props


@dataclass
class BatchProposals:
    """The proposals of (some) scenes of a batch, and the prediction they come from (tensors).

    Per point of the batch: ``probs`` (N, K) and ``offset`` (N, 3) (:func:`point_predictions`).
    Per proposal ``j`` (``samples.n`` of them,
    scene after scene): its member points ``samples``, module A's ``majority_class`` and
    ``majority_score``, and the ``classes`` and ``scores`` pseudo-labelling and evaluation use:
    Psi's ``e_j`` and ``v_j`` when ``recorrected``, else module A's. ``scenes`` are the batch
    indices of the clustered scenes and ``bounds[i]:bounds[i + 1]`` the proposals of
    ``scenes[i]``.
    """
    probs: torch.Tensor
    offset: torch.Tensor
    samples: Samples
    scenes: list[int]
    bounds: list[int]
    majority_class: torch.Tensor
    majority_score: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    recorrected: bool

    def __len__(self) -> int:
        return self.samples.n

    def of_scene(self, b: int) -> slice:
        """The proposals of batch scene ``b`` (a slice of the per-proposal tensors)."""
        i = self.scenes.index(b)
        return slice(self.bounds[i], self.bounds[i + 1])

    def scene_ids(self, batch: dict, b: int) -> torch.Tensor:
        """Per point of batch scene ``b``: its proposal, numbered within the scene from 0 in
        the order of :meth:`of_scene`, -1 = none (the ``proposal_ids`` of module A)."""
        lo, hi = int(batch["point_offsets"][b]), int(batch["point_offsets"][b + 1])
        ids = torch.full((hi - lo,), -1, dtype=torch.int64, device=self.probs.device)
        rows = (self.samples.point_idx >= lo) & (self.samples.point_idx < hi)
        ids[self.samples.point_idx[rows] - lo] = self.samples.sample_idx[rows] - self.of_scene(b).start
        return ids


def propose(out: dict, batch: dict, cfg, background, psi=None, scenes=None,
            guided: bool | None = None) -> BatchProposals:
    """Phi's outputs ``out`` on ``batch`` -> module A's proposals -> module B (with ``psi``).

    ``scenes``: the batch scenes to cluster (default: all). ``guided``: semantic-guided
    clustering (default ``cfg.semantic_to_offset``; inference always clusters guided, Sec. 3).
    ``cfg`` supplies ``cluster_radius``, ``cluster_min_points`` and Psi's input
    (``psi_input``, ``psi_backprop``); ``background`` are the classes module A skips
    (:func:`background_classes`). With ``psi`` (in eval mode, no gradients,
    :func:`~twist_lib.recorrection.recorrect`) every proposal is re-labelled and re-scored;
    without, it keeps module A's class and score. Gradients never flow into the proposals.
    """
    probs, offset = point_predictions(out)
    scenes = list(range(len(batch["point_offsets"]) - 1)) if scenes is None else list(scenes)
    guided = cfg.semantic_to_offset if guided is None else guided
    samples, bounds, found = Samples.empty(probs.device), [0], []
    for b in scenes:
        lo, hi = int(batch["point_offsets"][b]), int(batch["point_offsets"][b + 1])
        ids, props = cluster_prediction(batch["xyz"][lo:hi], probs[lo:hi], offset[lo:hi],
                                        background, cfg.cluster_radius, cfg.cluster_min_points,
                                        class_agnostic=not guided)
        rows = torch.nonzero(ids >= 0).squeeze(1)
        samples = samples.cat(Samples(rows + lo, ids[rows], len(props)))
        bounds.append(samples.n)
        found.append(props)
    majority_class = _cat([p.classes for p in found], torch.int64, probs.device)
    majority_score = _cat([p.scores.float() for p in found], torch.float32, probs.device)
    if psi is not None and samples.n:
        classes, scores = recorrect(psi, batch["xyz"], psi_features(cfg, batch, out), samples)
    else:
        classes, scores = majority_class, majority_score
    return BatchProposals(probs, offset, samples, scenes, bounds, majority_class,
                          majority_score, classes, scores, recorrected=psi is not None)


def _cat(parts: list, dtype, device) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=device)
