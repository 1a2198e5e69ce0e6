#!/usr/bin/env bash
# Requests and waiting time of single user actions in a cloakfs mount, against `cloakfs serve` behind a
# delaying proxy: what decides the speed on a real Nextcloud server, where every request costs a round trip
# plus the server's work (docs/BENCHMARKS.md, "Round trips").
#
#   scripts/bench/round_trips.sh [--latency MS]      (default 100; needs target/release/cloakfs, python3)
#
# For each action: the requests the server saw until the change was committed (fsync of the mount root),
# the time the program itself was blocked, and the time until committed. Runs as any user with /dev/fuse.
set -euo pipefail
LATENCY_MS=100
while [ $# -gt 0 ]; do
  case "$1" in
    --latency) LATENCY_MS="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CLOAKFS="${CLOAKFS:-$ROOT/target/release/cloakfs}"
[ -x "$CLOAKFS" ] || { echo "build first: cargo build --release" >&2; exit 2; }
W=$(mktemp -d /tmp/cloakfs-rt.XXXXXX)
MP="$W/mnt"
PIDS=()
cleanup() {
  # ROUND_TRIPS_LOGS=DIR keeps the mount's and the server's logs (with RUST_LOG=cloakfs=debug: every request).
  [ -n "${ROUND_TRIPS_LOGS:-}" ] && cp "$W"/*.log "$ROUND_TRIPS_LOGS"/ 2>/dev/null
  fusermount3 -u -z "$MP" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$MP" "$W/config" "$W/run" "$W/data"
chmod 700 "$W/run"
export XDG_CONFIG_HOME="$W/config" XDG_RUNTIME_DIR="$W/run" CLOAKFS_PASSWORD=round-trips-password
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

"$CLOAKFS" serve user add alice --data "$W/data" >/dev/null
CLOAKFS_PASSWORD="$("$CLOAKFS" serve user app-password alice --data "$W/data" | tail -1)"
RUST_LOG=cloakfs::server::request=debug NO_COLOR=1 "$CLOAKFS" serve --listen 127.0.0.1:0 --data "$W/data" \
  > "$W/serve.log" 2>&1 &
PIDS+=($!)
until grep -q '^listening on ' "$W/serve.log"; do sleep 0.05; done
SERVE_PORT=$(sed -n 's/^listening on .*://p' "$W/serve.log" | head -1)
PORT=$(free_port)
python3 "$ROOT/scripts/bench/delay_proxy.py" "$PORT" "$SERVE_PORT" "$LATENCY_MS" > "$W/proxy.log" 2>&1 &
PIDS+=($!)
until grep -q '^ready' "$W/proxy.log"; do sleep 0.05; done
URL="http://127.0.0.1:$PORT"
"$CLOAKFS" keys init --server "$URL" --user alice > "$W/keys.txt"
awk 'f && NF {print; exit} /^Your mnemonic/ {f=1}' "$W/keys.txt" | sed 's/^ *//' > "$W/config/words"
"$CLOAKFS" mkdir --encrypted /Vault --server "$URL" --user alice --mnemonic-file "$W/config/words" >/dev/null
"$CLOAKFS" mount /Vault "$MP" --server "$URL" --user alice --mnemonic-file "$W/config/words" > "$W/mount.log" 2>&1 &
PIDS+=($!)
until grep -q ' mounted at ' "$W/mount.log"; do sleep 0.05; done
mkdir "$MP/existing"; echo x > "$MP/existing/old"; mkdir "$MP/d2"; sync "$MP"; sleep 1
( mkdir "$W/t" && cd "$W/t" && mkdir small && for i in $(seq 1 100); do head -c 4096 /dev/urandom > "small/f$i"; done &&
  tar cf "$W/small.tar" small )

requests() { grep -c 'cloakfs::server::request' "$W/serve.log" || true; }
echo "Latency ${LATENCY_MS} ms per round trip (delaying proxy), cloakfs serve, $("$CLOAKFS" --version)."
echo
echo "| action | requests until committed | program blocked (ms) | until committed (ms) |"
echo "|---|---:|---:|---:|"
measure() { # measure DESCRIPTION SHELL-COMMAND (run in the mount)
  sleep 1.5   # the previous commit is done and the batch closed
  local before t0 blocked done_ms
  before=$(requests)
  t0=$(now_ms)
  (cd "$MP" && sh -c "$2")
  blocked=$(( $(now_ms) - t0 ))
  sync "$MP"
  done_ms=$(( $(now_ms) - t0 ))
  sleep 0.5
  echo "| $1 | $(( $(requests) - before )) | $blocked | $done_ms |"
}
measure "one small file created (echo > f)" 'echo a > f1'
measure "20 small files created in a folder" 'for i in $(seq 1 20); do echo $i > existing/n$i; done'
measure "a file renamed in its folder" 'mv f1 f2'
measure "a file moved to another folder" 'mv f2 existing/f2'
measure "a folder with 2 files created" 'mkdir d && echo a > d/a && echo b > d/b'
measure "a file created and removed (echo > x; rm x)" 'echo a > x && rm x'
measure "a file replaced by a rename (echo > y.tmp; mv y.tmp y)" 'echo a > y && echo b > y.tmp && mv y.tmp y'
measure "a file overwritten" 'echo changed > existing/old'
measure "a file removed" 'rm existing/n1'
measure "an empty folder removed" 'rmdir d2 2>/dev/null || { mkdir d2 && sync . && rmdir d2; }'
measure "100 files of 4 KiB created (tar x)" "tar xf $W/small.tar"
measure "50 files renamed in their folder" 'for i in $(seq 1 50); do mv small/f$i small/g$i; done'
