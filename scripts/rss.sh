#!/usr/bin/env bash
# Resident memory of the running exporter with N live processes (default 10,000 sleeping
# ones): starts them, runs kepler at a 1 s interval on the real /proc for ~25 s while
# scraping it (text and gzip), then prints VmRSS/VmHWM and the scrape sizes.
#
# usage: scripts/rss.sh [path/to/kepler] [N]
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/release/kepler}"
n="${2:-10000}"
tmp=$(mktemp -d)
sleepers=()
cleanup() {
  kill "${kepler:-}" 2>/dev/null || true
  [ ${#sleepers[@]} -gt 0 ] && kill "${sleepers[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 "$n"); do sleep 3600 & sleepers+=($!); done
echo "live processes: $(ls /proc | grep -c '^[0-9]')"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --web.listen-address "127.0.0.1:$port" --monitor.interval 1s 2> "$tmp/kepler.log" &
kepler=$!
sleep 3
for _ in $(seq 1 10); do
  curl -fsS -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" -o "$tmp/m.gz"
  curl -fsS "http://127.0.0.1:$port/metrics" -o "$tmp/m.txt"
  sleep 2
done
grep -E "VmRSS|VmHWM" "/proc/$kepler/status"
echo "scrape: $(stat -c %s "$tmp/m.txt") bytes text, $(stat -c %s "$tmp/m.gz") bytes gzip"
grep -E '^kepler_exporter_(tick_duration_seconds|processes)' "$tmp/m.txt"
