"""`compare --format/--output`: one registry of renderers, formats from the suffix, bad suffixes refused."""

import io
import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app
from mmlbench.report.formats import RENDERERS, renderer_for_suffix
from mmlbench.report.significance import holm

runner = CliRunner()
# The first three decimals of a cell mean: in both rounded (tables) and full (csv, json) form.
MEAN = f"{math.floor(cs.cell_values('mmcl', 10, 'recall@20').mean() * 1000) / 1000:.3f}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return cs.make_store(tmp_path_factory.mktemp("store"))


def run(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_renderer_writes_its_own_suffix_with_the_numbers(results, tmp_path, name):
    suffix = RENDERERS[name].suffixes[0]
    assert renderer_for_suffix(suffix) == name
    target = tmp_path / f"table{suffix}"
    result = run(results, "--output", target)
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert MEAN in text and "\x1b[" not in text  # the numbers, and no terminal colour codes
    assert "protocol: test-as-validation" in result.stderr


def test_txt_is_the_plain_text_table(results, tmp_path):
    target = tmp_path / "table.txt"
    assert run(results, "--output", target).exit_code == 0
    text = target.read_text()
    assert "┃" in text and "mmcl" in text and "protocol: test-as-validation" in text


def test_format_overrides_an_unknown_suffix(results, tmp_path):
    target = tmp_path / "table.out"
    assert run(results, "--output", target, "--format", "json").exit_code == 0
    assert len(json.loads(target.read_text())["cells"]) == 6


def test_unknown_output_suffix_is_refused_before_any_work(tmp_path):
    target = tmp_path / "t.xyz"
    result = run(tmp_path / "no-store", "--output", target)
    assert result.exit_code == 2
    assert (
        f"--output {target}: unknown suffix '.xyz'; use .txt, .md, .markdown, .csv, .json or pass --format"
    ) in " ".join(result.stderr.split())
    assert not target.exists()


def test_a_suffix_that_contradicts_format_is_refused(results, tmp_path):
    target = tmp_path / "t.csv"
    result = run(results, "--output", target, "--format", "json")
    assert result.exit_code == 2
    assert f"--output {target} means csv, but --format is json" in " ".join(result.stderr.split())
    assert not target.exists()


def test_format_choices_come_from_the_registry():
    result = runner.invoke(app, ["compare", "--format", "yaml"])
    assert result.exit_code == 2
    assert all(name in result.output for name in RENDERERS)


def test_csv_and_json_carry_p_values_with_their_test_correction_and_family(results):
    """Raw and Holm-corrected p-values of every tested cell, named so a reader can redo the correction."""
    table = pd.read_csv(io.StringIO(run(results, "--format", "csv", "--baseline", "loss=ccl").stdout))
    tested = table[(table.source == "ours") & (table.loss == "mmcl")]
    assert set(tested["tested_against"]) == {"loss=ccl"} and set(tested["correction"]) == {"holm"}
    assert set(tested["comparisons"]) == {8} and set(tested["alpha"]) == {0.05}
    family = table[table.source == "ours"].dropna(subset=["p_ttest"])
    assert list(family["p_ttest_holm"]) == pytest.approx(holm(list(family["p_ttest"])))
    document = json.loads(run(results, "--format", "json", "--baseline", "loss=ccl").stdout)
    assert document["significance"]["correction"] == "holm" and document["significance"]["comparisons"] == 8
    assert document["significance"]["tests"] == {"t-test": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
    cell = next(c for c in document["cells"] if c["row"] == {"loss": "mmcl"} and c["col"] == {"negatives": "10"})
    wilcoxon = cell["metrics"]["recall@20"]["tests"]["wilcoxon"]
    assert wilcoxon["title"] == "Wilcoxon signed-rank test" and wilcoxon["p_adjusted"] >= wilcoxon["p_value"]


def test_values_below_a_thousandth_keep_three_significant_digits():
    from mmlbench.report.render import metric_text

    assert metric_text(0.000123456) == "0.000123"  # arp@K: four decimals would print 0.0001
    assert metric_text(0.1837) == "0.1837" and metric_text(0.0) == "0.0000"
