"""The book's machinery: the helpers its notebooks call, and the batch runner that executes them.

Notebook side (every notebook under ``book/`` starts with a papermill ``parameters`` cell, then)::

    from twist_lib import book
    cfg = book.notebook_config(profile, steps=steps or None)   # one Config, paths at the repo root
    book.use_book_renderer()                                   # plotly figures the HTML shows
    model, meta = book.trained_baseline(cfg)                   # train Phi once, then reuse it

A notebook's ``profile`` parameter defaults to ``""``, which means ``$TWIST_PROFILE`` if set, else
``cpu``; papermill's ``-p profile ...`` overrides both. The module B and C pages' own helpers live
in :mod:`twist_lib.proposal_study` and :mod:`twist_lib.pseudo_study`.

Where things live (every name below is importable from ``twist_lib.book`` itself):

- :mod:`twist_lib.book.helpers`: what a page calls, and where the book is: :func:`notebook_config`,
  :func:`trained_baseline`, :func:`run_metrics`, :func:`use_book_renderer`, :func:`resolve_profile`,
  :func:`repo_root`, :func:`toc_notebooks`, :func:`find_notebooks`, and the constants
  ``PROFILE_ENV``, ``DEFAULT_PROFILE``, ``BOOK_DIR``, ``TOC_FILE``, ``RENDERER``.
- :func:`twist_lib.viz.switchable`: several figures in one, with buttons or a slider
  (``book.switchable``; imported on first use, so ``twist_lib.book`` loads without plotly).
- :mod:`twist_lib.book.runner`: the papermill batch runner (:func:`run_notebooks`,
  :class:`RunResult`, :class:`NotebookFailed`, :func:`default_run_dir`), the committed copies
  (:func:`publishable`, :func:`publish_notebooks`, :func:`strip_notebook`,
  :func:`strip_notebooks`, ``MAX_PUBLISHED_BYTES``, ``PUBLISHED_NOTE_TAG``, ``PLOTLY_MIME``) and the
  HTML build (:func:`build_html`).
- :mod:`twist_lib.book.cli` (and ``__main__``): ``python -m twist_lib.book
  list|run|strip|publish|build`` (:func:`main`); ``--help`` explains the commands.

The runner and the command line look ``repo_root``, ``MAX_PUBLISHED_BYTES`` and the runner's
functions up on this package when they run, so ``monkeypatch.setattr(book, NAME, ...)`` still
reaches them.
"""
from __future__ import annotations

# the private names too: they were importable from the one-module twist_lib.book
# ruff: noqa: F401
from ..config import Config
from .helpers import (BOOK_DIR, DEFAULT_PROFILE, PROFILE_ENV, RENDERER, TOC_FILE, _register_renderer,
                      _toc_files, find_notebooks, notebook_config, repo_root, resolve_profile,
                      run_metrics, toc_notebooks, trained_baseline, use_book_renderer)
from .runner import (MAX_PUBLISHED_BYTES, PLOTLY_MIME, PUBLISHED_NOTE_TAG, NotebookFailed, RunResult,
                     _source_cell, _write_json, _write_notebook, build_html, default_run_dir,
                     publish_notebooks, publishable, run_notebooks, strip_notebook, strip_notebooks)
from .cli import _parser, main

__all__ = [
    "BOOK_DIR", "Config", "DEFAULT_PROFILE", "MAX_PUBLISHED_BYTES", "NotebookFailed", "PLOTLY_MIME",
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
