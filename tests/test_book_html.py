"""The built HTML as a reader gets it: MyST rendered (no raw directive text), equations drawn by a
MathJax served from the book itself (offline, like plotly.js), ipywidgets drawn by the widget
manager the book serves (offline too), the TWIST chapters present with their figures, and no
buttons that lead to a repository while ``repository.url`` is unset.

The book is built once for this module, at the ``smoke`` profile, with the command that
tests/test_book.py uses (``python -m twist_lib.book build``, warnings as errors). To check an
existing build instead (e.g. the output of ``make book``), point ``TWIST_BOOK_HTML`` at its HTML
folder: ``TWIST_BOOK_HTML=_build/html pytest -m slow tests/test_book_html.py``.
"""
from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
import yaml

from test_book import _chromium  # tests/ is on sys.path under pytest (no __init__.py)

ROOT = Path(__file__).resolve().parents[1]
HTML_ENV = "TWIST_BOOK_HTML"
NEW_PAGES = ["module_b", "module_c", "pipeline", "at_scale"]
NEW_NOTEBOOK_PAGES = ["module_b", "module_c", "pipeline"]     # at_scale.md has no figures
PLACEHOLDER_REPOSITORY = "github.com/twist-book"

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------------------------
# the build (once per session, or an existing one)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def html_dir(request) -> Path:
    """The book's HTML folder: the session's smoke build (``built_book`` in tests/conftest.py,
    shared with tests/test_book.py), or the folder that $TWIST_BOOK_HTML names."""
    given = os.environ.get(HTML_ENV)
    if given:
        path = Path(given).resolve()
        assert (path / "book" / "intro.html").exists(), f"{HTML_ENV}={given}: no built book there"
        return path
    return request.getfixturevalue("built_book") / "html"


def _pages(html_dir: Path) -> list[Path]:
    """The book's own pages (not Sphinx's genindex/search/_modules)."""
    pages = sorted((html_dir / "book").rglob("*.html"))
    assert pages, f"no pages under {html_dir / 'book'}"
    return pages


class _VisibleText(HTMLParser):
    """The text a reader sees as prose: everything outside <script>, <style>, <pre>, <code>,
    <textarea> and <template> (code blocks may quote MyST syntax on purpose)."""
    SKIP = {"script", "style", "pre", "code", "textarea", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def visible_text(page_html: str) -> str:
    parser = _VisibleText()
    parser.feed(page_html)
    parser.close()
    return "".join(parser.parts)


def _plotly_figures(page_html: str) -> list[dict]:
    """Every ``Plotly.newPlot(id, data, layout, config)`` call of a page, as {id, data, layout}."""
    decoder = json.JSONDecoder()
    figures = []
    for m in re.finditer(r"Plotly\.newPlot\(", page_html):
        args, pos = [], m.end()
        for _ in range(3):
            while page_html[pos] in " \t\r\n,":
                pos += 1
            value, pos = decoder.raw_decode(page_html, pos)
            args.append(value)
        figures.append({"id": args[0], "data": args[1], "layout": args[2], "start": m.start()})
    return figures


# ----------------------------------------------------------------------------------------------
# MyST rendered
# ----------------------------------------------------------------------------------------------
_DIRECTIVE_LINE = re.compile(r"^\s*(:{3,}|`{3,})\{", flags=re.M)
_CODE_BLOCK = re.compile(
    r'<div class="highlight-([\w-]+)[^"]*"><div class="highlight"><pre>(.*?)</pre>', flags=re.S)
# code blocks that may hold directive syntax on purpose: Markdown/MyST examples and code cells
# (an indented Markdown cell renders as an untyped block: highlight-none or highlight-default)
_SHOWS_SYNTAX = {"md", "markdown", "myst", "ipython3", "ipython", "python"}


def test_no_page_shows_raw_myst_directives(html_dir):
    """No directive source (``:::{...}`` or ````` ```{...} `````) in a page's prose, nor in an
    untyped code block, which is what a Markdown cell indented by four spaces becomes."""
    shown = {}
    for page in _pages(html_dir):
        page_html = page.read_text()
        text = visible_text(page_html)
        raw = [line.strip() for line in text.splitlines() if ":::{" in line or "```{" in line]
        for lexer, block in _CODE_BLOCK.findall(page_html):
            code = html.unescape(re.sub(r"<[^>]+>", "", block))
            directive = _DIRECTIVE_LINE.search(code)
            if directive and lexer not in _SHOWS_SYNTAX:
                first_line = code[directive.start():].strip().splitlines()[0]
                raw.append(f"code block ({lexer}): {first_line}")
        if raw:
            shown[page.relative_to(html_dir).as_posix()] = raw[:3]
    assert not shown, f"MyST directives shown as text, not rendered: {shown}"


def test_run_this_page_boxes_are_admonitions(html_dir):
    """Every "Run this page" box renders as a tip admonition, never as a code block."""
    boxes = 0
    for page in _pages(html_dir):
        page_html = page.read_text()
        for pre in re.findall(r"<pre\b.*?</pre>", page_html, flags=re.S):
            assert "{admonition} Run this page" not in html.unescape(re.sub(r"<[^>]+>", "", pre)), \
                f"{page.relative_to(html_dir)}: the 'Run this page' box is a code block"
        n = page_html.count('<p class="admonition-title">Run this page</p>')
        assert n == visible_text(page_html).count("Run this page"), page.relative_to(html_dir)
        boxes += n
    assert boxes >= len(NEW_NOTEBOOK_PAGES), "the notebooks' 'Run this page' boxes are missing"
    baseline = (html_dir / "book" / "prelim" / "baseline.html").read_text()
    assert '<p class="admonition-title">Run this page</p>' in baseline


# ----------------------------------------------------------------------------------------------
# MathJax, served by the book
# ----------------------------------------------------------------------------------------------
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"")


