"""Sphinx extension: serve plotly.js from the book's own ``_static`` so figures draw offline.

The notebooks display figures as HTML that calls ``Plotly.newPlot`` without embedding plotly.js
(:func:`twist_lib.book.use_book_renderer`). This extension copies ``plotly.min.js`` from the
installed plotly package into the build (so the library and the Python package never disagree
on versions, and nothing is committed) and loads it on every page, before the figures' scripts.
"""
from pathlib import Path

import plotly

STATIC_NAME = "plotly.min.js"


def _add_plotly_static(app) -> None:
    static = Path(app.doctreedir).parent / "plotly_static"
    static.mkdir(parents=True, exist_ok=True)
    source = Path(plotly.__file__).parent / "package_data" / STATIC_NAME
    target = static / STATIC_NAME
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.write_bytes(source.read_bytes())
    app.config.html_static_path.append(str(static))


def setup(app):
    app.connect("builder-inited", _add_plotly_static)
    # a plain, synchronous <script> in <head>: Plotly exists before any figure's script runs
    app.add_js_file(STATIC_NAME, priority=200)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
