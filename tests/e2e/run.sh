#!/usr/bin/env bash
# End-to-end test of the real `lorad` binary on the real default model:
#   1. builds lorad, prepares a Python venv with the official `openai` client and pytest;
#   2. makes a throw-away LORAD_HOME whose models/ links to the real model (nothing is
#      downloaded again), writes a random PEFT adapter and imports it with `lorad adapter import`;
#   3. checks CLI exit codes (docs/exit-codes.md);
#   4. starts `lorad serve` on a free loopback port, waits for /readyz, runs
#      tests/e2e/test_openai.py (openai client: completions and chat, streaming and not, base and
#      adapter, error classes), then curl checks of every HTTP error (400/404/405/413, and 429 on a
#      second server started with --max-waiting 0);
#   5. stops the servers with SIGTERM and checks they exit 0.
# Exits non-zero on any failure. Offline except for the first `pip install` (and, if the model
# is not on this machine yet, `lorad model fetch`, which uses pip too).
#
# Environment: VENV (default $HOME/.cache/lorad/venv), CARGO_TARGET_DIR (default
# $HOME/.cache/lorad/target), LORAD_HOME (where the real model is; default
# $XDG_DATA_HOME/lorad or ~/.local/share/lorad).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$HOME/.cache/lorad/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lorad/target}"
SRC_HOME="${LORAD_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/lorad}"
MODEL_DIR_NAME="smollm2-135m-instruct"
BASE="SmolLM2-135M-Instruct"
export PYTHONDONTWRITEBYTECODE=1
OPENAI_VERSION="3.54.0"
PYTEST_VERSION="9.2.0"

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "  ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL: $*" >&2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/lorad-e2e.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

echo "==> python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Only touch the network when the pinned versions are not installed yet.
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(not (m.version('openai') == '$OPENAI_VERSION' and m.version('pytest') == '$PYTEST_VERSION'))" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "openai==$OPENAI_VERSION" "pytest==$PYTEST_VERSION"
fi

echo "==> cargo build -p lorad"
cargo build -q -p lorad
LORAD="$CARGO_TARGET_DIR/debug/lorad"

echo "==> test home in $TMP"
if [ ! -f "$SRC_HOME/models/$MODEL_DIR_NAME/$BASE.Q4_1.gguf" ]; then
    echo "model not in $SRC_HOME; fetching it"
    "$LORAD" --home "$SRC_HOME" model fetch
fi
HOME_DIR="$TMP/home"
mkdir -p "$HOME_DIR/models"
ln -s "$SRC_HOME/models/$MODEL_DIR_NAME" "$HOME_DIR/models/$MODEL_DIR_NAME"
lorad() { "$LORAD" --home "$HOME_DIR" "$@"; }

"$LORAD" --home "$HOME_DIR" adapter generate-random "$TMP/ada" --rank 8 --seed 7 >/dev/null
lorad adapter import "$TMP/ada" --name ada
lorad adapter ls
if lorad adapter ls --json | "$VENV/bin/python" -c 'import json,sys; a=json.load(sys.stdin); assert [x["name"] for x in a] == ["ada"] and a[0]["rank"] == 8'; then
    ok "adapter ls --json lists the imported adapter"
else
    fail "adapter ls --json"
fi

lorad adapter pin ada >/dev/null
if lorad adapter ls --json | "$VENV/bin/python" -c 'import json,sys; a=json.load(sys.stdin); assert a[0]["pinned"] is True and a[0]["state"] == "ready", a'; then
    ok "adapter pin is recorded in the store"
else
    fail "adapter pin"
