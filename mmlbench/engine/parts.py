"""What a run trains with, built outside the engine (runs.build): the engine never looks a plug-in up.

The trainer and the training steps take these parts as they are, so an engine test can hand
them a model, loss or sampler of its own, registered nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from torch import Tensor, nn

from mmlbench.engine.sampling import Sampler


@dataclass(frozen=True, eq=False)
class Parts:
    """A run's model, loss function and negative sampler, and what its step must know about them.

    `loss` takes (s_pos [B], s_neg [B, N]), plus the negatives' log(I q) [B, N] when `log_q`
    is set; with no sampler and not --negatives all, it is a loss over vectors and takes the
    batch's (users [B, d], positive items [B, d]). `sampler` maps the batch's users [B] (and,
    with `sampler_takes_positives`, its positive items [B]) to negatives [B, N]; None: nothing
    is drawn (--negatives all, or a loss over vectors). `log_q`: log(I q(item)) [I] of the
    sampler, for a loss that corrects for it. `capturable`: the model's and the sampler's
    steps can be captured as a CUDA graph. Runs whose `loss_key`s are equal compute the same
    loss function (a lockstep group calls it once for all of them); by default no two are.
    """

    model: nn.Module
    loss: Callable[..., Tensor]
    sampler: Sampler | None = None
    sampler_takes_positives: bool = False
    log_q: Tensor | None = None
    capturable: bool = False
    loss_key: Hashable = field(default_factory=object)
