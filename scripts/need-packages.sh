#!/usr/bin/env bash
# scripts/need-packages.sh WHO PACKAGE...: installs the Debian packages of the list that are missing, with
# apt-get when run as root, saying which and for WHO; else prints the apt-get line to run and fails. Quiet
# when all are installed. Used by scripts/demo.sh and scripts/test-deps.sh.
set -euo pipefail
who=$1
shift
missing=()
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$who: installing the Debian packages it needs: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "$who: these Debian packages are needed: ${missing[*]}" >&2
  echo "$who: run as root: apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
