#!/usr/bin/env bash
# The README's first command: the demonstration on an embedded `cloakfs serve` it starts itself.
#   scripts/demo.sh ./Vault      mounts the demo folder at ./Vault until Ctrl-C (uploads, unmounts, stops)
#   scripts/demo.sh              ends with a tampered blob being refused instead of mounting
# Installs what it needs that is missing (as root, with apt-get, saying which): gcc and libc6-dev to build
# AWS-LC, fuse3 for the mount. Then builds and runs `cloakfs demo` (release).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for package in gcc libc6-dev ca-certificates fuse3; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "demo.sh: installing what the demo needs: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "demo.sh: the demo needs these Debian packages: ${missing[*]}" >&2
    echo "demo.sh: run as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi
exec cargo run --release --locked --quiet -- demo "$@"
