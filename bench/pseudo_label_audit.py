"""Where a round's pseudo labels go wrong: per class, per proposal IoU, per centre spread.

    python bench/pseudo_label_audit.py RUN [--round 1] [--scenes 80] [--seed 0]

Reads ``RUN/round_<t>/pseudo/`` (the labels training used) and re-runs Phi_{t-1}
(``RUN/round_<t-1>/checkpoints/final.pt``) on a random subset of the unlabelled scenes, then
compares both with the ground truth, which only this diagnostic reads. It prints

* per class: how many points got that pseudo class and how many of them are right;
* the pseudo classes' accuracy beside Phi's own argmax on the same points, and on every
  annotated point (what modules A-C add to Phi's prediction, and what they leave out);
* the pseudo offsets' error (eq. 8) beside Phi's own offsets' error on the same points;
* per kept proposal, grouped by its true IoU and by its centre spread (the mean distance of its
  votes ``p + o_hat`` from their mean, eq. 7): points, pseudo and own offset error;
* how often Phi's confident (> 0.9) wall / floor predictions are right.

These figures chose the two module C extensions of ``twist_lib.pseudo_labels``
(``pseudo_background``, ``pseudo_offset_spread``); see the book's pipeline page.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from twist_lib.config import Config
from twist_lib.data.batch import collate, to_device
from twist_lib.data.pseudo_files import pseudo_label_path, read_pseudo_labels
from twist_lib.proposals import background_classes, point_predictions
from twist_lib.pseudo_labels import centre_spread, proposal_centres
from twist_lib.self_training import previous_models


def _centre_and_spread(shifted):
    """Eq. 7's centre of one proposal's shifted points and their spread, with module C's own
    functions (:func:`~twist_lib.pseudo_labels.proposal_centres`, ``centre_spread``)."""
    pts = torch.from_numpy(np.asarray(shifted, dtype=np.float64))
    ids, kept = torch.zeros(len(pts), dtype=torch.int64), torch.ones(len(pts), dtype=torch.bool)
    centres = proposal_centres(pts, ids, kept, 1)
    return centres[0].numpy(), float(centre_spread(pts, ids, kept, centres)[0])


def proposal_rows(lab, gt, shifted, own_offset):
    """One row per kept proposal: size, true IoU, eq. 8's and Phi's own offset error, spread."""
    rows = []
    for pid in np.unique(lab["instance"][lab["instance"] >= 0]):
        mm = lab["instance"] == pid
        on_obj = gt["instance"][mm] >= 0
        if not on_obj.any():
            rows.append((mm.sum(), 0.0, np.nan, np.nan, 0.0))
            continue
        counts = np.bincount(gt["instance"][mm][on_obj])
        inter, best = counts.max(), counts.argmax()
        iou = inter / (mm.sum() + (gt["instance"] == best).sum() - inter)
        centre, spread = _centre_and_spread(shifted[mm])
        eq8 = centre - gt["xyz"][mm]   # eq. 8, also where the spread check dropped it
        err = np.linalg.norm(eq8 - gt["offset"][mm], axis=1)[on_obj].mean()
        own = np.linalg.norm(own_offset[mm] - gt["offset"][mm], axis=1)[on_obj].mean()
        rows.append((mm.sum(), iou, err, own, spread))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--scenes", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    run = Path(a.run)
    cfg = Config.from_sources(yaml_path=str(run / "config.yaml"))
    phi, _, ds, meta, _ = previous_models(
        cfg, run / f"round_{a.round - 1}" / "checkpoints" / "final.pt")
    pdir = run / f"round_{a.round}" / "pseudo"
    k, bg = meta["num_classes"], background_classes(meta)
    conf = np.zeros((k, k), np.int64)                      # pseudo class x true class
    pseudo_err, own_err, rows, bg_counts = [], [], [], np.zeros(2, np.int64)
    sem = np.zeros(5, np.int64)  # labelled points: count, pseudo right, own right; all: count, own right
    pick = np.random.default_rng(a.seed).choice(len(ds), min(a.scenes, len(ds)), replace=False)
    with torch.no_grad():
        for i in pick:
            gt = ds.ground_truth(i)
            out = phi(to_device(collate([ds[i]], cfg.voxel_size, cfg.use_xyz_features), "cpu"))
            prob, own = (t.numpy() for t in point_predictions(out))
            lab = read_pseudo_labels(pseudo_label_path(pdir, ds.names[i]), len(gt["xyz"]))
            m = (lab["semantic"] >= 0) & (gt["semantic"] >= 0)
            np.add.at(conf, (lab["semantic"][m], gt["semantic"][m]), 1)
            argmax, annotated = prob.argmax(1), gt["semantic"] >= 0
            sem += [m.sum(), (lab["semantic"][m] == gt["semantic"][m]).sum(),
                    (argmax[m] == gt["semantic"][m]).sum(), annotated.sum(),
                    (argmax[annotated] == gt["semantic"][annotated]).sum()]
            v = lab["offset_valid"] & (gt["instance"] >= 0)
            pseudo_err.append(np.linalg.norm(lab["offset"][v] - gt["offset"][v], axis=1))
            own_err.append(np.linalg.norm(own[v] - gt["offset"][v], axis=1))
            rows += proposal_rows(lab, gt, gt["xyz"] + own, own)
            confident_bg = np.isin(prob.argmax(1), bg) & (prob.max(1) > 0.9)
            bg_counts += [confident_bg.sum(), (confident_bg & (prob.argmax(1) == gt["semantic"])).sum()]
    names = meta["class_names"]
    print(f"{run}, round {a.round}, {len(pick)} unlabelled scenes (seed {a.seed})")
    print("pseudo class    points  right")
    for c in range(k):
        if conf[c].sum():
            print(f"{names[c][:12]:12s} {conf[c].sum():9d}  {conf[c, c] / conf[c].sum():.3f}")
    print(f"semantic accuracy on the {sem[0]} pseudo-labelled points ({sem[0] / sem[3]:.1%} of the "
          f"annotated): pseudo {sem[1] / sem[0]:.4f}, Phi's argmax {sem[2] / sem[0]:.4f}; "
          f"Phi's argmax on all annotated points {sem[4] / sem[3]:.4f}")
    for name, e in (("pseudo (eq. 8)", np.concatenate(pseudo_err)),
                    ("Phi's own", np.concatenate(own_err))):
        if e.size:
            print(f"offset error, {name:14s}: mean {e.mean():.3f}  median {np.median(e):.3f}  "
                  f"p90 {np.quantile(e, .9):.3f}  share > 8 cm {(e > .08).mean():.2f}")
    r = np.array(rows, dtype=float).reshape(-1, 5)
    print(f"{len(r)} kept proposals")
    for lo, hi in ((0, .5), (.5, .7), (.7, .9), (.9, 1.01)):
        _group(f"true IoU [{lo:.1f}, {min(hi, 1):.1f})", r, (r[:, 1] >= lo) & (r[:, 1] < hi))
    for q in (0.1, 0.15, 0.2, 0.3):
        _group(f"spread <= {q:.2f} m", r, r[:, 4] <= q)
    _group("spread >  0.15 m", r, r[:, 4] > 0.15)
    print(f"confident wall/floor predictions: {bg_counts[0]} points, "
          f"{bg_counts[1] / max(1, bg_counts[0]):.4f} right")


def _group(title, r, m):
    if not m.any():
        print(f"{title:22s}: none")
        return
    print(f"{title:22s}: {m.sum():4d} proposals, {r[m, 0].sum() / r[:, 0].sum():.0%} of points, "
          f"offset error pseudo {np.nanmean(r[m, 2]):.3f} / own {np.nanmean(r[m, 3]):.3f}, "
          f"mean IoU {r[m, 1].mean():.2f}")


if __name__ == "__main__":
    main()
