"""Data-parallel training and pseudo-labelling under torchrun (:mod:`twist_lib.distributed`):
2 CPU processes on the gloo backend, started by ``torchrun`` (``python -m torch.distributed.run``)
with ``MASTER_ADDR=127.0.0.1`` and a free port, against single-process runs of the same config.

This file is also the worker script of the training test (``python test_distributed.py train
...`` under torchrun); the TWIST test runs the real command line, ``torchrun -m twist_lib twist``.
"""
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from twist_lib import distributed as dist
from twist_lib.config import Config
from twist_lib.data import load_scene, read_meta, save_scene, scene_path
from twist_lib.data.pseudo_files import read_pseudo_labels
from twist_lib.trainer import BatchStream, StepBatches, Trainer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1"}
for _key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
    ENV.pop(_key, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args, timeout=240) -> subprocess.CompletedProcess:
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env={**ENV, "MASTER_PORT": str(port)},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


# ---------------------------------------------------------------------------- single process

def test_without_torchrun_everything_is_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init_from_env("cpu") is False and not dist.is_initialized()
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    assert dist.shard([1, 2, 3]) == [1, 2, 3] and dist.all_reduce_sum(3) == 3
    assert dist.agree(True) and dist.broadcast_object({"a": 1}) == {"a": 1}
    dist.barrier()
    dist.cleanup()
    with dist.session("cpu"):
        assert not dist.is_initialized()
    assert dist.local_device(torch.device("cuda")) == torch.device("cuda")


def test_each_rank_takes_its_share_of_every_steps_batch(data_root, monkeypatch):
    from twist_lib.data.dataset import SceneDataset
    train = SceneDataset(data_root, "labelled", label_ratio="50")
    sources = [(train, BatchStream(len(train), 3, seed=0))]
    whole = StepBatches(sources, 0, 4)
    ranks = [StepBatches(sources, 0, 4, rank=r, world=2) for r in (0, 1)]
    for k in range(4):
        names = whole[k]["names"]
        assert ranks[0][k]["names"] == names[0::2] and ranks[1][k]["names"] == names[1::2]
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 1)
    assert dist.shard(list(range(5))) == [1, 3]
    dist.check_batch_sizes(sources)  # 3 scenes over 2 ranks: 2 and 1
    with pytest.raises(ValueError, match="batch_size >= 2"):
        dist.check_batch_sizes([(train, BatchStream(len(train), 1, seed=0))])


def test_a_split_smaller_than_the_process_count_is_named_with_its_fix(monkeypatch):
    """``torchrun --nproc_per_node=2 -m twist_lib twist --profile smoke label_ratio=5``: the
    labelled split is 1 scene, so BatchStream caps batch_size=2 at 1; the error names the split,
    its size and label ratio and the fixes, not batch_size (which is not the cause)."""
    from types import SimpleNamespace
    monkeypatch.setattr(dist, "world_size", lambda: 2)

    def split(name, ratio="5", dataset="synthetic"):
        return SimpleNamespace(split=name, label_ratio=ratio, meta={"name": dataset})

    labelled = (split("labelled"), BatchStream(1, 2, seed=0))
    with pytest.raises(ValueError) as err:
        dist.check_batch_sizes([labelled])
    message = str(err.value)
    assert message.startswith("the labelled split has 1 scene at label_ratio=5: 2 processes "
                              "need at least 2 labelled scenes a step")
    assert "raise label_ratio or synthetic_scenes" in message
    assert "at most 1 process (torchrun --nproc_per_node=1)" in message
    assert "batch_size" not in message

    # a prepared (non-synthetic) dataset: no synthetic_scenes to raise
    with pytest.raises(ValueError, match=r"has 1 scene at label_ratio=1: .*; raise label_ratio, "
                                         r"or use at most 1 process") as err:
        dist.check_batch_sizes([(split("labelled", "1", "scannet"), BatchStream(1, 2, seed=0))])
    assert "synthetic_scenes" not in str(err.value)

    # the unlabelled split of a TWIST round: too few scenes, and then a too small batch
    enough = (split("labelled"), BatchStream(4, 2, seed=0))
    with pytest.raises(ValueError, match="the unlabelled split has 1 scene at label_ratio=5: .*"
                                         "lower label_ratio or raise synthetic_scenes"):
        dist.check_batch_sizes([enough, (split("unlabelled"), BatchStream(1, 2, seed=1))])
    with pytest.raises(ValueError, match="unlabelled_batch_size=1 gives 1 unlabelled scene.* "
                                         "use unlabelled_batch_size >= 2"):
        dist.check_batch_sizes([enough, (split("unlabelled"), BatchStream(8, 1, seed=1))])
    dist.check_batch_sizes([enough, (split("unlabelled"), BatchStream(8, 2, seed=1))])


