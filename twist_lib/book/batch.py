"""The batch runner: ``book/pipeline.ipynb`` executed with papermill once per (label ratio, seed)
job, and the summary of the jobs' last rounds beside the paper's Table 7.

``book/at_scale.md`` runs it (``python -m twist_lib.book batch --ratios 1 5 10 20 --seeds 0 1
--profile gpu --out DIR``) and shows :func:`run_batch`; each job is the pipeline job of
:mod:`twist_lib.pipeline`, and its run folder is read back with :func:`twist_lib.runs.read_rounds`.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..paths import repo_root
from ..runs import METRICS, PAPER_TABLE7_AP50, read_rounds, table_cell
from .runner import run_notebooks

PIPELINE_NOTEBOOK = Path("book") / "pipeline.ipynb"


# ----------------------------------------------------------------------------------------------
# the batch runner
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One pipeline run of a batch: its label ratio, seed and folders."""
    label_ratio: str
    seed: int
    folder: Path          # DIR/<ratio>pct_seed<seed>: the executed notebook, timings.json

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def run_dir(self) -> Path:
        """The job's TWIST run folder."""
        return self.folder / "run"

    def parameters(self, extra: dict | None = None) -> dict:
        """The notebook parameters of this job (``extra`` = the batch's ``-p`` options)."""
        return {**(extra or {}), "label_ratio": self.label_ratio, "seed": self.seed,
                "run_dir": str(self.run_dir)}


PER_JOB = ("label_ratio", "seed", "run_dir", "profile")


def batch_jobs(ratios, seeds, out) -> list[Job]:
    """One :class:`Job` per (ratio, seed), ratios outermost, in the order given (duplicates
    dropped); folder ``out/<ratio>pct_seed<seed>``."""
    jobs, seen = [], set()
    for ratio in ratios:
        key = f"{float(ratio):g}"
        for seed in seeds:
            if (key, int(seed)) not in seen:
                seen.add((key, int(seed)))
                jobs.append(Job(key, int(seed), Path(out) / f"{key}pct_seed{int(seed)}"))
    if not jobs:
        raise ValueError("a batch needs at least one ratio and one seed")
    return jobs


def execute_pipeline(job: Job, profile: str, parameters: dict, notebook=None) -> float:
    """Run the pipeline notebook for ``job`` with papermill (:func:`twist_lib.book.run_notebooks`:
    the executed copy and ``timings.json`` land in ``job.folder``); returns its seconds."""
    notebook = Path(notebook) if notebook else repo_root() / PIPELINE_NOTEBOOK
    result = run_notebooks([notebook], profile, job.folder, job.parameters(parameters))
    return sum(result.seconds.values())


def job_summary(job: Job, status: str = "ok", seconds: float | None = None,
                error: str = "") -> dict:
    """The summary row of a job: its last round's metrics and pseudo-label quality, and the
    total time of pseudo-labelling and training over its rounds (None where it has no rounds)."""
    row = {"job": job.name, "label_ratio": job.label_ratio, "seed": job.seed, "status": status,
           "seconds": None if seconds is None else round(seconds, 1)}
    try:
        rounds = read_rounds(job.run_dir)
    except FileNotFoundError:
        rounds = []
    last = rounds[-1] if rounds else {}
    row["rounds"] = last.get("round")
    for key in (*METRICS, "sem_acc", "offset_error", "coverage"):
        row[key] = last.get(key)
    for key in ("pseudo_s", "train_s"):
        row[key] = round(sum(r.get(key) or 0.0 for r in rounds), 1) if rounds else None
    row["run_dir"] = str(job.run_dir)
    row["error"] = error
    return row


SUMMARY_KEYS = ("job", "label_ratio", "seed", "status", "rounds", *METRICS, "sem_acc",
                "offset_error", "coverage", "pseudo_s", "train_s", "seconds", "run_dir", "error")


def summary_markdown(rows: list[dict]) -> str:
    """The summary as Markdown: one row per job (AP, AP50, AP25, mIoU in %), then the mean
    (± std over seeds) of the final AP50 per ratio beside the paper's final TWIST AP50 on
    ScanNet v2 (Table 7)."""
    lines = ["| job | status | rounds | AP | AP50 | AP25 | mIoU | pseudo sem_acc | pseudo coverage |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['job']} | {r['status']} | {table_cell(r['rounds'])} | "
                     + " | ".join(table_cell(r[k], True) for k in (*METRICS, "sem_acc", "coverage"))
                     + " |")
    lines += ["", "| label ratio | jobs | AP50 mean ± std (%) | paper, ScanNet v2 (Table 7, last round) |",
              "|---|---|---|---|"]
    for ratio in dict.fromkeys(r["label_ratio"] for r in rows):
        values = [100 * r["AP50"] for r in rows
                  if r["label_ratio"] == ratio and r["status"] == "ok" and r["AP50"] is not None]
        if values:
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            ours = f"{mean:.1f} ± {std:.1f}"
        else:
            ours = "–"
        paper = PAPER_TABLE7_AP50.get(ratio)
        lines.append(f"| {ratio} % | {len(values)} | {ours} | {paper[-1] if paper else '–'} |")
    return "\n".join(lines) + "\n"


def write_summary(rows: list[dict], out) -> tuple[Path, Path]:
    """Write ``out/summary.csv`` (every column of :data:`SUMMARY_KEYS`) and ``out/summary.md``
    (:func:`summary_markdown`); returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SUMMARY_KEYS))
        writer.writeheader()
        writer.writerows([{k: "" if r.get(k) is None else r.get(k) for k in SUMMARY_KEYS}
                          for r in rows])
    md_path.write_text(summary_markdown(rows))
    return csv_path, md_path


def run_batch(ratios, seeds, profile: str, out, parameters: dict | None = None, execute=None,
              log=print) -> list[dict]:
    """Run the pipeline notebook once per (ratio, seed) job (:func:`batch_jobs`) and write the
    summary (:func:`write_summary`); returns its rows.

    ``parameters`` are passed to every job (papermill ``-p``); ``label_ratio``, ``seed``,
    ``run_dir`` and ``profile`` are the batch's own. ``execute(job, profile, parameters)`` runs
    one job (default :func:`execute_pipeline`); a job that raises is recorded as failed and the
    batch goes on. The summary is rewritten after every job, so a killed batch keeps what ran.
    """
    parameters = dict(parameters or {})
    clash = sorted(set(parameters) & set(PER_JOB))
    if clash:
        raise ValueError(f"{clash}: set by the batch itself (--ratios, --seeds, --out, --profile)")
    execute = execute or execute_pipeline
    rows = []
    jobs = batch_jobs(ratios, seeds, out)
    for k, job in enumerate(jobs, start=1):
        log(f"[{k}/{len(jobs)}] {job.name}: label_ratio {job.label_ratio} %, seed {job.seed} "
            f"-> {job.folder}")
        job.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            execute(job, profile, parameters)
            row = job_summary(job, "ok", time.time() - t0)
        except Exception as e:  # noqa: BLE001 - one failed job must not stop the batch
            message = " ".join(str(e).split())[:500]
            log(f"[{k}/{len(jobs)}] {job.name} FAILED: {type(e).__name__}: {message}")
            row = job_summary(job, "failed", time.time() - t0, f"{type(e).__name__}: {message}")
        rows.append(row)
        write_summary(rows, out)
    return rows
