#!/usr/bin/env bash
# Builds a real kube-apiserver from Debian's `kubernetes` source package (1.20.2) and caches it
# outside the repo, so the kepler-k8s integration tests can run against the real API server.
#
# Debian ships etcd (`etcd-server`) but no kube-apiserver binary; its source package builds one with
# Debian's Go. The vendored github.com/modern-go/reflect2 1.0.1 breaks under Go >= 1.18 (it reaches
# into runtime internals that moved), so it is replaced by Debian's packaged 1.0.2 source.
#
# Usage: scripts/kube-apiserver.sh        prints the path of the cached binary (builds it if needed)
# Env:   KEPLER_CACHE_DIR (default ~/.cache/kepler-rs)
# Needs root (or sudo) for apt; about 5 minutes of build on 2 cores, seconds when cached.
set -euo pipefail

version=1.20.2
cache="${KEPLER_CACHE_DIR:-$HOME/.cache/kepler-rs}"
bin="$cache/kube-apiserver-$version"
log() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
apt_get() {
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# etcd is needed at test time either way.
need=()
command -v etcd >/dev/null || need+=(etcd-server)
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  if [ ${#need[@]} -gt 0 ]; then
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  log "cached: $bin ($("$bin" --version))"
  echo "$bin"
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
need+=(golang-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync)
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

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

# 5. Build only the API server.
log "make WHAT=cmd/kube-apiserver (about 5 minutes on 2 cores)"
export GOFLAGS=-mod=vendor GO111MODULE=on GOPROXY=off GOCACHE="$cache/go-build"
make WHAT=cmd/kube-apiserver >"$cache/kube-apiserver-build.log" 2>&1 || {
  tail -n 40 "$cache/kube-apiserver-build.log" >&2
  exit 1
}
built=$(find _output -type f -name kube-apiserver | head -n1)
[ -n "$built" ] || { log "build produced no kube-apiserver"; exit 1; }
install -m 0755 "$built" "$bin.tmp"
mv "$bin.tmp" "$bin"
cd "$cache"
rm -rf "$work"
log "built: $bin ($("$bin" --version))"
echo "$bin"
