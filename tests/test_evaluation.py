"""Tests of twist_lib.evaluation against hand-computed AP values and a literal re-statement of the
official ScanNet script (evaluate_semantic_instance.py)."""
import math

import numpy as np
import pytest

from twist_lib.data.io import DataFormatError, make_meta
from twist_lib.evaluation import (ClassSpec, ConfusionMatrix, InstanceEvaluator, OVERLAPS,
                                  PseudoLabelQuality, average_precision, evaluate_instances,
                                  format_ap_table, pseudo_label_quality, read_predictions,
                                  semantic_scores, write_predictions)

# Test classes: wall (benchmark id 1, not an instance class = void), chair 2, table 3, lamp 4.
SPEC = ClassSpec(("wall", "chair", "table", "lamp"), (1, 2, 3, 4), (1, 2, 3))
WALL, CHAIR, TABLE, LAMP = 1, 2, 3, 4
MAP_COLS = slice(0, 9)  # OVERLAPS = 0.50, 0.55, ..., 0.90, then 0.25
I25 = OVERLAPS.index(0.25)


class Layout:
    """A scene built from consecutive point runs, each with one gt id."""

    def __init__(self):
        self.ids = []

    def add(self, gt_id, n):
        start = len(self.ids)
        self.ids += [gt_id] * n
        return np.arange(start, start + n)

    @property
    def gt(self):
        return np.array(self.ids, dtype=np.int64)

    def mask(self, *parts):
        m = np.zeros(len(self.ids), dtype=bool)
        for part in parts:
            m[part] = True
        return m


def pred(mask, class_id, score):
    return {"mask": mask, "class_id": class_id, "score": score}


def chair_row(result):
    return result["ap_matrix"][SPEC.instance_benchmark_ids.index(CHAIR)]


# --------------------------------------------------------------------------- instance AP
def test_perfect_prediction_scores_one_and_classes_without_gt_are_nan():
    s = Layout()
    a = s.add(2001, 400)
    s.add(1000, 300)
    res = evaluate_instances([[pred(s.mask(a), CHAIR, 0.9)]], [s.gt], SPEC)
    # One GT, one prediction with IoU 1: PR points (p=1, r=1) + (1, 0): AP = 1*0.5 + 1*0.5 = 1.
    assert np.allclose(chair_row(res), 1.0)
    assert res["classes"]["chair"] == {"AP": 1.0, "AP50": 1.0, "AP25": 1.0}
    assert math.isnan(res["classes"]["table"]["AP"]) and math.isnan(res["classes"]["lamp"]["AP50"])
    assert (res["AP"], res["AP50"], res["AP25"]) == (1.0, 1.0, 1.0)


# Prediction = the first k of a 400-point chair, so IoU = k / 400. Matched (AP 1) only when
# IoU > threshold strictly; otherwise the GT is missed and the prediction is a FP (nothing of it
# is void), PR points (p=0, r=0) + (1, 0) give AP 0. Rows: 0.50 .. 0.90, then 0.25.
@pytest.mark.parametrize("k, row", [
    (199, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),   # IoU 0.4975
    (200, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),   # IoU 0.5 exactly: not a match at 0.5
    (201, [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]),   # IoU 0.5025
    (300, [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]),   # IoU 0.75 exactly: not a match at 0.75
    (301, [1, 1, 1, 1, 1, 1, 0, 0, 0, 1]),   # IoU 0.7525
    (99, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),    # 99 points < min_region_size: dropped, AP 0
])
def test_iou_must_exceed_the_threshold(k, row):
    s = Layout()
    a = s.add(2001, 400)
    res = evaluate_instances([[pred(s.mask(a[:k]), CHAIR, 0.8)]], [s.gt], SPEC)
    np.testing.assert_allclose(chair_row(res), row)
    assert res["classes"]["chair"]["AP"] == pytest.approx(sum(row[:9]) / 9)


