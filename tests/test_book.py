"""The book's machinery: notebook conventions, the batch runner (twist_lib.book), the HTML build
with warnings as errors, and the built pages in headless Chromium.

The notebooks themselves run under nbval separately (``pytest --nbval-lax book/``); the build
test here executes them once more, at the ``smoke`` profile, as ``jupyter-book build`` does.
"""
from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from twist_lib import book
from twist_lib.book import runner
from twist_lib.config import Config

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


@pytest.fixture
def kernel_env(monkeypatch):
    """Kernels started by papermill import this checkout's twist_lib, installed or not."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


# ----------------------------------------------------------------------------------------------
# the book's notebooks follow the conventions
# ----------------------------------------------------------------------------------------------
def _book_notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                  and "_build" not in p.parts)


def test_toc_lists_every_notebook_once():
    in_toc = book.toc_notebooks(ROOT)
    assert len(in_toc) == len(set(in_toc))
    assert sorted(in_toc) == _book_notebooks(), "every notebook under book/ belongs in _toc.yml"
    assert in_toc[0] == BOOK / "intro.ipynb"


@pytest.mark.parametrize("path", _book_notebooks(), ids=lambda p: p.relative_to(BOOK).as_posix())
def test_notebook_starts_with_typed_documented_parameters(path):
    import papermill
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), \
        f"{path}: the first code cell must be the papermill parameters cell"
    params = papermill.inspect_notebook(str(path))
    assigned = re.findall(r"^(\w+)\s*[:=]", code[0].source, flags=re.M)
    assert sorted(params) == sorted(assigned), \
        f"{path}: papermill cannot parse every parameter ('=' inside a comment breaks it)"
    assert params["profile"]["inferred_type_name"] == "str" and params["profile"]["default"] == '""'
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path}: parameter {name} has no type"
        assert p["help"], f"{path}: parameter {name} has no comment"


@pytest.mark.parametrize("path", _book_notebooks(), ids=lambda p: p.relative_to(BOOK).as_posix())
def test_committed_notebook_is_stripped_or_a_small_published_copy(path):
    nb = nbformat.read(path, as_version=4)
    has_outputs = any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    if nb.metadata.get("mystnb", {}).get("execution_mode") == "off":
        assert path.stat().st_size <= book.MAX_PUBLISHED_BYTES
        assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    else:
        assert not has_outputs, f"{path}: strip it (python -m twist_lib.book strip) or publish it"


# ----------------------------------------------------------------------------------------------
# notebook helpers
# ----------------------------------------------------------------------------------------------
def test_notebook_config_resolves_profile_and_paths(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    cfg = book.notebook_config("", steps=None, seed=3)
    assert (cfg.profile, cfg.seed) == ("cpu", 3)
    assert cfg.steps == Config.for_profile("cpu").steps       # None = the profile's value
    assert Path(cfg.data_root) == tmp_path / "data" / "synthetic_cpu"
    assert Path(cfg.run_dir) == tmp_path / "runs" / "synthetic_cpu_5pct"
    monkeypatch.setenv(book.PROFILE_ENV, "smoke")
    assert book.notebook_config("").profile == "smoke"
    assert book.notebook_config("gpu").profile == "gpu"              # papermill's value wins
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        book.repo_root()


def test_book_renderer_gives_html_without_inlined_libraries():
    import plotly.graph_objects as go
    import plotly.io as pio
    old = pio.renderers.default
    try:
        assert book.use_book_renderer() == f"plotly_mimetype+{book.RENDERER}"
        bundle = go.Figure(go.Scatter(y=[1, 3, 2]))._repr_mimebundle_()
    finally:
        pio.renderers.default = old
    assert set(bundle) == {"text/html", book.PLOTLY_MIME}
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "plotly-graph-div" in html
    assert len(html) < 20_000, "plotly.js must not be inlined"
    assert "mathjax" not in html.lower() and "cdn" not in html.lower()


def test_switchable_views_show_one_figure_at_a_time():
    import plotly.graph_objects as go
    a = go.Figure(go.Scatter3d(x=[0], y=[0], z=[0]))
    a.update_layout(scene=dict(aspectmode="data"))
    b = go.Figure([go.Scatter3d(x=[1], y=[1], z=[1]), go.Scatter3d(x=[2], y=[2], z=[2])])
    fig = book.switchable({"a": a, "b": b}, title="t")
    assert [t.visible for t in fig.data] == [True, False, False]
    buttons = fig.layout.updatemenus[0].buttons
    assert [x.label for x in buttons] == ["a", "b"]
    assert [x.args[0]["visible"] for x in buttons] == [[True, False, False], [False, True, True]]
    assert fig.layout.scene.aspectmode == "data" and fig.layout.title.text == "t"
    fig = book.switchable({"0.01": b, "0.02": a}, control="slider", label="r: ", active=1)
    slider = fig.layout.sliders[0]
    assert [s.args[0]["visible"] for s in slider.steps] == [[True, True, False], [False, False, True]]
    assert slider.active == 1 and [t.visible for t in fig.data] == [False, False, True]
    with pytest.raises(ValueError, match="control"):
        book.switchable({"a": a}, control="dropdown")


def test_run_metrics_restore_nan(tmp_path):
    cfg = Config.for_profile("smoke", run_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        book.run_metrics(cfg)
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"AP": 0.5, "classes": {"sofa": {"AP": None}}, "ap_matrix": [[None, 1.0]]}))
    m = book.run_metrics(cfg)
    assert m["AP"] == 0.5 and m["ap_matrix"][0][1] == 1.0
    assert math.isnan(m["classes"]["sofa"]["AP"]) and math.isnan(m["ap_matrix"][0][0])


def test_toc_entry_without_a_file_is_an_error(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    with pytest.raises(FileNotFoundError, match="book/intro"):
        book.toc_notebooks(tmp_path)


# ----------------------------------------------------------------------------------------------
# the batch runner
# ----------------------------------------------------------------------------------------------
def _notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")]
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        if i == 0:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def toy_book(tmp_path, monkeypatch, kernel_env):
    """A repository with a two-notebook book: intro (writes its parameters to a file) and
    sub/second (fails when ``fail`` is true)."""
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/sub/second\n")
    _notebook(tmp_path / "book" / "intro.ipynb",
              'profile: str = ""  # the profile\nx: int = 1  # a number',
              "import json, os\n"
              "json.dump({'profile': profile, 'x': x, 'cwd': os.getcwd()}, open('seen.json', 'w'))",
              "import plotly.graph_objects as go\nfrom twist_lib import book\n"
              "book.use_book_renderer()\ngo.Figure(go.Bar(y=[1, 2])).show()")
    _notebook(tmp_path / "book" / "sub" / "second.ipynb",
              'profile: str = ""  # the profile\nfail: bool = False  # raise in cell 3',
              "y = 2",
              "if fail:\n    raise ValueError('boom at the third cell')",
              "print('reached the end')")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_find_notebooks_by_path_name_or_stem(toy_book):
    intro, second = toy_book / "book" / "intro.ipynb", toy_book / "book" / "sub" / "second.ipynb"
    assert book.find_notebooks([]) == [intro, second]
    assert book.find_notebooks(["sub/second", "intro"]) == [second, intro]
    assert book.find_notebooks(["book/sub/second.ipynb", "second"]) == [second, second]
    with pytest.raises(ValueError, match="sub/second"):
        book.find_notebooks(["third"])


def test_run_executes_in_order_with_parameters_into_the_run_folder(toy_book, capsys):
    out = toy_book / "runs" / "here"
    assert book.main(["run", "--profile", "smoke", "--out", str(out), "-p", "x", "7"]) == 0
    seen = json.loads((toy_book / "book" / "seen.json").read_text())
    assert seen == {"profile": "smoke", "x": 7, "cwd": str(toy_book / "book")}
    assert (out / "intro.ipynb").exists() and (out / "sub" / "second.ipynb").exists()
    executed = nbformat.read(out / "sub" / "second.ipynb", as_version=4)
    assert "reached the end" in executed.cells[-1].outputs[0]["text"]
    injected = [c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'profile = "smoke"' in injected[0] and "x = " not in injected[0], \
        "a notebook receives only the parameters it declares"
    timings = json.loads((out / "timings.json").read_text())
    assert timings["profile"] == "smoke"
    assert list(timings["notebooks"]) == ["intro.ipynb", "sub/second.ipynb"]
    assert timings["notebooks"]["intro.ipynb"]["parameters"] == {"profile": "smoke", "x": 7}
    assert timings["notebooks"]["sub/second.ipynb"]["parameters"] == {"profile": "smoke"}
    assert {e["status"] for e in timings["notebooks"].values()} == {"ok"}
    assert book.main(["run", "intro", "--profile", "smoke", "--out", str(out)]) == 0
    again = json.loads((out / "timings.json").read_text())["notebooks"]
    assert list(again) == ["intro.ipynb", "sub/second.ipynb"], "a later run updates its entries"
    assert again["intro.ipynb"]["parameters"] == {"profile": "smoke"}
    assert str(out) in capsys.readouterr().out
    source = nbformat.read(toy_book / "book" / "sub" / "second.ipynb", as_version=4)
    assert not any(c.outputs for c in source.cells if c.cell_type == "code"), "sources untouched"


def test_run_stops_at_first_failure_naming_notebook_cell_and_error(toy_book, capsys):
    out = toy_book / "runs" / "failing"
    assert book.main(["run", "sub/second", "intro", "--profile", "smoke", "--out", str(out),
                      "-p", "fail", "true"]) == 1
    err = capsys.readouterr().err
    assert "book/sub/second.ipynb: cell 4" in err           # markdown title = cell 1
    assert "if fail:" in err and "ValueError: boom at the third cell" in err
    assert str(out) in err
    assert json.loads((out / "timings.json").read_text())["notebooks"]["sub/second.ipynb"]["status"] == "failed"
    assert (out / "sub" / "second.ipynb").exists()            # the executed copy, with the error
    assert not (out / "intro.ipynb").exists(), "the runner must stop at the first failure"
    assert book.main(["publish", str(out), "sub/second"]) == 2
    assert "ValueError: boom" in capsys.readouterr().err        # a failed run is never published


def test_run_rejects_a_parameter_no_notebook_declares(toy_book, capsys):
    assert book.main(["run", "intro", "--out", str(toy_book / "o"), "-p", "fail", "true"]) == 2
    assert "['fail']" in capsys.readouterr().err
    assert not (toy_book / "o").exists()


def test_default_run_folder_is_per_profile_and_date(toy_book):
    import datetime
    day = datetime.date(2031, 2, 3)
    assert book.default_run_dir("cpu", today=day) == toy_book / "runs" / "notebooks" / "cpu_2031-02-03"


def test_publish_then_strip(toy_book, monkeypatch):
    out = toy_book / "runs" / "pub"
    assert book.main(["run", "intro", "--profile", "smoke", "--out", str(out), "-p", "x", "3"]) == 0
    intro = toy_book / "book" / "intro.ipynb"
    source_cells = nbformat.read(intro, as_version=4).cells
    assert book.main(["publish", str(out), "intro"]) == 0
    nb = nbformat.read(intro, as_version=4)
    assert nb.metadata["mystnb"] == {"execution_mode": "off"}
    assert nb.metadata["twist_book"] == {"executed_profile": "smoke", "parameters": {"x": 3}}
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    note, = [c for c in nb.cells if book.PUBLISHED_NOTE_TAG in c.metadata.get("tags", [])]
    assert "run --profile smoke -p x 3`" in note.source and nb.cells.index(note) == 2
    assert any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    run_figure, = [o["data"] for o in nbformat.read(out / "intro.ipynb", as_version=4).cells[-1].outputs]
    figure, = [o["data"] for o in nb.cells[-1].outputs]
    assert set(run_figure) == {"text/html", book.PLOTLY_MIME} and set(figure) == {"text/html"}
    assert book.main(["strip", "intro"]) == 0
    nb = nbformat.read(intro, as_version=4)
    assert "mystnb" not in nb.metadata and "papermill" not in nb.metadata
    assert [c.source for c in nb.cells] == [c.source for c in source_cells], "back to the source"
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    monkeypatch.setattr(runner, "MAX_PUBLISHED_BYTES", 100)
    assert book.main(["publish", str(out), "intro"]) == 2
    assert "mystnb" not in nbformat.read(intro, as_version=4).metadata


def test_runner_command_line_on_a_real_page(tmp_path, kernel_env):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "twist_lib.book", "run", "intro", "--profile",
                           "smoke", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"executed notebooks: {out}" in proc.stdout
    nb = nbformat.read(out / "intro.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source


# ----------------------------------------------------------------------------------------------
# the HTML build and the browser
# ----------------------------------------------------------------------------------------------
def _figures_in_notebook(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("plotly-graph-div" in "".join(o.get("data", {}).get("text/html", ""))
               for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_build_has_every_page_and_every_figure(built_book):
    html_dir = built_book / "html"
    assert (html_dir / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    total = 0
    for nb in book.toc_notebooks(ROOT):
        rel = nb.relative_to(ROOT).with_suffix("")
        page = (html_dir / rel).with_suffix(".html").read_text()
        executed = built_book / "jupyter_execute" / rel.with_suffix(".ipynb")
        figures = _figures_in_notebook(executed)
        assert page.count('class="plotly-graph-div') == figures, \
            f"{rel}: {figures} figures executed, but the page does not show them all"
        if figures:
            assert "_static/plotly.min.js" in page
        total += figures
    assert total >= 5


def _chromium() -> str | None:
    for exe in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(exe):
            return shutil.which(exe)
    script = ROOT / "tools" / "install_chromium.sh"
    subprocess.run(["bash", str(script)], capture_output=True, timeout=900)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def served_book(built_book):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(built_book / "html"))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _dump_dom(chromium: str, url: str, profile_dir: Path) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile_dir}", "--virtual-time-budget=15000", "--dump-dom"]
    proc = subprocess.run([chromium, *flags, url], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_plotly_figure_draws_in_headless_chromium(served_book, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (tools/install_chromium.sh needs root and Debian's apt-get)")
    dom = _dump_dom(chromium, f"{served_book}/book/intro.html", tmp_path / "chromium-profile")
    # each figure: its div, then the script that draws it; what plotly.js drew lies in between
    figures = [chunk.split("<script")[0] for chunk in dom.split('class="plotly-graph-div')[1:]]
    assert figures, "the intro page has no plotly figure"
    for drawn in figures:
        assert "js-plotly-plot" in drawn.split(">")[0], "plotly.js did not run on the figure"
        assert '<svg class="main-svg"' in drawn, "a plotly figure did not draw its SVG"
