#!/usr/bin/env bash
# eval.sh beside it is that of ../../2026-11-28-h200-eval-sweep/; the model, the books and the binary were stashed by earlier calls.
# Session 15, call E: the decode protocol (dense prefill on the main thread's stream, caches
# continued by the workers' streams) at 1 and 4 jobs: the passkey rows at 8K must not change.
cd "$(dirname "$0")"; tar xJf /root/stash/books.tar.xz
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --sparsities 8,16,32 --retrieval-contexts 8192 --protocol decode --methods oracle-top-k,quest,hip,hash,streaming --presets equal-budget,as-deployed --retrieval-tasks passkey"
for j in 1 4; do LIMIT=100 ./eval.sh dpk-j$j $common --jobs $j | tail -1; done
cmp <(grep -E "^passkey" $OUT/dpk-j1/stdout.txt) <(grep -E "^passkey" $OUT/dpk-j4/stdout.txt) && echo "jobs 4: rows identical to jobs 1"
cat $OUT/dpk-j*/time.txt; grep -c "^passkey" $OUT/dpk-j1/stdout.txt
rm -f $OUT/*/retrieval.svg $OUT/*/results.json
