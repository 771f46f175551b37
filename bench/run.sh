#!/usr/bin/env bash
# Benchmark: deltatune vs the PyTorch reference (float32 fast mode) on a random Qwen3.5-0.8B-shaped
# model stored in BF16, plus the machine limits measured in the same run.
#   bench/run.sh BUILD_DIR        (make bench runs it after building)
# Env: BENCH_PROMPT_TOKENS (512), BENCH_DECODE_TOKENS (64), BENCH_THREADS (2), BENCH_SKIP_REFERENCE=1.
set -euo pipefail
BUILD_DIR=${1:?usage: bench/run.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$BUILD_DIR/deltatune
PROMPT_TOKENS=${BENCH_PROMPT_TOKENS:-512}
DECODE_TOKENS=${BENCH_DECODE_TOKENS:-64}
THREADS=${BENCH_THREADS:-2}
MODEL=$BUILD_DIR/bench-models/qwen3.5-0.8b-bf16
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

if [[ ! -f $MODEL/config.json ]]; then
  echo "creating $MODEL (cached for later runs)" >&2
  "$BIN" init-model --preset qwen3.5-0.8b --dtype bf16 --seed 0 --out "$MODEL" >&2
fi

echo "measuring memory read bandwidth and fp32 peak on $THREADS threads" >&2
LIMITS=$("$BUILD_DIR/bench/bench_machine_limits" "$THREADS")

TOKENS=$(/usr/bin/python3 -c "import random; random.seed(0); print(','.join(str(random.randrange(0, 240000)) for _ in range($PROMPT_TOKENS)))")
echo "deltatune: prefill $PROMPT_TOKENS tokens, decode $DECODE_TOKENS" >&2
# One more generated token than decode steps: the first comes from the prefill logits.
DT_REPORT=$("$BIN" generate --model "$MODEL" --tokens "$TOKENS" --temperature 0 --ignore-eos --print-ids \
  --max-tokens $((DECODE_TOKENS + 1)) 2>&1 >/dev/null | grep '^prefill:')

REF_REPORT=""
if [[ ${BENCH_SKIP_REFERENCE:-0} != 1 ]]; then
  echo "PyTorch reference (float32, chunked prefill, cached decode, $THREADS threads)" >&2
  REF_REPORT=$(/usr/bin/python3 "$ROOT/bench/reference_bench.py" --model "$MODEL" --threads "$THREADS" \
    --prompt-tokens "$PROMPT_TOKENS" --decode-tokens "$DECODE_TOKENS")
fi

/usr/bin/python3 "$ROOT/bench/report.py" --model "$MODEL" --prompt-tokens "$PROMPT_TOKENS" \
  --limits "$LIMITS" --deltatune "$DT_REPORT" --reference "$REF_REPORT"
