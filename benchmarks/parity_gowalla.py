"""Parity with the reference: MF-CCL at 800 negatives on Gowalla, per epoch, beside the published log.

    mmlbench download gowalla --source ../shared/data && mmlbench preprocess gowalla
    python benchmarks/parity_gowalla.py --epochs 5 --device cpu      # ~3-4 min an epoch on 2 cores

Trains with the settings of RecZoo's `MF_CCL_gowalla_m1` config (MF, cosine, CCL m=0.9 w=150,
800 uniform negatives, batch 256, Adam lr 1e-4, regulariser 1e-8, dropout 0.1, dim 64,
seed 2019, test split as validation) and prints our Recall@20 / NDCG@20 / training loss for
each epoch beside the published run's log (reczoo/RecZoo,
matching/cf/SimpleX/results/MF_CCL_gowalla_m1_001_e5f1ed4e.log) with the % difference.
Exit 0 when every compared epoch is within --tolerance (default 2%) on both metrics, else 1.
A benchmark, not a test: it needs the real data and minutes per epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run

# From the published log, epochs 1-10 (Recall@20, NDCG@20, the logged train loss).
PUBLISHED = {
    1: (0.089541, 0.067831, 0.582343),
    2: (0.110530, 0.085094, 0.190581),
    3: (0.125611, 0.096864, 0.173005),
    4: (0.135432, 0.105244, 0.162646),
    5: (0.144192, 0.112669, 0.155289),
    6: (0.149432, 0.117204, 0.149962),
    7: (0.153185, 0.119969, 0.145856),
    8: (0.156625, 0.123102, 0.142962),
    9: (0.160812, 0.126814, 0.140373),
    10: (0.162652, 0.128432, 0.138361),
}

REFERENCE_CONFIG = dict(
    dataset="gowalla", model="mf", loss="ccl", margin=0.9, negative_weight=150.0, negatives=800,
    sampler="uniform", score="cosine", embedding_dim=64, dropout=0.1, init_std=1e-4, batch_size=256,
    lr=1e-4, l2=1e-8, l2_scope="table", last_batch="partial", grad_clip=10.0, patience=3,
    monitor="recall@20", ks=(20, 50), seed=2019,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs to train and compare (1-10)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--results-dir", type=Path, default=Path("results/parity"))
    parser.add_argument("--tolerance", type=float, default=2.0, help="allowed |difference| in percent")
    parser.add_argument("--output", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    if not 1 <= args.epochs <= max(PUBLISHED):
        parser.error(f"--epochs must lie in 1..{max(PUBLISHED)}")

    config = RunConfig(**{**REFERENCE_CONFIG, "epochs": args.epochs, "seed": args.seed})
    options = TrainOptions(device=args.device, data_dir=args.data_dir, results_dir=args.results_dir)
    outcome = train_run(config, options)
    curve = pd.read_parquet(outcome.run_dir / store.CURVE_FILE)
    table, worst = _table(curve)
    print(f"run: {outcome.run_dir}")
    print(table)
    print(f"largest |difference|: {worst:.2f}% (tolerance {args.tolerance}%)")
    if args.output:
        args.output.write_text(f"run: `{outcome.run_dir.name}`\n\n{table}\n")
    return 0 if worst <= args.tolerance else 1


def _table(curve: pd.DataFrame) -> tuple[str, float]:
    lines = [
        "| epoch | Recall@20 ours | log | diff | NDCG@20 ours | log | diff | loss ours | log |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for values in curve.to_dict("records"):
        recall, ndcg, loss = values["recall@20"], values["ndcg@20"], values["loss"]
        ref_recall, ref_ndcg, ref_loss = PUBLISHED[int(values["epoch"])]
        d_recall, d_ndcg = _percent(recall, ref_recall), _percent(ndcg, ref_ndcg)
        worst = max(worst, abs(d_recall), abs(d_ndcg))
        lines.append(
            f"| {int(values['epoch'])} | {recall:.4f} | {ref_recall:.4f} | {d_recall:+.2f}% "
            f"| {ndcg:.4f} | {ref_ndcg:.4f} | {d_ndcg:+.2f}% | {loss:.3f} | {ref_loss:.3f} |"
        )
    return "\n".join(lines), worst


def _percent(ours: float, reference: float) -> float:
    return 100.0 * (ours - reference) / reference


if __name__ == "__main__":
    sys.exit(main())
