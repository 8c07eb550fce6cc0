#!/usr/bin/env bash
# GPU evidence for the engine, the measurements and verification, in one call on the device
# machine: CUDA tests, the full-size ERNIE preset, a sync-vs-overlap run of a layer-reduced
# ERNIE at concurrency 64 (with a profiler window), the instrumentation-overhead benchmark
# and the planted-fault table. Writes logs and a tarball of the runs under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/stepgap-gpu}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
} | tee "$OUT/env.log"

echo "== CUDA tests" | tee "$OUT/tests.log"
python3 -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee -a "$OUT/tests.log" | tail -3

if [ "${FULL_PRESET:-1}" = 1 ]; then
  echo "== full-size ERNIE-4.5-21B-A3B" | tee "$OUT/full_preset.log"
  python3 scripts/full_preset_check.py --preset ernie-4.5-21b-a3b 2>&1 | tee -a "$OUT/full_preset.log"
fi

echo "== ERNIE, 4 layers, concurrency 64: sync vs overlap" | tee "$OUT/run.log"
python3 -m stepgap run --device cuda --workload ernie-4.5-21b-a3b-tp4 \
  --model-override num_layers=4 --mode both --profile --profile-steps 200 \
  --out "$OUT/ernie-l4" --force 2>&1 | tee -a "$OUT/run.log"
tar czf "$OUT/ernie-l4.tgz" -C "$OUT" ernie-l4 && rm -rf "$OUT/ernie-l4"

echo "== instrumentation overhead" | tee "$OUT/overhead.log"
python3 benchmarks/instrument_overhead.py --device cuda --reps 7 2>&1 | tee -a "$OUT/overhead.log"

echo "== planted faults" | tee "$OUT/verify.log"
python3 scripts/gpu_verify.py --out "$OUT" 2>&1 | tee -a "$OUT/verify.log" | tail -30
