#!/usr/bin/env bash
# CPU used by `kepler top` at a 1 s refresh with N live processes (default 1,000 sleeping
# ones) on the fake RAPL tree: runs it in a detached tmux window (a real terminal, drawn
# every refresh) for SECS seconds (default 60) and reads its utime+stime from /proc. Local
# mode first, then remote mode against the exporter (whose own CPU is not counted).
#
# usage: scripts/top-cpu.sh [path/to/kepler] [N] [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/kepler}")
n="${2:-1000}"
secs="${3:-60}"
. scripts/lib.sh
sock="$tmp/tmux.sock"
tmx() { tmux -S "$sock" -f /dev/null "$@"; }
trap 'tmx kill-server 2>/dev/null || true; cleanup' EXIT
start_fake_rapl
for _ in $(seq 1 "$n"); do sleep 3600 & pids+=($!); done
sleep 1
echo "live processes: $(ls /proc | grep -c '^[0-9]'), $(nproc) CPUs, refresh 1 s, ${secs} s measured"

# Fields 14 and 15 of /proc/PID/stat: user and system time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() {
  local label="$1"; shift
  tmx new-session -d -s top -x 160 -y 50 "exec env LANG=C.UTF-8 $*"
  local pid
  pid=$(tmx display -p -t top '#{pane_pid}')
  sleep 5 # start-up: sources opened, first ticks drawn
  local t0 w0 t1 w1
  t0=$(cpu_ticks "$pid"); w0=$(date +%s.%N)
  sleep "$secs"
  t1=$(cpu_ticks "$pid"); w1=$(date +%s.%N)
  tmx capture-pane -p -t top | head -4 | sed 's/^/    /'
  tmx kill-server
  awk -v a="$t0" -v b="$t1" -v w0="$w0" -v w1="$w1" -v hz="$(getconf CLK_TCK)" -v l="$label" \
    'BEGIN { c = (b - a) / hz; printf "%s: %.2f s CPU in %.1f s = %.2f%% of one core\n", l, c, w1 - w0, 100 * c / (w1 - w0) }'
}

measure "local (kepler top --host.sysfs ...)" \
  "$bin" top --host.sysfs "$tmp/sys" --cpu.preferred-meters=rapl --refresh=1s

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --host.sysfs "$tmp/sys" --cpu.preferred-meters=rapl --monitor.interval=1s \
  --web.listen-address "127.0.0.1:$port" 2> "$tmp/kepler.log" &
pids+=($!)
sleep 2
measure "remote (kepler top --url ...)" \
  "$bin" top --url "http://127.0.0.1:$port/metrics" --refresh=1s
