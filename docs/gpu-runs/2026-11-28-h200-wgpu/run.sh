#!/usr/bin/env bash
# Issue 19: the wgpu decode tables one configuration per process (wgpu cannot allocate a
# buffer of 2 GiB or more: a failing configuration loses only itself), then the prefill
# tables on CUDA, wgpu SPIR-V and wgpu WGSL.
cd "$(dirname "$0")/.."
eval "$(scripts/vulkan_loader.sh use .gpu-w/vulkan-debs)"
for f in kernel_bench kernel_bench_wgpu kernel_bench_vulkan; do xz -dkf .gpu-w/$f.xz; chmod +x .gpu-w/$f; done
for b in kernel_bench_vulkan kernel_bench_wgpu; do
  for batch in 1 8; do for kv in 8 32; do for t in 32768 131072; do
    timeout 60 .gpu-w/$b --no-prefill --batches $batch --kv-heads $kv --contexts $t > /tmp/d.txt 2>&1; rc=$?
    echo "== $b b$batch kv$kv T$t rc $rc" >> "$OUT/decode_wgpu_rows.txt"
    grep -E "^b[0-9]" /tmp/d.txt >> "$OUT/decode_wgpu_rows.txt" || grep -m1 -E "can't allocate|panicked" /tmp/d.txt >> "$OUT/decode_wgpu_rows.txt"
  done; done; done
done
echo decode done
timeout 100 python3 .gpu-w/torch_attention.py prefill --kv-heads 8 --context 32768,65536,131072 > "$OUT/torch_prefill.jsonl" 2>&1; echo "torch rc $?"
timeout 150 .gpu-w/kernel_bench --no-decode --no-burn-attention --prefill 32768,65536,131072 > "$OUT/prefill_kernel_bench.txt" 2>&1; echo "cuda rc $?"
for b in kernel_bench_vulkan kernel_bench_wgpu; do
  for t in 32768 65536 131072; do
    timeout 120 .gpu-w/$b --no-decode --no-burn-attention --prefill $t > "$OUT/prefill_${b}_$t.txt" 2>&1; echo "$b $t rc $?"
  done
done
