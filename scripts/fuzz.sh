#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target of fuzz/ (or the named ones) under libFuzzer for SECONDS each
# (issue 14). Each run starts from the committed seeds in fuzz/corpus/<target> (never written
# to: new units go to a scratch corpus) and prints one line per target: seconds, executions,
# executions per second, new corpus units, crashes. libFuzzer stops a target at its first
# crash, timeout (10 s on one input) or out-of-memory; the input is copied to
# fuzz/artifacts/<target>/ and the script exits 1. Fix the parser, then add the input to
# fuzz/corpus/<target>/ so plain `cargo test` replays it from then on.
#
# usage: scripts/fuzz.sh [SECONDS (60)] [TARGET...]
# env:   FUZZ_TARGET_DIR: build directory (~/.cache/kepler-rs/fuzz-target, what CI caches);
#        FUZZ_ARGS: extra libFuzzer flags (e.g. "-jobs=2" or "-max_len=65536").
# needs: cargo-fuzz (`cargo install cargo-fuzz --locked`). No nightly toolchain: the
#        sanitizer flags cargo-fuzz passes are unlocked on stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/kepler-rs/fuzz-target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 2
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

# One build for all targets: they share every dependency. Release with debug assertions
# (overflow checks on) and AddressSanitizer, cargo-fuzz's defaults.
start=$SECONDS
nice cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir"
echo "build: $((SECONDS - start)) s"
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
printf '%-20s %6s %12s %9s %6s %8s\n' target seconds executions exec/s new crashes
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "$t: no seed corpus fuzz/corpus/$t" >&2; exit 2; }
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  t0=$SECONDS
  rc=0
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  nice "$bin_dir/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" ${FUZZ_ARGS:-} \
    "$work/$t/corpus" "fuzz/corpus/$t" >"$work/$t/log" 2>&1 || rc=$?
  stat() { sed -n "s/^stat::$1: *//p" "$work/$t/log" | tail -1; }
  crashes=$(find "$work/$t/artifacts" -type f | wc -l)
  printf '%-20s %6s %12s %9s %6s %8s\n' "$t" "$((SECONDS - t0))" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(stat new_units_added)" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed+=("$t")
    mkdir -p "fuzz/artifacts/$t"
    cp "$work/$t/artifacts/"* "fuzz/artifacts/$t/" 2>/dev/null || true
    echo "--- $t exited $rc; inputs kept in fuzz/artifacts/$t/; end of its log:" >&2
    tail -40 "$work/$t/log" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
