"""`mmlbench train`: one run, a grid of runs, or an experiment file / preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mmlbench.cli.render_train import ResultFormat, plan_document, print_json, print_plan, report_sweep
from mmlbench.config import check_setting, value_type
from mmlbench.console import out
from mmlbench.engine.memory import check_sweep_fits
from mmlbench.engine.runner import TrainOptions
from mmlbench.errors import MMLBenchError
from mmlbench.experiment import Experiment, option_name, preset_names, preset_path, read_experiment
from mmlbench.plugins.losses import LOSSES
from mmlbench.plugins.models import MODELS
from mmlbench.plugins.samplers import SAMPLERS
from mmlbench.sweep import plan, run_sweep

NAME = "train"
NO_ARGS_IS_HELP = True

def _grid_help(text: str) -> Any:
    return typer.Option(help=f"{text} Comma list = one run per value.")


def command(
    dataset: Annotated[str | None, _grid_help("Processed dataset name.")] = None,
    model: Annotated[str | None, _grid_help(f"Encoder: {', '.join(sorted(MODELS))}.")] = None,
    loss: Annotated[str | None, _grid_help(f"Loss: {', '.join(sorted(LOSSES))}.")] = None,
    negatives: Annotated[str | None, _grid_help("Sampled negatives per positive [default: 100].")] = None,
    sampler: Annotated[str | None, _grid_help(f"Negative sampler: {', '.join(SAMPLERS)}.")] = None,
    popularity_alpha: Annotated[str | None, _grid_help("Exponent of --sampler popularity [default: 0.75].")] = None,
    score: Annotated[str | None, _grid_help("Similarity: cosine or dot [default: cosine].")] = None,
    embedding_dim: Annotated[str | None, _grid_help("Embedding size [default: 64].")] = None,
    dropout: Annotated[str | None, _grid_help("Dropout on the user vector [default: 0.1].")] = None,
    batch_size: Annotated[str | None, _grid_help("Training pairs per batch [default: 512].")] = None,
    lr: Annotated[str | None, _grid_help("Adam learning rate [default: 1e-4].")] = None,
    l2: Annotated[str | None, _grid_help("L2 weight on the embeddings [default: 1e-9].")] = None,
    l2_scope: Annotated[str | None, _grid_help("L2 over the whole tables every step (table, the reference) or the batch's rows (batch) [default: table].")] = None,
    last_batch: Annotated[str | None, _grid_help("Epoch's last batch: partial (the reference) or wrap (filled from the start) [default: partial].")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs [default: 100].")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N epochs [default: 1].")] = None,
    patience: Annotated[int | None, typer.Option(help="Evaluations without improvement before stopping [default: 3].")] = None,
    plateau_lr_factor: Annotated[float | None, typer.Option(help="On no improvement: lr *= this and reload the best weights; 1 = off [default: 0.1].")] = None,
    min_lr: Annotated[float | None, typer.Option(help="Floor of the plateau decay [default: 1e-6].")] = None,
    min_delta: Annotated[float | None, typer.Option(help="Smallest monitor gain that counts as improvement [default: 1e-6].")] = None,
    monitor: Annotated[str | None, typer.Option(help="Metric for model selection [default: recall@20].")] = None,
    k: Annotated[str | None, typer.Option("--k", help="Cut-offs, e.g. 10,20,50 [default: 10,20,50].")] = None,
    seed: Annotated[str | None, _grid_help("Random seed [default: 2019].")] = None,
    seeds: Annotated[int | None, typer.Option(help="Run N seeds from the base seed: --seed, else the experiment file's seed, else the default; base, base + 1, ...")] = None,
    margin: Annotated[str | None, _grid_help("CCL: the negatives' cosine threshold; hinge: the gap s_pos - s_neg asked for [default: 0.9 / 1].")] = None,
    negative_weight: Annotated[str | None, _grid_help("CCL w / MMCL W [default: 150 / 700].")] = None,
    margins: Annotated[str | None, typer.Option(help="MMCL margins, e.g. 0.7,0.8,0.9.")] = None,
    margin_weights: Annotated[str | None, typer.Option(help="MMCL margin weights, e.g. 0.10,0.15,0.75.")] = None,
    positive_weight: Annotated[str | None, _grid_help("MMCL positive weight [default: 1].")] = None,
    temperature: Annotated[str | None, _grid_help("SSM temperature / BSL τ1 [default: 0.1 / 0.08].")] = None,
    negative_power: Annotated[str | None, _grid_help("BSL τ2, the power on the negatives' softmax sum; 1 = softmax [default: 1.22].")] = None,
    logq_correction: Annotated[bool | None, typer.Option("--logq-correction/--no-logq-correction", help="SSM: subtract log(I q_j) from negative j's logit, q the sampler's probability (a no-op for uniform samplers) [default: off].")] = None,
    aggregator: Annotated[str | None, _grid_help("SimpleX history aggregator: mean or user-attention.")] = None,
    gamma: Annotated[str | None, _grid_help("SimpleX weight of the ID embedding [default: 0.5].")] = None,
    history_len: Annotated[str | None, _grid_help("SimpleX history items per user [default: 50].")] = None,
    config: Annotated[Path | None, typer.Option(help="Experiment file (TOML): settings, grid, per-loss parameters.")] = None,
    preset: Annotated[str | None, typer.Option(help="A packaged experiment file, see --list-presets.")] = None,
    quick: Annotated[bool, typer.Option(help="The experiment's CPU-sized [quick] variant.")] = False,
    list_presets: Annotated[bool, typer.Option(help="List the packaged presets and exit.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the runs a sweep would do, then exit.")] = False,
    force: Annotated[bool, typer.Option(help="Re-run configs that already completed (from scratch).")] = False,
    no_resume: Annotated[bool, typer.Option(help="Start interrupted runs over instead of resuming them.")] = False,
    jobs: Annotated[int, typer.Option(help="Runs at once (worker processes; for one GPU).", min=1)] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    eval_batch_users: Annotated[int | None, typer.Option(help="Users per evaluation batch [default: from memory].", min=1)] = None,
    no_cuda_graphs: Annotated[bool, typer.Option(help="Train eagerly on CUDA (no graph capture).")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Data home [default: $MMLBENCH_DATA_DIR or ./datasets].")] = None,
    results_dir: Annotated[Path | None, typer.Option(help="Run store [default: $MMLBENCH_RESULTS_DIR or ./results].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    output_format: Annotated[ResultFormat, typer.Option("--format", help="table, or json: one document on stdout for scripts.")] = ResultFormat.table,
) -> None:
    """Train one run or a sweep of runs (lists, --seeds, --config or --preset)."""
    if list_presets:
        for name in preset_names():
            out.print(f"{name}\t{preset_path(name)}", highlight=False)
        return
    values = dict(locals())  # every option by name, for _command_line to sort into settings and grid
    experiment = _experiment(config, preset, quick).with_command_line(*_command_line(values))
    if seeds is not None:
        experiment = experiment.with_seeds(seeds)
    configs = experiment.configs()
    options = TrainOptions(
        device=device, data_dir=data_dir, results_dir=results_dir, quiet=quiet, force=force, resume=not no_resume,
        eval_batch_users=eval_batch_users, cuda_graphs=not no_cuda_graphs,
    )
    check_sweep_fits(configs, device, data_dir)
    if dry_run:
        rows = plan(configs, options)
        if output_format is ResultFormat.json:
            print_json(plan_document(rows))
        else:
            print_plan(rows)
        return
    report_sweep(run_sweep(configs, options, jobs=jobs), as_json=output_format is ResultFormat.json)


def _experiment(config: Path | None, preset: str | None, quick: bool) -> Experiment:
    if config and preset:
        raise MMLBenchError("give --config or --preset, not both")
    source = config or (preset_path(preset) if preset else None)
    if source is None:
        if quick:
            raise MMLBenchError("--quick needs --config or --preset")
        return Experiment()
    return read_experiment(source, quick=quick)


# Options that vary across runs: their comma lists become grid axes. Types come from RunConfig.
_GRIDDABLE = (
    "dataset", "model", "loss", "negatives", "sampler", "popularity_alpha", "score", "embedding_dim", "dropout",
    "batch_size", "lr", "l2", "l2_scope", "last_batch", "seed", "margin", "negative_weight", "positive_weight",
    "temperature", "negative_power", "aggregator", "gamma", "history_len",
)
_SCALARS = ("logq_correction", "epochs", "eval_every", "patience", "plateau_lr_factor", "min_lr", "min_delta", "monitor")
_TUPLES = {"k": "ks", "margins": "margins", "margin_weights": "margin_weights"}  # option -> field


def _command_line(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split the given options into fixed settings and grid axes, each value type-checked."""
    settings: dict[str, Any] = {
        name: check_setting(name, values[name], option_name(name)) for name in _SCALARS if values[name] is not None
    }
    grid: dict[str, list[Any]] = {}
    for name in _GRIDDABLE:
        if values[name] is not None:
            parsed = [check_setting(name, v, option_name(name)) for v in _parse_list(name, values[name], value_type(name))]
            if len(parsed) == 1:
                settings[name] = parsed[0]
            else:
                grid[name] = parsed
    for option, field_name in _TUPLES.items():
        if values[option] is not None:
            parsed = _parse_list(option, values[option], value_type(field_name))
            settings[field_name] = check_setting(field_name, parsed, option_name(option))
    return settings, grid


def _parse_list(name: str, text: str, convert: type) -> list[Any]:
    option = option_name(name)
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise MMLBenchError(f"{option} has an empty value in '{text}'")
    try:
        return [convert(part) for part in parts]
    except ValueError:
        raise MMLBenchError(f"{option} expects {convert.__name__} values, got '{text}'") from None
