"""The training loop: device-side batches, early stopping on the monitor, best weights kept."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mmlbench.config import RunConfig
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import synchronize
from mmlbench.engine.evaluator import Evaluation, evaluate
from mmlbench.engine.parts import Parts
from mmlbench.engine.step import TrainStep, Warn, python_warning
from mmlbench.errors import MMLBenchError


@dataclass
class EpochLog:
    epoch: int
    loss: float
    violations: float  # share of negatives scored above their positive
    epoch_seconds: float
    lr: float
    eval_seconds: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)


class StopFit(Exception):
    """Raised by an `on_epoch` callback to end the fit after that epoch (a tuner's pruner): the fit comes back `stopped`."""


@dataclass
class FitResult:
    """The trained model's best state and how it got there."""

    best_state: dict[str, Tensor] | None
    best_epoch: int
    best_value: float
    epochs: list[EpochLog]
    interrupted: bool = False
    stale: int = 0  # evaluations since the best one
    stopped: bool = False  # ended by StopFit from a callback

    @property
    def epoch_seconds_median(self) -> float:
        return statistics.median(e.epoch_seconds for e in self.epochs) if self.epochs else math.nan

    @property
    def eval_seconds_median(self) -> float:
        timed = [e.eval_seconds for e in self.epochs if not math.isnan(e.eval_seconds)]
        return statistics.median(timed) if timed else math.nan


def check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise MMLBenchError(f"training diverged at epoch {epoch}: the loss is {loss} (try a lower --lr)")


class Trainer:
    """Adam, L2, gradient clipping, early stopping with lr decay and best-weights reload."""

    def __init__(
        self,
        config: RunConfig,
        data: InteractionData,
        parts: Parts,
        device: torch.device,
        *,
        eval_batch_users: int | None = None,
        cuda_graphs: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_checkpoint: Callable[[FitResult], None] | None = None,
        warn: Warn = python_warning,
    ) -> None:
        """`parts`: the model, loss and sampler (runs.build makes them from the config); `warn`
        reports what the step works around (a CUDA graph capture that failed)."""
        self.config, self.data, self.parts, self.model, self.device = config, data, parts, parts.model, device
        self.eval_batch_users = eval_batch_users
        self.on_epoch, self.on_batch, self.on_checkpoint = on_epoch, on_batch, on_checkpoint
        use_graph = cuda_graphs and device.type == "cuda" and parts.capturable
        self.step = TrainStep(parts, data, config, use_graph=use_graph, warn=warn)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data.train_items.numel() / self.config.batch_size)

    def fit(self, resumed: FitResult | None = None) -> FitResult:
        """Train up to config.epochs, or on from a resumed fit; Ctrl-C stops early and keeps what was learned.

        `on_checkpoint` sees the fit after each epoch's evaluation and before `on_epoch`:
        by then the epoch has drawn all its random numbers. StopFit from `on_epoch` ends the fit there.
        """
        result = resumed if resumed is not None else FitResult(None, 0, -math.inf, [])
        try:
            while not self.finished(result):
                self.close_epoch(self._train_epoch(len(result.epochs) + 1), result)
        except KeyboardInterrupt:
            result.interrupted = True
        except StopFit:
            result.stopped = True
        return result

    def finished(self, result: FitResult) -> bool:
        return len(result.epochs) >= self.config.epochs or result.stale >= self.config.patience

    def close_epoch(self, log: EpochLog, result: FitResult) -> None:
        """Record a trained epoch: evaluate it when due (early stopping, plateau), then the callbacks.

        The run's own fit calls it, and so does a lockstep group for each of its runs.
        """
        result.epochs.append(log)
        if log.epoch % self.config.eval_every == 0 or log.epoch == self.config.epochs:
            result.stale = self._evaluate_epoch(log, result, result.stale)
        if self.on_checkpoint:
            self.on_checkpoint(result)
        if self.on_epoch:
            self.on_epoch(log)

    def _train_epoch(self, epoch: int) -> EpochLog:
        started = time.perf_counter()
        loss, violations = self.step.run_epoch(self.on_batch)
        synchronize(self.device)
        seconds = time.perf_counter() - started
        check_finite(loss, epoch)
        return EpochLog(epoch, loss, violations, seconds, self.step.lr)

    def _evaluate_epoch(self, log: EpochLog, result: FitResult, stale: int) -> int:
        evaluation = self.evaluate(self.data.selection_split)
        log.eval_seconds, log.metrics = evaluation.seconds, evaluation.metrics
        value = evaluation.metrics[self.config.monitor]
        if value >= result.best_value + self.config.min_delta:  # the reference's test
            result.best_value, result.best_epoch = value, log.epoch
            result.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return 0
        if self.config.plateau_lr_factor < 1 and result.best_state is not None:
            # As the reference trainer: decay the learning rate and restart from the best weights.
            lr = self.step.lr
            self.step.set_lr(max(lr * self.config.plateau_lr_factor, min(self.config.min_lr, lr)))
            self.model.load_state_dict(result.best_state)
        return stale + 1

    def evaluate(self, split: str, *, per_user: bool = False) -> Evaluation:
        return evaluate(
            self.model, self.data, split, self.config.ks,
            cosine=self.config.score == "cosine", batch_users=self.eval_batch_users, per_user=per_user,
            head_fraction=self.config.head_fraction,
        )

