"""twist_lib.experiments: the spec file and its errors, run folders and dependency order, running
a tiny spec at the smoke profile (train + TWIST from its round 0), a second run that starts
nothing, a killed run resumed (not restarted), failures recorded while the batch goes on, the
job lock, the collected CSV against the run folders' own files, and summarise by hand."""
from __future__ import annotations

import csv
import json
import math
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from twist_lib import experiments as ex
from twist_lib import result_tables as rt

ROOT = Path(__file__).resolve().parents[1]
FAST = {"rounds": 1, "val_scenes": 1}  # smoke profile: 6 steps, rounds of 4 steps


def write_spec(folder: Path, runs: list[dict], params: dict | None = None, name="spec.yaml"):
    """A spec file at the smoke profile with its run folders below ``folder/runs``."""
    path = folder / name
    path.write_text(yaml.safe_dump({"profile": "smoke", "out": str(folder / "runs"),
                                    "params": params or {}, "runs": runs}, sort_keys=False))
    return path


def train(row="sup_only", **kw):
    return {"table": "t1", "row": row, "kind": "train", "ratios": [50], "seeds": [0], **kw}


def twist(row="twist", init="sup_only", **kw):
    return {"table": "t1", "row": row, "kind": "twist", "ratios": [50], "seeds": [0],
            "init_from": init, **kw}


def ok_params(data_root, **kw):
    return {"data_root": str(data_root), **FAST, **kw}


# ----------------------------------------------------------------------------------------------
# the spec file
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry, message", [
    (train("bad", kind="finetune"), "kind must be train or twist"),
    (train("bad", params={"stepz": 3}), "unknown config key 'stepz' (did you mean 'steps'?)"),
    (train("bad", params={"steps": "many"}), "'steps' must be int"),
    (train("bad", params={"psi_augment": "all"}), "psi_augment"),
    (train("bad", params={"run_dir": "x"}), "set per run"),
    (train("bad", color="red"), "unknown key 'color'"),
    (train("bad", ratios=[0]), "ratios must be"),
    (train("bad", ratios="5"), "ratios must be"),
    (train("bad", seeds=[0.5]), "seeds must be"),
    (train("bad", init_from="other"), "init_from is for kind: twist"),
    (twist(init="nowhere"), "init_from 'nowhere' must name a train row"),
    (twist(init="t1/twist"), "init_from 't1/twist' must name a train row"),
    (twist(init="sup_only", seeds=[0, 7]), "with ratio 50 and seed 7"),
    (train("bad", extends="twist"), "extends is for kind: twist"),
    (twist("longer", extends="sup_only"), "extends 'sup_only' must name a twist row"),
    (twist("longer", extends="nowhere"), "extends 'nowhere' must name a twist row"),
])
def test_spec_errors_name_the_file_and_the_entry(tmp_path, entry, message):
    path = write_spec(tmp_path, [train(), entry])
    with pytest.raises(ex.SpecError) as err:
        ex.load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}: runs[1]") and message in text, text
    if isinstance(entry.get("row"), str):
        assert f"(t1/{entry['row']})" in text


def test_duplicate_run_folders_and_bad_files_are_errors(tmp_path):
    path = write_spec(tmp_path, [train(seeds=[0, 1]), train(seeds=[1])])
    with pytest.raises(ex.SpecError, match=r"runs\[1\] \(t1/sup_only\): run folder .*"
                                           r"sup_only/50pct_seed1 is also that of .*runs\[0\]"):
        ex.load_spec(path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ex.SpecError, match="list.yaml: not a spec file"):
        ex.load_spec(tmp_path / "list.yaml")
    with pytest.raises(ex.SpecError, match="missing.yaml: not a spec file"):
        ex.load_spec(tmp_path / "missing.yaml")
    path = write_spec(tmp_path, [train()], params={"lr": 0.1, "profil": "x"}, name="p.yaml")
    with pytest.raises(ex.SpecError, match=r"p.yaml: params: unknown config key 'profil'"):
        ex.load_spec(path)
    (tmp_path / "top.yaml").write_text("runs: []\nseeds: [0]\n")
    with pytest.raises(ex.SpecError, match="top.yaml: unknown key 'seeds'"):
        ex.load_spec(tmp_path / "top.yaml")