fi
if lorad store verify | grep -q "1 adapters verified, 0 failed"; then ok "store verify"; else fail "store verify"; fi
if lorad store gc >/dev/null; then ok "store gc"; else fail "store gc"; fi

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server LOG ARGS... : starts lorad serve in the background, sets SERVER_PID.
start_server() {
    local log="$1"
    shift
    "$LORAD" --home "$HOME_DIR" serve "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# wait_ready PORT PID LOG
wait_ready() {
    local port="$1" pid="$2" log="$3"
    for _ in $(seq 1 240); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server exited during start-up:" >&2
            cat "$log" >&2
            return 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; then
            return 0
        fi
        sleep 0.25
    done
    echo "server not ready after 60 s:" >&2
    cat "$log" >&2
    return 1
}

# stop_server PID NAME : SIGTERM, expect exit status 0 within 30 s.
stop_server() {
    local pid="$1" name="$2" status=0
    kill -TERM "$pid"
    for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    wait "$pid" || status=$?
    if [ "$status" = 0 ]; then ok "$name stopped on SIGTERM with status 0"; else fail "$name exited with $status after SIGTERM"; fi
}

# expect_exit CODE DESCRIPTION CMD... : runs CMD, checks its exit status.
expect_exit() {
    local want="$1" what="$2" got=0
    shift 2
    "$@" >"$TMP/cmd.out" 2>&1 || got=$?
    if [ "$got" = "$want" ]; then ok "exit $want: $what"; else fail "$what: exit $got, expected $want: $(tail -3 "$TMP/cmd.out")"; fi
}

echo "==> CLI exit codes"
mkdir -p "$TMP/broken" && echo '{}' >"$TMP/broken/adapter_config.json"
expect_exit 2 "unknown flag" lorad serve --no-such-flag
expect_exit 64 "--max-batch-size 0" lorad serve --max-batch-size 0
expect_exit 64 "adapter rm of an unknown adapter" lorad adapter rm no-such-adapter
expect_exit 65 "adapter import of a broken adapter" lorad adapter import "$TMP/broken"
expect_exit 78 "adapter import without a model" "$LORAD" --home "$TMP/empty-home" adapter import "$TMP/ada"
expect_exit 78 "serve with a missing --model" lorad serve --model "$TMP/missing.gguf" --listen "127.0.0.1:$(free_port)"
expect_exit 2 "serve --device gpu (not a device)" lorad serve --device gpu
expect_exit 78 "serve --max-model-len above the model's context" lorad serve --max-model-len 100000 --listen "127.0.0.1:$(free_port)"
# `model info` describes the default model from its header; a file it cannot serve exits 65.
if lorad model info --json >"$TMP/info.json" 2>"$TMP/info.err" \
    && python3 -c "import json, sys; i = json.load(open(sys.argv[1])); sys.exit(not (i['parameters'] == 134515008 and i['context'] == 8192 and i['arch'] == 'llama'))" "$TMP/info.json"; then
    ok "model info: SmolLM2-135M's 134,515,008 parameters and 8,192-token context from the header"
else
    fail "model info: $(head -c 400 "$TMP/info.json") $(cat "$TMP/info.err")"
fi
head -c 4096 /dev/urandom >"$TMP/random.gguf"
expect_exit 65 "model info of a file that is not GGUF" lorad model info "$TMP/random.gguf"
# This suite runs the CPU build: asking for a GPU is a configuration error, not a silent CPU run.
expect_exit 78 "serve --device cuda in a build without CUDA" lorad serve --device cuda --listen "127.0.0.1:$(free_port)"
echo '{"type": "number", "minimum": 0}' >"$TMP/unenforceable.json"
expect_exit 65 "generate --json-schema with a keyword that cannot be enforced" lorad generate --prompt x --json-schema "$TMP/unenforceable.json"
expect_exit 64 "generate --regex with a word boundary" lorad generate --prompt x --regex '\bword'
expect_exit 2 "generate with two constraints" lorad generate --prompt x --json --regex a
answer=$(lorad generate --prompt "The capital of Italy is" --choice " Rome" --choice " Milan" 2>/dev/null)
if [ "$answer" = " Rome" ] || [ "$answer" = " Milan" ]; then ok "generate --choice answers one of the choices"; else fail "generate --choice gave '$answer'"; fi
expect_exit 78 "serve with a --chat-template that does not compile" lorad serve --chat-template '{% for m in %}' --listen "127.0.0.1:$(free_port)"
# A template of our own replaces the model's: one that raises says so, in one line.
printf '{{ raise_exception("the e2e template is in use") }}' >"$TMP/raise.jinja"
if out=$(lorad generate --chat --chat-template "$TMP/raise.jinja" --prompt x 2>&1); then
    fail "generate --chat with a raising --chat-template succeeded"
elif [ $? -eq 65 ] && grep -q "the e2e template is in use" <<<"$out"; then
    ok "generate --chat renders with --chat-template (exit 65 when it refuses)"
else
    fail "generate --chat-template: $out"
fi

echo "==> datanet, finetune, attribution index"
cat >"$TMP/dn.jsonl" <<'JSONL'
{"id": "a1", "contributor": "alice", "text": "The copper kettle sings at dawn in the old mill."}
{"id": "a2", "contributor": "alice", "text": "Copper kettles gleam when polished with lemon and salt."}
{"id": "b1", "contributor": "bob", "text": "Rigel and Betelgeuse burn in the constellation Orion."}
{"id": "b2", "contributor": "bob", "text": "Astronomers chart the parallax of Vega every winter."}
{"id": "c1", "contributor": "carol", "messages": [{"role": "user", "content": "When do I sow garlic?"}, {"role": "assistant", "content": "Sow garlic in autumn and mulch it with straw."}]}
{"id": "c2", "contributor": "carol", "text": "Mulch the garlic bed with straw before the first frost."}
JSONL
printf '%s\n' '{"id": 1, "contributor": "a", "text": "ok"}' '{"id": 1, "contributor": "b", "text": "dup"}' '{"id": 2, "text": "x"}' >"$TMP/bad.jsonl"
expect_exit 65 "datanet build with bad records" lorad datanet build "$TMP/bad.jsonl" --name bad
if grep -q "line 2" "$TMP/cmd.out" && grep -q "line 3" "$TMP/cmd.out"; then ok "bad records are named by line"; else fail "bad record lines: $(cat "$TMP/cmd.out")"; fi
if lorad datanet build "$TMP/dn.jsonl" --name dn >"$TMP/dn.out" 2>&1 && grep -q "6 records" "$TMP/dn.out"; then
    ok "datanet build"
else
    fail "datanet build: $(tail -3 "$TMP/dn.out")"
fi
if lorad datanet verify dn >/dev/null; then ok "datanet verify"; else fail "datanet verify"; fi
if lorad datanet index dn --suffix-array >"$TMP/span.out" 2>&1 && grep -q "bytes/token" "$TMP/span.out"; then
    ok "datanet suffix-array index"
else
    fail "datanet index: $(tail -3 "$TMP/span.out")"
fi
if lorad finetune --datanet dn --name tuned --steps 4 --batch 3 --seed 1 --eval-fraction 0.34 >"$TMP/ft.out" 2>&1 \
    && grep -q "held-out loss" "$TMP/ft.out" && grep -q "attribution index: 6 records" "$TMP/ft.out"; then
    ok "finetune trains, imports and indexes"
else
    fail "finetune: $(tail -5 "$TMP/ft.out")"
fi
# The exported adapter is in PEFT's layout: config fields and tensor names as PEFT saves them.
if "$VENV/bin/python" - "$HOME_DIR/finetuned/tuned" <<'PY'
import json, struct, sys
d = sys.argv[1]
cfg = json.load(open(f"{d}/adapter_config.json"))
assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"], cfg
raw = open(f"{d}/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
names = {k for k in json.loads(raw[8:8 + n]) if k != "__metadata__"}
want = {f"base_model.model.model.layers.{l}.self_attn.{m}.lora_{ab}.weight" for l in range(30) for m in ("q_proj", "v_proj") for ab in "AB"}
assert names == want, sorted(names ^ want)[:4]
PY
then ok "finetuned adapter has PEFT's config and tensor names"; else fail "finetuned adapter layout"; fi

echo "==> systemd unit"
if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/bin/lorad|$LORAD|" systemd/lorad.service >"$TMP/lorad.service"
    if out="$(systemd-analyze verify "$TMP/lorad.service" 2>&1)" && [ -z "$out" ]; then
        ok "systemd-analyze verify lorad.service: clean"
    else
        fail "systemd-analyze verify: $out"
    fi
elif [ "${CI:-}" = "true" ]; then
    fail "systemd-analyze not found (CI=true)"
else
    echo "SKIPPING the unit check: systemd-analyze not found" >&2
fi

echo "==> configuration file"
if lorad --config systemd/lorad.toml config check >"$TMP/cc.out" 2>&1 && grep -q "is valid" "$TMP/cc.out"; then
    ok "config check passes on the shipped config (systemd/lorad.toml)"
else
    fail "config check of the shipped config: $(tail -5 "$TMP/cc.out")"
fi
printf '[server]\nlisten = "127.0.0.1:1"\nmax_body_bytez = 5\n' >"$TMP/typo.toml"
expect_exit 78 "config check: unknown key" lorad --config "$TMP/typo.toml" config check
if grep -q "max_body_bytez" "$TMP/cmd.out"; then ok "the unknown key is named"; else fail "unknown key not named: $(cat "$TMP/cmd.out")"; fi
printf '[engine]\nmax_batch_size = 0\n[chain]\nl2_rpc = "https://l2.invalid"\n' >"$TMP/bad.toml"
expect_exit 78 "config check: a zero batch size and an l2_rpc without a deployment" lorad --config "$TMP/bad.toml" config check
if grep -q "error limits" "$TMP/cmd.out" && grep -q "error chain.l2_rpc" "$TMP/cmd.out"; then ok "every bad key is reported"; else fail "config check report: $(cat "$TMP/cmd.out")"; fi
expect_exit 78 "serve with a config naming an unknown key" lorad --config "$TMP/typo.toml" serve

echo "==> log formats"
# Under systemd, stderr is the journal and $JOURNAL_STREAM names it (device:inode): each line then
# carries its syslog priority, the fatal error included. A serve whose model is missing logs at
# info, then ends with that error (78).
: >"$TMP/journal.log"
rc=0
JOURNAL_STREAM=$(stat -c '%d:%i' "$TMP/journal.log") lorad serve --model "$TMP/none.gguf" --listen 127.0.0.1:0 2>>"$TMP/journal.log" || rc=$?
if [ "$rc" = 78 ] && grep -q '^<6> INFO' "$TMP/journal.log" && tail -1 "$TMP/journal.log" | grep -q "^<3>error: model $TMP/none.gguf does not exist" && ! grep -qv '^<[0-9]>' "$TMP/journal.log"; then
    ok "stderr is the journal: every line leads with its priority, the fatal error with <3>"
else
    fail "journal format (rc $rc): $(cat "$TMP/journal.log")"
fi
printf 'log_format = "json"\n' >"$TMP/json.toml"
rc=0
lorad --config "$TMP/json.toml" serve --model "$TMP/none.gguf" --listen 127.0.0.1:0 2>"$TMP/json.log" || rc=$?
if [ "$rc" = 78 ] && python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) >= 2 and all({"timestamp", "level", "message", "target"} <= set(l) for l in lines), lines
assert lines[-1]["level"] == "ERROR" and sys.argv[2] in lines[-1]["message"], lines[-1]
' "$TMP/json.log" "$TMP/none.gguf"; then
    ok "log_format = \"json\": every line, the fatal error included, is a JSON object"
else
    fail "json format (rc $rc): $(cat "$TMP/json.log")"
fi
printf 'log_format = "xml"\n' >"$TMP/xml.toml"
expect_exit 78 "log_format = \"xml\" is refused" lorad --config "$TMP/xml.toml" config check
if grep -q "log_format" "$TMP/cmd.out"; then ok "the bad log_format is named"; else fail "log_format not named: $(cat "$TMP/cmd.out")"; fi

echo "==> lightclient verify-proof and replay (offline audits)"
LC_FIXTURES="${LORAD_LIGHTCLIENT_FIXTURES:-$ROOT/../shared/fixtures/lightclient}"
LC_RPC="$LC_FIXTURES/a16z-helios/tests/testdata/rpc"
LC_ROOT=0x7b3d5a01f69b7d2ea7479fd7ae35f4bac2700ab6d6d7b4807a7fedf53ced710e
if [ -f "$LC_RPC/proof.json" ]; then
    if lorad lightclient verify-proof "$LC_RPC/proof.json" --state-root "$LC_ROOT" | grep -q "all proofs verify"; then
        ok "verify-proof: mainnet block 21925176 deposit-contract proof"
    else
        fail "verify-proof of a valid proof"
    fi
    expect_exit 65 "verify-proof against a wrong state root" lorad lightclient verify-proof "$LC_RPC/proof.json" --state-root "${LC_ROOT%?}f"
    LC_CHAIN="$LC_FIXTURES/a16z-helios/ethereum/testdata"
    LC_CHECKPOINT=0x5afc212a7924789b2bc86acad3ab3a6ffb1f6e97253ea50bee7f4f51422c9275
    if lorad lightclient replay "$LC_CHAIN" --checkpoint "$LC_CHECKPOINT" | grep -q "verified finalized execution block 17923026 "; then
        ok "replay: mainnet bootstrap -> 6 periods -> finality gives execution block 17923026"
    else
        fail "replay of the saved mainnet light-client chain"
    fi
    if lorad lightclient replay "$LC_CHAIN" --checkpoint "$LC_CHECKPOINT" --json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["optimistic"]["execution_block_number"] == 17923113, r["optimistic"]'; then
        ok "replay --json: optimistic head 17923113"
    else
        fail "replay --json report"
    fi
    expect_exit 65 "replay from a checkpoint that is not the bootstrap's" lorad lightclient replay "$LC_CHAIN" --checkpoint "${LC_CHECKPOINT%?}4"
    expect_exit 65 "replay with a two-week checkpoint-age policy (data from 2023)" lorad lightclient replay "$LC_CHAIN" --checkpoint "$LC_CHECKPOINT" --max-checkpoint-age 1209600
    expect_exit 64 "replay of a directory without bootstrap.json" lorad lightclient replay "$TMP" --checkpoint "$LC_CHECKPOINT"
    # A local beacon node answering from the saved responses (python's static file server:
    # the query string of `updates?start_period=..` is ignored, which is what we want).
    LC_API="$TMP/beacon/eth/v1/beacon/light_client"
    mkdir -p "$LC_API/bootstrap"
    cp "$LC_CHAIN/bootstrap.json" "$LC_API/bootstrap/$LC_CHECKPOINT"
    cp "$LC_CHAIN/updates.json" "$LC_API/updates"
    cp "$LC_CHAIN/finality.json" "$LC_API/finality_update"
    cp "$LC_CHAIN/optimistic.json" "$LC_API/optimistic_update"
    LC_PORT="$(free_port)"
    "$VENV/bin/python" -m http.server --bind 127.0.0.1 "$LC_PORT" --directory "$TMP/beacon" >"$TMP/beacon.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$LC_PORT/eth/v1/beacon/light_client/finality_update" >/dev/null && break; sleep 0.1; done
    LC_URL="http://127.0.0.1:$LC_PORT"
    expect_exit 69 "lightclient status before any sync" lorad lightclient status
    if lorad lightclient sync --beacon-url "$LC_URL" --checkpoint "$LC_CHECKPOINT" --current-slot 7109432 | grep -q "synced: finalized execution block 17923026 "; then
        ok "lightclient sync over HTTP: finalized execution block 17923026"
    else
        fail "lightclient sync over HTTP"
    fi
    if lorad lightclient status | grep -q "finalized   slot 7109344 root 0xa9bb1965"; then
        ok "lightclient status shows the saved finalized root"
    else
        fail "lightclient status"
    fi
    # The next start bootstraps from the saved finalized root, which this server does not have.
    expect_exit 69 "lightclient sync resumes from the saved root (this server lacks its bootstrap)" lorad lightclient sync --beacon-url "$LC_URL" --current-slot 7109432
    if grep -q "bootstrap/0xa9bb1965" "$TMP/cmd.out"; then ok "resume asked for the saved finalized root's bootstrap"; else fail "resume error: $(tail -2 "$TMP/cmd.out")"; fi
    expect_exit 65 "lightclient sync with a 2023 checkpoint under the default 14-day policy" lorad lightclient sync --beacon-url "$LC_URL" --checkpoint "$LC_CHECKPOINT"
    expect_exit 69 "lightclient sync against a closed port" lorad lightclient sync --beacon-url "http://127.0.0.1:$(free_port)" --checkpoint "$LC_CHECKPOINT" --current-slot 7109432
elif [ "${CI:-}" = "true" ]; then
    fail "light-client fixtures not found at $LC_FIXTURES (CI=true)"
else
    echo "SKIPPING verify-proof checks: light-client fixtures not found at $LC_FIXTURES (set LORAD_LIGHTCLIENT_FIXTURES)" >&2
fi

echo "==> lorad serve"
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
ADMIN_TOKEN="e2e-admin-token-$(date +%s%N)"
printf '%s\n' "$ADMIN_TOKEN" >"$TMP/admin-token"
SETTLEMENT=0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e
start_server "$TMP/server.log" --listen "127.0.0.1:$PORT" --kv-cache-tokens 4096 --admin-token-file "$TMP/admin-token" \
    --settlement "$SETTLEMENT" --chain-id 31337
MAIN_PID=$SERVER_PID
wait_ready "$PORT" "$MAIN_PID" "$TMP/server.log"
echo "ready on $URL"
expect_exit 69 "serve on a port already in use" lorad serve --listen "127.0.0.1:$PORT"

if command -v promtool >/dev/null; then
    curl -s "$URL/metrics" >"$TMP/metrics0.txt"
    if promtool check metrics <"$TMP/metrics0.txt"; then ok "promtool check metrics, before any request"; else fail "promtool before load"; fi
elif [ "${CI:-}" = "true" ]; then
    fail "promtool not found (CI=true; scripts/test-all.sh installs Debian's prometheus)"
fi

echo "==> pytest (official openai client $OPENAI_VERSION)"
PYTEST_STATUS=0
LORAD_BASE_URL="$URL/v1" LORAD_BASE_MODEL="$BASE" LORAD_ADAPTER=ada LORAD_TUNED=tuned \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e/test_openai.py tests/e2e/test_responses.py || PYTEST_STATUS=$?
if [ "$PYTEST_STATUS" = 0 ]; then ok "pytest suite"; else fail "pytest suite (status $PYTEST_STATUS)"; fi

echo "==> curl checks"
# check NAME STATUS METHOD PATH [BODY|@FILE] [JQ-LIKE PYTHON ASSERTION ON THE JSON BODY `b`]
check() {
    local name="$1" want="$2" method="$3" path="$4" body="${5:-}" assertion="${6:-}" got
    local args=(-s -o "$TMP/resp.body" -D "$TMP/resp.headers" -w '%{http_code}' -X "$method" -H 'content-type: application/json')
    if [ -n "${BEARER:-}" ]; then args+=(-H "authorization: Bearer $BEARER"); fi
    if [ -n "$body" ]; then
        if [ "${body:0:1}" = "@" ]; then args+=(--data-binary "$body"); else args+=(-d "$body"); fi
    fi
    got="$(curl "${args[@]}" "$URL$path")" || true
    if [ "$got" != "$want" ]; then
        fail "$name: HTTP $got, expected $want: $(head -c 300 "$TMP/resp.body")"
        return
    fi
    if [ -n "$assertion" ] && ! "$VENV/bin/python" -c "import json,sys; b=json.load(open(sys.argv[1])); assert $assertion, b" "$TMP/resp.body" 2>"$TMP/assert.err"; then
        fail "$name: $(tail -1 "$TMP/assert.err")"
        return
    fi
    ok "$name: HTTP $want"
}
M="\"model\": \"$BASE\""
check "healthz" 200 GET /healthz
check "readyz" 200 GET /readyz
check "models list" 200 GET /v1/models "" "[m['id'] for m in b['data']] == ['$BASE', 'ada', 'tuned'] and b['data'][1]['parent'] == '$BASE'"
check "completion" 200 POST /v1/completions "{$M, \"prompt\": \"The capital of France is\", \"max_tokens\": 4, \"temperature\": 0}" "b['object'] == 'text_completion' and b['usage']['completion_tokens'] == 4"
check "unknown model" 404 POST /v1/chat/completions '{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}' "b['error']['code'] == 'model_not_found' and b['error']['message'] == \"The model 'nope' does not exist\""
check "bad temperature" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"temperature\": -1}" "b['error']['param'] == 'temperature'"
check "wrong type" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"max_tokens\": \"many\"}" "b['error']['param'] == 'max_tokens'"
check "bad top_p" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"top_p\": 2}" "b['error']['param'] == 'top_p'"
check "n=0" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"n\": 0}" "b['error']['param'] == 'n'"
check "logprobs over 20" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"logprobs\": 21}" "b['error']['param'] == 'logprobs'"
check "completion logprobs" 200 POST /v1/completions "{$M, \"prompt\": \"The capital of France is\", \"max_tokens\": 4, \"temperature\": 0, \"logprobs\": 2}" "''.join(b['choices'][0]['logprobs']['tokens']) == b['choices'][0]['text'] and all(len(t) == 2 for t in b['choices'][0]['logprobs']['top_logprobs'])"
check "tokenize" 200 POST /tokenize '{"prompt": "Once upon a time"}' "b['tokens'] == [6403, 1980, 253, 655] and b['count'] == 4"
check "detokenize" 200 POST /detokenize '{"tokens": [6403, 1980, 253, 655]}' "b['prompt'] == 'Once upon a time'"
check "echo not a boolean" 400 POST /v1/completions "{$M, \"prompt\": \"hi\", \"echo\": 1}" "b['error']['param'] == 'echo'"
check "echo scores the prompt" 200 POST /v1/completions "{$M, \"prompt\": \"The capital of France is Paris\", \"max_tokens\": 0, \"echo\": true, \"logprobs\": 1}" "b['choices'][0]['text'] == 'The capital of France is Paris' and b['choices'][0]['logprobs']['token_logprobs'][0] is None and b['usage']['completion_tokens'] == 0"
check "several prompts" 200 POST /v1/completions "{$M, \"prompt\": [\"1, 2, 3,\", \"a, b, c,\"], \"max_tokens\": 3, \"temperature\": 0}" "[c['index'] for c in b['choices']] == [0, 1] and b['usage']['completion_tokens'] == 6"
check "missing model" 400 POST /v1/completions '{"prompt": "hi"}' "b['error']['param'] == 'model'"
check "malformed JSON" 400 POST /v1/completions '{"model": ' "b['error']['code'] == 'invalid_json'"
check "context length" 400 POST /v1/chat/completions "{$M, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 100000}" "b['error']['code'] == 'context_length_exceeded' and b['error']['param'] == 'messages'"
"$VENV/bin/python" -c "import json,sys; json.dump({'model': '$BASE', 'prompt': 'a' * (5 << 20)}, open(sys.argv[1], 'w'))" "$TMP/big.json"
check "body over 4 MiB" 413 POST /v1/completions "@$TMP/big.json" "b['error']['code'] == 'request_too_large'"
check "wrong method" 405 GET /v1/chat/completions "" "b['error']['code'] == 'method_not_allowed'"
check "unknown path" 404 GET /v1/nothing "" "b['error']['code'] == 'unknown_url'"
check "streaming ends with [DONE]" 200 POST /v1/completions "{$M, \"prompt\": \"Hi\", \"max_tokens\": 3, \"stream\": true}" ""
if tail -c 14 "$TMP/resp.body" | grep -q '^data: \[DONE\]$' && grep -q '"usage"' "$TMP/resp.body"; then
    ok "stream has usage and ends with data: [DONE]"
else
    fail "stream format: $(tail -c 300 "$TMP/resp.body")"
fi

echo "==> receipts (signing gate without a verified chain: every answer says why it has no receipt)"
REQ=0x1111111111111111111111111111111111111111
check "tuned adapter answer: receipt null, no verified chain" 200 POST /v1/chat/completions \
    "{\"model\": \"tuned\", \"user\": \"$REQ\", \"messages\": [{\"role\": \"user\", \"content\": \"SELECT\"}], \"max_tokens\": 4, \"temperature\": 0}" \
    "b['receipt'] is None and b['receipt_refused']['code'] == 'no_verified_chain' and b['attribution']['contributors']"
check "two answers: each its own refused receipt and attribution, in its choice" 200 POST /v1/chat/completions \
    "{\"model\": \"tuned\", \"user\": \"$REQ\", \"n\": 2, \"seed\": 7, \"messages\": [{\"role\": \"user\", \"content\": \"SELECT\"}], \"max_tokens\": 4}" \
    "'receipt' not in b and [c['index'] for c in b['choices']] == [0, 1] and all(c['receipt'] is None and c['receipt_refused']['code'] == 'no_verified_chain' and len(c['attribution']['records']) == 6 for c in b['choices'])"
check "no requester address: no_requester" 200 POST /v1/completions '{"model": "tuned", "prompt": "Hi", "max_tokens": 2}' \
    "b['receipt'] is None and b['receipt_refused']['code'] == 'no_requester'"
check "base model answer: no_adapter" 200 POST /v1/completions "{$M, \"user\": \"$REQ\", \"prompt\": \"Hi\", \"max_tokens\": 2}" \
    "b['receipt'] is None and b['receipt_refused']['code'] == 'no_adapter'"
check "GET /v1/receipts/<not an id>" 400 GET /v1/receipts/0xzz "" "b['error']['param'] == 'job_id'"
check "GET /v1/receipts/<unknown id>" 404 GET "/v1/receipts/0x$(printf '0%.0s' $(seq 64))" "" "b['error']['code'] == 'receipt_not_found'"
if [ "$(stat -c %a "$HOME_DIR/node.key")" = 600 ]; then ok "node key created with mode 0600"; else fail "node key mode $(stat -c %a "$HOME_DIR/node.key")"; fi
ADDR="$(lorad receipts key)"
if [[ "$ADDR" =~ ^0x[0-9a-fA-F]{40}$ ]] && grep -q "node=$ADDR" "$TMP/server.log"; then ok "receipts key prints the serving node's address"; else fail "receipts key: '$ADDR'"; fi
if lorad receipts export 2>&1 >/dev/null | grep -q "^0 receipts"; then ok "receipts export of an empty journal"; else fail "receipts export"; fi
cp "$HOME_DIR/node.key" "$TMP/exposed.key"; chmod 644 "$TMP/exposed.key"
expect_exit 78 "serve with a group/world-readable node key" lorad serve --listen "127.0.0.1:$(free_port)" --settlement "$SETTLEMENT" --chain-id 1 --node-key "$TMP/exposed.key"
expect_exit 2 "--settlement without --chain-id" lorad serve --settlement "$SETTLEMENT"

echo "==> admin API and metrics"
"$LORAD" --home "$HOME_DIR" adapter generate-random "$TMP/uploaded" --rank 4 --seed 9 >/dev/null
code="$(curl -s -o "$TMP/up.json" -w '%{http_code}' -H "authorization: Bearer $ADMIN_TOKEN" \
    -F name=uploaded -F "adapter_config.json=@$TMP/uploaded/adapter_config.json" \
    -F "adapter_model.safetensors=@$TMP/uploaded/adapter_model.safetensors" "$URL/v1/adapters")"
if [ "$code" = 201 ]; then ok "POST /v1/adapters (multipart upload): HTTP 201"; else fail "upload: HTTP $code: $(head -c 300 "$TMP/up.json")"; fi
code="$(curl -s -o /dev/null -w '%{http_code}' -F name=x "$URL/v1/adapters")"
if [ "$code" = 401 ]; then ok "upload without the admin token: HTTP 401"; else fail "upload without token: HTTP $code"; fi
check "uploaded adapter serves" 200 POST /v1/completions '{"model": "uploaded", "prompt": "Hi", "max_tokens": 2}' "b['model'] == 'uploaded'"
curl -s -H "authorization: Bearer $ADMIN_TOKEN" "$URL/v1/adapters" >"$TMP/adapters.json"
if "$VENV/bin/python" -c "import json,sys; d={a['name']: a for a in json.load(open(sys.argv[1]))['data']}; assert d['uploaded']['tier'] == 'device' and d['ada']['pinned'], d" "$TMP/adapters.json"; then
    ok "GET /v1/adapters lists tiers and pins"
else
    fail "GET /v1/adapters: $(head -c 300 "$TMP/adapters.json")"
fi
curl -s "$URL/metrics" >"$TMP/metrics.txt"
if grep -q '^lorad_adapter_tier_hits_total{tier="device"}' "$TMP/metrics.txt" && grep -q '^lorad_store_io_backend{backend="io_uring"} 1' "$TMP/metrics.txt"; then
    ok "/metrics has tier and store metrics (io_uring in use)"
else
    fail "/metrics: $(head -c 400 "$TMP/metrics.txt")"
fi
if command -v nvidia-smi >/dev/null; then
    if grep -q '^lorad_gpu_available 1$' "$TMP/metrics.txt"; then ok "/metrics: lorad_gpu_available 1 (NVIDIA driver present)"; else fail "/metrics GPU: $(grep gpu "$TMP/metrics.txt")"; fi
elif grep -q '^lorad_gpu_available 0$' "$TMP/metrics.txt" && grep -q "no GPU: NVML is not available" "$TMP/server.log"; then
    ok "/metrics: lorad_gpu_available 0 without a driver, and the log says why"
else
    fail "/metrics GPU: $(grep gpu "$TMP/metrics.txt")"
fi
if grep -q '^lorad_requests_total{outcome="finished"} [1-9]' "$TMP/metrics.txt" \
    && grep -q '^lorad_time_to_first_token_seconds_count [1-9]' "$TMP/metrics.txt" \
    && grep -q '^lorad_request_queue_seconds_count [1-9]' "$TMP/metrics.txt" \
    && grep -q '^lorad_request_duration_seconds_count [1-9]' "$TMP/metrics.txt" \
    && grep -q '^lorad_model_requests_total{model="tuned"} [1-9]' "$TMP/metrics.txt" \
    && grep -q '^lorad_attribution_seconds_count [1-9]' "$TMP/metrics.txt"; then
    ok "/metrics counts requests, tokens, TTFT, queue and end-to-end time, per-model traffic and attribution time"
else
    fail "/metrics service metrics: $(grep -E 'lorad_(requests|time_to|model_requests|attribution_seconds_count)' "$TMP/metrics.txt" | head -8)"
fi
if grep -q '^lorad_receipts_refused_total{reason="no_verified_chain"} 3$' "$TMP/metrics.txt" && grep -q '^lorad_receipts_signed_total 0$' "$TMP/metrics.txt"; then
    ok "/metrics counts refused receipts by reason"
else
    fail "/metrics receipts: $(grep receipts "$TMP/metrics.txt")"
fi
if command -v promtool >/dev/null; then
    if promtool check metrics <"$TMP/metrics.txt"; then ok "promtool check metrics, after load"; else fail "promtool check metrics"; fi
fi
code="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "authorization: Bearer $ADMIN_TOKEN" "$URL/v1/adapters/uploaded")"
if [ "$code" = 200 ]; then ok "DELETE /v1/adapters/uploaded"; else fail "DELETE: HTTP $code"; fi
# vLLM's runtime LoRA API, as controllers written for vLLM call it.
body="$(curl -s -H "authorization: Bearer $ADMIN_TOKEN" -d "{\"lora_name\": \"rt\", \"lora_path\": \"$TMP/uploaded\"}" "$URL/v1/load_lora_adapter")"
if [ "$body" = "Success: LoRA adapter 'rt' added successfully." ]; then ok "POST /v1/load_lora_adapter"; else fail "load_lora_adapter: $body"; fi
check "adapter loaded by load_lora_adapter serves" 200 POST /v1/completions '{"model": "rt", "prompt": "Hi", "max_tokens": 2}' "b['model'] == 'rt'"
body="$(curl -s -H "authorization: Bearer $ADMIN_TOKEN" -d '{"lora_name": "rt"}' "$URL/v1/unload_lora_adapter")"
if [ "$body" = "Success: LoRA adapter 'rt' removed successfully." ]; then ok "POST /v1/unload_lora_adapter"; else fail "unload_lora_adapter: $body"; fi
check "unloaded adapter is gone" 404 POST /v1/completions '{"model": "rt", "prompt": "Hi", "max_tokens": 2}' "b['error']['code'] == 'model_not_found'"

echo "==> 429 from a second server configured with max_waiting = 0 (every request is refused)"
PORT2="$(free_port)"
# This server also runs under a stand-in for systemd's notify socket (Type=notify).
"$VENV/bin/python" - "$TMP/notify.sock" "$TMP/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as log:
    while True:
        log.write(s.recv(4096).decode() + "\n--\n")
        log.flush()
PY
PIDS+=($!)
for _ in $(seq 50); do [ -S "$TMP/notify.sock" ] && break; sleep 0.1; done
# Its limits come from a config file (flags would override them; the listen port is a flag).
# Its OpenAI routes need an API key.
printf '# e2e\nsk-e2e-0123456789abcdef\n' >"$TMP/api-keys"
printf '[server]\napi_key_file = "%s"\n[engine]\nmax_waiting = 0\nmax_batch_size = 1\nkv_cache_tokens = 1024\n' "$TMP/api-keys" >"$TMP/busy.toml"
NOTIFY_SOCKET="$TMP/notify.sock" WATCHDOG_USEC=1000000 start_server "$TMP/server2.log" --config "$TMP/busy.toml" --listen "127.0.0.1:$PORT2"
BUSY_PID=$SERVER_PID
if wait_ready "$PORT2" "$BUSY_PID" "$TMP/server2.log"; then
    SAVED_URL="$URL"
    URL="http://127.0.0.1:$PORT2"
    check "no API key" 401 POST /v1/completions "{$M, \"prompt\": \"hi\", \"max_tokens\": 2}" "b['error']['code'] == 'invalid_api_key'"
    check "metrics need no API key" 200 GET /metrics
    BEARER="sk-e2e-0123456789abcdef"
    check "queue full" 429 POST /v1/completions "{$M, \"prompt\": \"hi\", \"max_tokens\": 2}" "b['error']['code'] == 'queue_full'"
    if grep -qi '^retry-after: 1' "$TMP/resp.headers"; then ok "429 carries Retry-After: 1"; else fail "429 without Retry-After"; fi
    BEARER=""
    # The official client sends its api_key as the bearer token.
    if "$VENV/bin/python" - "$URL/v1" <<'PY'
import sys, openai
ids = [m.id for m in openai.OpenAI(base_url=sys.argv[1], api_key="sk-e2e-0123456789abcdef").models.list()]
assert ids and ids[0] == "SmolLM2-135M-Instruct", ids
try:
    openai.OpenAI(base_url=sys.argv[1], api_key="sk-wrong-0123456789abcdef").models.list()
    raise SystemExit("a wrong key was let in")
except openai.AuthenticationError:
    pass
PY
    then ok "openai client: its api_key opens /v1, a wrong one gets AuthenticationError"; else fail "openai client with an API key"; fi
    URL="$SAVED_URL"
    if grep -q "^READY=1" "$TMP/notify.log" && grep -q "^STATUS=listening on" "$TMP/notify.log" \
        && grep -q "^STATUS=loading the model" "$TMP/notify.log" && grep -q "^STATUS=starting the engine" "$TMP/notify.log"; then
        ok "sd_notify: STATUS during start-up, READY=1 once serving"
    else
        fail "sd_notify start-up messages: $(cat "$TMP/notify.log" 2>/dev/null)"
    fi
    for _ in $(seq 30); do grep -q "^WATCHDOG=1" "$TMP/notify.log" && break; sleep 0.1; done
    if grep -q "^WATCHDOG=1" "$TMP/notify.log"; then
        ok "sd_notify: WATCHDOG=1 while the scheduler answers"
    else
        fail "no WATCHDOG=1 with WATCHDOG_USEC set"
    fi
    # SIGHUP: the store is re-read and log_level from the file applies without a restart.
    { printf 'log_level = "debug"\n'; cat "$TMP/busy.toml"; } >"$TMP/busy2.toml" && mv "$TMP/busy2.toml" "$TMP/busy.toml"
    # The API key is rotated in the same reload.
    printf 'sk-e2e-rotated-0123456789\n' >"$TMP/api-keys"
    kill -HUP "$BUSY_PID"
    for _ in $(seq 50); do grep -q "reloaded on SIGHUP" "$TMP/server2.log" && break; sleep 0.1; done
    URL="http://127.0.0.1:$PORT2"
    BEARER="sk-e2e-0123456789abcdef"
    check "a key removed from the key file, after SIGHUP" 401 GET /v1/models
    BEARER="sk-e2e-rotated-0123456789"
    check "the key added to the key file, after SIGHUP" 200 GET /v1/models
    BEARER=""
    URL="$SAVED_URL"
    if grep -q 'log level reloaded log_level=debug' "$TMP/server2.log" && grep -q "reloaded on SIGHUP" "$TMP/server2.log" && kill -0 "$BUSY_PID"; then
        ok "SIGHUP reloads the store and the log level, and the server keeps running"
    else
        fail "SIGHUP: $(tail -5 "$TMP/server2.log")"
    fi
    stop_server "$BUSY_PID" "second server"
    if grep -q "^STOPPING=1" "$TMP/notify.log"; then ok "sd_notify: STOPPING=1 on SIGTERM"; else fail "no STOPPING=1: $(cat "$TMP/notify.log")"; fi
else
    fail "second server did not start"
fi

echo "==> reasoning models: a third server with reasoning_parser = \"deepseek_r1\" in its config"
# The default model never closes a <think>: to deepseek_r1 its whole answer is thinking.
PORT3="$(free_port)"
printf '[model]\nreasoning_parser = "deepseek_r1"\n' >"$TMP/reasoning.toml"
start_server "$TMP/server3.log" --config "$TMP/reasoning.toml" --listen "127.0.0.1:$PORT3"
THINK_PID=$SERVER_PID
if wait_ready "$PORT3" "$THINK_PID" "$TMP/server3.log" && "$VENV/bin/python" - "http://127.0.0.1:$PORT3/v1" <<'PY'
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
model = client.models.list().data[0].id
ask = dict(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
m = client.chat.completions.create(**ask).choices[0].message
assert m.content is None and m.model_extra["reasoning_content"], m
streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                   for c in client.chat.completions.create(**ask, stream=True) if c.choices)
assert streamed == m.model_extra["reasoning_content"], (streamed, m)
r = client.responses.create(model=model, input="Hi", max_output_tokens=4, temperature=0)
assert r.output[0].type == "reasoning" and r.output[0].content[0].text == streamed, r.output
# Sent back with the next input, the reasoning item is skipped.
again = client.responses.create(model=model, input=[*[o.model_dump(exclude_none=True) for o in r.output],
                                {"role": "user", "content": "And?"}], max_output_tokens=2)
assert again.output, again
PY
then ok "openai client: reasoning_content (whole and streamed), a reasoning item in /v1/responses, sent back"; else fail "reasoning parser with the openai client"; fi
stop_server "$THINK_PID" "reasoning server"

echo "==> another family: a tiny Phi-3 Hugging Face directory with only a SentencePiece tokenizer.model"
# Random weights (fused qkv_proj / gate_up_proj, an 8-token sliding window and LongRoPE's switch at 16 tokens,
# both of which the chat outgrows) and Mistral v3's
# tokenizer.model from the SentencePiece fixtures (scripts/spm-fixtures.sh).
SPM_MODEL="${LORAD_SPM_FIXTURES:-$SRC_HOME/fixtures/spm}/mistral-v3.model"
if [ ! -f "$SPM_MODEL" ]; then
    if [ "${CI:-}" = true ]; then fail "no SentencePiece fixture at $SPM_MODEL (run scripts/spm-fixtures.sh)"; else echo "SKIPPING the Phi-3 server: no $SPM_MODEL (run scripts/spm-fixtures.sh)"; fi
else
    mkdir -p "$TMP/phi3"
    cp "$SPM_MODEL" "$TMP/phi3/tokenizer.model"
    "$VENV/bin/python" - "$TMP/phi3" <<'PY'
import json, math, struct, sys
d = sys.argv[1]
V, H, heads, kvh, ff, L = 32768, 32, 4, 2, 64, 2
hd = H // heads
tensors, seed = {}, [0]
def add(name, shape, base, spread):
    seed[0] += 1
    n = math.prod(shape)
    tensors[name] = (shape, [base + spread * math.sin(0.37 * i + seed[0]) for i in range(n)])
add("model.embed_tokens.weight", [V, H], 0, 1.0)
add("model.norm.weight", [H], 1, 0.1)
add("lm_head.weight", [V, H], 0, 0.2)
for l in range(L):
    p = f"model.layers.{l}"
    add(f"{p}.input_layernorm.weight", [H], 1, 0.1)
    add(f"{p}.post_attention_layernorm.weight", [H], 1, 0.1)
    add(f"{p}.self_attn.qkv_proj.weight", [(heads + 2 * kvh) * hd, H], 0, 0.2)
    add(f"{p}.self_attn.o_proj.weight", [H, heads * hd], 0, 0.2)
    add(f"{p}.mlp.gate_up_proj.weight", [2 * ff, H], 0, 0.2)
    add(f"{p}.mlp.down_proj.weight", [H, ff], 0, 0.2)
header, blobs, off = {}, [], 0
for k, (shape, vals) in tensors.items():
    b = struct.pack(f"<{len(vals)}f", *vals)
    header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(f"{d}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"model_type": "phi3", "vocab_size": V, "hidden_act": "silu", "hidden_size": H,
           "intermediate_size": ff, "num_hidden_layers": L, "num_attention_heads": heads,
           "num_key_value_heads": kvh, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "max_position_embeddings": 4096, "sliding_window": 8, "tie_word_embeddings": False,
           "original_max_position_embeddings": 16,
           "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.3],
                            "long_factor": [1.0, 2.0, 4.0, 8.0]}},
          open(f"{d}/config.json", "w"))
