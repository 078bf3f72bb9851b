#!/usr/bin/env bash
# Issue 14, 2026-11-29 (session 13), one H200. tables.sh and eval.sh are those of
# ../2026-11-28-h200-eval-sweep/ (identical), beside this script; the model is assembled from
# /root/stash/model.a + model.b; books.tar.xz holds ../../../../shared/data/books.
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5"

# Call A, binary of commit 163dd0d plus the BSA_PROFILE spans and streaming prefill in the
# block kernel: a profile of one 8K setting per method (prof8k/stderr.txt has a table per
# setting), then the 8K sparse-prefill table under a limit (t8k-prefill-f16-before/).
tar xJf books.tar.xz
BSA_PROFILE=1 LIMIT=170 ./eval.sh prof8k $common --retrieval-contexts 8192 --protocol prefill --float f16 \
  --retrieval-tasks passkey,multi-value --sparsities 16 --presets equal-budget
./tables.sh "t8k-prefill-f16 330 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16"

# Call B, commit 38ae998 (the integration test binary built with
# `cargo test --release -p burn-sparse-attn --features cuda --test integration --no-run`):
for t in $(./integration_cuda --list 2>/dev/null | grep -E 'cuda' | grep -E 'top_k|methods_match|sparse_attention|block' | sed 's/: test$//'); do
  if timeout 100 ./integration_cuda --exact "$t" > /tmp/t.log 2>&1; then echo "PASS $t"; else echo "FAIL $t"; fi
done | tee "$OUT/cuda_tests.txt"
./tables.sh "t8k-prefill-f16 470 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16"

# Call C, the same binary: the 4K tables.
./tables.sh "t4k-prefill-f16 230 --retrieval-contexts 4096 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16" \
  "t4k-decode 290 --retrieval-contexts 4096 --protocol decode --methods oracle-top-k,quest,hip,hash,streaming --presets equal-budget,as-deployed"
