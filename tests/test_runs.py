"""twist_lib.runs, twist_lib.pipeline, twist_lib.book.batch and twist_lib.book.viz_rounds against
hand-made run folders: the rounds table, the per-scene quality and its improvement order, pseudo
labels per round, the pipeline's config, the batch runner (notebook execution stubbed) and its
summary, the command line, the plots; and, on a tiny trained run, the benchmark files of a
round."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from twist_lib import pipeline, runs, viz
from twist_lib.__main__ import main as twist_main
from twist_lib.book import batch as batch_runs
from twist_lib.book import viz_rounds
from twist_lib.book.cli import main as book_main
from twist_lib.config import Config
from twist_lib.data.classes import IGNORE_INDEX
from twist_lib.data.pseudo_files import write_pseudo_labels
from twist_lib.self_training import ROUND_KEYS

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# hand-made run folders
# ----------------------------------------------------------------------------------------------
def write_rounds(run: Path, rows: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "rounds.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROUND_KEYS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in ROUND_KEYS})


def rounds_rows(ap50=(0.3, 0.4, 0.45)):
    rows = []
    for t, a in enumerate(ap50):
        rows.append(dict(round=t, AP=a / 2, AP50=a, AP25=a + 0.1, miou=0.5 + t / 10, macc=0.6,
                         sem_acc="" if t == 0 else 0.7 + t / 10, sem_macc="",
                         offset_error="" if t == 0 else 0.2 - t / 20,
                         coverage="" if t == 0 else 0.3 * t, pseudo_s=0.0 if t == 0 else 5.0,
                         quality_s=0.0 if t == 0 else 1.0, train_s=10.0 + t))
    return rows


def write_quality(run: Path, t: int, per_scene: list[dict]) -> None:
    folder = run / f"round_{t}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pseudo_quality.json").write_text(json.dumps(
        {"sem_acc": 0.5, "coverage": 0.5, "offset_error": 0.1, "per_scene": per_scene}))


def scene(name, sem_acc, coverage, offset_error):
    return {"name": name, "sem_acc": sem_acc, "coverage": coverage, "offset_error": offset_error}


@pytest.fixture
def quality_run(tmp_path):
    """Three rounds of per-scene quality: b improves most, a a little, c gets worse, d has no
    pseudo label in round 1, e appears only in round 2."""
    run = tmp_path / "run"
    (run / "round_0").mkdir(parents=True)
    write_quality(run, 1, [scene("a", 0.80, 0.2, 0.30), scene("b", 0.50, 0.1, 0.50),
                           scene("c", 0.90, 0.4, 0.10), scene("d", None, 0.0, None)])
    write_quality(run, 2, [scene("a", 0.85, 0.3, 0.25), scene("b", 0.90, 0.5, 0.20),
                           scene("c", 0.70, 0.4, 0.40), scene("d", 0.60, 0.2, 0.30)])
    write_quality(run, 3, [scene("a", 0.86, 0.4, 0.20), scene("b", 0.95, 0.6, 0.10),
                           scene("c", 0.60, 0.5, 0.50), scene("d", 0.70, 0.3, 0.20),
                           scene("e", 0.99, 0.9, 0.05)])
    return run


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def test_read_rounds_numbers_and_missing_values(tmp_path):
    rows = rounds_rows()
    rows[2]["sem_acc"] = "nan"
    write_rounds(tmp_path, [rows[2], rows[0], rows[1]])          # any order on disk
    got = runs.read_rounds(tmp_path)
    assert [r["round"] for r in got] == [0, 1, 2] and isinstance(got[0]["round"], int)
    assert got[0]["AP50"] == pytest.approx(0.3) and got[1]["train_s"] == pytest.approx(11.0)
    assert got[0]["sem_acc"] is None and got[0]["coverage"] is None, "round 0 has no pseudo labels"
    assert got[2]["sem_acc"] is None, "NaN (nothing scored) reads as None"
    assert got[1]["coverage"] == pytest.approx(0.3)
    with pytest.raises(FileNotFoundError, match="rounds.csv"):
        runs.read_rounds(tmp_path / "nothing")


def test_round_folders_and_run_config(tmp_path):
    for name in ("round_0", "round_2", "round_10", "round_x", "rounds.csv"):
        (tmp_path / name).mkdir()
    assert list(runs.round_folders(tmp_path)) == [0, 2, 10]
    Config.for_profile("smoke", label_ratio="5", recorrection=False).save(tmp_path / "config.yaml")
    cfg = runs.run_config(tmp_path)
    assert cfg.profile == "smoke" and cfg.label_ratio == "5" and cfg.recorrection is False


def test_scene_quality_sorted_by_improvement(quality_run):
    table = runs.scene_quality(quality_run)
    assert [r["name"] for r in table] == ["b", "a", "e", "c", "d"]
    b, a, e, c, d = table
    assert b["improvement"] == pytest.approx(0.45) and a["improvement"] == pytest.approx(0.06)
    assert e["improvement"] == 0.0 and e["rounds"] == [3], "one round: no change"
    assert c["improvement"] == pytest.approx(-0.3)
    assert d["improvement"] is None, "no accuracy in its first round: last, not a number"
    assert d["sem_acc"] == {1: None, 2: 0.6, 3: 0.7} and d["rounds"] == [1, 2, 3]
    assert b["change"]["coverage"] == pytest.approx(0.5)
    assert b["change"]["offset_error"] == pytest.approx(-0.4)


def test_scene_quality_by_coverage_and_offset_error(quality_run):
    by_cov = runs.scene_quality(quality_run, by="coverage")
    assert [r["name"] for r in by_cov] == ["b", "d", "a", "c", "e"]
    by_off = runs.scene_quality(quality_run, by="offset_error")
    assert [r["name"] for r in by_off][:2] == ["b", "a"], "largest drop of the error first"
    assert by_off[-1]["name"] == "d" and by_off[-2]["name"] == "c"
    with pytest.raises(ValueError, match="by must be"):
        runs.scene_quality(quality_run, by="AP")


def test_sort_by_improvement_ties_by_name():
    rows = [{"name": n, "improvement": v} for n, v in (("z", 0.1), ("a", 0.1), ("m", None), ("b", 0.2))]
    assert [r["name"] for r in runs.sort_by_improvement(rows)] == ["b", "a", "z", "m"]


def labels(n, classes, instances, valid=None):
    semantic = np.asarray(classes, dtype=np.int64)
    return {"semantic": semantic, "offset": np.zeros((n, 3), np.float32),
            "offset_valid": semantic >= 0 if valid is None else valid,
            "instance": np.asarray(instances, dtype=np.int64)}


def test_pseudo_labels_by_round(tmp_path):
    run = tmp_path / "run"
    write_pseudo_labels(run / "round_1" / "pseudo" / "s0.npz",
                        labels(4, [IGNORE_INDEX, 2, 2, IGNORE_INDEX], [-100, 0, 0, -100]))
    write_pseudo_labels(run / "round_2" / "pseudo" / "s0.npz", labels(4, [1, 2, 2, 3], [1, 0, 0, 2]))
    write_pseudo_labels(run / "round_2" / "pseudo" / "other.npz", labels(4, [1] * 4, [0] * 4))
    (run / "round_0").mkdir()
    got = runs.pseudo_labels_by_round(run, "s0", num_points=4)
    assert list(got) == [1, 2]
    assert got[1]["instance"].tolist() == [-100, 0, 0, -100] and got[2]["semantic"].tolist() == [1, 2, 2, 3]
    with pytest.raises(ValueError, match="5"):
        runs.pseudo_labels_by_round(run, "s0", num_points=5)
    with pytest.raises(FileNotFoundError, match="nope"):
        runs.pseudo_labels_by_round(run, "nope")


# ----------------------------------------------------------------------------------------------
# the pipeline's config and job
# ----------------------------------------------------------------------------------------------
def test_pipeline_config_layers(monkeypatch):
    monkeypatch.chdir(ROOT / "book")
    monkeypatch.delenv("TWIST_PROFILE", raising=False)
    cfg = pipeline.pipeline_config("smoke", dataset="", rounds=None, label_ratio="", recorrection=None)
    smoke = Config.for_profile("smoke")
    assert cfg.rounds == smoke.rounds and cfg.label_ratio == smoke.label_ratio and cfg.recorrection
    assert cfg.run_dir == str(ROOT / "runs" / f"twist_synthetic_smoke_{smoke.label_ratio}pct")
    assert cfg.data_root == str(ROOT / smoke.data_root)
    cfg = pipeline.pipeline_config("smoke", rounds=0, seed=3, recorrection=False, label_ratio=5,
                               init_checkpoint="runs/sup", run_dir="runs/x")
    assert (cfg.rounds, cfg.seed, cfg.recorrection, cfg.label_ratio) == (0, 3, False, "5")
    assert cfg.init_checkpoint == str(ROOT / "runs" / "sup") and cfg.run_dir == str(ROOT / "runs" / "x")
    monkeypatch.setenv("TWIST_PROFILE", "smoke")
    assert pipeline.pipeline_config().profile == "smoke"
    with pytest.raises(KeyError, match="stepz"):
        pipeline.pipeline_config("smoke", stepz=3)
    with pytest.raises(ValueError, match="psi_augment"):
        pipeline.pipeline_config("smoke", psi_augment="everything")


def test_gpu_profile_takes_the_dataset_yaml(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert pipeline.default_config_file("gpu", "scannet") == "configs/twist_scannet.yaml"
    assert pipeline.default_config_file("cpu", "scannet") == ""
    assert pipeline.default_config_file("gpu", "nowhere") == ""
    cfg = pipeline.pipeline_config("gpu", dataset="scannet", data_root="data/scannet")
    yaml_cfg = Config.from_sources("gpu", "configs/twist_scannet.yaml")
    for key in ("rounds", "steps", "steps_per_round", "psi_grid", "psi_width", "model_size",
                "num_workers", "label_ratio"):
        assert getattr(cfg, key) == getattr(yaml_cfg, key), key
    assert cfg.dataset == "scannet" and cfg.data_root == str(ROOT / "data" / "scannet")
    assert cfg.run_dir == str(ROOT / "runs" / "twist_scannet_gpu_5pct")
    cfg = pipeline.pipeline_config("gpu", dataset="scannet", label_ratio="1", rounds=2,
                               config_file="configs/twist_s3dis.yaml")
    assert (cfg.label_ratio, cfg.rounds, cfg.data_root) == ("1", 2, str(ROOT / "data" / "s3dis")), \
        "parameters beat the YAML, a named YAML beats the default one"


def test_run_pipeline_refuses_a_run_of_other_settings(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "run_twist", lambda cfg, resume, root: calls.append(resume) or write_rounds(
        Path(cfg.run_dir), rounds_rows()))
    cfg = Config.for_profile("smoke", run_dir=str(tmp_path / "run"))
    assert [r["round"] for r in pipeline.run_pipeline(cfg)] == [0, 1, 2] and calls == [False]
    cfg.save(tmp_path / "run" / "config.yaml")
    more = Config.for_profile("smoke", run_dir=str(tmp_path / "run"), rounds=5, progress=False)
    pipeline.run_pipeline(more)
    assert calls == [False, True], "more rounds, other bookkeeping: resume"
    other = Config.for_profile("smoke", run_dir=str(tmp_path / "run"), recorrection=False)
    with pytest.raises(ValueError, match="recorrection True -> False"):
        pipeline.run_pipeline(other)
    assert pipeline.config_changes(tmp_path / "run", other) == {"recorrection": (True, False)}
    assert calls == [False, True], "nothing ran"


def test_same_dataset_folder_written_two_ways_is_no_change(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "data" / "x").mkdir(parents=True)
    (repo / "data" / "y").mkdir()
    (repo / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    run = repo / "runs" / "r"
    run.mkdir(parents=True)
    Config.for_profile("smoke", data_root="data/x").save(run / "config.yaml")   # the CLI's way
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    same = Config.for_profile("smoke", data_root=str(repo / "data" / "x"))    # the notebook's way
    assert pipeline.config_changes(run, same) == {}
    other = Config.for_profile("smoke", data_root=str(repo / "data" / "y"))
    assert pipeline.config_changes(run, other) == {"data_root": ("data/x", str(repo / "data" / "y"))}


# ----------------------------------------------------------------------------------------------
# the batch runner
# ----------------------------------------------------------------------------------------------
def test_batch_jobs_order_names_and_parameters(tmp_path):
    jobs = batch_runs.batch_jobs(["1", 5, "5.0", 0.5], [0, 1, 0], tmp_path)
    assert [j.name for j in jobs] == ["1pct_seed0", "1pct_seed1", "5pct_seed0", "5pct_seed1",
                                      "0.5pct_seed0", "0.5pct_seed1"]
    job = jobs[3]
    assert (job.label_ratio, job.seed, job.folder) == ("5", 1, tmp_path / "5pct_seed1")
    assert job.run_dir == tmp_path / "5pct_seed1" / "run"
    assert job.parameters({"rounds": 2}) == {"rounds": 2, "label_ratio": "5", "seed": 1,
                                             "run_dir": str(job.run_dir)}
    with pytest.raises(ValueError, match="at least one"):
        batch_runs.batch_jobs([], [0], tmp_path)


def fake_execute(fail_on=()):
    """A stand-in for the notebook: writes a rounds table whose AP50 depends on ratio and seed."""
    seen = []

    def execute(job, profile, parameters):
        seen.append((job.name, profile, job.parameters(parameters)))
        if job.name in fail_on:
            write_rounds(job.run_dir, rounds_rows()[:1])     # died after round 0
            raise RuntimeError("cell 7 failed\nwith a long traceback")
        ratio = float(job.label_ratio)
        write_rounds(job.run_dir, rounds_rows((0.1, 0.2, 0.3 + ratio / 100 + job.seed / 100)))
    return execute, seen


def test_run_batch_runs_every_job_and_writes_the_summary(tmp_path):
    execute, seen = fake_execute(fail_on={"5pct_seed0"})
    logged = []
    rows = batch_runs.run_batch([1, 5], [0, 1], "smoke", tmp_path, {"rounds": 2}, execute=execute,
                          log=logged.append)
    assert [s[0] for s in seen] == ["1pct_seed0", "1pct_seed1", "5pct_seed0", "5pct_seed1"]
    assert {s[1] for s in seen} == {"smoke"} and seen[1][2]["rounds"] == 2 and seen[1][2]["seed"] == 1
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"], "a failure does not stop it"
    assert rows[2]["error"] == "RuntimeError: cell 7 failed with a long traceback"
    assert rows[2]["rounds"] == 0 and rows[2]["AP50"] == pytest.approx(0.3), "what it got to"
    assert rows[1]["rounds"] == 2 and rows[1]["AP50"] == pytest.approx(0.32)
    assert rows[0]["train_s"] == pytest.approx(33.0) and rows[0]["pseudo_s"] == pytest.approx(10.0)
    assert any("FAILED" in line for line in logged)
    with (tmp_path / "summary.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["job"] for r in table] == ["1pct_seed0", "1pct_seed1", "5pct_seed0", "5pct_seed1"]
    assert tuple(table[0]) == batch_runs.SUMMARY_KEYS
    assert float(table[3]["AP50"]) == pytest.approx(0.36) and table[3]["sem_acc"] != ""
    md = (tmp_path / "summary.md").read_text()
    assert "| 1pct_seed1 | ok | 2 | 16.0 | 32.0 |" in md
    assert "| 1 % | 2 | 31.5 ± 0.5 | 17.1 |" in md, "mean ± std over seeds beside Table 7"
    assert "| 5 % | 1 | 36.0 ± 0.0 | 44.1 |" in md, "the failed job is left out of the mean"


def test_run_batch_rejects_parameters_it_sets_itself(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        batch_runs.run_batch([1], [0], "smoke", tmp_path, {"seed": 3}, execute=fake_execute()[0])


def test_batch_command_line(tmp_path, monkeypatch, capsys):
    execute, seen = fake_execute()
    monkeypatch.setattr(batch_runs, "execute_pipeline", lambda job, profile, p, notebook=None: execute(job, profile, p))
    out = tmp_path / "batch"
    code = book_main(["batch", "--ratios", "1", "5", "--seeds", "0", "1", "--profile", "smoke",
                      "--out", str(out), "-p", "rounds", "2", "-p", "recorrection", "false"])
    assert code == 0
    assert len(seen) == 4 and seen[0][2]["rounds"] == 2 and seen[0][2]["recorrection"] is False
    assert (out / "summary.csv").exists() and "summary.md" in capsys.readouterr().out
    execute, seen = fake_execute(fail_on={"1pct_seed0"})
    assert book_main(["batch", "--ratios", "1", "--out", str(tmp_path / "b2"), "--profile", "smoke"]) == 1
    assert book_main(["batch", "--ratios", "1", "--out", str(tmp_path / "b3"), "-p", "run_dir", "x"]) == 2


def test_execute_pipeline_hands_the_job_to_run_notebooks(tmp_path, monkeypatch):
    import twist_lib.book as book
    got = {}

    def run_notebooks(notebooks, profile, out_dir, parameters):
        got.update(notebooks=notebooks, profile=profile, out_dir=out_dir, parameters=parameters)
        return book.RunResult(Path(out_dir), profile, {"pipeline.ipynb": 12.5})
    monkeypatch.setattr(batch_runs, "run_notebooks", run_notebooks)
    monkeypatch.chdir(ROOT)
    job = batch_runs.batch_jobs([10], [2], tmp_path)[0]
    assert batch_runs.execute_pipeline(job, "cpu", {"rounds": 1}) == 12.5
    assert got["notebooks"] == [ROOT / "book" / "pipeline.ipynb"] and got["out_dir"] == job.folder
    assert got["parameters"] == {"rounds": 1, "label_ratio": "10", "seed": 2, "run_dir": str(job.run_dir)}


def test_rounds_and_scenes_commands(tmp_path, quality_run, capsys):
    write_rounds(quality_run, rounds_rows())
    assert twist_main(["runs", "rounds", str(quality_run)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 20.0 | 40.0 |" in out and "| round | AP |" in out
    assert twist_main(["runs", "scenes", str(quality_run), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("| b | 0.45")
    assert twist_main(["runs", "rounds", str(tmp_path / "none")]) == 2


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def test_round_figures():
    rows = [{k: (None if v == "" else v) for k, v in r.items()} for r in rounds_rows()]
    fig = viz_rounds.rounds_figure(rows, label_ratio="5")
    ours, paper = fig.data[:4], fig.data[4:]
    assert [t.name for t in ours] == ["AP", "AP50", "AP25", "mIoU"]
    assert list(ours[1].y) == pytest.approx([30.0, 40.0, 45.0])
    assert len(paper) == 4 and list(paper[1].y) == list(runs.PAPER_TABLE7_AP50["5"])
    assert paper[1].line.width > paper[0].line.width, "the run's ratio is drawn thick"
    q = viz_rounds.quality_figure(rows)
    assert [list(t.x) for t in q.data] == [[1, 2]] * 3, "round 0 has no pseudo labels"
    assert list(q.data[0].y) == pytest.approx([80.0, 90.0])
    timing = viz_rounds.timing_figure(rows)
    assert timing.layout.barmode == "stack" and list(timing.data[2].y) == [10.0, 11.0, 12.0]


def browser_inputs(n=500, rounds=(1, 2)):
    rng = np.random.default_rng(0)
    stored = {"xyz": rng.random((n, 3)).astype(np.float32),
              "semantic": rng.integers(0, 3, n), "instance": rng.integers(-1, 4, n) * 1}
    stored["instance"][stored["instance"] < 0] = IGNORE_INDEX
    by_round = {}
    for t in rounds:
        sem = np.where(rng.random(n) < 0.3 * t, rng.integers(0, 3, n), IGNORE_INDEX)
        by_round[t] = {"semantic": sem, "instance": np.where(sem >= 0, rng.integers(0, 5, n), IGNORE_INDEX)}
    return stored, by_round


@pytest.mark.parametrize("colour_by", ["semantic", "instance"])
def test_pseudo_label_browser_slider_over_rounds(colour_by):
    stored, by_round = browser_inputs()
    fig = viz_rounds.pseudo_label_browser(stored, by_round, colour_by, class_names=["a", "b", "c"],
                                          max_points=200)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["round 1", "round 2"] and fig.layout.sliders[0].active == 1
    gt = [i for i, t in enumerate(fig.data) if t.scene == "scene2"]
    assert gt and all(s.args[0]["visible"][i] for s in steps for i in gt), "ground truth always shown"
    for step in steps:                      # each round: its own traces on the left, 200 points
        left = [t for t, v in zip(fig.data, step.args[0]["visible"]) if v and t.scene != "scene2"]
        assert sum(len(t.x) for t in left) == 200
    assert [t.visible for t in fig.data] == list(steps[1].args[0]["visible"])
    assert "round 2" in fig.layout.title.text
    left = [t for t, v in zip(fig.data, steps[0].args[0]["visible"]) if v and t.scene != "scene2"]
    colours = [c for t in left for c in viz.point_colours(t)]
    xyz = np.concatenate([np.stack([t.x, t.y, t.z], 1) for t in left])
    idx = viz.subsample(len(stored["xyz"]), 200, 0)
    unlabelled = {tuple(p) for p in stored["xyz"][idx][by_round[1]["semantic"][idx] < 0]}
    grey = {tuple(p) for p, c in zip(xyz, colours) if c == viz.GREY}
    assert grey == unlabelled, "grey = exactly the points without a pseudo label"


def test_pseudo_label_browser_errors():
    stored, by_round = browser_inputs()
    with pytest.raises(ValueError, match="colour_by"):
        viz_rounds.pseudo_label_browser(stored, by_round, "rgb")
    with pytest.raises(ValueError, match="no round"):
        viz_rounds.pseudo_label_browser(stored, {})


def test_scene_table_html_sorted_and_sortable(quality_run):
    table = runs.scene_quality(quality_run)
    page = viz_rounds.scene_table_html(table)
    assert "twistSortTable" in page and "<script>" in page
    order = [page.index(f'<td data-value="{n}">') for n in ("b", "a", "e", "c", "d")]
    assert order == sorted(order), "rows in improvement order without JavaScript"
    assert '<td data-value="0.45">+45.0%</td>' in page
    assert page.count("<th ") == 3 + 2 * 3 and "accuracy, round 3" in page
    assert '<td data-value="">–</td>' in page
    short = viz_rounds.scene_table_html(table, max_rows=2)
    assert short.count("<tr>") == 1 + 2 and "improved most" in short
    assert '<td data-value="b">' in short and '<td data-value="d">' in short, "head and tail"


# ----------------------------------------------------------------------------------------------
# benchmark files of a trained round (a tiny real run)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from twist_lib.data.splits import write_label_splits
    from twist_lib.self_training import run_twist
    from twist_lib.synthetic import generate_dataset
    root = tmp_path_factory.mktemp("runs_data")
    data = root / "data"
    generate_dataset(data, 6, size="cpu", seed=5, val_fraction=0.34, progress=False)
    write_label_splits(data, ratios=(50,), seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = Config.for_profile("smoke", data_root=str(data), run_dir=str(root / "run"),
                                 label_ratio="50", rounds=0, steps=2, progress=False,
                                 cluster_min_points=5, eval_min_region=5, val_scenes=0)
        run_twist(cfg)
    finally:
        torch.set_num_threads(threads)
    return cfg


def test_export_predictions_scores_like_the_run(trained_run, tmp_path):
    from twist_lib.data import read_meta
    from twist_lib.evaluation import ClassSpec, evaluate_dirs
    cfg = trained_run
    out = pipeline.export_predictions(cfg.run_dir, out=tmp_path / "bench", progress=False)
    val = read_meta(cfg.data_root)["splits"]["val"]
    assert sorted(p.stem for p in (out / "pred").glob("*.txt")) == sorted(val)
    assert sorted(p.stem for p in (out / "gt").glob("*.txt")) == sorted(val)
    spec = ClassSpec.from_meta(read_meta(cfg.data_root))
    result = evaluate_dirs(out / "gt", out / "pred", spec, cfg.eval_min_region, progress=False)
    metrics = json.loads((Path(cfg.run_dir) / "round_0" / "metrics.json").read_text())
    for key in ("AP", "AP50", "AP25"):
        ours, theirs = result[key], metrics[key]
        assert (math.isnan(ours) and theirs is None) or ours == pytest.approx(theirs), key
    with pytest.raises(FileNotFoundError, match="round 3"):
        pipeline.export_predictions(cfg.run_dir, round_index=3, out=tmp_path / "x", progress=False)


def test_predict_command_prints_the_evaluate_line(trained_run, tmp_path, capsys):
    assert twist_main(["runs", "predict", trained_run.run_dir, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"--gt {tmp_path / 'b' / 'gt'} --pred {tmp_path / 'b' / 'pred'}" in out
