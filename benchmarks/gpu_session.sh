#!/usr/bin/env bash
# One prepared GPU session (run through the device tool on an H200): correctness, timing,
# profile, then as much of the Gowalla paper preset as the time allows.
#   DATA=<data home with processed gowalla>  OUT=<folder for results>  bash benchmarks/gpu_session.sh
# Each device call may run 600 s: stage L alone fits one (120 + 2 x 100 + 200 s + packing), e.g.
#   cp -r <data home>/gowalla .device-data/   # untracked, so it travels with the working tree
#   STAGES="0 L" OUT=$OUT bash benchmarks/gpu_session.sh      (then STAGES="2" and STAGES="1 P", one call each)
# STAGES picks stages (default "0 1 2 3 4"; "L": lockstep groups, see benchmarks/lockstep_bench.py; "P": --precision tf32
# against fp32); PRECISION=tf32 trains stage L's preset in TF32 (default fp32); RESULTS=<run store> resumes a preset sweep
# from runs of an earlier session. Each stage has its own time limit (SIGINT first, so a
# training run is stored as interrupted) and the results are always packed at the end.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
DATA=${DATA:-.device-data}
OUT=${OUT:-/tmp/gpu-out}
STAGES=${STAGES:-0 1 2 3 4}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/results"
[ -n "${RESULTS:-}" ] && cp -r "$RESULTS"/. "$WORK/results/"
log() { echo "== $(date +%T) $*" | tee -a "$OUT/session.log"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
bench() { timeout 120 python3 benchmarks/bench_engine.py --dataset gowalla --data-dir "$DATA" --device cuda \
            --json "$OUT/bench.jsonl" "$@" 2>>"$OUT/profile.txt" | tee -a "$OUT/session.log"; }

if has 0; then
  log "stage 0: machine"
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"; } 2>&1 | tee -a "$OUT/session.log"
fi
if has 1; then
  log "stage 1: correctness (graphs vs eager vs cpu; cpu vs cuda evaluation)"
  timeout 150 python3 benchmarks/cuda_check.py "$WORK/check" 2>&1 | tee "$OUT/cuda_check.jsonl"
fi
if has 2; then
  log "stage 2: timing and profile, Gowalla MF+CCL"
  bench --negatives 800 --batch-size 256 --epochs 3 --evals 3 --profile-steps 40
  bench --negatives 800 --batch-size 256 --epochs 3 --evals 3 --precision tf32 --profile-steps 40
  bench --negatives 800 --batch-size 256 --epochs 1 --evals 0 --no-cuda-graphs --profile-steps 40
  bench --negatives 100 --batch-size 512 --epochs 2 --evals 1
fi
if has 2d; then
  log "stage 2d: timing and profile, Gowalla MF+CCL at 800 negatives only"
  bench --negatives 800 --batch-size 256 --epochs 3 --evals 3 --profile-steps 40
fi
if has 3; then
  log "stage 3: MF-CCL at 800 negatives to convergence (reference 0.1837 / 0.1493)"
  timeout -s INT -k 30 150 python3 -m mmlbench train --preset paper-gowalla --loss ccl --negatives 800 \
    --data-dir "$DATA" --results-dir "$WORK/results" --device cuda 2>&1 | tail -25 | tee -a "$OUT/session.log"
fi
if has 4; then
  log "stage 4: the Gowalla preset (completed cells are skipped) until the time runs out"
  timeout -s INT -k 30 "${PRESET_SECONDS:-170}" python3 -m mmlbench train --preset paper-gowalla --jobs "${JOBS:-1}" \
    --data-dir "$DATA" --results-dir "$WORK/results" --device cuda 2>&1 | grep -v "· epoch" | tail -40 | tee -a "$OUT/session.log"
fi
if has L; then
  log "stage L: lockstep groups (correctness vs alone on CUDA, group epoch vs alone, the preset over 3 seeds)"
  timeout 120 python3 benchmarks/lockstep_bench.py check "$WORK/lockstep-check" --device cuda 2>&1 | tee "$OUT/lockstep_check.jsonl"
  for precision in fp32 tf32; do
    timeout 100 python3 benchmarks/lockstep_bench.py time --dataset gowalla --data-dir "$DATA" --device cuda --precision $precision \
      --negatives 800 --batch-size 256 --seeds 3 --epochs 2 --alone --count-ops 5 --profile-steps 40 \
      2>>"$OUT/lockstep_profile.txt" | tee -a "$OUT/lockstep_time.jsonl" | tail -3 | tee -a "$OUT/session.log"
  done
  # Completed cells are skipped, interrupted ones resume: RESULTS=<runs of an earlier session> goes on from there.
  timeout -s INT -k 30 "${PRESET_SECONDS:-200}" python3 -m mmlbench train --preset paper-gowalla --seeds 3 --backend lockstep \
    --precision "${PRECISION:-fp32}" --data-dir "$DATA" --results-dir "$WORK/results" --device cuda 2>&1 \
    | grep -v "· epoch" | tail -60 | tee -a "$OUT/session.log"
fi
if has P; then
  log "stage P: MF+CCL at 800 negatives, 10 epochs, fp32 and tf32 (epoch times and the curves side by side)"
  for precision in fp32 tf32; do
    timeout -s INT -k 30 100 python3 -m mmlbench train --preset paper-gowalla --loss ccl --negatives 800 --epochs 10 \
      --precision $precision --data-dir "$DATA" --results-dir "$WORK/precision" --device cuda -q 2>&1 | tail -5 | tee -a "$OUT/session.log"
  done
  python3 -m mmlbench compare "$WORK/precision" --rows precision --cost 2>&1 | tee -a "$OUT/session.log"
  tar -C "$WORK/precision" --exclude=model.pt -czf "$OUT/precision-runs.tar.gz" runs
fi
log "pack"
python3 -m mmlbench compare "$WORK/results" --preset paper-gowalla --cost --format markdown > "$OUT/paper-gowalla.md" 2>>"$OUT/session.log"
tar -C "$WORK/results" --exclude=model.pt -czf "$OUT/runs.tar.gz" runs
log "done"
