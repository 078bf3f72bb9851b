#!/usr/bin/env bash
# GPU evaluation: assemble the model from /root/stash/model.a + model.b, then run bsa eval.
# usage: eval.sh NAME ARGS...   (results in $OUT/NAME/)
cd "$(dirname "$0")"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
if [ ! -f /root/model.gguf ]; then cat /root/stash/model.a model.b > /root/model.gguf; fi
sha256sum /root/model.gguf | cut -c1-64 | diff - model.sha >/dev/null || { echo "model checksum differs"; exit 1; }
[ -x /root/bsa ] || { xz -dc bsa.xz > /root/bsa; chmod +x /root/bsa; }
name="$1"; shift
mkdir -p "$out/$name"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
start=$(date +%s)
BSA_HOME=/root/bsa-home timeout "${LIMIT:-540}" /root/bsa eval --model /root/model.gguf --out "$out/$name" "$@" > "$out/$name/stdout.txt" 2> "$out/$name/stderr.txt"
echo "rc $? seconds $(( $(date +%s) - start ))" | tee "$out/$name/time.txt"
tail -45 "$out/$name/stdout.txt"
