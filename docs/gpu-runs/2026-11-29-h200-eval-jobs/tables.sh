#!/usr/bin/env bash
# Runs retrieval tables one after another: tables.sh "NAME LIMIT ARGS..." ...; tars them into $OUT.
cd "$(dirname "$0")"
B=$PWD/books
common="--tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --sparsities 8,16,32"
names=()
for spec in "$@"; do
  set -- $spec
  name=$1; limit=$2; shift 2
  LIMIT=$limit ./eval.sh "$name" $common "$@" | tail -4
  grep -E "^context" "${OUT}/$name/stdout.txt"; tail -c 400 "${OUT}/$name/stderr.txt" | tr "\r" "\n" | tail -2
  names+=("$name")
done
tar czf "$OUT/tables.tgz" -C "$OUT" "${names[@]}" gpu.txt && rm -rf "${names[@]/#/$OUT/}"
ls -la "$OUT"
