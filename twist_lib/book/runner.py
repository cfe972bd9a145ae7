"""The book's tooling: the papermill batch runner, the committed copies (publish / strip, and
:func:`publishable`, a notebook as the book shows it) and the HTML build.

``python -m twist_lib.book run|publish|strip|build`` (:mod:`twist_lib.book.cli`) calls these;
:mod:`twist_lib.book` re-exports the public ones.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..atomic import atomic_json
from ..paths import DEFAULT_PROFILE, PROFILE_ENV, repo_root
from .helpers import BOOK_DIR

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PUBLISHED_NOTE_TAG = "published-note"
MAX_PUBLISHED_BYTES = 1_500_000  # a committed executed notebook stays below this size


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
            atomic_json(timings, record)
        log(f"[{profile}] {rel} done in {result.seconds[rel.as_posix()]:.1f} s")
    return result


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
        limit = MAX_PUBLISHED_BYTES
        if size > limit:
            raise ValueError(f"{executed}: {size / 1e6:.1f} MB executed, more than the "
                             f"{limit / 1e6:.1f} MB a committed notebook may weigh")
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
