#!/usr/bin/env bash
# Side by side (issue 9): kepler, Scaphandre 1.0 and node_exporter's rapl collector on one
# machine, in one run, against the same fake RAPL tree (scripts/fake-rapl.sh) and the same
# real processes (loadgen: N-2 sleeping, 2 busy at 10%; --wake-every MS makes the sleeping
# ones wake on a timer, like daemons, instead of sleeping through). For each size and exporter:
#   cpu_s/min  CPU time (user+sys, /proc/<pid>/stat) per minute over the measuring window,
#              while scraped every 5 s as Prometheus would (with `Accept-Encoding: gzip`,
#              what Prometheus sends; --window-encoding identity for plain scrapes);
#   rss_mib    peak RSS (VmHWM) at the end;
#   p50/p99    scrape latency (curl time_total) over a burst of back-to-back scrapes on one
#              keep-alive connection per 10 (at most 60 s of them), in turn 10 plain ones
#              (p50/p99) and 10 gzip ones as Prometheus asks (gz_p50/gz_p99);
#   scrape     /metrics size, plain and as sent to a gzip client, and its number of samples.
# Prints one markdown table. Every exporter runs with its defaults except where it must be
# pointed at the fake tree (kepler --host.sysfs; Scaphandre --vm and SCAPHANDRE_POWERCAP_PATH,
# its documented override; node_exporter --path.sysfs with only the rapl collector).
#
# Scaphandre panics at start when /proc/modules is missing (kernels without module support,
# such as this VM's); then a small LD_PRELOAD shim, built here with cc, shows it a one-line
# modules file instead. Nothing else of Scaphandre is touched.
#
# usage: benches/compare-peers.sh [--tiny] [--sizes "1000 3000 10000"] [--window SECONDS]
#        [--exporters "kepler scaphandre node_exporter"] [--window-encoding gzip|identity]
#        [--wake-every MS]
#   --tiny    one size of 50 processes, 10 s windows, debug builds, and peers that are not
#             installed are skipped with a line (what CI runs, to keep the script working)
# env: PROFILE=release|debug, SCAPHANDRE (default: on PATH, then
#      ~/.cache/kepler-rs/scaphandre/bin/scaphandre, as installed by
#      `cargo install scaphandre --version '^1.0' --no-default-features --features prometheus,json --root ~/.cache/kepler-rs/scaphandre`),
#      NODE_EXPORTER (default: prometheus-node-exporter or node_exporter on PATH),
#      KEPLER_BIN / LOADGEN_BIN for prebuilt binaries, CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

tiny=0
sizes="1000 3000 10000"
window=60
burst=200
only=""
window_encoding=gzip
wake=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1; sizes=50; window=10; burst=6 ;;
    --sizes) sizes="$2"; shift ;;
    --window) window="$2"; shift ;;
    --exporters) only="$2"; shift ;;
    --wake-every) wake=(--wake-every "$2"); shift ;;
    --window-encoding)
      window_encoding="$2"; shift
      case "$window_encoding" in gzip|identity) ;; *) echo "--window-encoding: gzip or identity" >&2; exit 2 ;; esac ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
profile="${PROFILE:-$([ "$tiny" = 1 ] && echo debug || echo release)}"
. scripts/lib.sh
bench_binaries "$profile"
scaphandre="${SCAPHANDRE:-$(command -v scaphandre || echo "$HOME/.cache/kepler-rs/scaphandre/bin/scaphandre")}"
node_exporter="${NODE_EXPORTER:-$(command -v prometheus-node-exporter || command -v node_exporter || true)}"

wanted() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
exporters=()
wanted kepler && exporters+=(kepler)
if wanted scaphandre; then
  if [ -x "$scaphandre" ]; then exporters+=(scaphandre); else
    [ "$tiny" = 1 ] || { echo "Scaphandre not found (set SCAPHANDRE)" >&2; exit 1; }
    echo "skipping scaphandre: not installed (see the usage in $0)"
  fi
fi
if wanted node_exporter; then
  if [ -n "$node_exporter" ] && [ -x "$node_exporter" ]; then exporters+=(node_exporter); else
    [ "$tiny" = 1 ] || { echo "node_exporter not found (Debian prometheus-node-exporter)" >&2; exit 1; }
    echo "skipping node_exporter: not installed (Debian package prometheus-node-exporter)"
  fi
