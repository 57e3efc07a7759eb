#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: fetches the default model (once; it is
# cached under $LORAD_HOME), runs the Rust test suites, then the end-to-end suite that drives a
# real `lorad serve` with the official OpenAI Python client and curl.
#
# Needs: a Rust toolchain (rust-toolchain.toml pins it), python3 with pip and venv. Everything
# else (the model, the Python packages, the SentencePiece reference fixtures, node and solc-js) is
# installed by this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outside the checkout so repeated runs (and CI on the same machine) reuse the cache.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lorad/target}"
export LORAD_HOME="${LORAD_HOME:-$HOME/.local/share/lorad}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> fetching the default model into $LORAD_HOME (no-op when cached)"
cargo run --quiet -p lorad -- model fetch

echo "==> contracts: committed artifacts equal a fresh solc compile"
if ! command -v npm >/dev/null; then
  echo "==> installing node and npm (apt)"
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
bash scripts/contracts.sh check

echo "==> SentencePiece reference fixtures (no-op when cached)"
bash scripts/spm-fixtures.sh

echo "==> cargo test --workspace"
cargo test --workspace --all-targets

echo "==> CUDA build check: --features cuda type-checks and candle's kernels compile to PTX (no GPU needed)"
bash scripts/cuda.sh check

if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing promtool (Debian's prometheus) for the /metrics format check"
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi

echo "==> end-to-end: lorad serve + OpenAI client + curl"
bash tests/e2e/run.sh

echo "==> Nix: every .nix file parses"
bash scripts/nix-check.sh

echo "==> Debian package: build, and (as root) install, check, remove, purge"
LORAD_DEB_PROFILE=dev bash scripts/deb.sh
