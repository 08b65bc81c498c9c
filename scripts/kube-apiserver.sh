#!/usr/bin/env bash
# Prints the path of a real kube-apiserver 1.20.2 built from Debian's `kubernetes` source package,
# building it (with the other Kubernetes binaries, see scripts/kube-build.sh) when it is not cached.
# The kepler-k8s integration tests look for it at ~/.cache/kepler-rs/kube-apiserver-1.20.2.
#
# Usage: scripts/kube-apiserver.sh
# Env:   KEPLER_CACHE_DIR (default ~/.cache/kepler-rs)
set -euo pipefail

version=1.20.2
cache="${KEPLER_CACHE_DIR:-$HOME/.cache/kepler-rs}"
bin="$cache/kube-apiserver-$version"

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
# etcd is needed at test time either way.
if ! command -v etcd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends etcd-server >/dev/null
fi

dir=$("$(dirname "$0")/kube-build.sh")
if [ ! "$bin" -ef "$dir/kube-apiserver" ]; then
  rm -f "$bin.tmp"
  ln "$dir/kube-apiserver" "$bin.tmp" 2>/dev/null || cp "$dir/kube-apiserver" "$bin.tmp"
  mv -f "$bin.tmp" "$bin"
fi
printf 'kube-apiserver.sh: %s (%s)\n' "$bin" "$("$bin" --version)" >&2
echo "$bin"
