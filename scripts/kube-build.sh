#!/usr/bin/env bash
# Builds Kubernetes 1.20.2 from Debian's `kubernetes` source package and caches the binaries outside
# the repo: kube-apiserver, kubelet, kube-controller-manager, kube-scheduler and kube-proxy.
#
# Debian ships etcd (`etcd-server`), containerd, runc and the CNI plugins, but no Kubernetes server
# binaries; its source package builds them with Debian's Go. The vendored
# github.com/modern-go/reflect2 1.0.1 breaks under Go >= 1.18 (it reaches into runtime internals that
# moved), so it is replaced by Debian's packaged 1.0.2 source.
#
# All binaries come from one `make`: every `make` re-runs code generation, and the Kubernetes make
# scripts force GOCACHE inside the tree, so a second `make` would cost nearly as much as the first.
# The binaries are what is cached (about 430 MB); a cold build is about 11 minutes on 2 cores.
#
# Usage: scripts/kube-build.sh            prints the directory holding the binaries (builds if needed)
# Env:   KEPLER_CACHE_DIR (default ~/.cache/kepler-rs)
# Needs root (or sudo) for apt.
set -euo pipefail

version=1.20.2
cache="${KEPLER_CACHE_DIR:-$HOME/.cache/kepler-rs}"
out="$cache/kubernetes-$version"
binaries=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
log() { printf 'kube-build.sh: %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
apt_get() {
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 "$@"
}

complete() {
  local b
  for b in "${binaries[@]}"; do
    [ -x "$out/$b" ] && "$out/$b" --version >/dev/null 2>&1 || return 1
  done
}

if complete; then
  log "cached: $out ($("$out/kube-apiserver" --version))"
  echo "$out"
  exit 0
fi

# 1. A deb-src entry that mirrors the first enabled `deb` source of this machine.
if ! apt-get indextargets --format '$(IDENTIFIER)' 2>/dev/null | grep -qx 'Sources'; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  suite=$(awk '/^Suites:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    line=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | head -n1 || true)
    uri=$(echo "$line" | awk '{print $2}')
    suite=$(echo "$line" | awk '{print $3}')
  fi
  uri="${uri:-http://deb.debian.org/debian}"
  suite="${suite:-bookworm}"
  # apt refuses two entries for one source with different Signed-By values: reuse the keyring.
  opts=""
  for key in /usr/share/keyrings/debian-archive-keyring.gpg; do
    [ -f "$key" ] && opts="[signed-by=$key] "
  done
  log "adding deb-src $opts$uri $suite main"
  echo "deb-src $opts$uri $suite main" | "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/kepler-rs-deb-src.list >/dev/null
fi

# 2. The toolchain and the replacement module.
apt_get update -qq
apt_get install -y -qq --no-install-recommends golang-go golang-github-modern-go-reflect2-dev \
  dpkg-dev make rsync >/dev/null

# 3. The source, unpacked in a scratch dir under the cache (never in the repo).
work="$cache/kubernetes-src"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
log "apt-get source kubernetes"
apt-get source -qq kubernetes >/dev/null
src=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[ -n "$src" ] || { log "apt-get source kubernetes unpacked nothing"; exit 1; }
cd "$src"

# 4. Swap the vendored reflect2 for Debian's.
reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$reflect2" ] || { log "missing $reflect2 (golang-github-modern-go-reflect2-dev)"; exit 1; }
rm -rf vendor/github.com/modern-go/reflect2
cp -r "$reflect2" vendor/github.com/modern-go/reflect2

# 5. One make for every binary.
what=""
for b in "${binaries[@]}"; do what="$what cmd/$b"; done
log "make WHAT=\"${what# }\" (about 11 minutes on 2 cores; log: $cache/kube-build.log)"
export GOFLAGS=-mod=vendor GO111MODULE=on GOPROXY=off
make WHAT="${what# }" >"$cache/kube-build.log" 2>&1 || {
  tail -n 40 "$cache/kube-build.log" >&2
  exit 1
}
mkdir -p "$out.tmp"
for b in "${binaries[@]}"; do
  built=$(find _output -type f -name "$b" -perm -u+x | head -n1)
  [ -n "$built" ] || { log "build produced no $b"; exit 1; }
  install -m 0755 "$built" "$out.tmp/$b"
done
rm -rf "$out"
mv "$out.tmp" "$out"
cd "$cache"
rm -rf "$work"
log "built: $out ($("$out/kube-apiserver" --version))"
echo "$out"
