#!/usr/bin/env bash
# The GPU benchmark, side by side with PyTorch's fastest dense attention in the same run.
#
#   benches/gpu.sh pack     # here: builds the CUDA bench (crates/core/examples/kernel_bench.rs),
#                           # strips and xz-packs it with torch_attention.py into .gpu/
#   benches/gpu.sh run      # on the GPU machine, from the repository root (.gpu/ carried):
#                           # PyTorch's decode and prefill anchors, then our decode and prefill
#                           # tables; outputs in $OUT (or gpu-out/) and on the terminal
#
# Extra arguments of `run` go to every kernel_bench call (for example --contexts 32768).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
shift || true
case "$mode" in
  pack)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-cuda}"
    cargo build --release -p burn-sparse-attn-core --features cuda --example kernel_bench
    mkdir -p .gpu
    strip -o .gpu/kernel_bench "$CARGO_TARGET_DIR/release/examples/kernel_bench"
    xz -f -T2 .gpu/kernel_bench
    cp ../shared/anchors/torch_attention.py .gpu/
    ls -la .gpu
    ;;
  run)
    out="${OUT:-gpu-out}"
    mkdir -p "$out"
    [ -f .gpu/kernel_bench ] || xz -dk .gpu/kernel_bench.xz
    chmod +x .gpu/kernel_bench
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    python3 .gpu/torch_attention.py decode --batch 1,8 --kv-heads 8,32 --context 8192,32768,131072 \
      | tee "$out/torch_decode.jsonl"
    python3 .gpu/torch_attention.py prefill --kv-heads 8 --context 8192,32768,131072 \
      | tee "$out/torch_prefill.jsonl"
    .gpu/kernel_bench --no-prefill "$@" | tee "$out/decode.txt"
    .gpu/kernel_bench --no-decode --prefill 8192,32768,131072 "$@" | tee "$out/prefill.txt"
    ;;
  *)
    echo "usage: benches/gpu.sh pack | run [kernel_bench options]" >&2
    exit 2
    ;;
esac
