"""The verbs without the command line: what the CLI calls, a script or a test calls alike."""

from __future__ import annotations

from mmlbench import api, store


def test_a_sweep_from_plan_to_gate_through_the_verbs(planted_dir, tmp_path):
    results = tmp_path / "r"
    options = api.TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True)
    runs = api.Runs({"dataset": "planted", "negatives": 5, "batch_size": 64, "epochs": 2}, {"loss": ["ccl", "bpr"]})
    assert [(config.loss, state) for config, _, state in api.plan(runs, options)] == [("ccl", "to run"), ("bpr", "to run")]

    trained = api.train(runs, options)
    assert trained.counts == {"completed": 2} and not trained.failed and not trained.interrupted
    assert trained.run_ids == sorted(store.read_runs(results)["run_id"], key=lambda run_id: "-bpr-" in run_id)
    assert api.train(runs, options).counts == {"skipped": 2}

    evaluated = api.evaluate(trained.run_ids[0], ks=(5, 10), device="cpu", data_dir=planted_dir, results_dir=results)
    assert evaluated.added == [name for name in evaluated.evaluation.metrics if name.endswith("@5")]

    baseline = tmp_path / "baseline.parquet"
    request = api.CompareRequest(results, rows=["loss"], cols=["negatives"], metrics=["recall@20"], export_baseline=baseline)
    compared = api.compare(request)
    stored = store.read_runs(results).set_index("loss")["recall@20"]
    assert compared.comparison.cell(("ccl",), ("5",)).mean["recall@20"] == stored["ccl"]
    assert compared.baseline_groups == 2
    gated = api.gate(api.CompareRequest(results), baseline)
    assert gated.result.checked_groups == 2 and not gated.result.regressions

    assert len(api.list_runs(results).runs) == 2
    assert api.remove_runs([trained.run_ids[1]], results) == [trained.run_ids[1]]
    assert api.list_runs(results).runs["run_id"].tolist() == [trained.run_ids[0]]
