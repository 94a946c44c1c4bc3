"""`mmlbench compare` through the CLI: every output format parses back to the same numbers."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app

runner = CliRunner()
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return cs.make_store(tmp_path_factory.mktemp("store"))


def run(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


def markdown_rows(text):
    """{row label: {header: cell}} from the pipe table of a markdown report."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_default_rich_table_shows_cells_and_the_protocol(results):
    result = run(results)
    assert result.exit_code == 0, result.output
    assert f"{cs.cell_values('mmcl', 10, 'recall@20').mean():.4f}" in result.stdout
    assert "protocol: test-as-validation (the test split was used for model selection)" in result.stdout


def test_results_dir_option_and_environment_variable(results, monkeypatch):
    assert run("--results-dir", results).exit_code == 0
    monkeypatch.setenv("MMLBENCH_RESULTS_DIR", str(results))
    assert run().exit_code == 0


def test_markdown_has_means_changes_marks_and_a_footer(results):
    result = run(results, "--baseline", "loss=ccl", "--format", "markdown")
    assert result.exit_code == 0, result.output
    rows = markdown_rows(result.stdout)
    mean = cs.cell_values("mmcl", 10, "recall@20").mean()
    change = 100 * (mean / cs.cell_values("ccl", 10, "recall@20").mean() - 1)
    assert rows["mmcl"]["negatives=10 recall@20"] == (
        f"{mean:.4f} ± {cs.cell_values('mmcl', 10, 'recall@20').std(ddof=1):.4f} {change:+.1f}%*†"
    )
    assert not any(mark in rows["mmcl"]["negatives=100 recall@20"] for mark in "*†")
    assert rows["ccl (baseline)"]["negatives=10 ndcg@20"].count("±") == 1
    assert "Holm correction per test over 8 comparisons; alpha = 0.05" in result.stdout


def test_bare_baseline_value_works_for_a_single_row_column(results):
    result = run(results, "--baseline", "ccl", "--format", "markdown")
    assert "ccl (baseline)" in markdown_rows(result.stdout)


def test_csv_parses_back_to_the_means(results):
    result = run(results, "--format", "csv", "--baseline", "loss=ccl", "--cost")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout))
    ours, notes = table[table.source == "ours"], table[table.source == "note"]["note"].tolist()
    row = ours[(ours.loss == "bpr") & (ours.negatives == 100) & (ours.metric == "ndcg@20")].iloc[0]
    assert row["mean"] == pytest.approx(cs.cell_values("bpr", 100, "ndcg@20").mean(), rel=1e-12)
    assert row["n"] == 3 and bool(row["significant_ttest"])
    assert row["peak_memory_bytes"] == 2**29
    assert len(ours) == 12  # 3 losses x 2 negatives x 2 metrics
    assert notes[0] == "protocol: test-as-validation (the test split was used for model selection)"
    assert "protocol: test-as-validation" in result.stderr  # the footer is also shown to the person


def test_json_values_equal_the_means(results):
    result = run(results, "--format", "json", "--baseline", "loss=ccl")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["cells"]) == 6
    for cell in document["cells"]:
        loss, negatives = cell["row"]["loss"], int(cell["col"]["negatives"])
        for metric in cs.METRICS:
            assert cell["metrics"][metric]["mean"] == pytest.approx(cs.cell_values(loss, negatives, metric).mean())
    assert document["spec"]["baseline"] == {"loss": "ccl"}


def test_where_filters_the_table(results):
    result = run(results, "--where", "negatives=10", "--where", "model=mf", "--format", "json")
    document = json.loads(result.stdout)
    assert {cell["col"]["negatives"] for cell in document["cells"]} == {"10"}


