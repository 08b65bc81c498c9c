#!/usr/bin/env bash
# The Prometheus bill (issue 21): what one kepler costs a real Prometheus (Debian's
# `prometheus`) per metrics level, with and without the process fold. For each config, one
# kepler and one Prometheus of its own run side by side for the whole window, all configs at
# once, against the same fake RAPL tree (scripts/fake-rapl.sh) and the same real processes
# (loadgen: N-2 sleeping, 2 busy at 10%; --wake-every MS wakes the sleeping ones on a timer).
#
# kepler ticks every second and Prometheus scrapes it every second, so a 10-minute window puts
# 600 samples in each head series: about what a production head holds at a 15 s scrape (2 to
# 3 hours of head, 480 to 720 samples), and every sample is a new value, as at 15 s. Per config:
#   series     prometheus_tsdb_head_series at the end (kepler's + Prometheus's own scrape
#              series: `up`, `scrape_*`, 5 per target), and series created over the window
#              (prometheus_tsdb_head_series_created_total: churn, e.g. processes that came
#              and went, each a new series);
#   samples    samples per scrape (scrape_samples_scraped);
#   rss_mib    Prometheus's process_resident_memory_bytes at the end, and its peak (VmHWM);
#   b/sample   TSDB bytes per sample: the head written as a block by the admin snapshot API
#              (chunks only, and chunks + index), over that block's numSamples.
# Prints one markdown table.
#
# With --isolate, loadgen runs in a PID namespace of its own (unshare --pid --mount-proc, as
# root) and kepler reads that namespace's procfs: the processes are exactly loadgen's N, with
# no churn from whatever else runs on the machine (/proc/stat stays the host's). Without it,
# kepler sees the whole machine, builds and all: every short-lived process is a new series.
#
# usage: benches/prometheus-bill.sh [--processes N] [--window SECONDS] [--wake-every MS]
#        [--configs "node process all all+top20 ..."] [--interval 1s] [--isolate] [--tiny]
#   --interval  kepler's tick and Prometheus's scrape interval (default 1s)
#   a config is a --metrics level (node, process, container, vm, pod, all), optionally with
#   +topN (exporter.prometheus.process.topN) and/or +minJ (process.minJoules, joules)
#   --tiny    50 processes, 20 s, configs "node all+top5" (CI keeps the script working)
# env: PROFILE=release|debug, KEPLER_BIN / LOADGEN_BIN, PROMETHEUS (default: on PATH),
#      CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

processes=1000
window=600
configs="node process container vm pod all process+top20 all+top20 all+min0.5"
wake=()
tiny=0
interval=1s
isolate=0
while [ $# -gt 0 ]; do
  case "$1" in
    --processes) processes="$2"; shift ;;
    --window) window="$2"; shift ;;
    --configs) configs="$2"; shift ;;
    --wake-every) wake=(--wake-every "$2"); shift ;;
    --interval) interval="$2"; shift ;;
    --isolate) isolate=1 ;;
    --tiny) tiny=1; processes=50; window=20; configs="node all+top5" ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
profile="${PROFILE:-$([ "$tiny" = 1 ] && echo debug || echo release)}"
prometheus="${PROMETHEUS:-$(command -v prometheus || true)}"
[ -n "$prometheus" ] && [ -x "$prometheus" ] || { echo "prometheus not found (Debian package prometheus)" >&2; exit 1; }
. scripts/lib.sh
bench_binaries "$profile"

start_fake_rapl
sleep 0.5

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { # port name -> the value of the first sample of `name` in Prometheus's own /metrics
  curl -sS --max-time 30 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '($1 == n || index($1, n "{") == 1) && v == "" { v = $2 } END { print v }'
}
query() { # port promql -> the first result's value
  curl -sS --max-time 30 "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "nan")'
}

busy=2
[ "$processes" -le 10 ] && busy=0
procfs=/proc
if [ "$isolate" = 1 ]; then
  setpriv --pdeathsig KILL -- unshare --pid --fork --mount-proc --kill-child \
    "$loadgen" --sleeping $((processes - busy)) "${wake[@]}" --busy "$busy" --duty 0.1 --ready-file "$tmp/ready" > /dev/null &
  upid=$!
  pids+=($upid)
  init=""
  for _ in $(seq 1 100); do init=$(pgrep -P "$upid" | head -1 || true); [ -n "$init" ] && break; sleep 0.1; done
  [ -n "$init" ] || { echo "no PID namespace (unshare --pid needs root)" >&2; exit 1; }
  # unshare --fork ignores SIGTERM, and a namespace's init ignores every signal it has no
  # handler for but SIGKILL: kill the init, and unshare and the namespace go with it.
  trap 'kill -KILL "$init" 2>/dev/null || true; cleanup' EXIT
  procfs="/proc/$init/root/proc"
