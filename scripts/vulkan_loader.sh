#!/usr/bin/env bash
# The Vulkan loader for a machine that has NVIDIA's driver (its Vulkan ICD, libGLX_nvidia)
# but not the loader, as in CUDA containers: Debian packages fetched where apt works and
# unpacked where they are needed, without installing anything.
#
#   scripts/vulkan_loader.sh fetch DIR         # here: downloads the packages into DIR
#   eval "$(scripts/vulkan_loader.sh use DIR)"  # there: unpacks them, sets LD_LIBRARY_PATH
#
# libvulkan1 is the loader. NVIDIA's ICD also needs GLVND's libEGL.so.1 (it loads it when
# Vulkan starts; without it `vkCreateInstance` is missing and wgpu finds no adapter), hence
# libglvnd0, libegl1 and their GLX companions.
set -euo pipefail
packages=(libvulkan1 libglvnd0 libegl1 libglx0 libgl1)
mode="${1:-}"
dir="${2:-}"
[ -n "$dir" ] || { echo "usage: scripts/vulkan_loader.sh fetch|use DIR" >&2; exit 2; }
case "$mode" in
  fetch)
    mkdir -p "$dir"
    (cd "$dir" && apt-get download "${packages[@]}")
    ;;
  use)
    root="${VULKAN_LOADER_ROOT:-/tmp/vulkan-loader}"
    mkdir -p "$root"
    for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$root"; done
    [ -e /usr/share/vulkan/icd.d/nvidia_icd.json ] || echo "echo 'no NVIDIA Vulkan ICD in /usr/share/vulkan/icd.d' >&2"
    echo "export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    ;;
  *)
    echo "usage: scripts/vulkan_loader.sh fetch|use DIR" >&2
    exit 2
    ;;
esac
