"""One table, one dataset; one cell, one setting; n counts distinct seeds; the notes reach every format."""

import io
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app
from mmlbench.errors import MMLBenchError
from mmlbench.report.compare import CompareSpec, build_comparison
from mmlbench.report.selection import load_completed_runs

runner = CliRunner()
SPLIT = "so rows are split by lr"


def compare(results, *args):
    return runner.invoke(app, ["compare", *map(str, [results, *args])])


@pytest.fixture
def two_datasets(tmp_path):
    """The issue's store: gowalla at 10 negatives, yelp2018 at 5 and 20."""
    for loss in ("ccl", "mmcl"):
        cs.add_run(tmp_path, loss, 10, 0)
        for negatives in (5, 20):
            cs.add_run(tmp_path, loss, negatives, 0, dataset="yelp2018", run_id=f"yelp-{loss}-{negatives}")
    return tmp_path


@pytest.fixture
def two_learning_rates(tmp_path):
    """ccl and mmcl at 10 negatives, seeds 0 and 1 at lr 1e-4 and seed 0 again at lr 1e-3."""
    for loss in ("ccl", "mmcl"):
        for seed in (0, 1):
            cs.add_run(tmp_path, loss, 10, seed)
        cs.add_run(tmp_path, loss, 10, 0, lr=1e-3, run_id=f"{loss}-fast")
    return tmp_path


def test_two_datasets_in_one_table_are_refused_naming_both_ways_out(two_datasets):
    result = compare(two_datasets)
    assert result.exit_code == 2, result.output
    assert (
        "the selected runs cover 2 datasets, gowalla (2 runs), yelp2018 (4 runs): compare one at a time with "
        "--where dataset=gowalla, or make dataset a row or a column (--rows loss,dataset)"
    ) in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_one_dataset_at_a_time_or_dataset_as_a_row(two_datasets):
    one = json.loads(compare(two_datasets, "--where", "dataset=yelp2018", "--format", "json").stdout)
    assert sorted({cell["col"]["negatives"] for cell in one["cells"]}) == ["20", "5"]
    both = json.loads(compare(two_datasets, "--rows", "loss,dataset", "--format", "json").stdout)
    assert {(c["row"]["dataset"], c["col"]["negatives"]) for c in both["cells"] if c["row"]["loss"] == "ccl"} == {
        ("gowalla", "10"), ("yelp2018", "5"), ("yelp2018", "20"),
    }  # fmt: skip


def test_runs_of_other_settings_are_split_into_rows_never_averaged(two_learning_rates):
    comparison = build_comparison(load_completed_runs(two_learning_rates), CompareSpec(baseline={"loss": "ccl"}))
    assert comparison.spec.rows == ["loss", "lr"]
    slow, fast = comparison.cell(("mmcl", "0.0001"), ("10",)), comparison.cell(("mmcl", "0.001"), ("10",))
    assert (slow.n, fast.n) == (2, 1)
    assert slow.mean["recall@20"] == pytest.approx(cs.cell_values("mmcl", 10, "recall@20")[:2].mean(), rel=1e-12)
    # % change and tests against the baseline of the same lr, not a mixed one
    ours, base = cs.cell_values("mmcl", 10, "recall@20")[0], cs.cell_values("ccl", 10, "recall@20")[0]
    assert fast.change_pct["recall@20"] == pytest.approx(100 * (ours - base) / base, rel=1e-9)
    assert fast.tests["recall@20"][0].n_users == cs.USERS
    assert comparison.warnings == [
        "cells would average runs of different settings (loss=ccl, negatives=10: lr 0.0001/0.001; "
        "loss=mmcl, negatives=10: lr 0.0001/0.001), so rows are split by lr; keep one setting with --where lr=..."
    ]


def test_a_seed_stored_twice_counts_once(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 0, run_id="copy", **{"recall@20": 0.5})  # the same run, stored again
    cs.add_run(tmp_path, "ccl", 10, 1)
    comparison = build_comparison(load_completed_runs(tmp_path), CompareSpec(metrics=["recall@20"]))
    cell = comparison.cell(("ccl",), ("10",))
    first = (cs.cell_values("ccl", 10, "recall@20")[0] + 0.5) / 2
    seeds = [first, cs.cell_values("ccl", 10, "recall@20")[1]]
    assert cell.n == 2
    assert cell.mean["recall@20"] == pytest.approx(sum(seeds) / 2, rel=1e-12)
    assert cell.std["recall@20"] == pytest.approx(pd.Series(seeds).std(ddof=1), rel=1e-12)
    assert comparison.warnings == [
        "cell loss=ccl, negatives=10 holds seed 0 more than once with one setting: "
        "those runs are averaged and count as one seed"
    ]


def test_settings_no_column_tells_apart_are_refused(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, setting_hash="another-setting")
    with pytest.raises(MMLBenchError, match=r"cell loss=ccl, negatives=10 holds runs of 2 settings that no stored "
                       r"setting column tells apart \(setting_hash another-sett, gowalla-mf-c\.\.\.\)") as raised:  # fmt: skip
        build_comparison(load_completed_runs(tmp_path), CompareSpec())
    assert raised.value.exit_code == 2


def test_a_baseline_of_another_protocol_in_the_same_column_is_split_off(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "mmcl", 10, 0, protocol="validation")  # no cell mixes protocols, but the comparison would
    comparison = build_comparison(load_completed_runs(tmp_path), CompareSpec(baseline={"loss": "ccl"}))
    assert comparison.spec.rows == ["loss", "protocol"]
    assert comparison.cell(("mmcl", "validation"), ("10",)).change_pct == {}
    assert "no baseline runs for loss=ccl, protocol=validation, negatives=10: no % change or tests there" in comparison.notes


@pytest.mark.parametrize("name", ["rich", "markdown", "csv", "json"])
def test_the_notes_that_qualify_a_table_reach_every_format(two_learning_rates, tmp_path, name):
    suffix = {"rich": ".txt", "markdown": ".md", "csv": ".csv", "json": ".json"}[name]
    target = tmp_path / f"table{suffix}"
    result = compare(two_learning_rates, "--where", "model=mf", "--output", target)
    assert result.exit_code == 0, result.output
    text = target.read_text()
    if name == "csv":
        notes = pd.read_csv(io.StringIO(text)).query("source == 'note'")["note"].tolist()
        text = "\n".join(notes)
    elif name == "json":
        text = "\n".join(json.loads(text)["footer"])
    flat = " ".join(text.split())
    assert SPLIT in flat and "runs: model=mf (--where)" in flat and "protocol: test-as-validation" in flat
    assert SPLIT in " ".join(result.stderr.split())  # and the person running the command sees it


def test_the_rich_table_carries_its_warnings_below_it(two_learning_rates):
    result = compare(two_learning_rates)
    assert result.exit_code == 0, result.output
    assert SPLIT in " ".join(result.stdout.split()) and result.stderr == ""