else
  "$loadgen" --sleeping $((processes - busy)) "${wake[@]}" --busy "$busy" --duty 0.1 --ready-file "$tmp/ready" > /dev/null &
  pids+=($!)
fi
for _ in $(seq 1 600); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || { echo "loadgen did not start $processes processes" >&2; exit 1; }
onmachine=$(ls "$procfs" | grep -c '^[0-9]')

declare -A kport pport ppid
for c in $configs; do
  level=${c%%+*}
  args=(--metrics "$level")
  rest=${c#"$level"}
  while [ -n "$rest" ]; do
    rest=${rest#+}
    opt=${rest%%+*}
    rest=${rest#"$opt"}
    case "$opt" in
      top*) args+=(--exporter.prometheus.process.top-n "${opt#top}") ;;
      min*) args+=(--exporter.prometheus.process.min-joules "${opt#min}") ;;
      *) echo "config $c: unknown option $opt" >&2; exit 2 ;;
    esac
  done
  kp=$(free_port)
  "$kepler" --host.sysfs "$tmp/sys" --host.procfs "$procfs" --monitor.interval "$interval" --web.listen-address "127.0.0.1:$kp" \
    "${args[@]}" > /dev/null 2> "$tmp/kepler-$c.log" &
  pids+=($!)
  pp=$(free_port)
  mkdir -p "$tmp/prom-$c"
  cat > "$tmp/prom-$c/prometheus.yml" <<EOF
global:
  scrape_interval: $interval
  scrape_timeout: $interval
scrape_configs:
  - job_name: kepler
    static_configs:
      - targets: ['127.0.0.1:$kp']
EOF
  "$prometheus" --config.file "$tmp/prom-$c/prometheus.yml" --storage.tsdb.path "$tmp/prom-$c/data" \
    --web.listen-address "127.0.0.1:$pp" --web.enable-admin-api --log.level warn \
    > "$tmp/prom-$c.log" 2>&1 &
  ppid[$c]=$!
  pids+=($!)
  kport[$c]=$kp
  pport[$c]=$pp
done

echo "== $processes loadgen processes ($onmachine in kepler's procfs); configs: $configs; window ${window}s"
sleep "$window"

rows=()
for c in $configs; do
  pp=${pport[$c]}
  series=$(metric "$pp" prometheus_tsdb_head_series)
  appended=$(metric "$pp" prometheus_tsdb_head_samples_appended_total)
  rss=$(metric "$pp" process_resident_memory_bytes)
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/${ppid[$c]}/status")
  scraped=$(query "$pp" 'scrape_samples_scraped{job="kepler"}')
  up=$(query "$pp" "avg_over_time(up{job=\"kepler\"}[${window}s])")
  created=$(metric "$pp" prometheus_tsdb_head_series_created_total)
  snap=$(curl -sS --max-time 120 -XPOST "http://127.0.0.1:$pp/api/v1/admin/tsdb/snapshot" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["name"])')
  read -r chunks index nsamples nseries < <(python3 - "$tmp/prom-$c/data/snapshots/$snap" <<'EOF'
import json, os, sys
root = sys.argv[1]
chunks = index = samples = series = 0
for b in os.listdir(root):
    d = os.path.join(root, b)
    if not os.path.isfile(os.path.join(d, "meta.json")):
        continue
    m = json.load(open(os.path.join(d, "meta.json")))
    samples += m["stats"]["numSamples"]
    series += m["stats"]["numSeries"]
    index += os.path.getsize(os.path.join(d, "index"))
    for f in os.listdir(os.path.join(d, "chunks")):
        chunks += os.path.getsize(os.path.join(d, "chunks", f))
print(chunks, index, samples, series)
EOF
  )
  row=$(awk -v c="$c" -v series="$series" -v scraped="$scraped" -v rss="$rss" -v hwm="$hwm" \
    -v chunks="$chunks" -v idx="$index" -v ns="$nsamples" -v appended="$appended" -v up="$up" -v created="$created" \
    'BEGIN { printf "| %-18s | %8d | %8d | %8d | %8.1f | %8.1f | %6.2f | %6.2f | %11d | %5.3f |", c, series, created, scraped,
             rss / 1048576, hwm / 1024, chunks / ns, (chunks + idx) / ns, appended, up }')
  echo "$row"
  rows+=("$row")
done

echo
echo "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $("$prometheus" --version 2>&1 | head -1); kepler $profile; $processes loadgen processes ($onmachine in kepler's procfs$([ "$isolate" = 1 ] && echo ', own PID namespace')); window ${window}s; kepler tick and scrape every $interval; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| config             | head series | series created | samples/scrape | rss_mib | peak_rss_mib | chunk B/sample | +index B/sample | samples appended | up |"
echo "|--------------------|--------:|--------:|--------:|--------:|--------:|------:|------:|------------:|------:|"
printf '%s\n' "${rows[@]}"
