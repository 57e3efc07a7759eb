#!/usr/bin/env bash
# Chaos soak of the real `lorad serve` on the default model (tests/soak/soak.py says what it
# sends and checks). Not part of scripts/test-all.sh: it runs for minutes and its load depends
# on timing. Run it before a release, or after a change to the scheduler, the KV cache, the
# adapter tiers or the HTTP layer:
#
#   bash tests/soak/run.sh                      # 5 minutes, 16 clients, fcfs
#   SOAK_SECONDS=1800 SOAK_POLICY=priority bash tests/soak/run.sh
#
# The node is set up to be squeezed: a KV cache of SOAK_KV_TOKENS (default 1024) so requests
# get preempted, prefix caching and n-gram speculation on, an adapter host cache of 32 MiB and a
# device working set of 24 MiB (the 24 adapters take 126 MB in f32; the largest, 20 MB) so
# adapters are evicted and paged in again, and the operator uploads, pins and removes adapters and sends SIGHUP.
# Exits non-zero if soak.py found a failure, the server died, or it did not stop cleanly.
#
# Environment: SOAK_SECONDS, SOAK_CONCURRENCY, SOAK_SEED, SOAK_POLICY (fcfs|priority|fair),
# SOAK_KV_TOKENS, VENV, CARGO_TARGET_DIR, LORAD_HOME (where the default model is), SOAK_PROFILE
# (debug, the default, keeps overflow checks on; or release).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$HOME/.cache/lorad/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lorad/target}"
SRC_HOME="${LORAD_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/lorad}"
POLICY="${SOAK_POLICY:-fcfs}"
PROFILE="${SOAK_PROFILE:-debug}"
export PYTHONDONTWRITEBYTECODE=1

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
# httpx comes with the openai client the end-to-end suite pins (as `httpx2`).
"$VENV/bin/python" -c "import openai" 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check "openai==3.54.0"

if [ "$PROFILE" = release ]; then cargo build -q --release -p lorad; else cargo build -q -p lorad; fi
LORAD="$CARGO_TARGET_DIR/$PROFILE/lorad"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/lorad-soak.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

HOME_DIR="$TMP/home"
mkdir -p "$HOME_DIR/models"
if [ ! -d "$SRC_HOME/models/smollm2-135m-instruct" ]; then "$LORAD" --home "$SRC_HOME" model fetch; fi
ln -s "$SRC_HOME/models/smollm2-135m-instruct" "$HOME_DIR/models/smollm2-135m-instruct"
lorad() { "$LORAD" --home "$HOME_DIR" "$@"; }

echo "==> 24 adapters (ranks 4, 8, 16; three target sets) and 4 to upload"
TARGETS=("q_proj,v_proj" "q_proj,k_proj,v_proj,o_proj" "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
NAMES=()
for i in $(seq 0 23); do
    rank=$((4 << (i % 3)))
    lorad adapter generate-random "$TMP/src/a$i" --rank "$rank" --seed "$i" --targets "${TARGETS[$((i / 3 % 3))]}" >/dev/null
    lorad adapter import "$TMP/src/a$i" --name "a$i" >/dev/null 2>&1
    NAMES+=("a$i")
done
for i in 0 1 2 3; do
    lorad adapter generate-random "$TMP/uploads/u$i" --rank 8 --seed $((100 + i)) --targets "${TARGETS[$i % 3]}" >/dev/null
done
lorad adapter pin a0 >/dev/null

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/admin-token"
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SCHED=(--scheduling-policy "$POLICY")
echo "==> lorad serve ($PROFILE, $POLICY) on port $PORT"
"$LORAD" --home "$HOME_DIR" serve --listen "127.0.0.1:$PORT" --kv-cache-tokens "${SOAK_KV_TOKENS:-1024}" --max-batch-size 16 \
    --max-waiting 64 --host-adapter-bytes 32MiB --device-adapter-bytes 24MiB \
    --speculative-config '{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3}' \
    --admin-token-file "$TMP/admin-token" "${SCHED[@]}" >"$TMP/serve.log" 2>&1 &
SERVER_PID=$!
ready=0
for _ in $(seq 1 480); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/serve.log"; echo "server died during start-up"; exit 1; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ]; then ready=1; break; fi
    sleep 0.25
done
[ "$ready" = 1 ] || { tail -20 "$TMP/serve.log"; echo "server not ready after 120 s"; exit 1; }

status=0
LORAD_URL="http://127.0.0.1:$PORT" LORAD_PID="$SERVER_PID" SOAK_ADAPTERS="$(IFS=,; echo "${NAMES[*]}")" \
    SOAK_UPLOADS="$TMP/uploads" SOAK_ADMIN_TOKEN="$(cat "$TMP/admin-token")" \
    SOAK_PRIORITY=$([ "$POLICY" = priority ] && echo 1 || echo 0) SOAK_METRICS="$TMP/metrics.txt" \
    "$VENV/bin/python" tests/soak/soak.py || status=$?

if command -v promtool >/dev/null; then
    promtool check metrics <"$TMP/metrics.txt" || { echo "FAIL: promtool rejects /metrics after the soak"; status=1; }
fi
grep -E '^lorad_(preemptions_total|adapter_tier_evictions_total|adapter_page_ins_total|spec_decode_accepted_tokens_total|prefix_cache_hit_tokens_total)' "$TMP/metrics.txt" || true

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "FAIL: the server died during the soak"; tail -50 "$TMP/serve.log"; exit 1
fi
kill -TERM "$SERVER_PID"
stopped=0
wait "$SERVER_PID" || stopped=$?
SERVER_PID=""
if [ "$stopped" != 0 ]; then echo "FAIL: lorad serve exited $stopped after SIGTERM"; status=1; fi
if grep -E '"level":"ERROR"| ERROR |panicked' "$TMP/serve.log" | head -20; then
    echo "FAIL: errors in the server log"; status=1
fi
if [ "$status" != 0 ]; then cp "$TMP/serve.log" "${TMPDIR:-/tmp}/lorad-soak-serve.log"; echo "server log: ${TMPDIR:-/tmp}/lorad-soak-serve.log"; fi
echo "==> soak $([ "$status" = 0 ] && echo passed || echo FAILED)"
exit "$status"
