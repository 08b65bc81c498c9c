#!/usr/bin/env bash
# A fake powercap tree for running exporters off RAPL hardware: package-0 with a dram sub-zone,
# laid out as sysfs does (class/powercap/intel-rapl:0, intel-rapl:0/intel-rapl:0:0 and its
# top-level link). Creates it, then advances energy_uj once a second at fixed watts, with
# wraps, until killed. Point exporters at DIR (--host.sysfs, --path.sysfs) or at
# DIR/class/powercap (Scaphandre's SCAPHANDRE_POWERCAP_PATH).
#
# usage: scripts/fake-rapl.sh DIR [PACKAGE_WATTS (40)] [DRAM_WATTS (6)]
set -euo pipefail
dir="${1:?usage: fake-rapl.sh DIR [PACKAGE_WATTS] [DRAM_WATTS]}"
pkg_w="${2:-40}"
dram_w="${3:-6}"
max=262143328850

pkg="$dir/class/powercap/intel-rapl:0"
dram="$pkg/intel-rapl:0:0"
mkdir -p "$dram"
echo package-0 > "$pkg/name"
echo dram > "$dram/name"
for z in "$pkg" "$dram"; do
  echo "$max" > "$z/max_energy_range_uj"
  echo 1 > "$z/enabled"
done
ln -sfn "intel-rapl:0/intel-rapl:0:0" "$dir/class/powercap/intel-rapl:0:0"

# Fixed-width values written in place (`1<>` opens without truncating): exporters keep the
# files open and re-read them, so they must never see an empty or half-written file.
pkg_uj=$((max - 5000000)); dram_uj=1000000
write() { printf '%020d\n' "$pkg_uj" 1<> "$pkg/energy_uj"; printf '%020d\n' "$dram_uj" 1<> "$dram/energy_uj"; }
write
echo "fake RAPL tree ready at $dir" >&2
while :; do
  sleep 1
  pkg_uj=$(((pkg_uj + pkg_w * 1000000) % max))
  dram_uj=$(((dram_uj + dram_w * 1000000) % max))
  write
done
