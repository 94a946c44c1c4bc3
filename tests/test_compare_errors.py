"""Bad input to `mmlbench compare`: one clear line on stderr, exit code 2, never a traceback."""

import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for loss in ("ccl", "mmcl"):
        cs.add_run(root, loss, 10, 0)
    cs.add_run(root, "bpr", 10, 0, status="failed")
    return root


def fails_with(args, message):
    result = runner.invoke(app, ["compare", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.count("error:") == 1
    return result


def test_missing_results_folder_says_where_it_looked(tmp_path):
    fails_with([tmp_path / "nowhere"], f"results folder {tmp_path / 'nowhere'} does not exist")


def test_empty_results_folder(tmp_path):
    fails_with([tmp_path], f"no runs in {tmp_path / 'runs'}")


def test_only_failed_runs(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0, status="failed")
    cs.add_run(tmp_path, "ccl", 10, 1, status="interrupted")
    fails_with([tmp_path], "no completed runs in")
    fails_with([tmp_path], "(found 1 failed, 1 interrupted)")


def test_failed_runs_are_left_out_of_the_table(results):
    result = runner.invoke(app, ["compare", str(results), "--format", "csv"])
    assert result.exit_code == 0
    assert "bpr" not in result.stdout and "mmcl" in result.stdout


def test_unknown_metric_suggests_the_closest(results):
    fails_with([results, "--metric", "recal@20"], "unknown metric 'recal@20'. Did you mean 'recall@20'? Valid: ndcg@20, recall@20.")


def test_unknown_row_column_suggests_the_closest(results):
    fails_with([results, "--rows", "los"], "unknown column 'los'. Did you mean 'loss'?")


def test_row_and_column_must_differ(results):
    fails_with([results, "--rows", "loss", "--cols", "loss"], "loss cannot be both a row and a column")


@pytest.mark.parametrize("clause", ["dataset", "=gowalla", "dataset="])
def test_bad_where_syntax(results, clause):
    fails_with([results, "--where", clause], f"bad --where '{clause}': expected COLUMN=VALUE")


def test_where_on_an_unknown_column(results):
    fails_with([results, "--where", "datset=gowalla"], "unknown column 'datset'. Did you mean 'dataset'?")


def test_baseline_value_not_in_the_rows(results):
    fails_with([results, "--baseline", "loss=bpr"], "unknown --baseline loss 'bpr'. Valid: ccl, mmcl.")


def test_baseline_on_a_column_that_is_not_a_row(results):
    fails_with([results, "--baseline", "model=mf"], "baseline column 'model' is not a row column (loss)")


def test_alpha_out_of_range(results):
    fails_with([results, "--alpha", "1.5"], "--alpha must be between 0 and 1")


def test_against_cannot_mix_with_other_outputs(results, tmp_path):
    fails_with([results, "--against", tmp_path / "b.parquet", "--plot", tmp_path / "p.png"], "--against runs the regression gate alone")
