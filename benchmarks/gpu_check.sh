#!/usr/bin/env bash
# The prepared GPU check (issue 14): on a CUDA machine, from the repo root,
#
#   benchmarks/gpu_check.sh [--dry-run] [FRAMES_DIR] [OUT_DIR]       (about 5-10 minutes on one recent GPU)
#
# 1. the CUDA-marked tests (`pytest -m cuda`: the golden comparison on cuda with TF32 off, both paths);
# 2. `dff benchmark --device cuda` for r50_dc5, r101_dc5 and x101_dc5: per frame (key interval 1) and DFF@10, the
#    default path in fp32 and fp16, on the 144 real ILSVRC frames (synthetic golden weights: same cost as trained);
# 3. one short training run per preset with torch.cuda.max_memory_allocated (benchmarks/train_memory.py;
#    mmtracking: 2.50 / 3.25 / 4.95 GB).
# Everything is appended to OUT_DIR/gpu_<device>.txt (default benchmarks/results), the benchmark JSON beside it.
# --dry-run prints every command without running any (no GPU needed) and exits 0.
set -euo pipefail
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=1
    shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${1:-$ROOT/../shared/data/real/ILSVRC2015_val_00007010}"
OUT_DIR="${2:-$ROOT/benchmarks/results}"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, whatever is pip-installed
cd "$ROOT"

if ((DRY)); then
    DEVICE="DEVICE"
else
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: error: CUDA is not available on this machine (use --dry-run to list the commands)" >&2
        exit 1
    fi
    if [[ ! -d "$SRC" ]]; then
        echo "gpu_check.sh: error: $SRC: frames folder not found" >&2
        exit 1
    fi
    DEVICE="$("$PY" -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '_', torch.cuda.get_device_name(0).lower()).strip('_'))")"
    mkdir -p "$OUT_DIR"
fi
LOG="$OUT_DIR/gpu_$DEVICE.txt"
WORK="${WORK:-$ROOT/runs/gpu_check}"  # the training data and runs (runs/ is git-ignored)

run() {  # print the command; unless --dry-run, run it with its output appended to the log
    printf '+ %s\n' "$*"
    if ((!DRY)); then
        printf '\n+ %s\n' "$*" >>"$LOG"
        "$@" 2>&1 | tee -a "$LOG"
    fi
}

if ((!DRY)); then
    {
        echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    } | tee "$LOG"
fi

run "$PY" -m pytest -q -m cuda tests
for preset in r50_dc5 r101_dc5 x101_dc5; do
    run "$PY" -m dff benchmark --preset "$preset" --source "$SRC" --frames 144 --warmup 10 --key-interval 1,10 \
        --compare fast,fast:fp16 --device cuda --json "$OUT_DIR/gpu_${DEVICE}_${preset}.json"
done
run "$PY" benchmarks/train_memory.py --work "$WORK" --device cuda --iters 20
if ((!DRY)); then
    echo "gpu_check.sh: wrote $LOG"
fi
