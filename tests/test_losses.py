"""Losses: hand-worked values, float64 gradients, MMCL(K=1) == CCL, and one contract for all."""

from __future__ import annotations

import math

import pytest
import torch

from mmlbench.engine.losses import bce, bpr, ccl, mmcl, ssm
from mmlbench.engine.scoring import DenseCosine, GatheredCosine, unit
from mmlbench.errors import MMLBenchError
from mmlbench.plugins.losses import LOSSES, resolve_params
from mmlbench.runs.build import loss_function

# The losses over scores; DirectAU, over the batch's vectors, has its own tests (test_directau.py).
SCORE_LOSSES = sorted(name for name, spec in LOSSES.items() if not spec.takes_embeddings)
S_POS = torch.tensor([0.8, 0.2], dtype=torch.float64)
S_NEG = torch.tensor([[0.95, 0.5], [0.1, 0.85]], dtype=torch.float64)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_ccl_by_hand():
    # relu(1 - s_pos) + w * mean_j relu(s_neg - m), m = 0.9, w = 150
    expected = ((0.2 + 150 * (0.05 + 0) / 2) + (0.8 + 150 * (0 + 0) / 2)) / 2
    assert ccl(S_POS, S_NEG, margin=0.9, negative_weight=150.0).item() == pytest.approx(expected)


def test_mmcl_by_hand():
    margins, weights = (0.5, 0.9), (0.25, 0.75)
    # user 0: negatives 0.95 -> 0.25*0.45 + 0.75*0.05 ; 0.5 -> 0
    neg0 = (0.25 * 0.45 + 0.75 * 0.05 + 0) / 2
    # user 1: 0.1 -> 0 ; 0.85 -> 0.25*0.35
    neg1 = (0 + 0.25 * 0.35) / 2
    expected = ((2 * 0.2 + 10 * neg0) + (2 * 0.8 + 10 * neg1)) / 2
    value = mmcl(S_POS, S_NEG, margins=margins, margin_weights=weights, negative_weight=10.0, positive_weight=2.0)
    assert value.item() == pytest.approx(expected)


def test_bpr_bce_ssm_by_hand():
    pairs = [(0.8, 0.95), (0.8, 0.5), (0.2, 0.1), (0.2, 0.85)]
    bpr_expected = sum(-math.log(_sigmoid(p - n)) for p, n in pairs) / 4
    assert bpr(S_POS, S_NEG).item() == pytest.approx(bpr_expected)
    bce_rows = [
        -math.log(_sigmoid(0.8)) - (math.log(1 - _sigmoid(0.95)) + math.log(1 - _sigmoid(0.5))) / 2,
        -math.log(_sigmoid(0.2)) - (math.log(1 - _sigmoid(0.1)) + math.log(1 - _sigmoid(0.85))) / 2,
    ]
    assert bce(S_POS, S_NEG).item() == pytest.approx(sum(bce_rows) / 2)
    t = 0.1
    ssm_rows = [
        -math.log(math.exp(0.8 / t) / (math.exp(0.8 / t) + math.exp(0.95 / t) + math.exp(0.5 / t))),
        -math.log(math.exp(0.2 / t) / (math.exp(0.2 / t) + math.exp(0.1 / t) + math.exp(0.85 / t))),
    ]
    assert ssm(S_POS, S_NEG, temperature=t).item() == pytest.approx(sum(ssm_rows) / 2)


def test_mmcl_with_one_margin_is_exactly_ccl():
    generator = torch.Generator().manual_seed(3)
    s_pos = torch.rand(64, generator=generator) * 2 - 1
    s_neg = torch.rand(64, 37, generator=generator) * 2 - 1
    for margin, weight in [(0.9, 150.0), (0.4, 3.5), (-0.2, 1.0)]:
        expected = ccl(s_pos, s_neg, margin=margin, negative_weight=weight)
        got = mmcl(s_pos, s_neg, margins=(margin,), margin_weights=(1.0,), negative_weight=weight, positive_weight=1.0)
        assert torch.equal(got, expected)


@pytest.mark.parametrize("name", SCORE_LOSSES)
def test_loss_gradients_match_float64_finite_differences(name):
    fn = loss_function(name, resolve_params(name, {}))
    generator = torch.Generator().manual_seed(1)
    # Keep scores away from the hinge kinks, where finite differences are undefined.
    s_pos = (torch.rand(5, generator=generator, dtype=torch.float64) * 0.6 + 0.1).requires_grad_()
    s_neg = (torch.rand(5, 4, generator=generator, dtype=torch.float64) * 0.6 + 0.01).requires_grad_()
    assert torch.autograd.gradcheck(fn, (s_pos, s_neg))


