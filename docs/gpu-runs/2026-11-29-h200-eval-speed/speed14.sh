#!/usr/bin/env bash
# Issue 14: dense perplexity at 8K in f32 / f16 / bf16 (numerics), then one depth of 8K passkeys
# under sparse prefill, every setting, in f32 and f16 (seconds per row).
cd "$(dirname "$0")"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
if [ ! -f /root/model.gguf ]; then cat /root/stash/model.a model.b > /root/model.gguf; fi
sha256sum /root/model.gguf | cut -c1-64 | diff - model.sha >/dev/null || { echo "model checksum differs"; exit 1; }
xz -dc bsa.xz > /root/bsa; chmod +x /root/bsa
[ -d books ] || tar xJf books.tar.xz
B=$PWD/books
for f in f32 f16 bf16; do
  s=$(date +%s)
  BSA_HOME=/root/bsa-home timeout 120 /root/bsa eval --model /root/model.gguf --text $B/pg84.txt --tasks perplexity --contexts 8192 --methods streaming,oracle-top-k --sparsities 16 --float $f --out $out/ppl-$f > $out/ppl-$f.txt 2>&1
  echo "ppl $f rc $? $(( $(date +%s) - s )) s"; tail -6 $out/ppl-$f.txt
done
for f in ${FLOATS:-f32 f16}; do
  LIMIT=${ROW_LIMIT:-150} ./eval.sh p8k-$f --tasks retrieval --retrieval-tasks passkey --haystack $B/pg84.txt,$B/pg174.txt,$B/pg120.txt --depths 0.5 --trials 5 --sparsities 8,16,32 --retrieval-contexts 8192 --protocol prefill --presets equal-budget,as-deployed,as-deployed-exact-sink --float $f > /dev/null
  echo "== $f: $(cat $out/p8k-$f/time.txt)"; tr "\r" "\n" < "$out/p8k-$f/stderr.txt" | grep -E "retrieval \[|rror" | sed 's/retrieval //'
done
tar czf "$out/speed14.tgz" -C "$out" $(cd $out && ls -d ppl-* p8k-*) && (cd $out && rm -rf ppl-* p8k-*)
