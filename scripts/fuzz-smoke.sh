#!/usr/bin/env bash
# A short fuzz smoke run: every target in fuzz/ for CLOAKFS_FUZZ_SECONDS (default 30) seconds with
# cargo-fuzz (libFuzzer and AddressSanitizer), which needs a nightly Rust, from the committed seeds
# (fuzz/seeds/TARGET). The targets are the bytes a hostile server controls: metadata, PROPFIND and OCS
# answers, blobs (README, "Benchmarks and fuzzing"); scripts/fuzz.sh runs one target for longer. A crash fails the run
# and leaves its input in fuzz/artifacts/. Where no nightly toolchain or cargo-fuzz can be installed, the
# run says so loudly and does not pretend to have fuzzed (exit 0, as .ci/run marks this step optional).
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
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet || skip "cargo-fuzz could not be installed ('cargo install cargo-fuzz')"
fi

cargo +nightly fuzz build --release
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds} s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  cargo +nightly fuzz run --release "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | grep -E '^(stat::number_of_executed_units|==|SUMMARY|Done)' || true
  # A crash makes cargo fuzz exit non-zero above (kept in fuzz/artifacts/TARGET): fail on any artifact.
  if compgen -G "artifacts/$target/*" >/dev/null; then
    echo "fuzz: $target found a crashing input: $(ls artifacts/"$target")" >&2
    exit 1
  fi
done
echo "fuzz: no crash in $(cargo +nightly fuzz list | wc -l) targets x ${seconds} s"