def test_gathered_cosine_matches_autograd_in_float64():
    generator = torch.Generator().manual_seed(7)
    table = torch.randn(9, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    raw_users = torch.randn(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.randint(9, (4, 5), generator=generator)
    assert torch.autograd.gradcheck(lambda t, u: GatheredCosine.apply(t, unit(u), index), (table, raw_users))
    cosine, squared = GatheredCosine.apply(table, unit(raw_users), index)
    reference = torch.nn.functional.cosine_similarity(table[index], raw_users.unsqueeze(1), dim=-1)
    assert torch.allclose(cosine, reference)
    assert torch.allclose(squared, (table[index] ** 2).sum(-1))


def test_dense_cosine_is_the_same_function_as_gathered_cosine():
    generator = torch.Generator().manual_seed(8)
    table = torch.randn(9, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    raw_users = torch.randn(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.randint(9, (4, 7), generator=generator)  # repeated items within and across users
    assert torch.autograd.gradcheck(lambda t, u: DenseCosine.apply(t, unit(u), index), (table, raw_users))
    upstream = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    results = []
    for scorer in (GatheredCosine, DenseCosine):
        cosine, squared = scorer.apply(table, unit(raw_users), index)
        grads = torch.autograd.grad((cosine * upstream).sum() + 1e-3 * squared.sum(), (table, raw_users))
        results.append((cosine, squared, *grads))
    for gathered, dense in zip(*results):
        assert torch.allclose(gathered, dense)


def test_batched_dense_cosine_scores_each_run_as_alone():
    """The lockstep form, table [K, I, d]: each run's values and gradients as DenseCosine on its slices."""
    generator = torch.Generator().manual_seed(9)
    table = torch.randn(3, 9, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    users = unit(torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)).requires_grad_()
    index = torch.randint(9, (3, 4, 7), generator=generator)
    upstream = torch.randn(3, 4, 7, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t, u: DenseCosine.apply(t, u, index), (table, users))
    cosine, squared = DenseCosine.apply(table, users, index)
    batched = torch.autograd.grad((cosine * upstream).sum() + 1e-3 * squared.sum(), (table, users))
    for k in range(3):
        one_table, one_users = table[k].detach().requires_grad_(), users[k].detach().requires_grad_()
        cos_k, sq_k = DenseCosine.apply(one_table, one_users, index[k])
        alone = torch.autograd.grad((cos_k * upstream[k]).sum() + 1e-3 * sq_k.sum(), (one_table, one_users))
        assert torch.allclose(cosine[k], cos_k) and torch.allclose(squared[k], sq_k)
        assert torch.allclose(batched[0][k], alone[0]) and torch.allclose(batched[1][k], alone[1])


@pytest.mark.parametrize("name", SCORE_LOSSES)
def test_every_loss_keeps_the_contract(name):
    """Finite, gradient to users and items, lower when the positive outranks, order-free."""
    fn = loss_function(name, resolve_params(name, {}))
    generator = torch.Generator().manual_seed(11)
    table = torch.randn(20, 8, generator=generator, requires_grad=True)
    users = torch.randn(6, 8, generator=generator, requires_grad=True)
    index = torch.randint(20, (6, 11), generator=generator)
    scores, _ = GatheredCosine.apply(table, unit(users), index)
    value = fn(scores[:, 0], scores[:, 1:])
    value.backward()
    assert torch.isfinite(value)
    assert table.grad.abs().sum() > 0 and users.grad.abs().sum() > 0
    good = fn(torch.full((3,), 0.95), torch.full((3, 4), -0.5))
    bad = fn(torch.full((3,), -0.5), torch.full((3, 4), 0.95))
    assert good < bad
    s_pos, s_neg = torch.rand(6), torch.rand(6, 9)
    shuffled = s_neg[:, torch.randperm(9, generator=generator)]
    assert torch.allclose(fn(s_pos, s_neg), fn(s_pos, shuffled))


@pytest.mark.parametrize(
    ("loss", "params", "message"),
    [
        ("mmcl", {"margins": (0.7, 0.8), "margin_weights": (1.0,)}, "one weight per margin"),
        ("mmcl", {"margins": (0.7, 1.5), "margin_weights": (0.5, 0.5)}, "[-1, 1]"),
        ("ccl", {"margin": -2.0}, "[-1, 1]"),
        ("ccl", {"negative_weight": 0.0}, "--negative-weight must be > 0"),
        ("ssm", {"temperature": 0.0}, "--temperature must be > 0"),
    ],
)
def test_bad_loss_parameters_are_rejected(loss, params, message):
    with pytest.raises(MMLBenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_params(loss, params)


def test_margin_weights_not_summing_to_one_warn(capsys):
    resolve_params("mmcl", {"margins": (0.8, 0.9), "margin_weights": (0.5, 0.6)})
    assert "sum to 1.1" in capsys.readouterr().err


def test_unknown_loss_names_the_closest():
    with pytest.raises(MMLBenchError, match="Did you mean 'mmcl'"):
        resolve_params("mmcll", {})
