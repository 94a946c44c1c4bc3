"""SimpleX's user attention against a transcription of the reference's arithmetic (RecZoo
`SimpleX.BehaviorAggregator.user_attention` + `masked_softmax`, RecBox 0.0.4), on fixed tensors.

The reference pads each history with a zero embedding, keys every slot with tanh(W_k e + b),
sets the padded slots' logits to 0 (not -inf) and divides exp(x) by (sum over all L slots of
exp(x)) + 1e-9: each padded slot adds exp(0) = 1 to the denominator.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.engine.models import SimpleX

DIM, GAMMA = 4, 0.3
HISTORY = torch.tensor([[0, 1, 2, 3], [4, 5, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
LENGTHS = torch.tensor([4, 2, 1, 0])  # users 1-3 padded, user 3 with no history at all


def _model(aggregator: str) -> SimpleX:
    torch.manual_seed(0)
    mask = torch.arange(HISTORY.shape[1]).unsqueeze(0) < LENGTHS.unsqueeze(1)
    model = SimpleX(4, 6, DIM, 0.0, 0.5, HISTORY, mask, aggregator, GAMMA)
    if model.attention.bias is not None:
        nn.init.normal_(model.attention.bias, std=0.5)  # the reference starts it at 0: make it count here
    return model.eval()


def reference_user_vectors(uid_emb, sequence_emb, w_k: nn.Linear, w_v: nn.Linear, gamma: float):
    """The reference's arithmetic, transcribed: sequence_emb [B, L, d] with zero rows as padding."""
    key = torch.tanh(w_k(sequence_emb))
    mask = sequence_emb.sum(dim=-1) == 0
    attention = torch.bmm(key, uid_emb.unsqueeze(-1)).squeeze(-1)
    attention = attention.masked_fill(mask, 0)
    e_x = torch.exp(attention)
    attention = e_x / (e_x.sum(dim=1, keepdim=True) + 1.0e-9)
    output = w_v(torch.bmm(attention.unsqueeze(1), sequence_emb).squeeze(1))
    return gamma * uid_emb + (1 - gamma) * output


def test_user_attention_is_the_references_arithmetic():
    model = _model("user-attention")
    users = torch.arange(4)
    mask = model.history_mask[users]
    padded = model.item_embedding(HISTORY) * mask.unsqueeze(-1)  # the reference's zero padding rows
    with torch.no_grad():
        expected = reference_user_vectors(model.user_embedding(users), padded, model.attention, model.fuse, GAMMA)
        ours = model.user_vectors(users)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours[1], _model("user-attention-masked").user_vectors(users)[1].detach())


def test_padded_slots_count_in_the_denominator():
    """One real item and three padded slots: its weight is e^x / (e^x + 3 + 1e-9), not 1."""
    model = _model("user-attention")
    with torch.no_grad():
        model.attention.weight.zero_()
        model.attention.bias.zero_()  # keys 0: every logit 0, the one real item weighs 1/4
        ours = model.user_vectors(torch.tensor([2]))
        item = model.item_embedding(torch.tensor([2]))
        expected = GAMMA * model.user_embedding(torch.tensor([2])) + (1 - GAMMA) * model.fuse(item / (4 + 1e-9))
    torch.testing.assert_close(ours, expected)


def test_the_masked_form_keeps_its_bias_free_key_and_softmax_over_the_history():
    model = _model("user-attention-masked")
    assert model.attention.bias is None
    with torch.no_grad():
        model.attention.weight.zero_()
        ours = model.user_vectors(torch.tensor([1]))  # two real items, equal logits: 1/2 each
        items = model.item_embedding(torch.tensor([4, 5])).mean(0, keepdim=True)
        expected = GAMMA * model.user_embedding(torch.tensor([1])) + (1 - GAMMA) * model.fuse(items)
    torch.testing.assert_close(ours, expected)


def test_the_reference_form_starts_its_key_bias_at_zero_as_recbox():
    torch.manual_seed(0)
    mask = torch.ones_like(HISTORY, dtype=torch.bool)
    model = SimpleX(4, 6, DIM, 0.0, 0.5, HISTORY, mask, "user-attention", GAMMA)
    assert torch.equal(model.attention.bias, torch.zeros(DIM))


def test_the_two_attention_forms_are_two_settings():
    reference = RunConfig("d", model="simplex", aggregator="user-attention").resolved()
    masked = RunConfig("d", model="simplex", aggregator="user-attention-masked").resolved()
    assert reference.hash("fp") != masked.hash("fp")
    assert reference.hash("fp", with_seed=False) != masked.hash("fp", with_seed=False)


def test_rows_stored_before_the_reference_form_read_as_the_masked_form(tmp_path):
    """A user-attention row trained before the reference form (its hash spells the value as
    then) reads as user-attention-masked, and that name rebuilds its stored hash; a row of the
    reference form keeps its name."""
    masked = RunConfig("d", model="simplex", aggregator="user-attention-masked").resolved()
    reference = RunConfig("d", model="simplex", aggregator="user-attention").resolved()
    stored = {}
    for label, config in (("old", masked), ("new", reference)):
        row = {**config.to_row(), "config_hash": config.hash("fp"), "dataset_sha256": "fp", "run_id": label}
        row["aggregator"] = "user-attention"  # how both were (or are) written
        folder = tmp_path / label
        folder.mkdir()
        pd.DataFrame([row]).to_parquet(folder / store.RUN_FILE, index=False)
        stored[label] = store.read_run(folder)
    assert stored["old"]["aggregator"] == "user-attention-masked"
    assert RunConfig.from_row(stored["old"]).hash("fp") == stored["old"]["config_hash"]
    assert stored["new"]["aggregator"] == "user-attention"
    assert RunConfig.from_row(stored["new"]).hash("fp") == stored["new"]["config_hash"]


@pytest.mark.parametrize("aggregator", ["mean", "user-attention-masked"])
def test_the_other_aggregators_keep_the_hashes_they_had(aggregator):
    """Hashes as the code before the reference form computed them (the masked form was then
    called user-attention), pinned, so stored mean and masked runs stay reusable."""
    pinned = {
        "mean": "1e4e736f86",
        "user-attention-masked": "d9b8a90343",
    }
    config = RunConfig("d", model="simplex", aggregator=aggregator).resolved()
    assert config.hash("fp")[:10] == pinned[aggregator]