def test_output_file_format_follows_its_suffix(results, tmp_path):
    target = tmp_path / "report" / "table.md"
    result = run(results, "--baseline", "loss=ccl", "--output", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "mmcl" in markdown_rows(target.read_text())
    assert [p.name for p in target.parent.iterdir()] == ["table.md"]  # no temporary left behind


def test_markdown_on_stdout_repeats_its_warnings_on_stderr(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, lr=1e-3)
    result = run(tmp_path, "--format", "markdown")
    assert result.exit_code == 0
    warning = "cells would average runs of different settings (loss=ccl, negatives=10: lr 0.0001/0.001)"
    assert f"**warning:** {warning}" in result.stdout
    assert warning in " ".join(result.stderr.split())


def test_module_entry_point_in_a_real_process(results):
    proc = subprocess.run(
        [sys.executable, "-m", "mmlbench", "compare", str(results), "--format", "json", "--metric", "recall@20"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"]["metrics"] == ["recall@20"]


def test_compare_preset_prints_the_paper_table_with_published_numbers(tmp_path):
    from mmlbench import store

    for loss, recall in (("ccl", 0.18), ("mmcl", 0.19)):
        row = {
            "run_id": f"gowalla-mf-{loss}-n800", "status": "completed", "protocol": "test-as-validation",
            "dataset": "gowalla", "model": "mf", "loss": loss, "negatives": 800, "seed": 2019,
            "config_hash": loss, "setting_hash": loss, "recall@20": recall, "ndcg@20": recall - 0.03,
        }
        store.write_run(tmp_path, store.RunRecord(row))
    result = runner.invoke(app, ["compare", str(tmp_path), "--preset", "paper-gowalla", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "| mmcl | 0.1900 +5.6% | 0.1600 +6.7% |" in table
    assert "MF-CCL (800), BARS re-run" in table and "0.1837" in table
    assert "MF-BPR, BARS re-run: recall@20 0.1627" in table  # no BPR column: listed in the footer


def test_compare_unknown_preset_is_an_input_error(tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path), "--preset", "paper-gowala"])
    assert result.exit_code == 2
    assert "Did you mean 'paper-gowalla'" in result.stderr


def test_repeating_where_on_one_column_keeps_any_of_its_values(results):
    result = run(results, "--where", "loss=ccl", "--where", "loss=mmcl", "--where", "negatives=10", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted((cell["row"]["loss"], cell["col"]["negatives"]) for cell in document["cells"]) == [("ccl", "10"), ("mmcl", "10")]
    assert document["spec"]["where"] == {"loss": ["ccl", "mmcl"], "negatives": ["10"]}


def test_a_where_value_matching_nothing_is_named_even_beside_one_that_matches(results):
    result = run(results, "--where", "loss=ccl", "--where", "loss=mcl")
    assert result.exit_code == 2
    assert "no completed runs with loss=mcl (values here: bpr, ccl, mmcl)" in result.stderr


def test_any_of_where_values_reach_the_baseline_file(results, tmp_path):
    target = tmp_path / "ci.parquet"
    result = run(results, "--where", "negatives=10", "--where", "negatives=100", "--export-baseline", target)
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(target)["negatives"]) == ["10", "10", "10", "100", "100", "100"]


@pytest.mark.parametrize(
    ("folder", "preset"),
    [("gowalla-cpu-quick-fidelity", "paper-gowalla"), ("yelp2018-cpu-quick", "paper-yelp2018")],
)
def test_compare_preset_reads_the_committed_quick_runs(folder, preset):
    """Trained before the presets followed the author's schedule (their cells hash otherwise now):
    the paper-shaped table still reads them."""
    result = runner.invoke(app, ["compare", str(REPO_ROOT / "results" / "paper" / folder), "--preset", preset, "--format", "markdown"])
    assert result.exit_code == 0, result.output
    rows = {line.split(" | ")[0] for line in result.stdout.splitlines()}
    assert {"| bpr", "| ccl (baseline)", "| mmcl"} <= rows


def test_compare_preset_bars_places_each_published_number_in_its_datasets_column(tmp_path):
    from mmlbench import store

    for dataset, recall in (("gowalla", 0.18), ("yelp2018", 0.07)):
        row = {
            "run_id": f"{dataset}-mf-ccl-n800", "status": "completed", "protocol": "test-as-validation",
            "dataset": dataset, "model": "mf", "loss": "ccl", "negatives": 800, "seed": 2019, "patience": 3,
            "plateau_lr_factor": 0.1, "config_hash": dataset, "setting_hash": dataset, "recall@20": recall, "ndcg@20": recall - 0.01,
        }
        store.write_run(tmp_path, store.RunRecord(row))
    result = runner.invoke(app, ["compare", str(tmp_path), "--preset", "bars-mf-ccl", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| published: MF-CCL (800), BARS re-run, Gowalla | 0.1837 | 0.1493 |  |  |" in result.stdout
    assert "| published: MF-CCL (800), BARS re-run, Yelp2018 |  |  | 0.0698 | 0.0572 |" in result.stdout


def test_metric_rows_and_cols_given_with_a_preset_replace_the_presets(tmp_path):
    """They were silently ignored: the preset's [report] shape won over what the user typed."""
    for loss in ("ccl", "mmcl"):
        cs.add_run(tmp_path, loss, 10, 0, dataset="gowalla")
    result = runner.invoke(app, ["compare", str(tmp_path), "--preset", "paper-gowalla", "--metric", "ndcg@20", "--format", "csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert set(frame.loc[frame["source"] == "ours", "metric"]) == {"ndcg@20"}
    plain = runner.invoke(app, ["compare", str(tmp_path), "--preset", "paper-gowalla", "--format", "csv"])
    frame = pd.read_csv(io.StringIO(plain.stdout))
    assert set(frame.loc[frame["source"] == "ours", "metric"]) == {"recall@20", "ndcg@20"}  # the preset's
