"""The experiments page's arithmetic (``twist_lib.book.experiments_page``) on hand-written rows:
means and spreads over seeds, the verdict rule, shared rows, and the tables and figure."""
from __future__ import annotations

import csv

import pytest

from twist_lib.book import experiments_page as ep
from twist_lib.result_tables import COLUMNS


def row(table, name, ratio, seed, rnd, ap50, kind="twist"):
    return {"table": table, "row": name, "kind": kind, "label_ratio": str(ratio), "seed": seed,
            "round": rnd, "AP": ap50 - 0.2, "AP50": ap50, "AP25": ap50 + 0.05, "mIoU": 0.5,
            **{k: None for k in ("sem_acc", "object_sem_acc", "offset_error", "coverage",
                                  "train_s", "pseudo_s", "steps")}}


ROWS = [row("table1", "sup_only", 5, 0, 0, 0.60, "train"), row("table1", "sup_only", 5, 1, 0, 0.62, "train"),
        row("table1", "control", 5, 0, 3, 0.64), row("table1", "control", 5, 1, 3, 0.66),
        row("table1", "twist", 5, 0, 1, 0.50), row("table1", "twist", 5, 0, 3, 0.74),
        row("table1", "twist", 5, 1, 3, 0.70)]


def test_verdicts_follow_the_spread_rule():
    assert ep.verdict((0.70, 0.01, 2), (0.60, 0.02, 2))["verdict"] == "holds"     # 0.10 > 0.03
    assert ep.verdict((0.60, 0.01, 2), (0.70, 0.02, 2))["verdict"] == "reversed"
    v = ep.verdict((0.62, 0.02, 3), (0.60, 0.01, 3))                              # 0.02 < 0.03
    assert v["verdict"] == "not shown (within the spread)" and v["spread"] == pytest.approx(0.03)
    assert ep.verdict((0.7, None, 1), (0.6, 0.0, 2))["verdict"] == "one seed: not judged"
    assert ep.verdict(None, (0.6, 0.0, 2))["verdict"] == "no results yet"


def test_summary_takes_each_runs_last_round_and_shares_table1_rows():
    summary = ep.summary_of(ROWS)
    mean, std, n = ep.stats(summary, "table1", "twist", 5)
    assert (mean, n) == (pytest.approx(0.72), 2) and std == pytest.approx(0.0282843, rel=1e-5)
    assert ep.stats(summary, "table4", "VI", 5)[0] == pytest.approx(0.72)     # = table1 twist
    assert ep.stats(summary, "table4", "I", 5)[0] == pytest.approx(0.65)      # = table1 control
    assert ep.stats(summary, "table4", "V", 5) is None


def test_claims_against_the_control_and_the_paper():
    claims = {(c["claim"][:14], c["ratio"]): c for c in ep.judge_claims(ep.summary_of(ROWS))}
    sup = claims[("TWIST beats Su", "5")]
    assert sup["paper"] == pytest.approx(44.1 - 32.0) and sup["here"] == pytest.approx(11.0)
    assert sup["verdict"] == "holds"                     # 11.0 > 2.83 + 1.41 points
    control = claims[("TWIST beats th", "5")]
    assert control["here"] == pytest.approx(7.0) and control["verdict"] == "holds"
    assert claims[("module C beats", "5")]["verdict"] == "no results yet"
    text = ep.claims_markdown(ep.judge_claims(ep.summary_of(ROWS)))
    assert "| TWIST beats Sup-only | 5 % | +12.1 | +11.0 |" in text
    only = ep.judge_claims(ep.summary_of(ROWS), tables=("table1",))
    assert {c["claim"][:14] for c in only} == {"TWIST beats Su", "TWIST beats th"}


def test_tables_figure_and_csv_round_trip(tmp_path):
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if r[k] is None else r[k] for k in COLUMNS} for r in ROWS)
    rows = ep.read_results(path)
    assert rows[5]["AP50"] == pytest.approx(0.74) and rows[5]["round"] == 3 and rows[0]["sem_acc"] is None
    summary = ep.summary_of(rows)
    table = ep.table_markdown(summary, "table4", ep.PAPER_TABLE4, metrics=("AP50",))
    assert "| VI | 5 % | 72.0 ± 2.8 (2) | 27.0 / 44.1 / 56.2 |" in table
    fig = ep.curve_figure(summary)
    names = [t.name for t in fig.data]
    assert names == ["Sup-only", "control (no pseudo labels)", "TWIST", "Sup-only (paper)",
                     "TWIST (paper)"]
    assert list(fig.data[2].y) == pytest.approx([72.0])


