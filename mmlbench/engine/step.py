"""One optimisation step, optionally replayed from a CUDA graph.

Every full batch holds exactly `batch_size` training pairs, so shapes never change and the
whole step (gather, sampling, loss, backward, L2, clipping, Adam) can be captured once and
replayed: at a few hundred microseconds of GPU work per step, kernel-launch overhead would
otherwise dominate. The epoch's last, smaller batch (`last_batch = "partial"`, as the
reference's data loader) runs eagerly; `last_batch = "wrap"` fills it from the start of the
permutation instead.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from mmlbench.config import ALL, RunConfig
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.models import refresh
from mmlbench.engine.parts import Parts
from mmlbench.engine.sampling import epoch_pairs
from mmlbench.engine.scoring import every_item_scores, gathered_scores, others_of

Warn = Callable[[str], None]  # how a step reports a problem it works around (runs pass the console's)

_WARMUP_STEPS = 3  # eager steps on a side stream before capture (lazy CUDA/cuBLAS init)
_PROGRESS_EVERY = 64  # batches between progress callbacks (host-side only, no sync)


def python_warning(message: str) -> None:
    """The default `warn` of the steps: a Python RuntimeWarning."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def make_adam(params: list[Tensor], lr: float, device: torch.device, capturable: bool) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has it, else the foreach one."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True, capturable=capturable)


def clip_gradients(params: list[Tensor], max_norm: float, eps: float) -> None:
    """Scale the parameters' gradients so their global L2 norm is at most `max_norm` (see clip_norm)."""
    clip_norm([p.grad for p in params if p.grad is not None], max_norm, eps)


def clip_norm(grads: list[Tensor], max_norm: float, eps: float) -> None:
    """Scale gradients so their global L2 norm is at most `max_norm`: by max_norm / (norm + eps).

    On the CPU, reading the norm costs nothing, and skipping the rescale when it is not
    needed (the usual case) saves two passes over the embedding tables. On CUDA the scale
    is applied unconditionally on the device: no host sync, and graph-capturable.
    """
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if total.device.type == "cpu":
        if float(total) > max_norm:
            for grad in grads:
                grad.mul_(max_norm / (float(total) + eps))
        return
    scale = (max_norm / (total + eps)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)


def clip_stacked_norms(grads: list[Tensor], max_norms: Tensor, eps: Tensor) -> None:
    """`clip_norm` for K runs at once: `grads` are [K, ...] (the runs' stacked tables), and run k's
    gradients are scaled so their global norm is at most max_norms[k] (float64 [K], as `eps`).

    The same arithmetic as clip_norm run by run, so each run is clipped exactly as alone: on
    the CPU the scale is computed in double (as clip_norm's Python floats) and applied only
    when some run needs it; on CUDA in float32 on the device, clamped at 1.
    """
    per_table = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
    totals = torch.linalg.vector_norm(per_table, dim=1)
    if totals.device.type == "cpu":
        over = totals.double() > max_norms
        if not bool(over.any()):
            return
        scale = torch.where(over, (max_norms / (totals.double() + eps)).float(), 1.0)
    else:
        scale = (max_norms.float() / (totals + eps.float())).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale.view(-1, *[1] * (grad.dim() - 1)))


def add_table_l2(tables: tuple[Tensor, ...], l2: float) -> None:
    """The gradient of (l2/2)*|W|^2 over whole tables, added in place: l2 * W.

    The reference adds the penalty to the loss every step (RecBox `get_total_loss`); adding
    its closed-form gradient before clipping is the same update without a [I, d] autograd node.
    """
    if l2 == 0:
        return
    for table in tables:
        table.grad.add_(table.detach(), alpha=l2)


