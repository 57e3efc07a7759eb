#!/usr/bin/env bash
# lorad's CUDA build without a GPU, and its checks on one.
#
#   check   (CI; no GPU) installs CUDA 13.0's compiler from pinned PyPI wheels and type-checks
#           the whole workspace with `--features cuda`. That compiles candle's CUDA kernels to
#           PTX too, so a CUDA-only break shows up before any GPU machine runs it.
#   kit     (here; no GPU) builds the CUDA test binaries, `lorad` and `lorad-bench` in release
#           and packs them, with the default model, into .gpu/ (git-ignored). The GPU machines
#           have the driver and CUDA's libraries but no Rust toolchain, so the binaries travel.
#           candle links CUDA's libraries at build time; they are linked here against stub
#           libraries generated from cudarc's declarations (same sonames), and the real ones are
#           found on the GPU machine at run time.
#   device  (on the GPU machine, from a checkout holding .gpu/) runs the CUDA tests, the decode
#           benchmark on the GPU and a `lorad serve` /metrics capture; logs go to $OUT (or
#           .gpu/out). `promtool check metrics` then runs here on the fetched capture.
#
# Environment: LORAD_CUDA_ROOT (wheel install dir, default ~/.cache/lorad/cuda-13.0),
# CUDA_COMPUTE_CAP (default 90: H100/H200), CARGO_TARGET_DIR (as for cargo).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cuda_root=${LORAD_CUDA_ROOT:-$HOME/.cache/lorad/cuda-13.0}
cu=$cuda_root/nvidia/cu13
kit=$root/.gpu

say() { printf 'cuda.sh: %s\n' "$*" >&2; }

toolkit() {
    if [ ! -x "$cu/bin/nvcc" ]; then
        say "installing CUDA 13.0's compiler (PyPI wheels) into $cuda_root"
        command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++ >/dev/null; }
        python3 -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
            --target "$cuda_root" -r "$root/scripts/cuda-requirements.txt"
    fi
    export PATH="$cu/bin:$PATH" CUDA_HOME="$cu"
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    nvcc --version | tail -1 >&2
}

