"""The losses of the wider study (BSL, hinge, MSE, sampled softmax with logQ correction):
hand-worked values on tiny tensors and the identities that tie them to their neighbours."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.engine.losses import bsl, hinge, mse, ssm
from mmlbench.errors import MMLBenchError
from mmlbench.plugins.losses import LOSSES, get_loss, resolve_params
from mmlbench.runs.build import loss_function, relative_log_q
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run

S_POS = torch.tensor([0.8, 0.2], dtype=torch.float64)
S_NEG = torch.tensor([[0.95, 0.5], [0.1, 0.85]], dtype=torch.float64)


def _random_scores(seed: int, rows: int = 16, negatives: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    s_pos = torch.rand(rows, generator=generator, dtype=torch.float64) * 2 - 1
    s_neg = torch.rand(rows, negatives, generator=generator, dtype=torch.float64) * 2 - 1
    return s_pos, s_neg


def test_bsl_by_hand():
    # t1 = 0.5, t2 = 2: row = -s_pos/t1 + t2 * log(sum_j exp(s_neg_j/t1))
    # row 0: -1.6 + 2 * log(e^1.9 + e^1.0) = -1.6 + 2 * log(9.4042) = -1.6 + 4.4824 = 2.8824
    # row 1: -0.4 + 2 * log(e^0.2 + e^1.7) = -0.4 + 2 * log(6.6953) = -0.4 + 3.8028 = 3.4028
    row0 = -1.6 + 2 * math.log(math.exp(1.9) + math.exp(1.0))
    row1 = -0.4 + 2 * math.log(math.exp(0.2) + math.exp(1.7))
    value = bsl(S_POS, S_NEG, temperature=0.5, negative_power=2.0).item()
    assert value == pytest.approx((row0 + row1) / 2)
    assert value == pytest.approx(3.1426, abs=1e-4)


def test_bsl_with_equal_temperatures_is_the_softmax_without_the_positive_in_the_denominator():
    """t2 = 1 (positive temperature t1*t2 = negative temperature t1): the BSL code's softmax.

    Per row that is ssm + log(1 - exp(-ssm)): ssm keeps the positive in its denominator."""
    for seed in range(5):
        s_pos, s_neg = _random_scores(seed)
        for t in (0.08, 0.1, 0.5):
            rows = [bsl(s_pos[i : i + 1], s_neg[i : i + 1], temperature=t, negative_power=1.0) for i in range(16)]
            softmax_rows = [ssm(s_pos[i : i + 1], s_neg[i : i + 1], temperature=t) for i in range(16)]
            for got, softmax in zip(rows, softmax_rows):
                assert got.item() == pytest.approx((softmax + torch.log1p(-torch.exp(-softmax))).item(), rel=1e-9)
            without_positive = (torch.logsumexp(s_neg / t, dim=1) - s_pos / t).mean()
            assert torch.allclose(bsl(s_pos, s_neg, temperature=t, negative_power=1.0), without_positive)


def test_bsl_power_scales_only_the_negatives_term():
    # d bsl / d t2 = mean_row log(sum_j exp(s_neg_j/t1)): the loss is linear in t2.
    s_pos, s_neg = _random_scores(9)
    at_1, at_2 = (bsl(s_pos, s_neg, temperature=0.2, negative_power=p) for p in (1.0, 2.0))
    assert (at_2 - at_1).item() == pytest.approx(torch.logsumexp(s_neg / 0.2, dim=1).mean().item())


def test_hinge_by_hand():
    # m = 0.5: relu(0.5 - s_pos + s_neg_j) over the four (row, negative) pairs
    # row 0: 0.5 - 0.8 + 0.95 = 0.65 ; 0.5 - 0.8 + 0.5 = 0.2
    # row 1: 0.5 - 0.2 + 0.1  = 0.4  ; 0.5 - 0.2 + 0.85 = 1.15
    assert hinge(S_POS, S_NEG, margin=0.5).item() == pytest.approx((0.65 + 0.2 + 0.4 + 1.15) / 4)  # 0.6
    # m = 0.1: row 0's second pair is met by 0.2 > 0.1 and drops out
    # 0.1 - 0.8 + 0.95 = 0.25 ; 0.1 - 0.8 + 0.5 = -0.2 -> 0 ; 0.1 - 0.2 + 0.1 = 0 ; 0.1 - 0.2 + 0.85 = 0.75
    assert hinge(S_POS, S_NEG, margin=0.1).item() == pytest.approx((0.25 + 0 + 0 + 0.75) / 4)  # 0.25


def test_hinge_is_zero_once_every_gap_reaches_the_margin():
    s_pos = torch.tensor([0.9, 0.6], dtype=torch.float64)
    s_neg = torch.tensor([[0.3, -0.2], [0.0, -0.1]], dtype=torch.float64)  # smallest gap 0.6
    assert hinge(s_pos, s_neg, margin=0.55).item() == 0
    assert hinge(s_pos, s_neg, margin=0.65).item() == pytest.approx(2 * 0.05 / 4)


def test_mse_by_hand():
    # row 0: (1 - 0.8)^2 + (0.95^2 + 0.5^2) / 2 = 0.04 + (0.9025 + 0.25) / 2 = 0.04 + 0.57625 = 0.61625
    # row 1: (1 - 0.2)^2 + (0.1^2 + 0.85^2) / 2 = 0.64 + (0.01 + 0.7225) / 2 = 0.64 + 0.36625 = 1.00625
    assert mse(S_POS, S_NEG).item() == pytest.approx((0.61625 + 1.00625) / 2)  # 0.81125


def test_mse_is_zero_at_its_labels_and_averages_not_sums_the_negatives():
    assert mse(torch.ones(3), torch.zeros(3, 7)).item() == 0
    s_pos, s_neg = _random_scores(4)
    assert torch.allclose(mse(s_pos, s_neg), mse(s_pos, torch.cat([s_neg, s_neg], dim=1)))


def test_ssm_logq_correction_by_hand():
    # t = 0.5, neg_log_q = log(I q) = [[log 2, 0], [0, -log 2]]: negative logits s/t - log(I q)
    # row 0: logits 1.6 | 1.9 - log 2, 1.0 -> log(e^1.6 + e^1.9 / 2 + e^1.0) - 1.6
    #        = log(4.9530 + 3.3429 + 2.7183) - 1.6 = log(11.0142) - 1.6 = 2.3992 - 1.6 = 0.7992
    # row 1: logits 0.4 | 0.2, 1.7 + log 2 -> log(e^0.4 + e^0.2 + 2 e^1.7) - 0.4
    #        = log(1.4918 + 1.2214 + 10.9478) - 0.4 = log(13.6610) - 0.4 = 2.6145 - 0.4 = 2.2145
    log_q = torch.tensor([[math.log(2), 0.0], [0.0, -math.log(2)]], dtype=torch.float64)
    row0 = math.log(math.exp(1.6) + math.exp(1.9) / 2 + math.exp(1.0)) - 1.6
    row1 = math.log(math.exp(0.4) + math.exp(0.2) + 2 * math.exp(1.7)) - 0.4
    value = ssm(S_POS, S_NEG, log_q, temperature=0.5, logq_correction=True).item()
    assert value == pytest.approx((row0 + row1) / 2)
    assert value == pytest.approx(1.5068, abs=1e-4)
    uncorrected = ssm(S_POS, S_NEG, log_q, temperature=0.5, logq_correction=False).item()
    assert uncorrected == pytest.approx(ssm(S_POS, S_NEG, temperature=0.5).item()) and uncorrected != pytest.approx(value)


def test_ssm_logq_correction_is_a_no_op_for_uniform_q():
    s_pos, s_neg = _random_scores(5)
    plain = ssm(s_pos, s_neg, temperature=0.1)
    assert torch.equal(ssm(s_pos, s_neg, torch.zeros_like(s_neg), temperature=0.1, logq_correction=True), plain)


def test_corrected_popularity_negatives_estimate_what_uniform_negatives_estimate():
    """Monte Carlo over 6 items: the mean of exp(corrected logit) under q is uniform's mean."""
    generator = torch.Generator().manual_seed(2)
    item_scores = torch.tensor([0.9, 0.5, 0.1, -0.2, -0.6, 0.3], dtype=torch.float64)
    q = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04], dtype=torch.float64)
    drawn = torch.multinomial(q, 400_000, replacement=True, generator=generator)
    t, n_items = 0.5, len(q)
    uniform_mean = torch.exp(item_scores / t).mean()
    corrected = torch.exp(item_scores[drawn] / t - torch.log(n_items * q[drawn])).mean()
    uncorrected = torch.exp(item_scores[drawn] / t).mean()
    assert corrected.item() == pytest.approx(uniform_mean.item(), rel=0.01)
    assert uncorrected.item() > 1.3 * uniform_mean.item()  # popular items here score high


