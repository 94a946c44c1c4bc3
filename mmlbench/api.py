"""The verbs of mmlbench as plain functions: train, plan, evaluate, compare, gate, and the runs of a store.

Each takes typed arguments and returns a result object; none prints (a training run's progress
lines aside) and each raises MMLBenchError for what a user can fix. A command of the CLI parses
its options, calls one verb and renders what comes back; tests and scripts call the same verbs.
The layers below are imported when a verb runs, so importing this module (the CLI does, at
start-up) costs neither torch nor pandas. `tune` takes the grid of `train` (`Runs`, `TrainOptions`)
and searches each cell on the validation split (plan/tuning), every trial a run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmlbench.fsutil import writable_folder
from mmlbench.paths import results_home
from mmlbench.plan.executors import BackendOptions, backend_help, get_executor
from mmlbench.plan.experiment import Runs
from mmlbench.runs.options import RunOutcome, TrainOptions

if TYPE_CHECKING:
    import pandas as pd

    from mmlbench.config import RunConfig
    from mmlbench.plan.executors.base import Executor
    from mmlbench.plan.sweep import SweepResult
    from mmlbench.plan.tuning.study import Cell
    from mmlbench.plan.tuning.tune import TuneResult
    from mmlbench.report.compare import Comparison
    from mmlbench.report.gate import GateResult, MaxDrop
    from mmlbench.report.runs import RunDetails
    from mmlbench.report.selection import CompareSpec
    from mmlbench.runs.rescore import Evaluated

__all__ = [
    "BackendOptions", "CompareRequest", "Compared", "Gated", "Pruned", "RunOutcome", "Runs",
    "RunsListing", "TrainOptions", "TuneRequest", "Tuned", "backend_help", "compare", "evaluate", "gate", "list_runs",
    "plan", "presets", "prune_runs", "remove_runs", "show_run", "train", "tune",
]  # fmt: skip


def presets() -> list[tuple[str, Path]]:
    """The packaged presets: (name, experiment file)."""
    from mmlbench.plan.presets import preset_names, preset_path

    return [(name, preset_path(name)) for name in preset_names()]


def plan(
    runs: Runs, options: TrainOptions | None = None, *, backend: str = "local", spread: BackendOptions | None = None,
    fetch: bool = True, source: str | None = None,
) -> list[tuple[RunConfig, str, str]]:
    """What `train` would do, nothing trained or fetched: (config, run id, done | claimed elsewhere | to run) per run."""
    from mmlbench.plan.sweep import plan as plan_sweep

    options = options or TrainOptions()
    _, found, fetching = _sweep(runs, options, backend, spread, fetch, source, dry_run=True)
    return plan_sweep(found, options, fetching)


def train(
    runs: Runs, options: TrainOptions | None = None, *, backend: str = "local", spread: BackendOptions | None = None,
    fetch: bool = True, source: str | None = None,
) -> SweepResult:
    """Train every run of `runs` through `backend` (a missing registered dataset fetched first,
    from `source`, unless `fetch` is off); completed runs are reused, failures recorded."""
    from mmlbench.plan.sweep import SweepResult, run_sweep

    options = options or TrainOptions()
    executor, found, _ = _sweep(runs, options, backend, spread, fetch, source, dry_run=False)
    return SweepResult.of(run_sweep(found, options, executor=executor), options.data_dir)


def _sweep(
    runs: Runs, options: TrainOptions, backend: str, spread: BackendOptions | None, fetch: bool, source: str | None,
    *, dry_run: bool, configs: list[RunConfig] | None = None,
) -> tuple[Executor, list[RunConfig], Collection[str]]:
    """The backend's executor, the runs (`configs`, else the runs'), the datasets being fetched: all checked before any run starts."""
    from mmlbench.data.fetch import fetch_missing
    from mmlbench.runs.preflight import check_sweep_fits  # the engine imports torch: only when a sweep is made

    executor = get_executor(backend, spread)
    found = runs.configs() if configs is None else configs
    datasets = [config.dataset for config in found]
    fetching = fetch_missing(datasets, options.data_dir, source=source, fetch=fetch, dry_run=dry_run, quiet=options.quiet)
    check_sweep_fits(found, options.device, options.data_dir)
    return executor, found, fetching


@dataclass(frozen=True)
class TuneRequest:
    """A tune's budget as the command line gives it (None: the experiment file's [tune], else the default)."""

    trials: int | None = None  # finished trials per cell
    seeds: int | None = None  # final seeds of each cell's best setting
    pruner: str | None = None  # median, hyperband or none
    plot: Path | None = None  # each cell's search drawn: the best validation value by trial


@dataclass(frozen=True)
class Tuned:
    cells: list[Cell]  # what was (or, on a dry run, would be) searched
    result: TuneResult | None = None  # None on a dry run
    plot: Path | None = None  # written


def tune(
    runs: Runs, options: TrainOptions | None = None, request: TuneRequest | None = None, *, backend: str = "local",
    spread: BackendOptions | None = None, fetch: bool = True, source: str | None = None, dry_run: bool = False,
) -> Tuned:
    """Search every cell of `runs` with the same budget on the validation split, then train each best setting's
    final seeds and test them once; every check is made before the first study is opened. See plan/tuning."""
    from mmlbench.plan.tuning.cells import grid_configs, plan_cells, tune_settings
    from mmlbench.plan.tuning.tune import run_tune
    from mmlbench.report.search_plot import check_plot_path, plot_searches

    options, request, spread = options or TrainOptions(), request or TuneRequest(), spread or BackendOptions()
    _refuse_for_tune(backend, spread)
    executor = get_executor(backend, spread)
    settings = tune_settings(runs, {"trials": request.trials, "seeds": request.seeds, "pruner": request.pruner})
    configs = grid_configs(runs)
    if request.plot is not None:
        check_plot_path(request.plot)
    _, found, _ = _sweep(runs, options, backend, spread, fetch, source, dry_run=dry_run, configs=configs)
    cells = plan_cells(runs, found, settings, options.data_dir)
    if dry_run:
        return Tuned(cells)
    result = run_tune(cells, options, backend, spread, executor)
    if request.plot is not None:
        plot_searches([(cell.cell.name, cell.history) for cell in result.cells], request.plot)
    return Tuned(cells, result, request.plot)


def _refuse_for_tune(backend: str, spread: BackendOptions) -> None:
    from mmlbench.errors import MMLBenchError

    if backend.lower() == "lockstep":
        raise MMLBenchError("tune trains one trial at a time per worker: --backend lockstep does not apply (use --jobs N)")
    if spread.ship_results:
        raise MMLBenchError("--ship-results does not apply to tune: its workers share the study journals in the store")


def evaluate(
    run: str, *, ks: tuple[int, ...] | None = None, split: str = "test", device: str = "auto", data_dir: Path | None = None,
    results_dir: Path | None = None, eval_batch_users: int | None = None, export_topk: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluated:
    """Re-score a stored run (a folder, an id or a unique prefix) at `ks` (default: the run's) on
    `split`, its top-K lists exported to `export_topk`; on test, metrics the run lacks are added
    to it when the ones it holds re-score to the stored values (runs.rescore.evaluate_stored)."""
    from mmlbench.runs.rescore import check_top_k_path, evaluate_stored
    from mmlbench.store.listing import find_run

    if export_topk is not None:
        check_top_k_path(export_topk)
    run_dir = find_run(_store(results_dir), run)
    return evaluate_stored(
        run_dir, ks=ks, split=split, device=device, data_dir=data_dir, eval_batch_users=eval_batch_users,
        export_topk=export_topk, progress=progress, writable=writable_folder(run_dir),
    )


# A comparison's rows, columns and metrics when neither the request nor a preset names them.
DEFAULT_SHAPE = {"rows": ["loss"], "cols": ["negatives"], "metrics": ["recall@20", "ndcg@20"]}


@dataclass(frozen=True)
class CompareRequest:
    """What `compare` and `gate` read: the store's completed runs, filtered (`where`: column ->
    any of its values), shaped by `rows`, `cols` and `metrics` (None: a preset's [report], else
    DEFAULT_SHAPE), a preset's filters joined by `where` and its baseline replaced by
    `baseline`, and the files to write."""

    results_dir: Path | None = None
    rows: list[str] | None = None
    cols: list[str] | None = None
    metrics: list[str] | None = None
    where: Mapping[str, list[str]] = field(default_factory=dict)
    baseline: str | None = None  # the baseline row as typed: COLUMN=VALUE, or the value of a single row column
    alpha: float = 0.05
    cost: bool = False
    preset: str | None = None
    plot: Path | None = None
    plot_curves: Path | None = None
    export_baseline: Path | None = None
    tuned: bool = False  # a tune's final seeds beside the untuned runs of their cells (report/tuned.py)


@dataclass(frozen=True)
class Compared:
    comparison: Comparison
    curves_left_out: list[str] = field(default_factory=list)  # runs without a curve, left out of --plot-curves
    baseline_groups: int | None = None  # groups written to export_baseline


def compare(request: CompareRequest, *, show: Callable[[Comparison], None] | None = None) -> Compared:
    """The comparison of the selected runs; `show` gets it before any file is written, so the
    table reaches the reader first and an error writing a plot comes after it."""
    from mmlbench.report import gate, plots
    from mmlbench.report.compare import build_comparison
    from mmlbench.report.selection import apply_where

    spec, runs = _selection(request)
    comparison = build_comparison(runs, spec)
    # The requested rows, not the comparison's (which may be split by data version): a baseline
    # group that would mix versions is refused before anything is shown.
    baseline = gate.export_baseline(runs, spec.rows, spec.cols, spec.metrics, spec.where) if request.export_baseline else None
    if show is not None:
        show(comparison)
    if request.plot is not None:
        plots.plot_metric(comparison, request.plot)
    left_out = plots.plot_curves(apply_where(runs, spec.where), spec, request.plot_curves) if request.plot_curves else []
    if baseline is not None:
        gate.write_baseline(baseline, request.export_baseline)
    return Compared(comparison, left_out, None if baseline is None else len(baseline))


@dataclass(frozen=True)
class Gated:
    result: GateResult
    max_drop: MaxDrop


def gate(request: CompareRequest, against: Path, max_drop: str = "0") -> Gated:
    """The CI regression gate: the selected runs' group means against the baseline file `against`;
    a metric worse than its baseline by more than `max_drop` (absolute 0.02 or relative 5%) is a
    regression. A preset is read as compare reads it (a bad one refused alike); its table is unused."""
    from mmlbench.report import gate as gating
    from mmlbench.report.selection import apply_where

    _, runs = _selection(request)
    drop = gating.parse_max_drop(max_drop)
    baseline = gating.read_baseline(against)
    return Gated(gating.check_against(apply_where(runs, request.where), baseline, drop), drop)


def _selection(request: CompareRequest) -> tuple[CompareSpec, pd.DataFrame]:
    import dataclasses

    from mmlbench.report.selection import CompareSpec, load_completed_runs, parse_baseline
    from mmlbench.report.tuned import tuned_beside_untuned, with_selection_row

    from_preset = _preset_spec(request) if request.preset is not None else None
    runs = load_completed_runs(_store(request.results_dir))
    if from_preset is None:
        rows, cols, metrics = (_shape(request, name, {}) for name in ("rows", "cols", "metrics"))
        baseline = parse_baseline(request.baseline, rows) if request.baseline else {}
        spec = CompareSpec(rows, cols, metrics, dict(request.where), baseline, request.alpha, request.cost)
    else:
        spec = from_preset
    if request.tuned:
        return dataclasses.replace(spec, rows=with_selection_row(spec.rows)), tuned_beside_untuned(runs)
    return spec, runs


def _shape(request: CompareRequest, name: str, report: Mapping[str, Any]) -> list[str]:
    """The request's rows, cols or metrics as given, else the preset report's, else the default."""
    given = getattr(request, name)
    return list(given if given is not None else report.get(name, DEFAULT_SHAPE[name]))


def _preset_spec(request: CompareRequest) -> CompareSpec:
    """The paper-shaped comparison a preset describes; `where` adds filters, `baseline` replaces its own."""
    from mmlbench.errors import MMLBenchError
    from mmlbench.plan.experiment import read_experiment
    from mmlbench.plan.presets import preset_path
    from mmlbench.report.selection import CompareSpec, fail, parse_baseline

    name = str(request.preset)
    try:
        report = read_experiment(preset_path(name)).report
    except MMLBenchError as exc:
        raise fail(str(exc)) from None
    if not report:
        raise fail(f"preset '{name}' has no [report] section")
    rows = _shape(request, "rows", report)
    baseline_text = request.baseline or report.get("baseline")
    return CompareSpec(
        rows=rows,
        cols=_shape(request, "cols", report),
        metrics=_shape(request, "metrics", report),
        where={**report.get("where", {}), **request.where},
        baseline=parse_baseline(baseline_text, rows) if baseline_text else {},
        alpha=request.alpha,
        cost=request.cost,
        references=[dict(reference) for reference in report.get("references", [])],
    )


@dataclass(frozen=True)
class RunsListing:
    runs: pd.DataFrame  # one row per run: id, status, settings, epochs, the monitor metric, finish time, ...
    store: Path  # the store listed
    damaged: list[str]  # the error of each damaged run listed


def list_runs(
    results_dir: Path | None = None, where: Mapping[str, list[str]] | None = None, statuses: Collection[str] = ()
) -> RunsListing:
    """The runs of a store (running and orphaned ones included), matching every `where` column and one of `statuses`."""
    from mmlbench.report import runs
    from mmlbench.store.listing import STATUS_DAMAGED

    listed = _store(results_dir)
    listing = runs.list_runs(listed, dict(where or {}), list(statuses))
    return RunsListing(listing, listed, listing.loc[listing["status"] == STATUS_DAMAGED, "error"].tolist())


def show_run(run: str, results_dir: Path | None = None) -> RunDetails:
    """One run (a folder, an id or a unique prefix): settings, provenance, costs, test metrics, curve."""
    from mmlbench.report.runs import details
    from mmlbench.store.listing import find_run

    return details(find_run(_store(results_dir), run))


def remove_runs(run_ids: Sequence[str], results_dir: Path | None = None) -> list[str]:
    """Remove runs by exact id, with their resume checkpoints; an unknown or running id stops it before any is removed."""
    from mmlbench.store.listing import find_exact, remove

    return remove(find_exact(_store(results_dir), run_ids))


@dataclass(frozen=True)
class Pruned:
    candidates: pd.DataFrame  # the runs pruning takes (listing rows)
    removed: list[str]  # their ids, once removed (none on a dry run)


def prune_runs(
    statuses: Collection[str], where: Mapping[str, list[str]] | None = None, results_dir: Path | None = None,
    *, dry_run: bool = False,
) -> Pruned:
    """Remove the failed, interrupted, damaged runs and/or orphaned checkpoints asked for (never a completed or running run)."""
    from mmlbench.report.runs import prune_candidates
    from mmlbench.store.listing import remove

    candidates = prune_candidates(_store(results_dir), list(statuses), dict(where or {}))
    return Pruned(candidates, [] if dry_run or candidates.empty else remove(candidates))


def _store(results_dir: Path | None) -> Path:
    """The run store: `results_dir`, else $MMLBENCH_RESULTS_DIR, else ./results (TrainOptions resolves its own alike)."""
    return results_home(results_dir)