tmpl = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}[/INST]"
        "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
json.dump({"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "chat_template": tmpl},
          open(f"{d}/tokenizer_config.json", "w"))
PY
    if lorad model info "$TMP/phi3" --json | "$VENV/bin/python" -c '
import json, sys
i = json.load(sys.stdin)
assert (i["context"], i["sliding_window"], i["sliding_layers"]) == (4096, 8, 2), i
assert i["rope_scaling"].startswith("longrope, long factors past 16 positions"), i' \
        && lorad model info "$TMP/phi3" | grep -q "4096 tokens, every layer attending within a window of 8"; then
        ok "model info: the Phi-3 directory's 8-token sliding window in both layers, LongRoPE past 16 positions, 4,096 tokens served"
    else
        fail "model info of the Phi-3 directory: $(lorad model info "$TMP/phi3" 2>&1 | head -c 600)"
    fi
    # An adapter lorad writes for a Phi-3 base sits on the fused modules, as PEFT and vLLM load it.
    if "$LORAD" --home "$HOME_DIR" adapter generate-random "$TMP/phi3-lora" --rank 4 --model "$TMP/phi3" \
            --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj >/dev/null \
        && "$VENV/bin/python" - "$TMP/phi3-lora" <<'PY'
import json, struct, sys
d = sys.argv[1]
cfg = json.load(open(f"{d}/adapter_config.json"))
assert sorted(cfg["target_modules"]) == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"], cfg
raw = open(f"{d}/adapter_model.safetensors", "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
a = header["base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight"]
assert a["shape"] == [12, 32] and cfg["r"] == cfg["lora_alpha"], (a, cfg)  # q, k, v stacked: 3 x 4
assert not any("q_proj" in k or ".up_proj" in k for k in header), sorted(header)
PY
    then
        ok "generate-random for a Phi-3 base writes its pairs on qkv_proj / gate_up_proj"
    else
        fail "Phi-3 adapter export: $(ls "$TMP/phi3-lora" 2>&1)"
    fi
    PORT4="$(free_port)"
    start_server "$TMP/server4.log" --model "$TMP/phi3" --listen "127.0.0.1:$PORT4" --attribution off
    PHI_PID=$SERVER_PID
    if wait_ready "$PORT4" "$PHI_PID" "$TMP/server4.log" && "$VENV/bin/python" - "http://127.0.0.1:$PORT4" <<'PY'
import json, sys, urllib.request, openai
base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
card = client.models.list().data[0]
assert card.id == "phi3" and card.model_extra["max_model_len"] == 4096, card  # the window is applied, not a cap
ask = dict(model="phi3", messages=[{"role": "user", "content": "Hello 🎉"}], max_tokens=12, temperature=0)
whole = client.chat.completions.create(**ask).choices[0].message.content
streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**ask, stream=True) if c.choices)
assert whole and streamed == whole, (whole, streamed)
req = urllib.request.Request(base + "/tokenize", json.dumps({"model": "phi3", "prompt": "[INST] Hi"}).encode(),
                             {"content-type": "application/json"})
