#!/usr/bin/env bash
# The issue #14 figures, for the lead to run on a quiet machine (about 30 + 25 + 5 minutes of CPU):
#   bench/elmo_recipe.sh [OUT_DIR]
# Each part holds the exclusive CPU lock. On a machine shared with other jobs, OpenMP's spinning
# threads slow a run several-fold: set OMP_NUM_THREADS=1 there (and say so beside the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/elmo-bench}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export DLNLP_SHARED=${DLNLP_SHARED:-$(cd .. && pwd)/shared}
flock -x /tmp/cpu.lock "$PY" bench/elmo.py throughput --seconds 60 --reps 3 | tee "$OUT/throughput.json"
flock -x /tmp/cpu.lock "$PY" bench/elmo.py brown --budget 1800 --out "$OUT/brown" | tee "$OUT/brown.json"
flock -x /tmp/cpu.lock "$PY" bench/elmo.py mr --budget 1500 --out "$OUT/mr" | tee "$OUT/mr.json"