def test_quality_figure_is_fig_4a_per_round():
    rows = [{**row("table1", "twist", 5, seed, rnd, 0.7), "sem_acc": acc, "object_sem_acc": acc,
             "offset_error": err} for seed, rnd, acc, err in
            ((0, 1, 0.90, 0.06), (1, 1, 0.92, 0.08), (0, 2, 0.94, 0.05), (1, 2, 0.96, 0.05))]
    fig = ep.quality_figure(rows + [row("table1", "twist", 5, 0, 0, 0.6)])
    accuracy, _, error = fig.data
    assert list(accuracy.x) == [1, 2] and list(accuracy.y) == pytest.approx([91.0, 95.0])
    assert list(error.y) == pytest.approx([7.0, 5.0])
    assert list(accuracy.error_y.array) == pytest.approx([1.41421, 1.41421], rel=1e-4)


def test_rounds_table_and_figure_are_table_7_per_round():
    rows = [row("table7", "twist", 5, seed, rnd, ap50) for seed, values in
            ((0, (0.60, 0.66, 0.70)), (1, (0.62, 0.64, 0.72))) for rnd, ap50 in enumerate(values)]
    rows += [row("table7", "control", 5, 0, rnd, ap50) for rnd, ap50 in enumerate((0.60, 0.61))]
    rows += [row("table1", "twist", 5, 0, 0, 0.1), row("table7", "sup_only", 5, 0, 0, 0.5, "train")]
    text = ep.table7_markdown(rows, "table7").splitlines()
    assert text[0] == "| row | labels | round 0 | round 1 | round 2 |"
    assert text[2] == "| control | 5 % | 60.0 | 61.0 | – |"                  # one seed: no spread
    assert text[3] == "| twist | 5 % | 61.0 ± 1.4 | 65.0 ± 1.4 | 71.0 ± 1.4 |"
    assert text[4] == "| paper's TWIST (ScanNet) | 5 % | 32.0 | 38.7 | 42.3 |"
    fig = ep.table7_figure(rows, "table7")
    assert [t.name for t in fig.data] == ["control, 5 %", "twist, 5 %"]
    assert list(fig.data[1].x) == [0, 1, 2] and list(fig.data[1].y) == pytest.approx([61, 65, 71])
    summary = ep.summary_of(rows)
    (claim,) = ep.judge_claims(summary, tables=("table7",))
    assert claim["ratio"] == "5" and claim["verdict"] == "one seed: not judged"
    assert claim["here"] == pytest.approx(71.0 - 61.0)  # last rounds: twist round 2, control 1


def test_ablations_at_another_ratio_borrow_table_1_there_and_quote_the_paper_at_its_own():
    rows = [row("table1", name, ratio, seed, 3, ap50 + 0.01 * seed)
            for name, ratio, ap50 in (("control", 1, 0.60), ("twist", 1, 0.70),
                                      ("control", 5, 0.80), ("twist", 5, 0.81))
            for seed in (0, 1)]
    rows += [row("table4", "IV", 1, seed, 3, 0.66 + 0.01 * seed) for seed in (0, 1)]
    summary = ep.summary_of(rows)
    assert ep.stats(summary, "table4", "I", 1)[0] == pytest.approx(0.605)   # table1 control, 1 %
    assert ep.stats(summary, "table4", "VI", 1)[0] == pytest.approx(0.705)
    assert ep.stats(summary, "table4", "VI", 5) is None                     # not borrowed at 5 %
    assert ep.stats(summary, "table5", "both", 5)[0] == pytest.approx(0.815)  # no own rows: 5 %
    claims = {(c["claim"][:14], c["ratio"]): c for c in ep.judge_claims(summary, tables=("table4",))}
    assert set(claims) == {("pseudo labels ", "1"), ("module C beats", "1"), ("module B helps", "1")}
    helps = claims[("pseudo labels ", "1")]
    assert helps["here"] == pytest.approx(6.0) and helps["verdict"] == "holds"  # 6.0 > 2 x 0.71
    assert helps["paper"] == "+4.8 at 5 %"
    assert "| pseudo labels help (Table 4, IV over I) | 1 % | +4.8 at 5 % | +6.0 |" in (
        ep.claims_markdown(list(claims.values())))


def test_the_method_table_is_judged_against_table_1_at_its_own_ratio():
    rows = [row("table1", name, ratio, seed, 3, ap50 + 0.01 * seed)
            for name, ratio, ap50 in (("control", 1, 0.60), ("twist", 1, 0.70),
                                      ("control", 5, 0.84), ("twist", 5, 0.84))
            for seed in (0, 1)]
    rows += [row("method", "split", 5, seed, 3, 0.87 + 0.01 * seed) for seed in (0, 1)]
    summary = ep.summary_of(rows)
    assert ep.stats(summary, "method", "twist", 5)[0] == pytest.approx(0.845)
    assert ep.stats(summary, "method", "control", 1) is None      # no own rows at 1 %
    claims = ep.judge_claims(summary, tables=("method",))
    assert [(c["ratio"], c["here"] and round(c["here"], 1), c["verdict"]) for c in claims] == [
        ("5", 3.0, "holds"), ("5", 3.0, "holds"),                 # 3.0 > 2 x 0.71
        ("5", None, "no results yet"), ("5", None, "no results yet")]   # no `confident` rows
