"""The dataset folder a job's config names, generated when it is the synthetic benchmark."""
from __future__ import annotations

import os
from pathlib import Path

from .io import read_meta
from .splits import labelled_split_name, ratio_key, write_label_splits


def ensure_dataset(cfg) -> dict:
    """Return the dataset's meta, generating the synthetic benchmark when needed.

    A synthetic folder of this config's ``synthetic_size`` and ``synthetic_seed`` (or a missing
    one) is brought to ``synthetic_scenes`` scenes (scenes already on disk are kept, the rest
    generated) and given its label-ratio splits when they are missing. A folder prepared
    otherwise (another seed or size from ``data_scripts/make_synthetic.py``, ScanNet, S3DIS) is
    used as it is. The synthetic data depend on ``synthetic_seed`` only, so runs with different
    ``seed`` values share one dataset.
    """
    root = Path(cfg.data_root)
    meta = read_meta(root) if (root / "meta.json").exists() else None
    ours = cfg.dataset == "synthetic" and (meta is None or (
        meta.get("name") == "synthetic" and meta.get("size") == cfg.synthetic_size
        and meta.get("seed") == cfg.synthetic_seed))
    if ours:
        from ..synthetic import generate_dataset
        if meta is None or meta.get("n_scenes") != cfg.synthetic_scenes:
            if meta is not None:
                print(f"{root}: holds {meta.get('n_scenes')} scenes, the config asks for "
                      f"{cfg.synthetic_scenes}; bringing it to that number")
            meta = generate_dataset(root, cfg.synthetic_scenes, size=cfg.synthetic_size,
                                    seed=cfg.synthetic_seed, progress=cfg.progress,
                                    workers=min(8, os.cpu_count() or 1))
        if labelled_split_name(cfg.label_ratio) not in meta["splits"]:
            ratios = {ratio_key(r): r for r in (1, 5, 10, 20, cfg.label_ratio)}
            write_label_splits(root, ratios=list(ratios.values()), seed=cfg.synthetic_seed)
            meta = read_meta(root)
    if meta is None:
        meta = read_meta(root)  # names the missing meta.json of an unprepared folder
    if labelled_split_name(cfg.label_ratio) not in meta["splits"]:
        raise KeyError(
            f"{root / 'meta.json'}: no labelled split for label_ratio={cfg.label_ratio} "
            f"(have {sorted(meta['splits'])}); run data_scripts/make_splits.py --data {root} "
            f"--ratios {cfg.label_ratio}")
    return meta
