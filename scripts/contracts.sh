#!/usr/bin/env bash
# The Solidity toolchain, pinned in contracts/package.json (solc-js, and hardhat for a local
# EVM node with eth_getProof):
#   bash scripts/contracts.sh build     regenerate contracts/out/ (commit the result)
#   bash scripts/contracts.sh check     fail when contracts/out/ differs from a fresh compile
#   bash scripts/contracts.sh install   only install the pinned tools
# Needs node and npm; installs into contracts/node_modules (ignored by git) when the pinned
# versions are not there yet.
set -euo pipefail
cd "$(dirname "$0")/../contracts"

stale=""
for pkg in solc hardhat; do
  pinned=$(node -p "require('./package.json').dependencies['$pkg']")
  installed=$(node -p "try { require('./node_modules/$pkg/package.json').version } catch { '' }")
  [ "$installed" = "$pinned" ] || stale="$stale $pkg@$pinned"
done
if [ -n "$stale" ]; then
  echo "==> installing$stale into contracts/node_modules"
  npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

case "${1:-}" in
  build) node build.mjs ;;
  check) node build.mjs --check ;;
  install) ;;
  *) echo "usage: $0 build|check|install" >&2; exit 64 ;;
esac
