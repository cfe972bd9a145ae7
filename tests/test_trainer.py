"""The baseline's trainer and inference: resume, errors, and the evaluation path end to end."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from twist_lib.config import Config
from twist_lib.hooks import HookBase, StepTimer
from twist_lib.data import DataFormatError
from twist_lib.inference import evaluate_model
from twist_lib.network import Phi
from twist_lib.trainer import Trainer, load_weights


def smoke_cfg(data_root, run_dir, **kw):
    base = dict(data_root=str(data_root), run_dir=str(run_dir), label_ratio="50", steps=6,
                ckpt_every=3, log_every=1, progress=False, batch_size=2)
    base.update(kw)
    return Config.for_profile("smoke", **base)


def test_resume_after_a_crash_equals_an_uninterrupted_run(data_root, tmp_path, monkeypatch, one_thread):
    Trainer(smoke_cfg(data_root, tmp_path / "straight")).fit()

    crash_cfg = smoke_cfg(data_root, tmp_path / "crashed")
    original = Trainer.train_step

    def crashing_step(self, batch):
        if self.step == 4:  # after the checkpoint at step 3, before step 5
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        Trainer(crash_cfg).fit()
    monkeypatch.setattr(Trainer, "train_step", original)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(crash_cfg)  # a fresh start must not silently overwrite the run
    resumed = Trainer(crash_cfg, resume=True)
    assert resumed.step == 3
    resumed.fit()

    a = torch.load(tmp_path / "straight/checkpoints/final.pt", weights_only=False)
    b = torch.load(tmp_path / "crashed/checkpoints/final.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for key, value in a["modules"]["phi"].items():  # exact: one thread is bit-reproducible
        assert torch.equal(value, b["modules"]["phi"][key]), key
    states = zip(a["optimizers"]["phi"]["state"].values(), b["optimizers"]["phi"]["state"].values())
    for sa, sb in states:
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "crashed/log.csv")) if r["loss"]]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step logged twice, none missing


def test_old_single_model_checkpoints_still_load(data_root, tmp_path):
    trainer = Trainer(smoke_cfg(data_root, tmp_path / "r", steps=1, ckpt_every=1))
    old = {"model": trainer.model.state_dict(), "signature": trainer.model.signature()}
    torch.save(old, tmp_path / "old.pt")
    fresh = Phi(trainer.model.in_channels, trainer.model.num_classes, size="tiny", backend="torch")
    load_weights(fresh, tmp_path / "old.pt")
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    with pytest.raises(KeyError, match="no 'psi'"):
        load_weights(fresh, tmp_path / "old.pt", name="psi")


def _same_batch(a, b):
    assert a.keys() == b.keys() and a["names"] == b["names"]
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key


def test_worker_processes_load_the_same_batches_as_the_training_process(data_root, tmp_path):
    inline = Trainer(smoke_cfg(data_root, tmp_path / "a", steps=5))
    workers = Trainer(smoke_cfg(data_root, tmp_path / "b", steps=5, num_workers=2))
    inline.step = workers.step = 1  # as after a resume: batches start at the current step
    got_inline, got_workers = list(inline.batches()), list(workers.batches())
    assert len(got_inline) == len(got_workers) == 4
    for a, b in zip(got_inline, got_workers):
        _same_batch(a, b)
    assert got_inline[0]["names"] != got_inline[1]["names"] or not torch.equal(  # steps differ
        got_inline[0]["xyz"][:10], got_inline[1]["xyz"][:10])
    fitted = Trainer(smoke_cfg(data_root, tmp_path / "c", steps=3, ckpt_every=3, num_workers=1))
    fitted.fit()
    assert fitted.step == 3 and (tmp_path / "c/checkpoints/final.pt").exists()
    with pytest.raises(ValueError, match="num_workers"):
        Trainer(smoke_cfg(data_root, tmp_path / "d", num_workers=-1))


def test_training_lowers_the_loss(data_root, tmp_path):
    cfg = smoke_cfg(data_root, tmp_path / "r", steps=40, ckpt_every=40, lr=0.05)
    Trainer(cfg).fit()
    rows = [r for r in csv.DictReader(open(tmp_path / "r/log.csv")) if r["loss"]]
    first = np.mean([float(r["semantic"]) for r in rows[:5]])
    last = np.mean([float(r["semantic"]) for r in rows[-5:]])
    assert last < 0.7 * first


def test_xyz_features_reach_the_network_in_training_and_evaluation(data_root, tmp_path):
    cfg = smoke_cfg(data_root, tmp_path / "xyz", steps=2, ckpt_every=2, use_xyz_features=True)
    trainer = Trainer(cfg)
    assert trainer.model.in_channels == 6
    metrics = trainer.fit()  # a 3-channel batch would fail in the first convolution
    assert trainer.step == 2 and "AP50" in metrics


def test_cpu_threads_key_sets_torch_threads(data_root, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(smoke_cfg(data_root, tmp_path / "t1", cpu_threads=1))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        Trainer(smoke_cfg(data_root, tmp_path / "t0", cpu_threads=0))
        assert torch.get_num_threads() == 2  # 0 leaves torch's setting alone
        with pytest.raises(ValueError, match="cpu_threads"):
            Trainer(smoke_cfg(data_root, tmp_path / "tn", cpu_threads=-1))
    finally:
        torch.set_num_threads(before)


def test_ensure_dataset_generates_completes_and_ignores_the_model_seed(tmp_path):
    from twist_lib.trainer import ensure_dataset
    root = tmp_path / "syn"
    cfg = Config.for_profile("smoke", data_root=str(root), synthetic_scenes=5, label_ratio="20",
                             progress=False)
    meta = ensure_dataset(cfg)
    assert meta["n_scenes"] == 5 and len(meta["splits"]["labelled_20"]) >= 1
    first = (root / "scenes" / "synthetic_00000.npz").stat().st_mtime_ns
    cfg.synthetic_scenes, cfg.label_ratio, cfg.seed = 8, "50", 7  # more scenes, a new ratio
    meta = ensure_dataset(cfg)
    assert meta["n_scenes"] == 8 and meta["seed"] == 0  # the dataset seed, not the model seed
    assert len(meta["splits"]["train"]) + len(meta["splits"]["val"]) == 8
    assert set(meta["splits"]["labelled_50"]) <= set(meta["splits"]["train"])
    assert {"labelled_1", "labelled_5", "labelled_20"} <= set(meta["splits"])
    assert (root / "scenes" / "synthetic_00000.npz").stat().st_mtime_ns == first  # kept


def test_empty_val_split_is_a_clear_error(tmp_path):
    cfg = Config.for_profile("smoke", data_root=str(tmp_path / "d"), run_dir=str(tmp_path / "r"),
                             synthetic_scenes=4, progress=False)
    with pytest.raises(ValueError, match="val split is empty"):
        Trainer(cfg)


def test_unprepared_folder_is_a_clear_error(tmp_path):
    cfg = Config.for_profile("smoke", dataset="scannet", data_root=str(tmp_path / "nothing"),
                             run_dir=str(tmp_path / "r"))
    with pytest.raises(DataFormatError, match="not a prepared dataset folder"):
        Trainer(cfg)


def test_missing_label_split_is_a_clear_error(data_root, tmp_path):
    with pytest.raises(KeyError, match="make_splits"):
        Trainer(smoke_cfg(data_root, tmp_path / "r", label_ratio="7"))


def test_checkpoint_of_another_model_size_is_refused(data_root, tmp_path):
    Trainer(smoke_cfg(data_root, tmp_path / "r", steps=1, ckpt_every=1)).fit()
    other = Phi(3, 10, size="small", backend="torch")
    with pytest.raises(ValueError, match="different model"):
        load_weights(other, tmp_path / "r/checkpoints/last.pt")


def test_cli_rejects_an_unknown_key(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "twist_lib", "train", "--profile", "smoke",
                           f"run_dir={tmp_path}", "learning_rate=0.1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown config key 'learning_rate'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_data_generates_the_benchmark_of_a_config(tmp_path):
    root = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-m", "twist_lib", "data", "--profile", "smoke",
                           f"data_root={root}", "synthetic_scenes=4", "progress=false"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((root / "meta.json").read_text())
    assert meta["n_scenes"] == 4 and len(list((root / "scenes").glob("*.npz"))) == 4
    n_train, n_val = len(meta["splits"]["train"]), len(meta["splits"]["val"])
    assert n_train + n_val == 4 and f"train {n_train}, val {n_val}" in proc.stdout
    assert set(meta["splits"]["labelled_20"]) <= set(meta["splits"]["train"])
    bad = subprocess.run([sys.executable, "-m", "twist_lib", "data", "--profile", "smoke",
                          f"data_root={tmp_path / 'e'}", "synthetic_scenes=0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "n_scenes must be at least 1" in bad.stderr


class Recorder(HookBase):
    """Appends ``(name, event, step)`` to a shared list at every hook call (after a step, also
    whether the step's losses are there)."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def before_train(self):
        self.calls.append((self.name, "before_train", self.trainer.step))

    def after_train(self):
        self.calls.append((self.name, "after_train", self.trainer.step))

    def before_step(self):
        self.calls.append((self.name, "before_step", self.trainer.step))

    def after_step(self):
        self.calls.append((self.name, "after_step", self.trainer.step,
                           "loss" in self.trainer.last_losses))


def test_hooks_are_called_once_per_training_and_around_every_step(data_root, tmp_path):
    calls = []

    class OnlyRecorder(Trainer):
        def build_hooks(self):  # no default hooks: no log, no validation, no checkpoints
            return [Recorder("built", calls)]

    trainer = OnlyRecorder(smoke_cfg(data_root, tmp_path / "r", steps=3))
    trainer.register_hooks([Recorder("added", calls)])  # runs after the built ones
    assert trainer.fit() == {}
    expected = [("before_train", 0),
                ("before_step", 0), ("after_step", 1, True),
                ("before_step", 1), ("after_step", 2, True),
                ("before_step", 2), ("after_step", 3, True),
                ("after_train", 3)]
    assert calls == [(name, *call) for call in expected for name in ("built", "added")]
    assert not (tmp_path / "r/log.csv").exists() and not (tmp_path / "r/checkpoints").exists()


def test_default_hooks_write_the_run_folder_as_fit_always_did(data_root, tmp_path):
    """7 steps, log_every 2, val_every 3, ckpt_every 3: loss rows at 2, 4, 6 and the last step
    7; validations at 3 and 6 (not at 7, the last step) merged into those steps' rows (step 3
    has no loss row); then one row of the final validation; last.pt at 3, 6, 7 and final.pt."""
    saves = []

    class Counting(Trainer):
        def save_checkpoint(self, name="last.pt"):
            saves.append((name, self.step))
            return super().save_checkpoint(name)

    cfg = smoke_cfg(data_root, tmp_path / "r", steps=7, log_every=2, val_every=3, ckpt_every=3,
                    val_scenes=2)
    metrics = Counting(cfg).fit()
    rows = list(csv.DictReader(open(tmp_path / "r/log.csv")))
    assert [r["step"] for r in rows] == ["2", "3", "4", "6", "7", "7"]
    assert [bool(r["loss"]) for r in rows] == [True, False, True, True, True, False]
    assert [bool(r["val_AP50"]) for r in rows] == [False, True, False, True, False, True]
    header = list(rows[0])
    assert header[:4] == ["step", "time_s", "lr", "loss"]
    assert header.index("offset_dir") < header.index("val_AP") and "gpu_mem_gib" not in header
    assert float(rows[0]["lr"]) == pytest.approx(cfg.lr * (1 - 1 / 7) ** cfg.poly_power)  # step 2
    assert float(rows[4]["lr"]) == pytest.approx(cfg.lr * (1 - 6 / 7) ** cfg.poly_power)  # step 7
    assert float(rows[-1]["val_AP50"]) == round(metrics["AP50"], 5)
    assert float(rows[-1]["val_miou"]) == round(metrics["miou"], 5)
    assert saves == [("last.pt", 3), ("last.pt", 6), ("last.pt", 7), ("final.pt", 7)]
    for name in ("last.pt", "final.pt"):
        assert torch.load(tmp_path / "r/checkpoints" / name, weights_only=False)["step"] == 7
    written = json.loads((tmp_path / "r/metrics.json").read_text())
    assert written["AP50"] == metrics["AP50"] and written["miou"] == metrics["miou"]
    assert written["num_scenes"] == 2 and (tmp_path / "r/config.yaml").exists()


def test_step_timer_records_one_duration_per_step(data_root, tmp_path):
    timer = StepTimer(sync=True)  # sync: a no-op on the CPU

    class Timed(Trainer):
        def build_hooks(self):
            return [timer, *super().build_hooks()]

    Timed(smoke_cfg(data_root, tmp_path / "r", steps=3, ckpt_every=3)).fit()
    assert timer.steps == [1, 2, 3]
    assert len(timer.step_s) == len(timer.data_s) == len(timer.total_s) == 3
    assert all(s > 0 for s in timer.step_s) and all(d > 0 for d in timer.data_s)
    assert timer.total_s == [d + s for d, s in zip(timer.data_s, timer.step_s)]


class OracleModel(torch.nn.Module):
    """Returns the ground truth as its prediction: one-hot logits and exact offsets to centres."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        sem = batch["semantic"].clamp(min=0)
        logits = torch.nn.functional.one_hot(sem, self.num_classes).float() * 20
        return {"semantic_logits": logits, "offset": batch["offset"]}


def test_perfect_predictions_score_ap_one(data_root):
    """Inference + module A + the benchmark, end to end: the oracle's proposals are exactly the
    GT instances (every instance collapses onto its centre), so every class with GT scores 1."""
    from twist_lib.data import read_meta
    from twist_lib.data.dataset import SceneDataset
    meta = read_meta(data_root)
    val = SceneDataset(data_root, "val")
    cfg = Config.for_profile("smoke", cluster_radius=0.03, cluster_min_points=1, eval_min_region=100,
                             val_scenes=0, progress=False)
    result = evaluate_model(OracleModel(meta["num_classes"]), val, meta, cfg)
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)
    assert result["miou"] == pytest.approx(1.0)
