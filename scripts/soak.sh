#!/usr/bin/env bash
# Churn soak (issue 9): the kepler binary on a fake RAPL tree and the real /proc while loadgen
# spawns SPAWNS short-lived processes per second, for SECONDS. Every 5 s it scrapes /metrics
# and samples kepler's RSS, the workloads it tracks (kepler_exporter_processes) and the live
# processes. After a warm-up (a third of the run, at most 120 s) it asserts:
#   - RSS growth (highest sample minus the sample at the end of the warm-up) <= 1 MiB;
#   - tracked running <= live processes + one interval of spawns, and tracked terminated
#     <= spawns per second x (TTL + two intervals + 1 s) x 1.5: state stays bounded;
#   - no ERROR line and no panic in kepler's log.
# Prints the samples and a summary; exits 1 when an assertion fails.
#
# usage: scripts/soak.sh [SECONDS (1800)]
# env:   PROFILE=release|debug (release), SPAWNS (50), CHURN_LIFE_MS (1000), INTERVAL (1s),
#        KEPLER_BIN / LOADGEN_BIN to use prebuilt binaries, CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-1800}"
profile="${PROFILE:-release}"
spawns="${SPAWNS:-50}"
life_ms="${CHURN_LIFE_MS:-1000}"
interval="${INTERVAL:-1s}"
. scripts/lib.sh
bench_binaries "$profile"

start_fake_rapl
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$kepler" --host.sysfs "$tmp/sys" --web.listen-address "127.0.0.1:$port" \
  --monitor.interval "$interval" --cpu.preferred-meters rapl 2> "$tmp/kepler.log" &
kpid=$!
pids+=("$kpid")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$loadgen" --churn "$spawns" --churn-life "$life_ms" --churn-busy 5 --duration "$seconds" > "$tmp/loadgen.log" &
lpid=$!
pids+=("$lpid")

interval_s=$(awk -v i="$interval" 'BEGIN { v = i + 0; if (i ~ /ms$/) v /= 1000; print v }')
# Kepler's default terminated TTL is two intervals; a process is seen terminated up to one
# interval after it exits, and loadgen catches up to one second of spawns after a stall.
max_terminated=$(awk -v s="$spawns" -v i="$interval_s" 'BEGIN { printf "%d", s * (4 * i + 1) * 1.5 + 10 }')
warmup=$(( seconds / 3 < 120 ? seconds / 3 : 120 ))
echo "soak: ${seconds}s, $spawns spawns/s living ${life_ms} ms, monitor.interval $interval, warm-up ${warmup}s ($kepler)"
printf '%6s %9s %8s %11s %6s\n' t_s rss_kib running terminated live
start=$SECONDS
warm_rss=""; max_rss=0; max_running=0; max_term=0; fail=0; samples=0
while [ $((SECONDS - start)) -lt "$seconds" ]; do
  sleep 5
  t=$((SECONDS - start))
  kill -0 "$kpid" 2>/dev/null || { echo "kepler died"; cat "$tmp/kepler.log"; exit 1; }
  body=$(curl -fsS "http://127.0.0.1:$port/metrics") || { echo "scrape failed at ${t}s"; fail=1; continue; }
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$kpid/status")
  running=$(awk '/^kepler_exporter_processes\{.*state="running"/ { print $NF }' <<< "$body")
  term=$(awk '/^kepler_exporter_processes\{.*state="terminated"/ { print $NF }' <<< "$body")
  procs=(/proc/[0-9]*); live=${#procs[@]}
  printf '%6d %9d %8d %11d %6d\n' "$t" "$rss" "$running" "$term" "$live"
  samples=$((samples + 1))
  if [ "$t" -ge "$warmup" ]; then
    [ -z "$warm_rss" ] && warm_rss=$rss
    [ "$rss" -gt "$max_rss" ] && max_rss=$rss
    [ "$running" -gt "$max_running" ] && max_running=$running
    [ "$term" -gt "$max_term" ] && max_term=$term
    if [ "$running" -gt $((live + spawns * ${interval_s%.*} + spawns)) ]; then
      echo "FAIL: $running running workloads tracked with $live live processes"; fail=1
    fi
    if [ "$term" -gt "$max_terminated" ]; then
      echo "FAIL: $term terminated workloads tracked (bound $max_terminated)"; fail=1
    fi
  fi
done
wait "$lpid" || true
spawned=$(grep -o '[0-9]* churn children' "$tmp/loadgen.log" | cut -d' ' -f1 || echo 0)
growth=$((max_rss - ${warm_rss:-0}))
echo "summary: ${spawned:-?} processes spawned; RSS after warm-up ${warm_rss:-?} KiB, peak ${max_rss} KiB, growth ${growth} KiB;" \
  "max tracked running $max_running, terminated $max_term (bound $max_terminated)"
if [ -z "$warm_rss" ]; then echo "FAIL: no sample after the warm-up"; fail=1; fi
if [ "$growth" -gt 1024 ]; then echo "FAIL: RSS grew by $growth KiB after the warm-up (limit 1024)"; fail=1; fi
if grep -Eq 'ERROR|panicked' "$tmp/kepler.log"; then
  echo "FAIL: errors in kepler's log:"; grep -E 'ERROR|panicked' "$tmp/kepler.log" | head -20; fail=1
fi
ticks=$(awk '/^kepler_exporter_ticks_total/ { print $NF }' <<< "$body")
echo "kepler: $ticks ticks, log $(wc -l < "$tmp/kepler.log") lines"
[ "$fail" = 0 ] && echo "soak: ok" || { echo "soak: FAILED"; exit 1; }
