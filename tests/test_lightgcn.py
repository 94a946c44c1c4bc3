"""LightGCN: propagation worked by hand on a tiny graph, gradients through it, and its place
in the training step (once per step, every loss and sampler, L2 on the ID rows).

The tiny graph: users u0, u1; items i0..i3; training pairs u0-i0, u0-i1, u1-i1, u1-i2 (and
u0-i0 again: a repeated pair is one edge); i3 has no edge. Degrees u0 2, u1 2, i0 1, i1 2,
i2 1, so A_hat's entries are u0-i0 = u1-i2 = 1/sqrt(2), u0-i1 = u1-i1 = 1/2.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.models import LightGCN, SymmetricSparseProduct, normalized_adjacency
from mmlbench.engine.trainer import Trainer
from mmlbench.errors import MMLBenchError
from mmlbench.plugins.losses import LOSSES
from mmlbench.plugins.samplers import SAMPLERS
from mmlbench.runs import build
from mmlbench.runs.preflight import training_bytes

R2 = math.sqrt(2)
N_USERS, N_ITEMS = 2, 4
TRAIN_KEYS = torch.tensor([0 * 4 + 0, 0 * 4 + 1, 1 * 4 + 1, 1 * 4 + 2, 0 * 4 + 0])
USERS0, ITEMS0 = [1.0, 2.0], [4.0, 0.0, 8.0, 5.0]  # layer 0, one dimension
# Layer 1: u0 = 4/sqrt2 + 0/2 = 2 sqrt2, u1 = 0/2 + 8/sqrt2 = 4 sqrt2,
#          i0 = 1/sqrt2, i1 = (1 + 2)/2 = 1.5, i2 = 2/sqrt2 = sqrt2, i3 = 0.
USERS1, ITEMS1 = [2 * R2, 4 * R2], [1 / R2, 1.5, R2, 0.0]
# Layer 2: u0 = (1/sqrt2)/sqrt2 + 1.5/2 = 1.25, u1 = 1.5/2 + sqrt2/sqrt2 = 1.75,
#          i0 = 2 sqrt2/sqrt2 = 2, i1 = (2 sqrt2 + 4 sqrt2)/2 = 3 sqrt2, i2 = 4 sqrt2/sqrt2 = 4, i3 = 0.
USERS2, ITEMS2 = [1.25, 1.75], [2.0, 3 * R2, 4.0, 0.0]


def _tiny(layers: int, dtype: torch.dtype = torch.float32) -> LightGCN:
    adjacency = normalized_adjacency(TRAIN_KEYS, N_USERS, N_ITEMS).to(dtype)
    model = LightGCN(N_USERS, N_ITEMS, 1, 0.0, 1.0, adjacency, layers).to(dtype)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor(USERS0).unsqueeze(1))
        model.item_embedding.weight.copy_(torch.tensor(ITEMS0).unsqueeze(1))
    return model


def _mean(*layers: list[float]) -> list[float]:
    return [sum(values) / len(layers) for values in zip(*layers)]


def test_normalised_adjacency_by_hand():
    expected = torch.zeros(6, 6)
    for user, item, value in ((0, 0, 1 / R2), (0, 1, 0.5), (1, 1, 0.5), (1, 2, 1 / R2)):
        expected[user, N_USERS + item] = expected[N_USERS + item, user] = value
    adjacency = normalized_adjacency(TRAIN_KEYS, N_USERS, N_ITEMS)
    assert adjacency.layout == torch.sparse_csr
    assert torch.allclose(adjacency.to_dense(), expected)


@pytest.mark.parametrize(
    ("layers", "users", "items"),
    [
        (0, USERS0, ITEMS0),
        (1, _mean(USERS0, USERS1), _mean(ITEMS0, ITEMS1)),
        (2, _mean(USERS0, USERS1, USERS2), _mean(ITEMS0, ITEMS1, ITEMS2)),
    ],
)
def test_propagation_and_layer_mean_by_hand(layers, users, items):
    model = _tiny(layers).eval()
    assert model.user_vectors(torch.tensor([0, 1]))[:, 0].tolist() == pytest.approx(users)
    assert model.item_table()[:, 0].tolist() == pytest.approx(items)  # i3, without edges: 5 / (L + 1)


def test_sparse_product_gradient_matches_finite_differences():
    adjacency = normalized_adjacency(TRAIN_KEYS, N_USERS, N_ITEMS).to(torch.float64)
    dense = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: SymmetricSparseProduct.apply(adjacency, x), (dense,))


@pytest.mark.parametrize(("layers", "reaches_i2"), [(1, False), (3, True)])
def test_gradient_reaches_items_outside_the_batch_through_propagation(layers, reaches_i2):
    """s(u0, i0) depends on i2's ID row only through the path u0 - i1 - u1 - i2: three hops."""
    model = _tiny(layers, torch.float64)
    score = model.user_vectors(torch.tensor([0]))[0] @ model.item_table()[0]
    score.backward()
    grad = model.item_embedding.weight.grad[:, 0]
    assert bool(grad[2] != 0) is reaches_i2
    assert grad[3] == 0  # no edge: no path
    # The same gradient in float64 by finite differences of the whole propagation.
    def s_of_items(items: torch.Tensor) -> torch.Tensor:
        table = torch.cat([model.user_embedding.weight.detach(), items])
        layer, total = table, table
        for _ in range(layers):
            layer = model.adjacency @ layer
            total = total + layer
        total = total / (layers + 1)
        return total[0] @ total[N_USERS]
    items = model.item_embedding.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(s_of_items, (items,))
    expected = torch.autograd.grad(s_of_items(items), items)[0][:, 0]
    assert torch.allclose(grad, expected)


