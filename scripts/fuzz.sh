#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while (default: metadata_decode for 300 s). Needs the nightly toolchain
# and cargo-fuzz (cargo install cargo-fuzz). Not part of CI.
#   scripts/fuzz.sh [TARGET] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:-metadata_decode}
seconds=${2:-300}
# The working corpus (corpus/, git-ignored) grows; the committed seeds (seeds/) are only read.
mkdir -p "corpus/$target"
cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