def _math_pages(html_dir: Path) -> list[Path]:
    return [p for p in _pages(html_dir) if 'class="math notranslate' in p.read_text()]


def test_mathjax_is_served_from_the_build(html_dir):
    pages = _math_pages(html_dir)
    assert len(pages) >= 5, "the book's equations are missing"
    for page in pages:
        srcs = [s for s in _SCRIPT_SRC.findall(page.read_text()) if "mathjax" in s.lower()]
        assert len(srcs) == 1, f"{page.relative_to(html_dir)}: MathJax scripts {srcs}"
        src = srcs[0]
        assert "://" not in src and not src.startswith("//"), \
            f"{page.relative_to(html_dir)}: MathJax comes from {src}, not from the book"
        script = (page.parent / src.split("?")[0]).resolve()
        assert script.is_relative_to(html_dir.resolve() / "_static"), src
        assert script.stat().st_size > 100_000, f"{script}: not MathJax's combined component"
    fonts = list((html_dir / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert fonts, "MathJax's CHTML fonts are not in _static (equations would draw without them)"


@pytest.fixture(scope="module")
def served_html(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served_html_paths.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


served_html_paths: list[str] = []     # the paths that served_html was asked for


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        served_html_paths.append(self.path.split("?")[0])
        return super().send_head()

    def log_message(self, *args):
        pass


def _dump_dom_offline(chromium: str, url: str, profile_dir: Path, extra_flags=()) -> str:
    """The page's DOM after its scripts ran, with every host but 127.0.0.1 unreachable (a reader
    offline): a script from a CDN does not load."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--user-data-dir={profile_dir}", "--virtual-time-budget=15000", "--dump-dom",
             *extra_flags]
    proc = subprocess.run([chromium, *flags, url], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_equations_render_offline_in_headless_chromium(html_dir, served_html, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (tools/install_chromium.sh needs root and Debian's apt-get)")
    page = html_dir / "book" / "intro.html"          # the first page; its \(\Phi\) and \(\Psi\)
    static = page.read_text()
    equations = len(re.findall(r'class="math notranslate', static))
    assert equations and "\\(" in visible_text(static)
    dom = _dump_dom_offline(chromium, f"{served_html}/book/intro.html", tmp_path / "profile")
    assert "</body>" in dom
    rendered = dom.count("<mjx-container")
    assert rendered >= equations, f"MathJax drew {rendered} of the page's {equations} equations"
    text = visible_text(dom.split("<body", 1)[1])
    for raw in ("\\(", "\\)", "\\[", "\\]"):
        assert raw not in text, f"raw TeX {raw!r} left in the page: MathJax did not run"


# ----------------------------------------------------------------------------------------------
# ipywidgets, drawn by a widget manager served from the book
# ----------------------------------------------------------------------------------------------
WIDGET_PAGES = ["module_a", "module_b"]
# the CDNs of the widgets' JavaScript: myst-nb's defaults (nb_ipywidgets_js: require.js from
# cdnjs, the embed bundle from jsDelivr), the bundle's own fallback (jsDelivr), and other CDNs
WIDGET_CDNS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com", "ajax.googleapis.com",
               "fonts.googleapis.com", "fonts.gstatic.com")
# what Chromium itself contacts, whatever the page (sign-in, updates, optimization hints, ...):
# Google's service domains, the CDNs above excepted
BROWSER_SERVICES = (".google.com", ".googleapis.com", ".gvt1.com")
_WIDGET_VIEW = '<script type="application/vnd.jupyter.widget-view+json">'
_WIDGET_STATE = '<script type="application/vnd.jupyter.widget-state+json">'


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """A proxy that forwards nothing: it records the host of each request the browser sends it
    (``CONNECT host:443`` for https, an absolute URL for http) and refuses it. Chromium sends it
    every request but those to 127.0.0.1, which it never proxies."""

    def _refuse(self):
        target = self.path if self.command == "CONNECT" else urlsplit(self.path).netloc
        self.server.requested.append(target.rsplit(":", 1)[0] if ":" in target else target)
        self.send_error(502)

    do_CONNECT = do_GET = do_HEAD = do_POST = do_OPTIONS = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_proxy():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    server.requested = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _local_script(page: Path, html_dir: Path, name: str) -> Path:
    """The file behind the page's one ``<script src>`` that ends in ``name``, inside _static."""
    srcs = [s for s in _SCRIPT_SRC.findall(page.read_text()) if s.split("?")[0].endswith(name)]
    assert len(srcs) == 1, f"{page.name}: scripts named {name}: {srcs}"
    script = (page.parent / srcs[0].split("?")[0]).resolve()
    assert script.is_relative_to(html_dir.resolve() / "_static") and script.is_file(), \
        f"{page.name}: {srcs[0]} is not a file of the book's _static"
    return script


@pytest.mark.parametrize("name", WIDGET_PAGES)
def test_widgets_draw_offline_in_headless_chromium(html_dir, served_html, recording_proxy,
                                                   tmp_path, name):
    """The page's ipywidgets (module A's radius and minimum-size sliders, module B's box-ratio
    slider) are drawn by the @jupyter-widgets/html-manager bundle that the book serves from its
    _static with require.js, in a browser that reaches nothing but the book: every view of the
    notebook's widget state renders as live widgets (sliders with their labels and readouts), no
    request leaves 127.0.0.1 (none to a CDN), and the page's figures and equations still draw
    with require.js on the page."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (tools/install_chromium.sh needs root and Debian's apt-get)")
    page = html_dir / "book" / f"{name}.html"
    static = page.read_text()
    views = static.count(_WIDGET_VIEW)
    assert views >= 1 and static.count(_WIDGET_STATE) == 1, f"{name}: no widget state or view"
    # the page loads the widgets' JavaScript from the book, and names no CDN for it
    remote = [s for s in _SCRIPT_SRC.findall(static) if "://" in s or s.startswith("//")]
    assert not remote, f"{name}: scripts from the network: {remote}"
    for cdn in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com"):    # (thebe's config names unpkg)
        assert cdn not in static, f"{name}: the page names {cdn}"
    assert _local_script(page, html_dir, "require.js").stat().st_size > 50_000
    embed = _local_script(page, html_dir, "embed-amd.js")
    assert embed.stat().st_size > 1_000_000, f"{embed}: not the html-manager's embed bundle"

    proxy = f"--proxy-server=http://127.0.0.1:{recording_proxy.server_address[1]}"
    first_request = len(served_html_paths)
    dom = _dump_dom_offline(chromium, f"{served_html}/book/{name}.html", tmp_path / "profile",
                            extra_flags=[proxy])
    assert "</body>" in dom
    left = sorted(set(recording_proxy.requested))
    assert not [h for h in left if h.endswith(WIDGET_CDNS)], f"{name}: requests to CDNs: {left}"
    page_requests = [h for h in left if not h.endswith(BROWSER_SERVICES)]   # (CDNs: above)
    assert not page_requests, f"{name}: requests that left the book's server: {page_requests}"
    fetched = served_html_paths[first_request:]
    for script in ("require.js", "offline.js", "embed-amd.js"):
        assert any(p.startswith("/_static/jupyter-widgets/") and p.endswith(f"/{script}")
                   for p in fetched), \
            f"{name}: the browser did not load {script} from the book"

    # the widget manager replaced each view script with a drawn widget (libembed.renderManager
    # inserts a div.widget-subarea before the script and displays the view in it)
    areas = dom.split('<div class="widget-subarea">')[1:]
    assert len(areas) == views, f"{name}: {len(areas)} of the page's {views} widget views drawn"
    sliders = 0
    for area in areas:
        drawn = area.split(_WIDGET_VIEW)[0]
        assert re.search(r'class="[^"]*\bjupyter-widgets\b', drawn), f"{name}: an empty widget area"
        sliders += len(re.findall(r'class="[^"]*\bwidget-slider\b', drawn))
    state = json.loads(static.split(_WIDGET_STATE, 1)[1].split("</script>", 1)[0])
    models = [m["state"] for m in state["state"].values()]
    expected = [m["description"] for m in models if m["_model_name"].endswith("SliderModel")]
    assert expected and sliders == len(expected), \
        f"{name}: {sliders} sliders drawn, the widget state has {len(expected)}"
    text = visible_text(dom.split("<body", 1)[1])
    for description in expected:
        assert description in text, f"{name}: the slider {description!r} has no label"
    assert dom.count('class="widget-readout"') == len(expected)

    # require.js on the page does not stop plotly.js nor MathJax
    figures = [c.split("<script")[0] for c in dom.split('class="plotly-graph-div')[1:]]
    assert all("js-plotly-plot" in f.split(">")[0] for f in figures), f"{name}: a figure not drawn"
    equations = len(re.findall(r'class="math notranslate', static))
    assert dom.count("<mjx-container") >= equations, f"{name}: MathJax did not draw the equations"


# ----------------------------------------------------------------------------------------------
# the TWIST chapters
# ----------------------------------------------------------------------------------------------
def _executed_figures(html_dir: Path, name: str) -> int:
    executed = html_dir.parent / "jupyter_execute" / "book" / f"{name}.ipynb"
    nb = nbformat.read(executed if executed.exists() else ROOT / "book" / f"{name}.ipynb",
                       as_version=4)
    return sum("plotly-graph-div" in "".join(o.get("data", {}).get("text/html", ""))
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_new_chapters_are_built_and_linked(html_dir):
    intro = (html_dir / "book" / "intro.html").read_text()
    for name in NEW_PAGES:
        page = html_dir / "book" / f"{name}.html"
        assert page.exists(), f"{name} is not in the build"
        assert f'href="{name}.html"' in intro, f"{name} is not in the navigation"
        assert "<h1>" in page.read_text() or "<h1 " in page.read_text()


@pytest.mark.parametrize("name", NEW_NOTEBOOK_PAGES)
def test_new_chapter_shows_every_plotly_figure(html_dir, name):
    page_html = (html_dir / "book" / f"{name}.html").read_text()
    divs = page_html.count('class="plotly-graph-div')
    expected = _executed_figures(html_dir, name)
    assert expected >= 1, f"{name}: the notebook has no figure"
    assert divs == expected, f"{name}: {expected} figures in the notebook, {divs} on the page"
    figures = _plotly_figures(page_html)
    assert len(figures) == divs, f"{name}: a figure div without its Plotly.newPlot call"
    assert all(f["data"] for f in figures), f"{name}: a figure without traces"
    assert "_static/plotly.min.js" in page_html


def test_pipeline_pseudo_label_browser_has_a_round_slider(html_dir):
    page_html = (html_dir / "book" / "pipeline.html").read_text()
    section = page_html.find('id="the-pseudo-label-browser"')
    assert section >= 0, "the pipeline page has no 'The pseudo-label browser' section"
    after = [f for f in _plotly_figures(page_html) if f["start"] > section]
    assert after, "the pseudo-label browser section has no figure"
    browser = after[0]
    sliders = browser["layout"].get("sliders")
    assert sliders, "the pseudo-label browser has no slider"
    steps = sliders[0]["steps"]
    assert len(steps) >= 2 and all(s["label"].startswith("round") for s in steps), steps
    n_traces = len(browser["data"])
    assert all(len(s["args"][0]["visible"]) == n_traces for s in steps)


# ----------------------------------------------------------------------------------------------
# the repository setting
# ----------------------------------------------------------------------------------------------
def test_no_link_to_a_repository_that_does_not_exist(html_dir):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = (config.get("repository") or {}).get("url") or ""
    assert PLACEHOLDER_REPOSITORY not in url, "_config.yml still names the placeholder repository"
    offending = {}
    for page in sorted(html_dir.rglob("*.html")):
        page_html = page.read_text()
        found = [s for s in (PLACEHOLDER_REPOSITORY, "executablebooks/jupyter-book")
                 if s in page_html]
        if not url:      # unset: no repository, issues or launch buttons at all
            found += [s for s in ("btn-source-repository-button", "btn-source-issues-button",
                                  "dropdown-launch-buttons", "mybinder.org",
                                  "colab.research.google.com") if s in page_html]
        if found:
            offending[page.relative_to(html_dir).as_posix()] = found
    assert not offending, f"links to a repository that is not set: {offending}"