@pytest.mark.parametrize("order", [("hi", "lo", "b"), ("lo", "hi", "b")])
def test_duplicate_prediction_is_a_false_positive_with_the_lower_score(order):
    s = Layout()
    a, b = s.add(2001, 400), s.add(2002, 400)
    preds = {"hi": pred(s.mask(a), CHAIR, 0.9), "lo": pred(s.mask(a), CHAIR, 0.7),
             "b": pred(s.mask(b), CHAIR, 0.5)}
    res = evaluate_instances([[preds[k] for k in order]], [s.gt], SPEC)
    # Either order: A keeps 0.9 (TP), the duplicate is a FP at 0.7, B is a TP at 0.5.
    # Ascending scores 0.5(T) 0.7(F) 0.9(T):
    #   t=0.5: tp 2 fp 1 -> p 2/3, r 1;  t=0.7: tp 1 fp 1 -> p 1/2, r 1/2;
    #   t=0.9: tp 1 fp 0 -> p 1, r 1/2;  appended p 1, r 0.
    # recall [1, .5, .5, 0] -> padded [1, 1, .5, .5, 0, 0] -> steps [.25, .25, .25, .25]
    # AP = 2/3*.25 + 1/2*.25 + 1*.25 + 1*.25 = 19/24.
    # (Giving the FP the later-listed score instead would give 5/12 for the second order.)
    np.testing.assert_allclose(chair_row(res), 19 / 24)


def test_gt_without_prediction_scores_zero_and_nan_classes_leave_the_mean():
    s = Layout()
    a = s.add(2001, 400)
    s.add(3001, 400)  # a table nobody predicts
    w = s.add(1000, 300)
    preds = [pred(s.mask(a), CHAIR, 0.9), pred(s.mask(w[:200]), LAMP, 0.8)]  # lamp: no GT
    res = evaluate_instances([preds], [s.gt], SPEC)
    assert res["classes"]["chair"]["AP"] == 1.0
    assert res["classes"]["table"] == {"AP": 0.0, "AP50": 0.0, "AP25": 0.0}
    assert all(math.isnan(v) for v in res["classes"]["lamp"].values())
    # mean over chair and table only: (1 + 0) / 2
    assert (res["AP"], res["AP50"], res["AP25"]) == (0.5, 0.5, 0.5)


def test_prediction_mostly_on_void_points_is_not_a_false_positive():
    s = Layout()
    a = s.add(2001, 400)
    w = s.add(1000, 100)      # wall: not an instance class
    u = s.add(0, 25)          # unannotated
    c = s.add(2000, 150)      # chair class without an instance (void too, not a GT instance)
    t = s.add(3001, 400)      # a table: not void, not a chair
    stray = pred(s.mask(w[:75], u, c[:50], t[:50]), CHAIR, 0.9)  # 200 points, 150 void: 0.75
    res = evaluate_instances([[pred(s.mask(a), CHAIR, 0.5), stray]], [s.gt], SPEC)
    # Thresholds < 0.75: 0.75 > threshold, the stray is ignored -> AP 1.
    # Thresholds >= 0.75: a FP at 0.9 above the TP at 0.5:
    #   t=0.5: p 1/2, r 1;  t=0.9: p 0, r 0;  + (1, 0) -> steps [.5, .5, 0] -> AP = 0.25.
    np.testing.assert_allclose(chair_row(res), [1, 1, 1, 1, 1, .25, .25, .25, .25, 1])
    assert res["classes"]["chair"]["AP"] == pytest.approx(6 / 9)


def test_gt_below_min_region_size_is_ignored():
    s = Layout()
    a = s.add(2001, 400)
    small = s.add(2002, 80)   # < 100 points: not counted, its points are ignored
    w = s.add(1000, 300)
    t = s.add(3001, 400)
    preds = [pred(s.mask(a), CHAIR, 0.5),
             pred(s.mask(small, w[:30]), CHAIR, 0.9),  # 110 points, all ignored: never a FP
             pred(s.mask(t[:60]), CHAIR, 0.95)]        # 60 < 100 points: dropped
    res = evaluate_instances([preds], [s.gt], SPEC)
    # Only A counts, matched with IoU 1 and no FP: AP 1 at every threshold (the small GT
    # counted as missed would give recall 1/2; the stray counted as FP at 0.9 would give 0.25).
    np.testing.assert_allclose(chair_row(res), 1.0)