@pytest.mark.parametrize("params, message", [
    ({"rounds": 3, "psi_lr": 0.5}, "the same params but rounds (not psi_lr)"),
    ({"rounds": 1}, "at most its 1 rounds"),
])
def test_extends_needs_the_same_run_with_fewer_rounds(tmp_path, params, message):
    base = twist(params={"rounds": 2})
    path = write_spec(tmp_path, [train(), base, twist("longer", extends="twist", params=params)])
    with pytest.raises(ex.SpecError, match=r"runs\[2\] \(t1/longer\): extends 'twist' needs a "
                                           r"twist run with " + re.escape(message)):
        ex.load_spec(path)
    other = write_spec(tmp_path, [train(), train("other"), base, twist(
        "longer", init="other", extends="twist", params={"rounds": 3})], name="other.yaml")
    with pytest.raises(ex.SpecError, match="with the same init_from"):
        ex.load_spec(other)


def test_run_folders_overrides_and_dependency_order(tmp_path):
    # the TWIST rows come first in the file, their round 0 (another table's) later
    path = write_spec(tmp_path, [
        {"table": "t4", "row": "V", "kind": "twist", "ratios": [5, 10], "seeds": [0],
         "init_from": "t1/sup_only", "params": {"recorrection": False}},
        {"table": "t1", "row": "sup_only", "kind": "train", "ratios": [5, 10.0, 20], "seeds": [0],
         "params": {"steps": 9}}], params={"lr": 0.05})
    spec = ex.load_spec(path)
    names = [r.name for r in spec.runs]
    assert names == ["t4/V/5pct_seed0", "t4/V/10pct_seed0", "t1/sup_only/5pct_seed0",
                     "t1/sup_only/10pct_seed0", "t1/sup_only/20pct_seed0"]
    v5 = spec.runs[0]
    assert v5.folder == f"{tmp_path}/runs/t4/V/5pct_seed0"
    assert v5.init_from is spec.runs[2]
    assert v5.overrides() == {"cpu_threads": 1, "progress": False, "lr": 0.05,
                              "recorrection": False, "run_dir": v5.folder, "label_ratio": "5",
                              "seed": 0, "init_checkpoint": spec.runs[2].folder}
    assert (v5.cfg.profile, v5.cfg.lr, v5.cfg.recorrection, v5.cfg.rounds) == ("smoke", 0.05,
                                                                               False, 2)
    assert spec.runs[2].cfg.steps == 9 and v5.cfg.steps == 6
    cmd = v5.command()
    assert cmd[:7] == [sys.executable, "-m", "twist_lib", "twist", "--profile", "smoke",
                       "--resume-if-exists"]
    assert "progress=false" in cmd and "label_ratio=\"5\"" in cmd
    order = [r.name for r in ex.plan(spec)]
    assert order == ["t1/sup_only/5pct_seed0", "t4/V/5pct_seed0", "t1/sup_only/10pct_seed0",
                     "t4/V/10pct_seed0", "t1/sup_only/20pct_seed0"]
    # --only t4 still runs the round 0 it needs from t1, not t1's other runs
    assert [r.name for r in ex.plan(spec, ["t4"])] == order[:4]
    with pytest.raises(ex.SpecError, match="no table t9"):
        ex.plan(spec, ["t9"])
    # a run that extends another (table t7, listed first) comes after it and its round 0
    path = write_spec(tmp_path, [
        twist("five", extends="t1/twist", init="t1/sup_only", params={"rounds": 5}, table="t7"),
        train(), twist()], name="t7.yaml")
    spec = ex.load_spec(path)
    assert [r.name for r in ex.plan(spec, ["t7"])] == [
        "t1/sup_only/50pct_seed0", "t1/twist/50pct_seed0", "t7/five/50pct_seed0"]
    assert spec.runs[0].needs == [spec.runs[1], spec.runs[2]]


