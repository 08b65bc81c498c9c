#!/usr/bin/env bash
# Runs the kepler binary on a small fake RAPL tree and the real /proc, scrapes /metrics, and
# validates the exposition with Prometheus's own `promtool check metrics`.
#
# usage: scripts/check-exposition.sh [path/to/kepler]
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/debug/kepler}"
command -v promtool >/dev/null || { echo "promtool not found (Debian package 'prometheus')" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT

for z in 0 1; do
  d="$tmp/sys/class/powercap/intel-rapl:$z"
  mkdir -p "$d/intel-rapl:$z:0"
  echo "package-$z" > "$d/name"; echo 262143328850 > "$d/max_energy_range_uj"; echo 1000000 > "$d/energy_uj"
  echo dram > "$d/intel-rapl:$z:0/name"; echo 65712999613 > "$d/intel-rapl:$z:0/max_energy_range_uj"
  echo 500000 > "$d/intel-rapl:$z:0/energy_uj"
done
# Platform meters (issue 7): an ACPI power meter and a PMBus PSU as hwmon chips.
acpi="$tmp/sys/devices/LNXSYSTM:00/ACPI000D:00/hwmon/hwmon0"; mkdir -p "$acpi" "$tmp/sys/class/hwmon"
echo power_meter > "$acpi/name"; echo 212000000 > "$acpi/power1_average"; echo 1000 > "$acpi/power1_average_interval"
ln -s "$acpi" "$tmp/sys/class/hwmon/hwmon0"
psu="$tmp/sys/devices/platform/i2c-7-0058/hwmon/hwmon1"; mkdir -p "$psu"
echo pmbus > "$psu/name"; echo 350000000 > "$psu/power1_input"; echo "PSU1 input" > "$psu/power1_label"
ln -s "$psu" "$tmp/sys/class/hwmon/hwmon1"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --host.sysfs "$tmp/sys" --web.listen-address "127.0.0.1:$port" --monitor.interval 200ms \
  2> "$tmp/kepler.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
# Let the counters advance so watts and process series exist.
for z in 0 1; do echo 6000000 > "$tmp/sys/class/powercap/intel-rapl:$z/energy_uj"; done
sleep 0.6
curl -fsS "http://127.0.0.1:$port/metrics" > "$tmp/metrics.txt"
series=$(grep -vc '^#' "$tmp/metrics.txt")
echo "scraped $series series, $(wc -c < "$tmp/metrics.txt") bytes"
grep -q '^kepler_node_cpu_joules_total{' "$tmp/metrics.txt" || { echo "no node series"; cat "$tmp/kepler.log"; exit 1; }
grep -q '^kepler_process_cpu_joules_total{' "$tmp/metrics.txt" || { echo "no process series"; cat "$tmp/kepler.log"; exit 1; }
grep -q '^kepler_platform_watts{.*source="acpi"' "$tmp/metrics.txt" || { echo "no ACPI platform series"; cat "$tmp/kepler.log"; exit 1; }
grep -q '^kepler_node_power_source_info{.*zone="platform".*source="hwmon"' "$tmp/metrics.txt" || { echo "no hwmon platform zone"; exit 1; }
promtool check metrics < "$tmp/metrics.txt"
echo "promtool check metrics: ok"
