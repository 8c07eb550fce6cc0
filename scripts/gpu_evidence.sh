#!/usr/bin/env bash
# GPU evidence for the engine, its kernels and its measurements, in two calls that each fit
# one 10-minute command on the device machine. Results under $OUT (at most 8 files come
# back from a call: runs travel as one tarball each).
#   STAGE=kernels bash scripts/gpu_evidence.sh   # CUDA tests, roofline, planted faults
#   STAGE=runs    bash scripts/gpu_evidence.sh   # gap truth, overhead, the seed's rows
#   STAGE=bench   bash scripts/gpu_evidence.sh   # each kernel's own benchmark
#   STAGE=tp TP=4 bash scripts/gpu_evidence.sh   # tensor parallel: TP tests, seed rows at TP
#                                                # (nvidia-h200-x4; TP=2 on nvidia-h200-x2)
#   STAGE=chunked bash scripts/gpu_evidence.sh   # the seed's ERNIE row, whole prompts vs
#                                                # chunked prefill, with logprobs; overhead
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/stepgap-gpu}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'python', sys.version.split()[0])"
} > "$OUT/env.log"
cat "$OUT/env.log"

kernels() {
  timeout 270 python3 -m pytest -q -p no:cacheprovider -m cuda -rs tests > "$OUT/cuda-tests.log" 2>&1
  tail -3 "$OUT/cuda-tests.log"
  timeout 150 python3 benchmarks/decode_roofline.py --out "$OUT/roofline.json" > "$OUT/roofline.log" 2>&1
  tail -10 "$OUT/roofline.log"
  timeout 150 python3 scripts/gpu_verify.py --out "$OUT" > "$OUT/verify.log" 2>&1
  tail -16 "$OUT/verify.log"
}

bench() {
  for kernel in decode_attention fused_moe sampling; do
    timeout 60 python3 -m reference_engine.kernels.$kernel --bench >> "$OUT/kernel-bench.log" 2>&1
  done
  tail -40 "$OUT/kernel-bench.log"
}

seed_row() {  # name, stepgap run options...
  local name=$1; shift
  timeout "${SEED_TIMEOUT:-150}" python3 -m stepgap run --device cuda --mode both \
    --out "/tmp/$name" --force "$@" \
    > "/tmp/$name.log" 2>&1
  tail -22 "/tmp/$name.log"
  python3 -m stepgap report "/tmp/$name" -o "/tmp/$name/report.html" > /dev/null 2>&1
  cp "/tmp/$name.log" "/tmp/$name/run.log"
  tar czf "$OUT/$name.tgz" -C /tmp "$name"
}

runs() {
  LAYERS="4 28" OUT=/tmp/gap-truth timeout 220 bash scripts/gpu_gap_truth.sh > /tmp/gap-truth.log 2>&1
  grep -E "^(sync|overlap|mode|engine|overlap/sync|PASS|FAIL)" /tmp/gap-truth.log
  mv /tmp/gap-truth.log /tmp/gap-truth/ && tar czf "$OUT/gap-truth.tgz" -C /tmp gap-truth
  timeout 100 python3 benchmarks/instrument_overhead.py --device cuda --reps 5 > "$OUT/overhead.log" 2>&1
  tail -3 "$OUT/overhead.log"
  seed_row h200-ernie-full-c64 --workload ernie-4.5-21b-a3b-tp4 --tp 1
  seed_row h200-glm-28l-c4 --workload glm-4.5-air-tp8 --tp 1 --model-override num_layers=28 \
    --output-len 2000
}

tp() {  # the seed's tensor-parallel rows: one GPU per rank
  local tp=${TP:-4}
  timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda -rs \
    tests/reference_engine/test_tensor_parallel.py > "$OUT/tp-cuda-tests.log" 2>&1
  tail -3 "$OUT/tp-cuda-tests.log"
  seed_row "h200-ernie-full-c64-tp$tp" --workload ernie-4.5-21b-a3b-tp4 --tp "$tp"
  if [ "$tp" -ge 4 ]; then  # GLM-4.5-Air, all 46 layers: 53 GB of weights per rank at TP 4
    seed_row "h200-glm-46l-c4-tp$tp" --workload glm-4.5-air-tp8 --tp "$tp" --output-len 2000
  fi
}

chunked() {  # issue 13: TTFT / TPOT with and without chunked prefill, tokens and logprobs
  seed_row h200-ernie-full-c64-whole --workload ernie-4.5-21b-a3b-tp4 --tp 1 \
    --max-num-batched-tokens 0 --logprobs 5
  seed_row h200-ernie-full-c64-chunked --workload ernie-4.5-21b-a3b-tp4 --tp 1 --logprobs 5
  timeout 100 python3 benchmarks/instrument_overhead.py --device cuda --reps 5 > "$OUT/overhead.log" 2>&1
  tail -3 "$OUT/overhead.log"
}

case "${STAGE:-kernels}" in
  kernels) kernels ;;
  runs) runs ;;
  bench) bench ;;
  tp) tp ;;
  chunked) chunked ;;
  *) echo "STAGE must be kernels, runs, bench, tp or chunked" >&2; exit 2 ;;
esac
