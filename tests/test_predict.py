"""``python -m twist_lib predict`` (:mod:`twist_lib.predict`): instances on a user's own scans.

The model is an untrained smoke-size Phi (and Psi) saved in the run-folder layouts with the
trainer's checkpoint format; what is tested is the plumbing, not the model's quality.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from twist_lib import evaluate as evaluate_cli
from twist_lib import pipeline, predict
from twist_lib.__main__ import main
from twist_lib.config import Config
from twist_lib.data import load_scene, read_meta, save_scene
from twist_lib.data.transforms import instance_offsets
from twist_lib.evaluation import ClassSpec, evaluate_dirs, read_predictions
from twist_lib.checkpoints import load_weights, run_checkpoint
from twist_lib.proposals import background_classes
from twist_lib.inference import (ScenePrediction, evaluate_predictions,
                                 predict_scene, recluster, true_class_probs)
from twist_lib.network import build_model
from twist_lib.prepare.ply import write_ply
from twist_lib.recorrection import build_psi


def _save(path: Path, **modules) -> Path:
    """A checkpoint in the trainer's format (named modules and their signatures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"modules": {k: m.state_dict() for k, m in modules.items()},
                "signatures": {k: m.signature() for k, m in modules.items()}, "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """A TWIST run (round 0: Phi; round 1: Phi + Psi; round 2 unfinished) and a Sup-only run."""
    root = tmp_path_factory.mktemp("predict_runs")
    cfg = Config.for_profile("smoke", data_root=str(data_root), cluster_min_points=5,
                             eval_min_region=5, cluster_radius=0.08, progress=False)
    meta = read_meta(data_root)
    torch.manual_seed(0)
    phi = build_model(cfg, meta)
    psi = build_psi(cfg, meta, phi.size.m)
    twist, sup = root / "twist", root / "sup"
    for run in (twist, sup):
        run.mkdir()
        cfg.save(run / "config.yaml")
    for t, modules in ((0, {"phi": phi}), (1, {"phi": phi, "psi": psi}), (2, {"phi": phi})):
        _save(twist / f"round_{t}" / "checkpoints" / "final.pt", **modules)
        if t < 2:
            (twist / f"round_{t}" / "metrics.json").write_text("{}")
    _save(sup / "checkpoints" / "final.pt", phi=phi)
    return {"twist": twist, "sup": sup, "cfg": cfg, "meta": meta, "data": Path(data_root)}


def _as_ply_colours(scene: dict) -> np.ndarray:
    return np.rint((scene["rgb"] + 1) * 127.5).astype(np.uint8)


def _write_ascii_ply(path: Path, xyz, rgb=None) -> Path:
    lines = ["ply", "format ascii 1.0", f"element vertex {len(xyz)}"]
    lines += [f"property float {k}" for k in "xyz"]
    lines += [f"property uchar {k}" for k in ("red", "green", "blue")] if rgb is not None else []
    lines.append("end_header")
    for i, p in enumerate(xyz):
        row = [f"{v:.9g}" for v in p] + ([str(int(c)) for c in rgb[i]] if rgb is not None else [])
        lines.append(" ".join(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def _val_scene(runs, k: int = 0) -> dict:
    name = runs["meta"]["splits"]["val"][k]
    return load_scene(runs["data"] / "scenes" / f"{name}.npz")


def _predict(*argv) -> int:
    return main(["predict", *map(str, argv), "--device", "cpu", "--no-progress"])


# ----------------------------------------------------------------------------------------------
def test_outputs_for_every_scan_of_a_folder(runs, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    a, b = _val_scene(runs, 0), _val_scene(runs, 1)
    write_ply(scans / "room_a.ply", a["xyz"], _as_ply_colours(a))
    save_scene(scans / "room_b.npz", b)
    (scans / "notes.txt").write_text("not a scan")
    out = tmp_path / "out"
    assert _predict("--run", runs["twist"], "--scans", scans, "--out", out) == 0
    printed = capsys.readouterr().out
    spec = ClassSpec.from_meta(runs["meta"])
    for name, scene in (("room_a", a), ("room_b", b)):
        n = len(scene["xyz"])
        assert f"{name}: {n} points" in printed
        labels = np.load(out / "labels" / f"{name}.npy")
        assert labels.shape == (n, 2) and labels.dtype == np.int64
        instances = read_predictions(out / "pred", name, num_points=n, spec=spec)
        assert len(instances) > 0
        for k, inst in enumerate(instances):
            assert len(inst["mask"]) == n
            np.testing.assert_array_equal(inst["mask"], labels[:, 1] == k)
        assert set(np.unique(labels[:, 1])) <= set(range(-1, len(instances)))
        html = (out / "html" / f"{name}.html").read_text()
        assert "plotly" in html and len(html) > 1_000_000  # plotly.js inlined
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["room_a.npy", "room_b.npy"]
    assert f"--pred {out / 'pred'}" in printed


def test_npz_binary_and_ascii_ply_give_identical_labels(runs, tmp_path):
    scene = _val_scene(runs)
    rgb = _as_ply_colours(scene)
    scene["rgb"] = rgb.astype(np.float32) / np.float32(127.5) - np.float32(1)
    folders = {k: tmp_path / k for k in ("npz", "binary", "ascii")}
    for folder in folders.values():
        folder.mkdir()
    save_scene(folders["npz"] / "room.npz", scene)
    write_ply(folders["binary"] / "room.ply", scene["xyz"], rgb)
    _write_ascii_ply(folders["ascii"] / "room.ply", scene["xyz"], rgb)
    labels = {}
    for kind, folder in folders.items():
        scan = folder / ("room.npz" if kind == "npz" else "room.ply")
        assert _predict("--run", runs["twist"], "--scans", scan, "--out", tmp_path / f"out_{kind}") == 0
        labels[kind] = np.load(tmp_path / f"out_{kind}" / "labels" / "room.npy")
    assert (labels["npz"][:, 1] >= 0).any()
    np.testing.assert_array_equal(labels["npz"], labels["binary"])
    np.testing.assert_array_equal(labels["npz"], labels["ascii"])


def _same_ap(ours: dict, theirs: dict) -> None:
    for key in ("AP", "AP50", "AP25"):
        a, b = ours[key], theirs[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), key


def _gt_folder(runs, names, tmp_path) -> Path:
    gt = tmp_path / "gt"
    gt.mkdir()
    for name in names:
        shutil.copyfile(runs["data"] / "gt" / f"{name}.txt", gt / f"{name}.txt")
    return gt


def test_evaluator_on_the_files_scores_like_evaluate_predictions(runs, tmp_path, capsys):
    """The files read back by the evaluator vs the in-memory benchmark of an independently
    loaded model (build_model + load_weights + predict_scene)."""
    cfg, meta, spec = runs["cfg"], runs["meta"], ClassSpec.from_meta(runs["meta"])
    names = meta["splits"]["val"]
    paths = [runs["data"] / "scenes" / f"{n}.npz" for n in names]
    predictor = predict.load_predictor(run=runs["twist"], device="cpu")
    rows = predict.predict_scans(predictor, paths, tmp_path / "out", progress=False, html=False)
    assert [r["name"] for r in rows] == names and all(r["instances"] > 0 for r in rows)
    gt = _gt_folder(runs, names, tmp_path)
    from_files = evaluate_dirs(gt, tmp_path / "out" / "pred", spec, 5, progress=False)

    phi = build_model(cfg, meta)
    load_weights(phi, runs["twist"] / "round_1" / "checkpoints" / "final.pt")
    scenes = [load_scene(p) for p in paths]
    preds = [predict_scene(phi, s, meta, cfg, "cpu") for s in scenes]
    _same_ap(from_files, evaluate_predictions(preds, scenes, spec, 5))
    assert evaluate_cli.main(["--gt", str(gt), "--pred", str(tmp_path / "out" / "pred"),
                              "--meta", str(runs["data"]), "--min-region-size", "5",
                              "--no-progress"]) == 0
    assert f"mAP: {from_files['AP']:.4f}" in capsys.readouterr().out


def test_written_files_of_perfect_instances_score_ap_one(runs, tmp_path):
    """Non-trivial AP through write_outputs: an oracle prediction (true classes, offsets to the
    true centres) scores the same, and 1.0, from the files and in memory."""
    meta, spec = runs["meta"], ClassSpec.from_meta(runs["meta"])
    scenes = [_val_scene(runs, k) for k in range(2)]
    preds = []
    for s in scenes:
        base = ScenePrediction(s["name"], s["xyz"], true_class_probs(s["semantic"], meta["num_classes"]),
                               instance_offsets(s["xyz"], s["instance"]), None, None, None)
        preds.append(recluster(base, 0.03, 5, background_classes(meta)))
        predict.write_outputs(tmp_path / "out", preds[-1], spec, html=False)
    from_files = evaluate_dirs(_gt_folder(runs, [s["name"] for s in scenes], tmp_path),
                               tmp_path / "out" / "pred", spec, 5, progress=False)
    in_memory = evaluate_predictions(preds, scenes, spec, 5)
    _same_ap(from_files, in_memory)
    assert from_files["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("problem", ["colourless", "nan", "empty", "missing", "extension"])
def test_bad_scans_name_the_file(runs, tmp_path, capsys, problem):
    xyz = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    rgb = np.full((20, 3), 128, np.uint8)
    path = tmp_path / f"bad_{problem}.ply"
    if problem == "colourless":
        _write_ascii_ply(path, xyz)
    elif problem == "nan":
        xyz[7, 1] = np.nan
        write_ply(path, xyz, rgb)
    elif problem == "empty":
        write_ply(path, np.zeros((0, 3)), np.zeros((0, 3)))
    elif problem == "extension":
        path = tmp_path / "scan.xyz"
        path.write_text("0 0 0\n")
    expected = {"colourless": "red/green/blue", "nan": "NaN", "empty": "no vertices",
                "missing": "not found", "extension": "unknown scan type"}[problem]
    assert _predict("--run", runs["twist"], "--scans", path, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and expected in err
    with pytest.raises((ValueError, FileNotFoundError), match=expected):
        predict.load_scan(path) if problem != "extension" else predict.scan_paths([path])


def test_recorrect_needs_a_checkpoint_with_psi(runs, tmp_path, capsys):
    scan = runs["data"] / "scenes" / f"{runs['meta']['splits']['val'][0]}.npz"
    for run, extra in ((runs["twist"], ["--round", "0"]), (runs["sup"], [])):
        assert _predict("--run", run, *extra, "--scans", scan, "--out", tmp_path / "x", "--recorrect") == 2
        err = capsys.readouterr().err
        assert "--recorrect" in err and "holds no Psi" in err and "final.pt" in err
    # round 1 (the default: round 2 has not finished) holds a Psi
    assert run_checkpoint(runs["twist"])[1] == 1
    assert _predict("--run", runs["twist"], "--scans", scan, "--out", tmp_path / "ok", "--recorrect") == 0
    assert (tmp_path / "ok" / "labels" / f"{scan.stem}.npy").is_file()


def test_sup_only_run_and_checkpoint_with_config_agree(runs, tmp_path, capsys):
    scan = runs["data"] / "scenes" / f"{runs['meta']['splits']['val'][0]}.npz"
    assert _predict("--run", runs["sup"], "--scans", scan, "--out", tmp_path / "sup") == 0
    assert _predict("--checkpoint", runs["twist"] / "round_1" / "checkpoints" / "final.pt",
                    "--config", runs["twist"] / "config.yaml", "--meta", runs["data"] / "meta.json",
                    "--scans", scan, "--out", tmp_path / "ckpt") == 0
    a, b = (np.load(tmp_path / d / "labels" / f"{scan.stem}.npy") for d in ("sup", "ckpt"))
    np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert _predict("--run", runs["sup"], "--round", "1", "--scans", scan, "--out", tmp_path / "y") == 2
    assert "Sup-only" in capsys.readouterr().err
    assert _predict("--run", runs["twist"], "--round", "3", "--scans", scan, "--out", tmp_path / "z") == 2
    assert "round 3" in capsys.readouterr().err


def test_export_predictions_writes_what_predict_writes(runs, tmp_path):
    """export_predictions (which shares the model loading) and predict give the same files."""
    names = runs["meta"]["splits"]["val"]
    out = pipeline.export_predictions(runs["twist"], out=tmp_path / "bench", device="cpu",
                                      progress=False)
    assert sorted(p.stem for p in (out / "gt").glob("*.txt")) == sorted(names)
    predictor = predict.load_predictor(run=runs["twist"], device="cpu")
    predict.predict_scans(predictor, [runs["data"] / "scenes" / f"{n}.npz" for n in names],
                          tmp_path / "mine", progress=False, html=False)
    for name in names:
        ours = read_predictions(tmp_path / "mine" / "pred", name)
        theirs = read_predictions(out / "pred", name)
        assert [(p["class_id"], p["score"]) for p in ours] == [(p["class_id"], p["score"]) for p in theirs]
        for p, q in zip(ours, theirs):
            np.testing.assert_array_equal(p["mask"], q["mask"])
    sup = pipeline.export_predictions(runs["sup"], device="cpu", progress=False)
    assert sup == runs["sup"] / "benchmark_val" and (sup / "pred" / f"{names[0]}.txt").is_file()


def test_scan_names_shard_and_duplicates(tmp_path):
    assert predict.scene_name("/x/my scan 1.ply") == "my_scan_1"
    assert predict.shard(list(range(5))) == list(range(5))  # no torch.distributed here
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        write_ply(tmp_path / d / "room.ply", np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="same scene name 'room'"):
        predict.scan_paths([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npz or .ply"):
        predict.scan_paths([tmp_path / "empty"])
