#!/usr/bin/env bash
# cloakfs next to the tools people use instead, on identical workloads, in one run, on loopback.
#
#   scripts/bench/run.sh [--quick] [--rounds N] [--latency MS] [--targets "cloakfs rclone-writes ..."]
#                        [--subject cloakfs|cryptomator|sftp] [--out FILE] [--update-docs]
#
# Targets: cloakfs (mount over `cloakfs serve`), sftp / rclone-sftp / sshfs (a Cryptomator vault mounted by
# cloakfs, rclone crypt, and plain sshfs, all over one OpenSSH server: scripts/bench/sftp_targets.sh),
# cryptomator (cloakfs mount of a Cryptomator vault over the
# same `rclone serve webdav` as rclone crypt), rclone-writes / rclone-full (rclone crypt remote +
# `rclone mount --vfs-cache-mode writes|full` over `rclone serve webdav`), davfs2 (plain, over the same
# `rclone serve webdav`), gocryptfs (local cipher dir) and plain (a local dir, the limit). Peers come from
# Debian: `apt-get install -y rclone davfs2 gocryptfs fuse3 curl openssl iproute2` (the script offers to do it).
# --subject names the target the ratio columns compare with the others (default cloakfs; the Cryptomator
# rows: --targets "cryptomator rclone-writes rclone-full" --subject cryptomator).
# Run as root (mounting davfs2, dropping the page cache for cold reads). --latency MS puts a delaying TCP
# proxy (delay_proxy.py) between every client and its server. --rounds N runs every target N times,
# the targets taking turns in each round, and reports each figure's median (peak RSS and plaintext left:
# the largest); one round is the default.
#
# Every mount and process the script starts is unmounted and stopped (by PID) on exit, also on Ctrl-C
# and on failure; each step runs under a time limit. Results: a markdown table on stdout (and --out);
# --update-docs rewrites docs/BENCHMARKS.md with it. Methods and caveats: docs/BENCHMARKS.md.
# CLOAKFS=PATH (with CLOAKFS_BENCH_NO_BUILD=1) measures another cloakfs binary, e.g. the build before a change.
set -euo pipefail

SIZE_MIB=256        # the big file
SMALL_FILES=1000    # 4 KiB files created, then read
ENTRIES=2000        # entries of the folder listed with ls -l
OPS=200             # renames, mkdirs, rmdirs
COMMITS=500         # commits of the repository cloned with git clone
LATENCY_MS=0
ROUNDS=1
TARGETS="cloakfs rclone-writes rclone-full davfs2 gocryptfs plain"
SUBJECT=cloakfs
OUT=""
UPDATE_DOCS=0
STEP_TIMEOUT=600    # seconds, per timed step and per wait for durability
CACHE_SIZE=512M     # cloakfs --cache-size (the RSS budget is this + 64 MiB)

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZE_MIB=32 SMALL_FILES=200 ENTRIES=400 OPS=50 COMMITS=100; shift ;;
    --latency) LATENCY_MS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --subject) SUBJECT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --update-docs) UPDATE_DOCS=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$LATENCY_MS" in ''|*[!0-9]*) echo "--latency takes whole milliseconds" >&2; exit 2 ;; esac
case "$ROUNDS" in ''|0|*[!0-9]*) echo "--rounds takes a whole number above 0" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "run as root (davfs2 mounts, drop_caches)" >&2; exit 2; }

need=()
for tool in curl openssl fusermount3 perl tar python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
for target in $TARGETS; do
  case "$target" in
    rclone-*|cryptomator) command -v rclone >/dev/null || need+=(rclone) ;;
    sftp) [ -x /usr/sbin/sshd ] || need+=(openssh-server) ;;
    sshfs) command -v sshfs >/dev/null || need+=(sshfs); [ -x /usr/sbin/sshd ] || need+=(openssh-server) ;;
    davfs2) command -v mount.davfs >/dev/null || need+=(davfs2); command -v rclone >/dev/null || need+=(rclone) ;;
    gocryptfs) command -v gocryptfs >/dev/null || need+=(gocryptfs) ;;
  esac
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing missing tools: ${need[*]}" >&2
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/fusermount3/fuse3/' | sort -u | tr '\n' ' ')
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

# ----- what this run started, undone on every exit -----
W="$(mktemp -d /var/tmp/cloakfs-bench.XXXXXX)"   # servers' data, peers' caches (disk, like a laptop's)
chmod 755 "$W"   # mount.davfs runs as user davfs2
CORPUS="$(mktemp -d /dev/shm/cloakfs-bench-corpus.XXXXXX)"   # the plaintext sources, in RAM
MAX_SECONDS=${CLOAKFS_BENCH_MAX_SECONDS:-3600}   # the whole run
# What the run started is written down in files, so the watcher below can undo it even while a measuring
# process hangs in the kernel on a stuck mount (a blocked write cannot be interrupted; killing the FUSE
# daemon and detaching the mount can).
: > "$W/pids"; echo "$W/mnt" > "$W/mounts"
cleanup() {
  set +e
  local mp pid
  while read -r mp; do
    mountpoint -q "$mp" 2>/dev/null && { fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null; }
  done < "$W/mounts"
  while read -r pid; do kill "$pid" 2>/dev/null; done < "$W/pids"
  [ -n "${RUNNER:-}" ] && pkill -TERM -P "$RUNNER" 2>/dev/null && kill "$RUNNER" 2>/dev/null
  sleep 1
  while read -r pid; do kill -9 "$pid" 2>/dev/null; done < "$W/pids"
  pkill -f "mount.davfs.*$W" 2>/dev/null
  rm -rf "$W" "$CORPUS"
}

