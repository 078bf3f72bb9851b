#!/usr/bin/env bash
# Session 14, call F (branch quest-pages): Quest's rows of the 8K sparse-prefill table, with a
# profile of its first two settings.
cd "$(dirname "$0")"; tar xJf books.tar.xz
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --retrieval-contexts 8192 --protocol prefill --float f16"
BSA_PROFILE=1 LIMIT=100 ./eval.sh prof-quest $common --retrieval-tasks passkey --sparsities 8,16 --presets equal-budget --methods quest | tail -2
grep -v "^retrieval" $OUT/prof-quest/stderr.txt | grep -E "profile of|select|score|top-k|attend|page keys|prefill attention|prefill pass"
./tables.sh "t8k-quest 200 --retrieval-contexts 8192 --protocol prefill --presets equal-budget --methods quest --float f16" | tail -3
