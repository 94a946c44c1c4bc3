"""One run end to end: config -> data -> model -> fit -> test evaluation -> run folder."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import warn
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import device_name, matmul_precision, peak_memory_bytes, reset_peak_memory
from mmlbench.engine.trainer import EpochLog, FitResult, Trainer
from mmlbench.fsutil import is_disk_full
from mmlbench.provenance import versions
from mmlbench.runs import build, resume
from mmlbench.runs.options import STATUS_TRAINED, RunOutcome, TrainOptions
from mmlbench.runs.preflight import prepare
from mmlbench.runs.progress import TrainingProgress
from mmlbench.store import claims, ids
from mmlbench.store.ids import claimed_run


EpochHook = Callable[[EpochLog], None]


def train_run(config: RunConfig, options: TrainOptions, *, on_epoch: EpochHook | None = None, test: bool = True) -> RunOutcome:
    """Train one run and store it; a completed run with the same config hash is reused.

    The run is claimed in the store while it trains: claims.ClaimedElsewhere when another
    live process is training the same config. `on_epoch(log)` sees each epoch once it is
    evaluated (its validation metrics in `log.metrics` when due); a KeyboardInterrupt raised there
    stops the run as Ctrl-C does. With `test` off the test evaluation is left out: nothing is
    stored, the run's state stays in its resume checkpoint and the outcome (status `trained`,
    its `run_dir` that folder) says where the fit ended; training the config again then only
    evaluates it on test and stores it.
    """
    config, device, data = prepare(config, options)
    results_dir = options.results_dir
    config_hash = config.hash(data.fingerprint)
    reused = reuse(results_dir, config_hash, options)
    if reused is not None:
        return reused
    with claims.claimed(results_dir, config_hash, claimed_run(config, config_hash)):
        # Checked again under the claim: another sweep may have finished it since.
        return reuse(results_dir, config_hash, options) or train_claimed(
            config, options, device, data, results_dir, on_epoch=on_epoch, test=test
        )


def reuse(results_dir: Path, config_hash: str, options: TrainOptions) -> RunOutcome | None:
    """The completed run of this config hash as a skipped outcome, unless absent or --force."""
    existing = store.find_completed(results_dir, config_hash)
    if existing is None or options.force:
        return None
    return RunOutcome(existing, store.read_run(existing), skipped=True)


def train_claimed(
    config: RunConfig, options: TrainOptions, device: torch.device, data: InteractionData, results_dir: Path,
    *, on_epoch: EpochHook | None = None, test: bool = True,
) -> RunOutcome:
    """Train one run alone and store it (see train_run); the caller holds its claim and has checked it is not done."""
    config_hash = config.hash(data.fingerprint)
    run_id = ids.run_id(config, config_hash)
    resume_folder = ids.resume_folder(results_dir, run_id)
    if options.force or not options.resume:
        resume.discard(resume_folder)
    torch.manual_seed(config.seed)
    reset_peak_memory(device)
    model = build.model(config, data, device)
    started_at, started = now(), time.perf_counter()
    checkpoints = resume.Checkpoints(
        resume_folder, options.checkpoint_every,
        lambda fit, snapshot: resume.capture(trainer, fit, config_hash, snapshot=snapshot),
    )
    with matmul_precision(config.precision):  # training and the test evaluation alike
        with TrainingProgress(config, quiet=options.quiet) as progress:
            trainer = Trainer(
                config, data, build.parts(config, data, model), device,
                eval_batch_users=options.eval_batch_users, cuda_graphs=options.cuda_graphs,
                on_epoch=_then(progress.epoch_done, on_epoch), on_batch=progress.batch_done,
                on_checkpoint=checkpoints.epoch_closed, warn=warn,
            )
            resumed = resume.load(resume_folder, trainer, config_hash)  # after seeding and building: overrides both
            resumed_from = len(resumed.epochs) if resumed is not None else 0
            resume.announce(run_id, resumed_from, quiet=options.quiet)
            progress.start(trainer.batches_per_epoch, first_epoch=resumed_from + 1)
            row = run_row(config, data, device, started_at) | {"resumed_from_epoch": resumed_from}
            try:
                fit = trainer.fit(resumed)
            except store.StoreUnwritable:
                raise  # nothing more can be written: the sweep stops with this line
            except Exception as exc:  # divergence, out of memory, ...: leave a record of the failure
                checkpoints.flush()  # the last epoch that finished
                store_failure(results_dir, row, exc)
                raise
        if fit.interrupted or not test:
            checkpoints.flush()
        if not test and not fit.interrupted:
            facts = {"best_epoch": fit.best_epoch, "epochs_run": len(fit.epochs), "monitor_value": fit.best_value}
            return RunOutcome(resume_folder, {**row, **facts, "status": STATUS_TRAINED})
        try:
            return finish_run(results_dir, row, trainer, fit, started, cuda_graphs=trainer.step.use_graph)
        except BaseException:  # Ctrl-C or an error (out of memory) at the test evaluation: resumable after its last epoch
            checkpoints.flush()
            raise


def _then(first: EpochHook, second: EpochHook | None) -> EpochHook:
    if second is None:
        return first

    def both(log: EpochLog) -> None:
        first(log)
        second(log)

    return both


def run_row(
    config: RunConfig, data: InteractionData, device: torch.device, started_at: str, *, lockstep_group: int = 1
) -> dict[str, Any]:
    """The run row's columns known before training: ids, config, provenance, how it is executed.

    `execution` says whether the run trained alone or in a lockstep group of `lockstep_group`
    runs sharing one step (engine.lockstep); it does not enter the config hash: a run trained
    either way is the same cell. (`precision`, the arithmetic of its matrix products, is a
    setting: in the config columns and, when not fp32, in the hash.)
    """
    config_hash = config.hash(data.fingerprint)
    return {
        "run_id": ids.run_id(config, config_hash),
        "config_hash": config_hash,
        "setting_hash": config.hash(data.fingerprint, with_seed=False),
        "protocol": data.protocol,
        "dataset_sha256": data.fingerprint,
        "n_items": data.n_items,  # the catalogue: what negatives = all means
        **config.to_row(),
        **versions(),
        "device": device.type,
        "device_name": device_name(device),
        "started_at": started_at,
        "execution": "lockstep" if lockstep_group > 1 else "alone",
        "lockstep_group": lockstep_group,
    }


def store_failure(results_dir: Path, row: dict[str, Any], exc: BaseException) -> None:
    """Leave a record of a run that failed while training (divergence, out of memory, ...)."""
    _store(results_dir, {**row, "status": store.STATUS_FAILED, "error": str(exc)}, None, None, None)


def finish_run(
    results_dir: Path, row: dict[str, Any], trainer: Trainer, fit: FitResult, started: float, *, cuda_graphs: bool
) -> RunOutcome:
    """After the fit: the best weights evaluated on test and the run folder written.

    A completed run's resume checkpoint is removed only then: a kill before that resumes at
    the test evaluation. `started` is the perf_counter time the run started at.
    """
    config, data, device, model = trainer.config, trainer.data, trainer.device, trainer.model
    status = store.STATUS_INTERRUPTED if fit.interrupted else store.STATUS_COMPLETED
    if fit.best_state is not None:
        model.load_state_dict(fit.best_state)
    test = trainer.evaluate("test", per_user=True)
    row = {**row, **_costs(fit, data, config, device, time.perf_counter() - started)}
    row.update({"status": status, "error": "", "best_epoch": fit.best_epoch, "epochs_run": len(fit.epochs)})
    row["cuda_graphs"] = cuda_graphs  # False if capture failed and training fell back
    row.update({"monitor_value": fit.best_value, "test_eval_seconds": test.seconds, **test.metrics})
    run_dir = _store(results_dir, row, _curve(fit), test.per_user, _checkpoint(model, config, data))
    if status == store.STATUS_COMPLETED:
        resume.discard(ids.resume_folder(results_dir, str(row["run_id"])))
    return RunOutcome(run_dir, store.read_run(run_dir))


def _store(
    results_dir: Path,
    row: dict[str, Any],
    curve: pd.DataFrame | None,
    per_user: pd.DataFrame | None,
    checkpoint: dict[str, Any] | None,
) -> Path:
    row = {**row, "finished_at": now()}
    try:
        return store.write_run(results_dir, store.RunRecord(row, curve, per_user, checkpoint))
    except (OSError, RuntimeError) as exc:  # write_run has removed its temporary folder
        if is_disk_full(exc):
            raise store.StoreUnwritable(f"disk full while writing {row['run_id']} to {store.runs_dir(results_dir)}") from exc
        raise


def _costs(fit: FitResult, data: InteractionData, config: RunConfig, device: torch.device, wall: float) -> dict:
    epoch_median = fit.epoch_seconds_median
    pairs_per_epoch = data.train_items.numel()
    if config.last_batch == "wrap":
        pairs_per_epoch = math.ceil(pairs_per_epoch / config.batch_size) * config.batch_size
    return {
        "epoch_seconds_median": epoch_median,
        "eval_seconds_median": fit.eval_seconds_median,
        "train_seconds_total": sum(e.epoch_seconds for e in fit.epochs),
        "wall_seconds": wall,
        "samples_per_second": pairs_per_epoch / epoch_median if epoch_median > 0 else math.nan,
        "peak_memory_bytes": peak_memory_bytes(device),
    }


def _curve(fit: FitResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "epoch": e.epoch, "loss": e.loss, "violations": e.violations, "lr": e.lr,
                "epoch_seconds": e.epoch_seconds, "eval_seconds": e.eval_seconds, **e.metrics,
            }
            for e in fit.epochs
        ]
    )


def _checkpoint(model: torch.nn.Module, config: RunConfig, data: InteractionData) -> dict:
    return {
        "format": 1,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_row(),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "dataset_fingerprint": data.fingerprint,
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
