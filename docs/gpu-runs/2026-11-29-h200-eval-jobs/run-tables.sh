#!/usr/bin/env bash
# eval.sh and tables.sh beside it on the GPU machine are those of ../2026-11-28-h200-eval-sweep/ (identical).
# Session 15, call D: the 8K and 4K sparse-prefill tables, timed whole with 4 jobs (settings
# run at once on their own threads and streams), on a fresh machine (the matmuls' autotuning
# included, as in a user's first run).
cd "$(dirname "$0")"; tar xJf /root/stash/books.tar.xz
./tables.sh "t8k-prefill-j4 330 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16 --jobs 4" \
  "t4k-prefill-j4 170 --retrieval-contexts 4096 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16 --jobs 4" | grep -E "rc |tables"
