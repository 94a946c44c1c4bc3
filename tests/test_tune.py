"""`mmlbench tune` end to end on planted data, in this process: a cell's search, its final seeds, the
protocol (selection never reads test), failed trials, Ctrl-C and the same command resuming, the
same trials proposed by the same command, and bad input (one line, nothing written)."""

from __future__ import annotations

import math

import optuna
import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.engine import trainer as trainer_module
from mmlbench.engine.trainer import Trainer
from mmlbench.errors import MMLBenchError
from mmlbench.plan.tuning import final, trial
from mmlbench.runs import trained as trained_module
from tune_support import FAST, budget_order, document, journal_trials, make_tune_data, no_live_claims, tune_args

runner = CliRunner()


@pytest.fixture
def data(tmp_path):
    return make_tune_data(tmp_path / "datasets")


def _tune(data, results, *args, trials=4, seeds=2):
    return runner.invoke(app, tune_args(data, results, "--format", "json", *args, trials=trials, seeds=seeds))


def test_a_cell_is_searched_on_validation_and_its_best_setting_tested_once_at_every_final_seed(data, tmp_path):
    results = tmp_path / "r"
    tuned = _tune(data, results)
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"] == {"finished": 4, "completed": 4, "pruned": 0, "failed": 0, "reused": 0}
    runs = store.read_runs(results).set_index("run_id")
    trials = runs[runs["selection"] == "trial"]
    assert len(trials) == 3 and set(trials["status"]) == {store.STATUS_TRAINED}  # the best one became tuned
    assert not any(name in trials.columns and trials[name].notna().any() for name in ("recall@20", "test_eval_seconds"))
    tuned_runs = runs[runs["selection"] == "tuned"]
    assert sorted(tuned_runs["seed"]) == [2019, 2020] and set(tuned_runs["status"]) == {store.STATUS_COMPLETED}
    assert set(tuned_runs["trial"]) == {cell["best"]["trial"]} and set(tuned_runs["study"]) == {cell["study"]}
    best_run = tuned_runs[tuned_runs["seed"] == 2019].iloc[0]
    assert best_run["monitor_value"] == cell["best"]["validation"]  # the best trial's own run, now tested
    assert cell["final"]["mean"]["recall@20"] == pytest.approx(tuned_runs["recall@20"].mean())
    assert no_live_claims(results)

    again = _tune(data, results)  # the same command: nothing trained, the same table
    assert again.exit_code == 0 and document(again)["cells"][0]["best"] == cell["best"]
    assert len(store.read_runs(results)) == 5


def test_the_selection_never_reads_test_scrambled_test_labels_change_nothing_before_the_final_runs(data, tmp_path, monkeypatch):
    """Two cells identical but for their test split: the same trials, the same validation values,
    the same chosen setting; and no test evaluation at all before the final runs begin."""
    events: list[str] = []
    for module in (trainer_module, trained_module):
        real = module.evaluate
        monkeypatch.setattr(module, "evaluate", lambda *a, _real=real, **k: events.append(a[2]) or _real(*a, **k))
    real_finals = final.run_finals
    monkeypatch.setattr("mmlbench.plan.tuning.tune.run_finals", lambda *a, **k: events.append("finals") or real_finals(*a, **k))
    tuned = _tune(data, tmp_path / "r", "--dataset", "planted,scrambled")
    assert tuned.exit_code == 0, tuned.output
    assert "test" not in events[: events.index("finals")] and events.count("valid") > 20

    planted, scrambled = document(tuned)["cells"]
    assert planted["study"] != scrambled["study"]  # named by the data's fingerprint
    assert planted["best"] == scrambled["best"]
    studies = journal_trials(tmp_path / "r")
    runs = [[(t["params"], t["value"]) for t in studies[cell["study"]]] for cell in (planted, scrambled)]
    assert runs[0] == runs[1] and len({str(p) for p, _ in runs[0]}) == 4
    assert planted["final"]["mean"]["recall@20"] != scrambled["final"]["mean"]["recall@20"]  # test did differ


def test_a_failing_trial_is_counted_and_the_study_goes_on(data, tmp_path, monkeypatch):
    real = trial.train_run

    def diverging(config, options, **kwargs):
        if options.marks["trial"] == 1:
            raise MMLBenchError("training diverged at epoch 2: the loss is nan (try a lower --lr)")
        return real(config, options, **kwargs)

    monkeypatch.setattr(trial, "train_run", diverging)
    tuned = _tune(data, tmp_path / "r")
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"]["finished"] == 4 and cell["trials"]["failed"] == 1 and cell["best"]["trial"] != 1
    failed = [t for t in journal_trials(tmp_path / "r")[cell["study"]] if t["state"] == "FAIL"]
    assert failed[0]["attrs"]["error"].startswith("training diverged")


