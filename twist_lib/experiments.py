"""Batch runs of the paper's experiments that survive stops, collected into one CSV.

The runs come from a spec file (its format and checks: :mod:`twist_lib.experiment_spec`);
:func:`run_spec` starts the missing ones, a few at a time, each after the runs it needs, as
``python -m twist_lib train|twist --resume-if-exists`` jobs that hold their folder's
``job.lock``; killed runs resume, finished ones never start again. :func:`collect` turns the
run folders into the rows of one CSV (:mod:`twist_lib.result_tables`). Command line: :func:`main`.
"""
from __future__ import annotations

import argparse
import collections
import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .atomic import atomic_json
from .config import parse_overrides
from .experiment_spec import (NEUTRAL, Run, Spec, SpecError, load_spec, plan, resolve_root,
                              with_settings)
from .result_tables import SUMMARY_COLUMNS, VALUES, merge_rows, read_csv, summarise, write_csv

__all__ = ["SpecError", "Run", "Spec", "load_spec", "plan", "with_settings", "finished",
           "describe", "status", "run_spec", "collect", "main"]

SOURCE = {"mIoU": "miou"}  # a column's name in metrics.json and rounds.csv, where it differs


def finished(run: Run, root) -> bool:
    """A train run with ``metrics.json``; a twist run with ``round_<rounds>/metrics.json``."""
    last = "" if run.kind == "train" else f"round_{run.cfg.rounds}"
    return (run.path(root) / last / "metrics.json").is_file()


def _lock(folder: Path):
    """An fd holding ``folder/job.lock`` exclusively, or None while a job holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "job.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        return os.close(fd)


def _attempts(folder: Path) -> list[dict]:
    path = folder / "job.json"
    return json.loads(path.read_text())["attempts"] if path.is_file() else []


def describe(run: Run, root) -> tuple[str, str]:
    """``(state, detail)``; state: done | running | failed (its last attempt) | partial |
    missing; detail: a partial run's finished rounds or last logged step."""
    folder, rounds = run.path(root), run.cfg.rounds
    if finished(run, root):
        return "done", ""
    done = [k for k in range(rounds + 1) if (folder / f"round_{k}/metrics.json").is_file()]
    detail = [f"rounds 0-{done[-1]} of 0-{rounds} done"] if done else []
    if run.kind == "train" and (folder / "log.csv").is_file():
        with (folder / "log.csv").open(newline="") as f:
            detail += [f"step {r['step']}/{run.cfg.steps}" for r in csv.DictReader(f)][-1:]
    detail = detail or ["started"] * (folder / "config.yaml").is_file()
    if (folder / "job.lock").is_file():
        fd = _lock(folder)
        if fd is None:
            return "running", "; ".join(detail)
        os.close(fd)
    rc = (_attempts(folder) or [{"returncode": 0}])[-1]["returncode"]
    detail += [f"last attempt rc {rc}, see job.log"] * bool(rc)
    return ("failed" if rc else "partial" if detail else "missing"), "; ".join(detail)


def status(spec: Spec, root=None, only=None) -> str:
    """A table of the runs of the tables ``only``: name, kind, state, detail; then the counts."""
    runs, root = [r for r in spec.runs if not only or r.table in only], resolve_root(root)
    states, w = [describe(r, root) for r in runs], max([len(r.name) for r in runs] + [3])
    lines = [f"{'run':{w}}  kind   state    detail"]
    lines += [f"{r.name:{w}}  {r.kind:5}  {s:7}  {d}" for r, (s, d) in zip(runs, states)]
    counts = collections.Counter(s for s, _ in states)
    return "\n".join(lines + [", ".join(f"{n} {s}" for s, n in counts.items())])


def _say(echo, verb: str, text: str) -> None:
    echo(f"[{time.strftime('%H:%M:%S')}] {verb:6} {text}")


