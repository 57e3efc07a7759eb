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
#   probe   (on the GPU machine, in the call that carries the binaries) runs the CUDA tests that
#           need no model: page-locked uploads and the kernels' CUDA twins.
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

# Stub libraries under $cu/lib/stubs, where cudarc's build script looks for link-time libraries:
# every function cudarc declares, each failing (status 100, CUDA_ERROR_NO_DEVICE for the driver),
# so a binary that meets them at run time (the `device --rehearse` run here) reports "no GPU"
# instead of running on garbage. Never shipped: only their sonames end up in the binaries.
stubs() {
    local src out=$cu/lib/stubs
    src=$(cargo metadata --format-version 1 --all-features --manifest-path "$root/Cargo.toml" |
        python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
    mkdir -p "$out"
    local spec lib module soname
    for spec in cuda:driver:libcuda.so.1 cublas:cublas:libcublas.so.13 \
        cublasLt:cublaslt:libcublasLt.so.13 curand:curand:libcurand.so.10 nvrtc:nvrtc:libnvrtc.so.13; do
        IFS=: read -r lib module soname <<<"$spec"
        python3 - "$src/src/$module/sys/mod.rs" >"$out/$lib.c" <<'PY_STUB'
import re, sys
decl = re.compile(r"pub unsafe fn ([A-Za-z_]\w*)\((?:[^()]|\([^()]*\))*\)\s*->\s*([^{;]+?)\s*[{;]", re.S)
body = {"c_char": 'const char *{}(void) {{ return "no CUDA library (lorad link stub)"; }}',
        "usize": "unsigned long {}(void) {{ return 0; }}"}
seen = {}
for name, ret in decl.findall(open(sys.argv[1]).read()):
    if name in ("is_culib_present", "culib") or name in seen:
        continue
    kind = "c_char" if "c_char" in ret else "usize" if ret.strip() == "usize" else "status"
    seen[name] = body.get(kind, "int {}(void) {{ return 100; }}").format(name)
print("\n".join(seen[n] for n in sorted(seen)))
PY_STUB
        cc -shared -fPIC -o "$out/lib$lib.so" -Wl,-soname,"$soname" "$out/$lib.c"
        ln -sf "lib$lib.so" "$out/$soname"
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
    rm -rf "$kit/bin" && mkdir -p "$kit/bin"
    # One cargo invocation for the tests and the binaries: features are unified per invocation,
    # and the binaries' dependencies turn on features (serde's `rc`, bytemuck's allocator, ...)
    # that the kernels' and engine's tests alone do not, so two invocations built nearly the
    # whole graph twice. `--tests` adds the daemon's and bench's test targets, which cost less.
    say "building lorad, lorad-bench and the CUDA test binaries (release)"
    cargo build --release --features cuda -p lorad-kernels -p lorad-engine -p lorad -p lorad-bench \
        --bins --tests --message-format=json-render-diagnostics >"$kit/build.json"
    python3 - "$kit/build.json" "$kit/bin" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
bins, tests = {"lorad", "lorad-bench"}, {"kernels", "engine"}
for line in open(src):
    m = json.loads(line)
    exe = m.get("executable")
    if m.get("reason") != "compiler-artifact" or not exe:
        continue
    name, crate = m["target"]["name"], m["package_id"].split("#")[0].rsplit("/", 1)[-1]
    if m["profile"]["test"]:
        if crate in tests:
            shutil.copy(exe, f"{dst}/test-{crate}-{name}")
    elif name in bins and "bin" in m["target"]["kind"]:
        shutil.copy(exe, f"{dst}/{name}")
missing = sorted(b for b in bins if not os.path.exists(f"{dst}/{b}"))
if missing:
    sys.exit(f"cuda.sh: cargo built no {', '.join(missing)}")
PY
    rm "$kit/build.json"
    strip "$kit/bin/"*
    # The binaries share most of their bytes (candle, its PTX): a dictionary larger than all of
    # them lets xz store those once (16 to 21 MB instead of 65 MB with xz's default window).
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

# Runs one step of `device`: within its own limit and what is left of the run's deadline (a
# step that no longer fits is skipped, so the summary still comes back), logging to `log` and
# one PASS/FAIL/SKIP line with its duration to the summary.
step() {
    local name=$1 limit=$2 log=$3 t0=$SECONDS rc=0
    shift 3
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "SKIP $name (the run's ${LORAD_DEVICE_SECS:-480} s are spent)" >>"$summary"
        return 1
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== $name" >>"$log"
    if declare -F "$1" >/dev/null; then
        "$@" >>"$log" 2>&1 || rc=$? # a function of this script: it bounds its own waits
    else
        timeout "$limit" "$@" >>"$log" 2>&1 || rc=$?
    fi
    local verdict=PASS
    [ "$rc" = 0 ] || verdict="FAIL (rc $rc$([ "$rc" = 124 ] && echo ", over ${limit}s"))"
    echo "$verdict $name [$((SECONDS - t0)) s]" >>"$summary"
    return "$rc"
}

# `lorad serve` on the device: the default model's answer to the France question, and /metrics
# idle and while 16 long requests decode (so the GPU gauges are read under load).
serve_checks() {
    local out=$1 bin=$2 load_tokens=$3 status=0 i
    local api=http://127.0.0.1:18080
    "$bin/lorad" serve --device "$dev" --listen 127.0.0.1:18080 >"$out/serve.log" 2>&1 &
    local pid=$!
    for i in $(seq 1 120); do
        curl -sf "$api/readyz" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    grep -E 'loading model|model loaded' "$out/serve.log" >>"$summary" || true
    curl -sf -m 30 "$api/metrics" >"$out/metrics-idle.txt" || status=1
    local ask='{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24,"temperature":0}'
    if curl -sf -m 120 "$api/v1/chat/completions" -H 'content-type: application/json' -d "$ask" | tee /dev/stderr | grep -q Paris; then
        echo "PASS serve: the greedy answer names Paris" >>"$summary"
    else
        echo "FAIL serve: the greedy answer does not name Paris" >>"$summary"
        status=1
    fi
    local load='{"model":"SmolLM2-135M-Instruct","prompt":"Once upon a time","max_tokens":'"$load_tokens"',"temperature":0.8,"seed":7}'
    local clients=()
    for i in $(seq 1 16); do
        curl -sf -m 300 "$api/v1/completions" -H 'content-type: application/json' -d "$load" >/dev/null &
        clients+=($!)
    done
    sleep 2
    curl -sf -m 30 "$api/metrics" >"$out/metrics-load.txt" || status=1
    wait "${clients[@]}" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" || true
    grep -E '^lorad_(gpu_available|gpu_utilization|gpu_memory_used|engine_device|requests_running|store_pinned)' \
        "$out/metrics-load.txt" >>"$summary" || true
    return $status
}

# Where the kit's binaries run: unpacks them (once per machine) and finds the driver and CUDA's
# libraries for LD_LIBRARY_PATH. Sets `bin`, `out` and `summary`, and the deadline.
setup() {
    local libs=$1
    deadline=$((SECONDS + ${LORAD_DEVICE_SECS:-480}))
    out=${OUT:-$kit/out}
    mkdir -p "$out" /tmp/lorad-kit
    summary=$out/summary.txt
    : >"$summary"
    bin=/tmp/lorad-kit/bin
    if [ -f "$kit/bin.tar.xz" ] && [ "$kit/bin.tar.xz" -nt /tmp/lorad-kit/unpacked ]; then
        rm -rf "$bin"
        tar -C /tmp/lorad-kit -xJf "$kit/bin.tar.xz"
        touch /tmp/lorad-kit/unpacked
    fi
    [ -x "$bin/lorad" ] || { echo "FAIL kit: no .gpu/bin.tar.xz here (carry it)" | tee -a "$summary"; return 1; }
    # CUDA's libraries: the driver's, then wherever the machine keeps cuBLAS, cuRAND and the
    # runtime (on the lent machines: the CUDA image's Python wheels under /opt).
    local libdirs="" want found
    for want in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
        # shellcheck disable=SC2086
        found=$(find $libs /usr/local/nvidia /usr/lib /usr/local /opt -name "$want" 2>/dev/null | head -1 || true)
        [ -n "$found" ] || { echo "missing $want" >>"$summary"; continue; }
        echo "found $found" >>"$summary"
        libdirs="$libdirs:$(dirname "$found")"
    done
    export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LORAD_TEST_DEVICE=$dev CI=true RUST_BACKTRACE=1
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$summary" 2>&1 || true
    fi
}

# The test binaries that need no model: page-locked uploads and the kernels' CUDA twins.
MODEL_FREE=(test-engine-upload test-kernels-kernels test-kernels-lorad_kernels)

# `probe` on the GPU machine, in the call that carries .gpu/bin.tar.xz (and model.part00): the
# steps that need no model, so that call settles something even if the next one finds a fresh
# machine without the kit (a machine goes back after 30 s idle).
probe() {
    dev=cuda
    local libs="${LORAD_KIT_LIBS:-}" status=0 t
    if [ "${1:-}" = --rehearse ]; then dev=cpu libs="$cu/lib/stubs $cu/lib $libs"; fi
    setup "$libs" || return 1
    for t in "${MODEL_FREE[@]}"; do
        step "$t" 120 "$out/tests.log" "$bin/$t" --test-threads=1 || status=1
    done
    echo "probe: $SECONDS s in all" >>"$summary"
    cat "$summary"
    return $status
}

# `device` on the GPU machine; `device --rehearse` here, on the CPU, with the kit's CUDA
# binaries against the failing stubs: the same steps with smaller benchmarks, so a broken step
# shows up before it costs device time. Steps run in order of what they settle (serve and
# metrics, the page-locked upload test, the GPU equivalence tests, the benchmarks, the rest),
# each timed; the run stops starting steps after $LORAD_DEVICE_SECS (default 480) seconds.
device() {
    dev=cuda
    local libs="${LORAD_KIT_LIBS:-}" load_tokens=400 sizes="--repeats 3" prefix_sizes="" structured_sizes=""
    local priority_sizes="" fairness_sizes="" speculative_sizes=""
    local requests=("32 --saved-dtype f32" "32 --saved-dtype bf16" "100 --saved-dtype bf16")
    if [ "${1:-}" = --rehearse ]; then
        dev=cpu libs="$cu/lib/stubs $cu/lib $libs" load_tokens=24
        requests=("8 --saved-dtype bf16") sizes="--repeats 1 --max-tokens 8 --merge-requests 1"
        prefix_sizes="--requests 2 --system-tokens 64"
        structured_sizes="--requests 2 --max-tokens 16 --rounds 1"
        priority_sizes="--slots 1 --background 2 --background-tokens 8 --interactive 1 --interactive-tokens 2 --rounds 1"
        fairness_sizes="--slots 1 --burst 2 --burst-tokens 8 --light 1 --light-tokens 2 --rounds 1"
        speculative_sizes="--requests 2 --max-tokens 8 --rounds 1"
    fi
    setup "$libs" || return 1
    local home=/tmp/lorad-home
    local dir=$home/models/smollm2-135m-instruct
    mkdir -p "$dir"
    export LORAD_HOME=$home
    local status=0 t b
    # The model travels in parts over two calls; without all of them only the model-free
    # steps can run (a fresh machine came between the calls: carry part00 again).
    if cat "$kit"/model.part0{0,1,2} >"$dir/SmolLM2-135M-Instruct.Q4_1.gguf" 2>>"$summary" &&
        echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $dir/SmolLM2-135M-Instruct.Q4_1.gguf" |
        sha256sum -c >>"$summary" 2>&1; then
        step "serve: France and /metrics" 180 "$out/serve-checks.log" serve_checks "$out" "$bin" "$load_tokens" || status=1
    else
        echo "FAIL model: .gpu/model.part00..02 are not all here or do not match (carry them); model-free steps only" >>"$summary"
        for t in "${MODEL_FREE[@]}"; do
            step "$t" 300 "$out/tests.log" "$bin/$t" --test-threads=1 || status=1
        done
        cat "$summary"
        return 1
    fi
    local first=(test-engine-upload test-kernels-kernels test-engine-equivalence test-engine-reference test-engine-serving)
    for t in "${first[@]}"; do
        step "$t" 300 "$out/tests.log" "$bin/$t" --test-threads=1 || status=1
    done
    for b in "${requests[@]}"; do
        # shellcheck disable=SC2086
        step "bench decode --requests $b" 180 "$out/bench.log" \
            "$bin/lorad-bench" --out "$out/bench" decode --device "$dev" --requests $b $sizes || status=1
    done
    # shellcheck disable=SC2086
    step "bench prefix" 120 "$out/bench.log" \
        "$bin/lorad-bench" --out "$out/bench" prefix --device "$dev" $prefix_sizes || status=1
    # shellcheck disable=SC2086
    step "bench structured" 120 "$out/bench.log" \
        "$bin/lorad-bench" --out "$out/bench" structured --device "$dev" $structured_sizes || status=1
    # shellcheck disable=SC2086
    step "bench priority" 90 "$out/bench.log" \
        "$bin/lorad-bench" --out "$out/bench" priority --device "$dev" $priority_sizes || status=1
    # shellcheck disable=SC2086
    step "bench fairness" 90 "$out/bench.log" \
        "$bin/lorad-bench" --out "$out/bench" fairness --device "$dev" $fairness_sizes || status=1
    # shellcheck disable=SC2086
    step "bench speculative" 120 "$out/bench.log" \
        "$bin/lorad-bench" --out "$out/bench" speculative --device "$dev" $speculative_sizes || status=1
    grep -h 'b/a\|off/on\|a/b' "$out/bench/"*.md >>"$summary" 2>/dev/null || true
    for t in "$bin"/test-*; do
        [[ " ${first[*]} " == *" $(basename "$t") "* ]] && continue
        step "$(basename "$t")" 300 "$out/tests.log" "$t" --test-threads=1 || status=1
    done
    echo "device: $SECONDS s in all" >>"$summary"
    cat "$summary"
    return $status
}

case "${1:-}" in
    check) check ;;
    stubs) toolkit; stubs ;;
    kit) kit ;;
    probe) shift; probe "$@" ;;
    device) shift; device "$@" ;;
    *) echo "usage: scripts/cuda.sh check|kit|probe|device [--rehearse]" >&2; exit 64 ;;
esac
