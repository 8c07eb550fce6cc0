#!/usr/bin/env bash
# Issue-10 evidence on the GPU machine: the engine's step gaps against the device truth of
# a profiler trace (scripts/gpu_analyze_crosscheck.py), ERNIE shape at concurrency 64,
# for the tree at $BASE (the code before the change, optional) and this tree.
#   LAYERS="4 28" BASE=.base OUT=... bash scripts/gpu_gap_truth.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/stepgap-gap-truth}
mkdir -p "$OUT"
here=$PWD
crosscheck() {  # label, tree, layers
  local run_dir=/tmp/xcheck-$1
  (cd "$2" && python3 -m stepgap run --device cuda --mode both --workload ernie-4.5-21b-a3b-tp4 \
     --model-override num_layers="$3" --num-requests 64 --output-len "${OUTPUT_LEN:-300}" \
     --profile --profile-steps 100 --out "$run_dir" --force 2>&1 | tail -25)
  PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" python3 "$here/scripts/gpu_analyze_crosscheck.py" --skip-run --run-dir "$run_dir" --label "$1"
}
for layers in ${LAYERS:-4}; do
  [ -n "${BASE:-}" ] && crosscheck "before-l$layers" "$BASE" "$layers" 2>&1 | tee "$OUT/before-l$layers.log"
  crosscheck "after-l$layers" "$here" "$layers" 2>&1 | tee "$OUT/after-l$layers.log"
done
