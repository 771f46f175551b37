#!/usr/bin/env bash
# `make run`: the default job. Creates the tiny random Qwen3.5 model in ./models/tiny (once) and
# describes it. Usage: scripts/run-default.sh path/to/deltatune
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 path/to/deltatune" >&2
  exit 2
fi
bin="$1"
if [[ ! -x "$bin" ]]; then
  echo "run-default: $bin is not an executable (build first: make build)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
model_dir=models/tiny

if [[ -f "$model_dir/config.json" ]]; then
  echo "==> $model_dir already exists; reusing it (delete it to regenerate)"
else
  echo "==> [1/2] writing a random tiny Qwen3.5 model to $model_dir"
  "$bin" init-model --preset tiny --out "$model_dir" --seed 0
fi

echo "==> [2/2] checking and describing $model_dir"
"$bin" info --model "$model_dir"
echo "==> done"
