#!/usr/bin/env bash
# Hash-mapping training on the GPU, several configs at once, resumable across calls:
#   MINUTES=6.5 train.sh "NAME ARGS..." ...   (runs under /root/runs/NAME; logs and reports in $OUT)
cd "$(dirname "$0")"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
[ -d /root/books ] || tar xJf books.tar.xz -C /root
if [ ! -f /root/model.gguf ]; then cat /root/stash/model.a model.b > /root/model.gguf; fi
sha256sum /root/model.gguf | cut -c1-64 | diff - model.sha >/dev/null || { echo "model checksum differs"; exit 1; }
[ -x /root/bsa ] || { xz -dc bsa.xz > /root/bsa; chmod +x /root/bsa; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
(while sleep 15; do nvidia-smi --query-gpu=memory.used --format=csv,noheader; done > "$out/gpu-memory.txt") & monitor=$!
B=/root/books
texts=$B/pg1342.txt,$B/pg11.txt,$B/pg1184.txt,$B/pg2554.txt,$B/pg2701.txt,$B/pg4300.txt
for spec in "$@"; do
  set -- $spec; name=$1; shift
  dir=/root/runs/$name; mkdir -p "$dir"
  resume=""; [ -d "$dir/checkpoint" ] && resume=--resume
  ( BSA_HOME=/root/bsa-home timeout "${LIMIT:-585}" /root/bsa train-hash --model /root/model.gguf \
      --train-texts $texts --holdout-text $B/pg84.txt --context 8192 --passages-per-text 2 \
      --epochs 1000 --steps-per-epoch 40 --queries-per-step 256 --skip-perplexity \
      --time-limit-minutes "${MINUTES:-6.5}" --out "$dir" $resume "$@" > "$dir/stdout.txt" 2> "$dir/stderr.txt"
    echo "rc $?" >> "$dir/stderr.txt" ) &
done
wait $(jobs -p | grep -v "^$monitor$"); kill $monitor
echo "GPU memory peak: $(sort -n "$out/gpu-memory.txt" | tail -1)"
for d in /root/runs/*/; do
  n=$(basename "$d"); cat "$d/stderr.txt" >> "$d/stderr-all.txt"
  echo "== $n: $(grep -c '^train epoch' "$d/stderr.txt") progress lines; $(grep '^valid' "$d/stderr.txt" | tail -1)"
  grep '^train epoch' "$d/stderr.txt" | tail -1; tail -1 "$d/stderr.txt"
  grep -A8 '^Recall' "$d/stdout.txt" | grep trained
done
tar czf "$out/runs.tgz" -C /root/runs --exclude checkpoint --exclude '*.mpk' --exclude '*.safetensors' .
