#!/usr/bin/env bash
# eval.sh and tables.sh beside it on the GPU machine are those of ../2026-11-28-h200-eval-sweep/ (identical).
# Session 15, call B: the passkey rows of the 8K sparse-prefill table at 1, 2 and 4 jobs
# (settings run at once on their own threads and streams); the rows must not change.
# (This binary started worker threads per task; run-tables.sh's binary starts them once per sweep.)
cd "$(dirname "$0")"; tar xJf /root/stash/books.tar.xz
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --sparsities 8,16,32 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16 --retrieval-tasks passkey"
for j in 1 2 4; do
  LIMIT=170 ./eval.sh pk-j$j $common --jobs $j | tail -1
done
for j in 2 4; do
  cmp <(grep -E "^passkey" $OUT/pk-j1/stdout.txt) <(grep -E "^passkey" $OUT/pk-j$j/stdout.txt) && echo "jobs $j: rows identical to jobs 1"
done
cat $OUT/pk-j*/time.txt
