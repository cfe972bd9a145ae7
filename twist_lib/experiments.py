"""Batch runs of the paper's experiments that survive stops, collected into one CSV.

A *spec file* lists the runs of paper Tables 1 and 4-7 and Fig. 4b (``experiments/*.yaml``)::

    profile: cpu                 # every entry's (an entry may set its own)
    out: runs/experiments        # run folders: <out>/<table>/<row>/<ratio>pct_seed<seed>/
    params: {}                   # config overrides of every run (an entry's add to these)
    runs:
      - {table: table1, row: sup_only, kind: train, ratios: [1, 5], seeds: [0, 1]}
      - {table: table1, row: twist, kind: twist, ratios: [1, 5], seeds: [0, 1], init_from: sup_only}

``kind: train`` runs ``python -m twist_lib train`` (Sup-only), ``twist`` ``python -m twist_lib
twist``; ``init_from: [TABLE/]ROW`` starts round 0 from that train row's run of the same ratio
and seed (``init_checkpoint``), which runs first. Relative paths (``out``, ``data_root``) start
from ``root``, by default the repository root. Command line: :func:`main`.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import difflib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .atomic import atomic_json
from .config import Config, parse_overrides
from .result_tables import SUMMARY_COLUMNS, VALUES, merge_rows, read_csv, summarise, write_csv
from .paths import repo_root

TOP_KEYS = ("profile", "out", "params", "runs")
ENTRY_KEYS = ("table", "row", "kind", "ratios", "seeds", "params", "profile", "init_from")
RESERVED = ("run_dir", "label_ratio", "seed", "init_checkpoint", "profile")  # set per run
RUNNER_PARAMS = {"cpu_threads": 1, "progress": False}  # every run's defaults; params win
NEUTRAL = ("num_workers", "cpu_threads", "progress", "device", "log_every", "ckpt_every")  # --set
SOURCE = {"mIoU": "miou"}  # a column's name in metrics.json and rounds.csv, where it differs


class SpecError(ValueError):
    """A bad spec file or argument; the message names the file and the entry."""


@dataclasses.dataclass(eq=False)
class Run:
    """One run of a spec, in ``<out>/<table>/<row>/<ratio>pct_seed<seed>``."""
    table: str
    row: str
    kind: str
    ratio: str
    seed: int
    folder: str
    profile: str
    params: dict
    where: str  # its spec entry, for error messages
    init_ref: str  # init_from as written: "[TABLE/]ROW" or ""
    init_from: Run | None = None
    cfg: Config | None = None
    name = property(lambda self: f"{self.table}/{self.row}/{self.ratio}pct_seed{self.seed}")

    def path(self, root) -> Path:
        return Path(root) / self.folder

    def overrides(self) -> dict:
        init = {"init_checkpoint": self.init_from.folder} if self.init_from else {}
        return {**RUNNER_PARAMS, **self.params, "run_dir": self.folder, "label_ratio": self.ratio,
                "seed": self.seed, **init}

    def configure(self) -> None:
        """``self.cfg`` from the profile and :meth:`overrides`; SpecError naming the entry."""
        try:
            self.cfg = Config.from_sources(self.profile, None, self.overrides()).validate()
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{self.where}: {e.args[0] if e.args else e}") from None

    def command(self) -> list[str]:
        """The job's command line; values as JSON, which ``key=value`` reads as YAML."""
        values = [f"{k}={json.dumps(v)}" for k, v in self.overrides().items()]
        return [sys.executable, "-m", "twist_lib", self.kind, "--profile", self.profile,
                "--resume-if-exists", *values]


Spec = collections.namedtuple("Spec", "path out runs")  # runs: every Run, in spec order


def resolve_root(root=None) -> Path:
    """``root``, else the repository root (the folder with ``_toc.yml``, here or above)."""
    return Path(root) if root else repo_root()


def load_spec(path, out=None) -> Spec:
    """Read and check a spec file (``out`` replaces its ``out``); SpecError naming the entry."""
    path = Path(path)
    with path.open() if path.is_file() else open(os.devnull) as f:
        data = yaml.safe_load(f)  # a YAML error names the file
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise SpecError(f"{path}: not a spec file (a mapping with a list 'runs:'; "
                        "see twist_lib.experiments)")
    _check(data, TOP_KEYS, str(path), "key", "allowed: " + ", ".join(TOP_KEYS))
    top = dict(profile=str(data.get("profile", "cpu")),
               params=_params(data.get("params"), f"{path}: params"))
    out, runs = str(out or data.get("out") or "runs/experiments"), {}
    for i, entry in enumerate(data["runs"]):
        label = f" ({entry.get('table')}/{entry.get('row')})" if isinstance(entry, dict) else ""
        for run in _expand(entry, f"{path}: runs[{i}]{label}", top, out):
            if run.name in runs:
                raise SpecError(f"{run.where}: run folder {run.folder} is also that of "
                                f"{runs[run.name].where}")
            runs[run.name] = run
    _link(runs)
    return Spec(path, out, list(runs.values()))


def _check(keys, allowed, where: str, what: str, known: str) -> None:
    for key in (k for k in keys if k not in allowed):
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(f"{where}: unknown {what} '{key}'{hint}; {known}")


