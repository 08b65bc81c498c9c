#!/usr/bin/env bash
# The shipped kepler binary (issue 21): the `dist` cargo profile (release with whole-program
# LTO) and the eBPF activity source (`bpf` feature, built from the committed prebuilt BPF
# object so clang is not needed and every machine ships the same object), stripped, with its
# line tables split off into kepler.debug for symbolised profiles (perf, gdb, addr2line).
# The image (scripts/k8s-cluster.sh images, deploy/Dockerfile) and the systemd install
# (deploy/systemd/kepler.service) ship this binary; CI builds it once and checks it
# (kepler-bin/tests/dist_artifact.rs).
#
#   scripts/dist.sh [DIR]    writes DIR/kepler and DIR/kepler.debug and prints DIR
#                            (default DIR: $CARGO_TARGET_DIR/dist/out, target/dist/out)
#
# DIR/kepler carries a .gnu_debuglink to kepler.debug (name and CRC) and the GNU build id:
# debuggers and perf find kepler.debug beside the binary, in a .debug/ folder beside it, or
# under /usr/lib/debug (same path as the binary, or .build-id/xx/yyyy.debug).
#
# Builds need (Debian) libelf-dev zlib1g-dev pkg-config make for libbpf, and binutils
# (objcopy). Env: CARGO_TARGET_DIR; DIST_FEATURES (default `bpf`; set it empty to build
# without the eBPF source, for size comparisons only).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
out="${1:-$target/dist/out}"
features="${DIST_FEATURES-bpf}"

command -v objcopy >/dev/null || { echo "dist.sh: objcopy not found (Debian: binutils)" >&2; exit 1; }

args=(build --profile dist --locked -p kepler-bin --bin kepler)
[ -n "$features" ] && args+=(--features "$features")
echo "dist.sh: KEPLER_BPF_PREBUILT=1 cargo ${args[*]}" >&2
(cd "$repo" && KEPLER_BPF_PREBUILT=1 cargo "${args[@]}")

bin="$target/dist/kepler"
mkdir -p "$out"
rm -f "$out/kepler" "$out/kepler.debug"
# The debug file keeps the line tables and the symbol table; the binary keeps neither, only
# the link to the debug file (perf and gdb read the symbols from there).
objcopy --only-keep-debug "$bin" "$out/kepler.debug"
objcopy --strip-all --add-gnu-debuglink="$out/kepler.debug" "$bin" "$out/kepler"
chmod 0755 "$out/kepler"
chmod 0644 "$out/kepler.debug"
echo "dist.sh: $(du -b "$out/kepler" | cut -f1) bytes kepler, $(du -b "$out/kepler.debug" | cut -f1) bytes kepler.debug (features: ${features:-none})" >&2
echo "$out"
