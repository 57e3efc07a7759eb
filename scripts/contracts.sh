#!/usr/bin/env bash
# Compiles the Solidity sources with the solc-js version contracts/package.json pins.
#   bash scripts/contracts.sh build   regenerate contracts/out/ (commit the result)
#   bash scripts/contracts.sh check   fail when contracts/out/ differs from a fresh compile
# Needs node and npm; installs solc into contracts/node_modules (ignored by git) on first use.
set -euo pipefail
cd "$(dirname "$0")/../contracts"

pinned=$(node -p 'require("./package.json").dependencies.solc')
installed=$(node -p 'try { require("./node_modules/solc/package.json").version } catch { "" }')
if [ "$installed" != "$pinned" ]; then
  echo "==> installing solc-js $pinned into contracts/node_modules"
  npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

case "${1:-}" in
  build) node build.mjs ;;
  check) node build.mjs --check ;;
  *) echo "usage: $0 build|check" >&2; exit 64 ;;
esac
