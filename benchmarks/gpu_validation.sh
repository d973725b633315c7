#!/usr/bin/env bash
# The one device command for issue 23 (see benchmarks/gpu_validation.py): build greenai, run
# every GPU section within --budget-s (420 s; give the call timeout_s=600), results in $OUT
# (benchmarks/results where OUT is unset). Extra arguments go to gpu_validation.py.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_validation.py --build --out "$out" --budget-s 420 "$@" \
    2>&1 | tee "$out/gpu_validation.console.log"
