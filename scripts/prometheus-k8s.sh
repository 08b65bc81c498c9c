#!/usr/bin/env bash
# Prints the path of a Debian-built Prometheus that has Kubernetes service discovery, fetching it
# when it is not cached.
#
# Debian 12's `prometheus` (2.42) is built without `kubernetes_sd_configs` ("field
# kubernetes_sd_configs not found in type config.ScrapeConfig"); Debian 13 (trixie) packages
# client-go and its 2.53 build has it. The binary links only libc (>= 2.34, Debian 12 has 2.36),
# so the trixie package's binary is taken from the Debian archive as is: the current version is
# read from trixie's package index, the .deb checked against its SHA256 there, and unpacked into
# the cache. Nothing is installed system-wide.
#
# Usage: scripts/prometheus-k8s.sh
# Env:   KEPLER_CACHE_DIR (default ~/.cache/kepler-rs), DEBIAN_MIRROR (default
#        http://deb.debian.org/debian)
set -euo pipefail

cache="${KEPLER_CACHE_DIR:-$HOME/.cache/kepler-rs}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
out="$cache/prometheus-k8s"
log() { printf 'prometheus-k8s.sh: %s\n' "$*" >&2; }

if [ -x "$out/prometheus" ] && "$out/prometheus" --version >/dev/null 2>&1; then
  echo "$out/prometheus"
  exit 0
fi
command -v xz >/dev/null || { log "needs xz (Debian package xz-utils)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsS "$mirror/dists/trixie/main/binary-amd64/Packages.xz" -o "$work/Packages.xz"
xz -dc "$work/Packages.xz" >"$work/Packages"
entry=$(awk '/^Package: prometheus$/ {p = 1} p && /^$/ {exit} p' "$work/Packages")
file=$(echo "$entry" | awk '/^Filename:/ {print $2}')
sum=$(echo "$entry" | awk '/^SHA256:/ {print $2}')
version=$(echo "$entry" | awk '/^Version:/ {print $2}')
[ -n "$file" ] && [ -n "$sum" ] || { log "no prometheus package in trixie's index at $mirror"; exit 1; }
log "fetching prometheus $version (Debian trixie) from $mirror"
curl -fsS "$mirror/$file" -o "$work/prometheus.deb"
echo "$sum  $work/prometheus.deb" | sha256sum -c --quiet - || { log "SHA256 mismatch for $file"; exit 1; }
dpkg-deb -x "$work/prometheus.deb" "$work/root"
mkdir -p "$out.tmp"
install -m 0755 "$work/root/usr/bin/prometheus" "$out.tmp/prometheus"
rm -rf "$out"
mv "$out.tmp" "$out"
log "cached: $out/prometheus ($("$out/prometheus" --version 2>&1 | head -n1))"
echo "$out/prometheus"
