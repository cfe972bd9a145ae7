"""Sphinx extension: serve the ipywidgets JavaScript from the book's own ``_static`` so that the
widgets of a page (module A's and module B's sliders) draw offline, like the figures and the
equations.

myst-nb puts a notebook's widget state in its page and, on such pages only, loads the scripts
that ``nb_ipywidgets_js`` names (by default require.js from cdnjs and the
``@jupyter-widgets/html-manager`` embed bundle from jsDelivr). ``_config.yml`` points that
setting at ``_static/jupyter-widgets/``; this extension fills that folder:

* ``require.js`` and ``@jupyter-widgets/html-manager/dist/embed-amd.js`` (with the fonts its
  CSS loads, at the place where the bundle looks for them), pinned and
  fetched by ``tools/widgets_js.sh`` into ``third_party/widgets_js`` (run by every build;
  it does nothing when the folder is up to date);
* ``offline.js``, loaded between the two, which points requirejs's module folder (and so the
  bundle's fonts) at ``_static/jupyter-widgets/``: a widget class that the bundle lacks (a
  third-party widget library) is looked up there, never on a CDN; it also lets the widgets
  typeset their descriptions with the book's MathJax 3 (ipywidgets calls MathJax 2's API).

It refuses (the build fails) an ``nb_ipywidgets_js`` entry that names a remote URL or a file
that is not in the folder.
"""
import shutil
import subprocess
from pathlib import Path

from sphinx.errors import ExtensionError

STATIC_DIR = "jupyter-widgets"          # _static/jupyter-widgets/
FETCHED = Path("third_party") / "widgets_js"
FETCH_SCRIPT = Path("tools") / "widgets_js.sh"

# Runs as a plain script after require.js and before embed-amd.js (the order of nb_ipywidgets_js).
OFFLINE_JS = """\
// Written by book/_ext/widgets_offline.py; loaded after require.js and before embed-amd.js.
(function () {
  var here = new URL(".", document.currentScript.src).href;   // .../_static/jupyter-widgets/
  // requirejs resolves module names in this folder: the bundle computes where its fonts are from
  // the URL of the module it defines (@jupyter-widgets/html-manager/dist/libembed-amd), and a
  // widget library the bundle lacks would be looked up here (then in npm/: the "CDN"), not online
  window.requirejs.config({ baseUrl: here });
  window.__jupyter_widgets_assets_path__ = here + "@jupyter-widgets/html-manager/dist/";
  // ipywidgets typesets descriptions with MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3
  // (deferred: it exists at "load", when the bundle renders, and this listener runs first)
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (mj && !mj.Hub && mj.typesetPromise) {
      mj.Hub = { Queue: function (job) { return mj.typesetPromise([job[2]]); } };
    }
  });
})();
"""


def _fetched(root: Path) -> Path:
    """The folder that tools/widgets_js.sh fills (it returns at once when it is up to date)."""
    proc = subprocess.run(["bash", str(root / FETCH_SCRIPT)], cwd=root, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise ExtensionError(
            f"widgets_offline: the ipywidgets JavaScript is not in {root / FETCHED} and "
            f"{FETCH_SCRIPT} could not fetch it (run `bash {FETCH_SCRIPT}` where the npm "
            f"registry is reachable):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return root / FETCHED


def _add_widgets_static(app) -> None:
    source = _fetched(Path(app.srcdir))
    static = Path(app.doctreedir).parent / "widgets_static"
    target = static / STATIC_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / "offline.js").write_text(OFFLINE_JS)
    app.config.html_static_path.append(str(static))
    for uri in app.config.nb_ipywidgets_js:
        if "://" in uri or uri.startswith("//"):
            raise ExtensionError(f"widgets_offline: nb_ipywidgets_js loads {uri} from the network; "
                                 f"name a file under _static/{STATIC_DIR}/ instead")
        if not (static / uri).is_file():
            raise ExtensionError(f"widgets_offline: nb_ipywidgets_js names {uri}, which is not in "
                                 f"_static/{STATIC_DIR}/ (it holds require.js, offline.js and "
                                 f"@jupyter-widgets/html-manager/dist/embed-amd.js)")


def setup(app):
    app.connect("builder-inited", _add_widgets_static)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
