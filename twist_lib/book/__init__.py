"""The book's machinery: the helpers its notebooks call, and the batch runner that executes them.

Notebook side (every notebook under ``book/`` starts with a papermill ``parameters`` cell, then)::

    from twist_lib import book
    cfg = book.notebook_config(profile, steps=steps or None)   # one Config, paths at the repo root
    book.use_book_renderer()                                   # plotly figures the HTML shows
    model, meta = book.trained_baseline(cfg)                   # train Phi once, then reuse it

A notebook's ``profile`` parameter defaults to ``""``, which means ``$TWIST_PROFILE`` if set, else
``cpu``; papermill's ``-p profile ...`` overrides both.

Where things live (the names below are importable from ``twist_lib.book`` itself):

- :mod:`twist_lib.book.helpers`: what a page calls, and where the book is: :func:`trained_baseline`,
  :func:`run_metrics`, :func:`use_book_renderer`, :func:`toc_notebooks`, :func:`find_notebooks`;
  :func:`notebook_config`, :func:`resolve_profile` and :func:`repo_root` come from the core
  (:mod:`twist_lib.paths`).
- :func:`twist_lib.viz.switchable`: several figures in one, with buttons or a slider
  (``book.switchable``; imported on first use, so ``twist_lib.book`` loads without plotly).
- :mod:`twist_lib.book.runner`: the papermill batch runner (:func:`run_notebooks`,
  :class:`RunResult`, :class:`NotebookFailed`, :func:`default_run_dir`), the committed copies
  (:func:`publishable`, :func:`publish_notebooks`, :func:`strip_notebook`,
  :func:`strip_notebooks`, ``MAX_PUBLISHED_BYTES``, ``PUBLISHED_NOTE_TAG``, ``PLOTLY_MIME``) and the
  HTML build (:func:`build_html`).
- :mod:`twist_lib.book.cli` (and ``__main__``): ``python -m twist_lib.book
  list|run|strip|publish|build`` (:func:`main`); ``--help`` explains the commands.
- The pages' own helpers, one module each, as d2l keeps page code out of its core:
  :mod:`~twist_lib.book.proposal_study` and :mod:`~twist_lib.book.psi_diagnostics` (module B;
  ``proposal_study.scene_proposals`` also feeds module C), :mod:`~twist_lib.book.pseudo_study`
  (module C), :mod:`~twist_lib.book.viz_proposals` (the figures of modules B and C),
  :mod:`~twist_lib.book.viz_rounds` (the pipeline page), :mod:`~twist_lib.book.batch` (the batch
  of pipeline runs over label ratios and seeds). The core never imports this package.
"""
from __future__ import annotations

from ..paths import DEFAULT_PROFILE, PROFILE_ENV, TOC_FILE, notebook_config, repo_root, resolve_profile
from .cli import main
from .helpers import (BOOK_DIR, RENDERER, find_notebooks, run_metrics, toc_notebooks,
                      trained_baseline, use_book_renderer)
from .runner import (MAX_PUBLISHED_BYTES, PLOTLY_MIME, PUBLISHED_NOTE_TAG, NotebookFailed, RunResult,
                     build_html, default_run_dir, publish_notebooks, publishable, run_notebooks,
                     strip_notebook, strip_notebooks)

__all__ = [
    "BOOK_DIR", "DEFAULT_PROFILE", "MAX_PUBLISHED_BYTES", "NotebookFailed", "PLOTLY_MIME",
    "PROFILE_ENV", "PUBLISHED_NOTE_TAG", "RENDERER", "RunResult", "TOC_FILE", "build_html",
    "default_run_dir", "find_notebooks", "main", "notebook_config", "publish_notebooks",
    "publishable", "repo_root", "resolve_profile", "run_metrics", "run_notebooks", "strip_notebook",
    "strip_notebooks", "switchable", "toc_notebooks", "trained_baseline", "use_book_renderer",
]


def __getattr__(name: str):
    """``book.switchable`` is :func:`twist_lib.viz.switchable`, imported on first use."""
    if name == "switchable":
        from ..viz import switchable
        globals()["switchable"] = switchable
        return switchable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"switchable"})
