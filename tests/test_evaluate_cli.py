"""`mmlbench evaluate` through the real CLI: top-K exports, their formats, a read-only store, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmlbench import api, store
from mmlbench.cli import app
from mmlbench.cli import evaluate as evaluate_cli
from mmlbench.data.processed import IdMaps
from mmlbench.engine.evaluator import Evaluation
from mmlbench.fsutil import writable_folder
from mmlbench.runs import rescore as rescore_module
from mmlbench.runs.rescore import write_top_k

runner = CliRunner()
N_ITEMS = 60  # the planted dataset's items


@pytest.fixture
def trained(planted_dir, tmp_path):
    """(results folder, run folder) of one short run on the planted data."""
    results = tmp_path / "r"
    args = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
            "--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "1", "--device", "cpu", "-q"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    return results, next(store.iter_run_dirs(results))


def _evaluate(planted_dir: Path, trained: tuple[Path, Path], *args: str):
    results, run_dir = trained
    return runner.invoke(app, ["evaluate", run_dir.name, "--results-dir", str(results), "--data-dir", str(planted_dir), "--device", "cpu", *args])


def _interactions(planted_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(planted_dir / "planted" / "processed" / "interactions.parquet")


def test_export_never_lists_a_seen_item(planted_dir, trained, tmp_path):
    export = tmp_path / "top.parquet"
    result = _evaluate(planted_dir, trained, "--k", "55", "--export-topk", str(export))
    assert result.exit_code == 0, result.output
    top = pd.read_parquet(export)
    seen = _interactions(planted_dir).query("split == 'train'")
    assert top.merge(seen, on=["user", "item"]).empty
    assert np.isfinite(top["score"]).all()
    unseen = N_ITEMS - seen.groupby("user").size()
    per_user = top.groupby("user")["rank"].agg(["size", "max"])
    assert per_user["size"].eq(unseen.clip(upper=55).loc[per_user.index]).all()
    assert per_user["size"].eq(per_user["max"]).all()  # ranks stay 1..n without gaps


@pytest.mark.parametrize("k", ["61", "10,1000000000"])
def test_k_above_the_item_count_is_refused_before_anything_is_written(planted_dir, trained, tmp_path, k):
    export = tmp_path / "top.parquet"
    result = _evaluate(planted_dir, trained, "--k", k, "--export-topk", str(export))
    assert result.exit_code == 1
    assert f"at most {N_ITEMS}" in result.stderr and "Traceback" not in result.output
    assert not export.exists() and not (trained[1] / "eval-test.parquet").exists()


def test_rank_does_not_wrap_above_32767(tmp_path):
    items = 40_000
    evaluation = Evaluation(
        {}, 0.0, 1, user_ids=torch.tensor([3]), top_items=torch.arange(items).unsqueeze(0),
        top_scores=torch.linspace(1, 0, items).unsqueeze(0),
    )
    originals = IdMaps(np.arange(4).astype(str), np.arange(items).astype(str))
    path = tmp_path / "top.parquet"
    assert write_top_k(path, evaluation, items, originals) == items
    ranks = pd.read_parquet(path)["rank"]
    assert ranks.dtype == np.int32 and ranks.tolist() == list(range(1, items + 1))


def _with_id_maps(planted_dir: Path) -> None:
    """Turn the planted data into a 'generic' dataset whose input ids differ from the indexes."""
    folder = planted_dir / "planted" / "processed"
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "source": "generic"}))
    for kind, count, prefix in (("user", 120, "u"), ("item", N_ITEMS, "i")):
        frame = pd.DataFrame({"original": [f"{prefix}{1000 + i}" for i in range(count)], "index": np.arange(count, dtype=np.int32)})
        frame.to_parquet(folder / f"{kind}_map.parquet", index=False)


def test_export_carries_the_original_ids(planted_dir, trained, tmp_path):
    _with_id_maps(planted_dir)
    export = tmp_path / "top.parquet"
    result = _evaluate(planted_dir, trained, "--k", "5", "--export-topk", str(export))
    assert result.exit_code == 0, result.output
    top = pd.read_parquet(export)
    assert (top["original_user"] == "u" + (top["user"] + 1000).astype(str)).all()
    assert (top["original_item"] == "i" + (top["item"] + 1000).astype(str)).all()


def test_identity_ids_are_exported_as_the_original_ids(planted_dir, trained, tmp_path):
    export = tmp_path / "top.parquet"
    assert _evaluate(planted_dir, trained, "--k", "5", "--export-topk", str(export)).exit_code == 0
    top = pd.read_parquet(export)
    assert (top["original_user"] == top["user"].astype(str)).all()
    assert (top["original_item"] == top["item"].astype(str)).all()


def test_a_generic_dataset_without_its_id_maps_is_refused(planted_dir, trained, tmp_path):
    _with_id_maps(planted_dir)
    (planted_dir / "planted" / "processed" / "item_map.parquet").unlink()
    export = tmp_path / "top.parquet"
    result = _evaluate(planted_dir, trained, "--export-topk", str(export))
    assert result.exit_code == 1
    assert "item_map.parquet not found" in result.stderr
    assert not export.exists() and not (trained[1] / "eval-test.parquet").exists()


def test_export_to_csv_writes_csv(planted_dir, trained, tmp_path):
    for name in ("top.csv", "top.parquet"):
        result = _evaluate(planted_dir, trained, "--k", "5", "--export-topk", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    assert not (tmp_path / "top.csv").read_bytes().startswith(b"PAR1")
    as_csv = pd.read_csv(tmp_path / "top.csv", dtype={"original_user": str, "original_item": str})
    as_parquet = pd.read_parquet(tmp_path / "top.parquet")
    assert list(as_csv.columns) == ["user", "rank", "item", "score", "original_user", "original_item"]
    pd.testing.assert_frame_equal(as_csv, as_parquet, check_dtype=False, check_exact=False, rtol=1e-6)


@pytest.mark.parametrize("name", ["top.txt", "top", "top.json"])
def test_an_export_suffix_other_than_csv_or_parquet_is_refused_before_any_work(planted_dir, trained, tmp_path, name):
    result = _evaluate(planted_dir, trained, "--export-topk", str(tmp_path / name))
    assert result.exit_code == 1
    assert "--export-topk" in result.stderr and ".csv or .parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / name).exists() and not (trained[1] / "eval-test.parquet").exists()


def test_writable_folder_probes_by_creating_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert writable_folder(tmp_path) and writable_folder(tmp_path / "not" / "yet")
    assert not writable_folder(tmp_path / "file") and not writable_folder(tmp_path / "file" / "sub")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # the probe leaves nothing behind


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_writable_folder_sees_what_root_cannot_write():
    assert not writable_folder(Path("/proc/self"))  # os.access says yes to root here


def test_a_read_only_run_folder_still_prints_and_exports(planted_dir, trained, tmp_path, monkeypatch):
    # Tests run as root, which ignores permission bits: the run folder is declared read-only.
    run_dir = trained[1]
    monkeypatch.setattr(api, "writable_folder", lambda path: Path(path) != run_dir and writable_folder(path))
    export = tmp_path / "out" / "top.csv"
    result = _evaluate(planted_dir, trained, "--export-topk", str(export))
    assert result.exit_code == 0, result.output
    assert "recall" in result.stdout and export.is_file()
    assert not (run_dir / "eval-test.parquet").exists()
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "eval-test.parquet" in warnings[0] and "read-only" in warnings[0]


def test_an_unwritable_export_path_is_refused_before_any_work(planted_dir, trained, tmp_path):
    (tmp_path / "file").write_text("x")
    result = _evaluate(planted_dir, trained, "--export-topk", str(tmp_path / "file" / "top.csv"))
    assert result.exit_code == 1
    assert "--export-topk" in result.stderr and "Traceback" not in result.output
    assert not (trained[1] / "eval-test.parquet").exists()


def test_json_output_is_one_document_on_stdout(planted_dir, trained, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_cli, "show_progress", lambda quiet: True)  # stderr as if a terminal
    export = tmp_path / "top.parquet"
    result = _evaluate(planted_dir, trained, "--k", "5,20", "--export-topk", str(export), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    run_dir = trained[1]
    assert document["run_id"] == run_dir.name and document["status"] == "completed" and document["split"] == "test"
    assert document["ks"] == [5, 20] and document["users"] == 120
    assert document["metrics"]["recall@20"] == pytest.approx(store.read_run(run_dir)["recall@20"])
    assert document["saved"] == str(run_dir / "eval-test.parquet")
    assert document["export"] == {"path": str(export), "rows": len(pd.read_parquet(export))}


@pytest.mark.parametrize(("args", "shown"), [([], True), (["-q"], False), (["--format", "json"], False)])
def test_a_progress_bar_over_users_at_a_terminal(planted_dir, trained, monkeypatch, args, shown):
    monkeypatch.setattr(evaluate_cli, "show_progress", lambda quiet: not quiet)  # as if stderr were a terminal
    calls = []
    real = rescore_module.rescore  # imported by the command when it runs, not at `--help`

    def spy(*positional, progress, **named):
        recorded = progress and (lambda done, total: (calls.append((done, total)), progress(done, total)))
        return real(*positional, progress=recorded, **named)

    monkeypatch.setattr(rescore_module, "rescore", spy)
    result = _evaluate(planted_dir, trained, "--eval-batch-users", "50", *args)
    assert result.exit_code == 0, result.output
    assert calls == ([(50, 120), (100, 120), (120, 120)] if shown else [])
