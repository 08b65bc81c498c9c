#!/usr/bin/env bash
# Overhead of the eBPF activity source per context switch (issue 5), side by side in one
# run: `perf bench sched pipe` pinned to CPU 0 (two context switches per op), alternating
# rounds without and with the programs attached. Needs root, kernel BTF and Debian's
# linux-perf. Prints ns/op for each round, the medians, and ns added per switch; then one
# more attached round with kernel.bpf_stats_enabled=1 for the programs' own ns per run
# (the stats themselves cost time, so they are off while timing).
#
#   scripts/bpf-overhead.sh [rounds] [loops]      (defaults: 5 rounds, 200000 loops)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
loops=${2:-200000}
command -v perf >/dev/null || { echo "perf not found (Debian: linux-perf)" >&2; exit 1; }

cargo build --release -q -p kepler-bpf --features libbpf --example attach
attach=${CARGO_TARGET_DIR:-target}/release/examples/attach

old_stats=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)
sysctl -qw kernel.bpf_stats_enabled=0 || true
fifo=$(mktemp -u)
mkfifo "$fifo"
holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  rm -f "$fifo" "$fifo.out"
  sysctl -qw kernel.bpf_stats_enabled="$old_stats" 2>/dev/null || true
}
trap cleanup EXIT

bench() {
  # usecs/op from perf's summary line, as ns.
  taskset -c 0 perf bench sched pipe -l "$loops" 2>/dev/null |
    awk '/usecs\/op/ { printf "%.1f\n", $1 * 1000 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Attaches, runs `bench`, detaches; the example's report lands in $fifo.out.
attached_bench() {
  exec 3<>"$fifo"
  "$attach" --interval-ms 1000 <"$fifo" >"$fifo.out" 3>&- &
  holder=$!
  until grep -q attached "$fifo.out" 2>/dev/null; do
    kill -0 "$holder" 2>/dev/null || { cat "$fifo.out"; exit 1; }
    sleep 0.05
  done
  bench
  exec 3>&-
  wait "$holder" || true
  holder=""
}

off=() on=()
for r in $(seq "$rounds"); do
  off+=("$(bench)")
  on+=("$(attached_bench)")
  echo "round $r: without ${off[-1]} ns/op, with ${on[-1]} ns/op"
done
m_off=$(printf '%s\n' "${off[@]}" | median)
m_on=$(printf '%s\n' "${on[@]}" | median)
awk -v a="$m_off" -v b="$m_on" 'BEGIN {
  printf "median: without %.1f ns/op, with %.1f ns/op: +%.1f ns per context switch (%.2f%% slowdown)\n",
    a, b, (b - a) / 2, (b - a) / a * 100 }'
sysctl -qw kernel.bpf_stats_enabled=1 || true
stats_round=$(attached_bench)
echo "with kernel.bpf_stats_enabled=1: $stats_round ns/op; the attach example reported:"
cat "$fifo.out"
