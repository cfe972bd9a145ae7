"""Inference of the baseline: Phi's per-point predictions -> instances with scores -> benchmark.

Test time (paper Sec. 3): Phi predicts a class and an offset per point; module A groups
same-class shifted points ``p + o_hat`` into proposals; each proposal becomes an instance with
the majority class of its points and, as its score, the mean probability of that class over its
points. That step is :func:`twist_lib.proposals.propose`, shared with pseudo-labelling.

- :func:`recluster`            module A again on a stored :class:`ScenePrediction`, e.g. with
  the one-hot true classes of :func:`true_class_probs`; :func:`mixed_proposals` counts its
  proposals that join objects of different classes
- :func:`predict_scene`        Phi + module A (+ Psi) on one scene
- :func:`evaluate_predictions` the benchmark (AP, mIoU, mAcc) of stored predictions
- :func:`evaluate_model`       both of the above over a dataset
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import gt_ids
from .data.batch import collate, to_device
from .evaluation import MIN_REGION_SIZE, ClassSpec, ConfusionMatrix, InstanceEvaluator
from .proposals import background_classes, cluster_prediction, propose


@dataclass
class ScenePrediction:
    """Phi's output on one scene and the instances module A forms from it (NumPy arrays)."""
    name: str
    xyz: np.ndarray            # (N, 3) input points
    probs: np.ndarray          # (N, K) semantic probabilities
    offset: np.ndarray         # (N, 3) predicted offsets o_hat
    proposal_ids: np.ndarray   # (N,) proposal per point, -1 = none
    classes: np.ndarray        # (P,) semantic index of each proposal
    scores: np.ndarray         # (P,) proposal scores

    @property
    def semantic(self) -> np.ndarray:
        return self.probs.argmax(1)

    def instances(self, spec: ClassSpec) -> dict:
        """The proposals as benchmark instances: ``{"masks", "class_ids", "scores"}``."""
        masks = self.proposal_ids[None, :] == np.arange(len(self.classes))[:, None]
        return {"masks": masks, "class_ids": spec.to_benchmark_id(self.classes),
                "scores": self.scores}


def recluster(pred: ScenePrediction, radius: float, min_points: int, background,
              class_agnostic: bool = False, probs=None) -> ScenePrediction:
    """Module A again on a stored prediction, with another radius, minimum size or guidance.

    ``probs`` (N, K) replaces Phi's class probabilities, e.g. the one-hot true classes of
    :func:`true_class_probs` (an oracle for perfect semantics); the offsets stay Phi's. Returns
    a new :class:`ScenePrediction` with those probabilities and the new proposals.
    """
    probs = pred.probs if probs is None else np.asarray(probs)
    ids, props = cluster_prediction(pred.xyz, probs, pred.offset, background, radius, min_points,
                                    class_agnostic)
    return replace(pred, probs=probs, proposal_ids=ids, classes=props.classes, scores=props.scores)


def true_class_probs(semantic, num_classes: int) -> np.ndarray:
    """One-hot "probabilities" (N, K) float32 of the true classes ``semantic`` (N,); unlabelled
    points (negative class) get all zeros, so their arg max is class 0."""
    semantic = np.asarray(semantic)
    probs = np.zeros((len(semantic), num_classes), dtype=np.float32)
    labelled = np.flatnonzero(semantic >= 0)
    probs[labelled, semantic[labelled]] = 1.0
    return probs


def mixed_proposals(pred: ScenePrediction, scene: dict, min_fraction: float = 0.1) -> int:
    """How many proposals hold at least ``min_fraction`` of their points from each of two true
    objects of different classes (an object's class: the majority of its labelled points)."""
    ids, inst, sem = pred.proposal_ids, np.asarray(scene["instance"]), np.asarray(scene["semantic"])
    n_prop = len(pred.classes)
    objects, obj = np.unique(inst, return_inverse=True)         # obj: object index per point
    n_obj, n_cls = len(objects), max(int(sem.max(initial=0)), 0) + 2   # last class: no label
    on_object = inst >= 0
    label = np.where(sem >= 0, sem, n_cls - 1)
    votes = np.bincount(obj[on_object] * n_cls + label[on_object],
                        minlength=n_obj * n_cls).reshape(n_obj, n_cls)[:, :-1]
    obj_class = np.where(votes.sum(1) > 0, votes.argmax(1), -1)   # -1: no labelled point
    size = np.bincount(ids[ids >= 0], minlength=n_prop)
    both = (ids >= 0) & on_object
    share = np.bincount(ids[both] * n_obj + obj[both],
                        minlength=n_prop * n_obj).reshape(n_prop, n_obj)
    prop, big = np.nonzero((share > 0) & (share >= min_fraction * size[:, None]))
    classed = obj_class[big] >= 0
    present = np.bincount(prop[classed] * n_cls + obj_class[big][classed],
                          minlength=n_prop * n_cls).reshape(n_prop, n_cls) > 0
    return int((present.sum(1) >= 2).sum())