def test_the_repository_specs_load():
    tables = ex.load_spec(ROOT / "experiments" / "paper_tables.yaml")
    rows: dict = {}
    for run in tables.runs:
        rows.setdefault((run.table, run.row), []).append(run)
        assert run.cfg.profile == "hard" and run.cfg.amp is False  # float32 on a GPU too
    assert set(t for t, _ in rows) == {"table1", "convergence", "table4", "table5", "table6",
                                       "fig4b", "extensions", "ttr"}
    for (table, row), runs in rows.items():  # the convergence check: one long run per ratio,
        # judged against the seed spread of table1's Sup-only runs
        assert len({r.seed for r in runs}) >= 2 or table == "convergence", (table, row)
        assert all(r.init_from is not None for r in runs if r.kind == "twist")
    assert {r.ratio for r in rows[("table1", "twist")]} == {"1", "5", "10", "20"}
    assert {r.ratio for r in rows[("table1", "sup_only")]} == {"1", "5", "10", "20", "100"}
    assert {r.cfg.steps for r in rows[("convergence", "sup_only_2x")]} == {
        2 * rows[("table1", "sup_only")][0].cfg.steps}
    iv, v = rows[("table4", "IV")][0].cfg, rows[("table4", "V")][0].cfg
    assert (iv.pseudo_update, iv.recorrection, v.pseudo_update, v.recorrection) == (
        "pointwise", False, "proposal", False)
    assert rows[("table4", "II")][0].init_from.name == "table1/sup_only/5pct_seed0"
    assert rows[("fig4b", "without_B")][0].init_from.cfg.label_noise == 0.1
    # the cpu benchmark's specs share their Sup-only runs; Table 7 extends Table 1's runs
    cpu = {r.name: r for r in ex.load_spec(ROOT / "experiments" / "cpu_table1.yaml").runs}
    ablations = ex.load_spec(ROOT / "experiments" / "cpu_ablations.yaml").runs
    assert {r.init_from.folder for r in ablations if r.kind == "twist"} == {
        cpu[f"table1/sup_only/1pct_seed{s}"].folder for s in (0, 1)}
    method = ex.load_spec(ROOT / "experiments" / "cpu_method.yaml").runs
    assert {r.init_from.folder for r in method if r.kind == "twist"} == {
        cpu[f"table1/sup_only/{q}pct_seed{s}"].folder for s in (0, 1) for q in (1, 5)}
    assert {(r.row, r.cfg.pseudo_offset_split, r.cfg.pseudo_point_confidence)
            for r in method if r.kind == "twist"} == {("split", 4, 0.0), ("confident", 0, 0.7)}
    seven = [r for r in cpu.values() if r.table == "table7"]
    assert len(seven) == 8 and all(r.cfg.rounds == 5 and r.extends.cfg.rounds == 3
                                   and r.extends.row == r.row for r in seven)
    smoke = ex.load_spec(ROOT / "experiments" / "smoke.yaml")
    assert {r.cfg.profile for r in smoke.runs} == {"smoke"}
    assert {r.row for r in smoke.runs} == {"sup_only", "control", "twist"}


# ----------------------------------------------------------------------------------------------
# running a tiny spec
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def done(data_root, tmp_path_factory):
    """Sup-only, then TWIST from its round 0, run by ``run_spec`` with two job slots."""
    folder = tmp_path_factory.mktemp("experiments")
    spec = ex.load_spec(write_spec(folder, [train(), twist()], ok_params(data_root)))
    lines: list[str] = []
    result = ex.run_spec(spec, jobs=2, root=folder, echo=lines.append)
    return spec, folder, result, lines


def _folder(spec, name):
    return Path(next(r.folder for r in spec.runs if r.name == name))


def test_run_does_train_then_twist_from_its_round_0(done):
    spec, folder, result, lines = done
    assert result == {"done": ["t1/sup_only/50pct_seed0", "t1/twist/50pct_seed0"], "failed": [],
                      "skipped": []}, "\n".join(lines)
    verbs = [line.split()[1] for line in lines]
    assert verbs == ["plan", "start", "done", "start", "done", "end"]
    base, run = _folder(spec, "t1/sup_only/50pct_seed0"), _folder(spec, "t1/twist/50pct_seed0")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["init_checkpoint"] == str(base) and config["cpu_threads"] == 1
    assert config["progress"] is False and config["label_ratio"] == "50"
    assert (run / "round_1" / "metrics.json").is_file() and (base / "metrics.json").is_file()
    assert "start (fresh)" in (run / "job.log").read_text()
    assert [a["returncode"] for a in json.loads((run / "job.json").read_text())["attempts"]] == [0]
    assert ex.status(spec, folder).splitlines()[-1] == "2 done"


