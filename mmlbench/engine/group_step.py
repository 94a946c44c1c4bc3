"""The batched training step of a lockstep group (engine.lockstep): K runs, one step.

The user and item tables of K runs are stacked into [K, U, d] and [K, I, d]; each run gathers
its rows through offsets into the flattened tables, and one forward, one backward and one
Adam call per learning rate serve them all (on CUDA, one graph replay). Per run it does what
TrainStep does, batched over the runs where that keeps the arithmetic: the cosine (gathered,
or dense where a run alone would use the dense form), each run's loss on its [B, N] slice,
table L2 and global-norm clipping with per-run weights ([K] tensors), and Adam is torch's
own functional on the run's slices, so on the CPU a run in a group is bit-identical to the
run alone (tests/test_lockstep.py). On CUDA, where kernels are what a step costs, runs with
the same loss also share one vmapped loss call (float-close, not bit-equal); the scatter's
atomics make any two CUDA runs agree only within float tolerance anyway.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.adam import adam as adam_update  # torch.optim.Adam's own update, on tensor lists

from mmlbench.data.dataset import InteractionData
from mmlbench.engine.member import Member
from mmlbench.engine.models import dropout
from mmlbench.engine.sampling import epoch_pairs
from mmlbench.engine.scoring import (
    DenseCosine, GatheredCosine, dense_is_cheaper, every_item_scores, gathered_scores, others_of, unit,
)
from mmlbench.engine.step import GraphedSteps, Warn, clip_stacked_norms, make_adam, python_warning


class GroupStep(GraphedSteps):
    """The batched training step of the runs of a group, and their epoch."""

    def __init__(
        self,
        members: list[Member],
        data: InteractionData,
        device: torch.device,
        *,
        use_graph: bool,
        batched_losses: bool | None = None,
        warn: Warn = python_warning,
    ) -> None:
        """`batched_losses`: runs with the same loss share one vmapped loss call instead of one call
        each (fewer kernels, same function; float-close, not bit-equal: CPU reductions may
        group differently). Default: on CUDA only, so on the CPU a grouped run stays bit-identical
        to the run alone. `warn` reports a failed graph capture."""
        first = members[0].config
        self.batched_losses = device.type == "cuda" if batched_losses is None else batched_losses
        capturable = members[0].trainer.parts.capturable  # the samplers with a host sync cannot be captured
        self.warn = warn
        self.data, self.device, self.use_graph = data, device, use_graph and device.type == "cuda" and capturable
        self.batch_size, self.wrap_last = first.batch_size, first.last_batch == "wrap"
        self.cosine = first.score == "cosine"
        self.every_item = members[0].trainer.step.every_item  # --negatives all: every item, nothing drawn
        probe = make_adam([torch.zeros(1, device=device, requires_grad=True)], 1e-3, device, capturable=self.use_graph)
        self.adam = {key: probe.param_groups[0][key] for key in ("betas", "eps", "weight_decay", "foreach", "fused")}
        self._wrap = torch.arange(self.batch_size, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0
        self.regroup(members)

    def regroup(self, members: list[Member]) -> None:
        """Stack the members' tables and Adam moments (anew after a run left): their views from now on."""
        self.members, self._graph, count = members, None, len(members)
        with torch.no_grad():
            self.tables = [torch.stack([m.tables[i].detach() for m in members]).requires_grad_() for i in (0, 1)]
            moments = [torch.stack([m.moments[i] if m.moments else torch.zeros_like(m.tables[i % 2]) for m in members]) for i in range(4)]
        for k, member in enumerate(members):
            for param, stacked in zip(member.trainer.model.embedding_tables(), self.tables):
                param.data = stacked.detach()[k]
            member.moments = [stacked[k] for stacked in moments]
            member.steps = member.steps or [self._new_step() for _ in self.tables]
        self.offsets = [torch.arange(count, device=self.device).view(count, 1) * t.shape[1] for t in self.tables]
        self._per_run_settings()
        self.batch_index = torch.zeros(count, self.batch_size, dtype=torch.long, device=self.device)
        self.loss_sums = torch.zeros(count, device=self.device)
        self.violation_sums = torch.zeros(count, device=self.device)

    def _per_run_settings(self) -> None:
        """The members' L2 weights, clipping norms and loss groups, as tensors over the group."""
        configs, device = [m.config for m in self.members], self.device
        self.table_l2 = torch.tensor([c.l2 if c.l2_scope == "table" else 0.0 for c in configs], device=device)
        self.batch_l2 = torch.tensor([c.l2 if c.l2_scope == "batch" else 0.0 for c in configs], device=device)
        self.any_table_l2, self.any_batch_l2 = bool(self.table_l2.any()), bool(self.batch_l2.any())  # no sync in a step
        # A run without clipping (grad_clip 0) gets an infinite norm: its scale is 1, as unclipped.
        self.max_norms = torch.tensor([c.grad_clip or math.inf for c in configs], dtype=torch.float64, device=device)
        self.clip_eps = torch.tensor([c.grad_clip_eps for c in configs], dtype=torch.float64, device=device)
        by_loss: dict[Hashable, list[int]] = {}
        for k, member in enumerate(self.members):
            by_loss.setdefault(member.trainer.parts.loss_key, []).append(k)
        self.loss_groups = [(ks, torch.tensor(ks, device=device)) for ks in by_loss.values()]
        order = [k for ks in by_loss.values() for k in ks]
        self.loss_order = None if order == sorted(order) else torch.tensor(order, device=device).argsort()

    @staticmethod
    def release(members: list[Member]) -> None:
        """Give leaving members tables of their own (copies of their slices)."""
        for member in members:
            for param in member.trainer.model.embedding_tables():
                param.data = param.data.clone()

    def _new_step(self) -> Tensor:
        on_device = self.adam["fused"] or self.use_graph  # where torch.optim.Adam keeps its step
        return torch.zeros((), dtype=torch.float32, device=self.device) if on_device else torch.tensor(0.0)

    def run_epoch(self) -> list[tuple[float, float]]:
        """One epoch of each member's own training pairs (`epoch_pairs`, from its generator), as the
        member alone would draw them: (mean loss, mean violations) per member."""
        if self._graph is not None and self._captured_lrs != self._lrs():
            self._graph = None  # a run's lr decayed: the captured Adam holds the old rates
        orders = torch.stack([epoch_pairs(self.data, m.trainer.config.epoch_sampling, m.generator) for m in self.members])
        self.loss_sums.zero_()
        self.violation_sums.zero_()
        batches = self._run_batches(orders, self.wrap_last)
        losses, violations = torch.stack([self.loss_sums, self.violation_sums]).tolist()  # one host sync
        return [(loss / batches, share / batches) for loss, share in zip(losses, violations)]

    def _lrs(self) -> tuple[float, ...]:
        return tuple(m.trainer.step.lr for m in self.members)

    def _eager_step(self) -> None:
        for table in self.tables:
            table.grad = None
        self._forward_backward_update(self.batch_index)
        self._eager_steps += 1

    def _partial_step(self, batch_index: Tensor) -> None:
        """Eager, on a smaller batch; under a captured graph the gradients are its tensors: zeroed in place."""
        for table in self.tables:
            if self._graph is None:
                table.grad = None
            elif table.grad is not None:
                table.grad.zero_()
        self._forward_backward_update(batch_index)

    def _capture(self) -> None:
        for table in self.tables:
            table.grad = None
        graph = torch.cuda.CUDAGraph()
        try:
            for member in self.members:  # per-run generators advance on every replay, as the default one does
                graph.register_generator_state(member.generator)
            with torch.cuda.graph(graph):
                self._forward_backward_update(self.batch_index)
        except (RuntimeError, AttributeError) as exc:  # an op (or a torch) that cannot capture this: eager
            self.warn(f"CUDA graph capture of the lockstep step failed ({str(exc).splitlines()[0]}); training eagerly")
            self.use_graph = False
            for table in self.tables:
                table.grad = None
            return
        self._graph, self._captured_lrs = graph, self._lrs()

    def _forward_backward_update(self, batch_index: Tensor) -> None:
        count, rows = batch_index.shape
        users, positives = self.data.train_users[batch_index], self.data.train_items[batch_index]  # [K, B]
        index = None
        if not self.every_item:
            negatives = torch.stack([m.trainer.step.sampler(users[k]) for k, m in enumerate(self.members)])
            index = torch.cat([positives.unsqueeze(-1), negatives], dim=-1)  # [K, B, M]
        user_table, item_table = self.tables
        dim = user_table.shape[-1]
        flat_users = (users + self.offsets[0]).view(-1)
        embedded = F.embedding(flat_users, user_table.view(-1, dim))  # as nn.Embedding
        vectors = self._dropout(unit(embedded) if self.cosine else embedded, rows).view(count, rows, dim)
        if index is None:
            s_pos, s_neg, squares = self._every_item_scores(vectors, positives)
        else:
            scores, squares = self._scores(vectors, index)  # [K, B, M] each
            s_pos, s_neg = scores[..., 0], scores[..., 1:]
        losses = self._losses(s_pos, s_neg, index, positives)  # [K]
        penalised = losses
        if self.any_batch_l2:  # as TrainStep's l2_scope = "batch", per run
            user_squares = user_table.view(-1, dim)[flat_users].view(count, rows, dim).square().sum(dim=(1, 2))
            penalised = losses + self.batch_l2 * (user_squares + squares.sum(dim=(1, 2))) / rows
        penalised.sum().backward()
        self._regularise_and_clip()
        self._adam()
        self.loss_sums += losses.detach()
        self.violation_sums += (s_neg.detach() > s_pos.detach().unsqueeze(-1)).float().mean(dim=(1, 2))

    def _scores(self, vectors: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Each run's scores against its gathered items, and their squared norms: [K, B, M] each."""
        count, rows, dim = vectors.shape
        item_table = self.tables[1]
        if self.cosine and dense_is_cheaper(item_table[0], index[0]):  # as a run alone chooses
            return DenseCosine.apply(item_table, vectors, index)
        flat_index = (index + self.offsets[1].unsqueeze(-1)).view(count * rows, -1)
        scorer = GatheredCosine.apply if self.cosine else lambda *args: gathered_scores(*args, False)
        scores, squares = scorer(item_table.view(-1, dim), vectors.view(count * rows, dim), flat_index)
        return scores.view(count, rows, -1), squares.view(count, rows, -1)

    def _every_item_scores(self, vectors: Tensor, positives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """--negatives all, as TrainStep: [K, B] positive scores, [K, B, I - 1] the others', [K, B, I] norms.

        On the CPU run by run, as alone (bit-identical); on CUDA batched GEMMs over the K runs."""
        item_table = self.tables[1]
        if item_table.is_cuda:
            return every_item_scores(item_table, vectors, positives, self.cosine)
        parts = [every_item_scores(item_table[k], vectors[k], positives[k], self.cosine) for k in range(len(vectors))]
        squares = (item_table * item_table).sum(-1).unsqueeze(1).expand(-1, vectors.shape[1], -1)
        return torch.stack([part[0] for part in parts]), torch.stack([part[1] for part in parts]), squares

    def _losses(self, s_pos: Tensor, s_neg: Tensor, index: Tensor | None, positives: Tensor) -> Tensor:
        """Each run's own loss on its [B] and [B, N] slices: [K], in member order."""
        parts = []
        for ks, ks_tensor in self.loss_groups:
            step = self.members[ks[0]].trainer.step  # the same loss function and parameters for all of ks
            log_q = None
            if step.log_q is not None:
                log_q = step.log_q[index[..., 1:]] if index is not None else others_of(step.log_q.expand(*s_pos.shape, -1), positives)
            if self.batched_losses and len(ks) == len(self.members):  # one loss for all: no reordering
                parts.append(torch.vmap(step.loss_fn)(s_pos, s_neg, *(() if log_q is None else (log_q,))))
            elif self.batched_losses:
                pos, neg = s_pos.index_select(0, ks_tensor), s_neg.index_select(0, ks_tensor)
                args = (pos, neg) if log_q is None else (pos, neg, log_q.index_select(0, ks_tensor))
                parts.append(torch.vmap(step.loss_fn)(*args))
            else:
                parts.extend(step.loss_fn(s_pos[k], s_neg[k], *(() if log_q is None else (log_q[k],))) for k in ks)
        losses = torch.cat(parts) if self.batched_losses else torch.stack(parts)
        return losses if self.loss_order is None else losses[self.loss_order]

    def _dropout(self, vectors: Tensor, rows: int) -> Tensor:
        """Each member's dropout on its [B, d] rows, from its own generator (as models.dropout alone)."""
        if all(m.config.dropout == 0 for m in self.members):
            return vectors
        parts = vectors.view(len(self.members), rows, -1).unbind(0)
        return torch.cat([dropout(part, m.config.dropout, m.generator) for part, m in zip(parts, self.members)])

    def _regularise_and_clip(self) -> None:
        """Per run, as TrainStep: the table L2 gradient, then clipping to its own global norm."""
        grads = [table.grad for table in self.tables]
        if self.any_table_l2:
            for grad, table in zip(grads, self.tables):
                grad.addcmul_(table.detach(), self.table_l2.view(-1, 1, 1))
        clip_stacked_norms(grads, self.max_norms, self.clip_eps)

    def _adam(self) -> None:
        """torch's Adam on each run's slices, one call per distinct learning rate."""
        by_lr: dict[float, list[int]] = {}
        for k, member in enumerate(self.members):
            by_lr.setdefault(member.trainer.step.lr, []).append(k)
        (beta1, beta2), settings = self.adam["betas"], self.adam
        with torch.no_grad():
            for lr, ks in by_lr.items():
                members = [self.members[k] for k in ks]
                adam_update(
                    [table.detach()[k] for k in ks for table in self.tables],
                    [table.grad[k] for k in ks for table in self.tables],
                    [m.moments[i] for m in members for i in (0, 1)],
                    [m.moments[i] for m in members for i in (2, 3)],
                    [],
                    [s for m in members for s in m.steps],
                    foreach=settings["foreach"], fused=settings["fused"], capturable=self.use_graph,
                    amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,
                    weight_decay=settings["weight_decay"], eps=settings["eps"], maximize=False,
                )
