#!/usr/bin/env bash
# Reproduces the CPU tables of BENCHMARKS.md: R-50-DC5 and R-101-DC5 on the 144 real ILSVRC frames (1280x720),
# per-frame (key interval 1) vs DFF@10, reference path (mmtracking's ops) vs fast path (+ bf16 for R-50),
# all settings of one preset interleaved in one process. Run it on an otherwise idle machine: timings of a
# machine shared with other jobs are not comparable (OpenMP threads wait for each other when a core is taken).
#
#   benchmarks/cpu_r50.sh [FRAMES_DIR] [OUT_DIR]      (about 25 minutes on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${1:-$ROOT/../shared/data/real/ILSVRC2015_val_00007010}"
OUT="${2:-$ROOT/benchmarks/results}"
THREADS="${THREADS:-$(nproc)}"
mkdir -p "$OUT"
uptime | tee "$OUT/load_before.txt"
python -m dff benchmark --preset r50_dc5 --source "$SRC" --frames 144 --warmup 10 --key-interval 1,10 \
    --compare reference,fast,fast:bf16 --device cpu --threads "$THREADS" --json "$OUT/cpu_r50_dc5.json" \
    | tee "$OUT/cpu_r50_dc5.txt"
python -m dff benchmark --preset r101_dc5 --source "$SRC" --frames 144 --warmup 10 --key-interval 1,10 \
    --compare reference,fast --device cpu --threads "$THREADS" --json "$OUT/cpu_r101_dc5.json" \
    | tee "$OUT/cpu_r101_dc5.txt"
uptime | tee "$OUT/load_after.txt"