# Stub libraries (every function cudarc declares, each an empty body) under $cu/lib/stubs, where
# cudarc's build script looks for link-time libraries. Never shipped: only their sonames end up in
# the binaries.
stubs() {
    local src out=$cu/lib/stubs
    src=$(cargo metadata --format-version 1 --all-features --manifest-path "$root/Cargo.toml" |
        python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
    mkdir -p "$out"
    local spec lib module soname
    for spec in cuda:driver:libcuda.so.1 cublas:cublas:libcublas.so.13 \
        cublasLt:cublaslt:libcublasLt.so.13 curand:curand:libcurand.so.10 nvrtc:nvrtc:libnvrtc.so.13; do
        IFS=: read -r lib module soname <<<"$spec"
        grep -hoE 'pub unsafe fn [A-Za-z_][A-Za-z0-9_]*\(' "$src/src/$module/sys/mod.rs" |
            sed 's/pub unsafe fn //; s/($/(void) {}/; s/^/void /' | sort -u >"$out/$lib.c"
        cc -shared -fPIC -o "$out/lib$lib.so" -Wl,-soname,"$soname" "$out/$lib.c"
    done
    # candle's MoE kernels link the CUDA runtime, which the wheels ship only under its soname.
    ln -sf ../libcudart.so.13 "$out/libcudart.so"
}

check() {
    toolkit
    cd "$root"
    cargo check --workspace --all-targets --features cuda
}

kit() {
    toolkit
    stubs
    cd "$root"
    local target=${CARGO_TARGET_DIR:-$root/target}
    rm -rf "$kit/bin" && mkdir -p "$kit/bin"
    say "building the CUDA test binaries (release)"
    cargo test --release --features cuda --no-run -p lorad-kernels -p lorad-engine \
        --message-format=json-render-diagnostics >"$kit/tests.json"
    python3 - "$kit/tests.json" "$kit/bin" <<'PY'
import json, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for line in open(src):
    m = json.loads(line)
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["profile"]["test"]:
        name = m["target"]["name"]
        shutil.copy(exe, f"{dst}/test-{m['package_id'].split('#')[0].rsplit('/', 1)[-1]}-{name}")
PY
    rm "$kit/tests.json"
    say "building lorad and lorad-bench (release)"
    cargo build --release --features cuda -p lorad --bin lorad -p lorad-bench --bin lorad-bench
    cp "$target/release/lorad" "$target/release/lorad-bench" "$kit/bin/"
    strip "$kit/bin/"*
    # The binaries share most of their bytes (candle, its PTX): a dictionary larger than all of
    # them lets xz store those once (about 16 MB instead of 65 MB with xz's default window).
    tar -C "$kit" -cf - bin | xz -T1 --lzma2=preset=6,dict=512MiB >"$kit/bin.tar.xz"
    rm -rf "$kit/bin"
    local model
    model=$(python3 -c 'import sys; print(sys.argv[1])' "${LORAD_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/lorad}")/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
    [ -f "$model" ] || { say "no model at $model: run \`lorad model fetch\` first"; exit 1; }
    rm -f "$kit"/model.part*
    split -b 40M -d "$model" "$kit/model.part"
    ls -la "$kit" >&2
    say "carry .gpu/bin.tar.xz and .gpu/model.part00 in one run, .gpu/model.part01 and part02 in the next; see docs/gpu.md"
}

device() {
    local out=${OUT:-$kit/out}
    mkdir -p "$out"
    local home=/tmp/lorad-home
    local dir=$home/models/smollm2-135m-instruct
    mkdir -p "$dir" /tmp/lorad-kit
    cat "$kit"/model.part* >"$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $dir/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c
    tar -C /tmp/lorad-kit -xJf "$kit/bin.tar.xz"
    local bin=/tmp/lorad-kit/bin
    # CUDA's libraries: the driver's, then wherever the machine keeps cuBLAS, cuRAND and NVRTC.
    local libdirs=""
    local want
    for want in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
        local found
        found=$(find /usr/local/nvidia /usr/lib /usr/local /opt -name "$want" 2>/dev/null | head -1 || true)
        [ -n "$found" ] || { echo "missing $want" | tee -a "$out/summary.txt"; continue; }
        libdirs="$libdirs:$(dirname "$found")"
    done
    export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LORAD_HOME=$home LORAD_TEST_DEVICE=cuda CI=true
    { nvidia-smi -L; nvidia-smi --query-gpu=driver_version,memory.total --format=csv; } >"$out/summary.txt" 2>&1 || true
    local t status=0
    for t in "$bin"/test-*; do
        echo "== $(basename "$t")" >>"$out/tests.log"
        if "$t" --test-threads=1 >>"$out/tests.log" 2>&1; then
            echo "PASS $(basename "$t")" >>"$out/summary.txt"
        else
            echo "FAIL $(basename "$t")" >>"$out/summary.txt"
            status=1
        fi
    done
    local b
    for b in "32 --saved-dtype f32" "32 --saved-dtype bf16" "100 --saved-dtype bf16"; do
        # shellcheck disable=SC2086
        "$bin/lorad-bench" --out "$out/bench" decode --device cuda --requests $b --repeats 3 \
            >>"$out/bench.log" 2>&1 || { echo "FAIL bench decode $b" >>"$out/summary.txt"; status=1; }
    done
    grep -h 'b/a' "$out/bench/"*.md >>"$out/summary.txt" 2>/dev/null || true
    "$bin/lorad" serve --listen 127.0.0.1:18080 >"$out/serve.log" 2>&1 &
    local pid=$! i
    for i in $(seq 1 120); do
        curl -sf http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
        sleep 1
    done
    curl -sf http://127.0.0.1:18080/metrics >"$out/metrics-idle.txt" || status=1
    curl -sf http://127.0.0.1:18080/v1/chat/completions -H 'content-type: application/json' \
        -d '{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24,"temperature":0}' \
        >>"$out/summary.txt" || status=1
    curl -sf http://127.0.0.1:18080/metrics >"$out/metrics-load.txt" || status=1
    kill "$pid"; wait "$pid" || true
    grep -E '^lorad_gpu_' "$out/metrics-load.txt" | head -20 >>"$out/summary.txt" || true
    cat "$out/summary.txt"
    return $status
}

case "${1:-}" in
    check) check ;;
    kit) kit ;;
    device) device ;;
    *) echo "usage: scripts/cuda.sh check|kit|device" >&2; exit 64 ;;
esac