@pytest.mark.parametrize("order, ap25", [((0, 1), 1.0), ((1, 0), 0.5)])
def test_gt_walks_predictions_in_file_order_not_score_order(order, ap25):
    s = Layout()
    a, b = s.add(2001, 400), s.add(2002, 400)
    p1 = pred(s.mask(a), CHAIR, 0.5)                  # IoU(A) 1
    p2 = pred(s.mask(a[:200], b[:200]), CHAIR, 0.9)   # IoU(A) = IoU(B) = 200/600 = 1/3
    res = evaluate_instances([[(p1, p2)[i] for i in order]], [s.gt], SPEC)
    # At 0.25, file order p1, p2: A matches p1, p2 is a duplicate of A (FP 0.5, A keeps 0.9) but
    # stays unvisited, so B then matches p2 (0.9). Ascending 0.5(F) 0.9(T) 0.9(T):
    #   t=0.5: p 2/3, r 1;  t=0.9: p 1, r 1;  + (1, 0) -> steps [0, .5, .5] -> AP 1.
    # File order p2, p1: A matches p2 (0.9, visited), p1 is a duplicate (FP 0.5), B finds p2
    # visited and is missed. Ascending 0.5(F) 0.9(T), 1 missed:
    #   t=0.5: p 1/2, r 1/2;  t=0.9: p 1, r 1/2;  + (1, 0) -> steps [0, .25, .25] -> AP 0.5.
    assert chair_row(res)[I25] == pytest.approx(ap25)
    # At 0.5 (either order): A matches p1 (0.5), p2 is a FP (0.9), B is missed:
    #   t=0.5: p 1/2, r 1/2;  t=0.9: p 0, r 0;  + (1, 0) -> steps [.25, .25, 0] -> AP 0.125.
    assert res["classes"]["chair"]["AP50"] == pytest.approx(0.125)


def test_scenes_accumulate_one_at_a_time():
    s1, s2 = Layout(), Layout()
    a = s1.add(2001, 400)
    s2.add(2001, 400)
    t = s2.add(3001, 400)
    ev = InstanceEvaluator(SPEC)
    ev.add_scene([pred(s1.mask(a), CHAIR, 0.9)], s1.gt, "one")
    ev.add_scene({"masks": s2.mask(t[:200])[None], "class_ids": [CHAIR], "scores": [0.95]},
                 s2.gt, "two")
    # y: TP 0.9 (scene one), FP 0.95 (scene two), 1 missed chair (scene two).
    #   t=0.9: p 1/2, r 1/2;  t=0.95: p 0, r 0;  + (1, 0) -> AP = 1/2 * 1/4 = 0.125.
    np.testing.assert_allclose(chair_row(ev.result())[:9], 0.125)
    # the evaluator keeps per-class match counts, not the masks
    assert ev.scenes["two"][CHAIR].inter.shape == (1, 1)
    with pytest.raises(ValueError, match="added twice"):
        ev.add_scene([], s1.gt, "one")
    by_name = evaluate_instances({"two": [pred(s2.mask(t[:200]), CHAIR, 0.95)],
                                  "one": [pred(s1.mask(a), CHAIR, 0.9)]},
                                 {"one": s1.gt, "two": s2.gt}, SPEC)
    np.testing.assert_allclose(by_name["ap_matrix"], ev.result()["ap_matrix"], equal_nan=True)


def test_non_instance_class_is_skipped_and_unknown_class_rejected():
    s = Layout()
    a = s.add(2001, 400)
    w = s.add(1000, 300)
    preds = [pred(s.mask(a), CHAIR, 0.5), pred(s.mask(a, w), WALL, 0.99)]
    np.testing.assert_allclose(chair_row(evaluate_instances([preds], [s.gt], SPEC)), 1.0)
    with pytest.raises(ValueError, match="class id 99"):
        evaluate_instances([[pred(s.mask(a), 99, 0.5)]], [s.gt], SPEC)
    with pytest.raises(ValueError, match="mask of shape"):
        evaluate_instances([[pred(np.ones(5, bool), CHAIR, 0.5)]], [s.gt], SPEC)


