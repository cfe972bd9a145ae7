"""The book's machinery: the helpers its notebooks call, and the batch runner that executes them.

Notebook side (every notebook under ``book/`` starts with a papermill ``parameters`` cell, then)::

    from twist_lib import book
    cfg = book.notebook_config(profile, steps=steps or None)   # one Config, paths at the repo root
    book.use_book_renderer()                                   # plotly figures the HTML shows
    model, meta = book.trained_baseline(cfg)                   # train Phi once, then reuse it

The module B and C pages' own helpers live in :mod:`twist_lib.book.proposal_study` (Psi on the
baseline, one scene's proposals, Psi's augmentations) and :mod:`twist_lib.book.pseudo_study`
(module C's pseudo labels against point-wise thresholding).

A notebook's ``profile`` parameter defaults to ``""``, which means ``$TWIST_PROFILE`` if set, else
``cpu``; papermill's ``-p profile ...`` overrides both. A profile changes settings only (sizes,
steps, resolution, augmentation; :data:`twist_lib.config.PROFILES`), never the code path.

Batch runner (``make run-notebooks PROFILE=...`` calls it)::

    python -m twist_lib.book list                         # the notebooks, in the book's order
    python -m twist_lib.book run [NOTEBOOK ...] [--profile cpu] [--out DIR] [-p KEY VALUE ...]
    python -m twist_lib.book strip [NOTEBOOK ...]         # clear outputs before committing
    python -m twist_lib.book publish RUN_DIR [NOTEBOOK ...]   # show a run's executed copy in the book
    python -m twist_lib.book build [--profile smoke] [--out DIR]   # the HTML (what `make book` runs)
    python -m twist_lib.book batch --ratios 1 5 --seeds 0 1 --profile P --out DIR [-p KEY VALUE ...]

``run`` executes the chosen notebooks (default: all, in the order of ``_toc.yml``) with papermill
into a run folder outside ``book/`` (default ``runs/notebooks/<profile>_<YYYY-MM-DD>/``, the
executed copies keeping their paths below ``book/``), stops at the first failure naming the
notebook, the cell and the error, and prints where the executed notebooks are. ``publish`` copies
small executed notebooks back into ``book/`` and marks them ``mystnb.execution_mode: off`` so the
HTML build shows them as they are instead of re-running them; ``strip`` undoes that. ``build`` runs ``jupyter-book build`` with warnings as errors
(``-W --keep-going``), the notebooks executing at ``--profile`` (default ``smoke``: seconds).
``batch`` executes ``book/pipeline.ipynb`` once per (ratio, seed) job
(:func:`twist_lib.book.batch.run_batch`) into ``DIR/<ratio>pct_seed<seed>/`` (the executed
notebook, its ``timings.json`` and the job's run folder ``run/``), goes on with the next job when
one fails, and writes ``DIR/summary.csv`` and ``DIR/summary.md``: the final round of every job,
and the mean over seeds of each ratio beside the paper's Table 7.
"""
from __future__ import annotations

# The text above is the command line's help (``python -m twist_lib.book --help``), kept as it was
# when the package was one module. The functions are looked up on :mod:`twist_lib.book` when a
# command runs, so that a test's ``monkeypatch.setattr(book, "run_notebooks", ...)`` reaches here.

import argparse
import os
import sys
from pathlib import Path

import yaml

from ..config import PROFILES
from ..paths import DEFAULT_PROFILE, PROFILE_ENV, repo_root
from . import batch, runner
from .helpers import find_notebooks, toc_notebooks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m twist_lib.book", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the book's notebooks, in reading order")
    r = sub.add_parser("run", help="execute notebooks with papermill into a run folder")
    r.add_argument("notebooks", nargs="*", help="paths or names (default: all, in book order)")
    r.add_argument("--profile", default=os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE,
                   choices=sorted(PROFILES), help="sizes and steps (default: cpu)")
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
    b.add_argument("--profile", default="smoke", choices=sorted(PROFILES),
                   help="profile the notebooks execute at (default: smoke)")
    b.add_argument("--out", help="folder that receives _build/ (default: the repository)")
    j = sub.add_parser("batch", help="run book/pipeline.ipynb per label ratio and seed")
    j.add_argument("--ratios", nargs="+", required=True, help="label ratios in percent")
    j.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    j.add_argument("--profile", default=os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE,
                   choices=sorted(PROFILES), help="sizes and steps (default: cpu)")
    j.add_argument("--out", required=True, help="batch folder (one sub-folder per job)")
    j.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"), help="a notebook parameter for every job (YAML value)")
    j.add_argument("--notebook", default=None, help="the notebook (default book/pipeline.ipynb)")
    return p


def _batch(args) -> int:
    params = {k: yaml.safe_load(v) for k, v in args.parameter}

    def execute(job, profile, p):
        return batch.execute_pipeline(job, profile, p, args.notebook)
    rows = batch.run_batch(args.ratios, args.seeds, args.profile, args.out, params, execute=execute)
    print(batch.summary_markdown(rows))
    print(f"summary: {Path(args.out) / 'summary.csv'}, {Path(args.out) / 'summary.md'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def main(argv=None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "list":
            root = repo_root()
            for nb in toc_notebooks(root):
                print(nb.relative_to(root))
        elif args.command == "run":
            params = {k: yaml.safe_load(v) for k, v in args.parameter}
            result = runner.run_notebooks(find_notebooks(args.notebooks), args.profile, args.out,
                                        params, timeout=args.timeout)
            total = sum(result.seconds.values())
            print(f"all {len(result.seconds)} notebook(s) ran in {total:.0f} s; "
                  f"executed notebooks: {result.out_dir}")
        elif args.command == "strip":
            runner.strip_notebooks(find_notebooks(args.notebooks))
        elif args.command == "publish":
            runner.publish_notebooks(args.run_dir, find_notebooks(args.notebooks))
        elif args.command == "batch":
            return _batch(args)
        elif args.command == "build":
            html = runner.build_html(args.profile, args.out)
            print(f"HTML: {html / 'index.html'}")
    except runner.NotebookFailed as e:
        print(f"FAILED {e}", file=sys.stderr)
        print(f"executed notebooks so far: {e.out_dir}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
