"""Train Psi on a frozen Phi and print module B's figures on val proposals (twist_lib.book.psi_diagnostics).

    python bench/psi_quality.py --init runs/synthetic_cpu_5pct --steps 300 [--val-scenes 40] [key=value ...]

What it measures: after ``--steps`` steps of Psi on the labelled scenes' proposals (round 0
from a Sup-only checkpoint, as `python -m twist_lib twist ... init_checkpoint=...` does), how
often Psi's class beats the majority vote and how well its certainty separates proposals with
IoU > 0.5 from the rest. Prints one line of figures.
"""
import argparse
import json
import tempfile
import time

from twist_lib.config import Config
from twist_lib.data.dataset import SceneDataset
from twist_lib.book.psi_diagnostics import proposal_table, summarise
from twist_lib.self_training import RoundTrainer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", required=True, help="Sup-only checkpoint or run folder")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--val-scenes", type=int, default=40)
    p.add_argument("--profile", default="cpu")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    from pathlib import Path
    init = Path(a.init)
    init = init / "checkpoints" / "final.pt" if init.is_dir() else init
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.from_sources(profile=a.profile, overrides=[f"run_dir={tmp}", "progress=false",
                                                               *a.overrides])
        t0 = time.time()
        trainer = RoundTrainer(cfg, 0, tmp, init_from=init, train_phi=False, steps=a.steps)
        for m in trainer.models.values():
            m.train()
        for batch in trainer.batches():
            trainer.train_step(batch)
        train_s = time.time() - t0
        val = SceneDataset(cfg.data_root, "val", voxel_size=cfg.voxel_size,
                           use_xyz_features=cfg.use_xyz_features)
        table = proposal_table(trainer.models["phi"], trainer.models["psi"], val, cfg,
                               trainer.meta, trainer.device, max_scenes=a.val_scenes)
    s = summarise(table)
    print(json.dumps({"steps": a.steps, "train_s": round(train_s, 1), "overrides": a.overrides,
                      **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}}))


if __name__ == "__main__":
    main()