def test_average_precision_is_invariant_to_the_order_of_tied_scores():
    # scores .8 .8 .3 with trues {1, 0} at .8 and 1 at .3, one missed GT:
    #   t=0.3: tp 2 fp 1 fn 1 -> p 2/3, r 2/3;  t=0.8: tp 1 fp 1 fn 2 -> p 1/2, r 1/3;  + (1, 0)
    #   padded recall [2/3, 2/3, 1/3, 0, 0] -> steps [1/6, 1/3, 1/6]
    #   AP = 2/3 * 1/6 + 1/2 * 1/3 + 1 * 1/6 = 4/9
    for trues in ([1, 0, 1], [0, 1, 1]):
        assert average_precision(trues, [0.8, 0.8, 0.3], 1) == pytest.approx(4 / 9)
    assert average_precision([], [], 2) == 0.0


def test_format_ap_table_lists_classes_and_averages():
    s = Layout()
    a = s.add(2001, 400)
    s.add(3001, 400)
    text = format_ap_table(evaluate_instances([[pred(s.mask(a), CHAIR, 0.9)]], [s.gt], SPEC))
    lines = text.splitlines()
    assert any(l.startswith("chair") and l.split()[-3:] == ["1.000"] * 3 for l in lines)
    assert any(l.startswith("table") and l.split()[-3:] == ["0.000"] * 3 for l in lines)
    assert any(l.startswith("lamp") and l.split()[-3:] == ["nan"] * 3 for l in lines)
    assert any(l.startswith("average") and l.split()[-3:] == ["0.500"] * 3 for l in lines)