def test_ctrl_c_then_the_same_command_finishes_the_study_without_training_a_finished_trial_again(data, tmp_path, monkeypatch):
    """Ctrl-C in trial 2's second epoch: exit 130, its run stored interrupted; the same command resumes
    that run from its checkpoint, trains only what is left, and proposes what an uninterrupted tune does."""
    reference = _tune(data, tmp_path / "ref")
    results = tmp_path / "r"
    real = trial.train_run

    def interrupted(config, options, *, on_epoch, test):
        def stop(log):
            on_epoch(log)
            if options.marks["trial"] == 2 and log.epoch == 2:
                raise KeyboardInterrupt

        return real(config, options, on_epoch=stop, test=test)

    with monkeypatch.context() as patch:
        patch.setattr(trial, "train_run", interrupted)
        stopped = _tune(data, results)
    assert stopped.exit_code == 130 and "the same command finishes the tune" in stopped.stderr
    statuses = store.read_runs(results).set_index("trial")["status"]
    assert statuses.to_dict() == {0: "trained", 1: "trained", 2: "interrupted"}

    trained = []
    real_epoch = Trainer._train_epoch
    monkeypatch.setattr(Trainer, "_train_epoch", lambda self, n: trained.append((self.config.seed, self.config.lr, n)) or real_epoch(self, n))
    finished = _tune(data, results)
    assert finished.exit_code == 0, finished.output
    (study,) = journal_trials(results).values()
    done = budget_order(study)
    lrs = [t["params"]["lr"] for t in done]
    searched = [(lr, epoch) for seed, lr, epoch in trained if seed == 2019]  # the final seed 2020 aside
    assert searched[0] == (lrs[2], 3)  # trial 2 resumed after its epoch 2; trials 0 and 1 never trained again
    assert [lr for lr, _ in searched[1:]] == [lrs[3]] * len(searched[1:]) and searched[1][1] == 1
    ((_, expected),) = journal_trials(tmp_path / "ref").items()
    assert [(t["params"], t["value"]) for t in done] == [(t["params"], t["value"]) for t in expected]
    assert document(finished)["cells"][0]["best"] == document(reference)["cells"][0]["best"]