tokens = json.load(urllib.request.urlopen(req))["tokens"]
assert tokens[:2] == [1, 3], tokens  # <s>, then [INST] as its one control token
PY
    then ok "a Phi-3 directory with a SentencePiece tokenizer.model serves: 8-token window over a 4,096 context, chat whole = streamed, [INST] one token"; else fail "Phi-3 / tokenizer.model server: $(tail -3 "$TMP/server4.log")"; fi
    stop_server "$PHI_PID" "Phi-3 server"
fi

echo "==> shutdown"
# A stream in flight when SIGTERM arrives is finished within the drain time, not cut.
curl -sN "$URL/v1/completions" -H 'content-type: application/json' \
    -d "{$M, \"prompt\": \"Count to fifty:\", \"max_tokens\": 48, \"stream\": true}" >"$TMP/drain.sse" &
DRAIN_CURL=$!
for _ in $(seq 100); do grep -q '"text"' "$TMP/drain.sse" 2>/dev/null && break; sleep 0.05; done
stop_server "$MAIN_PID" "server"
wait "$DRAIN_CURL" || true
if tail -c 14 "$TMP/drain.sse" | grep -q '^data: \[DONE\]$' && grep -Eq '"finish_reason":"(length|stop)"' "$TMP/drain.sse" && ! grep -q '"error"' "$TMP/drain.sse"; then
    ok "an in-flight stream completes during the drain (a finish_reason, then [DONE])"