@pytest.fixture
def planted(planted_dir):
    return load_dataset("planted", planted_dir, torch.device("cpu"))


def _trainer(data, **settings) -> Trainer:
    config = RunConfig("planted", model="lightgcn", negatives=5, batch_size=64, lr=0.01, **settings).resolved()
    torch.manual_seed(0)
    return Trainer(config, data, build.parts(config, data, build.model(config, data)), torch.device("cpu"), cuda_graphs=False)


@pytest.mark.parametrize("sampler", ["uniform", "hard"])  # hard scores candidates under no_grad first
def test_one_propagation_per_step_and_per_evaluation(planted, monkeypatch, sampler):
    products = []
    original = SymmetricSparseProduct.forward

    def counted(ctx, adjacency, dense):
        products.append(1)
        return original(ctx, adjacency, dense)

    monkeypatch.setattr(SymmetricSparseProduct, "forward", staticmethod(counted))
    trainer = _trainer(planted, layers=2, sampler=sampler)
    trainer.step.run_epoch()
    assert len(products) == 2 * trainer.batches_per_epoch
    products.clear()
    trainer.evaluate("test")
    assert len(products) == 2


def test_refresh_recomputes_from_the_current_weights():
    """Propagation is linear: doubling both ID tables doubles the tables after refresh(), not before."""
    model = _tiny(2)
    before = model.item_table().detach().clone()
    with torch.no_grad():
        for table in model.embedding_tables():
            table.mul_(2)
    assert torch.equal(model.item_table().detach(), before)  # kept until the step or evaluation refreshes
    model.refresh()
    assert torch.allclose(model.item_table().detach(), 2 * before)


@pytest.mark.parametrize("score", ["cosine", "dot"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_trains_with_every_loss(planted, loss, score):
    trainer = _trainer(planted, loss=loss, score=score)
    before = trainer.model.item_embedding.weight.detach().clone()
    mean_loss, _ = trainer.step.run_epoch()
    assert math.isfinite(mean_loss)
    assert not torch.equal(trainer.model.item_embedding.weight.detach(), before)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_trains_with_every_sampler(planted, sampler):
    mean_loss, _ = _trainer(planted, sampler=sampler).step.run_epoch()
    assert math.isfinite(mean_loss)


def test_batch_l2_covers_the_id_rows_of_the_batch_only(planted):
    """A zero loss leaves the batch-scope penalty: 2 l2 / B times each ID row per occurrence in the batch.

    Penalising the propagated rows instead would spread gradient to the items' neighbours.
    """
    trainer = _trainer(planted, l2=0.1, l2_scope="batch", dropout=0.0)
    step, model = trainer.step, trainer.model
    step.loss_fn = lambda s_pos, s_neg: 0 * (s_pos.sum() + s_neg.sum())
    step.sampler = lambda users: torch.zeros((users.shape[0], 5), dtype=torch.long)  # negatives: item 0
    step.optimizer.step = lambda: None  # keep the gradients and the weights for the check
    batch = torch.arange(64)
    step._forward_backward_update(batch)
    index = torch.cat([planted.train_items[batch].unsqueeze(1), torch.zeros((64, 5), dtype=torch.long)], 1)
    occurrences = torch.bincount(index.flatten(), minlength=planted.n_items).float().unsqueeze(1)
    weights = model.item_embedding.weight.detach()
    assert torch.allclose(model.item_embedding.weight.grad, 2 * 0.1 / 64 * occurrences * weights)


def test_layers_is_a_lightgcn_parameter_only():
    assert RunConfig("planted", model="lightgcn").resolved().layers == 3
    assert RunConfig("planted", model="mf").resolved().layers is None
    assert RunConfig("planted", model="mf").resolved().hash() == RunConfig("planted", model="mf", layers=2).resolved().hash()
    with pytest.raises(MMLBenchError, match="--layers"):
        RunConfig("planted", model="lightgcn", layers=-1).resolved()


def test_memory_estimate_counts_every_layer_and_its_gradient():
    mf = training_bytes(RunConfig("planted", model="mf").resolved(), 1000, 500)
    lightgcn = training_bytes(RunConfig("planted", model="lightgcn", layers=2).resolved(), 1000, 500)
    assert lightgcn - mf == 3 * 2 * 1500 * 64 * 4  # (L + 1) outputs and gradients of [U + I, d] float32