def test_a_second_run_starts_nothing_and_touches_no_file(done):
    spec, folder, _, _ = done
    files = [p for p in Path(spec.out).rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    lines: list[str] = []
    result = ex.run_spec(spec, jobs=2, root=folder, echo=lines.append)
    assert result == {"done": [], "failed": [], "skipped": []}
    assert "0 of 2 run(s) to do" in lines[0] and len(lines) == 2
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_collect_matches_the_run_folders_own_files(done, tmp_path):
    spec, folder, _, _ = done
    rows = ex.collect(spec, folder)
    base, run = _folder(spec, "t1/sup_only/50pct_seed0"), _folder(spec, "t1/twist/50pct_seed0")
    metrics = json.loads((base / "metrics.json").read_text())
    attempts = json.loads((base / "job.json").read_text())["attempts"]
    assert rows[0] == {"table": "t1", "row": "sup_only", "kind": "train", "label_ratio": "50",
                       "seed": 0, "round": 0, "AP": metrics["AP"], "AP50": metrics["AP50"],
                       "AP25": metrics["AP25"], "mIoU": metrics["miou"],
                       "train_s": attempts[0]["seconds"], "steps": 6}
    with (run / "rounds.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["round"] for r in rows[1:]] == [0, 1] == [int(t["round"]) for t in table]
    for row, cells in zip(rows[1:], table):
        assert row["steps"] == 6 + 4 * row["round"]  # Sup-only's 6 steps, then 4 a round
        for column in rt.VALUES[:-1]:
            cell = cells["miou" if column == "mIoU" else column]
            value = None if cell in ("", "nan") else float(cell)
            assert row[column] == value, (column, row[column], cell)
    # the command line writes the same rows, and the summary beside them
    out, summary = tmp_path / "r.csv", tmp_path / "s.csv"
    assert ex.main(["collect", str(spec.path), "--root", str(folder), "--csv", str(out),
                    "--summary", str(summary)]) == 0
    with out.open(newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == list(rt.COLUMNS) and len(written) == 3
    assert written[0]["mIoU"] == str(metrics["miou"]) and written[0]["sem_acc"] == ""
    with summary.open(newline="") as f:
        assert list(next(csv.DictReader(f))) == list(rt.SUMMARY_COLUMNS)
    # an earlier session's rows (their run folders gone) survive a new collect; this session's
    # runs replace their own published rows; --replace keeps only what the folders hold
    earlier = {**written[0], "label_ratio": "1", "seed": "7", "AP50": "0.123"}
    stale = {**written[0], "AP50": "0.999"}
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=rt.COLUMNS)
        writer.writeheader()
        writer.writerows([earlier, stale])
    assert ex.main(["collect", str(spec.path), "--root", str(folder), "--csv", str(out)]) == 0
    with out.open(newline="") as f:
        merged = list(csv.DictReader(f))
    assert len(merged) == 4 and merged[0]["seed"] == "7" and merged[0]["AP50"] == "0.123"
    assert "0.999" not in {r["AP50"] for r in merged} and merged[1:] == written
    assert ex.main(["collect", str(spec.path), "--root", str(folder), "--csv", str(out),
                    "--replace"]) == 0
    with out.open(newline="") as f:
        assert list(csv.DictReader(f)) == written


def test_seeds_ratios_and_settings_on_the_command_line(done, capsys):
    spec, folder, _, _ = done
    args = ["status", str(spec.path), "--root", str(folder)]
    assert ex.main(args + ["--seeds", "1"]) == 0  # no run of seed 1: an empty table
    assert capsys.readouterr().out.split("\n")[:2] == ["run  kind   state    detail", ""]
    assert ex.main(args + ["--seeds", "0", "--ratios", "50"]) == 0
    assert capsys.readouterr().out.strip().endswith("2 done")
    assert ex.main(args + ["--ratios", "5"]) == 0
    assert "t1/" not in capsys.readouterr().out
    # --set: only what does not change results, and it reaches every run's command
    assert ex.main(args + ["--set", "steps=3"]) == 2
    assert "only num_workers" in capsys.readouterr().err
    settings = ex.with_settings(ex.load_spec(spec.path), {"num_workers": 2, "device": "cpu"})
    for run in settings.runs:
        assert "num_workers=2" in run.command() and run.cfg.num_workers == 2
        assert 'device="cpu"' in run.command()


def test_status_on_the_command_line(done):
    spec, folder, _, _ = done
    proc = subprocess.run([sys.executable, "-m", "twist_lib.experiments", "status",
                           str(spec.path), "--root", str(folder), "--only", "t1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "t1/twist/50pct_seed0" in proc.stdout and proc.stdout.strip().endswith("2 done")
    proc = subprocess.run([sys.executable, "-m", "twist_lib.experiments", "status",
                           str(spec.path), "--only", "t7"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no table t7" in proc.stderr


def test_a_killed_run_resumes_where_it_stopped(data_root, tmp_path):
    spec_path = write_spec(tmp_path, [train()], ok_params(data_root, steps=40, ckpt_every=4))
    spec = ex.load_spec(spec_path)
    run = Path(spec.runs[0].folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runner = subprocess.Popen([sys.executable, "-m", "twist_lib.experiments", "run",
                               str(spec_path), "--root", str(tmp_path)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and runner.poll() is None:
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its job, as a stopped machine would
    runner.wait()
    while (state_detail := ex.describe(spec.runs[0], tmp_path))[0] == "running":
        assert time.time() < deadline, "the killed job still holds its lock"
        time.sleep(0.05)  # the job dies a moment after the runner
    state, detail = state_detail
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"
    with (run / "log.csv").open(newline="") as f:
        first = next(csv.DictReader(f))
    assert state == "partial" and detail.startswith("step ") and detail.endswith("/40")
    lines: list[str] = []
    assert ex.run_spec(spec, root=tmp_path, echo=lines.append)["done"] == [spec.runs[0].name]
    assert "resuming: step" in lines[1]
    with (run / "log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # a restart would have logged step 2 again, at another time (validation adds columns)
    assert {k: rows[0][k] for k in first} == first
    assert int(rows[-1]["step"]) == 40
    log = (run / "job.log").read_text()
    assert log.count(" start (") == 2 and "start (resuming: step" in log


def test_a_partial_twist_run_resumes_and_keeps_its_finished_rounds(done, data_root, tmp_path):
    spec = done[0]
    shutil.copytree(spec.out, tmp_path / "runs")  # the same runs, round 1 of TWIST unfinished
    copy = ex.load_spec(write_spec(tmp_path, [train(), twist()], ok_params(data_root)))
    run = Path(copy.runs[1].folder)
    (run / "round_1" / "metrics.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (run / "round_0").rglob("*") if p.is_file()}
    kept[Path(copy.runs[0].folder) / "metrics.json"] = (
        Path(copy.runs[0].folder) / "metrics.json").stat().st_mtime_ns
    assert ex.describe(copy.runs[1], tmp_path) == ("partial", "rounds 0-0 of 0-1 done")
    lines: list[str] = []
    assert ex.run_spec(copy, root=tmp_path, echo=lines.append)["done"] == [copy.runs[1].name]
    assert "1 of 2 run(s) to do" in lines[0] and "resuming: rounds 0-0 of 0-1 done" in lines[1]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert [r["round"] for r in ex.collect(copy, tmp_path)[1:]] == [0, 1]


def test_a_run_that_extends_another_copies_its_rounds_and_trains_only_the_new_ones(
        done, data_root, tmp_path):
    # the reference: the same 2-round TWIST run trained from its round 0 in one go
    shutil.copytree(done[0].out, tmp_path / "runs")
    spec = ex.load_spec(write_spec(tmp_path, [train(), twist(), twist(
        "longer", extends="twist", params={"rounds": 2}), twist("fresh", params={"rounds": 2})],
        ok_params(data_root)))
    base, run, fresh = (Path(r.folder) for r in spec.runs[1:])
    kept = {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()}
    lines: list[str] = []
    result = ex.run_spec(spec, jobs=1, root=tmp_path, echo=lines.append)
    assert result["done"] == ["t1/longer/50pct_seed0", "t1/fresh/50pct_seed0"], lines
    assert "(twist; from a copy of rounds 0-1 of 50pct_seed0)" in lines[1]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the extended run is untouched
    for k in (0, 1):  # copied, not trained again: the original's files, times and all
        for f in (base / f"round_{k}").rglob("*"):
            if f.is_file():
                copy = run / f.relative_to(base)
                assert copy.read_bytes() == f.read_bytes(), f
                assert copy.stat().st_mtime_ns == f.stat().st_mtime_ns, f
    ours, theirs = ex.collect(spec, tmp_path)[-6:-3], ex.collect(spec, tmp_path)[-3:]
    assert [r["round"] for r in ours] == [0, 1, 2]
    for a, b in zip(ours, theirs):  # the same numbers as the run trained in one go
        for column in ("AP", "AP50", "mIoU", "sem_acc", "offset_error", "steps"):
            assert a[column] == b[column], (a["round"], column)


def test_failures_are_recorded_and_the_batch_goes_on(tmp_path):
    # no dataset there: both Sup-only jobs fail (started together: two slots), the TWIST run
    # that needs one of them is skipped, not started
    spec = ex.load_spec(write_spec(tmp_path, [train(), train("other"), twist()],
                                   {"dataset": "scannet", "data_root": str(tmp_path / "none")}))
    lines: list[str] = []
    result = ex.run_spec(spec, jobs=2, root=tmp_path, echo=lines.append)
    assert (result["done"], result["skipped"]) == ([], ["t1/twist/50pct_seed0"]), "\n".join(lines)
    assert set(result["failed"]) == {"t1/sup_only/50pct_seed0", "t1/other/50pct_seed0"}
    assert [line.split()[1] for line in lines[:3]] == ["plan", "start", "start"]
    assert any(line.split()[1:] == ["skip", "t1/twist/50pct_seed0:", "needs",
                                    "t1/sup_only/50pct_seed0,", "not", "finished"]
               for line in lines), "\n".join(lines)
    state, detail = ex.describe(spec.runs[0], tmp_path)
    assert state == "failed" and "last attempt rc 2" in detail
    assert "meta.json" in (Path(spec.runs[0].folder) / "job.log").read_text()
    assert ex.describe(spec.runs[2], tmp_path)[0] == "missing"


def test_a_run_that_a_job_holds_is_never_started_twice(tmp_path):
    spec = ex.load_spec(write_spec(tmp_path, [train()], {"data_root": str(tmp_path)}))
    folder = Path(spec.runs[0].folder)
    fd = ex._lock(folder)  # as a job of another `run` would hold it
    try:
        assert ex.describe(spec.runs[0], tmp_path)[0] == "running"
        lines: list[str] = []
        assert ex.run_spec(spec, root=tmp_path, echo=lines.append)["skipped"] == [
            spec.runs[0].name]
        assert "another job runs it" in lines[1] and not (folder / "job.log").exists()
    finally:
        os.close(fd)
    assert ex.describe(spec.runs[0], tmp_path)[0] == "missing"


# ----------------------------------------------------------------------------------------------
# summarise
# ----------------------------------------------------------------------------------------------
def test_summarise_by_hand():
    def row(seed, rnd, ap, miou, ratio="5", table="t1"):
        return {"table": table, "row": "twist", "kind": "twist", "label_ratio": ratio,
                "seed": seed, "round": rnd, "AP": ap, "mIoU": miou, "steps": 10}
    rows = [row(0, 0, 0.2, 1.0), row(1, 0, 0.4, ""), row(2, 0, "nan", 4.0),
            row(0, 1, "0.5", 2.0), row(0, 0, 0.9, 0.5, ratio="10"),
            row(1, 1, 0.7, 3.0), row(2, 1, 0.0, 7.0)]
    out = rt.summarise(rows)
    assert [(s["label_ratio"], s["round"], s["seeds"]) for s in out] == [
        ("5", 0, "0 1 2"), ("5", 1, "0 1 2"), ("10", 0, "0")]
    r0, r1, single = out
    # round 0: AP over 0.2 and 0.4 (nan left out): mean 0.3, std sqrt(2 * 0.1^2 / 1)
    assert r0["AP_n"] == 2 and r0["AP_mean"] == pytest.approx(0.3)
    assert r0["AP_std"] == pytest.approx(math.sqrt(0.02))
    # mIoU over 1 and 4 (the empty cell left out): mean 2.5, std sqrt((1.5^2 + 1.5^2) / 1)
    assert (r0["mIoU_n"], r0["mIoU_mean"]) == (2, 2.5)
    assert r0["mIoU_std"] == pytest.approx(math.sqrt(4.5))
    # round 1: AP 0.5, 0.7, 0.0: mean 0.4, std sqrt((0.01 + 0.09 + 0.16) / 2)
    assert r1["AP_mean"] == pytest.approx(0.4) and r1["AP_std"] == pytest.approx(math.sqrt(0.13))
    # mIoU 2, 3, 7: mean 4, std sqrt((4 + 1 + 9) / 2)
    assert r1["mIoU_mean"] == 4.0 and r1["mIoU_std"] == pytest.approx(math.sqrt(7))
    assert (r1["steps_mean"], r1["steps_std"], r1["steps_n"]) == (10.0, 0.0, 3)
    # one seed: a mean, no spread; a column nobody has: n = 0
    assert (single["AP_mean"], single["AP_std"], single["AP_n"]) == (0.9, None, 1)
    assert [single[f"coverage_{s}"] for s in ("mean", "std", "n")] == [None, None, 0]
    assert set(rt.SUMMARY_COLUMNS) == set(r0)
