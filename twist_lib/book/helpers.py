"""What a book page calls: the notebook's :class:`~twist_lib.config.Config`, the trained baseline,
a run's metrics, the plotly renderer the static HTML shows, and where the book is.

Every notebook under ``book/`` starts with a papermill ``parameters`` cell, then::

    from twist_lib import book
    cfg = book.notebook_config(profile, steps=steps or None)   # one Config, paths at the repo root
    book.use_book_renderer()                                   # plotly figures the HTML shows
    model, meta = book.trained_baseline(cfg)                   # train Phi once, then reuse it

All of these names are re-exported by :mod:`twist_lib.book`; the pages use them from there.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from ..config import Config
from ..paths import TOC_FILE, repo_root

BOOK_DIR = "book"
RENDERER = "twist_book"


# ----------------------------------------------------------------------------------------------
# locating the book
# ----------------------------------------------------------------------------------------------
def _toc_files(entry: dict) -> list[str]:
    out = [entry["file"]] if "file" in entry else []
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key, []):
            out += _toc_files(child)
    return out


def toc_notebooks(root=None) -> list[Path]:
    """The ``.ipynb`` files of ``_toc.yml``, in the book's reading order."""
    root = repo_root(root)
    toc = yaml.safe_load((root / TOC_FILE).read_text())
    files = [toc["root"]] + _toc_files(toc)
    notebooks = []
    for name in files:
        path = root / name
        candidates = [path] if path.suffix else [path.with_suffix(s) for s in (".ipynb", ".md")]
        found = [p for p in candidates if p.exists()]
        if not found:
            raise FileNotFoundError(f"{root / TOC_FILE}: lists {name}, but there is no "
                                    + " or ".join(str(p) for p in candidates))
        if found[0].suffix == ".ipynb":
            notebooks.append(found[0])
    return notebooks


def find_notebooks(names, root=None) -> list[Path]:
    """Resolve names given on the command line to book notebooks (all of them if ``names`` is
    empty). A name may be a path, a path below ``book/`` with or without ``.ipynb``, or a stem."""
    root = repo_root(root)
    notebooks = toc_notebooks(root)
    if not names:
        return notebooks
    book_dir = root / BOOK_DIR
    chosen = []
    for name in names:
        key = Path(name).with_suffix("").as_posix()
        matches = [nb for nb in notebooks
                   if key in (nb.with_suffix("").relative_to(book_dir).as_posix(),
                              nb.with_suffix("").relative_to(root).as_posix(), nb.stem)
                   or Path(name).resolve() == nb]
        if len(matches) != 1:
            known = ", ".join(nb.relative_to(book_dir).with_suffix("").as_posix() for nb in notebooks)
            what = "matches several notebooks" if matches else "is not a notebook of _toc.yml"
            raise ValueError(f"'{name}' {what}; the book's notebooks: {known}")
        chosen.append(matches[0])
    return chosen


# ----------------------------------------------------------------------------------------------
# notebook helpers
# ----------------------------------------------------------------------------------------------
def trained_baseline(cfg: Config):
    """The Sup-only baseline Phi of ``cfg``, in eval mode, and the dataset's meta.

    Trains it first (:func:`twist_lib.trainer.train` with ``resume="auto"``, which also generates
    the synthetic benchmark if it is missing) unless the run folder already holds
    ``checkpoints/final.pt``; a killed training run is resumed from its last checkpoint.
    """
    from ..checkpoints import load_models    # torch: imported when a page trains, not before
    from ..data.ensure import ensure_dataset
    from ..trainer import resolve_device, train
    final = Path(cfg.resolved_run_dir()) / "checkpoints" / "final.pt"
    if not final.exists():
        train(cfg, resume="auto")
    meta = ensure_dataset(cfg)
    phi, _ = load_models(final, cfg, meta, resolve_device(cfg.device))
    return phi, meta


def run_metrics(cfg: Config) -> dict:
    """The final validation metrics of ``cfg``'s run folder (``metrics.json``), with the NaN that
    JSON stores as ``null`` (classes without ground truth) restored."""
    def restore(value):
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return float("nan") if value is None else value
    path = Path(cfg.resolved_run_dir()) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics; train the run first (trained_baseline)")
    return restore(json.loads(path.read_text()))


# ----------------------------------------------------------------------------------------------
# plotly output that a static Jupyter Book page shows
# ----------------------------------------------------------------------------------------------
def _register_renderer() -> None:
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    class BookHtmlRenderer(MimetypeRenderer):
        """The figure as ``text/html`` (a div and a ``Plotly.newPlot`` call) with neither
        plotly.js nor MathJax inlined: the book's pages load plotly.js once, from ``_static``
        (``book/_ext/plotly_offline.py``), so they work offline and stay small."""

        def to_mimebundle(self, fig_dict):
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                                             full_html=False, default_width="100%",
                                             default_height=520, validate=False)}

    pio.renderers[RENDERER] = BookHtmlRenderer()


def use_book_renderer() -> str:
    """Make plotly figures display both ways and return the renderer's name.

    ``plotly_mimetype`` (what JupyterLab and VS Code draw) plus :data:`RENDERER`'s ``text/html``
    (what Jupyter Book 1 keeps: it drops the plotly mimetype silently). ``$PLOTLY_RENDERER``, if
    set, wins.
    """
    import plotly.io as pio
    _register_renderer()
    pio.renderers.default = os.environ.get("PLOTLY_RENDERER") or f"plotly_mimetype+{RENDERER}"
    return pio.renderers.default
