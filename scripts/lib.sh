# Shared by the measuring scripts (source it, don't run it): a scratch directory, background
# processes that die with the script, and the fake RAPL tree they measure against.
#
#   . scripts/lib.sh      # sets $tmp and an EXIT trap; add background pids to pids+=()
#   start_fake_rapl       # scripts/fake-rapl.sh writing $tmp/sys, in the background

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_fake_rapl() {
  scripts/fake-rapl.sh "$tmp/sys" 2>/dev/null &
  pids+=($!)
}
