#!/usr/bin/env bash
# Overhead of `kepler run` on the command it measures (issue 18): `true`, and a 10 s CPU
# burner, each run alone and under `kepler run`, with hyperfine (repeated runs, mean ± σ of
# wall time, plus user and system CPU of the whole process tree). The difference between the
# two rows of a pair is kepler's cost: start-up (config, meter and activity source selection,
# the cgroup), one reading at start and one at exit, one per interval in between, and the
# report.
#
# usage: benches/run-overhead.sh [KEPLER (target/release/kepler)] [RUNS_TRUE (50)] [RUNS_BURN (5)]
# Extra `kepler run` flags come from $KEPLER_RUN_FLAGS (e.g. --host.sysfs=/tmp/fake-rapl).
set -euo pipefail
kepler="${1:-${CARGO_TARGET_DIR:-target}/release/kepler}"
runs_true="${2:-50}"
runs_burn="${3:-5}"
flags="${KEPLER_RUN_FLAGS:-}"
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ -x "$kepler" ] || { echo "no kepler binary at $kepler (cargo build --release)" >&2; exit 1; }

# What it measures with (meter, accounting), once, for the record.
"$kepler" run $flags -- true 2>&1 | head -1 >&2

hyperfine -N --warmup 5 --runs "$runs_true" --export-markdown /dev/stdout \
  "true" \
  "$kepler run $flags -- true"

burn="timeout 10 sh -c 'while :; do :; done'"
hyperfine --warmup 0 --runs "$runs_burn" -i --export-markdown /dev/stdout \
  "$burn" \
  "$kepler run $flags -- $burn"
