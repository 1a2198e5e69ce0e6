#!/usr/bin/env bash
# pjdfstest (crates.io, BSD-2-Clause) against a kernel mount of each vault format: a Nextcloud folder on a
# local `cloakfs serve`, and a Cryptomator vault in a local folder. tests/pjdfstest/FORMAT.toml lists the
# cases that fail by design (and the known gaps, marked as such); pjdfstest fails the run on any other
# failure and on a listed case that passes ("PASSED UNEXPECTEDLY"), so the list stays exact.
#
#   scripts/pjdfstest.sh [nextcloud|cryptomator]...    (default: both; needs root, fuse3, a built cloakfs)
#
# The summary line of each format is printed last. Runs as root (pjdfstest's chown and privileged cases)
# and switches to the users nobody and daemon for the permission cases.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(nextcloud cryptomator)
if [ "$(id -u)" != 0 ]; then
  echo "pjdfstest: must run as root (its ownership and privileged cases); NOT RUN" >&2
  exit 1
fi
tools="$root/target/tools"
pjdfstest="$tools/bin/pjdfstest"
if [ ! -x "$pjdfstest" ]; then
  # A debug build: it drives the mount, its own speed does not matter, and it builds in a third of the time.
  cargo install --quiet --locked --debug pjdfstest --version 0.2.2 --root "$tools"
fi
# The binary the tests build (`cargo test` resolves features with the dev-dependencies, `cargo build` without
# them, so a plain build here would compile every dependency a second time in CI, where the tests follow).
cargo test --locked --quiet --no-run
cloakfs="$root/target/debug/cloakfs"
scratch=$(mktemp -d /tmp/cloakfs-pjdfstest.XXXXXX)
server_pid=""
mount_pid=""
cleanup() {
  if [ -n "$mount_pid" ] && kill -0 "$mount_pid" 2>/dev/null; then kill "$mount_pid" 2>/dev/null || true; sleep 1; fi
  fusermount3 -u -z "$scratch/mnt" 2>/dev/null || true
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
export XDG_RUNTIME_DIR="$scratch/run" XDG_CONFIG_HOME="$scratch/config"
mkdir -p "$scratch/mnt" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME"
chmod 755 "$scratch"

# Starts `cloakfs mount ARGS…` in the background and waits until it is mounted.
start_mount() {
  "$cloakfs" mount "$@" 2>"$scratch/mount.log" &
  mount_pid=$!
  for _ in $(seq 1 300); do
    if grep -q " mounted at " "$scratch/mount.log"; then return 0; fi
    kill -0 "$mount_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$scratch/mount.log" >&2
  echo "pjdfstest: the mount did not start" >&2
  exit 1
}

stop_mount() {
  "$cloakfs" unmount "$scratch/mnt" >/dev/null
  wait "$mount_pid" || { echo "pjdfstest: the mount ended with an error" >&2; cat "$scratch/mount.log" >&2; exit 1; }
  mount_pid=""
}

status=0
summaries=()
for format in "${formats[@]}"; do
  case "$format" in
    nextcloud)
      export CLOAKFS_PASSWORD=pjdfstest-password
      "$cloakfs" serve user add alice --data "$scratch/data" >/dev/null
      "$cloakfs" serve --listen 127.0.0.1:0 --data "$scratch/data" >"$scratch/serve.out" 2>"$scratch/serve.log" &
      server_pid=$!
      for _ in $(seq 1 100); do grep -q listening "$scratch/serve.out" && break; sleep 0.1; done
      url=$(sed -n 's/^listening on //p' "$scratch/serve.out")
      "$cloakfs" keys init --server "$url" --user alice >"$scratch/keys.out"
      awk '/^Your mnemonic/{getline; getline; print; exit}' "$scratch/keys.out" >"$scratch/words"
      "$cloakfs" mkdir --encrypted /Vault --server "$url" --user alice --mnemonic-file "$scratch/words" >/dev/null
      start_mount /Vault "$scratch/mnt" --server "$url" --user alice --mnemonic-file "$scratch/words"
      ;;
    cryptomator)
      export CLOAKFS_PASSPHRASE="pjdfstest passphrase"
      mkdir -p "$scratch/vault"
      "$cloakfs" vault create "$scratch/vault" >/dev/null
      start_mount "$scratch/vault" "$scratch/mnt"
      ;;
    *) echo "pjdfstest: unknown format $format" >&2; exit 1 ;;
  esac
  echo "== pjdfstest on a $format mount"
  set +e
  "$pjdfstest" -c "tests/pjdfstest/$format.toml" -p "$scratch/mnt" >"$scratch/$format.out" 2>&1
  result=$?
  set -e
  sed 's/\x1b\[[0-9;]*m//g' "$scratch/$format.out" | grep -E "FAILED|PASSED UNEXPECTEDLY" -A3 || true
  summaries+=("$format: $(sed 's/\x1b\[[0-9;]*m//g' "$scratch/$format.out" | grep '^Summary' || echo 'no summary (pjdfstest crashed?)')")
  [ "$result" = 0 ] || status=1
  if [ -n "${PJDFSTEST_KEEP:-}" ]; then cp "$scratch/$format.out" "$PJDFSTEST_KEEP.$format"; fi
  stop_mount
  if [ -n "$server_pid" ]; then kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi
done
printf '%s\n' "${summaries[@]}"
exit "$status"
