#!/usr/bin/env bash
# Accuracy harness (issue 4), longer than the test suite's run: real duty-cycle workloads and a
# storm of short-lived children in cgroups, a fake RAPL package driven by a power model of the
# machine's real CPU time, and kepler's attributed shares against the kernel's CPU accounting,
# with Go Kepler's method (processes alive at each scan only) beside them.
#
#   sudo scripts/accuracy.sh [SECONDS]    # default 60
#
# Needs root and a cgroup v2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified). Prints the
# per-workload table; exits non-zero when a workload is off by more than 2% of active energy.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
export KEPLER_ACCURACY_SECS="$secs" REQUIRE_CGROUPS=1
exec cargo test --release -p kepler-bin --test accuracy -- \
    --exact attribution_matches_ground_truth_under_churn_issue_4 --nocapture