else
    fail "drain: $(tail -c 300 "$TMP/drain.sse")"
fi
if grep -q "stopped" "$TMP/server.log"; then ok "server logged a graceful stop"; else fail "no graceful stop in the log"; fi

echo "==> settlement on a local chain (hardhat): deploy, register, serve, receipt, submit, balances"
bash scripts/contracts.sh install >/dev/null
HPORT="$(free_port)"
(cd contracts && exec node_modules/.bin/hardhat --config hardhat.config.cjs node --hostname 127.0.0.1 --port "$HPORT") >"$TMP/hardhat.log" 2>&1 &
PIDS+=($!)
RPC="http://127.0.0.1:$HPORT"
for _ in $(seq 300); do curl -s -o /dev/null "$RPC" -X POST -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' && break; sleep 0.2; done
# hardhat's first development account (a public test key): deployer, treasury, Datanet and
# adapter owner, and the requester whose escrow pays.
DEV="$TMP/dev.key"
(umask 077; echo 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 >"$DEV")
REQ=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
NODE_ADDR="$(lorad receipts key)"
curl -s -o /dev/null "$RPC" -X POST -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hardhat_setBalance\",\"params\":[\"$NODE_ADDR\",\"0x56BC75E2D63100000\"]}"
PAY_ALICE=0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
PAY_BOB=0xb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0
PAY_CAROL=0xc0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0
# "ada" is registered, then its file is swapped for a tampered copy: served != registered.
cp -r "$TMP/ada" "$TMP/ada-tampered"
"$VENV/bin/python" - "$TMP/ada-tampered/adapter_model.safetensors" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-3] ^= 0x01  # one bit of one weight
open(p, "wb").write(bytes(b))
PY
if lorad chain deploy --rpc "$RPC" --key "$DEV" >"$TMP/deploy.out" 2>&1 \
    && lorad chain transfer --rpc "$RPC" --key "$DEV" --to "$NODE_ADDR" --amount 1000 >/dev/null 2>&1 \
    && lorad chain stake --rpc "$RPC" --amount 1000 >/dev/null 2>&1 \
    && lorad chain create-datanet --rpc "$RPC" --key "$DEV" --datanet dn --payout "alice=$PAY_ALICE" --payout "bob=$PAY_BOB" --payout "carol=$PAY_CAROL" >/dev/null 2>&1 \
    && lorad chain register-adapter --rpc "$RPC" --key "$DEV" --adapter tuned --datanet dn --price-in 2 --price-out 3 >/dev/null 2>&1 \
    && lorad chain register-adapter --rpc "$RPC" --key "$DEV" --adapter ada --datanet dn --price-in 2 --price-out 3 >/dev/null 2>&1 \
    && lorad chain deposit --rpc "$RPC" --key "$DEV" --node "$NODE_ADDR" --amount 100 >/dev/null 2>&1; then
    ok "chain: deploy, stake, datanet with payouts, two adapters, escrow"
