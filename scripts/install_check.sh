#!/usr/bin/env bash
# Installs `bsa` with `cargo install` and runs it from an unrelated folder, as a user would:
# the built-in hash mappings and book must be found without the source tree, the model comes
# from the data folder ($BSA_HOME), and no path of the build machine may be printed.
# Run by scripts/test.sh (CI); needs the model at models/ (scripts/get_model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/home/models" "$work/elsewhere"

cargo install --locked --quiet --path crates/cli --root "$work/root" --target-dir "${CARGO_TARGET_DIR:-target}"
# The data folder as a first run leaves it (bsa downloads the model there when missing).
ln -s "$repo/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/home/models/"

cd "$work/elsewhere"
export BSA_HOME="$work/home"
bsa="$work/root/bin/bsa"
fail() { echo "install check: $*" >&2; exit 1; }

"$bsa" demo --tokens 160 --sparsity 2 >"$work/demo.out" 2>&1 || { cat "$work/demo.out"; fail "bsa demo failed"; }
grep -q "Pride and Prejudice (built in)" "$work/demo.out" || fail "the built-in book was not used"
grep -q "mappings: $work/home/hash/smollm2-135m.safetensors" "$work/demo.out" \
  || fail "the built-in hash mappings were not used"
grep -qE "^hash +[0-9]" "$work/demo.out" || fail "no HashAttention row"

"$bsa" generate --method hash --sparsity 2 --max-tokens 12 "What is the capital of France?" \
  >"$work/generate.out" 2>&1 || { cat "$work/generate.out"; fail "bsa generate failed"; }
grep -q "Paris" "$work/generate.out" || { cat "$work/generate.out"; fail "bsa generate did not answer"; }

if grep -F "$repo" "$work/demo.out" "$work/generate.out"; then
  fail "a path of the build machine was printed"
fi
echo "install check: bsa installed with cargo install runs from $work/elsewhere (demo, generate)"
