"""Where a model's val AP50 goes: class, score ranking or segmentation.

    python bench/instance_errors.py RUN [RUN ...] [--round T] [--scenes 100]

For each run (its last round, or ``--round``) Phi + module A predict the first ``--scenes`` val
scenes, as validation does (:func:`twist_lib.inference.evaluate_model`). Then, besides the
benchmark's AP50, the same instances are scored three more times with one thing replaced by
the ground truth, which only this diagnostic reads:

* ``AP50 true class``: every predicted instance takes the majority true class of its points;
* ``AP50 true score``: every instance is scored by its best IoU with a true instance of its class
  (perfect ranking);
* ``AP50 both``: both. What is left below 1.0 there is the segmentation itself (merged, split
  and missing objects).

and every true instance (>= the benchmark's minimum size) is put in one bin: ``hit`` (a
predicted instance of its class with IoU >= 0.5), ``class`` (one of another class does),
``merged`` (the instance sharing most of its points covers >= half of it but is more than twice
as big: it joins it to other points), ``split`` (no instance covers half of it, but together
they cover half), ``missed`` (less than half of it is in any instance).
"""
import argparse
from dataclasses import replace

import numpy as np

from twist_lib.checkpoints import load_models, run_checkpoint
from twist_lib.data import gt_ids
from twist_lib.data.dataset import SceneDataset
from twist_lib.data.io import read_meta
from twist_lib.evaluation import ClassSpec, InstanceEvaluator
from twist_lib.inference import evaluate_model
from twist_lib.runs import dataset_folder, run_config

BINS = ("hit", "class", "merged", "split", "missed")


def overlaps(pred, scene):
    """(P, G) intersections of predicted and true instances, sizes, true classes per object."""
    inst, sem = np.asarray(scene["instance"]), np.asarray(scene["semantic"])
    objects = np.unique(inst[inst >= 0])
    obj_index = np.full(inst.max(initial=-1) + 1, -1)
    obj_index[objects] = np.arange(len(objects))
    both = (pred.proposal_ids >= 0) & (inst >= 0)
    n_p, n_g = len(pred.classes), len(objects)
    inter = np.bincount(pred.proposal_ids[both] * n_g + obj_index[inst[both]],
                        minlength=n_p * n_g).reshape(n_p, n_g)
    p_size = np.bincount(pred.proposal_ids[pred.proposal_ids >= 0], minlength=n_p)
    g_size = np.bincount(obj_index[inst[inst >= 0]], minlength=n_g)
    g_class = np.array([np.bincount(sem[inst == o][sem[inst == o] >= 0]).argmax()
                        for o in objects], dtype=np.int64)
    return inter, p_size, g_size, g_class


def oracle(pred, scene, true_class: bool, true_score: bool):
    """The prediction with the true majority class and/or the best same-class IoU as score."""
    inter, p_size, g_size, g_class = overlaps(pred, scene)
    classes, scores = pred.classes.copy(), pred.scores.copy()
    if len(classes) and len(g_size):
        if true_class:
            classes = g_class[inter.argmax(1)]
        if true_score:
            iou = inter / (p_size[:, None] + g_size[None, :] - inter)
            same = g_class[None, :] == classes[:, None]
            scores = np.where(same, iou, 0).max(1)
    return replace(pred, classes=classes, scores=scores)


def error_bins(pred, scene, spec: ClassSpec, min_size: int) -> dict:
    """Counts of the true instances of ``scene`` in each of :data:`BINS`."""
    inter, p_size, g_size, g_class = overlaps(pred, scene)
    counts = dict.fromkeys(BINS, 0)
    for g in range(len(g_size)):
        if g_size[g] < min_size or g_class[g] not in spec.instance_ids:
            continue
        iou = inter[:, g] / (p_size + g_size[g] - inter[:, g]) if len(p_size) else np.zeros(0)
        good = iou >= 0.5
        if (good & (pred.classes == g_class[g])).any():
            counts["hit"] += 1
        elif good.any():
            counts["class"] += 1
        elif len(p_size) and inter[:, g].max() >= 0.5 * g_size[g]:
            counts["merged"] += 1
        elif inter[:, g].sum() >= 0.5 * g_size[g]:
            counts["split"] += 1
        else:
            counts["missed"] += 1
    return counts


def ap50(preds, scenes, spec, min_size):
    ev = InstanceEvaluator(spec, min_region_size=min_size)
    for p, s in zip(preds, scenes):
        ev.add_scene(p.instances(spec), gt_ids(s["semantic"], s["instance"], spec.benchmark_ids),
                     s["name"])
    return ev.result()["AP50"]


def audit(run, round_index, scenes):
    cfg = run_config(run)
    root = dataset_folder(cfg, run)
    meta = read_meta(root)
    spec = ClassSpec.from_meta(meta)
    ckpt, _ = run_checkpoint(run, round_index)
    phi, _ = load_models(ckpt, cfg, meta, "cpu")
    val = SceneDataset(root, "val", voxel_size=cfg.voxel_size, use_xyz_features=cfg.use_xyz_features)
    res = evaluate_model(phi, val, meta, replace(cfg, progress=False), "cpu", max_scenes=scenes,
                         keep_predictions=True)
    preds = res["predictions"]
    scn = [val[i] for i in range(len(preds))]
    m = cfg.eval_min_region
    row = {"AP50": res["AP50"]}
    for name, tc, ts in (("true class", 1, 0), ("true score", 0, 1), ("both", 1, 1)):
        row[f"AP50 {name}"] = ap50([oracle(p, s, tc, ts) for p, s in zip(preds, scn)], scn, spec, m)
    bins = dict.fromkeys(BINS, 0)
    for p, s in zip(preds, scn):
        for k, v in error_bins(p, s, spec, m).items():
            bins[k] += v
    row.update(bins)
    row["instances"] = sum(len(p.classes) for p in preds)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--round", type=int, default=None)
    ap.add_argument("--scenes", type=int, default=100)
    a = ap.parse_args()
    rows = [(r, audit(r, a.round, a.scenes)) for r in a.runs]
    keys = list(rows[0][1])
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r, row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