class GraphedSteps(ABC):
    """Replay of a captured step: a few eager warm-up steps on a side stream, then capture once
    and replay; eager throughout when `use_graph` is off or capture failed.

    Subclasses (TrainStep, lockstep's GroupStep) set `use_graph`, `_graph` (None until
    captured), `_eager_steps`, `batch_index` ([..., batch_size]) and `_wrap` (arange of the
    batch size), and implement `_capture`, `_eager_step` and `_partial_step`.
    """

    use_graph: bool
    _graph: torch.cuda.CUDAGraph | None
    _eager_steps: int
    batch_index: Tensor
    _wrap: Tensor

    def _run_once(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        elif self.use_graph and self._eager_steps >= _WARMUP_STEPS:
            self._capture()
            if self._graph is not None:
                self._graph.replay()
            else:
                self._eager_step()
        elif self.use_graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._eager_step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self._eager_step()

    def _run_batches(self, order: Tensor, wrap: bool, on_batch: Callable[[int], None] | None = None) -> int:
        """Every batch of a permutation (its last dimension), in order; returns how many.

        Full batches are copied into `batch_index` and run through the graph; the smaller last
        one is filled from the start of the permutation (`wrap`) or run eagerly as it is.
        """
        n_pairs, size = order.shape[-1], self.batch_index.shape[-1]
        batches = math.ceil(n_pairs / size)
        for batch in range(batches):
            start = batch * size
            if start + size <= n_pairs:
                self.batch_index.copy_(order[..., start : start + size])
                self._run_once()
            elif wrap:
                self.batch_index.copy_(order[..., (start + self._wrap) % n_pairs])
                self._run_once()
            else:
                self._partial_step(order[..., start:])
            if on_batch is not None and (batch + 1) % _PROGRESS_EVERY == 0:
                on_batch(batch + 1)
        return batches

    @abstractmethod
    def _capture(self) -> None: ...

    @abstractmethod
    def _partial_step(self, batch_index: Tensor) -> None: ...

    @abstractmethod
    def _eager_step(self) -> None: ...


class TrainStep(GraphedSteps):
    """The training step of one run: loss over 1 positive + N negatives, L2, clip, Adam.

    With --negatives all there is no sampler: the negatives are every item but the positive
    (scoring.every_item_scores). With no sampler otherwise (a loss over vectors, such as
    DirectAU), the loss sees the batch's user and positive-item vectors instead, and the
    epoch's violations are NaN (no negatives). `warn` reports a failed graph capture.
    """

    def __init__(
        self, parts: Parts, data: InteractionData, config: RunConfig, *, use_graph: bool, warn: Warn = python_warning
    ) -> None:
        self.model, self.data, self.sampler, self.loss_fn, self.config = parts.model, data, parts.sampler, parts.loss, config
        self.log_q = parts.log_q  # log(I q(item)) [I], for losses that correct for the sampler
        self.every_item = config.negatives == ALL
        self.scores_items = self.sampler is not None or self.every_item  # else a loss over vectors (DirectAU)
        self._pass_positives = parts.sampler_takes_positives  # in-batch: negatives from the batch
        self.warn = warn
        device = data.train_items.device
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_adam(self.params, config.lr, device, capturable=use_graph)
        self.batch_index = torch.zeros(config.batch_size, dtype=torch.long, device=device)
        self._wrap = torch.arange(config.batch_size, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.violation_sum = torch.zeros((), device=device)
        self.use_graph = use_graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._graph = None  # the captured Adam kernel holds the old rate: capture again

    def run_epoch(self, on_batch: Callable[[int], None] | None = None) -> tuple[float, float]:
        """One epoch's training pairs (`epoch_pairs`), in batches: (mean loss, mean violations)."""
        order = epoch_pairs(self.data, self.config.epoch_sampling)
        self.loss_sum.zero_()
        self.violation_sum.zero_()
        batches = self._run_batches(order, self.config.last_batch == "wrap", on_batch)
        # One host sync per epoch, here, rather than one per step.
        violations = float(self.violation_sum) / batches if self.scores_items else math.nan
        return float(self.loss_sum) / batches, violations

    def _eager_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._forward_backward_update(self.batch_index)
        self._eager_steps += 1

    def _partial_step(self, batch_index: Tensor) -> None:
        """An eager step on a smaller batch. With a captured graph, the gradients are the
        graph's own tensors: zero them in place so the next replay still finds them."""
        self.optimizer.zero_grad(set_to_none=self._graph is None)
        self._forward_backward_update(batch_index)

    def _capture(self) -> None:
        # Gradients set to None first: the captured backward then allocates them in the
        # graph's pool and every replay overwrites them (no zero_grad inside the graph).
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._forward_backward_update(self.batch_index)
        except RuntimeError as exc:  # an op this torch cannot capture: train eagerly instead
            self.warn(f"CUDA graph capture failed ({str(exc).splitlines()[0]}); training eagerly")
            self.use_graph = False
            self.optimizer.zero_grad(set_to_none=True)
            return
        self._graph = graph

    def _forward_backward_update(self, batch_index: Tensor) -> None:
        config, model = self.config, self.model
        refresh(model)  # LightGCN propagates here, once for the step's users and items
        users = self.data.train_users[batch_index]
        positives = self.data.train_items[batch_index]
        if self.scores_items:
            loss, index, item_squares = self._score_loss(users, positives)
        else:  # a loss over the batch's vectors (DirectAU): no negatives
            loss, index, item_squares = self._embedding_loss(users, positives)
        if config.l2_scope == "batch":
            user_table, id_items = model.embedding_tables()
            user_squares = user_table[users].square().sum()
            if id_items is not model.item_table():  # propagated items (LightGCN): the penalty is on the ID rows
                per_item = id_items.square().sum(-1)  # [I] first: no [B, M, d] gather
                item_squares = per_item.expand(users.shape[0], -1) if index is None else per_item[index]
            loss_and_penalty = loss + config.l2 * (user_squares + item_squares.sum()) / users.shape[0]
        else:
            loss_and_penalty = loss
        loss_and_penalty.backward()
        if config.l2_scope == "table":
            add_table_l2(model.embedding_tables(), config.l2)
        if config.grad_clip > 0:  # 0: no clipping (LightGCN's official code has none)
            clip_gradients(self.params, config.grad_clip, config.grad_clip_eps)
        self.optimizer.step()
        self.loss_sum += loss.detach()

    def _score_loss(self, users: Tensor, positives: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """The loss over 1 positive + N negatives: (loss, item index [B, 1 + N], its squared norms);
        with --negatives all no index (every item but each row's positive) and [B, I] norms."""
        cosine, table = self.config.score == "cosine", self.model.item_table()
        if self.every_item:
            index = None
            user_vectors = self.model.user_vectors(users, normalize=cosine)
            s_pos, s_neg, item_squares = every_item_scores(table, user_vectors, positives, cosine)
        else:  # the negatives are drawn before the dropout mask: the order of the random streams
            negatives = self.sampler(users, positives) if self._pass_positives else self.sampler(users)
            index = torch.cat([positives.unsqueeze(1), negatives], dim=1)
            user_vectors = self.model.user_vectors(users, normalize=cosine)
            scores, item_squares = gathered_scores(table, user_vectors, index, cosine)
            s_pos, s_neg = scores[:, 0], scores[:, 1:]
        if self.log_q is None:
            loss = self.loss_fn(s_pos, s_neg)
        elif index is None:
            loss = self.loss_fn(s_pos, s_neg, others_of(self.log_q.expand(len(users), -1), positives))
        else:
            loss = self.loss_fn(s_pos, s_neg, self.log_q[index[:, 1:]])
        self.violation_sum += (s_neg.detach() > s_pos.detach().unsqueeze(1)).float().mean()
        return loss, index, item_squares

    def _embedding_loss(self, users: Tensor, positives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The loss over the batch's user and positive-item vectors: (loss, item index [B, 1], squared norms)."""
        user_vectors = self.model.user_vectors(users, normalize=self.config.score == "cosine")
        items = self.model.item_table()[positives]
        return self.loss_fn(user_vectors, items), positives.unsqueeze(1), items.square().sum(-1, keepdim=True)
