"""TWIST's rounds end to end at the smoke profile: the run folder, resuming after a kill, the
ground truth of unlabelled scenes never reaching training, and a NaN stopping cleanly."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from twist_lib.config import Config
from twist_lib.data import load_scene, read_meta, save_scene, scene_path
from twist_lib.data.pseudo_files import read_pseudo_labels
from twist_lib.self_training import run_twist

ROOT = Path(__file__).resolve().parents[1]


def overrides(data_root, run_dir, **kw):
    base = dict(data_root=str(data_root), run_dir=str(run_dir), label_ratio="50", progress=False,
                cpu_threads=1, steps=4, steps_per_round=6, ckpt_every=3, rounds=2,
                cluster_min_points=5, psi_init_steps=4)
    base.update(kw)
    return base


def smoke_cfg(data_root, run_dir, **kw):
    return Config.for_profile("smoke", **overrides(data_root, run_dir, **kw))


def _state(run_dir: Path) -> dict:
    """Every weight and optimizer buffer of the last round, and every pseudo-label array."""
    ckpt = torch.load(run_dir / "round_2" / "checkpoints" / "final.pt", weights_only=False)
    out = {f"{m}.{k}": v for m, sd in ckpt["modules"].items() for k, v in sd.items()}
    for m, opt in ckpt["optimizers"].items():
        for i, st in opt["state"].items():
            out[f"opt.{m}.{i}"] = st["momentum_buffer"]
    for path in sorted(run_dir.glob("round_*/pseudo/*.npz")):
        for k, v in read_pseudo_labels(path).items():
            out[f"{path.parent.parent.name}/{path.stem}.{k}"] = torch.as_tensor(v)
    return out


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_writes_every_round_and_its_pseudo_labels(data_root, tmp_path, one_thread):
    cfg = smoke_cfg(data_root, tmp_path / "run")
    rows = run_twist(cfg)
    run = tmp_path / "run"
    assert [r["round"] for r in rows] == [0, 1, 2]
    with open(run / "rounds.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["round"]) for r in table] == [0, 1, 2]
    assert {"AP50", "miou", "sem_acc", "offset_error", "coverage", "pseudo_s", "train_s"} <= set(table[0])
    unlabelled = set(read_meta(data_root)["splits"]["train"]) - set(read_meta(data_root)["splits"]["labelled_50"])
    for t in (1, 2):
        names = {p.stem for p in (run / f"round_{t}" / "pseudo").glob("*.npz")}
        assert names == unlabelled
        assert (run / f"round_{t}" / "pseudo_quality.json").exists()
        assert float(table[t]["pseudo_s"]) > 0 and float(table[t]["train_s"]) > 0
    ckpt = torch.load(run / "round_1/checkpoints/final.pt", weights_only=False)
    assert set(ckpt["modules"]) == {"phi", "psi"} and ckpt["step"] == 6
    with pytest.raises(FileExistsError, match="resume"):
        run_twist(cfg)


def _cli(data_root, run_dir, *extra):
    args = [f"{k}={v}" for k, v in overrides(data_root, run_dir).items()]
    return [sys.executable, "-m", "twist_lib", "twist", "--profile", "smoke", *args, *extra]


def _kill_when(cmd, ready, timeout=240):
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true. Returns whether it was killed
    before finishing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return False


def test_killed_runs_resume_to_the_same_weights_and_labels(data_root, tmp_path, one_thread):
    straight = tmp_path / "straight"
    run_twist(smoke_cfg(data_root, straight))

    run = tmp_path / "killed"
    pseudo = run / "round_1" / "pseudo"
    killed = [_kill_when(_cli(data_root, run), lambda: len(list(pseudo.glob("*.npz"))) >= 1
                         and not (pseudo / "_complete.json").exists())]
    last = run / "round_2" / "checkpoints"
    killed.append(_kill_when(_cli(data_root, run, "--resume"),
                             lambda: (last / "last.pt").exists() and not (last / "final.pt").exists()))
    assert any(killed), "the run finished before it could be killed"
    done = subprocess.run(_cli(data_root, run, "--resume"), cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same(_state(straight), _state(run))
    with open(run / "rounds.csv") as f:
        assert [int(r["round"]) for r in csv.DictReader(f)] == [0, 1, 2]


def test_scrambled_unlabelled_ground_truth_changes_no_label_and_no_weight(data_root, tmp_path, one_thread):
    scrambled = tmp_path / "data"
    shutil.copytree(data_root, scrambled)
    meta = read_meta(scrambled)
    rng = np.random.default_rng(0)
    for name in set(meta["splits"]["train"]) - set(meta["splits"]["labelled_50"]):
        scene = load_scene(scene_path(scrambled, name))
        scene["semantic"] = rng.integers(0, meta["num_classes"], len(scene["xyz"]))
        scene["instance"] = rng.integers(-1, 5, len(scene["xyz"]))
        scene["instance"][scene["instance"] < 0] = -100
        save_scene(scene_path(scrambled, name), scene)
    run_twist(smoke_cfg(data_root, tmp_path / "a"))
    run_twist(smoke_cfg(scrambled, tmp_path / "b"))
    _assert_same(_state(tmp_path / "a"), _state(tmp_path / "b"))


def _weights(run_dir: Path) -> dict:
    return {k: v for k, v in _state(run_dir).items() if "/" not in k}


def test_the_control_skips_pseudo_labelling_and_trains_the_same_weights(data_root, tmp_path,
                                                                        monkeypatch, one_thread):
    import twist_lib.self_training as st
    control = dict(pseudo_semantic=False, pseudo_offset=False)
    labelled = []
    real = st.pseudo_label_split
    monkeypatch.setattr(st, "pseudo_label_split", lambda *a, **k: labelled.append(1) or real(*a, **k))
    run_twist(smoke_cfg(data_root, tmp_path / "skip", **control))
    assert not labelled                                   # modules A-C never ran
    for path in (tmp_path / "skip").glob("round_*/pseudo/*.npz"):
        labels = read_pseudo_labels(path)
        assert (labels["semantic"] == -100).all() and (labels["instance"] == -100).all()
        assert not labels["offset_valid"].any()
    # the old way: modules A-C label every round; a smoke Phi forms no proposal, so every
    # point gets a random instance id instead (what no training step may read)
    monkeypatch.setattr(st, "uses_pseudo_labels", lambda cfg: True)
    real_batch, rng = st.label_batch, np.random.default_rng(0)

    def with_instances(*a, **k):
        for name, labels in real_batch(*a, **k):
            n = len(labels["instance"])
            yield name, {**labels, "instance": torch.as_tensor(rng.integers(0, 5, n))}
    monkeypatch.setattr(st, "label_batch", with_instances)
    run_twist(smoke_cfg(data_root, tmp_path / "full", **control))
    assert labelled
    assert any((read_pseudo_labels(p)["instance"] >= 0).any()
               for p in (tmp_path / "full").glob("round_*/pseudo/*.npz"))
    _assert_same(_weights(tmp_path / "skip"), _weights(tmp_path / "full"))


def test_a_nan_loss_names_the_round_and_step_and_keeps_the_checkpoint(data_root, tmp_path,
                                                                      monkeypatch, one_thread):
    import twist_lib.self_training as st
    original = st.split_phi_loss

    def poisoned(out, batch):
        losses = original(out, batch)
        if not bool(batch["labelled"].all()):  # a round t >= 1 batch (it has unlabelled scenes)
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(st, "split_phi_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"round 1, step 0.*last\.pt"):
        run_twist(smoke_cfg(data_root, tmp_path / "r"))
    assert (tmp_path / "r/round_0/checkpoints/final.pt").exists()
    assert not (tmp_path / "r/round_1/checkpoints/final.pt").exists()


def test_round_lr_sets_phis_learning_rate_in_rounds_after_the_first(data_root, tmp_path):
    from twist_lib.self_training import RoundTrainer
    cfg = smoke_cfg(data_root, tmp_path / "r", lr=0.1, round_lr=0.02, psi_lr=0.005)
    lrs = {t: {k: o.param_groups[0]["initial_lr"] for k, o in
               RoundTrainer(cfg, t, tmp_path / f"r{t}").optimizers.items()} for t in (0, 1)}
    assert lrs == {0: {"phi": 0.1, "psi": 0.005}, 1: {"phi": 0.02, "psi": 0.005}}
    cfg.round_lr = 0.0  # 0 = the round-0 rate, as the paper restarts every round at lr
    assert RoundTrainer(cfg, 2, tmp_path / "r2").optimizers["phi"].param_groups[0]["initial_lr"] == 0.1


def test_cli_takes_overrides_on_both_sides_of_an_option(tmp_path):
    from twist_lib.__main__ import main
    with pytest.raises(SystemExit):
        main(["twist", "--profile", "smoke", "steps=1", "--bogus"])
    proc = subprocess.run([sys.executable, "-m", "twist_lib", "twist", "--profile", "smoke",
                           f"run_dir={tmp_path}", "--resume", "learning_rate=0.1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "unknown config key 'learning_rate'" in proc.stderr


def test_init_checkpoint_baseline_trains_the_sup_only_folder_once_then_reuses_it(data_root, tmp_path, monkeypatch,
                                                                                  one_thread):
    from twist_lib.self_training import baseline_run_dir
    cfg = smoke_cfg(data_root, "", rounds=0)
    base = baseline_run_dir(cfg, root=tmp_path)
    # named as `python -m twist_lib train` names it, below the root given
    assert base == tmp_path / "runs" / f"synthetic_smoke_{cfg.label_ratio}pct"
    final = base / "checkpoints" / "final.pt"
    assert final.exists() and (base / "metrics.json").exists()
    assert set(torch.load(final, weights_only=False)["modules"]) == {"phi"}   # Sup-only: no Psi
    stamp = final.stat().st_mtime_ns
    assert baseline_run_dir(cfg, root=tmp_path) == base and final.stat().st_mtime_ns == stamp
    # round 0 of a run started from it: Phi is the baseline's, Psi trained alongside on frozen Phi
    monkeypatch.chdir(tmp_path)   # the CLI resolves runs/ against the working folder
    rows = run_twist(smoke_cfg(data_root, tmp_path / "twist", rounds=0, init_checkpoint="baseline"))
    assert [r["round"] for r in rows] == [0]
    start = torch.load(final, weights_only=False)["modules"]["phi"]
    round0 = torch.load(tmp_path / "twist" / "round_0" / "checkpoints" / "final.pt",
                        weights_only=False)["modules"]
    assert "psi" in round0
    for key, value in start.items():
        assert torch.equal(round0["phi"][key], value), key
