# Shared by the measuring scripts (source it, don't run it): a scratch directory, background
# processes that die with the script, and the fake RAPL tree they measure against.
#
#   . scripts/lib.sh      # sets $tmp and an EXIT trap; add background pids to pids+=()
#   start_fake_rapl       # scripts/fake-rapl.sh writing $tmp/sys, in the background
#   bench_binaries PROFILE  # builds kepler and loadgen (release or debug) unless KEPLER_BIN and
#                           # LOADGEN_BIN name them; sets $kepler and $loadgen

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

bench_binaries() {
  local cargo_profile outdir target="${CARGO_TARGET_DIR:-target}"
  case "$1" in
    release) cargo_profile=release; outdir=release ;;
    debug) cargo_profile=dev; outdir=debug ;;
    *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
  esac
  if [ -z "${KEPLER_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
    cargo build -q --profile "$cargo_profile" -p kepler-bin --bin kepler -p kepler-benches --bin loadgen
  fi
  kepler="${KEPLER_BIN:-$target/$outdir/kepler}"
  loadgen="${LOADGEN_BIN:-$target/$outdir/loadgen}"
}
