"""build_comparison on hand-made runs: aggregation, % change, paired tests, Holm, warnings."""

import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

import compare_support as cs
from mmlbench import store
from mmlbench.errors import MMLBenchError
from mmlbench.report.compare import CompareSpec, build_comparison
from mmlbench.report.render import footer_lines, to_markdown, to_rich_table
from mmlbench.report.selection import load_completed_runs
from mmlbench.report.significance import T_TEST, WILCOXON, holm


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return load_completed_runs(cs.make_store(tmp_path_factory.mktemp("store")))


def compare(runs, **spec):
    return build_comparison(runs, CompareSpec(**spec))


def paired_by_name(cell, metric):
    return {test.test: test for test in cell.tests[metric]}


def test_cells_hold_mean_sample_std_and_count_over_seeds(runs):
    comparison = compare(runs)
    assert comparison.row_keys == [("bpr",), ("ccl",), ("mmcl",)]
    assert comparison.col_keys == [("10",), ("100",)]
    cell = comparison.cell(("mmcl",), ("10",))
    seeds = cs.cell_values("mmcl", 10, "ndcg@20")
    assert cell.n == 3
    assert cell.mean["ndcg@20"] == pytest.approx(seeds.mean(), rel=1e-12)
    assert cell.std["ndcg@20"] == pytest.approx(seeds.std(ddof=1), rel=1e-12)


def test_change_is_percent_of_the_baseline_mean_in_the_same_column(runs):
    comparison = compare(runs, baseline={"loss": "ccl"})
    ours, base = cs.cell_values("mmcl", 100, "recall@20").mean(), cs.cell_values("ccl", 100, "recall@20").mean()
    cell = comparison.cell(("mmcl",), ("100",))
    assert cell.change_pct["recall@20"] == pytest.approx(100 * (ours - base) / base, rel=1e-9)
    baseline_cell = comparison.cell(("ccl",), ("100",))
    assert baseline_cell.change_pct == {} and baseline_cell.tests == {}


def test_paired_tests_equal_scipy_on_per_user_means_over_seeds(runs):
    cell = compare(runs, baseline={"loss": "ccl"}).cell(("mmcl",), ("10",))
    ours, base = cs.user_means("mmcl", 10, "recall@20"), cs.user_means("ccl", 10, "recall@20")
    tests = paired_by_name(cell, "recall@20")
    assert tests[T_TEST].p_value == pytest.approx(stats.ttest_rel(ours, base).pvalue, rel=1e-9)
    assert tests[WILCOXON].p_value == pytest.approx(stats.wilcoxon(ours, base).pvalue, rel=1e-9)
    assert tests[T_TEST].n_users == cs.USERS


def test_holm_on_hand_worked_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, then monotone
    assert holm([]) == []


def test_holm_runs_over_every_test_of_the_table_per_test_type(runs):
    comparison = compare(runs, baseline={"loss": "ccl"})
    for name in (T_TEST, WILCOXON):
        family = [t for t in comparison.tests() if t.test == name]
        assert len(family) == 8  # 2 rows (bpr, mmcl) x 2 columns x 2 metrics
        assert [t.p_adjusted for t in family] == pytest.approx(holm([t.p_value for t in family]))


def test_only_significant_cells_are_marked(runs):
    comparison = compare(runs, baseline={"loss": "ccl"})
    assert comparison.cell(("mmcl",), ("10",)).marks("recall@20") == [T_TEST, WILCOXON]
    assert comparison.cell(("bpr",), ("100",)).marks("ndcg@20") == [T_TEST, WILCOXON]
    assert comparison.cell(("mmcl",), ("100",)).marks("recall@20") == []  # equal on average


def test_alpha_decides_significance_after_correction(runs):
    loose = compare(runs, baseline={"loss": "ccl"}).cell(("mmcl",), ("10",))
    adjusted = paired_by_name(loose, "recall@20")[T_TEST].p_adjusted
    strict = compare(runs, baseline={"loss": "ccl"}, alpha=adjusted / 2).cell(("mmcl",), ("10",))
    assert T_TEST not in strict.marks("recall@20")


def test_where_keeps_matching_runs_with_numbers_compared_as_numbers(runs):
    comparison = compare(runs, where={"negatives": "100.0", "lr": "1e-4"})
    assert comparison.col_keys == [("100",)]
    assert all(cell.n == 3 for cell in comparison.cells.values())


def test_where_with_several_values_keeps_any_of_them(runs):
    comparison = compare(runs, where={"loss": ["bpr", "mmcl"], "negatives": 10})
    assert comparison.row_keys == [("bpr",), ("mmcl",)] and comparison.col_keys == [("10",)]