BAD = [
    (["--trials", "0"], "--trials must be a whole number >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be a whole number >= 1, got 0"),
    (["--pruner", "mediam"], "unknown pruner 'mediam'. Did you mean 'median'?"),
    (["--backend", "lockstep"], "--backend lockstep does not apply"),
    (["--plot", "search.txt"], "--plot search.txt: unknown suffix '.txt'"),
    (["--seed", "1,2"], "tune searches one seed per cell"),
    (["--lr", "0.01,0.02"], "lr is both a [grid] axis and searched"),
    (["--dataset", "novalid"], "dataset 'novalid' has no validation split"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(data, tmp_path, args, message):
    from synthetic import make_planted

    make_planted(data, name="novalid")
    results = tmp_path / "r"
    result = runner.invoke(app, tune_args(data, results, *args))
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not results.exists()


def test_a_bad_search_table_in_the_experiment_file_is_one_line(data, tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text("[search]\nlr = { low = 0.1, high = 0.01 }\n")
    result = runner.invoke(app, tune_args(data, tmp_path / "r", "--config", str(experiment)))
    assert result.exit_code == 1 and result.stderr.strip() == f"error: [search] lr in {experiment} has low 0.1 > high 0.01"
    assert not (tmp_path / "r").exists()


def test_a_damaged_journal_is_one_line_naming_it_and_the_runs_stay_usable(data, tmp_path):
    results = tmp_path / "r"
    assert _tune(data, results, trials=2, seeds=1).exit_code == 0
    (journal,) = (results / "studies").glob("*.journal")
    journal.write_bytes(b'{"op_code": 0, "worker_id"\n' + journal.read_bytes())
    result = _tune(data, results, trials=2, seeds=1)
    assert result.exit_code == 1 and f"the study journal {journal} cannot be read" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and '"error"' in result.stdout  # the json error document
    listed = runner.invoke(app, ["runs", "--results-dir", str(results)])
    assert listed.exit_code == 0 and "trained" in listed.stdout


def test_a_kill_in_the_middle_of_a_journal_line_loses_that_line_only(data, tmp_path):
    results = tmp_path / "r"
    assert _tune(data, results, trials=2, seeds=1).exit_code == 0
    (journal,) = (results / "studies").glob("*.journal")
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker_id": "cut sh')
    result = _tune(data, results, trials=3, seeds=1)
    assert result.exit_code == 0, result.output
    assert document(result)["cells"][0]["trials"]["finished"] == 3


def test_an_unwritable_store_is_found_before_the_first_trial(data, tmp_path):
    results = tmp_path / "r"
    results.write_text("a file where the store belongs")
    result = runner.invoke(app, tune_args(data, results))
    assert result.exit_code == 1 and "cannot write the study journal" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_names_each_study_and_its_space_and_writes_nothing(data, tmp_path):
    results = tmp_path / "r"
    planned = runner.invoke(app, tune_args(data, results, "--dry-run", "--format", "json", "--loss", "ccl,mmcl"))
    assert planned.exit_code == 0, planned.output
    ccl, mmcl = document(planned)["cells"]
    assert set(ccl["space"]) == {"lr", "l2", "dropout", "margin", "negative_weight"}
    assert mmcl["space"]["margins"].startswith("0.7,0.8,0.9 or ") and not results.exists()


def test_csv_and_plot(data, tmp_path):
    plot = tmp_path / "search.png"
    result = runner.invoke(app, tune_args(data, tmp_path / "r", "--format", "csv", "--plot", str(plot), trials=3, seeds=1))
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    assert "best_validation" in header and "recall@20_mean" in header and row.count(",") == header.count(",")
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_the_first_final_seed_reuses_the_best_trial_and_only_evaluates_it(data, tmp_path, monkeypatch):
    trained: list[int] = []
    real_epoch = Trainer._train_epoch
    monkeypatch.setattr(Trainer, "_train_epoch", lambda self, n: trained.append(self.config.seed) or real_epoch(self, n))
    tuned = _tune(data, tmp_path / "r", trials=2, seeds=2)
    assert tuned.exit_code == 0
    assert trained.count(2019) == 2 * 3 and trained.count(2020) == 3  # two trials, then only seed 2020 trained
    assert not math.isnan(document(tuned)["cells"][0]["final"]["std"]["recall@20"])


def test_a_trial_whose_setting_equals_a_completed_run_reuses_it(data, tmp_path):
    """A space of one setting, which `train` ran before: both trials reuse that run (its stored validation
    curve reported), and as the best setting's first final seed it becomes the tuned run."""
    results, experiment = tmp_path / "r", tmp_path / "one.toml"
    experiment.write_text("[search]\nlr = [0.01]\nl2 = false\ndropout = false\nscore = false\n")
    trained = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(data), "--results-dir", str(results),
                                  "--lr", "0.01", *FAST])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    tuned = _tune(data, results, "--config", str(experiment), trials=2, seeds=1)
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"]["reused"] == 2 and cell["final"]["runs"][0]["status"] == "skipped"
    (run,) = store.read_runs(results).to_dict("records")
    assert (run["selection"], run["study"], run["status"]) == ("tuned", cell["study"], store.STATUS_COMPLETED)
    assert cell["best"]["validation"] == run["monitor_value"]
    (study,) = journal_trials(results).values()
    assert max(study[0]["intermediate"].values()) == run["monitor_value"]  # its curve was reported


def test_compare_tuned_shows_the_final_seeds_beside_the_untuned_runs_of_the_same_cells(data, tmp_path):
    """Trial runs are never averaged; each loss gets a tuned and an untuned row, each tested against
    the baseline loss of its own kind; an untuned run of another cell is left out."""
    results = tmp_path / "r"
    assert _tune(data, results, "--loss", "bpr,ccl", trials=2, seeds=2).exit_code == 0
    untuned = ["train", "--dataset", "planted", "--data-dir", str(data), "--results-dir", str(results), *FAST]
    assert runner.invoke(app, [*untuned, "--loss", "bpr,ccl", "--seeds", "2"]).exit_code == 0
    assert runner.invoke(app, [*untuned, "--loss", "mse"]).exit_code == 0  # another cell: left out
    compared = runner.invoke(app, ["compare", str(results), "--tuned", "--baseline", "loss=bpr", "--format", "json"])
    assert compared.exit_code == 0, compared.output
    cells = {(cell["row"]["loss"], cell["row"]["selection"]): cell for cell in document(compared)["cells"]}
    assert set(cells) == {("bpr", "tuned"), ("bpr", "untuned"), ("ccl", "tuned"), ("ccl", "untuned")}
    assert all(cell["n"] == 2 for cell in cells.values())  # the final seeds, not the trials
    tuned_runs = store.read_runs(results).query("selection == 'tuned' and loss == 'ccl'")
    ccl = cells["ccl", "tuned"]["metrics"]["recall@20"]
    assert ccl["mean"] == pytest.approx(tuned_runs["recall@20"].mean()) and ccl["tests"] and ccl["change_pct"] is not None
    untuned_bpr = store.read_runs(results).query("selection != selection and loss == 'bpr'")["recall@20"].mean()
    assert cells["bpr", "untuned"]["metrics"]["recall@20"]["mean"] == pytest.approx(untuned_bpr)
    table = runner.invoke(app, ["compare", str(results), "--tuned", "--baseline", "loss=bpr", "--format", "csv"]).stdout
    tested = {tuple(line.split(",")[1:3]): line for line in table.splitlines() if line.startswith("ours,ccl")}
    assert "loss=bpr, selection=tuned" in tested["ccl", "tuned"] and "loss=bpr, selection=untuned" in tested["ccl", "untuned"]


def test_compare_tuned_without_tuned_runs_is_one_line(data, tmp_path):
    results = tmp_path / "r"
    assert runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(data), "--results-dir", str(results), *FAST]).exit_code == 0
    compared = runner.invoke(app, ["compare", str(results), "--tuned"])
    assert compared.exit_code == 2 and "no tuned runs among the completed runs" in compared.stderr