def test_ssm_logq_correction_gradients_match_float64_finite_differences():
    generator = torch.Generator().manual_seed(6)
    s_pos = torch.rand(4, generator=generator, dtype=torch.float64).requires_grad_()
    s_neg = torch.rand(4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    log_q = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    fn = loss_function("ssm", resolve_params("ssm", {"logq_correction": True}))
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n, log_q), (s_pos, s_neg))


def test_only_ssm_with_the_switch_on_asks_for_log_q():
    assert get_loss("ssm").needs_log_q(resolve_params("ssm", {"logq_correction": True}))
    assert not get_loss("ssm").needs_log_q(resolve_params("ssm", {}))
    assert not any(LOSSES[name].needs_log_q(resolve_params(name, {})) for name in LOSSES)
    with pytest.raises(ValueError, match="log-probabilities"):
        ssm(S_POS, S_NEG, temperature=0.1, logq_correction=True)


@pytest.mark.parametrize(
    ("loss", "params", "message"),
    [
        ("bsl", {"temperature": 0.0}, "--temperature must be > 0"),
        ("bsl", {"negative_power": -1.0}, "--negative-power must be > 0"),
        ("hinge", {"margin": 0.0}, "--margin must be > 0"),
        ("ssm", {"logq_correction": "yes"}, "--logq-correction is a switch"),
    ],
)
def test_bad_parameters_of_the_new_losses_are_rejected(loss, params, message):
    with pytest.raises(MMLBenchError, match=message):
        resolve_params(loss, params)