def test_where_without_matches_names_the_values_present(runs):
    with pytest.raises(MMLBenchError, match=r"dataset=yelp \(values here: gowalla\)"):
        compare(runs, where={"dataset": "yelp"})


def test_a_clean_store_has_no_warnings_and_states_its_protocol(runs):
    comparison = compare(runs)
    assert comparison.warnings == []
    assert comparison.protocols == ["protocol: test-as-validation (the test split was used for model selection)"]


def test_rows_of_different_protocols_are_warned(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1)
    cs.add_run(tmp_path, "mmcl", 10, 0, protocol="validation")
    comparison = compare(load_completed_runs(tmp_path))
    assert comparison.warnings == [
        "the compared runs mix protocols: test-as-validation (2 runs), validation (1 runs); "
        "narrow with --where protocol=..."
    ]
    assert len(comparison.protocols) == 2


def test_a_dataset_column_is_not_a_mix(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, dataset="yelp2018")
    comparison = compare(load_completed_runs(tmp_path), cols=["dataset"])
    assert comparison.warnings == []


def test_missing_per_user_files_skip_tests_with_a_footer_note(tmp_path):
    for loss in ("ccl", "mmcl", "bpr"):
        for seed in (0, 1):
            cs.add_run(tmp_path, loss, 10, seed, with_per_user=not (loss == "mmcl" and seed == 1))
    comparison = compare(load_completed_runs(tmp_path), baseline={"loss": "ccl"})
    assert comparison.cell(("mmcl",), ("10",)).tests == {}
    assert comparison.cell(("bpr",), ("10",)).tests["recall@20"]
    assert "per-user metrics missing for loss=mmcl, negatives=10: tests involving it skipped" in footer_lines(comparison)
    assert "Holm correction per test over 2 comparisons" in "\n".join(footer_lines(comparison))


def test_unknown_baseline_value_lists_the_rows(runs):
    with pytest.raises(MMLBenchError, match=r"unknown --baseline loss 'cll'. Did you mean 'ccl'\? Valid: bpr, ccl, mmcl."):
        compare(runs, baseline={"loss": "cll"})


def test_references_sit_in_their_column_or_the_footer(runs):
    references = [
        {"label": "MF-CCL (800), BARS re-run", "loss": "ccl", "negatives": 100, "recall@20": 0.1837},
        {"label": "SimpleX", "negatives": 2000, "recall@20": 0.1872},
    ]
    comparison = compare(runs, references=references)
    assert comparison.reference_col(references[0]) == ("100",)
    assert comparison.reference_col(references[1]) is None
    assert "published (no column in this table): SimpleX: recall@20 0.1872" in footer_lines(comparison)
    published = [line for line in to_markdown(comparison).splitlines() if "MF-CCL" in line][0]
    assert published.split(" | ")[3] == "0.1837"  # the negatives=100 recall@20 column
    console = Console(file=io.StringIO(), width=200)
    console.print(to_rich_table(comparison))
    assert "published: MF-CCL (800), BARS re-run" in console.file.getvalue()


def test_newer_schema_versions_are_refused(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0, schema_version=99)
    with pytest.raises(MMLBenchError, match="schema_version 99, but this mmlbench reads .* up to 1"):
        load_completed_runs(tmp_path)


def test_older_runs_are_read_as_far_as_their_columns_go(tmp_path):
    folder = store.runs_dir(tmp_path) / "old-run"
    folder.mkdir(parents=True)
    old = {"run_id": "old-run", "status": "completed", "loss": "ccl", "negatives": 10, "recall@20": 0.1, "ndcg@20": 0.2}
    pd.DataFrame([old]).to_parquet(folder / store.RUN_FILE)
    comparison = compare(load_completed_runs(Path(tmp_path)))
    assert comparison.cell(("ccl",), ("10",)).mean["recall@20"] == pytest.approx(0.1)
    assert comparison.protocols == ["protocol: not recorded by these runs"]


def test_a_column_without_baseline_runs_gets_a_note_not_an_error(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "mmcl", 10, 0)
    cs.add_run(tmp_path, "mmcl", 100, 0)
    comparison = compare(load_completed_runs(tmp_path), baseline={"loss": "ccl"})
    assert comparison.cell(("mmcl",), ("100",)).change_pct == {}
    assert "no baseline runs for loss=ccl, negatives=100: no % change or tests there" in footer_lines(comparison)
    assert comparison.cell(("mmcl",), ("10",)).change_pct["recall@20"] > 0