fi
[ ${#exporters[@]} -gt 0 ] || { echo "--exporters: none of kepler, scaphandre, node_exporter" >&2; exit 2; }

start_fake_rapl
sleep 0.5

preload=()  # VAR=value words for env
if [[ " ${exporters[*]} " == *" scaphandre "* ]] && [ ! -e /proc/modules ]; then
  cat > "$tmp/modules-shim.c" <<'EOF'
/* Answers opens of /proc/modules with $FAKE_PROC_MODULES; everything else passes through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
static const char *swap(const char *p) {
  const char *fake = getenv("FAKE_PROC_MODULES");
  return (fake && p && strcmp(p, "/proc/modules") == 0) ? fake : p;
}
#define OPEN(name) int name(const char *p, int flags, ...) { \
    static int (*real)(const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, #name); \
    va_list ap; va_start(ap, flags); int m = va_arg(ap, int); va_end(ap); \
    return real(swap(p), flags, m); }
#define OPENAT(name) int name(int d, const char *p, int flags, ...) { \
    static int (*real)(int, const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, #name); \
    va_list ap; va_start(ap, flags); int m = va_arg(ap, int); va_end(ap); \
    return real(d, swap(p), flags, m); }
OPEN(open) OPEN(open64) OPENAT(openat) OPENAT(openat64)
EOF
  cc -shared -fPIC -O2 -o "$tmp/modules-shim.so" "$tmp/modules-shim.c" -ldl
  echo 'intel_rapl_common 40960 1 intel_rapl_msr, Live 0x0000000000000000' > "$tmp/modules"
  preload=(LD_PRELOAD="$tmp/modules-shim.so" FAKE_PROC_MODULES="$tmp/modules")
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_exporter() { # name port -> runs it in the background; sets epid
  local name=$1 port=$2
  case "$name" in
    kepler)
      "$kepler" --host.sysfs "$tmp/sys" --web.listen-address "127.0.0.1:$port" \
        > /dev/null 2> "$tmp/$name.log" & ;;
    scaphandre)
      env "${preload[@]}" SCAPHANDRE_POWERCAP_PATH="$tmp/sys/class/powercap" \
        "$scaphandre" --vm prometheus -a 127.0.0.1 -p "$port" > "$tmp/$name.log" 2>&1 & ;;
    node_exporter)
      "$node_exporter" --path.sysfs="$tmp/sys" --collector.disable-defaults --collector.rapl \
        --web.listen-address="127.0.0.1:$port" > "$tmp/$name.log" 2>&1 & ;;
  esac
  epid=$!
}

scrape() { # port [encoding] -> prints "seconds bytes"; the body (as sent) goes to $tmp/body
  # gzip: the header Prometheus sends; the body is not decoded, so bytes are what was sent.
  local enc=()
  [ "${2:-identity}" = gzip ] && enc=(-H 'Accept-Encoding: gzip')
  curl -sS "${enc[@]}" -o "$tmp/body" -w '%{time_total} %{size_download}\n' --max-time 60 "http://127.0.0.1:$1/metrics"
}

burst_scrapes() { # port encoding count -> one "seconds bytes" line per scrape, one connection
  local url="http://127.0.0.1:$1/metrics" args=() i
  [ "$2" = gzip ] && args=(-H 'Accept-Encoding: gzip')
  for i in $(seq 1 "$3"); do args+=(-o /dev/null "$url"); done
  curl -sS -w '%{time_total} %{size_download}\n' --max-time 120 "${args[@]}"
}

percentile() { # p file -> nearest-rank percentile of the numbers in file
  sort -g "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100); if (i < NR * p / 100) i++; if (i < 1) i = 1; print v[i] }'
}

rows=()
for n in $sizes; do
  busy=2
  [ "$n" -le 10 ] && busy=0
  "$loadgen" --sleeping $((n - busy)) "${wake[@]}" --busy "$busy" --duty 0.1 --ready-file "$tmp/ready" > /dev/null &
  lpid=$!
  pids+=("$lpid")
  for _ in $(seq 1 600); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
  [ -e "$tmp/ready" ] || { echo "loadgen did not start $n processes" >&2; exit 1; }
  procs=$(ls /proc | grep -c '^[0-9]')
  echo "== $n loadgen processes ($procs on the machine)"
  for name in "${exporters[@]}"; do
    port=$(free_port)
    start_exporter "$name" "$port"
    pids+=("$epid")
    ok=0
    for _ in $(seq 1 300); do
      if scrape "$port" > /dev/null 2>&1 && [ -s "$tmp/body" ]; then ok=1; break; fi
      kill -0 "$epid" 2>/dev/null || break
      sleep 0.2
    done
    if [ "$ok" = 0 ]; then echo "$name did not serve /metrics:" >&2; tail -20 "$tmp/$name.log" >&2; exit 1; fi
    # Warm-up: kepler's first ticks, Scaphandre's first records.
    sleep 5
    scrape "$port" "$window_encoding" > /dev/null
    c0=$(cpu_ticks "$epid"); t0=$(date +%s.%N)
    end=$(( SECONDS + window ))
    while [ "$SECONDS" -lt "$end" ]; do
      scrape "$port" "$window_encoding" > /dev/null
      sleep 5
    done
    c1=$(cpu_ticks "$epid"); t1=$(date +%s.%N)
    # The burst: plain and gzip scrapes in turn, so both see the same renderings.
    : > "$tmp/lat"; : > "$tmp/lat.gz"
    bend=$(( SECONDS + 60 ))
    per=$(( burst < 20 ? burst / 2 : 10 ))
    for _ in $(seq 1 $(( burst / (2 * per) ))); do
      [ "$SECONDS" -lt "$bend" ] || break
      burst_scrapes "$port" gzip "$per" >> "$tmp/lat.gz"
      burst_scrapes "$port" identity "$per" >> "$tmp/lat"
    done
    scrape "$port" gzip > /dev/null
    scrape "$port" > /dev/null
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$epid/status")
    samples=$(grep -vc '^#' "$tmp/body" || true)
    bytes=$(wc -c < "$tmp/body")
    gz_bytes=$(tail -1 "$tmp/lat.gz" | awk '{ print $2 }')
    awk '{ print $1 }' "$tmp/lat" > "$tmp/secs"
    awk '{ print $1 }' "$tmp/lat.gz" > "$tmp/secs.gz"
    p50=$(percentile 50 "$tmp/secs"); p99=$(percentile 99 "$tmp/secs")
    gz50=$(percentile 50 "$tmp/secs.gz"); gz99=$(percentile 99 "$tmp/secs.gz")
    row=$(awk -v n="$n" -v name="$name" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
      -v hwm="$hwm" -v p50="$p50" -v p99="$p99" -v gz50="$gz50" -v gz99="$gz99" -v bytes="$bytes" \
      -v gz_bytes="$gz_bytes" -v samples="$samples" -v k="$(wc -l < "$tmp/secs")" \
      'BEGIN { printf "| %6d | %-13s | %8.2f | %8.1f | %8.1f | %8.1f | %8.1f | %8.1f | %9.0f | %9.0f | %7d | %4d |", n, name,
               (c1 - c0) / hz / (t1 - t0) * 60, hwm / 1024, p50 * 1000, p99 * 1000, gz50 * 1000, gz99 * 1000,
               bytes / 1024, gz_bytes / 1024, samples, k }')
    echo "$row"
    rows+=("$row")
    kill "$epid"; wait "$epid" 2>/dev/null || true
  done
  kill "$lpid"; wait "$lpid" 2>/dev/null || true
  rm -f "$tmp/ready"
done

echo
wakes=never
[ ${#wake[@]} -gt 0 ] && wakes="every ${wake[1]} ms"
echo "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); profile $profile; window ${window}s, scraped every 5 s ($window_encoding); sleeping processes wake $wakes"
echo "| procs  | exporter      | cpu_s/min | rss_mib | p50_ms   | p99_ms   | gz_p50_ms | gz_p99_ms | scrape_kib | gz_kib | samples | n (each) |"
echo "|-------:|---------------|---------:|--------:|---------:|---------:|---------:|---------:|----------:|----------:|--------:|-----:|"
printf '%s\n' "${rows[@]}"
