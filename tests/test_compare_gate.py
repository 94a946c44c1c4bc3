"""The CI regression gate: --export-baseline, then --against with --max-drop; exit 0/1/2."""

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench.cli import app
from mmlbench.errors import MMLBenchError
from mmlbench.report.gate import MaxDrop, parse_max_drop

runner = CliRunner()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return cs.make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def baseline(results, tmp_path_factory):
    path = tmp_path_factory.mktemp("baseline") / "ci.parquet"
    result = runner.invoke(app, ["compare", str(results), "--export-baseline", str(path)])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(path)


def gate(results, baseline_frame, tmp_path, *options):
    path = tmp_path / "baseline.parquet"
    baseline_frame.to_parquet(path, index=False)
    return runner.invoke(app, ["compare", str(results), "--against", str(path), *options])


def raised(baseline_frame, loss, negatives, metric, amount):
    """The baseline with one value raised, so that the current runs look `amount` worse."""
    frame = baseline_frame.copy()
    row = (frame["loss"] == loss) & (frame["negatives"] == str(negatives))
    frame.loc[row, metric] += amount
    return frame


def test_exported_baseline_holds_group_keys_means_counts_settings_and_data(baseline):
    assert list(baseline.columns) == [
        "loss", "negatives", "dataset", "model", "recall@20", "ndcg@20", "n", "settings", "dataset_sha256",
    ]  # fmt: skip
    row = baseline[(baseline["loss"] == "mmcl") & (baseline["negatives"] == "10")].iloc[0]
    assert row["recall@20"] == pytest.approx(cs.cell_values("mmcl", 10, "recall@20").mean(), rel=1e-12)
    assert row["n"] == 3 and row["dataset"] == "gowalla" and row["dataset_sha256"] == "abc"
    settings = json.loads(row["settings"])
    assert settings["lr"] == "0.0001" and settings["batch_size"] == "256" and settings["loss"] == "mmcl"
    assert "seed" not in settings  # the seeds are what a group averages over


def test_runs_trained_with_other_settings_are_refused_by_name(tmp_path):
    results, target = tmp_path / "results", tmp_path / "ci.parquet"
    for loss in ("ccl", "mmcl", "bpr"):
        cs.add_run(results, loss, 10, 0)
    assert runner.invoke(app, ["compare", str(results), "--export-baseline", str(target)]).exit_code == 0
    shutil.rmtree(results)
    cs.add_run(results, "ccl", 10, 0, lr=1e-3, batch_size=512)
    cs.add_run(results, "mmcl", 10, 0, dataset_sha256="f" * 64)
    cs.add_run(results, "bpr", 10, 0)
    result = runner.invoke(app, ["compare", str(results), "--against", str(target)])
    assert result.exit_code == 2, result.output
    assert (
        "the current runs were not trained like the baseline's, so the gate cannot compare them "
        "(loss=ccl, negatives=10, dataset=gowalla, model=mf: batch_size 512 (baseline 256), lr 0.001 (baseline 0.0001)): "
        "train with the baseline's settings, or export a new baseline with --export-baseline"
    ) in " ".join(result.stderr.split())


def test_runs_on_another_data_version_are_gated_with_a_plain_note(tmp_path):
    """The fingerprint hashes the processed file's bytes, which another pyarrow writes differently: a note, not a refusal."""
    results, target = tmp_path / "results", tmp_path / "ci.parquet"
    for loss in ("ccl", "mmcl"):
        cs.add_run(results, loss, 10, 0)
    assert runner.invoke(app, ["compare", str(results), "--export-baseline", str(target)]).exit_code == 0
    shutil.rmtree(results)
    cs.add_run(results, "ccl", 10, 0)
    cs.add_run(results, "mmcl", 10, 0, dataset_sha256="f" * 64)
    result = runner.invoke(app, ["compare", str(results), "--against", str(target)])
    assert result.exit_code == 0, result.output
    assert "no regressions in 2 groups" in result.stdout
    assert (
        "trained on another version of the data than the baseline (loss=mmcl, negatives=10, dataset=gowalla, "
        "model=mf: data sha256:ffffffff (baseline sha256:abc)); compared anyway"
    ) in " ".join(result.stderr.split())