else
    fail "chain setup: $(tail -5 "$TMP/deploy.out")"
fi
lorad chain status --rpc "$RPC" >"$TMP/status.json" 2>/dev/null
if "$VENV/bin/python" -c "import json,sys; s=json.load(open(sys.argv[1])); assert s['staked'] and s['stake'] == str(1000 * 10**18), s" "$TMP/status.json"; then
    ok "chain status: the node is staked"
else
    fail "chain status: $(cat "$TMP/status.json")"
fi
lorad adapter rm ada >/dev/null && lorad adapter import "$TMP/ada-tampered" --name ada >/dev/null
expect_exit 64 "--l2-rpc without the light client or --l2-trust-rpc-head" lorad serve --listen "127.0.0.1:$(free_port)" --deployment "$HOME_DIR/deployment.json" --l2-rpc "$RPC"
PORT3="$(free_port)"
start_server "$TMP/server3.log" --listen "127.0.0.1:$PORT3" --kv-cache-tokens 2048 \
    --deployment "$HOME_DIR/deployment.json" --l2-rpc "$RPC" --l2-trust-rpc-head
SETTLE_PID=$SERVER_PID
if wait_ready "$PORT3" "$SETTLE_PID" "$TMP/server3.log"; then
    URL="http://127.0.0.1:$PORT3"
    check "registered adapter: signed receipt with attribution" 200 POST /v1/chat/completions \
        "{\"model\": \"tuned\", \"user\": \"$REQ\", \"messages\": [{\"role\": \"user\", \"content\": \"When do I sow garlic?\"}], \"max_tokens\": 6, \"temperature\": 0}" \
        "b['receipt'] and b['receipt']['node'].lower() == '$NODE_ADDR'.lower() and b['receipt']['requester'].lower() == '$REQ'.lower() and sum(s['bps'] for s in b['receipt']['shares']) == 10000 and 'receipt_refused' not in b"
    cp "$TMP/resp.body" "$TMP/receipted.json"
    JOB="$("$VENV/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['receipt']['jobId'])" "$TMP/receipted.json" 2>/dev/null)"
    check "GET /v1/receipts/{job_id}" 200 GET "/v1/receipts/$JOB" "" "b['jobId'] == '$JOB' and b['signature']"
    curl -sN "$URL/v1/chat/completions" -H 'content-type: application/json' \
        -d "{\"model\": \"tuned\", \"user\": \"$REQ\", \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"Copper?\"}], \"max_tokens\": 4, \"temperature\": 0}" >"$TMP/stream.sse"
    if "$VENV/bin/python" - "$TMP/stream.sse" "$TMP/receipted2.json" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().splitlines() if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
