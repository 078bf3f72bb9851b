#!/usr/bin/env bash
# Issue 12 lead: is Nsight Compute here, and what bounds the tensor-core prefill kernel (one launch at 8K)?
cd "$(dirname "$0")"
ls /usr/local/cuda/bin | grep -i -E "ncu|nsys|nv-nsight" ; which ncu nsys
ls -d /opt/nvidia/* /usr/local/cuda/nsight* 2>/dev/null
NCU=$(which ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || exit 0
xz -dkf kernel_bench.xz; chmod +x kernel_bench
timeout 200 $NCU --kernel-name regex:tensor_core_attention --launch-skip 1 --launch-count 1 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  ./kernel_bench --no-decode --no-burn-attention --prefill 8192 > "$OUT/ncu_tc_attention.txt" 2>&1; echo "ncu rc $?"
grep -v "^==PROF==" "$OUT/ncu_tc_attention.txt" | grep -E "Throughput|Occupancy|Registers|Shared Memory|Block Size|Stall|Warp Cycles|Issued|Duration|Pipe|Bank" | head -60
