#!/usr/bin/env bash
# Accuracy harness (issue 4), longer than the test suite's run: real duty-cycle workloads and a
# storm of short-lived children in cgroups, a fake RAPL package driven by a power model of the
# machine's real CPU time, and kepler's attributed shares against the kernel's CPU accounting,
# with Go Kepler's method (processes alive at each scan only) beside them.
#
#   sudo scripts/accuracy.sh [SECONDS] [procfs|bpf|both]    # defaults: 60, both
#
# The same bar holds for both activity sources (issue 14); `bpf` builds kepler with
# `--features bpf` and fails rather than skipping when eBPF cannot load (REQUIRE_BPF=1).
# Needs root and a cgroup v2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified). Prints the
# per-workload table; exits non-zero when a workload is off by more than 2% of active energy.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
which="${2:-both}"
export KEPLER_ACCURACY_SECS="$secs" REQUIRE_CGROUPS=1 REQUIRE_BPF=1
run() {
  local source=$1
  shift
  KEPLER_ACCURACY_SOURCE="$source" cargo test --release -p kepler-bin "$@" --test accuracy -- \
    --exact attribution_matches_ground_truth_under_churn_issue_4 --nocapture
}
case "$which" in
  procfs) run procfs ;;
  bpf) run bpf --features bpf ;;
  both) run procfs && run bpf --features bpf ;;
  *) echo "usage: $0 [SECONDS] [procfs|bpf|both]" >&2; exit 2 ;;
esac
