#!/usr/bin/env bash
# The Nix packaging, as far as a machine without nixpkgs can check it: every .nix file parses
# (`nix-instantiate --parse`, from Debian's nix-bin). `nix build` / `nix flake check` need
# network access to nixpkgs and are for machines that have it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nix-instantiate >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing nix-bin (apt)"
        apt-get install -y -qq nix-bin >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nix-bin >/dev/null; }
    elif [ "${CI:-}" = true ]; then
        echo "nix-check: FAIL: nix-instantiate is missing and cannot be installed (CI=true)" >&2
        exit 1
    else
        echo "SKIPPING the Nix parse check: nix-instantiate not found (apt install nix-bin)" >&2
        exit 0
    fi
fi
n=0
for f in flake.nix nix/*.nix; do
    nix-instantiate --parse "$f" >/dev/null || { echo "nix-check: FAIL: $f does not parse" >&2; exit 1; }
    n=$((n + 1))
done
echo "ok: $n .nix files parse"
