#!/usr/bin/env bash
# Train the CI benchmark and gate it against the committed baseline (what .ci/run does).
#   bash results/baselines/run_ci_benchmark.sh            # gate: exit 1 on a regression
#   bash results/baselines/run_ci_benchmark.sh --export   # refresh ci.parquet after an intended change
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m mmlbench preprocess --input "$here/ci-interactions.csv" --name ci-planted --user-col user --item-col item \
  --split random:0.2 --seed 7 --data-dir "$work/data" > /dev/null
python3 -m mmlbench train --config "$here/ci.toml" --data-dir "$work/data" --results-dir "$work/results" --device cpu -q
if [ "${1:-}" = "--export" ]; then
  python3 -m mmlbench compare "$work/results" --metric recall@20,ndcg@20 --export-baseline "$here/ci.parquet"
else
  python3 -m mmlbench compare "$work/results" --against "$here/ci.parquet" --max-drop 0.02
fi
