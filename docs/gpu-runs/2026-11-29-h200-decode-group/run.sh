#!/usr/bin/env bash
# Session 15, call C: the CUDA kernel tests (top-k, methods, sparse attention with Quest's pages,
# block attention), then PyTorch's decode anchors and our decode table (the sparse-attention
# kernel reading each K row once per group, queries as vectors).
cd "$(dirname "$0")"
for f in kernel_bench integration_cuda; do xz -dkf $f.xz; chmod +x $f; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu.txt"
for t in $(./integration_cuda --list 2>/dev/null | grep -E 'cuda' | grep -E 'top_k|methods_match|sparse_attention|block' | sed 's/: test$//'); do
  if timeout 100 ./integration_cuda --exact "$t" > /tmp/t.log 2>&1; then echo "PASS $t"; else echo "FAIL $t"; tail -20 /tmp/t.log; fi
done | tee "$OUT/cuda_tests.txt"
timeout 60 python3 torch_attention.py decode --batch 1,8 --kv-heads 8,32 --context 8192,32768,131072 > "$OUT/torch_decode.jsonl" 2>&1
timeout 200 ./kernel_bench --no-prefill > "$OUT/decode.txt" 2>&1; echo "bench rc $?"
grep -E "dense decode|hash end-to-end" "$OUT/decode.txt" | cut -c1-110