final = [c for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
assert len(final) == 1 and final[0]["receipt"]["jobId"] and final[0]["attribution"], final
assert all("receipt" not in c for c in chunks if c is not final[0]), "receipt only on the final chunk"
json.dump(final[0], open(sys.argv[2], "w"))
PY
    then ok "streamed answer: the final chunk carries the signed receipt"; else fail "streamed receipt: $(tail -c 400 "$TMP/stream.sse")"; fi
    check "tampered adapter file: receipt null" 200 POST /v1/completions \
        "{\"model\": \"ada\", \"user\": \"$REQ\", \"prompt\": \"Hi\", \"max_tokens\": 2}" \
        "b['receipt'] is None and b['receipt_refused']['code'] == 'adapter_hash_mismatch'"
    stop_server "$SETTLE_PID" "settlement server"
    if lorad receipts export 2>/dev/null | grep -c jobId | grep -qx 2; then ok "the journal holds exactly the two receipts"; else fail "receipts export: $(lorad receipts export 2>&1 | tail -3)"; fi
    if lorad receipts submit --rpc "$RPC" >"$TMP/submit.json" 2>"$TMP/submit.err" \
        && "$VENV/bin/python" -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['submitted'] == 2 and r['batches'] == 1, r" "$TMP/submit.json"; then
        ok "receipts submit settles both receipts"
    else
        fail "receipts submit: $(cat "$TMP/submit.json" "$TMP/submit.err" | tail -5)"
    fi
    if lorad receipts submit --rpc "$RPC" >"$TMP/submit2.json" 2>/dev/null \
        && "$VENV/bin/python" -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['submitted'] == 0 and r['known_settled'] == 2, r" "$TMP/submit2.json"; then
        ok "a second submit sends nothing"
    else
        fail "second submit: $(cat "$TMP/submit2.json")"
    fi
    # Each contributor's credit is pool · bps / 10000, pool = 40 % of the fee (2 and 3 OPEN per 1k tokens).
    for who in alice bob carol; do
        eval "addr=\$PAY_$(echo "$who" | tr a-z A-Z)"
        lorad chain status --rpc "$RPC" --address "$addr" >"$TMP/st-$who.json" 2>/dev/null
        if "$VENV/bin/python" - "$TMP/st-$who.json" "$who" "$TMP/receipted.json" "$TMP/receipted2.json" <<'PY'
import json, sys
status, who = json.load(open(sys.argv[1])), sys.argv[2]
expected = 0
for path in sys.argv[3:]:
    answer = json.load(open(path))
    r = answer["receipt"]
    fee = (r["tokensIn"] * 2 * 10**18 + r["tokensOut"] * 3 * 10**18) // 1000
    pool = fee * 4000 // 10000
    bps = {c["contributor"]: c["weight_bps"] for c in answer["attribution"]["contributors"]}
    assert sum(bps.values()) == 10000, bps
    expected += pool * bps.get(who, 0) // 10000
assert int(status["claimable"]) == expected, (who, status["claimable"], expected)
PY
        then ok "$who's credit is the documented share of the fee, to the wei"; else fail "$who's credit"; fi
    done
else
    fail "settlement server did not start: $(tail -5 "$TMP/server3.log")"
fi

echo
echo "e2e: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