# ---------------------------------------------------------------------------- training

class FrozenNormTrainer(Trainer):
    """The baseline with every batch norm in eval mode (running statistics, never updated).

    Why: data-parallel training keeps batch norm per rank, so in train mode each rank normalises
    with the statistics of its own scenes, and a 2-process step is then a different function
    than a 1-process step on the whole batch; with frozen batch norm the network is the same
    function of each scene in both runs, and the update must be the same up to float order."""

    saves = 0

    def train_step(self, batch):
        for module in self.models.values():
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return super().train_step(batch)

    def save_checkpoint(self, name="last.pt"):
        FrozenNormTrainer.saves += 1
        return super().save_checkpoint(name)


class Crash(Exception):
    pass


def _train_cfg(data, run_dir) -> Config:
    return Config.for_profile("smoke", data_root=str(data), run_dir=str(run_dir), label_ratio="50",
                              steps=4, ckpt_every=2, log_every=1, progress=False, batch_size=2,
                              cpu_threads=1, lr=0.05)


def _train_worker(data, run_dir, out):
    """Under torchrun: train to step 2, crash on every rank, resume from last.pt to step 4; save
    this rank's weights and how often it wrote a checkpoint."""
    torch.set_num_threads(1)
    cfg, original = _train_cfg(data, run_dir), FrozenNormTrainer.train_step

    def crashing(self, batch):
        if self.step == 2:
            raise Crash
        return original(self, batch)

    FrozenNormTrainer.train_step = crashing
    try:
        FrozenNormTrainer(cfg).fit()
    except Crash:
        pass
    FrozenNormTrainer.train_step = original
    dist.barrier()  # (in this test only: rank 0 has written last.pt before anyone resumes)
    trainer = FrozenNormTrainer(cfg, resume=True)
    assert trainer.step == 2 and dist.world_size() == 2
    trainer.fit()
    r = dist.rank()
    torch.save(trainer.model.state_dict(), Path(out) / f"rank{r}.pt")
    (Path(out) / f"rank{r}.json").write_text(json.dumps({"saves": FrozenNormTrainer.saves}))
    dist.cleanup()


def _same_size_scenes(data_root, root: Path) -> Path:
    """The test dataset with every train scene a copy of the first one (renamed): each scene has
    the same number of points and supervised points, so a rank's mean loss over its one scene
    averages to the mean over both scenes. The scenes of a step still differ: each is augmented
    with its own rotation, flip, scale and jitter."""
    shutil.copytree(data_root, root)
    names = read_meta(root)["splits"]["train"]
    first = load_scene(scene_path(root, names[0]))
    for name in names[1:]:
        save_scene(scene_path(root, name), {**first, "name": name})
    return root


def test_two_processes_train_and_resume_to_the_weights_of_one(data_root, tmp_path, one_thread):
    """4 steps of 2 scenes: in 2 processes (1 scene each, gradients averaged; killed after step
    2 and resumed from last.pt) and in 1 process (both scenes). Batch norm is frozen (see
    FrozenNormTrainer) and the scenes have equal sizes (see _same_size_scenes): the two runs then
    compute the same update and must agree to float precision; both ranks hold identical
    weights, and only rank 0 wrote checkpoints."""
    data = _same_size_scenes(data_root, tmp_path / "data")
    FrozenNormTrainer(_train_cfg(data, tmp_path / "one")).fit()
    one = torch.load(tmp_path / "one/checkpoints/final.pt", weights_only=False)["modules"]["phi"]

    out = tmp_path / "out"
    out.mkdir()
    _torchrun(__file__, "train", str(data), str(tmp_path / "two"), str(out))
    two = torch.load(tmp_path / "two/checkpoints/final.pt", weights_only=False)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert two["step"] == 4
    start = FrozenNormTrainer(_train_cfg(data, tmp_path / "init")).model.state_dict()
    moved = 0
    for key, value in one.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # identical on both ranks
        assert torch.equal(two["modules"]["phi"][key], ranks[0][key]), key
        assert torch.allclose(ranks[0][key].float(), value.float(), rtol=1e-4, atol=1e-5), key
        moved += not torch.equal(value, start[key])
    assert moved > 10  # the weights did train
    saves = [json.loads((out / f"rank{r}.json").read_text())["saves"] for r in (0, 1)]
    assert saves[0] >= 3 and saves[1] == 0  # last.pt at steps 2 and 4, final.pt; rank 1: none
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "two/log.csv")) if r["loss"]]
    assert steps == [1, 2, 3, 4]


# ---------------------------------------------------------------------------- TWIST rounds

