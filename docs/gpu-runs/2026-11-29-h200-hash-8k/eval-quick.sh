#!/usr/bin/env bash
# eval-quick.sh RUN: a trained run's mappings at 8K on held-out Frankenstein (perplexity under
# both protocols, retrieval under dense prefill + sparse decode at 16x); f16 mappings back.
cd "$(dirname "$0")"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
B=/root/books; run=/root/runs/$1
/root/bsa export-hash "$run/mappings" /root/best.safetensors --f16 && split -b 15M /root/best.safetensors "$out/mappings-f16.safetensors.part-"
start=$(date +%s)
ev() { name=$1; limit=$2; shift 2; mkdir -p "$out/$name"
  BSA_HOME=/root/bsa-home timeout "$limit" /root/bsa eval --model /root/model.gguf --out "$out/$name" \
    --hash-mappings "$run/mappings" --methods hash "$@" > "$out/$name/stdout.txt" 2> "$out/$name/stderr.txt"
  echo "$name rc $? at $(( $(date +%s) - start )) s"; tail -12 "$out/$name/stdout.txt"; }
ppl="--tasks perplexity --text $B/pg84.txt --contexts 8192 --sparsities 8,16,32"
ev ppl-prefill 45 $ppl --protocol prefill
ev ppl-decode 75 $ppl --protocol decode --decode-tokens 256
ev ret-decode 60 --tasks retrieval --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.1,0.3,0.5,0.7,0.9 --trials 5 --retrieval-contexts 8192 --protocol decode --sparsities 16
tar czf "$out/eval.tgz" -C "$out" ppl-prefill ppl-decode ret-decode; rm -rf "$out"/ppl-* "$out"/ret-*
tar czf "$out/run.tgz" -C /root/runs --exclude checkpoint --exclude '*.mpk' --exclude '*.safetensors' .
ls -la "$out"
