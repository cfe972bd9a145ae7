"""Where a job's files are: the repository root, and a profile's config with its paths rooted
there, so that a notebook (whose working directory is its own folder), papermill, ``make`` and
the command line all find the same ``data/`` and ``runs/``."""
from __future__ import annotations

import os
from pathlib import Path

from .config import Config

#: The file that marks the repository root (the book's table of contents).
TOC_FILE = "_toc.yml"
#: The environment variable that sets the profile of a notebook run without a parameter.
PROFILE_ENV = "TWIST_PROFILE"
DEFAULT_PROFILE = "cpu"

__all__ = ["TOC_FILE", "PROFILE_ENV", "DEFAULT_PROFILE", "repo_root", "resolve_profile",
           "notebook_config"]


def repo_root(start=None) -> Path:
    """The folder holding ``_toc.yml``: ``start`` (default: the working directory) or a parent.

    Notebooks run with their own folder as working directory (Jupyter, nbval, Jupyter Book,
    papermill), so this is how they find ``data/`` and ``runs/``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / TOC_FILE).exists():
            return folder
    raise FileNotFoundError(f"{here}: no {TOC_FILE} here or in a parent folder; run from the "
                            "repository (the folder with _toc.yml) or its book/ folder")


def resolve_profile(profile: str = "") -> str:
    """``profile`` if given, else ``$TWIST_PROFILE``, else ``cpu``."""
    return profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE


def notebook_config(profile: str = "", **overrides) -> Config:
    """The notebook's one :class:`~twist_lib.config.Config`.

    ``Config.for_profile(resolve_profile(profile), **overrides)`` with the ``None`` overrides
    dropped (a notebook parameter left at "the profile's value"), then ``data_root`` and
    ``run_dir`` made absolute against the repository root, so that a notebook finds the same
    dataset and run folder as ``make train`` whichever folder it runs in.
    """
    cfg = Config.for_profile(resolve_profile(profile),
                             **{k: v for k, v in overrides.items() if v is not None})
    root = repo_root()
    cfg.data_root = str(root / cfg.data_root)
    cfg.run_dir = str(root / cfg.resolved_run_dir())
    return cfg
