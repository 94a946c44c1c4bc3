"""CUDA correctness check: graphs vs eager vs CPU training, and CPU vs CUDA evaluation.

    python benchmarks/cuda_check.py WORKDIR

Trains MF on a planted dataset (every loss, uniform sampler) on CUDA with and without graph
capture and on the CPU, then re-scores the CUDA checkpoint on both devices. Prints one JSON
line per check and exits 1 if a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from synthetic import make_planted  # noqa: E402

from mmlbench.config import RunConfig  # noqa: E402
from mmlbench.plugins.losses import LOSSES  # noqa: E402
from mmlbench.runs.options import TrainOptions  # noqa: E402
from mmlbench.runs.rescore import rescore  # noqa: E402
from mmlbench.runs.single import train_run  # noqa: E402

SETTINGS = dict(negatives=20, batch_size=256, lr=0.01, epochs=8, patience=5)


def main(workdir: Path) -> int:
    data_dir = workdir / "datasets"
    make_planted(data_dir, n_users=2000, n_items=400, clusters=8, per_user=20)
    failures = 0
    for loss in sorted(LOSSES):
        recalls = {}
        for label, device, graphs in (("cuda-graph", "cuda", True), ("cuda-eager", "cuda", False), ("cpu", "cpu", False)):
            options = TrainOptions(device=device, data_dir=data_dir, results_dir=workdir / label, quiet=True, cuda_graphs=graphs)
            outcome = train_run(RunConfig("planted", loss=loss, **SETTINGS), options)
            recalls[label] = outcome.row["recall@20"]
            if label == "cuda-graph":
                graph_run, used_graphs = outcome.run_dir, bool(outcome.row["cuda_graphs"])
        ok = used_graphs and min(recalls.values()) > 0.5 and max(recalls.values()) - min(recalls.values()) < 0.05
        failures += not ok
        print(json.dumps({"check": "train", "loss": loss, "graphs_used": used_graphs, **recalls, "ok": ok}), flush=True)
        on = {device: rescore(graph_run, ks=(10, 20, 50), split="test", device=device, data_dir=data_dir,
                              eval_batch_users=None, keep_top=False)[1].metrics for device in ("cuda", "cpu")}  # fmt: skip
        gap = max(abs(on["cuda"][name] - on["cpu"][name]) for name in on["cpu"])
        ok = gap < 1e-3
        failures += not ok
        print(json.dumps({"check": "eval cpu vs cuda", "loss": loss, "max_abs_gap": gap, "ok": ok}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("cuda_check needs a CUDA GPU")
    sys.exit(main(Path(sys.argv[1])))
