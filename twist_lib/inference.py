"""Inference of the baseline: Phi's per-point predictions -> instances with scores -> benchmark.

Test time (paper Sec. 3): Phi predicts a class and an offset per point; module A
(:func:`twist_lib.clustering.semantic_bfs`) groups same-class shifted points ``p + o_hat`` into
proposals; each proposal becomes an instance with the majority class of its points and, as its
score, the mean probability of that class over its points
(:func:`twist_lib.clustering.proposals_from_ids`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .clustering import proposals_from_ids, semantic_bfs
from .data import gt_ids
from .data.batch import collate
from .evaluation import ClassSpec, ConfusionMatrix, InstanceEvaluator


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


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def predict_scene(model, scene: dict, meta: dict, radius: float = 0.03, min_points: int = 50,
                  voxel_size: float = 0.02, use_xyz_features: bool = False,
                  device=None) -> ScenePrediction:
    """Run Phi on one scene dict and cluster its foreground into proposals (module A)."""
    device = device or next(model.parameters()).device
    batch = to_device(collate([scene], voxel_size=voxel_size, use_xyz_features=use_xyz_features),
                      device)
    was_training = model.training
    model.eval()
    out = model(batch)
    model.train(was_training)
    probs = torch.softmax(out["semantic_logits"].float(), dim=1)
    offset = out["offset"].float()
    shifted = batch["xyz"] + offset
    background = [c for c in range(meta["num_classes"]) if c not in set(meta["instance_classes"])]
    ids = semantic_bfs(shifted, probs.argmax(1), radius, min_points, ignore_classes=background)
    props = proposals_from_ids(ids, probs)
    return ScenePrediction(
        name=scene["name"], xyz=batch["xyz"].cpu().numpy(), probs=probs.cpu().numpy(),
        offset=offset.cpu().numpy(), proposal_ids=ids.cpu().numpy(),
        classes=props.classes.cpu().numpy(), scores=props.scores.cpu().numpy())


def evaluate_model(model, dataset, meta: dict, cfg, device=None, max_scenes: int | None = None,
                   keep_predictions: bool = False) -> dict:
    """Instance AP (ScanNet protocol) and semantic mIoU / mAcc of ``model`` on ``dataset``.

    ``dataset`` is an un-augmented :class:`~twist_lib.data.dataset.SceneDataset` (e.g. the val
    split); ``cfg`` supplies the clustering radius / minimum size, the benchmark's minimum region
    size and ``val_scenes`` (0 = every scene). Returns the AP table of
    :meth:`~twist_lib.evaluation.InstanceEvaluator.result` plus ``miou``, ``macc`` and, with
    ``keep_predictions``, the list of :class:`ScenePrediction` under ``predictions``.
    """
    spec = ClassSpec.from_meta(meta)
    n = len(dataset) if not (max_scenes or cfg.val_scenes) else min(len(dataset), max_scenes or cfg.val_scenes)
    instances = InstanceEvaluator(spec, min_region_size=cfg.eval_min_region)
    confusion = ConfusionMatrix(meta["num_classes"])
    kept = []
    for i in tqdm(range(n), desc="evaluate", disable=not cfg.progress, leave=False):
        scene = dataset[i]
        pred = predict_scene(model, scene, meta, cfg.cluster_radius, cfg.cluster_min_points,
                             cfg.voxel_size, cfg.use_xyz_features, device)
        gt = gt_ids(scene["semantic"], scene["instance"], spec.benchmark_ids)
        instances.add_scene(pred.instances(spec), gt, scene["name"])
        confusion.add(pred.semantic, scene["semantic"])
        if keep_predictions:
            kept.append(pred)
    result = instances.result()
    sem = confusion.scores()
    result.update(miou=sem["miou"], macc=sem["macc"], iou_per_class=sem["iou_per_class"])
    if keep_predictions:
        result["predictions"] = kept
    return result