def test_a_group_of_several_settings_is_not_exported(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    cs.add_run(tmp_path, "ccl", 10, 1, lr=1e-3)
    target = tmp_path / "ci.parquet"
    result = runner.invoke(app, ["compare", str(tmp_path), "--export-baseline", str(target)])
    assert result.exit_code == 2
    assert (
        "group loss=ccl, negatives=10, dataset=gowalla, model=mf mixes runs of 2 settings (differing: lr 0.0001/0.001): "
        "keep one setting with --where COLUMN=VALUE, or make the differing column a row"
    ) in " ".join(result.stderr.split())
    assert not target.exists()


def test_an_older_baseline_without_settings_still_gates_with_a_note(results, baseline, tmp_path):
    older = baseline.drop(columns=["settings", "dataset_sha256"])
    result = gate(results, older, tmp_path)
    assert result.exit_code == 0, result.output
    assert "no regressions in 6 groups" in result.stdout
    assert result.stderr.count("\n") == 1 and "records no settings or data fingerprint per group" in result.stderr
    assert gate(results, raised(older, "ccl", 10, "ndcg@20", 0.03), tmp_path).exit_code == 1


def test_where_columns_join_the_baseline_keys(results, tmp_path):
    path = tmp_path / "ci.parquet"
    result = runner.invoke(app, ["compare", str(results), "--where", "lr=0.0001", "--export-baseline", str(path)])
    assert result.exit_code == 0, result.output
    assert "lr" in pd.read_parquet(path).columns


def test_unchanged_runs_pass(results, baseline, tmp_path):
    result = gate(results, baseline, tmp_path)
    assert result.exit_code == 0, result.output
    assert "no regressions in 6 groups" in result.stdout


def test_a_drop_beyond_the_absolute_limit_fails_with_a_table(results, baseline, tmp_path):
    result = gate(results, raised(baseline, "mmcl", 10, "recall@20", 0.03), tmp_path, "--max-drop", "0.02")
    assert result.exit_code == 1, result.output
    assert "1 regression(s) in 6 groups (max drop 0.02)" in result.stdout
    assert "loss=mmcl, negatives=10, dataset=gowalla, model=mf" in result.stdout
    assert "0.0300" in result.stdout and "0.0200" in result.stdout  # drop and allowed


def test_a_drop_within_the_limit_passes(results, baseline, tmp_path):
    result = gate(results, raised(baseline, "mmcl", 10, "recall@20", 0.03), tmp_path, "--max-drop", "0.05")
    assert result.exit_code == 0, result.output


def test_relative_limit_is_a_share_of_the_baseline_value(results, baseline, tmp_path):
    frame = raised(baseline, "ccl", 100, "ndcg@20", 0.03)
    value = frame.loc[(frame["loss"] == "ccl") & (frame["negatives"] == "100"), "ndcg@20"].iloc[0]
    share = 100 * 0.03 / value  # the drop as a percentage of the baseline value
    assert gate(results, frame, tmp_path, "--max-drop", f"{share * 1.1:.3f}%").exit_code == 0
    assert gate(results, frame, tmp_path, "--max-drop", f"{share * 0.9:.3f}%").exit_code == 1


def test_an_improvement_never_fails(results, baseline, tmp_path):
    assert gate(results, raised(baseline, "bpr", 10, "ndcg@20", -0.5), tmp_path).exit_code == 0


def test_no_matching_group_exits_2(results, baseline, tmp_path):
    frame = baseline.assign(dataset="yelp2018")
    result = gate(results, frame, tmp_path)
    assert result.exit_code == 2
    assert "none of the 6 baseline groups match the current runs" in result.stderr


def test_baseline_groups_without_current_runs_fail_the_gate_by_name(results, baseline, tmp_path):
    frame = pd.concat([baseline, baseline.head(2).assign(loss="ssm")], ignore_index=True)
    result = gate(results, frame, tmp_path)
    assert result.exit_code == 1, result.output
    assert (
        "error: 2 baseline group(s) have no current runs: loss=ssm, negatives=10, dataset=gowalla, model=mf; "
        "loss=ssm, negatives=100, dataset=gowalla, model=mf; pass --allow-missing to gate only the groups present"
    ) in " ".join(result.stderr.split())
    assert "no regressions" not in result.stdout


def test_missing_groups_and_regressions_are_both_reported(results, baseline, tmp_path):
    frame = pd.concat([raised(baseline, "mmcl", 10, "recall@20", 0.03), baseline.head(1).assign(loss="ssm")])
    result = gate(results, frame, tmp_path, "--max-drop", "0.02")
    assert result.exit_code == 1
    assert "1 regression(s) in 6 groups" in result.stdout and "1 baseline group(s) have no current runs" in result.stderr


def test_allow_missing_warns_and_gates_the_rest(results, baseline, tmp_path):
    frame = pd.concat([baseline, baseline.head(1).assign(loss="ssm")], ignore_index=True)
    result = gate(results, frame, tmp_path, "--allow-missing")
    assert result.exit_code == 0, result.output
    assert "1 baseline group(s) have no current runs, not checked: loss=ssm" in result.stderr
    assert "no regressions in 6 groups" in result.stdout
    frame = raised(frame, "ccl", 10, "ndcg@20", 0.03)
    assert gate(results, frame, tmp_path, "--allow-missing").exit_code == 1  # the rest is still gated


def test_deleted_runs_fail_the_gate(tmp_path):
    """The issue's case: a 4-group baseline, then the runs of 3 groups are gone."""
    results, target = tmp_path / "results", tmp_path / "ci.parquet"
    for loss in ("bpr", "ccl", "mmcl", "ssm"):
        cs.add_run(results, loss, 10, 0)
    assert runner.invoke(app, ["compare", str(results), "--export-baseline", str(target)]).exit_code == 0
    for loss in ("bpr", "ccl", "ssm"):
        shutil.rmtree(results / "runs" / f"{loss}-10-s0")
    result = runner.invoke(app, ["compare", str(results), "--against", str(target)])
    assert result.exit_code == 1
    assert "3 baseline group(s) have no current runs: loss=bpr" in result.stderr


def test_allow_missing_only_applies_with_against(results):
    result = runner.invoke(app, ["compare", str(results), "--allow-missing"])
    assert result.exit_code == 2 and "--allow-missing only applies with --against" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not parquet", "cannot read baseline file"),
        (pd.DataFrame({"loss": ["ccl"], "recall@20": [0.1]}), "is not an mmlbench baseline (no 'n' column)"),
    ],
)
def test_missing_or_malformed_baseline_files_exit_2(results, tmp_path, content, message):
    path = tmp_path / "ci.parquet"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content.to_parquet(path)
    result = runner.invoke(app, ["compare", str(results), "--against", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr


def test_max_drop_parsing():
    assert parse_max_drop("0.02") == MaxDrop(0.02)
    assert parse_max_drop(" 5% ") == MaxDrop(0.05, relative=True)
    assert parse_max_drop("5%").allowed(0.2) == pytest.approx(0.01)
    for bad in ("abc", "-1", "5%%", "nan"):
        with pytest.raises(MMLBenchError, match="bad --max-drop"):
            parse_max_drop(bad)


def test_unparsable_max_drop_and_max_drop_without_against_exit_2(results, tmp_path):
    result = runner.invoke(app, ["compare", str(results), "--against", str(tmp_path / "x.parquet"), "--max-drop", "two"])
    assert result.exit_code == 2 and "bad --max-drop 'two'" in result.stderr
    result = runner.invoke(app, ["compare", str(results), "--max-drop", "0.1"])
    assert result.exit_code == 2 and "--max-drop only applies with --against" in result.stderr
