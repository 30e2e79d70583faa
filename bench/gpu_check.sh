#!/usr/bin/env bash
# The one-GPU check (H100/H200, ≤ 8 minutes): CLO against TRL's DPOTrainer in both settings (reference copy in
# every step; precompute_ref_log_probs=True) on a random-weight model of Qwen2.5-3B's shape, attention-only and
# full fine-tuning, bf16 autocast over fp32 master weights. Writes ONE JSON (default artifacts/bench/gpu-check.json)
# with, per scope, every row's tokens/s, MFU (against the datasheet dense bf16 peak) and peak
# torch.cuda.max_memory_allocated, and CLO's ratios against both TRL rows (`summary` has just those).
#
#   bench/gpu_check.sh                                        # on the GPU machine
#   bench/gpu_check.sh --divide 32 --device cpu --out /tmp/gpu-check.json   # the same script, scaled down, on a CPU
#
# Extra arguments go to bench/gpu_shapes.py (e.g. --batch-size 2). CHECK_TIMEOUT (seconds, default 470) bounds
# the whole run, so that it ends inside an 8-minute slot even if a row hangs; a row that runs out of memory is
# reported in the JSON's errors, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then PY=python; if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi; fi
OUT=artifacts/bench/gpu-check.json
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
mkdir -p "$(dirname "$OUT")"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CLO_NO_PROGRESS=1
exec timeout --signal=INT --kill-after=20 "${CHECK_TIMEOUT:-470}" "$PY" bench/gpu_shapes.py --shape qwen2.5-3b \
  --scope attention,full --rows trl_dpo,trl_dpo_precomputed,clo,clo_cached \
  --batch-size 4 --max-length 512 --steps 3 --out "$OUT" "${ARGS[@]}"
