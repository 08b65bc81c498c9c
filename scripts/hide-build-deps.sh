#!/usr/bin/env bash
# Runs a command as on a fresh machine of this project's kind, which has the Rust toolchain, gcc,
# make, pkg-config and zlib1g-dev but neither libelf-dev nor clang (issue 21: can the eBPF
# source be in the default build?). In a private mount namespace, overlays with whiteouts hide
# libelf-dev's files (gelf.h, libelf.h, nlist.h, elfutils/, libelf.so, libelf.a, libelf.pc)
# and clang; nothing outside the command sees a change. Needs root and overlayfs.
#
#   scripts/hide-build-deps.sh COMMAND [ARG...]
#   e.g. CARGO_TARGET_DIR=/tmp/fresh scripts/hide-build-deps.sh cargo build -p kepler-bpf --features libbpf
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "hide-build-deps.sh: needs root (mount namespace, overlayfs)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
unshare -m bash -euo pipefail -c '
work=$1 multiarch=$2; shift 2
hide() { # DIR NAME...: NAMEs under DIR disappear
  local dir=$1 key; shift; key=$(echo "$dir" | tr / _)
  mkdir -p "$work/$key/upper" "$work/$key/work"
  for name in "$@"; do
    mkdir -p "$(dirname "$work/$key/upper/$name")"
    mknod "$work/$key/upper/$name" c 0 0
  done
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$work/$key/upper,workdir=$work/$key/work" "$dir"
}
mount --make-rprivate /
hide /usr/include gelf.h libelf.h nlist.h elfutils
hide "/usr/lib/$multiarch" libelf.so libelf.a pkgconfig/libelf.pc
hide /usr/bin clang clang-14 clang-15 clang-16 clang-19
"$@"
' bash "$work" "$multiarch" "$@"
