"""A trained run (a tuner's trial: selected on the validation split, status `trained`) evaluated on test, once.

Its stored best weights (model.pt, checked against the sha256 its row recorded) are scored on the
test split as the run's own test evaluation would have scored them at the end of its fit, so the
run comes out as it would have completed in one go; its folder is then written again, completed:
the row with the test metrics and the marks asked for (a tuned run's `selection`), the per-user
metrics beside it, its curve and checkpoint as they were.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import matmul_precision
from mmlbench.engine.evaluator import evaluate
from mmlbench.errors import MMLBenchError
from mmlbench.runs import build
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.rescore import load_checkpoint


def tested(
    results_dir: Path, run_id: str, config_hash: str, config: RunConfig, data: InteractionData, device: torch.device,
    options: TrainOptions,
) -> store.RunRecord | None:
    """The trained run `run_id` of this config evaluated on test, as the record to store; None when there is none."""
    run_dir = store.find_stored(results_dir, run_id, config_hash, store.STATUS_TRAINED)
    if run_dir is None:
        return None
    row = store.read_run(run_dir)
    path = store.verified_checkpoint(run_dir, row)
    payload = path.read_bytes()
    model = build.model(config, data, device)
    try:
        model.load_state_dict(load_checkpoint(path)["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise MMLBenchError(f"{path} does not fit this run's model: {exc}") from None
    with matmul_precision(config.precision):
        test = evaluate(
            model, data, "test", config.ks, cosine=config.score == "cosine", batch_users=options.eval_batch_users,
            per_user=True, head_fraction=config.head_fraction,
        )
    row = {**row, **options.marks, "status": store.STATUS_COMPLETED, "test_eval_seconds": test.seconds, **test.metrics}
    return store.RunRecord(row, store.read_curve(run_dir), test.per_user, None, {store.CHECKPOINT_FILE: payload})
