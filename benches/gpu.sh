#!/usr/bin/env bash
# The GPU benchmark, side by side with PyTorch's fastest dense attention in the same run.
#
#   benches/gpu.sh pack     # here: builds the CUDA bench (crates/core/examples/kernel_bench.rs),
#                           # strips and xz-packs it with torch_attention.py into .gpu/
#   benches/gpu.sh run      # on the GPU machine, from the repository root (.gpu/ carried):
#                           # PyTorch's decode and prefill anchors, then our decode and prefill
#                           # tables; outputs in $OUT (or gpu-out/) and on the terminal
#   benches/gpu.sh pack-wgpu  # here: the bench and the kernel tests for wgpu, WGSL and SPIR-V
#                           # (feature `vulkan`), and the Vulkan loader's packages, into .gpu/
#   benches/gpu.sh run-wgpu   # there: the wgpu kernel tests under both compilers, then the
#                           # PyTorch anchors and the tables of every packed bench (CUDA too
#                           # when `pack` ran): one run, one machine
#
# Extra arguments of `run` / `run-wgpu` go to every kernel_bench call (for example
# --contexts 32768). `run-wgpu` takes STEPS (default "tests anchors benches") and BENCHES
# (default "kernel_bench kernel_bench_wgpu kernel_bench_vulkan") to split it over calls, and
# BENCH_LIMIT (seconds per bench process, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
shift || true
# The folder that travels to the GPU machine (ignored by git).
dir="${GPU_DIR:-.gpu}"
# PyTorch's fastest dense attention for the bench's shapes, into $1.
anchors() {
  python3 "$dir"/torch_attention.py decode --batch 1,8 --kv-heads 8,32 --context 8192,32768,131072 \
    | tee "$1/torch_decode.jsonl"
  python3 "$dir"/torch_attention.py prefill --kv-heads 8 --context 8192,32768,131072 \
    | tee "$1/torch_prefill.jsonl"
}
case "$mode" in
  pack)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-cuda}"
    cargo build --release -p burn-sparse-attn-core --features cuda --example kernel_bench
    mkdir -p "$dir"
    strip -o "$dir"/kernel_bench "$CARGO_TARGET_DIR/release/examples/kernel_bench"
    xz -f -T2 "$dir"/kernel_bench
    cp ../shared/anchors/torch_attention.py "$dir"/
    ls -la "$dir"
    ;;
  run)
    out="${OUT:-gpu-out}"
    mkdir -p "$out"
    [ -f "$dir"/kernel_bench ] || xz -dk "$dir"/kernel_bench.xz
    chmod +x "$dir"/kernel_bench
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    anchors "$out"
    "$dir"/kernel_bench --no-prefill "$@" | tee "$out/decode.txt"
    "$dir"/kernel_bench --no-decode --prefill 8192,32768,131072 "$@" | tee "$out/prefill.txt"
    ;;
  pack-wgpu)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$dir"
    for features in wgpu vulkan; do
      cargo build --release -p burn-sparse-attn-core --features "$features" --example kernel_bench
      strip -o "$dir/kernel_bench_$features" "$CARGO_TARGET_DIR/release/examples/kernel_bench"
      xz -f -T2 "$dir/kernel_bench_$features"
    done
    # The kernel tests: `wgpu` is on in every test build (WGSL); `vulkan` adds SPIR-V and
    # the half-precision tests.
    for features in wgpu vulkan; do
      binary=$(cargo test -p burn-sparse-attn --features "$features" --test integration --no-run 2>&1 \
        | grep -o "$CARGO_TARGET_DIR/debug/deps/integration-[0-9a-f]*" | tail -1)
      strip -o "$dir/integration_$features" "$binary"
      xz -f -T2 "$dir/integration_$features"
    done
    scripts/vulkan_loader.sh fetch "$dir"/vulkan-debs
    cp ../shared/anchors/torch_attention.py "$dir"/
    ls -la "$dir"
    ;;
  run-wgpu)
    out="${OUT:-gpu-out}"
    mkdir -p "$out"
    eval "$(scripts/vulkan_loader.sh use "$dir"/vulkan-debs)"
    for f in "$dir"/*.xz; do [ ! -f "$f" ] || [ -f "${f%.xz}" ] || xz -dk "$f"; done
    chmod +x "$dir"/kernel_bench* "$dir"/integration_* 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    steps="${STEPS:-tests anchors benches}"
    [[ " $steps " == *" tests "* ]] && for features in wgpu vulkan; do
      binary="$dir/integration_$features"
      for t in $("$binary" --list 2>/dev/null | grep -E '^[a-z_:]*(wgpu|vulkan)' | sed 's/: test$//'); do
        if timeout 300 "$binary" --exact "$t" > /tmp/test.log 2>&1; then echo "PASS $features $t"
        else echo "FAIL $features $t"; grep -v "^\s*[0-9]*:" /tmp/test.log | tail -25; fi
      done
    done > "$out/wgpu_tests.txt" 2>&1
    [[ " $steps " == *" tests "* ]] \
      && echo "$(grep -c ^PASS "$out/wgpu_tests.txt") passed, $(grep -c ^FAIL "$out/wgpu_tests.txt") failed"
    [[ " $steps " == *" anchors "* ]] && anchors "$out" > /dev/null
    [[ " $steps " == *" benches "* ]] || exit 0
    # One process per shape: under wgpu a shape whose tensors reach 2 GiB cannot be
    # allocated, and the failure takes only its own rows with it.
    for name in ${BENCHES:-kernel_bench kernel_bench_wgpu kernel_bench_vulkan}; do
      bench="$dir/$name"
      [ -x "$bench" ] || continue
      for batch in 1 8; do for kv in 8 32; do for t in 8192 32768 131072; do
        echo "== $name decode batch $batch, $kv KV heads, $t" >> "$out/decode_$name.txt"
        timeout "${BENCH_LIMIT:-300}" "$bench" --no-prefill --batches $batch --kv-heads $kv --contexts $t "$@" \
          >> "$out/decode_$name.txt" 2>&1 || echo "failed" >> "$out/decode_$name.txt"
      done; done; done
      for t in 8192 32768 131072; do
        echo "== $name prefill $t" >> "$out/prefill_$name.txt"
        timeout "${BENCH_LIMIT:-300}" "$bench" --no-decode --no-burn-attention --prefill $t "$@" \
          >> "$out/prefill_$name.txt" 2>&1 || echo "failed" >> "$out/prefill_$name.txt"
      done
      grep -E "^(==|T[0-9]+K (dense|HiP: mask \+)|b[0-9]+ kv[0-9]+ T[0-9]+K hash end-to-end \(per)|failed" \
        "$out/decode_$name.txt" "$out/prefill_$name.txt" | cut -c1-110
    done
    ;;
  *)
    echo "usage: benches/gpu.sh pack | run | pack-wgpu | run-wgpu [kernel_bench options]" >&2
    exit 2
    ;;
esac
