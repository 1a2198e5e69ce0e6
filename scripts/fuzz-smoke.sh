#!/usr/bin/env bash
# A short fuzz smoke run: every target in fuzz/ for CLOAKFS_FUZZ_SECONDS (default 30) seconds under
# libFuzzer and AddressSanitizer, which needs a nightly Rust, from the committed seeds (fuzz/seeds/TARGET).
# The targets are the bytes a hostile server controls: metadata, PROPFIND and OCS answers, blobs (README,
# "Benchmarks and fuzzing"); scripts/fuzz.sh runs one target for longer with cargo-fuzz.
#
# The targets are built here with the flags cargo-fuzz passes (coverage instrumentation, --cfg fuzzing,
# AddressSanitizer, debug assertions; for the host target so build scripts stay uninstrumented) and run
# directly, so CI does not build cargo-fuzz from source on every run; as many targets run at once as there
# are cores (each still for its full time). A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/. Where no nightly toolchain can be installed, the run says so loudly and
# does not pretend to have fuzzed (exit 0, as .ci/run marks this step optional).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${CLOAKFS_FUZZ_SECONDS:-30}

skip() {
  printf '\n!!! FUZZ SMOKE RUN NOT DONE: %s\n!!! (the other checks and the tests still ran)\n\n' "$*" >&2
  exit 0
}

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 \
    || skip "no nightly Rust toolchain here, and 'rustup toolchain install nightly' failed"
fi
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address -Cdebug-assertions \
-Coverflow-checks"
# Not --locked: like cargo-fuzz, the fuzz workspace resolves against the main crate as it is now.
cargo +nightly build --profile smoke --target "$host" --bins
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^cloakfs-fuzz$')
# One target per core at a time (libFuzzer runs one process per target): each still runs its full time.
fuzz_one() {
  local target=$1 status=0
  mkdir -p "corpus/$target" "artifacts/$target"
  local seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  "target/$host/smoke/$target" "corpus/$target" "${seeds[@]}" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"artifacts/$target.log" 2>&1 || status=$?
  {
    echo "fuzz: $target for ${seconds} s"
    grep -E '^(stat::number_of_executed_units|==|SUMMARY|Done)' "artifacts/$target.log" || true
  }
  # A crash makes libFuzzer exit non-zero and write the input to artifacts/TARGET/: fail on either.
  if [ "$status" != 0 ] || compgen -G "artifacts/$target/*" >/dev/null; then
    tail -40 "artifacts/$target.log" >&2
    echo "fuzz: $target found a crashing input (exit $status): $(ls artifacts/"$target")" >&2
    return 1
  fi
  rm -f "artifacts/$target.log"
}
export -f fuzz_one
export host seconds
count=$(printf '%s\n' $targets | grep -c .) || count=0
cores=$(nproc)
printf '%s\n' $targets | xargs -P "$cores" -I{} bash -c 'fuzz_one "$1"' _ {} \
  || { echo "fuzz: a target failed (above)" >&2; exit 1; }
[ "$count" -gt 0 ] || { echo "fuzz: no target found in fuzz/Cargo.toml" >&2; exit 1; }
echo "fuzz: no crash in $count targets x ${seconds} s"
