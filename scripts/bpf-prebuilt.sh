#!/usr/bin/env bash
# Rebuilds kepler-bpf's BPF object from source with clang and commits-ready copies it to
# kepler-bpf/src/bpf/prebuilt/, with the SHA-256 of the sources it came from (checked by
# the test `prebuilt_object_matches_source`). Run after editing kepler-bpf/src/bpf/*.
set -euo pipefail
cd "$(dirname "$0")/.."
touch kepler-bpf/src/bpf/activity.bpf.c
cargo build -q -p kepler-bpf --features libbpf
out=$(ls -t "${CARGO_TARGET_DIR:-target}"/debug/build/kepler-bpf-*/out/activity.bpf.o | head -n 1)
cp "$out" kepler-bpf/src/bpf/prebuilt/activity.bpf.o
(cd kepler-bpf/src/bpf && sha256sum activity.bpf.c activity.h vmlinux_min.h) \
  >kepler-bpf/src/bpf/prebuilt/SOURCES.sha256
clang --version | head -n 1 >kepler-bpf/src/bpf/prebuilt/CLANG_VERSION
echo "updated kepler-bpf/src/bpf/prebuilt from $out"
