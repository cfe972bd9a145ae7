"""Psi on the frozen baseline, and one scene through modules A and B: the helpers of the book's
module B page (``book/module_b.ipynb``, "Module B: re-correcting proposals"); the module C page
(:mod:`twist_lib.book.pseudo_study`) builds on them::

    from twist_lib.book import proposal_study as ps
    phi, psi, meta = ps.trained_psi(cfg)                   # Sup-only Phi, and Psi trained on it
    props = ps.scene_proposals(phi, psi, scene, cfg, meta)  # one scene through Phi, A and Psi
    members, what = ps.pick_sample(props, scene)           # one object-level sample
    aug = ps.five_augmentations(scene, members)            # Psi's five training augmentations
    curve = ps.mutation_curve(scene, members, ratios)      # IoU target against the box ratio

:func:`trained_psi` trains Psi once into ``<baseline run folder>/psi/`` (:data:`PSI_DIR`,
:func:`psi_config`) and reuses it; :class:`SceneProposals` holds one scene's proposals with module
A's and Psi's classes and scores and their IoU with the true objects.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import load_weights
from ..config import Config
from ..data.batch import collate, to_device
from ..object_samples import centre_samples, mutate_proposal, proposal_targets, transform_samples
from ..proposals import background_classes, propose
from ..recorrection import build_psi
from ..self_training import RoundTrainer
from ..trainer import resolve_device
from .helpers import trained_baseline

PSI_DIR = "psi"  # Psi trained on the frozen baseline: <baseline run folder>/psi/


def psi_config(cfg: Config) -> Config:
    """The config of the Psi run of :func:`trained_psi`: ``cfg`` with ``run_dir`` =
    ``<baseline run folder>/psi`` and test-time re-correction on, so that the run's final
    validation (``psi/metrics.json``, :func:`~twist_lib.book.run_metrics`) is the Sup-only Phi
    with Psi re-classifying and re-scoring its proposals at test time (paper Sec. 5.3)."""
    out = copy.deepcopy(cfg)
    out.run_dir = str(Path(cfg.resolved_run_dir()) / PSI_DIR)
    out.test_time_recorrection = True
    return out


def trained_psi(cfg: Config):
    """``(phi, psi, meta)``: the Sup-only baseline Phi of ``cfg`` and the re-correction network
    Psi trained on it, both in eval mode, and the dataset's meta.

    Phi comes from :func:`~twist_lib.book.trained_baseline` (trained first if needed). Psi is
    trained, unless ``<baseline run folder>/psi/checkpoints/final.pt`` exists, as round 0 of TWIST
    from a Sup-only checkpoint: :class:`~twist_lib.self_training.RoundTrainer` with
    ``train_phi=False`` and ``steps=cfg.psi_init_steps``, i.e. Psi alone learns on the
    proposals module A forms on the labelled scenes from the frozen Phi (plus
    ``psi_gt_proposals`` jittered ground-truth instances per step). A killed run resumes from
    its last checkpoint; the run folder is :func:`psi_config`'s (its ``log.csv`` holds Psi's
    losses, its ``metrics.json`` the validation with test-time re-correction).
    """
    phi, meta = trained_baseline(cfg)
    psi_cfg = psi_config(cfg)
    final = Path(psi_cfg.run_dir) / "checkpoints" / "final.pt"
    if not final.exists():
        init = Path(cfg.resolved_run_dir()) / "checkpoints" / "final.pt"
        RoundTrainer(psi_cfg, 0, psi_cfg.run_dir, init_from=init, train_phi=False,
                     steps=cfg.psi_init_steps, resume="auto").fit()
    device = resolve_device(cfg.device)
    psi = build_psi(cfg, meta, phi.size.m).to(device)
    load_weights(psi, final, map_location=device, name="psi")
    return phi.eval(), psi.eval(), meta


@dataclass
class SceneProposals:
    """One scene through Phi, module A and module B, as pseudo-labelling sees it (NumPy).

    Per point: ``xyz``, Phi's class probabilities ``probs``, offsets ``offset`` (o_hat),
    backbone ``features`` (Psi's input besides xyz) and ``proposal_ids`` (-1 = none). Per
    proposal: ``majority_class`` / ``majority_score`` (module A's class and mean class
    probability, what TWIST uses with module B off), ``psi_class`` / ``psi_score`` (Psi's
    re-predicted class e_j and certainty v_j), and, against the scene's labels, ``iou`` (with
    the best-matching object) and ``true_class`` (its class; -100 when it matches none, and
    everywhere for a scene without labels).
    """
    name: str
    xyz: np.ndarray
    probs: np.ndarray
    offset: np.ndarray
    features: np.ndarray
    proposal_ids: np.ndarray
    majority_class: np.ndarray
    majority_score: np.ndarray
    psi_class: np.ndarray
    psi_score: np.ndarray
    iou: np.ndarray
    true_class: np.ndarray

    def __len__(self) -> int:
        return len(self.majority_class)

    @property
    def semantic(self):
        """Phi's class per point (arg max of ``probs``)."""
        return self.probs.argmax(1)

    def members(self, j: int):
        """Boolean mask of the points of proposal ``j``."""
        return self.proposal_ids == j