def _twist_overrides(data_root, run_dir, init) -> dict:
    return dict(data_root=str(data_root), run_dir=str(run_dir), label_ratio="50", progress=False,
                cpu_threads=1, rounds=1, steps_per_round=2, ckpt_every=2,
                cluster_min_points=5, init_checkpoint=str(init), batch_size=2)


@pytest.fixture(scope="module")
def round_zero(data_root, tmp_path_factory):
    """A round-0 checkpoint with Phi and Psi (2 steps), for rounds that start from it."""
    from twist_lib.self_training import run_twist
    run = tmp_path_factory.mktemp("init") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    run_twist(Config.for_profile("smoke", data_root=str(data_root), run_dir=str(run),
                                 label_ratio="50", progress=False, cpu_threads=1, steps=2,
                                 ckpt_every=2, rounds=0, cluster_min_points=5))
    torch.set_num_threads(before)
    return run / "round_0" / "checkpoints" / "final.pt"


def test_two_process_twist_round_writes_the_pseudo_labels_of_one(
        data_root, round_zero, tmp_path, one_thread):
    """``torchrun --nproc_per_node=2 -m twist_lib twist``: round 0 from a checkpoint with Psi
    (no training), round 1 pseudo-labelled by both ranks (each its half of the scenes), its
    quality measured by rank 0, 2 training steps on both. The pseudo labels come from the same
    Phi_0 and Psi_0, so every file's arrays must equal a 1-process run's exactly, and so must the
    quality figures and round 0's validation (rank 0 validates)."""
    from twist_lib.self_training import run_twist
    run_twist(Config.for_profile("smoke", **_twist_overrides(data_root, tmp_path / "one",
                                                             round_zero)))
    two_cfg = _twist_overrides(data_root, tmp_path / "two", round_zero)
    args = [f"{k}={v}" for k, v in two_cfg.items()]
    _torchrun("-m", "twist_lib", "twist", "--profile", "smoke", *args)
    one, two = tmp_path / "one" / "round_1", tmp_path / "two" / "round_1"
    files = sorted(p.name for p in (one / "pseudo").glob("*.npz"))
    assert len(files) >= 2 and files == sorted(p.name for p in (two / "pseudo").glob("*.npz"))
    for name in files:
        a, b = read_pseudo_labels(one / "pseudo" / name), read_pseudo_labels(two / "pseudo" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), (name, key)
    assert json.loads((two / "pseudo" / "_complete.json").read_text()) == {"scenes": len(files)}
    assert (json.loads((one / "pseudo_quality.json").read_text())
            == json.loads((two / "pseudo_quality.json").read_text()))
    assert (json.loads((tmp_path / "one/round_0/metrics.json").read_text())
            == json.loads((tmp_path / "two/round_0/metrics.json").read_text()))
    ckpt = torch.load(two / "checkpoints" / "final.pt", weights_only=False)
    assert ckpt["step"] == 2 and set(ckpt["modules"]) == {"phi", "psi"}
    with open(tmp_path / "two" / "rounds.csv") as f:
        assert [int(r["round"]) for r in csv.DictReader(f)] == [0, 1]
    timing = json.loads((two / "timing.json").read_text())
    assert {"pseudo_s", "quality_s", "train_s"} <= set(timing)


def test_a_round_is_marked_complete_only_when_every_scene_has_its_file(
        data_root, round_zero, tmp_path, monkeypatch, one_thread):
    """A rank that died before writing its scenes leaves ``_complete.json`` unwritten (here: a
    scene's file goes missing after labelling); the resumed run labels it and completes."""
    import twist_lib.self_training as st
    original = st.pseudo_label_split
    cfg = Config.for_profile("smoke", **_twist_overrides(data_root, tmp_path / "r", round_zero))
    pseudo = tmp_path / "r" / "round_1" / "pseudo"

    def lossy(*args, **kw):
        done = original(*args, **kw)
        sorted(pseudo.glob("*.npz"))[-1].unlink()
        return done

    monkeypatch.setattr(st, "pseudo_label_split", lossy)
    with pytest.raises(FileNotFoundError, match="no pseudo labels for 1 scene"):
        st.run_twist(cfg)
    assert not (pseudo / "_complete.json").exists()
    monkeypatch.setattr(st, "pseudo_label_split", original)
    st.run_twist(cfg, resume=True)
    n = len(st.SceneDataset(data_root, "unlabelled", label_ratio="50"))
    assert len(list(pseudo.glob("*.npz"))) == n
    assert json.loads((pseudo / "_complete.json").read_text()) == {"scenes": n}


if __name__ == "__main__":  # the training worker, run by torchrun
    if sys.argv[1] == "train":
        _train_worker(*sys.argv[2:5])
