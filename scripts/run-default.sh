#!/usr/bin/env bash
# `make run`: the default job, `deltatune demo`: creates the tiny random Qwen3.5 model in
# ./models/tiny (once), fine-tunes a LoRA adapter on a built-in set of questions (the loss falls),
# then answers them greedily without and with the adapter. The adapter goes to
# ./models/tiny-demo-adapter. Usage: scripts/run-default.sh path/to/deltatune
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 path/to/deltatune" >&2
  exit 2
fi
bin="$(realpath "$1")"
if [[ ! -x "$bin" ]]; then
  echo "run-default: $1 is not an executable (build first: make build)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
exec "$bin" demo --model models/tiny --out models/tiny-demo-adapter