def scene_proposals(phi, psi, scene: dict, cfg: Config, meta: dict) -> SceneProposals:
    """Run one scene dict through Phi (eval mode), module A and Psi
    (:func:`~twist_lib.proposals.propose`), without gradients, as
    :func:`~twist_lib.self_training.pseudo_label_split` does; the IoU targets come from
    :func:`~twist_lib.object_samples.proposal_targets` against the scene's own labels. With
    ``psi=None`` Psi's columns repeat module A's class and score (module B off)."""
    device = next(phi.parameters()).device
    batch = to_device(collate([scene], cfg.voxel_size, cfg.use_xyz_features), device)
    was_training = phi.training
    phi.eval()
    with torch.no_grad():
        out = phi(batch)
        props = propose(out, batch, cfg, background_classes(meta), psi=psi)
    phi.train(was_training)
    ids = props.scene_ids(batch, 0).cpu().numpy()
    iou, true_class = proposal_targets(ids, np.asarray(scene["instance"]),
                                       np.asarray(scene["semantic"]), num_proposals=len(props))
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return SceneProposals(
        name=scene["name"], xyz=numpy(batch["xyz"]), probs=numpy(props.probs),
        offset=numpy(props.offset), features=numpy(out["features"].float()), proposal_ids=ids,
        majority_class=numpy(props.majority_class), majority_score=numpy(props.majority_score),
        psi_class=numpy(props.classes), psi_score=numpy(props.scores.float()), iou=iou,
        true_class=true_class)


def _best_instance(mask, instance) -> int:
    """The object (instance id) of highest IoU with the points ``mask``; -100 if none."""
    inst = np.asarray(instance)
    ids, inter = np.unique(inst[mask & (inst >= 0)], return_counts=True)
    if not len(ids):
        return -100
    sizes = np.array([(inst == i).sum() for i in ids])
    return int(ids[np.argmax(inter / (mask.sum() + sizes - inter))])


def pick_sample(props: SceneProposals, scene: dict, index: int = -1, expand: float = 1.3):
    """One object-level sample of a labelled scene to show Psi's input and augmentations on:
    ``(member mask, description)``.

    The candidates are module A's proposals; when Phi forms none in the scene (an untrained
    Phi), its ground-truth instances, which Psi's training adds as samples too
    (``psi_gt_proposals``). ``index >= 0`` picks candidate ``index`` (modulo their number);
    ``index < 0`` the one whose bounding box, enlarged by ``expand``
    (:func:`~twist_lib.object_samples.mutate_proposal`), takes in the most points of other
    objects: the most telling geometric mutation.
    """
    inst = np.asarray(scene["instance"])
    if len(props):
        masks = [props.members(j) for j in range(len(props))]
        what = [f"proposal {j} of module A" for j in range(len(props))]
    else:
        ids = np.unique(inst[inst >= 0])
        if not len(ids):
            raise ValueError(f"{scene['name']}: neither proposals nor labelled objects to pick "
                             "from")
        masks = [inst == i for i in ids]
        what = [f"ground-truth object {i} (Phi forms no proposal in this scene; Psi's training "
                "adds such objects as samples too)" for i in ids]
    if index >= 0:
        k = index % len(masks)
    else:
        def intruders(mask):
            best = _best_instance(mask, inst)
            grown = mutate_proposal(props.xyz, mask, expand)
            return int((grown & ~mask & (inst >= 0) & (inst != best)).sum())
        k = int(np.argmax([intruders(m) for m in masks]))
    return masks[k], f"{what[k]}, {int(masks[k].sum())} points"


