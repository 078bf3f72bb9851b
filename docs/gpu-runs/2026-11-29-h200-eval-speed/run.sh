#!/usr/bin/env bash
# Issue 14, 2026-11-29, one H200: the two device calls of this folder (speed14.sh here;
# tables.sh and eval.sh are those of ../2026-11-28-h200-eval-sweep/, identical, beside it;
# the model assembled from /root/stash/model.a + model.b as before).
# 1. Dense perplexity at 8K in f32 / f16 / bf16, then one depth of 8K passkeys (batch 5) in f32 and f16:
ROW_LIMIT=150 bash speed14.sh
# 2. The sparse-prefill tables in f16 (batch 25), each under a time limit:
tar xJf books.tar.xz && ./tables.sh \
  "t8k-prefill-f16 320 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16" \
  "t4k-prefill-f16 190 --retrieval-contexts 4096 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16"
