#!/usr/bin/env bash
# The test command (README, "Set-up"): finds or installs what the tests need, runs `cargo test --locked`
# (arguments are passed on, e.g. `scripts/test.sh --test sharing`), then checks that no process the tests
# started is still running.
#
# What the tests need besides Rust: a C compiler for AWS-LC, FUSE, real tools run inside mounts, the
# third-party servers the tests talk to, and pycryptomator (PyPI) for the Cryptomator interoperability
# tests. Missing Debian packages are installed with apt-get when this runs as root (it says which), else
# it prints the apt-get line to run and stops. pycryptomator goes into target/pylib (nothing system-wide).
# Plain `cargo test` works wherever the tools are installed; a test whose tool is missing fails and names
# the package.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh

status=0
cargo test --locked "$@" || status=$?

# Nothing the tests started may outlive them: every server, mount and helper they start works in a
# temporary folder named cloakfs-test-*, which its command line, working folder or mount point shows.
leftovers=()
for proc in /proc/[0-9]*; do
  pid=${proc#/proc/}
  [ "$pid" = "$$" ] && continue
  command_line=$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null || true)
  cwd=$(readlink "$proc/cwd" 2>/dev/null || true)
  if [[ "$command_line $cwd" == *cloakfs-test-* ]]; then
    leftovers+=("$pid: ${command_line:0:160}")
  fi
done
mounts=$(grep -o ' [^ ]*cloakfs-test-[^ ]* ' /proc/mounts || true)
if [ ${#leftovers[@]} -gt 0 ] || [ -n "$mounts" ]; then
  echo "test.sh: FAILED: the tests left these running (now stopped):" >&2
  printf '  %s\n' "${leftovers[@]}" >&2
  [ -n "$mounts" ] && printf '  mounted:%s\n' $mounts >&2
  for entry in "${leftovers[@]}"; do kill -9 "${entry%%:*}" 2>/dev/null || true; done
  for mountpoint in $mounts; do fusermount3 -uz "$mountpoint" 2>/dev/null || umount -l "$mountpoint" || true; done
  status=1
else
  echo "test.sh: no process or mount the tests started is left"
fi
exit "$status"
