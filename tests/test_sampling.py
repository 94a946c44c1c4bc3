"""Negative samplers: ranges, exclusion of positives, popularity proportions, in-batch rows,
hard negatives' top-N, and the settings each refuses."""

from __future__ import annotations

import pytest
import torch

from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.models import MF
from mmlbench.engine.parts import Parts
from mmlbench.engine.sampling import model_scorer
from mmlbench.engine.scoring import unit
from mmlbench.engine.step import TrainStep
from mmlbench.errors import MMLBenchError
from mmlbench.runs.build import make_sampler, relative_log_q


def _sampler(name, keys, counts, n_items=10, negatives=400, alpha=1.0):
    return make_sampler(name, n_items=n_items, negatives=negatives, positive_keys=keys, item_counts=counts, params={"popularity_alpha": alpha})


def test_uniform_covers_every_item_with_replacement():
    torch.manual_seed(0)
    drawn = _sampler("uniform", torch.tensor([0]), torch.ones(10))(torch.arange(5))
    assert drawn.shape == (5, 400)
    assert set(drawn.flatten().tolist()) == set(range(10))


def test_uniform_exclude_positives_never_returns_a_positive():
    torch.manual_seed(0)
    n_items = 10
    positives = {0: [1, 2, 3, 4, 5, 6, 7, 8], 1: [0], 2: []}  # user 0 has only items 0 and 9 left
    keys = torch.tensor(sorted(u * n_items + i for u, items in positives.items() for i in items))
    drawn = _sampler("uniform-exclude-pos", keys, torch.ones(n_items))(torch.tensor([0, 1, 2, 0]))
    assert set(drawn[0].tolist()) == {0, 9} and set(drawn[3].tolist()) == {0, 9}
    assert 0 not in drawn[1].tolist()
    assert len(set(drawn[2].tolist())) == n_items


def test_popularity_follows_counts_to_the_power_alpha():
    torch.manual_seed(0)
    counts = torch.tensor([1.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    drawn = _sampler("popularity", torch.tensor([0]), counts, negatives=20000, alpha=0.5)(torch.arange(1)).flatten()
    share_of_item2 = (drawn == 2).float().mean().item()
    assert set(drawn.tolist()) == {0, 2}
    assert abs(share_of_item2 - 2 / 3) < 0.02  # sqrt(4) / (sqrt(1) + sqrt(4))


def _in_batch(negatives):
    return make_sampler("in-batch", n_items=50, negatives=negatives, positive_keys=None, item_counts=None, params={})


def test_in_batch_row_b_takes_the_positives_of_the_next_rows_cyclically():
    positives = torch.tensor([10, 11, 12, 13, 14])
    drawn = _in_batch(3)(torch.arange(5), positives)
    assert drawn.tolist() == [[11, 12, 13], [12, 13, 14], [13, 14, 10], [14, 10, 11], [10, 11, 12]]
    # B - 1 negatives: every other row's positive exactly once, never the row's own.
    full = _in_batch(4)(torch.arange(5), positives)
    for row in range(5):
        assert sorted(full[row].tolist()) == sorted(set(positives.tolist()) - {int(positives[row])})


def test_in_batch_keeps_accidental_hits_and_wraps_in_a_small_last_batch():
    drawn = _in_batch(2)(torch.arange(3), torch.tensor([7, 7, 9]))
    assert drawn.tolist() == [[7, 9], [9, 7], [7, 7]]  # row 0's positive 7 is also row 1's: kept
    wrapped = _in_batch(3)(torch.arange(2), torch.tensor([4, 5]))  # B' = 2 <= N = 3
    assert wrapped.tolist() == [[5, 4, 5], [4, 5, 4]]


def test_in_batch_log_q_is_the_share_of_training_pairs():
    counts = torch.tensor([3, 1, 0, 4])
    # q = count / 8, log(I q) = log(4 q) = log([1.5, 0.5, 0, 2])
    expected = torch.log(torch.tensor([1.5, 0.5, 0.0, 2.0]))
    assert torch.allclose(relative_log_q("in-batch", item_counts=counts, params={}), expected)


def test_hard_keeps_the_candidates_the_scorer_ranks_highest():
    torch.manual_seed(0)
    seen = []

    def by_item_id(users, items):  # scores rank the item ids: the kept are the largest ids drawn
        seen.append(items.clone())
        return items.float()

    sample = make_sampler(
        "hard", n_items=1000, negatives=4, positive_keys=None, item_counts=None, params={"candidates": 20}, scorer=by_item_id
    )
    kept = sample(torch.arange(6))
    (candidates,) = seen
    assert candidates.shape == (6, 20) and kept.shape == (6, 4)
    for row in range(6):
        assert sorted(kept[row].tolist()) == sorted(candidates[row].tolist())[-4:]


def test_model_scorer_gives_the_evaluators_scores_without_dropout():
    torch.manual_seed(0)
    model = MF(n_users=3, n_items=5, dim=4, dropout=0.9, init_std=1.0)
    model.train()
    users, items = torch.tensor([0, 2]), torch.tensor([[0, 4, 4], [1, 2, 3]])
    for cosine in (True, False):
        scores = model_scorer(model, cosine)(users, items)
        u, table = model.user_embedding.weight[users], model.item_embedding.weight
        if cosine:
            u, table = unit(u), unit(table)
        expected = torch.stack([table[items[b]] @ u[b] for b in range(2)])
        assert torch.allclose(scores, expected) and not scores.requires_grad
    assert model.dropout.training  # switched back on for the training step


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(sampler="hard", negatives=10, candidates=9), "--candidates 9 must be >= --negatives 10"),
        (dict(sampler="in-batch", negatives=64, batch_size=64), "--negatives 64 must be <= --batch-size - 1 = 63"),
    ],
)
def test_impossible_sampler_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(MMLBenchError, match=message):
        RunConfig("planted", **settings).resolved()


def test_hard_draws_five_candidates_per_negative_unless_told():
    assert RunConfig("planted", sampler="hard", negatives=7).resolved().candidates == 35
    assert RunConfig("planted", sampler="hard", negatives=7, candidates=7).resolved().candidates == 7
    assert RunConfig("planted", sampler="uniform", candidates=9).resolved().candidates is None  # not its parameter


def test_the_step_hands_in_batch_the_batchs_positives(planted_dir):
    config = RunConfig("planted", sampler="in-batch", negatives=3, batch_size=64).resolved()
    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    model = MF(data.n_users, data.n_items, config.embedding_dim, config.dropout, config.init_std)
    calls = []

    def recorder(users, positives):
        calls.append((users.clone(), positives.clone()))
        return positives.roll(-1).unsqueeze(1).expand(-1, 3)

    loss = lambda s_pos, s_neg: (s_neg - s_pos.unsqueeze(1)).mean()  # noqa: E731
    step = TrainStep(Parts(model, loss, recorder, sampler_takes_positives=True), data, config, use_graph=False)
    step.batch_index.copy_(torch.arange(10, 74))
    step._eager_step()
    ((users, positives),) = calls
    assert torch.equal(users, data.train_users[10:74]) and torch.equal(positives, data.train_items[10:74])


def test_the_cli_refuses_too_few_candidates_in_one_line(planted_dir, tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
        "--sampler", "hard", "--negatives", "10", "--candidates", "9", "-q",
    ])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --candidates 9 must be >= --negatives 10 (--sampler hard keeps the best --negatives of --candidates uniform draws)"
    ]
    assert not (tmp_path / "r").exists()
