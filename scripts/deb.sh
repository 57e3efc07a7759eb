#!/usr/bin/env bash
# The Debian package: builds it with cargo-deb and checks what it ships. As root on a Debian
# machine without lorad installed, it also installs it, checks the account, directories, unit
# and shipped config, then removes and purges it again (as CI does).
#   bash scripts/deb.sh            package the release build
#   LORAD_DEB_PROFILE=dev bash scripts/deb.sh   package the debug build (what test-all.sh uses)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lorad/target}"
PROFILE="${LORAD_DEB_PROFILE:-release}"
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "==> installing cargo-deb $CARGO_DEB_VERSION"
    cargo install "cargo-deb@$CARGO_DEB_VERSION" --locked --quiet
fi
if [ "$PROFILE" = dev ]; then cargo build --quiet -p lorad; else cargo build --quiet --release -p lorad; fi
OUT="$CARGO_TARGET_DIR/deb"
mkdir -p "$OUT"
DEB="$(cargo deb -p lorad --no-build --profile "$PROFILE" --output "$OUT" 2>/dev/null | tail -1)"
echo "built $DEB"

fail() { echo "deb: FAIL: $*" >&2; exit 1; }
contents="$(dpkg-deb --contents "$DEB")"
for f in ./usr/bin/lorad ./lib/systemd/system/lorad.service ./usr/lib/sysusers.d/lorad.conf \
    ./usr/lib/tmpfiles.d/lorad.conf ./etc/lorad/lorad.toml; do
    grep -q " $f\$" <<<"$contents" || fail "the package lacks $f"
done
dpkg-deb --info "$DEB" conffiles | grep -qx /etc/lorad/lorad.toml || fail "/etc/lorad/lorad.toml is not a conffile"
echo "ok: the package holds the binary, unit, sysusers, tmpfiles and the config (a conffile)"

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
    echo "SKIPPING the install test: it needs root and dpkg" >&2
    exit 0
fi
if dpkg -s lorad >/dev/null 2>&1; then
    echo "SKIPPING the install test: a lorad package is already installed here" >&2
    exit 0
fi
dpkg -i "$DEB" >/dev/null
getent passwd lorad >/dev/null || fail "no lorad account after install"
[ "$(stat -c '%a %U' /var/lib/lorad)" = "700 lorad" ] || fail "/var/lib/lorad is $(stat -c '%a %U' /var/lib/lorad)"
/usr/bin/lorad --version >/dev/null || fail "/usr/bin/lorad does not run"
/usr/bin/lorad --config /etc/lorad/lorad.toml config check >/dev/null || fail "config check of the shipped config"
if command -v systemd-analyze >/dev/null; then
    out="$(systemd-analyze verify /lib/systemd/system/lorad.service 2>&1)" && [ -z "$out" ] || fail "systemd-analyze verify: $out"
    systemd-analyze security --offline=yes /lib/systemd/system/lorad.service 2>/dev/null | tail -1
fi
echo "ok: dpkg -i installs it: account, 0700 state directory, config check and unit verify pass"
dpkg -r lorad >/dev/null
[ ! -e /usr/bin/lorad ] || fail "/usr/bin/lorad is still there after dpkg -r"
[ -e /etc/lorad/lorad.toml ] || fail "dpkg -r removed the conffile (only purge should)"
dpkg -P lorad >/dev/null
[ ! -e /etc/lorad/lorad.toml ] || fail "dpkg -P left /etc/lorad/lorad.toml"
! getent passwd lorad >/dev/null || fail "dpkg -P left the lorad account"
# The package never deletes the data directory (it holds the node key and receipts); this
# test created it, so the test removes it.
rm -rf /var/lib/lorad
rmdir /etc/lorad 2>/dev/null || true
echo "ok: dpkg -r removes the binary and keeps the config; dpkg -P removes the config and account"