@torch.no_grad()
def predict_scene(model, scene: dict, meta: dict, cfg, device=None, psi=None) -> ScenePrediction:
    """Run Phi on one scene dict and cluster its foreground into proposals (module A,
    :func:`~twist_lib.proposals.propose`, always semantic-guided as at test time).

    ``cfg`` supplies the voxel size, the input features, the clustering radius and minimum
    size, and Psi's input. With ``psi`` (test-time re-correction, paper Sec. 5.3), the
    re-correction network re-labels every proposal with its own class and scores it with its
    certainty ``v_j``."""
    device = device or next(model.parameters()).device
    batch = to_device(collate([scene], voxel_size=cfg.voxel_size,
                              use_xyz_features=cfg.use_xyz_features), device)
    was_training = model.training
    model.eval()
    out = model(batch)
    model.train(was_training)
    props = propose(out, batch, cfg, background_classes(meta), psi=psi, guided=True)
    return ScenePrediction(
        name=scene["name"], xyz=batch["xyz"].cpu().numpy(), probs=props.probs.cpu().numpy(),
        offset=props.offset.cpu().numpy(), proposal_ids=props.scene_ids(batch, 0).cpu().numpy(),
        classes=props.classes.cpu().numpy(), scores=props.scores.cpu().numpy())


def evaluate_predictions(predictions, scenes, spec: ClassSpec,
                         min_region_size: int = MIN_REGION_SIZE) -> dict:
    """The ScanNet benchmark of stored predictions: instance AP and semantic mIoU / mAcc.

    ``predictions`` are :class:`ScenePrediction` objects and ``scenes`` the scene dicts they
    were made from (same order; each with ``semantic``, ``instance`` and ``name``). Returns the
    AP table of :meth:`~twist_lib.evaluation.InstanceEvaluator.result` plus ``miou``, ``macc``
    and ``iou_per_class``.
    """
    return _benchmark(zip(predictions, scenes, strict=True), spec, min_region_size)


def _benchmark(pairs, spec: ClassSpec, min_region_size: int) -> dict:
    """Accumulate ``(ScenePrediction, scene)`` pairs into the benchmark's result."""
    instances = InstanceEvaluator(spec, min_region_size=min_region_size)
    confusion = ConfusionMatrix(spec.num_classes)
    for pred, scene in pairs:
        gt = gt_ids(scene["semantic"], scene["instance"], spec.benchmark_ids)
        instances.add_scene(pred.instances(spec), gt, scene["name"])
        confusion.add(pred.semantic, scene["semantic"])
    result = instances.result()
    sem = confusion.scores()
    result.update(miou=sem["miou"], macc=sem["macc"], iou_per_class=sem["iou_per_class"])
    return result


def evaluate_model(model, dataset, meta: dict, cfg, device=None, max_scenes: int | None = None,
                   keep_predictions: bool = False, psi=None) -> dict:
    """Instance AP (ScanNet protocol) and semantic mIoU / mAcc of ``model`` on ``dataset``.

    ``dataset`` is an un-augmented :class:`~twist_lib.data.dataset.SceneDataset` (e.g. the val
    split); ``cfg`` supplies the clustering radius / minimum size, the benchmark's minimum region
    size and ``val_scenes`` (0 = every scene); with ``psi`` the proposals are re-corrected
    (:func:`predict_scene`, Sec. 5.3). Returns :func:`evaluate_predictions`'s result
    and, with ``keep_predictions``, the list of :class:`ScenePrediction` under ``predictions``.
    """
    spec = ClassSpec.from_meta(meta)
    n = len(dataset) if not (max_scenes or cfg.val_scenes) else min(len(dataset), max_scenes or cfg.val_scenes)
    kept = []

    def predicted():
        for i in tqdm(range(n), desc="evaluate", disable=not cfg.progress, leave=False):
            scene = dataset[i]
            pred = predict_scene(model, scene, meta, cfg, device, psi=psi)
            if keep_predictions:
                kept.append(pred)
            yield pred, scene

    result = _benchmark(predicted(), spec, cfg.eval_min_region)
    if keep_predictions:
        result["predictions"] = kept
    return result
