"""Checkpoints: the weights of a job, where a run folder keeps them, and the networks they hold.

A checkpoint (written by :meth:`twist_lib.trainer.Trainer.save_checkpoint`) is a dict of
*named* modules and their optimizers (``{"modules": {"phi": ..., "psi": ...}, "optimizers":
..., "signatures": ..., "step": ..., "config": ..., "torch_rng": ...}``), so a Sup-only run
(Phi) and a TWIST round (Phi and Psi) are read by the same code. Where they lie::

    RUN/checkpoints/{last,final}.pt                  a Sup-only run (python -m twist_lib train)
    RUN/round_<t>/checkpoints/{last,final}.pt        round t of a TWIST run

- :func:`load_weights`   one named module's weights into a network, checked against its size
- :func:`save_state`     write a checkpoint atomically
- :func:`has_module`     whether a checkpoint holds a module (e.g. "has Psi")
- :func:`round_folders`, :func:`round_checkpoint`, :func:`run_checkpoint`  where a run keeps them
- :func:`load_models`    Phi (and Psi) of a config with a checkpoint's weights, in eval mode
"""
from __future__ import annotations

from pathlib import Path

import torch

from .atomic import atomic_write

__all__ = ["load_weights", "save_state", "has_module", "round_folders", "round_checkpoint",
           "run_checkpoint", "load_models"]


def load_weights(model, path, map_location="cpu", name: str = "phi") -> dict:
    """Load module ``name``'s weights from a checkpoint, with a clear error when it belongs to
    another model size or has no such module. Reads this package's checkpoints (named modules)
    and the single-model ones of earlier versions (``model`` + ``signature``). Returns the
    checkpoint dict."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    modules = ckpt.get("modules", {"phi": ckpt["model"]} if "model" in ckpt else {})
    signatures = ckpt.get("signatures", {"phi": ckpt.get("signature")})
    if name not in modules:
        raise KeyError(f"{path}: checkpoint holds no '{name}' (it has {sorted(modules)})")
    theirs, ours = signatures.get(name), model.signature()
    if theirs != ours:
        raise ValueError(f"{path}: checkpoint of a different model ({theirs}) than this config "
                         f"builds ({ours}); check model_size, use_xyz_features and the dataset")
    model.load_state_dict(modules[name])
    return ckpt


def save_state(state: dict, path) -> Path:
    """Write the checkpoint dict ``state`` to ``path`` atomically (a killed job never leaves a
    torn checkpoint)."""
    return atomic_write(path, lambda f: torch.save(state, f))


def has_module(path, name: str) -> bool:
    """Whether the checkpoint at ``path`` holds module ``name`` (``has_module(p, "psi")``: a
    TWIST round's checkpoint, not a Sup-only one)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return name in ckpt.get("modules", {"phi": None} if "model" in ckpt else {})


def round_folders(run_dir) -> dict[int, Path]:
    """``{t: RUN/round_<t>}`` for every round folder present, in round order."""
    found = {}
    for path in Path(run_dir).glob("round_*"):
        suffix = path.name[len("round_"):]
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    return dict(sorted(found.items()))


def round_checkpoint(run_dir, round_index: int) -> Path:
    """``RUN/round_<t>/checkpoints/final.pt``: the weights round ``t`` ends with."""
    return Path(run_dir) / f"round_{round_index}" / "checkpoints" / "final.pt"


def run_checkpoint(run_dir, round_index: int | None = None) -> tuple[Path, int | None]:
    """The trained weights of a run folder: ``(checkpoint, round)``.

    A TWIST run (``RUN/round_<t>/``) gives round ``round_index``'s ``checkpoints/final.pt``
    (default: the last finished round, the one with ``metrics.json``); a Sup-only run
    (``RUN/checkpoints/final.pt``, no round folders) gives that file and round None."""
    run = Path(run_dir)
    rounds = round_folders(run)
    sup_only = run / "checkpoints" / "final.pt"
    if not rounds and sup_only.is_file():
        if round_index is not None:
            raise ValueError(f"{run}: a Sup-only run folder (no round_<t>/); it has no round "
                             f"{round_index}")
        return sup_only, None
    finished = [t for t, f in rounds.items() if (f / "metrics.json").is_file()]
    if round_index is None:
        if not finished:
            raise FileNotFoundError(f"{run}: no finished round (round_<t>/metrics.json) and no "
                                    "Sup-only checkpoint (checkpoints/final.pt)")
        round_index = finished[-1]
    checkpoint = round_checkpoint(run, round_index)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: round {round_index} has not finished training")
    return checkpoint, round_index


def load_models(checkpoint, cfg, meta: dict, device, psi: bool = False):
    """Phi of ``cfg`` for dataset ``meta`` with the weights of ``checkpoint``, and with ``psi``
    also Psi (the re-correction network); both in eval mode on ``device``. Returns
    ``(phi, psi or None)``; a KeyError when the checkpoint holds no Psi (:func:`load_weights`)."""
    from .network import build_model
    from .recorrection import build_psi
    phi = build_model(cfg, meta).to(device)
    load_weights(phi, checkpoint, map_location=device, name="phi")
    phi.eval()
    if not psi:
        return phi, None
    psi_net = build_psi(cfg, meta, phi.size.m).to(device)
    load_weights(psi_net, checkpoint, map_location=device, name="psi")
    return phi, psi_net.eval()
