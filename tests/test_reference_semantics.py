"""The reference trainer's semantics, on hand-worked examples (docs/fidelity.md, "Semantics")."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.models import MF
from mmlbench.engine.parts import Parts
from mmlbench.engine.sampling import uniform
from mmlbench.engine.scoring import gathered_scores
from mmlbench.engine.step import TrainStep, add_table_l2
from mmlbench.errors import MMLBenchError


def _mf(user: list[float], items: list[list[float]], dropout: float) -> MF:
    model = MF(1, len(items), len(user), dropout, init_std=1.0)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([user]))
        model.item_embedding.weight.copy_(torch.tensor(items))
    return model


def test_dropout_comes_after_the_normalisation():
    """u = (3, 4): u/|u| = (0.6, 0.8); dropout p = 0.5 keeps a coordinate times 2: 1.2 or 1.6, else 0."""
    model = _mf([3.0, 4.0], [[3.0, 4.0]], dropout=0.5).train()
    torch.manual_seed(0)
    draws = (model.user_vectors(torch.tensor([0]), normalize=True)[0] for _ in range(200))
    seen = {tuple(round(value, 5) for value in vector.tolist()) for vector in draws}
    assert seen == {(0.0, 0.0), (1.2, 0.0), (0.0, 1.6), (1.2, 1.6)}  # dropout-then-normalise gives (1, 0), (0, 1), (0.6, 0.8)


def test_a_dropped_out_training_score_can_exceed_one():
    """With both coordinates kept: <(1.2, 1.6), (3, 4)/5> = (3.6 + 6.4) / 5 = 2.0."""
    model = _mf([3.0, 4.0], [[3.0, 4.0], [1.0, 0.0]], dropout=0.5).train()
    torch.manual_seed(0)
    for _ in range(200):
        vectors = model.user_vectors(torch.tensor([0]), normalize=True)
        if bool((vectors != 0).all()):
            break
    scores, _ = gathered_scores(model.item_table(), vectors, torch.tensor([[0, 1]]), cosine=True)
    assert scores[0].tolist() == pytest.approx([2.0, 1.2])


def test_evaluation_vectors_are_unit_and_undropped():
    model = _mf([3.0, 4.0], [[1.0, 0.0]], dropout=0.5).eval()
    assert model.user_vectors(torch.tensor([0]), normalize=True)[0].tolist() == pytest.approx([0.6, 0.8])


def test_table_l2_gradient_is_l2_times_the_table():
    """d/dW (l2/2)|W|^2 = l2 * W, for every row, used in the batch or not."""
    table = torch.tensor([[1.0, -2.0], [0.5, 4.0]], requires_grad=True)
    (0.5 * 0.1 * table.square().sum()).backward()
    expected = table.grad.clone()
    table.grad = torch.full_like(table, 3.0)  # the loss's gradient, which the penalty adds to
    add_table_l2((table,), 0.1)
    assert torch.allclose(table.grad, expected + 3.0)
    assert torch.allclose(expected, 0.1 * table.detach())


class _Recorder:
    """A uniform sampler that remembers each batch's size."""

    def __init__(self, n_items: int, negatives: int) -> None:
        self.sizes: list[int] = []
        self._draw = uniform(n_items, negatives)

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        self.sizes.append(users.shape[0])
        return self._draw(users)


def _step(planted_dir, **settings) -> tuple[TrainStep, MF, _Recorder]:
    config = RunConfig("planted", negatives=3, batch_size=64, lr=0.01, **settings).resolved()
    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    torch.manual_seed(0)
    model = MF(data.n_users, data.n_items, config.embedding_dim, config.dropout, config.init_std)
    sampler = _Recorder(data.n_items, config.negatives)
    loss = lambda s_pos, s_neg: (1 - s_pos).mean()  # noqa: E731 - a loss that ignores the negatives
    return TrainStep(Parts(model, loss, sampler), data, config, use_graph=False), model, sampler


@pytest.mark.parametrize(("last_batch", "last_size"), [("partial", None), ("wrap", 64)])
def test_the_last_batch_is_partial_as_in_the_reference(planted_dir, last_batch, last_size):
    step, _, sampler = _step(planted_dir, last_batch=last_batch)
    n_pairs = step.data.train_items.numel()
    step.run_epoch()
    assert sampler.sizes[:-1] == [64] * (len(sampler.sizes) - 1)
    assert sampler.sizes[-1] == (last_size or n_pairs - 64 * (len(sampler.sizes) - 1))
    assert len(sampler.sizes) == -(-n_pairs // 64)
    if last_batch == "partial":
        assert sum(sampler.sizes) == n_pairs  # every pair once, none twice


@pytest.mark.parametrize(("scope", "untouched_rows_move"), [("table", True), ("batch", False)])
def test_table_scope_regularises_rows_outside_the_batch(planted_dir, scope, untouched_rows_move):
    """One step on one batch: only the table-wide penalty gives the other items a gradient."""
    step, model, _ = _step(planted_dir, l2=1e-2, l2_scope=scope, dropout=0.0)
    before = model.item_embedding.weight.detach().clone()
    step.batch_index.copy_(torch.arange(64))
    step.sampler = lambda users: torch.zeros((users.shape[0], 3), dtype=torch.long)  # negatives: item 0 only
    step._eager_step()
    in_batch = set(step.data.train_items[:64].tolist()) | {0}
    others = [i for i in range(step.data.n_items) if i not in in_batch]
    moved = (model.item_embedding.weight.detach() != before).any(1)
    assert bool(moved[others].any()) is untouched_rows_move


def test_unknown_semantics_names_are_refused():
    for field, value in (("l2_scope", "tabel"), ("last_batch", "drop")):
        with pytest.raises(MMLBenchError, match=field.replace("_", "-")):
            dataclasses.replace(RunConfig("planted"), **{field: value}).resolved()
