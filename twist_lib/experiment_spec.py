"""The spec file of a batch of experiments (:mod:`twist_lib.experiments` runs it): its runs,
their run folders, configs and dependencies, checked before anything starts.

A spec lists the runs of paper Tables 1 and 4-7 and Fig. 4b (``experiments/*.yaml``)::

    profile: cpu                 # every entry's (an entry may set its own)
    out: runs/experiments        # run folders: <out>/<table>/<row>/<ratio>pct_seed<seed>/
    params: {}                   # config overrides of every run (an entry's add to these)
    runs:
      - {table: table1, row: sup_only, kind: train, ratios: [1, 5], seeds: [0, 1]}
      - {table: table1, row: twist, kind: twist, ratios: [1, 5], seeds: [0, 1], init_from: sup_only}
      - {table: table7, row: twist, kind: twist, ratios: [1], seeds: [0, 1],
         init_from: table1/sup_only, extends: table1/twist, params: {rounds: 5}}

``kind: train`` runs ``python -m twist_lib train`` (Sup-only), ``twist`` ``python -m twist_lib
twist``; ``init_from: [TABLE/]ROW`` starts round 0 from that train row's run of the same ratio
and seed (``init_checkpoint``), which runs first. ``extends: [TABLE/]ROW`` names a twist row
whose run of the same ratio and seed is this one with fewer ``rounds`` (same init_from, every
other param equal): a round does not depend on how many follow it, so the runner starts this run
from a copy of that one's finished rounds instead of training them again (paper Table 7's
rounds 4-5 cost two rounds, not five). Relative paths (``out``, ``data_root``) start from
``root``, by default the repository root.
"""
from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path

import yaml

from .config import Config
from .paths import repo_root

TOP_KEYS = ("profile", "out", "params", "runs")
ENTRY_KEYS = ("table", "row", "kind", "ratios", "seeds", "params", "profile", "init_from",
              "extends")
RESERVED = ("run_dir", "label_ratio", "seed", "init_checkpoint", "profile")  # set per run
RUNNER_PARAMS = {"cpu_threads": 1, "progress": False}  # every run's defaults; params win
NEUTRAL = ("num_workers", "cpu_threads", "progress", "device", "log_every", "ckpt_every")  # --set


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
    extends_ref: str = ""  # extends as written: "[TABLE/]ROW" or ""
    init_from: Run | None = None
    extends: Run | None = None
    cfg: Config | None = None
    name = property(lambda self: f"{self.table}/{self.row}/{self.ratio}pct_seed{self.seed}")

    def path(self, root) -> Path:
        return Path(root) / self.folder

    @property
    def needs(self) -> list[Run]:
        """The runs that must finish before this one starts: its init_from, the run it extends."""
        return [r for r in (self.init_from, self.extends) if r is not None]

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
                        "see twist_lib.experiment_spec)")
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
            (kind == "train" and "extends" in entry, "extends is for kind: twist"),
            (not ratios or not all(0 < r <= 100 for r in ratios),
             "ratios must be a non-empty list of percentages in (0, 100]"),
            (not isinstance(seeds, list) or not seeds or not all(
                type(s) is int and s >= 0 for s in seeds), "seeds must be integers >= 0")):
        if bad:
            raise SpecError(f"{where}: {message}")
    params = {**top["params"], **_params(entry.get("params"), f"{where}: params")}
    common = dict(table=table, row=row, kind=kind, where=where, params=params,
                  init_ref=str(entry.get("init_from", "")),
                  extends_ref=str(entry.get("extends", "")),
                  profile=str(entry.get("profile", top["profile"])))
    return [Run(ratio=f"{r:g}", seed=s, folder=f"{out}/{table}/{row}/{r:g}pct_seed{s}", **common)
            for r in map(float, ratios) for s in seeds]


def _link(runs: dict[str, Run]) -> None:
    """Resolve every ``init_from`` (a train row) and ``extends`` (a twist row), then each run's
    Config (types and ranges)."""
    def find(run, ref):
        table, _, row = ref.rpartition("/")
        return runs.get(f"{table or run.table}/{row}/{run.ratio}pct_seed{run.seed}")
    for run in runs.values():
        run.init_from, run.extends = find(run, run.init_ref), find(run, run.extends_ref)
        for ref, found, kind in ((run.init_ref, run.init_from, "train"),
                                 (run.extends_ref, run.extends, "twist")):
            if ref and getattr(found, "kind", "") != kind:
                raise SpecError(f"{run.where}: {'init_from' if kind == 'train' else 'extends'} "
                                f"'{ref}' must name a {kind} row of the spec with ratio "
                                f"{run.ratio} and seed {run.seed}")
    for run in runs.values():
        run.configure()
    for run in (r for r in runs.values() if r.extends):
        _check_extends(run)


def _check_extends(run: Run) -> None:
    """``run`` may start from a copy of ``run.extends``'s rounds: the same init_from, the same
    resolved config but for run_dir and rounds, and no more rounds than ``run``."""
    base = run.extends
    mine, theirs = (dataclasses.asdict(r.cfg) for r in (run, base))
    differ = sorted(k for k in mine if k not in ("run_dir", "rounds") and mine[k] != theirs[k])
    for bad, message in (
            (base.init_from is not run.init_from, "the same init_from"),
            (bool(differ), "the same params but rounds (not " + ", ".join(differ) + ")"),
            (base.cfg.rounds > run.cfg.rounds, f"at most its {run.cfg.rounds} rounds")):
        if bad:
            raise SpecError(f"{run.where}: extends '{run.extends_ref}' needs a twist run with "
                            f"{message}")


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
    """The runs that make the tables ``only`` (default all) and the runs they need (``init_from``,
    ``extends``; other tables' too), dependencies first, else in spec order. Unknown tables:
    SpecError."""
    tables = list(dict.fromkeys(r.table for r in spec.runs))
    if set(only or ()) - set(tables):
        raise SpecError(f"{spec.path}: no table {' '.join(set(only) - set(tables))} in {tables}")
    order: dict[str, Run] = {}
    def add(run):
        for need in run.needs:
            add(need)
        order.setdefault(run.name, run)
    for run in (r for r in spec.runs if not only or r.table in only):
        add(run)
    return list(order.values())