def five_augmentations(scene: dict, members, crop: float = 0.7, expand: float = 1.3,
                       seed: int = 0, translate: float = 0.1, scale=(0.8, 1.2)) -> dict:
    """The five object-level augmentations of Psi's training (Sec. 4.2, Fig. 3), each alone,
    on the sample ``members`` (boolean mask) of a labelled ``scene``.

    Geometric transformation (:func:`~twist_lib.object_samples.transform_samples` with one part
    enabled; the points centred on the sample as Psi sees them): ``rotation``, ``translation``,
    ``scaling``. Geometric mutation (:func:`~twist_lib.object_samples.mutate_proposal`, scene
    coordinates): ``crop`` (box ratio ``crop`` < 1) and ``expand`` (``expand`` > 1).

    Returns ``{name: {"kind", "before", "after", "before_mask", "after_mask", "iou_before",
    "iou_after", "lost", "added", "added_other"}}``: points before / after (centred for the
    transformations), member masks (mutations), the IoU target of eq. (5) before and after
    (:func:`~twist_lib.object_samples.proposal_targets`), and for the mutations the members
    lost, added, and added from objects other than the sample's own.
    """
    xyz = np.asarray(scene["xyz"], dtype=np.float32)
    inst, sem = np.asarray(scene["instance"]), np.asarray(scene["semantic"])
    members = np.asarray(members, dtype=bool)

    def iou(mask):
        return float(proposal_targets(np.where(mask, 0, -1), inst, sem, num_proposals=1)[0][0])

    before_iou = iou(members)
    local = centre_samples(torch.from_numpy(xyz[members]), torch.zeros(int(members.sum()),
                           dtype=torch.int64), 1)
    idx = torch.zeros(len(local), dtype=torch.int64)
    parts = {"rotation": dict(rotate=True, scale=None, translate=0.0),
             "translation": dict(rotate=False, scale=None, translate=translate),
             "scaling": dict(rotate=False, scale=scale, translate=0.0)}
    out = {}
    for name, kw in parts.items():
        after = transform_samples(local, idx, 1, torch.Generator().manual_seed(seed), **kw)
        out[name] = {"kind": "transformation", "before": local.numpy(), "after": after.numpy(),
                     "before_mask": members, "after_mask": members, "iou_before": before_iou,
                     "iou_after": before_iou, "lost": 0, "added": 0, "added_other": 0}
    own = _best_instance(members, inst)
    for name, ratio in (("crop", crop), ("expand", expand)):
        mask = np.asarray(mutate_proposal(xyz, members, ratio), dtype=bool)
        added = mask & ~members
        out[name] = {"kind": "mutation", "ratio": float(ratio), "before": xyz[members],
                     "after": xyz[mask], "before_mask": members, "after_mask": mask,
                     "iou_before": before_iou, "iou_after": iou(mask),
                     "lost": int((members & ~mask).sum()), "added": int(added.sum()),
                     "added_other": int((added & (inst >= 0) & (inst != own)).sum())}
    return out


def mutation_curve(scene: dict, members, ratios) -> dict:
    """The IoU target of eq. (5) of the sample ``members`` after a geometric mutation with each
    box ratio of ``ratios`` (:func:`~twist_lib.object_samples.mutate_proposal`), with its point
    count: ``{"ratio", "iou", "points"}`` lists."""
    xyz = np.asarray(scene["xyz"], dtype=np.float32)
    out = {"ratio": [], "iou": [], "points": []}
    for r in ratios:
        mask = mutate_proposal(xyz, np.asarray(members, dtype=bool), float(r))
        mask = np.asarray(mask, dtype=bool)
        iou, _ = proposal_targets(np.where(mask, 0, -1), scene["instance"], scene["semantic"], 1)
        out["ratio"].append(float(r))
        out["iou"].append(float(iou[0]))
        out["points"].append(int(mask.sum()))
    return out