start_bg() { # start_bg LOGFILE CMD... : runs CMD in the background, records its PID in BG_PID
  local logfile="$1"; shift
  "$@" >"$logfile" 2>&1 &
  BG_PID=$!
  echo "$BG_PID" >> "$W/pids"
}
wait_for() { # wait_for SECONDS DESCRIPTION CMD... : polls CMD every 50 ms
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.05
  done
}
free_port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport'; }
drop_caches() { # the page cache emptied, then the tools that measure paged in again (their start is not timed)
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  for tool in ls head dd cat wc perl timeout bash; do cat "$(command -v $tool)" > /dev/null; done
  ls -l / > /dev/null; perl -MTime::HiRes -e 1
}
peak_rss=0
note_rss() { # note_rss PID : keeps the largest VmHWM (KiB) seen of the mount processes
  local hwm
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
  [ "${hwm:-0}" -gt "$peak_rss" ] && peak_rss=$hwm
  return 0
}

main() {
# ----- the corpus (plaintext, in RAM) -----
MARKER="cloakfs-bench-plaintext-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
log "corpus in $CORPUS"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$CORPUS/big"
head -c $((1 << 20)) /dev/urandom > "$CORPUS/one"
( mkdir -p "$CORPUS/t/small" "$CORPUS/t/many" "$CORPUS/t/ops" && cd "$CORPUS/t" &&
  perl -e '
    my ($n, $entries, $ops, $marker) = @ARGV;
    open(my $r, "<", "/dev/urandom") or die; binmode $r;
    for my $i (1..$n) { read($r, my $b, 4096 - length($marker) - 1);
      open(my $f, ">", sprintf("small/f%05d", $i)) or die; print $f "$marker\n$b"; close $f; }
    for my $i (1..$entries) { open(my $f, ">", sprintf("many/e%05d.txt", $i)) or die; print $f "$marker $i\n"; close $f; }
    for my $i (1..$ops) { open(my $f, ">", sprintf("ops/f%05d", $i)) or die; print $f "x"; close $f; }
  ' "$SMALL_FILES" "$ENTRIES" "$OPS" "$MARKER" &&
  tar --sort=name -cf "$CORPUS/small.tar" small && tar --sort=name -cf "$CORPUS/many.tar" many &&
  tar --sort=name -cf "$CORPUS/ops.tar" ops )
rm -rf "$CORPUS/t"
# A source tree: the sources of the tokio crate this repository builds with (from cargo's registry).
SRC_DIR=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tokio-1.* 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$SRC_DIR" ]; then
  tar -C "$(dirname "$SRC_DIR")" -cf "$CORPUS/src.tar" "$(basename "$SRC_DIR")"
else
  git -C "$ROOT" archive --format=tar --prefix=cloakfs/ HEAD > "$CORPUS/src.tar"
fi
# A git repository of COMMITS commits (each changes a few small files), cloned into every target.
( git init -q "$CORPUS/repo" && cd "$CORPUS/repo" && mkdir -p a b c &&
  for i in $(seq 1 "$COMMITS"); do
    echo "$MARKER $i" > "a/f$((i % 40))"; echo "line $i" >> "b/log$((i % 7))"; [ $((i % 25)) = 0 ] && head -c 8192 /dev/urandom > "c/blob$i"
    git add -A && git -c user.name=bench -c user.email=bench@example.org commit -qm "commit $i"
  done && git gc -q )
SRC_FILES=$(tar -tf "$CORPUS/src.tar" | grep -vc '/$')
SRC_MIB=$(( $(stat -c %s "$CORPUS/src.tar") >> 20 ))

# ----- shared WebDAV server for rclone crypt and davfs2, and the curl ceiling -----
DAV_PORT=""
start_dav() {
  [ -n "$DAV_PORT" ] && return 0
  DAV_PORT=$(free_port)
  mkdir -p "$W/dav"/{davfs,crypt-writes,crypt-full,cryptomator,curl}   # before the server lists (and caches) its root
  start_bg "$W/dav.log" rclone serve webdav "$W/dav" --addr "127.0.0.1:$DAV_PORT"
  wait_for 30 "rclone serve webdav" curl -sf -o /dev/null -X PROPFIND -H 'Depth: 0' "http://127.0.0.1:$DAV_PORT/"
  DAV_PORT=$(delayed_port "$DAV_PORT")
}

# --latency: clients reach the servers through scripts/bench/delay_proxy.py, which delays every byte by
# MS/2 each way (a round trip takes MS longer). Prints the port to use instead of TARGET_PORT.
delayed_port() { # delayed_port TARGET_PORT
  [ "$LATENCY_MS" -gt 0 ] || { echo "$1"; return; }
  local port; port=$(free_port)
  start_bg "$W/delay-$port.log" python3 "$ROOT/scripts/bench/delay_proxy.py" "$port" "$1" "$LATENCY_MS"
  wait_for 30 "the delaying proxy" grep -q '^ready' "$W/delay-$port.log"
  echo "$port"
}

# ----- targets: <t>_start, <t>_remount (cold: empty caches), <t>_durable, <t>_stop, <t>_leftovers -----
MP="$W/mnt"
mkdir -p "$MP"
MOUNT_PID=""

# cloakfs over cloakfs serve
CLOAKFS="${CLOAKFS:-$ROOT/target/release/cloakfs}"   # CLOAKFS=PATH: another build (e.g. the one before a change)
CLOAKFS_ENV=(env XDG_CONFIG_HOME="$W/cloakfs-config" XDG_RUNTIME_DIR="$W/cloakfs-run" TMPDIR="$W/cloakfs-tmp"
  CLOAKFS_PASSWORD=bench-password-1234)
CLOAKFS_ENV_BASE=("${CLOAKFS_ENV[@]}")
cloakfs_env() { "${CLOAKFS_ENV[@]}" "$@"; }
cloakfs_start() {
  rm -rf "$W/cloakfs-config" "$W/cloakfs-run" "$W/cloakfs-tmp" "$W/cloakfs-data"   # a fresh server each round
  CLOAKFS_ENV=("${CLOAKFS_ENV_BASE[@]}")
  mkdir -p "$W/cloakfs-config" "$W/cloakfs-run" "$W/cloakfs-tmp" "$W/cloakfs-data"
  chmod 700 "$W/cloakfs-run"
  cloakfs_env "$CLOAKFS" serve user add alice --data "$W/cloakfs-data" >/dev/null
  # An app password, as `cloakfs login` gives (the account password would cost an Argon2id check per request).
  CLOAKFS_ENV+=(CLOAKFS_PASSWORD="$("$CLOAKFS" serve user app-password alice --data "$W/cloakfs-data" | tail -1)")
  start_bg "$W/cloakfs-serve.log" "$CLOAKFS" serve --listen 127.0.0.1:0 --data "$W/cloakfs-data"
  CLOAKFS_SERVE_PID=$BG_PID
  wait_for 30 "cloakfs serve" grep -q '^listening on ' "$W/cloakfs-serve.log"
  CLOAKFS_URL=$(sed -n 's/^listening on //p' "$W/cloakfs-serve.log" | head -1)
  CLOAKFS_URL="http://127.0.0.1:$(delayed_port "${CLOAKFS_URL##*:}")"
  cloakfs_env "$CLOAKFS" keys init --server "$CLOAKFS_URL" --user alice > "$W/keys-init.txt"
  awk 'f && NF {print; exit} /^Your mnemonic/ {f=1}' "$W/keys-init.txt" | sed 's/^ *//' > "$W/cloakfs-config/words"
  cloakfs_env "$CLOAKFS" mkdir --encrypted /Vault --server "$CLOAKFS_URL" --user alice \
    --mnemonic-file "$W/cloakfs-config/words" >/dev/null
  cloakfs_mount
}
cloakfs_mount() {
  : > "$W/cloakfs-mount.log"
  start_bg "$W/cloakfs-mount.log" "${CLOAKFS_ENV[@]}" "$CLOAKFS" mount /Vault "$MP" --server "$CLOAKFS_URL" --user alice \
    --mnemonic-file "$W/cloakfs-config/words" --cache-size "$CACHE_SIZE"
  MOUNT_PID=$BG_PID
  wait_for 60 "cloakfs mount" grep -q ' mounted at ' "$W/cloakfs-mount.log"
}
cloakfs_unmount() {
  note_rss "$MOUNT_PID"
  cloakfs_env "$CLOAKFS" unmount "$MP" >/dev/null
  wait "$MOUNT_PID" 2>/dev/null || true
}
cloakfs_remount() { cloakfs_unmount; drop_caches; cloakfs_mount; }
cloakfs_durable() { sync "$MP"; }   # fsync on the folder commits the batch; returns when the server has it
cloakfs_stop() { cloakfs_unmount; kill "$CLOAKFS_SERVE_PID" 2>/dev/null; wait "$CLOAKFS_SERVE_PID" 2>/dev/null || true; }
cloakfs_leftovers() { echo "$W/cloakfs-config $W/cloakfs-run $W/cloakfs-tmp"; }

# cloakfs mount of a Cryptomator vault (format 8, SIV_GCM) over the same rclone serve webdav as rclone crypt.
# Close uploads the file (so after close the server has it); rclone serve webdav does not fsync, so its
# disk is synced as for rclone crypt.
CRYPTOMATOR_ENV=(env XDG_RUNTIME_DIR="$W/cryptomator-run" TMPDIR="$W/cryptomator-tmp"
  CLOAKFS_PASSPHRASE=bench-passphrase-1234)
cryptomator_start() {
  start_dav
  rm -rf "$W/cryptomator-run" "$W/cryptomator-tmp"
  mkdir -p "$W/cryptomator-run" "$W/cryptomator-tmp"; chmod 700 "$W/cryptomator-run"
  # A fresh vault folder each round, made through the server (which caches listings of its folder).
  CRYPTOMATOR_URL="http://127.0.0.1:$DAV_PORT/cryptomator/vault-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  curl -sf -X MKCOL "$CRYPTOMATOR_URL/" >/dev/null
  "${CRYPTOMATOR_ENV[@]}" "$CLOAKFS" vault create "$CRYPTOMATOR_URL" >/dev/null
  cryptomator_mount
}
cryptomator_mount() {
  : > "$W/cryptomator-mount.log"
  start_bg "$W/cryptomator-mount.log" "${CRYPTOMATOR_ENV[@]}" "$CLOAKFS" mount "$CRYPTOMATOR_URL" "$MP" \
    --cache-size "$CACHE_SIZE"
  MOUNT_PID=$BG_PID
  wait_for 60 "cloakfs mount of the Cryptomator vault" grep -q ' mounted at ' "$W/cryptomator-mount.log"
}
cryptomator_unmount() {
  note_rss "$MOUNT_PID"
  "${CRYPTOMATOR_ENV[@]}" "$CLOAKFS" unmount "$MP" >/dev/null
  wait "$MOUNT_PID" 2>/dev/null || true
}
cryptomator_remount() { cryptomator_unmount; drop_caches; cryptomator_mount; }
cryptomator_durable() { sync "$MP"; sync -f "$W/dav"; }
cryptomator_stop() { cryptomator_unmount; }
cryptomator_leftovers() { echo "$W/cryptomator-run $W/cryptomator-tmp"; }

# rclone crypt + rclone mount over rclone serve webdav, cache mode writes or full
rclone_start() { # rclone_start MODE
  RCLONE_MODE=$1
  start_dav
  mkdir -p "$W/dav/crypt-$RCLONE_MODE"; rm -rf "$W/dav/crypt-$RCLONE_MODE"/* "$W/rclone-cache"
  RCLONE_CONF="$W/rclone.conf"
  cat > "$RCLONE_CONF" <<EOF
[dav]
type = webdav
url = http://127.0.0.1:$DAV_PORT
vendor = other

[crypt]
type = crypt
remote = dav:crypt-$RCLONE_MODE
password = $(rclone obscure bench-password-1234)
EOF
  rclone_mount
}
rclone_mount() {
  RC_PORT=$(free_port)
  start_bg "$W/rclone-mount.log" rclone --config "$RCLONE_CONF" mount crypt: "$MP" \
    --vfs-cache-mode "$RCLONE_MODE" --vfs-write-back 0s --cache-dir "$W/rclone-cache" \
    --rc --rc-addr "127.0.0.1:$RC_PORT" --rc-no-auth
  MOUNT_PID=$BG_PID
  wait_for 60 "rclone mount" mountpoint -q "$MP"
}
rclone_unmount() {
  note_rss "$MOUNT_PID"
  kill "$MOUNT_PID" 2>/dev/null; wait "$MOUNT_PID" 2>/dev/null || true
  mountpoint -q "$MP" && fusermount3 -u -z "$MP"
  return 0
}
rclone_remount() { rclone_unmount; rm -rf "$W/rclone-cache"; drop_caches; rclone_mount; }
rclone_idle() { # no upload in progress or queued
  rclone rc --url "http://127.0.0.1:$RC_PORT/" vfs/stats 2>/dev/null |
    perl -0ne 'exit((/"uploadsInProgress":\s*0\b/ && /"uploadsQueued":\s*0\b/) ? 0 : 1)'
}
rclone_on_server() { # the server lists (through the crypt remote, decrypted) exactly the files the mount shows
  [ "$(rclone --config "$RCLONE_CONF" lsf -R --files-only crypt: 2>/dev/null | sort)" = \
    "$(cd "$MP" && find . -type f | sed 's|^\./||' | sort)" ]
}
# Durable on the server: rclone's vfs/stats shows no upload in progress or queued before the server has every
# file and rename (under latency, 1000 uploads "finished" in less time than their round trips take), so the
# server's own listing must also match the mount's. rclone serve webdav does not fsync, so its disk is then
# synced (cloakfs serve syncs before it answers the commit).
rclone_durable() {
  sync "$MP" 2>/dev/null || true
  wait_for "$STEP_TIMEOUT" "rclone uploads" rclone_idle
  wait_for "$STEP_TIMEOUT" "rclone's changes on the server" rclone_on_server
  sync -f "$W/dav"
}
rclone_stop() { rclone_unmount; }
rclone_leftovers() { echo "$W/rclone-cache"; }
rclone-writes_start() { rclone_start writes; }
rclone-full_start() { rclone_start full; }
for f in remount durable stop leftovers; do
  eval "rclone-writes_$f() { rclone_$f; }; rclone-full_$f() { rclone_$f; }"
done

# davfs2 over the same rclone serve webdav (plain: no encryption; the upper bound for a WebDAV mount).
# buf_size 64: with the default, davfs2 1.6 directories read as EINVAL on Linux >= 6.16 (davfs2 issue 22).
davfs2_start() {
  start_dav
  mkdir -p "$W/dav/davfs"; rm -rf "$W/dav/davfs"/*
  davfs2_cache
  cat > "$W/davfs2.conf" <<EOF
cache_dir $W/davfs2-cache
secrets $W/davfs2.secrets
delay_upload 0
use_locks 0
buf_size 64
EOF
  echo "http://127.0.0.1:$DAV_PORT/davfs bench bench" > "$W/davfs2.secrets"
  chmod 600 "$W/davfs2.secrets"
  davfs2_mount
}
davfs2_mount() {
  mount -t davfs -o "conf=$W/davfs2.conf" "http://127.0.0.1:$DAV_PORT/davfs" "$MP" </dev/null >"$W/davfs2.log" 2>&1
  MOUNT_PID=$(pgrep -n -f "mount.davfs.*$MP" || pgrep -n mount.davfs)
  echo "$MOUNT_PID" >> "$W/pids"
}
davfs2_unmount() { note_rss "$MOUNT_PID"; umount "$MP"; wait_for 60 "davfs2 to exit" bash -c "! kill -0 $MOUNT_PID"; }
davfs2_cache() { rm -rf "$W/davfs2-cache"; mkdir -p "$W/davfs2-cache"; chgrp davfs2 "$W/davfs2-cache"; chmod 775 "$W/davfs2-cache"; }
davfs2_remount() { davfs2_unmount; davfs2_cache; drop_caches; davfs2_mount; }
davfs2_same() { # the server's copy has every file of the mount, at full size
  diff <(cd "$MP" && find . -type f ! -path './lost+found/*' -printf '%P %s\n' | sort) \
       <(cd "$W/dav/davfs" && find . -type f -printf '%P %s\n' | sort)
}
davfs2_durable() { sync "$MP" 2>/dev/null || true; wait_for "$STEP_TIMEOUT" "davfs2 uploads" davfs2_same; sync -f "$W/dav"; }
davfs2_stop() { davfs2_unmount; }
davfs2_leftovers() { echo "$W/davfs2-cache"; }

# gocryptfs on a local dir
gocryptfs_start() {
  rm -rf "$W/gocryptfs-cipher"
  mkdir -p "$W/gocryptfs-cipher"
  gocryptfs -q -init -extpass "echo bench-password-1234" "$W/gocryptfs-cipher" >/dev/null
  gocryptfs_mount
}
gocryptfs_mount() {
  start_bg "$W/gocryptfs.log" gocryptfs -fg -q -extpass "echo bench-password-1234" "$W/gocryptfs-cipher" "$MP"
  MOUNT_PID=$BG_PID
  wait_for 30 "gocryptfs mount" mountpoint -q "$MP"
}
gocryptfs_unmount() { note_rss "$MOUNT_PID"; fusermount3 -u "$MP"; wait "$MOUNT_PID" 2>/dev/null || true; }
gocryptfs_remount() { gocryptfs_unmount; drop_caches; gocryptfs_mount; }
gocryptfs_durable() { sync; }
gocryptfs_stop() { gocryptfs_unmount; }
gocryptfs_leftovers() { echo ""; }

# SFTP: cloakfs over SFTP, rclone crypt over SFTP and sshfs, on one OpenSSH server
# shellcheck source=scripts/bench/sftp_targets.sh
. "$ROOT/scripts/bench/sftp_targets.sh"

# a plain local dir: the limit
plain_start() { MP_SAVED=$MP; rm -rf "$W/plain"; mkdir -p "$W/plain"; MP="$W/plain"; MOUNT_PID=""; }
plain_remount() { drop_caches; }
plain_durable() { sync; }
plain_stop() { MP=$MP_SAVED; }
plain_leftovers() { echo ""; }

# ----- measuring -----
declare -gA R   # R[target,metric] = value (global: run_target and report fill and read it)
mibps() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? b / 1048576 / (ms / 1000) : 0) }'; }
per_s() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? n / (ms / 1000) : 0) }'; }
timed() { # timed CMD... : runs CMD under the step limit; prints its milliseconds
  local t; t=$(now_ns)
  timeout "$STEP_TIMEOUT" "$@" >/dev/null || { log "step failed or timed out: $*"; return 1; }
  ms_since "$t"
}
ttfb_ms() { # ms from open until the first byte of a file is read (measured inside one process)
  timeout "$STEP_TIMEOUT" perl -MTime::HiRes=time -e '
    my $t = time; open(my $f, "<", $ARGV[0]) or die "open: $!"; read($f, my $b, 1) == 1 or die "read: $!";
    printf "%.0f", (time - $t) * 1000' "$1"
}

run_target() {
  local t=$1 ms
  log "== $t"
  "${t}_start"
  [ "$t" = plain ] || mountpoint -q "$MP" || { log "$t did not mount"; return 1; }

  # 256 MiB sequential write until durable on the server
  local t0; t0=$(now_ns)
  timeout "$STEP_TIMEOUT" dd if="$CORPUS/big" of="$MP/big" bs=1M status=none
  "${t}_durable"
  ms=$(ms_since "$t0"); R[$t,write]=$(mibps $((SIZE_MIB << 20)) "$ms")
  log "$t: write ${SIZE_MIB} MiB until durable: $ms ms"
  cp "$CORPUS/one" "$MP/one"

  # small files created until durable
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" tar -xf "$CORPUS/small.tar" -C "$MP"
  "${t}_durable"
  ms=$(ms_since "$t0"); R[$t,create]=$(per_s "$SMALL_FILES" "$ms")
  log "$t: create $SMALL_FILES files until durable: $ms ms"

  # untar of a source tree until durable
  mkdir "$MP/src"
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" tar -xf "$CORPUS/src.tar" -C "$MP/src"
  "${t}_durable"
  ms=$(ms_since "$t0"); R[$t,untar]=$ms
  log "$t: untar $SRC_FILES files until durable: $ms ms"

  # git clone of a local repository of COMMITS commits until durable (git's *.lock files, packs, checkout)
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" git clone -q "$CORPUS/repo" "$MP/clone"
  "${t}_durable"
  R[$t,gitclone]=$(ms_since "$t0")
  log "$t: git clone of $COMMITS commits until durable: ${R[$t,gitclone]} ms"

  # the folder to list, and the files to rename (not timed)
  timeout "$STEP_TIMEOUT" tar -xf "$CORPUS/many.tar" -C "$MP"
  timeout "$STEP_TIMEOUT" tar -xf "$CORPUS/ops.tar" -C "$MP"
  "${t}_durable"

  # namespace operations until durable
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" perl -e 'for my $i (1..$ARGV[1]) { my $f = sprintf("%s/ops/f%05d", $ARGV[0], $i);
    (my $g = $f) =~ s/f(\d+)$/g$1/; rename($f, $g) or die "rename: $!" }' "$MP" "$OPS"
  "${t}_durable"
  R[$t,rename]=$(per_s "$OPS" "$(ms_since "$t0")")
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" perl -e 'for my $i (1..$ARGV[1]) { mkdir(sprintf("%s/ops/d%05d", @ARGV[0], $i)) or die "mkdir: $!" }' "$MP" "$OPS"
  "${t}_durable"
  R[$t,mkdir]=$(per_s "$OPS" "$(ms_since "$t0")")
  t0=$(now_ns)
  timeout "$STEP_TIMEOUT" perl -e 'for my $i (1..$ARGV[1]) { rmdir(sprintf("%s/ops/d%05d", @ARGV[0], $i)) or die "rmdir: $!" }' "$MP" "$OPS"
  "${t}_durable"
  R[$t,rmdir]=$(per_s "$OPS" "$(ms_since "$t0")")
  log "$t: rename ${R[$t,rename]}/s, mkdir ${R[$t,mkdir]}/s, rmdir ${R[$t,rmdir]}/s"

  # cold: time to first byte, listing, small reads
  "${t}_remount"
  R[$t,ttfb1]=$(ttfb_ms "$MP/one")
  R[$t,ttfbbig]=$(ttfb_ms "$MP/big")
  R[$t,ls_cold]=$(timed ls -l "$MP/many")
  R[$t,ls_warm]=$(timed ls -l "$MP/many")
  [ "$(ls "$MP/many" | wc -l)" = "$ENTRIES" ] || { log "$t: ls shows $(ls "$MP/many" | wc -l) entries, not $ENTRIES"; return 1; }
  log "$t: ttfb 1 MiB ${R[$t,ttfb1]} ms, ${SIZE_MIB} MiB ${R[$t,ttfbbig]} ms; ls -l ${R[$t,ls_cold]}/${R[$t,ls_warm]} ms"

  # cold and warm sequential read of the big file
  "${t}_remount"
  ms=$(timed dd if="$MP/big" of=/dev/null bs=1M status=none); R[$t,read_cold]=$(mibps $((SIZE_MIB << 20)) "$ms")
  ms=$(timed dd if="$MP/big" of=/dev/null bs=1M status=none); R[$t,read_warm]=$(mibps $((SIZE_MIB << 20)) "$ms")
  cmp -s "$MP/big" "$CORPUS/big" || { log "$t: the big file read back differs"; return 1; }
  log "$t: read cold ${R[$t,read_cold]} MiB/s, warm ${R[$t,read_warm]} MiB/s"

  # small files, not yet read in this mount (so the unmount below follows a session that held them)
  ms=$(timed bash -c 'cat "$1"/small/* | wc -c' _ "$MP"); R[$t,smallread]=$(per_s "$SMALL_FILES" "$ms")
  cmp -s <(cat "$MP"/small/*) <(tar -xOf "$CORPUS/small.tar") || { log "$t: small files read back differ"; return 1; }
  log "$t: small reads ${R[$t,smallread]}/s"

  # peak RSS of the mount process(es), then unmount and look for plaintext left behind
  peak_rss=0
  [ -n "$MOUNT_PID" ] && note_rss "$MOUNT_PID"
  "${t}_stop"
  R[$t,rss]=$(( peak_rss / 1024 ))
  local left=0 dirs; dirs=$("${t}_leftovers")
  if [ -n "$(echo $dirs)" ]; then
    (grep -rlaF "$MARKER" $dirs /tmp 2>/dev/null || true) > "$W/left.txt"
    left=$(wc -l < "$W/left.txt")
    [ "$left" = 0 ] || log "$t: plaintext in: $(head -3 "$W/left.txt" | tr '\n' ' ')"
  else
    left="n/a"
  fi
  R[$t,left]=$left
  log "$t: peak RSS ${R[$t,rss]} MiB, plaintext files left: $left"
  rm -rf "$MP"/* 2>/dev/null || true
}

# ----- ceilings -----
log "ceilings: openssl speed, loopback curl GET"
AES_MIBPS=$(openssl speed -evp aes-128-gcm -seconds 2 -bytes 16384 2>/dev/null |
  awk '/^aes-128-gcm|^AES-128-GCM/ {v=$NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1048576}')
start_dav
mkdir -p "$W/dav/curl"; cp "$CORPUS/big" "$W/dav/curl/big"
curl -s -o /dev/null "http://127.0.0.1:$DAV_PORT/curl/big"
CURL_MIBPS=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$DAV_PORT/curl/big" | awk '{printf "%.0f", $1 / 1048576}')
rm -rf "$W/dav/curl"

if [[ " $TARGETS " == *" cloakfs "* || " $TARGETS " == *" cryptomator "* || " $TARGETS " == *" sftp "* ]]; then
  [ -n "${CLOAKFS_BENCH_NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q)
fi
METRICS=(write read_cold read_warm ttfb1 ttfbbig create smallread ls_cold ls_warm rename mkdir rmdir untar gitclone rss left)
declare -A ALL   # ALL[target,metric] = the figures of every round, space-separated
for round in $(seq 1 "$ROUNDS"); do
  [ "$ROUNDS" = 1 ] || log "round $round of $ROUNDS"
  for t in $TARGETS; do
    run_target "$t" || {
      log "$t failed; its figures are missing. Its logs:"
      for f in "$W"/*.log; do echo "--- $f"; tail -5 "$f"; done >&2
      "${t}_stop" 2>/dev/null || true
    }
    for m in "${METRICS[@]}"; do
      [ -n "${R[$t,$m]:-}" ] && ALL[$t,$m]+="${R[$t,$m]} "
      unset "R[$t,$m]"
    done
  done
done
# Each figure: the median of the rounds (of an even count, the mean of the middle two); peak RSS and plaintext
# files left: the largest.
for key in "${!ALL[@]}"; do
  case "$key" in
    *,rss|*,left) R[$key]=$(tr ' ' '\n' <<< "${ALL[$key]}" | grep -v '^$' | sort -n | tail -1) ;;
    *) R[$key]=$(tr ' ' '\n' <<< "${ALL[$key]}" | grep -v '^$' | sort -n |
      awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}') ;;
  esac
done

# ----- report -----
versions() {
  echo "- cloakfs $(git -C "$ROOT" describe --always --dirty 2>/dev/null) (release build), $(rustc --version 2>/dev/null)"
  command -v rclone >/dev/null && echo "- $(rclone version 2>/dev/null | head -1)"
  command -v mount.davfs >/dev/null && echo "- $(mount.davfs -V 2>&1 | head -1 | sed 's/ *<.*//')"
  command -v gocryptfs >/dev/null && echo "- $(gocryptfs -version 2>/dev/null | cut -d';' -f1)"
  [[ " $TARGETS " == *" sftp "* || " $TARGETS " == *" sshfs "* ]] && echo "- $(/usr/sbin/sshd -V 2>&1 | head -1), $(sshfs --version 2>&1 | grep -i "^sshfs" | head -1)"
  echo "- $(openssl version), $(curl --version | head -1 | cut -d' ' -f1-2), fuse3 $(fusermount3 -V 2>&1 | awk '{print $NF}')"
}
report() {
  local metrics=("${METRICS[@]}")
  declare -A label=(
    [write]="${SIZE_MIB} MiB write until durable (MiB/s)" [read_cold]="${SIZE_MIB} MiB read, cold (MiB/s)"
    [read_warm]="${SIZE_MIB} MiB read, warm (MiB/s)" [ttfb1]="time to first byte, 1 MiB file (ms)"
    [ttfbbig]="time to first byte, ${SIZE_MIB} MiB file (ms)" [create]="${SMALL_FILES} × 4 KiB created until durable (files/s)"
    [smallread]="${SMALL_FILES} × 4 KiB read, cold (files/s)" [ls_cold]="ls -l of ${ENTRIES} entries, cold (ms)"
    [ls_warm]="ls -l of ${ENTRIES} entries, warm (ms)" [rename]="rename until durable (ops/s)"
    [mkdir]="mkdir until durable (ops/s)" [rmdir]="rmdir until durable (ops/s)"
    [untar]="untar ${SRC_FILES} files, ${SRC_MIB} MiB, until durable (ms)"
    [gitclone]="git clone of ${COMMITS} commits until durable (ms)" [rss]="peak RSS of the mount process (MiB)"
    [left]="files with plaintext left after unmount")
  declare -A lower=([ttfb1]=1 [ttfbbig]=1 [ls_cold]=1 [ls_warm]=1 [untar]=1 [gitclone]=1)
  local peers=() t
  for t in $TARGETS; do [ "$t" = "$SUBJECT" ] || peers+=("$t"); done
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ), added latency ${LATENCY_MS} ms per round trip$([ "$LATENCY_MS" -gt 0 ] && echo " (delaying proxy)"), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)."
  echo "Ceilings: openssl speed -evp aes-128-gcm ${AES_MIBPS} MiB/s (16 KiB blocks, one core); loopback curl GET of ${SIZE_MIB} MiB from rclone serve webdav ${CURL_MIBPS} MiB/s."
  echo
  printf '| workload |'; for t in $TARGETS; do printf ' %s |' "$t"; done
  for t in "${peers[@]}"; do printf ' %s ÷ %s |' "$SUBJECT" "$t"; done; echo
  printf '|---|'; for t in $TARGETS "${peers[@]}"; do printf -- '---:|'; done; echo
  local m v c p
  for m in "${metrics[@]}"; do
    printf '| %s |' "${label[$m]}"
    for t in $TARGETS; do v=${R[$t,$m]:-–}; printf ' %s |' "$v"; done
    for t in "${peers[@]}"; do
      c=${R[$SUBJECT,$m]:-} p=${R[$t,$m]:-}
      if [ "$m" = rss ] || [ "$m" = left ] || [ -z "$c" ] || [ -z "$p" ] || [ "$p" = n/a ]; then printf ' |'; continue; fi
      if [ -n "${lower[$m]:-}" ]; then
        awk -v c="$c" -v p="$p" 'BEGIN { if (c > 0) printf " %.2f× |", p / c; else printf " – |" }'
      else
        awk -v c="$c" -v p="$p" 'BEGIN { if (p > 0) printf " %.2f× |", c / p; else printf " – |" }'
      fi
    done
    echo
  done
  echo
  echo "Ratios: how many times better $SUBJECT is (speed ÷ speed, or time ÷ time inverted): above 1 $SUBJECT wins."
  if [ "$ROUNDS" -gt 1 ]; then
    echo "Each figure is the median of $ROUNDS rounds (the targets took turns in each round); peak RSS and plaintext"
    echo "files left are the largest. Every round's figures, $SUBJECT / rclone-writes:"
    echo
    for m in "${metrics[@]}"; do
      case "$m" in rss|left) continue ;; esac
      echo "- ${label[$m]}: ${ALL[$SUBJECT,$m]:-–}/ ${ALL[rclone-writes,$m]:-–}"
    done
  fi
  check() { # check DESCRIPTION VALUE OP BOUND
    local verdict
    if [ -z "$2" ] || [ -z "$4" ]; then verdict="not measured"
    elif awk -v v="$2" -v b="$4" "BEGIN { exit !(v $3 b) }"; then verdict="met"
    else verdict="**missed**"; fi
    echo "- $1: $verdict ($2 $3 $4)"
  }
  if [ "$SUBJECT" = sftp ]; then
    echo
    echo "sshfs stores plain files (no encryption): the upper bound of an SFTP mount, not a peer."
    echo
    echo "Machine and versions:"
    echo "- $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; $(. /etc/os-release; echo "$PRETTY_NAME")"
    versions
    return
  fi
  if [ "$SUBJECT" = cryptomator ]; then
    echo
    echo "Targets (issue 22):"
    local wt=${R[rclone-writes,ttfbbig]:-} ft=${R[rclone-full,ttfbbig]:-}
    check "time to first byte of ${SIZE_MIB} MiB ≤ 2× rclone crypt, writes (ms)" "${R[cryptomator,ttfbbig]:-}" "<=" "${wt:+$((wt * 2))}"
    check "time to first byte of ${SIZE_MIB} MiB ≤ 2× rclone crypt, full (ms)" "${R[cryptomator,ttfbbig]:-}" "<=" "${ft:+$((ft * 2))}"
    check "plaintext files left after unmount = 0" "${R[cryptomator,left]:-}" "==" 0
    echo
    echo "Machine and versions:"
    echo "- $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; $(. /etc/os-release; echo "$PRETTY_NAME")"
    versions
    return
  fi
  echo
  echo "Targets (issue 7):"
  local rw=${R[rclone-writes,write]:-} gc=${R[gocryptfs,read_warm]:-}
  local budget=$(( $(numfmt --from=iec "$CACHE_SIZE") / 1048576 + 64 ))
  check "write until durable ≥ 2× rclone crypt (writes)" "${R[cloakfs,write]:-}" ">=" "${rw:+$((rw * 2))}"
  check "cold read ≥ 0.5× loopback curl GET (MiB/s)" "${R[cloakfs,read_cold]:-}" ">=" "$((CURL_MIBPS / 2))"
  check "warm read ≥ 1× gocryptfs (MiB/s)" "${R[cloakfs,read_warm]:-}" ">=" "$gc"
  local rc=${R[rclone-writes,create]:-} rs=${R[rclone-writes,smallread]:-} rr=${R[rclone-writes,rename]:-} rt=${R[rclone-writes,ttfb1]:-}
  check "small creates until durable ≥ 10× rclone crypt (files/s)" "${R[cloakfs,create]:-}" ">=" "${rc:+$((rc * 10))}"
  check "cold small reads ≥ 5× rclone crypt (files/s)" "${R[cloakfs,smallread]:-}" ">=" "${rs:+$((rs * 5))}"
  check "ls -l cold ≤ 250 ms" "${R[cloakfs,ls_cold]:-}" "<=" 250
  check "ls -l warm ≤ 40 ms" "${R[cloakfs,ls_warm]:-}" "<=" 40
  check "renames ≥ 10× rclone crypt (ops/s)" "${R[cloakfs,rename]:-}" ">=" "${rr:+$((rr * 10))}"
  check "time to first byte of 1 MiB ≤ 2× rclone crypt (ms)" "${R[cloakfs,ttfb1]:-}" "<=" "${rt:+$((rt * 2))}"
  check "peak RSS ≤ cache budget + 64 MiB (MiB)" "${R[cloakfs,rss]:-}" "<=" "$budget"
  check "plaintext files left after unmount = 0" "${R[cloakfs,left]:-}" "==" 0
  if [ "$LATENCY_MS" -ge 50 ]; then
    echo
    echo "Targets at ${LATENCY_MS} ms per round trip (issue 18: stated for 100 ms):"
    local ru=${R[rclone-writes,untar]:-} dg=${R[davfs2,gitclone]:-}
    check "small creates until durable ≥ 3× rclone crypt (files/s)" "${R[cloakfs,create]:-}" ">=" "${rc:+$((rc * 3))}"
    check "untar until durable ≤ 1/3 of rclone crypt (ms)" "${R[cloakfs,untar]:-}" "<=" "${ru:+$((ru / 3))}"
    check "renames ≥ 5× rclone crypt (ops/s)" "${R[cloakfs,rename]:-}" ">=" "${rr:+$((rr * 5))}"
    check "git clone until durable ≤ 2× davfs2 (ms)" "${R[cloakfs,gitclone]:-}" "<=" "${dg:+$((dg * 2))}"
  fi
  echo
  echo "Machine and versions:"
  echo "- $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; $(. /etc/os-release; echo "$PRETTY_NAME")"
  versions
}
REPORT=$(report)
echo "$REPORT"
[ -n "$OUT" ] && echo "$REPORT" > "$OUT"
if [ "$UPDATE_DOCS" = 1 ]; then
  DOC="$ROOT/docs/BENCHMARKS.md"
  if [ -f "$DOC" ] && grep -q '<!-- bench:begin -->' "$DOC"; then
    echo "$REPORT" > "$W/report.md"
    CLOAKFS_BENCH_REPORT="$W/report.md" perl -0pi -e '
      BEGIN { local $/; open my $f, "<", $ENV{CLOAKFS_BENCH_REPORT} or die; $r = <$f> }
      s/<!-- bench:begin -->.*<!-- bench:end -->/<!-- bench:begin -->\n$r<!-- bench:end -->/s' "$DOC"
    log "updated $DOC"
  else
    log "docs/BENCHMARKS.md has no <!-- bench:begin --> marker; not updated"
  fi
fi
}

# The measurements run in the background; this shell waits, and undoes everything on exit, on Ctrl-C or
# SIGTERM, and when the whole run exceeds MAX_SECONDS.
main &
RUNNER=$!
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT
( sleep "$MAX_SECONDS"; log "the run took over $MAX_SECONDS s: stopping it"; kill -TERM $$ ) &
WATCHER=$!
status=0
wait "$RUNNER" || status=$?
kill "$WATCHER" 2>/dev/null
exit "$status"
