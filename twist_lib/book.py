"""The book's machinery: the helpers its notebooks call, and the batch runner that executes them.

Notebook side (every notebook under ``book/`` starts with a papermill ``parameters`` cell, then)::

    from twist_lib import book
    cfg = book.notebook_config(profile, steps=steps or None)   # one Config, paths at the repo root
    book.use_book_renderer()                                   # plotly figures the HTML shows
    model, meta = book.trained_baseline(cfg)                   # train Phi once, then reuse it

The module B and C pages' own helpers live in :mod:`twist_lib.proposal_study` (Psi on the
baseline, one scene's proposals, Psi's augmentations) and :mod:`twist_lib.pseudo_study` (module
C's pseudo labels against point-wise thresholding).

A notebook's ``profile`` parameter defaults to ``""``, which means ``$TWIST_PROFILE`` if set, else
``cpu``; papermill's ``-p profile ...`` overrides both. A profile changes settings only (sizes,
steps, resolution, augmentation; :data:`twist_lib.config.PROFILES`), never the code path.

Batch runner (``make run-notebooks PROFILE=...`` calls it)::

    python -m twist_lib.book list                         # the notebooks, in the book's order
    python -m twist_lib.book run [NOTEBOOK ...] [--profile cpu] [--out DIR] [-p KEY VALUE ...]
    python -m twist_lib.book strip [NOTEBOOK ...]         # clear outputs before committing
    python -m twist_lib.book publish RUN_DIR [NOTEBOOK ...]   # show a run's executed copy in the book
    python -m twist_lib.book build [--profile smoke] [--out DIR]   # the HTML (what `make book` runs)

``run`` executes the chosen notebooks (default: all, in the order of ``_toc.yml``) with papermill
into a run folder outside ``book/`` (default ``runs/notebooks/<profile>_<YYYY-MM-DD>/``, the
executed copies keeping their paths below ``book/``), stops at the first failure naming the
notebook, the cell and the error, and prints where the executed notebooks are. ``publish`` copies
small executed notebooks back into ``book/`` and marks them ``mystnb.execution_mode: off`` so the
HTML build shows them as they are instead of re-running them; ``strip`` undoes that. ``build`` runs ``jupyter-book build`` with warnings as errors
(``-W --keep-going``), the notebooks executing at ``--profile`` (default ``smoke``: seconds).
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import datetime as _dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from .config import Config

PROFILE_ENV = "TWIST_PROFILE"
DEFAULT_PROFILE = "cpu"
BOOK_DIR = "book"
TOC_FILE = "_toc.yml"
RENDERER = "twist_book"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PUBLISHED_NOTE_TAG = "published-note"
MAX_PUBLISHED_BYTES = 1_500_000  # a committed executed notebook stays below this size


# ----------------------------------------------------------------------------------------------
# locating the book
# ----------------------------------------------------------------------------------------------
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


def trained_baseline(cfg: Config):
    """The Sup-only baseline Phi of ``cfg``, in eval mode, and the dataset's meta.

    Trains it first (:func:`twist_lib.trainer.train` with ``resume="auto"``, which also generates
    the synthetic benchmark if it is missing) unless the run folder already holds
    ``checkpoints/final.pt``; a killed training run is resumed from its last checkpoint.
    """
    from .trainer import build_model, ensure_dataset, load_weights, resolve_device, train
    final = Path(cfg.resolved_run_dir()) / "checkpoints" / "final.pt"
    if not final.exists():
        train(cfg, resume="auto")
    meta = ensure_dataset(cfg)
    device = resolve_device(cfg.device)
    model = build_model(cfg, meta).to(device)
    load_weights(model, final, map_location=device)
    return model.eval(), meta


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


def switchable(figures: dict, title: str | None = None, control: str = "buttons",
               label: str = "", height: int = 520, active: int = 0):
    """One plotly figure holding several views, with buttons (or a slider) to switch between
    them; plotly draws the controls itself, so they work in the static HTML too.

    ``figures`` maps a view's label to a figure (e.g. from :mod:`twist_lib.viz`); the layout of
    the first one is kept (3-D scene settings) and view number ``active`` is shown first.
    """
    import plotly.graph_objects as go
    if control not in ("buttons", "slider"):
        raise ValueError(f"control must be 'buttons' or 'slider', got {control!r}")
    fig = go.Figure()
    spans = []
    for name, view in figures.items():
        start = len(fig.data)
        fig.add_traces(list(view.data))
        spans.append((str(name), start, len(fig.data)))
    n = len(fig.data)
    visible = [[a <= i < b for i in range(n)] for _, a, b in spans]
    for i, trace in enumerate(fig.data):
        trace.visible = visible[active][i]
    fig.update_layout(next(iter(figures.values())).layout)
    steps = [dict(label=name, method="update", args=[{"visible": v}])
             for (name, _, _), v in zip(spans, visible)]
    if control == "buttons":
        fig.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=steps,
                                            active=active, x=0, y=1.0, xanchor="left",
                                            yanchor="bottom")])
    else:
        fig.update_layout(sliders=[dict(steps=steps, active=active, currentvalue=dict(prefix=label),
                                        pad=dict(t=10))])
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, b=0, t=70))
    return fig


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


# ----------------------------------------------------------------------------------------------
# batch runner
# ----------------------------------------------------------------------------------------------
class NotebookFailed(RuntimeError):
    """A notebook of a batch run raised; the message names the notebook, the cell and the error."""

    def __init__(self, notebook: Path, cell: int, first_line: str, error: str, executed: Path,
                 out_dir: Path):
        self.notebook, self.cell, self.error = notebook, cell, error
        self.executed, self.out_dir = executed, out_dir
        super().__init__(f"{notebook}: cell {cell} (`{first_line}`) failed with {error}\n"
                         f"  executed copy, with the traceback: {executed}")


@dataclass
class RunResult:
    """What :func:`run_notebooks` did: the run folder and the seconds each notebook took."""
    out_dir: Path
    profile: str
    seconds: dict = field(default_factory=dict)


def default_run_dir(profile: str, root=None, today=None) -> Path:
    """``runs/notebooks/<profile>_<YYYY-MM-DD>``: one folder per profile and date."""
    day = (today or _dt.date.today()).isoformat()
    return repo_root(root) / "runs" / "notebooks" / f"{profile}_{day}"


def _source_cell(notebook: Path, cell_source: str) -> tuple[int, str]:
    """1-based number of the cell of ``notebook`` whose source is ``cell_source``, and its first
    non-blank line (papermill's cell index counts the cell it injects)."""
    nb = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(nb.cells, start=1):
        if cell.source == cell_source:
            lines = [ln for ln in cell_source.splitlines() if ln.strip()]
            return i, (lines[0].strip() if lines else "")
    return 0, ""


def run_notebooks(notebooks, profile: str = DEFAULT_PROFILE, out_dir=None, parameters=None,
                  timeout: int | None = None, log=print) -> RunResult:
    """Execute ``notebooks`` in order with papermill, injecting ``profile`` and ``parameters``
    (each notebook receives those it declares; one that no notebook declares is an error).

    Each executed copy lands in ``out_dir`` (default :func:`default_run_dir`) at its path below
    ``book/``; ``out_dir/timings.json`` records, per notebook, its seconds, the parameters it
    received and whether it ran through (a later run into the same folder updates its entries).
    Stops at the first failure by raising :class:`NotebookFailed`.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = repo_root()
    book_dir = root / BOOK_DIR
    out_dir = Path(out_dir) if out_dir else default_run_dir(profile, root)
    params = {"profile": profile, **(parameters or {})}
    declared = {Path(nb).resolve(): set(papermill.inspect_notebook(str(nb))) for nb in notebooks}
    unknown = set(params) - set().union(*declared.values())
    if unknown:
        raise ValueError(f"parameter(s) {sorted(unknown)} belong to none of the chosen notebooks; "
                         "`papermill --help-notebook NOTEBOOK` lists a notebook's parameters")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult(out_dir, profile)
    timings = out_dir / "timings.json"
    earlier = json.loads(timings.read_text()) if timings.exists() else {}
    record = {"profile": profile,
              "notebooks": earlier.get("notebooks", {}) if earlier.get("profile") == profile else {}}
    os.environ[PROFILE_ENV] = profile  # for anything the notebooks start themselves
    for nb in notebooks:
        nb = Path(nb).resolve()
        rel = nb.relative_to(book_dir) if nb.is_relative_to(book_dir) else Path(nb.name)
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"[{profile}] {rel} ...")
        t0, status = time.time(), "failed"
        mine = {k: v for k, v in params.items() if k in declared[nb]}   # each its own
        try:
            papermill.execute_notebook(str(nb), str(target), parameters=mine, cwd=str(nb.parent),
                                       progress_bar=False, execution_timeout=timeout)
            status = "ok"
        except PapermillExecutionError as e:
            cell, first = _source_cell(nb, e.source)
            raise NotebookFailed(nb.relative_to(root) if nb.is_relative_to(root) else nb, cell, first,
                                 f"{e.ename}: {e.evalue}", target, out_dir) from None
        finally:
            result.seconds[rel.as_posix()] = round(time.time() - t0, 1)
            record["notebooks"][rel.as_posix()] = {"seconds": result.seconds[rel.as_posix()],
                                                   "parameters": mine, "status": status}
            _write_json(timings, record)
        log(f"[{profile}] {rel} done in {result.seconds[rel.as_posix()]:.1f} s")
    return result


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# committed copies: strip / publish
# ----------------------------------------------------------------------------------------------
def strip_notebook(nb):
    """A copy of ``nb`` without outputs, execution counts, widget state, run metadata or the
    note :func:`publishable` adds."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if PUBLISHED_NOTE_TAG not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in ("execution", "papermill", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    for key in ("widgets", "papermill", "mystnb"):
        nb.metadata.pop(key, None)
    return nb


def publishable(executed):
    """An executed notebook as the book shows it: papermill's injected-parameters cell replaced
    by a note that says which batch run made the outputs, figures kept as ``text/html`` only
    (half the size), execution turned off for the HTML build."""
    nb = copy.deepcopy(executed)
    params = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    profile = params.pop("profile", "?")
    options = "".join(f" -p {k} {v}" for k, v in params.items())
    note = nbformat.v4.new_markdown_cell(
        f":::{{note}}\nThe outputs below come from a batch run at profile `{profile}` "
        f"(`python -m twist_lib.book run --profile {profile}{options}`); running the notebook "
        "computes them afresh.\n:::")
    note.metadata["tags"] = [PUBLISHED_NOTE_TAG]
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if PUBLISHED_NOTE_TAG in tags:
            continue
        cells.append(note if "injected-parameters" in tags else cell)
    nb.cells = cells
    for cell in nb.cells:
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
        for output in cell.get("outputs", []):     # the HTML draws figures from text/html only
            data = output.get("data", {})
            if "text/html" in data:
                data.pop(PLOTLY_MIME, None)
    nb.metadata.pop("papermill", None)
    nb.metadata["mystnb"] = {"execution_mode": "off"}
    nb.metadata["twist_book"] = {"executed_profile": profile, "parameters": params}
    return nb


def _write_notebook(nb, path: Path) -> int:
    text = nbformat.writes(nb) + "\n"
    path.write_text(text)
    return len(text.encode())


def strip_notebooks(notebooks, log=print) -> None:
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        stripped = strip_notebook(nb)
        if stripped != nb:
            _write_notebook(stripped, path)
            log(f"stripped {path}")


def publish_notebooks(run_dir, notebooks, log=print) -> None:
    """Copy the executed notebooks of ``run_dir`` over their sources in ``book/``
    (:func:`publishable`); refuses one above :data:`MAX_PUBLISHED_BYTES`."""
    root = repo_root()
    run_dir = Path(run_dir)
    for path in notebooks:
        executed = run_dir / path.relative_to(root / BOOK_DIR)
        if not executed.exists():
            raise FileNotFoundError(f"{executed}: not in the run folder; run it first")
        errors = [o for c in nbformat.read(executed, as_version=4).cells
                  for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            raise ValueError(f"{executed}: the run failed there ({errors[0]['ename']}: "
                             f"{errors[0]['evalue']}); fix it and run it again before publishing")
        nb = publishable(nbformat.read(executed, as_version=4))
        size = len(nbformat.writes(nb).encode())
        if size > MAX_PUBLISHED_BYTES:
            raise ValueError(f"{executed}: {size / 1e6:.1f} MB executed, more than the "
                             f"{MAX_PUBLISHED_BYTES / 1e6:.1f} MB a committed notebook may weigh")
        _write_notebook(nb, path)
        log(f"published {executed} -> {path} ({size / 1e6:.2f} MB)")


# ----------------------------------------------------------------------------------------------
# the HTML build
# ----------------------------------------------------------------------------------------------
def build_html(profile: str = "smoke", out_dir=None, root=None) -> Path:
    """``jupyter-book build`` of the book with warnings as errors, the notebooks executing at
    ``profile``; returns the HTML folder (``OUT/_build/html``, OUT = the repository by default).
    Raises ``RuntimeError`` if the build fails (a warning, or a notebook that raised)."""
    root = repo_root(root)
    out_dir = Path(out_dir) if out_dir else root
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(root), "-W", "--keep-going", "--path-output", str(out_dir)]
    env = {**os.environ, PROFILE_ENV: profile}
    if subprocess.run(cmd, env=env).returncode != 0:
        raise RuntimeError(f"jupyter-book build of {root} failed at profile {profile} (see above)")
    return out_dir / "_build" / "html"


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m twist_lib.book", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the book's notebooks, in reading order")
    r = sub.add_parser("run", help="execute notebooks with papermill into a run folder")
    r.add_argument("notebooks", nargs="*", help="paths or names (default: all, in book order)")
    r.add_argument("--profile", default=os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE,
                   choices=["smoke", "cpu", "gpu"], help="sizes and steps (default: cpu)")
    r.add_argument("--out", help="run folder (default runs/notebooks/<profile>_<date>)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"), help="a notebook parameter (YAML value)")
    r.add_argument("--timeout", type=int, default=None, help="seconds per cell (default none)")
    s = sub.add_parser("strip", help="clear outputs of notebooks (default: all)")
    s.add_argument("notebooks", nargs="*")
    pub = sub.add_parser("publish", help="copy a run's executed notebooks into book/")
    pub.add_argument("run_dir")
    pub.add_argument("notebooks", nargs="*")
    b = sub.add_parser("build", help="build the HTML with warnings as errors")
    b.add_argument("--profile", default="smoke", choices=["smoke", "cpu", "gpu"],
                   help="profile the notebooks execute at (default: smoke)")
    b.add_argument("--out", help="folder that receives _build/ (default: the repository)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "list":
            root = repo_root()
            for nb in toc_notebooks(root):
                print(nb.relative_to(root))
        elif args.command == "run":
            params = {k: yaml.safe_load(v) for k, v in args.parameter}
            result = run_notebooks(find_notebooks(args.notebooks), args.profile, args.out, params,
                                   timeout=args.timeout)
            total = sum(result.seconds.values())
            print(f"all {len(result.seconds)} notebook(s) ran in {total:.0f} s; "
                  f"executed notebooks: {result.out_dir}")
        elif args.command == "strip":
            strip_notebooks(find_notebooks(args.notebooks))
        elif args.command == "publish":
            publish_notebooks(args.run_dir, find_notebooks(args.notebooks))
        elif args.command == "build":
            html = build_html(args.profile, args.out)
            print(f"HTML: {html / 'index.html'}")
    except NotebookFailed as e:
        print(f"FAILED {e}", file=sys.stderr)
        print(f"executed notebooks so far: {e.out_dir}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