def test_bsl_defaults_are_the_authors_gowalla_setting():
    assert resolve_params("bsl", {}) == {"temperature": 0.08, "negative_power": 1.22}


def _train_once(planted_dir, results, *args: str):
    command = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results)]
    fast = ["--negatives", "5", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]
    return CliRunner().invoke(app, [*command, *fast, *args])


def test_bsl_options_reach_the_run_row(planted_dir, tmp_path):
    result = _train_once(planted_dir, tmp_path, "--loss", "bsl", "--negative-power", "1.1")
    assert result.exit_code == 0, result.output
    row = store.read_runs(tmp_path).iloc[0]
    assert (row["loss"], row["temperature"], row["negative_power"]) == ("bsl", 0.08, 1.1)


def test_hinge_and_ccl_share_the_margin_option_with_their_own_defaults(planted_dir, tmp_path):
    assert resolve_params("hinge", {})["margin"] == 1.0 and resolve_params("ccl", {})["margin"] == 0.9
    result = _train_once(planted_dir, tmp_path, "--loss", "hinge,ccl", "--margin", "0.3")
    assert result.exit_code == 0, result.output
    runs = store.read_runs(tmp_path)
    assert sorted(zip(runs["loss"], runs["margin"])) == [("ccl", 0.3), ("hinge", 0.3)]


def test_relative_log_q_of_the_samplers():
    counts = torch.tensor([3, 1, 0, 4])
    # popularity, alpha = 1: q = [3, 1, 0, 4] / 8, log(I q) = log(4 q) = log([1.5, 0.5, 0, 2])
    expected = torch.log(torch.tensor([1.5, 0.5, 0.0, 2.0]))
    assert torch.allclose(relative_log_q("popularity", item_counts=counts, params={"popularity_alpha": 1.0}), expected)
    for name in ("uniform", "uniform-exclude-pos"):
        assert torch.equal(relative_log_q(name, item_counts=counts, params={"popularity_alpha": 0.0}), torch.zeros(4))


FAST = dict(negatives=10, batch_size=64, lr=0.01, epochs=6, patience=4)


def _metrics_and_losses(planted_dir, results, **settings):
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True)
    outcome = train_run(RunConfig("planted", loss="ssm", **settings, **FAST), options)
    curve = store.read_curve(outcome.run_dir)
    return outcome.row["recall@10"], curve["loss"].tolist()


def test_logq_correction_changes_popularity_training_and_nothing_under_uniform(planted_dir, tmp_path):
    plain = _metrics_and_losses(planted_dir, tmp_path / "a", sampler="uniform")
    assert _metrics_and_losses(planted_dir, tmp_path / "b", sampler="uniform", logq_correction=True) == plain
    popular = _metrics_and_losses(planted_dir, tmp_path / "c", sampler="popularity")
    corrected = _metrics_and_losses(planted_dir, tmp_path / "d", sampler="popularity", logq_correction=True)
    assert corrected[1] != popular[1]
    assert corrected[0] > 0.5  # still learns the planted clusters


def test_logq_correction_switch_reaches_ssm_runs_only(planted_dir, tmp_path):
    result = _train_once(planted_dir, tmp_path, "--loss", "ssm,bpr", "--sampler", "popularity", "--logq-correction")
    assert result.exit_code == 0, result.output
    runs = store.read_runs(tmp_path).set_index("loss")
    assert runs.loc["ssm", "logq_correction"] == True  # noqa: E712 (a numpy bool)
    assert pd.isna(runs.loc["bpr", "logq_correction"])
    rows = {row["loss"]: RunConfig.from_row(row.to_dict()) for _, row in runs.reset_index().iterrows()}
    assert rows["ssm"].logq_correction is True and rows["bpr"].logq_correction is None