def _start(run: Run, root: Path, echo):
    """Start the run's job (output to job.log; it holds job.lock while it lives) or None."""
    folder, (_, detail) = run.path(root), describe(run, root)
    fd = _lock(folder)
    if fd is None:
        return None
    how, cmd = f"resuming: {detail}" if detail else "fresh", run.command()
    if run.extends and not detail:
        how = _copy_rounds(run.extends.path(root), folder)
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with (folder / "job.log").open("a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start ({how}): {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(fd,))
    os.close(fd)  # the job holds the lock until it exits
    _say(echo, "start", f"{run.name} ({run.kind}; {how})")
    return proc, time.time()


def _copy_rounds(source: Path, folder: Path) -> str:
    """Copy the finished rounds of the run folder ``source`` (``round_<k>`` with metrics.json)
    into ``folder``, each through a temporary name (a stop never leaves half a round); the job
    then resumes after them (``extends``). Returns what it did, for the job's log."""
    done = sorted(int(d.name[6:]) for d in source.glob("round_*")
                  if d.name[6:].isdigit() and (d / "metrics.json").is_file())
    for k in done:
        target, temp = folder / f"round_{k}", folder / f"round_{k}.copying"
        if not target.exists():
            shutil.rmtree(temp, ignore_errors=True)
            shutil.copytree(source / f"round_{k}", temp)
            os.replace(temp, target)
    return f"from a copy of rounds 0-{done[-1]} of {source.name}" if done else "fresh"


def _finish(run: Run, rc: int, started: float, root: Path, result: dict, echo) -> None:
    """Keep the attempt in job.json; say how it ended and how long it took."""
    folder, seconds = run.path(root), time.time() - started
    attempt = {"started": round(started), "seconds": round(seconds, 1), "returncode": rc}
    atomic_json(folder / "job.json", {"attempts": _attempts(folder) + [attempt]})
    ok = rc == 0 and finished(run, root)
    result["done" if ok else "failed"].append(run.name)
    took = time.strftime("%H:%M:%S", time.gmtime(seconds))
    _say(echo, "done" if ok else "FAILED", f"{run.name} in {took}" + (
        "" if ok else f" (rc {rc}); see {folder / 'job.log'}"))


def run_spec(spec: Spec, jobs: int = 1, only=None, root=None, echo=print) -> dict:
    """Run what the tables ``only`` (default all) miss, ``jobs`` at a time, each after the runs it
    needs (``init_from``, ``extends``):
    partial runs resume, finished ones never start. Returns ``{"done", "failed", "skipped"}``
    run names. Parallel jobs that find their dataset missing all make it: ``data`` it first."""
    root, everything, jobs = resolve_root(root), plan(spec, only), max(1, jobs)
    todo = [r for r in everything if not finished(r, root)]
    result, running = {"done": [], "failed": [], "skipped": []}, {}
    _say(echo, "plan", f"{len(todo)} of {len(everything)} run(s) to do, {jobs} at a time")
    while todo or running:
        for run in list(todo):
            # round 0 from init_from, the first rounds from extends: wait for them here, or skip
            # the run if one of them is not coming
            ready = all(d.name not in running and finished(d, root) for d in run.needs)
            coming = any(d.name in running or d in todo for d in run.needs)
            if len(running) >= jobs or not ready and coming:
                continue
            todo.remove(run)
            job = _start(run, root, echo) if ready else None
            if job:
                running[run.name] = (run, *job)
            else:
                result["skipped"].append(run.name)
                missing = [d.name for d in run.needs if not finished(d, root)]
                why = f"needs {', '.join(missing)}, not finished" if not ready else (
                    "another job runs it")
                _say(echo, "skip", f"{run.name}: {why}")
        for name, (run, proc, started) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                _finish(run, proc.returncode, started, root, result, echo)
        time.sleep(0.2 if running else 0)
    _say(echo, "end", ", ".join(f"{len(v)} {k}" for k, v in result.items()))
    return result


def run_rows(run: Run, root) -> list[dict]:
    """A finished train run's row (round 0; ``train_s`` = its attempts' time) or a twist run's
    finished rounds; ``steps``: Phi's steps behind the round's model (round 0's + per round)."""
    from .runs import read_rounds
    folder, cfg = run.path(root), run.cfg
    head = dict(table=run.table, row=run.row, kind=run.kind, label_ratio=run.ratio, seed=run.seed)
    if run.kind == "train" and (folder / "metrics.json").is_file():
        m = json.loads((folder / "metrics.json").read_text())
        seconds = sum(a["seconds"] for a in _attempts(folder)) or None
        return [{**head, "round": 0, **{c: m.get(SOURCE.get(c, c)) for c in VALUES[:4]},
                 "train_s": seconds, "steps": cfg.steps}]
    if run.kind == "train" or not (folder / "rounds.csv").is_file():
        return []
    base = run.init_from.cfg.steps if run.init_from else cfg.steps
    return [{**head, "round": r["round"], **{c: r.get(SOURCE.get(c, c)) for c in VALUES[:-1]},
             "steps": base + r["round"] * cfg.round_steps} for r in read_rounds(folder)]


def collect(spec: Spec, root=None, only=None) -> list[dict]:
    """Rows of the tables ``only`` (default all), one per finished round: Tables 1, 4-7, Fig. 4."""
    return [row for run in spec.runs if not only or run.table in only
            for row in run_rows(run, resolve_root(root))]


def main(argv: list[str] | None = None) -> int:
    """``python -m twist_lib.experiments run FILE [--jobs N] [--set KEY=VALUE ...] | status FILE |
    collect FILE [--csv PATH [--replace]] [--summary PATH]``, each with ``[--only TABLE ...] [--seeds S ...]
    [--ratios R ...] [--out DIR] [--root DIR]``. Exit status: 1 when a run failed or was skipped, 2 for a bad
    spec or argument, else 0."""
    parser = argparse.ArgumentParser(prog="python -m twist_lib.experiments",
                                     description="batch runs of the paper's tables (a spec file)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "status", "collect"):
        p = sub.add_parser(name)
        p.add_argument("spec", help="spec file (YAML)")
        p.add_argument("--only", nargs="+", metavar="TABLE", help="these tables only")
        p.add_argument("--seeds", nargs="+", type=int, help="these seeds only (e.g. 0 first)")
        p.add_argument("--ratios", nargs="+", type=float, help="these label ratios only")
        p.add_argument("--out", help="run folders below this folder instead of the spec's out")
        p.add_argument("--root", help="where relative paths start (default: the repo root)")
        p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                       help=f"for every run, one of: {', '.join(NEUTRAL)}")
    sub.choices["run"].add_argument("--jobs", type=int, default=1, help="runs at a time (1)")
    sub.choices["collect"].add_argument("--csv", help="output (default <out>/results.csv)")
    sub.choices["collect"].add_argument("--summary", help="also mean/std/n over seeds here")
    sub.choices["collect"].add_argument("--replace", action="store_true", help=(
        "overwrite the CSV; default: keep its rows of runs that have no folder here"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        spec, root = load_spec(args.spec, out=args.out), resolve_root(args.root)
        spec = with_settings(spec, parse_overrides(args.set))
        spec = spec._replace(runs=[r for r in spec.runs if r.seed in (args.seeds or [r.seed])
                                   and float(r.ratio) in (args.ratios or [float(r.ratio)])])
        plan(spec, args.only)  # unknown tables are an error
    except (SpecError, FileNotFoundError, yaml.YAMLError, ValueError) as e:
        return print(f"error: {e}", file=sys.stderr) or 2
    if args.command == "run":
        result = run_spec(spec, jobs=args.jobs, only=args.only, root=root)
        return int(bool(result["failed"] or result["skipped"]))
    if args.command == "status":
        return print(status(spec, root, args.only)) or 0
    rows, out = collect(spec, root, args.only), Path(args.csv or root / spec.out / "results.csv")
    if out.is_file() and not args.replace:  # keep what earlier sessions published
        merged = merge_rows(read_csv(out), rows)
        print(f"{len(merged) - len(rows)} rows kept from {out} (runs without a folder here)")
        rows = merged
    print(f"{len(rows)} rows: {write_csv(rows, out)}")
    if args.summary:
        print(f"summary: {write_csv(summarise(rows), args.summary, SUMMARY_COLUMNS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