class _PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 once it has reported its second epoch, nothing else."""

    def prune(self, study, trial):
        return trial.number == 1 and max(trial.intermediate_values, default=0) >= 2


def test_a_pruned_trial_is_stored_pruned_counted_and_never_the_best(data, tmp_path, monkeypatch):
    from mmlbench.plan.tuning import study as study_module

    monkeypatch.setattr(study_module, "make_pruner", lambda name, epochs: _PruneTrialOne())
    results = tmp_path / "r"
    tuned = _tune(data, results, trials=3, seeds=1)
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"]["pruned"] == 1 and cell["trials"]["finished"] == 3 and cell["best"]["trial"] != 1
    (pruned,) = store.read_runs(results).query("status == 'pruned'").to_dict("records")
    assert (pruned["trial"], pruned["epochs_run"], pruned["selection"]) == (1, 2, "trial")
    listed = runner.invoke(app, ["runs", "--results-dir", str(results), "--status", "pruned", "--format", "json"])
    assert [run["run_id"] for run in document(listed)] == [pruned["run_id"]]


def test_a_finished_search_waits_for_the_trials_another_process_still_trains(tmp_path, monkeypatch):
    """Two tunes on one store: the one whose search ends first waits for the other's trial in flight
    and picks its best from the whole budget (it used to pick from the trials finished so far)."""
    from mmlbench import api
    from mmlbench.plan.tuning import loop
    from mmlbench.plan.tuning.study import CellStudy
    from mmlbench.runs.options import TrainOptions

    data, results = make_tune_data(tmp_path / "d"), tmp_path / "r"
    runs = api.Runs({"dataset": "planted", "loss": "bpr", "negatives": 5, "batch_size": 64, "epochs": 3}, {})
    options = TrainOptions(device="cpu", data_dir=data, results_dir=results, quiet=True)
    (cell,) = api.tune(runs, options, api.TuneRequest(trials=1, seeds=1), dry_run=True).cells
    elsewhere = CellStudy(cell, results)
    theirs = elsewhere.ask("another-tune")  # the budget's one trial, owned by a live process (this one, another token)
    waits = []

    def their_trial_ends(seconds: float) -> None:
        waits.append(seconds)
        elsewhere.study.tell(theirs, 0.5)

    monkeypatch.setattr(loop.time, "sleep", their_trial_ends)
    loop.search_here([cell], options, show=lambda outcome: None, settle=True)
    assert len(waits) == 1  # no trial of its own to run: it waited once, then found the trial finished
    assert final.summary(CellStudy(cell, results)).best.number == theirs.number
