#!/usr/bin/env bash
# The README's first command: the demonstration on an embedded `cloakfs serve` it starts itself.
#   scripts/demo.sh ./Vault      mounts the demo folder at ./Vault until Ctrl-C (uploads, unmounts, stops)
#   scripts/demo.sh              ends with a tampered blob being refused instead of mounting
# Installs what it needs that is missing (as root, with apt-get, saying which): gcc and libc6-dev to build
# AWS-LC, fuse3 for the mount. Then builds and runs `cloakfs demo` (release).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/need-packages.sh demo.sh gcc libc6-dev ca-certificates fuse3
exec cargo run --release --locked --quiet -- demo "$@"
