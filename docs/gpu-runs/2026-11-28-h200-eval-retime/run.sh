#!/usr/bin/env bash
# Issue 14 re-timing: the 8K decode table (HiP decode in the block kernel), then the 8K sparse-prefill rows at one depth (seconds per setting).
# tables.sh and eval.sh are those of ../2026-11-28-h200-eval-sweep/ (identical), beside it on the GPU machine.
cd "$(dirname "$0")"
B=$PWD/books
./tables.sh "t8k-decode 400 --retrieval-contexts 8192 --protocol decode --methods oracle-top-k,quest,hip,hash,streaming --presets equal-budget,as-deployed" > /tmp/tables.log 2>&1
tail -5 /tmp/tables.log
mv "$OUT/tables.tgz" "$OUT/t8k-decode.tgz"
LIMIT=170 ./eval.sh p8k-profile --tasks retrieval --retrieval-tasks passkey --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.5 --trials 5 --sparsities 8,16,32 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink > /dev/null
tr "\r" "\n" < "$OUT/p8k-profile/stderr.txt" | grep retrieval | sed 's/retrieval //'
cat "$OUT/p8k-profile/time.txt"
tar czf "$OUT/p8k-profile.tgz" -C "$OUT" p8k-profile && rm -rf "$OUT/p8k-profile"