def _params(params, where: str) -> dict:
    """``params`` whose keys are config keys (``Config.keys()``), none of them set per run."""
    if not isinstance(params or {}, dict) or set(params or {}) & set(RESERVED):
        raise SpecError(f"{where}: a mapping of config keys but {', '.join(RESERVED)} (set per "
                        "run by ratios, seeds, init_from, out and profile)")
    _check(params or {}, Config.keys(), where, "config key", "see python -m twist_lib config")
    return dict(params or {})


def _expand(entry, where: str, top: dict, out: str) -> list[Run]:
    """The runs of one entry, one per (ratio, seed), ratios outermost."""
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: an entry is a mapping (table, row, kind, ratios, seeds, ...)")
    _check(entry, ENTRY_KEYS, where, "key", "allowed: " + ", ".join(ENTRY_KEYS))
    table, row, kind = str(entry.get("table", "")), str(entry.get("row", "")), entry.get("kind")
    ratios, seeds = entry.get("ratios"), entry.get("seeds")
    if not isinstance(ratios, list) or not {type(r) for r in ratios} <= {int, float}:
        ratios = []
    for bad, message in (
            (not table or not row or "/" in table + row, "table and row are names without '/'"),
            (kind not in ("train", "twist"), f"kind must be train or twist, not {kind!r}"),
            (kind == "train" and "init_from" in entry, "init_from is for kind: twist"),
            (not ratios or not all(0 < r <= 100 for r in ratios),
             "ratios must be a non-empty list of percentages in (0, 100]"),
            (not isinstance(seeds, list) or not seeds or not all(
                type(s) is int and s >= 0 for s in seeds), "seeds must be integers >= 0")):
        if bad:
            raise SpecError(f"{where}: {message}")
    params = {**top["params"], **_params(entry.get("params"), f"{where}: params")}
    common = dict(table=table, row=row, kind=kind, where=where, params=params,
                  init_ref=str(entry.get("init_from", "")),
                  profile=str(entry.get("profile", top["profile"])))
    return [Run(ratio=f"{r:g}", seed=s, folder=f"{out}/{table}/{row}/{r:g}pct_seed{s}", **common)
            for r in map(float, ratios) for s in seeds]


def _link(runs: dict[str, Run]) -> None:
    """Resolve every ``init_from`` (a train row), then each run's Config (types and ranges)."""
    for run in runs.values():
        table, _, row = run.init_ref.rpartition("/")
        run.init_from = runs.get(f"{table or run.table}/{row}/{run.ratio}pct_seed{run.seed}")
        if run.init_ref and getattr(run.init_from, "kind", "") != "train":
            raise SpecError(f"{run.where}: init_from '{run.init_ref}' must name a train row of "
                            f"the spec with ratio {run.ratio} and seed {run.seed}")
        run.configure()


def with_settings(spec: Spec, settings: dict) -> Spec:
    """``spec`` with ``settings`` added to every run's params: only keys that change how a run
    executes, never what it computes (:data:`NEUTRAL`: e.g. ``num_workers=2`` on a GPU box)."""
    bad = sorted(set(settings) - set(NEUTRAL))
    if bad:
        raise SpecError(f"--set {', '.join(bad)}: only {', '.join(NEUTRAL)} may be set for a "
                        "batch (the others change results: put them in the spec)")
    for run in spec.runs:
        run.params = {**run.params, **settings}
        run.configure()
    return spec


def plan(spec: Spec, only=None) -> list[Run]:
    """The runs that make the tables ``only`` (default all): their own and their ``init_from``
    runs (other tables' too), dependencies first, else in spec order. Unknown tables: SpecError."""
    tables = list(dict.fromkeys(r.table for r in spec.runs))
    if set(only or ()) - set(tables):
        raise SpecError(f"{spec.path}: no table {' '.join(set(only) - set(tables))} in {tables}")
    order: dict[str, Run] = {}
    for run in (r for r in spec.runs if not only or r.table in only):
        order.update({r.name: r for r in (run.init_from, run) if r and r.name not in order})
    return list(order.values())


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
    """Run what the tables ``only`` (default all) miss, ``jobs`` at a time, ``init_from`` first:
    partial runs resume, finished ones never start. Returns ``{"done", "failed", "skipped"}``
    run names. Parallel jobs that find their dataset missing all make it: ``data`` it first."""
    root, everything, jobs = resolve_root(root), plan(spec, only), max(1, jobs)
    todo = [r for r in everything if not finished(r, root)]
    result, running = {"done": [], "failed": [], "skipped": []}, {}
    _say(echo, "plan", f"{len(todo)} of {len(everything)} run(s) to do, {jobs} at a time")
    while todo or running:
        for run in list(todo):
            dep = run.init_from  # its round 0: wait for it here, or skip if it is not coming
            ready = dep is None or dep.name not in running and finished(dep, root)
            if len(running) >= jobs or not ready and (dep.name in running or dep in todo):
                continue
            todo.remove(run)
            job = _start(run, root, echo) if ready else None
            if job:
                running[run.name] = (run, *job)
            else:
                result["skipped"].append(run.name)
                why = f"needs {dep.name}, not finished" if not ready else "another job runs it"
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