# ------------------------------------------------- reference: the official script, restated
def official_reference(scenes, valid_ids, min_size=100):
    """A literal restatement of evaluate_semantic_instance.py (dicts, pred_visited by file name,
    np.append'ed arrays, the PR loop), for gt files without ``id * 1000`` points. Returns the
    AP matrix (classes x overlaps 0.50..0.90, 0.25)."""
    overlaps = list(np.append(np.arange(0.5, 0.95, 0.05), 0.25))
    matches = []
    for si, (gt_ids, preds) in enumerate(scenes):
        gt2pred = {c: [] for c in valid_ids}
        for iid in np.unique(gt_ids):
            if iid != 0 and iid // 1000 in valid_ids:
                gt2pred[iid // 1000].append({"instance_id": iid, "vert_count": int((gt_ids == iid).sum()),
                                             "matched_pred": []})
        bool_void = np.logical_not(np.isin(gt_ids // 1000, valid_ids))
        pred2gt = {c: [] for c in valid_ids}
        for k, (mask, label, conf) in enumerate(preds):
            if label not in valid_ids or mask.sum() < min_size:
                continue
            p = {"filename": f"{si}/{k}", "vert_count": int(mask.sum()), "confidence": conf,
                 "void_intersection": int((bool_void & mask).sum())}
            matched_gt = []
            for gt in gt2pred[label]:
                inter = int(((gt_ids == gt["instance_id"]) & mask).sum())
                if inter > 0:
                    matched_gt.append(dict(gt, intersection=inter))
                    gt["matched_pred"].append(dict(p, intersection=inter))
            p["matched_gt"] = matched_gt
            pred2gt[label].append(p)
        matches.append({"gt": gt2pred, "pred": pred2gt})
    ap = np.zeros((len(valid_ids), len(overlaps)))
    for oi, th in enumerate(overlaps):
        visited = {p["filename"]: False for m in matches for c in valid_ids for p in m["pred"][c]}
        for li, c in enumerate(valid_ids):
            y_true, y_score, hard_fn, has_gt, has_pred = np.empty(0), np.empty(0), 0, False, False
            for m in matches:
                preds = m["pred"][c]
                gts = [g for g in m["gt"][c] if g["vert_count"] >= min_size]
                has_gt, has_pred = has_gt or bool(gts), has_pred or bool(preds)
                cur_true, cur_score = np.ones(len(gts)), np.full(len(gts), -np.inf)
                cur_match = np.zeros(len(gts), dtype=bool)
                for gi, gt in enumerate(gts):
                    found = False
                    for p in gt["matched_pred"]:
                        if visited[p["filename"]]:
                            continue
                        iou = p["intersection"] / (gt["vert_count"] + p["vert_count"] - p["intersection"])
                        if iou > th:
                            if cur_match[gi]:
                                lo, hi = sorted((cur_score[gi], p["confidence"]))
                                cur_score[gi] = hi
                                cur_true, cur_score = np.append(cur_true, 0), np.append(cur_score, lo)
                                cur_match = np.append(cur_match, True)
                            else:
                                found, cur_match[gi], cur_score[gi] = True, True, p["confidence"]
                                visited[p["filename"]] = True
                    hard_fn += not found
                cur_true, cur_score = cur_true[cur_match], cur_score[cur_match]
                for p in preds:
                    if any(g["intersection"] / (g["vert_count"] + p["vert_count"] - g["intersection"]) > th
                           for g in p["matched_gt"]):
                        continue
                    ignore = p["void_intersection"] + sum(
                        g["intersection"] for g in p["matched_gt"] if g["vert_count"] < min_size)
                    if ignore / p["vert_count"] <= th:
                        cur_true, cur_score = np.append(cur_true, 0), np.append(cur_score, p["confidence"])
                y_true, y_score = np.append(y_true, cur_true), np.append(y_score, cur_score)
            if has_gt and has_pred and len(y_true) == 0:
                ap[li, oi] = 0.0  # the official script crashes here (documented deviation)
            elif has_gt and has_pred:
                order = np.argsort(y_score)
                ys, yt = y_score[order], y_true[order]
                cums = np.cumsum(yt)
                _, uniq = np.unique(ys, return_index=True)
                prec, rec = np.zeros(len(uniq) + 1), np.zeros(len(uniq) + 1)
                cums = np.append(cums, 0)
                for ri, si in enumerate(uniq):
                    cs = cums[si - 1]
                    tp = cums[-2] - cs
                    fp = len(ys) - si - tp
                    prec[ri], rec[ri] = tp / (tp + fp), tp / (tp + cs + hard_fn)
                prec[-1], rec[-1] = 1.0, 0.0
                rc = np.append(np.append(rec[0], rec), 0.0)
                ap[li, oi] = np.dot(prec, np.convolve(rc, [-0.5, 0, 0.5], "valid"))
            else:
                ap[li, oi] = 0.0 if has_gt else np.nan
    return ap


def random_scene(rng, n=3000):
    gt = np.zeros(n, dtype=np.int64)
    perm, start, counter = rng.permutation(n), 0, {c: 0 for c in (CHAIR, TABLE, LAMP)}
    segments = []
    while start < n:
        size = int(rng.integers(40, 450))
        idx = perm[start:start + size]
        start += size
        kind = rng.random()
        if kind < 0.15:
            gt[idx] = 1000 if rng.random() < 0.5 else 0
        else:
            c = int(rng.choice([CHAIR, TABLE, LAMP]))
            counter[c] += 1
            gt[idx] = c * 1000 + counter[c]
            segments.append((idx, c))
    preds = []
    for idx, c in segments:
        for _ in range(int(rng.integers(0, 3))):
            keep = idx[rng.random(len(idx)) < rng.uniform(0.55, 1.0)]
            other = perm[rng.integers(0, n, size=int(rng.integers(0, 80)))]
            mask = np.zeros(n, bool)
            mask[keep] = mask[other] = True
            label = c if rng.random() < 0.8 else int(rng.choice([WALL, CHAIR, TABLE, LAMP]))
            preds.append((mask, label, float(rng.integers(1, 10)) / 10))  # ties on purpose
    for _ in range(3):  # masks of random points
        mask = rng.random(n) < rng.uniform(0.02, 0.2)
        preds.append((mask, int(rng.choice([CHAIR, TABLE, LAMP])), float(rng.integers(1, 10)) / 10))
    order = rng.permutation(len(preds))
    return gt, [preds[i] for i in order]


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_official_script_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(3)]
    expected = official_reference(scenes, list(SPEC.instance_benchmark_ids))
    got = evaluate_instances([[pred(*p) for p in preds] for _, preds in scenes],
                             [gt for gt, _ in scenes], SPEC)
    np.testing.assert_allclose(got["ap_matrix"], expected, rtol=0, atol=1e-12, equal_nan=True)
    assert got["AP"] == pytest.approx(np.nanmean(expected[:, :9]), nan_ok=True)


# --------------------------------------------------------------------------- class spec
def test_class_spec_builtins_and_meta():
    scannet = ClassSpec.builtin("scannet")
    # VALID_CLASS_IDS and CLASS_LABELS of the official script:
    assert scannet.instance_benchmark_ids == (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33,
                                              34, 36, 39)
    assert scannet.instance_names[0] == "cabinet" and scannet.instance_names[-1] == "otherfurniture"
    assert len(scannet.instance_names) == 18 and scannet.num_classes == 20
    s3dis = ClassSpec.builtin("s3dis")
    assert s3dis.instance_benchmark_ids == tuple(range(1, 14)) and s3dis.names[0] == "ceiling"
    meta = make_meta("toy", ["wall", "chair", "table"], [1, 2], splits={})
    spec = ClassSpec.from_meta(meta)
    assert spec.instance_names == ("chair", "table") and spec.instance_benchmark_ids == (2, 3)
    assert spec.to_benchmark_id([2, 0]).tolist() == [3, 1]
    with pytest.raises(ValueError, match="unknown dataset"):
        ClassSpec.builtin("kitti")
    with pytest.raises(ValueError, match="distinct"):
        ClassSpec(("a", "b"), (1, 1), (0,))
    with pytest.raises(ValueError, match="missing key"):
        ClassSpec.from_meta({"class_names": ["a"]})


def test_class_spec_synthetic():
    synthetic = pytest.importorskip("twist_lib.synthetic")
    if not hasattr(synthetic, "SYNTHETIC_CLASS_NAMES"):
        pytest.skip("twist_lib.synthetic does not export its class list yet")
    spec = ClassSpec.builtin("synthetic")
    assert spec.names == tuple(synthetic.SYNTHETIC_CLASS_NAMES)
    assert spec.instance_ids == tuple(synthetic.SYNTHETIC_INSTANCE_CLASSES)
    assert spec.benchmark_ids == tuple(range(1, len(spec.names) + 1))


# --------------------------------------------------------------------------- semantic
def test_semantic_scores_on_a_hand_confusion_matrix():
    gt = [0, 0, 0, 1, 1, 2, -100]
    pr = [0, 0, 1, 1, 2, 2, 3]
    # confusion (rows gt): [[2,1,0,0],[0,1,1,0],[0,0,1,0],[0,0,0,0]]; class 3 appears nowhere
    # IoU: 2/(3+2-2)=2/3, 1/(2+2-1)=1/3, 1/(1+2-1)=1/2, NaN -> mIoU 1/2
    # Acc: 2/3, 1/2, 1, NaN -> mAcc 13/18; overall 4/6
    s = semantic_scores(pr, gt, num_classes=4)
    np.testing.assert_allclose(s["iou_per_class"], [2 / 3, 1 / 3, 1 / 2, np.nan], equal_nan=True)
    np.testing.assert_allclose(s["acc_per_class"], [2 / 3, 1 / 2, 1, np.nan], equal_nan=True)
    assert s["miou"] == pytest.approx(0.5) and s["macc"] == pytest.approx(13 / 18)
    assert s["oacc"] == pytest.approx(4 / 6)
    cm = ConfusionMatrix(4).add(pr[:3], gt[:3]).add(pr[3:], gt[3:])
    assert cm.scores()["miou"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0..3"):
        semantic_scores([0, 4], [0, 1], num_classes=4)


# --------------------------------------------------------------------------- pseudo labels
def test_pseudo_label_quality_on_a_hand_case():
    ig = -100
    pseudo_sem = [0, 1, 1, ig, 0, 2]
    gt_sem = [0, 0, 1, 1, ig, 2]
    gt_inst = [0, 0, 1, 1, ig, ig]
    pseudo_off = np.zeros((6, 3))
    pseudo_off[:, 0] = [1, 0, 3, 7, 9, 9]   # rows 3 (no pseudo label), 4, 5 (no gt instance) unused
    gt_off = np.zeros((6, 3))
    gt_off[:, 1] = [0, 2, 4, 0, 0, 0]
    q = pseudo_label_quality(pseudo_sem, pseudo_off, gt_sem, gt_off, gt_inst, num_classes=3)
    # pseudo labels on points 0,1,2,4,5 -> coverage 5/6; scored semantics: points 0,1,2,5
    # (point 4 has no gt class): right on 0, 2, 5 -> 3/4; per class: 0: 1/2, 1: 1, 2: 1 -> 5/6
    # offsets scored on points 0,1,2: |(1,0)|=1, |(0,-2)|=2, |(3,-4)|=5 -> mean 8/3
    assert q["coverage"] == pytest.approx(5 / 6)
    assert q["sem_acc"] == pytest.approx(3 / 4) and q["sem_macc"] == pytest.approx(5 / 6)
    assert q["offset_error"] == pytest.approx(8 / 3)
    acc = PseudoLabelQuality(3)
    acc.add(pseudo_sem[:2], pseudo_off[:2], gt_sem[:2], gt_off[:2], gt_inst[:2])
    acc.add(pseudo_sem[2:], pseudo_off[2:], gt_sem[2:], gt_off[2:], gt_inst[2:])
    assert acc.result()["offset_error"] == pytest.approx(8 / 3)
    assert acc.result()["coverage"] == pytest.approx(5 / 6)


# --------------------------------------------------------------------------- files
def test_predictions_round_trip_in_the_benchmark_format(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((3, 50)) < 0.5
    instances = [pred(masks[0], 2, 0.123456789), pred(masks[1], 3, 1.0), pred(masks[2], 2, 1e-7)]
    path = write_predictions(tmp_path, "scene0001_00", instances)
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["predicted_masks/scene0001_00_000.txt", "2", "0.123456789"]
    mask_text = (tmp_path / "predicted_masks/scene0001_00_001.txt").read_text().split("\n")
    assert mask_text[:-1] == [str(int(v)) for v in masks[1]] and mask_text[-1] == ""
    back = read_predictions(tmp_path, "scene0001_00", num_points=50)
    assert [b["class_id"] for b in back] == [2, 3, 2]
    assert [b["score"] for b in back] == [0.123456789, 1.0, 1e-7]
    for b, m in zip(back, masks):
        np.testing.assert_array_equal(b["mask"], m)


@pytest.mark.parametrize("line, mask_lines, message", [
    ("m/a.txt 2", "1\n0\n1\n", "expected 'relative/mask/path.txt class_id confidence'"),
    ("m/a.txt chair 0.5", "1\n0\n1\n", "must be numbers"),
    ("m/a.txt 2.5 0.5", "1\n0\n1\n", "is not an integer"),
    ("m/a.txt 9 0.5", "1\n0\n1\n", "class id 9 is not a class"),
    ("m/b.txt 2 0.5", "1\n0\n1\n", "not found"),
    ("m/a.txt 2 0.5", "1\n0\n", "2 lines, but scene s has 3 points"),
    ("m/a.txt 2 0.5", "1\nx\n1\n", "line 2: expected one integer"),
    ("../a.txt 2 0.5", "1\n0\n1\n", "points outside"),
    ("m/a.txt 2 nan", "1\n0\n1\n", "not finite"),
])
def test_read_predictions_names_the_file_and_the_problem(tmp_path, line, mask_lines, message):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/a.txt").write_text(mask_lines)
    (tmp_path / "s.txt").write_text(line + "\n")
    with pytest.raises(DataFormatError, match="a.txt|s.txt") as err:
        read_predictions(tmp_path, "s", num_points=3, spec=SPEC)
    assert message in str(err.value)


def test_object_sem_acc_counts_object_pseudo_classes_only():
    # pseudo classes 0 (background) and 1, 2 (objects); ground truth per point
    pseudo = [0, 0, 1, 1, 2, 2, -100]
    gt = [0, 1, 1, 0, 2, 1, 2]
    off = np.zeros((7, 3))
    q = PseudoLabelQuality(3, object_classes=[1, 2]).add(pseudo, off, gt, off, [-100] * 7).result()
    # objects: points 2..5 carry pseudo 1, 1, 2, 2 with truth 1, 0, 2, 1 -> 2 of 4 right
    assert q["object_sem_acc"] == pytest.approx(2 / 4)
    assert q["sem_acc"] == pytest.approx(3 / 6)          # all six labelled: 0, 2, 4 right
    assert "object_sem_acc" not in PseudoLabelQuality(3).result()
