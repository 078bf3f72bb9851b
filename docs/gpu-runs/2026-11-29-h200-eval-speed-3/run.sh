#!/usr/bin/env bash
# Issue 14, 2026-11-29 (session 14), one H200: causal chunks (oracle top-k, Quest) and HiP's
# kernel-path chunks. tables.sh and eval.sh are those of ../2026-11-28-h200-eval-sweep/
# (identical), beside this script; the model is assembled from /root/stash/model.a + model.b;
# books.tar.xz (stashed in /root/stash) holds ../../../../shared/data/books.
tar xJf /root/stash/books.tar.xz
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --retrieval-contexts 8192 --protocol prefill --float f16"
# A profile of the changed methods' first batch (prof8k/stderr.txt), then the table timed.
BSA_PROFILE=1 LIMIT=120 ./eval.sh prof8k $common --retrieval-tasks passkey --sparsities 8 --presets equal-budget --methods oracle-top-k,quest,hip
./tables.sh "t8k-prefill-f16 420 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16"
# Later calls, the same binary: profiles with warmed shapes (x16 reuses x8's chunk shapes),
# then the 4K sparse-prefill table timed whole.
BSA_PROFILE=1 LIMIT=300 ./eval.sh prof8k-warm $common --retrieval-tasks passkey --sparsities 8,16 --presets equal-budget --methods oracle-top-k,quest,hip,hash,hyper
./tables.sh "t4k-prefill-f16 420 --retrieval-contexts 4096 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float f16"
# Last call, the same binary: the 8K decode-protocol table (f32) timed whole.
./tables.sh "t8k-decode 420 --retrieval-contexts 8192 --protocol decode --methods oracle-top-k,quest,hip,hash,streaming --presets equal-budget,as-deployed"
