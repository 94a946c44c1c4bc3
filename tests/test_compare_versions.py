"""A cell never averages runs of different data versions (fingerprints) or protocols."""

import json

import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app
from mmlbench.report.compare import CompareSpec, build_comparison
from mmlbench.report.selection import load_completed_runs

runner = CliRunner()
OLD, NEW = "a" * 64, "b" * 64  # two versions of the gowalla data


@pytest.fixture
def two_versions(tmp_path):
    """ccl and mmcl at 10 negatives: seeds 0, 1 on the old data, seed 2 on the re-preprocessed data."""
    for loss in ("ccl", "mmcl"):
        for seed in cs.SEEDS:
            version = OLD if seed < 2 else NEW  # the setting hash covers the fingerprint, as in real runs
            cs.add_run(tmp_path, loss, 10, seed, dataset_sha256=version, setting_hash=f"{loss}-{version}")
    return tmp_path


def test_data_versions_become_separate_rows(two_versions):
    comparison = build_comparison(load_completed_runs(two_versions), CompareSpec())
    assert comparison.spec.rows == ["loss", "data_version"]
    assert comparison.row_keys == [
        ("ccl", "sha256:aaaaaaaa"), ("ccl", "sha256:bbbbbbbb"), ("mmcl", "sha256:aaaaaaaa"), ("mmcl", "sha256:bbbbbbbb"),
    ]  # fmt: skip
    old = comparison.cell(("ccl", "sha256:aaaaaaaa"), ("10",))
    new = comparison.cell(("ccl", "sha256:bbbbbbbb"), ("10",))
    values = cs.cell_values("ccl", 10, "recall@20")
    assert (old.n, new.n) == (2, 1)
    assert old.mean["recall@20"] == pytest.approx(values[:2].mean(), rel=1e-12)
    assert new.mean["recall@20"] == pytest.approx(values[2], rel=1e-12)
    assert comparison.warnings == [
        "runs with 2 data versions would be averaged or compared together, so rows are split by data_version "
        "(dataset_sha256 prefix): sha256:aaaaaaaa (4 runs), sha256:bbbbbbbb (2 runs); "
        "keep one with --where data_version=..."
    ]


def test_the_baseline_is_compared_on_the_same_data_version(two_versions):
    comparison = build_comparison(load_completed_runs(two_versions), CompareSpec(baseline={"loss": "ccl"}))
    cell = comparison.cell(("mmcl", "sha256:bbbbbbbb"), ("10",))
    ours, base = cs.cell_values("mmcl", 10, "recall@20")[2], cs.cell_values("ccl", 10, "recall@20")[2]
    assert cell.change_pct["recall@20"] == pytest.approx(100 * (ours - base) / base, rel=1e-9)


def test_where_on_the_data_version_keeps_one(two_versions):
    spec = CompareSpec(where={"data_version": "sha256:bbbbbbbb"})
    comparison = build_comparison(load_completed_runs(two_versions), spec)
    assert comparison.row_keys == [("ccl",), ("mmcl",)] and comparison.warnings == []
    assert comparison.cell(("ccl",), ("10",)).n == 1


def test_one_version_per_dataset_adds_no_row_column(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0, dataset_sha256=OLD)
    cs.add_run(tmp_path, "ccl", 10, 1, dataset_sha256=OLD)
    cs.add_run(tmp_path, "ccl", 10, 2, dataset="yelp2018", dataset_sha256=NEW)
    comparison = build_comparison(load_completed_runs(tmp_path), CompareSpec(cols=["dataset"]))
    assert comparison.spec.rows == ["loss"] and comparison.warnings == []


def test_protocols_are_never_averaged_together(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, protocol="validation")
    comparison = build_comparison(load_completed_runs(tmp_path), CompareSpec())
    assert comparison.row_keys == [("ccl", "test-as-validation"), ("ccl", "validation")]
    assert all(cell.n == 1 for cell in comparison.cells.values())
    assert comparison.warnings[0].startswith(
        "runs with 2 protocols would be averaged or compared together, so rows are split by protocol: "
        "test-as-validation (1 runs), "
        "validation (1 runs)"
    )


def test_cli_table_shows_both_versions_and_warns(two_versions):
    result = runner.invoke(app, ["compare", str(two_versions), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = [(cell["row"]["loss"], cell["row"]["data_version"], cell["n"]) for cell in json.loads(result.stdout)["cells"]]
    assert rows == [("ccl", "sha256:aaaaaaaa", 2), ("ccl", "sha256:bbbbbbbb", 1),
                    ("mmcl", "sha256:aaaaaaaa", 2), ("mmcl", "sha256:bbbbbbbb", 1)]  # fmt: skip
    assert "rows are split by data_version" in result.stderr


def test_the_gate_refuses_groups_that_mix_data_versions(two_versions, tmp_path):
    target = tmp_path / "ci.parquet"
    result = runner.invoke(app, ["compare", str(two_versions), "--export-baseline", str(target)])
    assert result.exit_code == 2, result.output
    assert (
        "group loss=ccl, negatives=10, dataset=gowalla, model=mf mixes data_version sha256:aaaaaaaa, "
        "sha256:bbbbbbbb: keep one with --where data_version=..."
    ) in result.stderr
    assert not target.exists()


def test_the_gate_refuses_current_runs_that_mix_data_versions(tmp_path):
    results, target = tmp_path / "results", tmp_path / "ci.parquet"
    for seed in (0, 1):
        cs.add_run(results, "ccl", 10, seed, dataset_sha256=OLD)
    assert runner.invoke(app, ["compare", str(results), "--export-baseline", str(target)]).exit_code == 0
    cs.add_run(results, "ccl", 10, 2, dataset_sha256=NEW)
    cs.add_run(results, "bpr", 10, 0, dataset_sha256=NEW)  # a group the baseline does not have: not refused
    cs.add_run(results, "bpr", 10, 1, dataset_sha256=OLD)
    result = runner.invoke(app, ["compare", str(results), "--against", str(target)])
    assert result.exit_code == 2, result.output
    assert "group loss=ccl, negatives=10, dataset=gowalla, model=mf mixes data_version" in result.stderr
