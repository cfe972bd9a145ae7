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

``--swap`` with two runs A and B also clusters A's offsets with B's semantics and the other way
round, and each model's offsets with the true semantics (module A again,
:func:`twist_lib.inference.recluster`): which of the two outputs makes the errors.
"""
import argparse
from dataclasses import replace

import numpy as np

from twist_lib.checkpoints import load_models, run_checkpoint
from twist_lib.data import gt_ids
from twist_lib.data.dataset import SceneDataset
from twist_lib.data.io import read_meta
from twist_lib.evaluation import ClassSpec, InstanceEvaluator
from twist_lib.inference import evaluate_model, recluster, true_class_probs
from twist_lib.proposals import background_classes
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


def predictions(run, round_index, scenes):
    """Val predictions of a run's round, the scenes, the class spec, config and meta."""
    cfg = run_config(run)
    root = dataset_folder(cfg, run)
    meta = read_meta(root)
    phi, _ = load_models(run_checkpoint(run, round_index)[0], cfg, meta, "cpu")
    val = SceneDataset(root, "val", voxel_size=cfg.voxel_size, use_xyz_features=cfg.use_xyz_features)
    res = evaluate_model(phi, val, meta, replace(cfg, progress=False), "cpu", max_scenes=scenes,
                         keep_predictions=True)
    return res["predictions"], [val[i] for i in range(len(res["predictions"]))], cfg, meta


def summary(preds, scenes, spec, min_size) -> dict:
    """AP50 and the error bins of a list of predictions."""
    row = {"AP50": ap50(preds, scenes, spec, min_size), **dict.fromkeys(BINS, 0)}
    for p, s in zip(preds, scenes):
        for k, v in error_bins(p, s, spec, min_size).items():
            row[k] += v
    return row


def swap(run_a, run_b, round_index, scenes) -> list:
    """``(offsets, semantics, summary)`` rows: each run as is, with the other's semantics and
    with the true semantics."""
    a, scn, cfg, meta = predictions(run_a, round_index, scenes)
    b = predictions(run_b, round_index, scenes)[0]
    spec, bg = ClassSpec.from_meta(meta), background_classes(meta)

    def again(preds, probs):
        return [recluster(p, cfg.cluster_radius, cfg.cluster_min_points, bg, probs=q)
                for p, q in zip(preds, probs)]
    truth = [true_class_probs(s["semantic"], spec.num_classes) for s in scn]
    cases = [(run_a, run_a, a), (run_b, run_b, b),
             (run_a, run_b, again(a, [p.probs for p in b])),
             (run_b, run_a, again(b, [p.probs for p in a])),
             (run_a, "true", again(a, truth)), (run_b, "true", again(b, truth))]
    return [(o, sem, summary(p, scn, spec, cfg.eval_min_region)) for o, sem, p in cases]


def audit(run, round_index, scenes):
    preds, scn, cfg, meta = predictions(run, round_index, scenes)
    spec, m = ClassSpec.from_meta(meta), cfg.eval_min_region
    found = summary(preds, scn, spec, m)
    row = {"AP50": found.pop("AP50")}
    for name, tc, ts in (("true class", 1, 0), ("true score", 0, 1), ("both", 1, 1)):
        row[f"AP50 {name}"] = ap50([oracle(p, s, tc, ts) for p, s in zip(preds, scn)], scn, spec, m)
    row.update(found)
    row["instances"] = sum(len(p.classes) for p in preds)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--round", type=int, default=None)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--swap", action="store_true",
                    help="with two runs: each one's offsets with the other's semantics")
    a = ap.parse_args()
    if a.swap:
        if len(a.runs) != 2:
            ap.error("--swap takes exactly two runs")
        print("| offsets | semantics | AP50 | " + " | ".join(BINS) + " |")
        print("|---" * (3 + len(BINS)) + "|")
        for o, sem, row in swap(*a.runs, a.round, a.scenes):
            print(f"| {o} | {sem} | {row['AP50']:.3f} | " + " | ".join(str(row[k]) for k in BINS) + " |")
        return
    rows = [(r, audit(r, a.round, a.scenes)) for r in a.runs]
    keys = list(rows[0][1])
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r, row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
