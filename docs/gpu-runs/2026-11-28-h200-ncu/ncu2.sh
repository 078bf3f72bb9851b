#!/usr/bin/env bash
# Issue 13 lead: what bounds the top-k (histogram, select) and the attention over chosen rows at batch 8, 32 KV heads, 128K.
cd "$(dirname "$0")"
xz -dkf kernel_bench.xz; chmod +x kernel_bench
timeout 240 /usr/local/cuda/bin/ncu --kernel-name regex:"histogram_kernel|select_kernel|partial_kernel" --launch-skip 30 --launch-count 3 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  ./kernel_bench --no-prefill --batches 8 --kv-heads 32 --contexts 131072 > "$OUT/ncu_decode.txt" 2>&1; echo "ncu rc $?"
grep -v "^==PROF==" "$OUT/ncu_decode.txt" | grep -E "_kernel|Duration|Memory Throughput|DRAM Throughput|L1/TEX Cache|Compute \(SM\)|Achieved Occupancy|Theoretical Occ|Registers Per|Grid Size|Block Size|highest-utilized" | head -60
